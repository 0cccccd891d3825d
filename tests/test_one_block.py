"""One block: a design's forward, the fields it uses, its initialisation and the way a spec becomes a module are each
decided once (gcnas.blocks), and GlobalContextBlock, BlockSpec, insert's build_block and the one-shot supernet read
that one place. These tests fail where a second, disagreeing copy would."""
from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
import torch

from gcnas.arch import BlockSpec
from gcnas.backbones import build_block
from gcnas.blocks import (CONTEXTS, NORMS, OPTIONAL_FIELDS, TRANSFORMS, GlobalContextBlock, block_preset_names,
                          design_fields)
from gcnas.errors import ConfigError
from gcnas.oneshot import ChoiceBlock, check_supernet_designs
from reference import randomize_

FUSION_CHOICES = [("add",), ("scale",), ("scale", "add")]
DESIGNS = list(itertools.product(CONTEXTS.names(), TRANSFORMS.names(), FUSION_CHOICES, NORMS.names() + [None]))
C = 32


@pytest.mark.parametrize("context,transform,fusion,norm", DESIGNS, ids=str)
def test_blockspec_and_the_block_use_the_fields_the_registries_declare(context, transform, fusion, norm):
    fields = design_fields(transform, fusion)
    assert fields <= set(OPTIONAL_FIELDS) and ("gate" in fields) == ("scale" in fusion)
    spec = BlockSpec(context=context, transform=transform, ratio=1 / 4, fusion=fusion, norm=norm, act="gelu",
                     gate="hard_sigmoid")
    assert (spec.ratio is not None) == ("ratio" in fields)
    assert spec.norm == (norm if "norm" in fields else None)
    assert (spec.act == "gelu") == ("act" in fields) and (spec.act is None) == ("act" not in fields)
    assert spec.gate == ("hard_sigmoid" if "gate" in fields else "sigmoid")
    block = GlobalContextBlock(C, context=context, transform=transform, ratio=1 / 4, fusion=list(fusion), norm=norm,
                               act="gelu")
    assert block.norm_name == spec.norm and block.act_name == spec.act
    assert (block.hidden_channels is not None) == ("ratio" in fields)
    # a spec read back from the block it built is the same spec: the two agree on every field
    assert BlockSpec.from_value({**block.spec(), "gate": spec.gate}) == spec


@pytest.mark.parametrize("context,transform,fusion,norm", DESIGNS, ids=str)
def test_the_supernet_holds_exactly_the_designs_whose_entries_declare_how_it_shares_them(context, transform, fusion,
                                                                                        norm):
    spec = BlockSpec(context=context, transform=transform, ratio=1 / 4, fusion=fusion, norm=norm)
    declared = [CONTEXTS.traits(context), TRANSFORMS.traits(transform)]
    if spec.norm is not None:
        declared.append(NORMS.traits(spec.norm))
    if all("supernet" in d for d in declared):
        assert check_supernet_designs([spec]) == [spec]
    else:
        with pytest.raises(ConfigError, match="cannot share weights"):
            check_supernet_designs([spec])


def test_a_choice_and_its_extracted_block_run_one_forward_bit_for_bit():
    specs = [BlockSpec(context=c, transform=t, ratio=r, fusion=f, norm=n)
             for c, t, r, f, n in itertools.product(CONTEXTS.names(), TRANSFORMS.names(), (1 / 8, 1 / 2),
                                                    FUSION_CHOICES, ("layernorm", None))]
    specs = list(dict.fromkeys(specs))
    torch.manual_seed(0)
    choice = randomize_(ChoiceBlock(C, specs)).eval()
    x = torch.randn(2, C, 5, 3)
    with torch.no_grad():  # the fused training path is another autograd function; the forward they share is this
        for spec in specs:
            choice.choose(spec)
            assert torch.equal(choice(x), choice.extract(spec).eval()(x)), spec


@pytest.mark.parametrize("name", block_preset_names())
def test_build_block_and_blockspec_build_one_module_from_a_preset(name):
    torch.manual_seed(0)
    from_spec = BlockSpec.from_value(name).build(C)
    torch.manual_seed(0)
    from_insert = build_block(name, C)
    assert type(from_insert) is type(from_spec) and repr(from_insert) == repr(from_spec)
    a, b = from_spec.state_dict(), from_insert.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_build_block_reads_a_preset_with_overrides_as_blockspec_does():
    value = {"preset": "gc", "ratio": 1 / 4, "fusion": ["scale", "add"]}
    assert repr(build_block(value, C)) == repr(BlockSpec.from_value(value).build(C))
    assert build_block({"preset": "nl", "mode": "dot"}, C).mode == "dot"
    with pytest.raises(ConfigError, match="preset must be one of .*'nl'"):
        build_block("gcc", C)


def test_a_design_registered_once_is_read_alike_by_the_block_blockspec_and_supernet():
    code = textwrap.dedent("""
        import torch
        from gcnas.arch import BlockSpec
        from gcnas.blocks import TRANSFORMS, GlobalContextBlock
        from gcnas.blocks.transform import MLPTransform
        from gcnas.errors import ConfigError
        from gcnas.oneshot import ChoiceBlock, check_supernet_designs

        # SE's excitation under another name, declared as one: uses ratio and act, shared as an MLP
        TRANSFORMS.register("excite", lambda c, h, norm, act, eps, owner: MLPTransform(c, h, None, act, eps),
                            uses=("ratio", "act"), supernet="mlp")
        TRANSFORMS.register("private", lambda c, h, norm, act, eps, owner: MLPTransform(c, h, None, act, eps),
                            uses=("ratio", "act"))
        spec = BlockSpec(transform="excite", ratio=0.25, norm="layernorm", fusion=("scale",))
        assert spec.norm is None and spec.ratio == 0.25 and spec.act == "relu", spec
        block = spec.build(16)
        assert block.norm_name is None and block.hidden_channels == 4, block
        torch.manual_seed(0)
        choice = ChoiceBlock(16, [spec, BlockSpec(transform="se", ratio=0.5, fusion=("scale",), norm=None)])
        assert set(choice.mlps) == {"scale_plain"}, set(choice.mlps)
        for p in choice.parameters():
            torch.nn.init.normal_(p)
        choice.choose(spec)
        x = torch.randn(2, 16, 3, 3)
        with torch.no_grad():
            assert torch.equal(choice(x), choice.extract(spec)(x))
        private = BlockSpec(transform="private", ratio=0.25)
        assert GlobalContextBlock(16, transform="private").hidden_channels == 1
        try:
            check_supernet_designs([private])
        except ConfigError as e:
            assert str(e).startswith("design.transform: the one-shot supernet cannot share weights for 'private'")
            assert "excite" in str(e) and "private, " not in str(e), e
        else:
            raise AssertionError("a transform that declares no sharing was accepted by the supernet")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_every_block_starts_with_the_official_initialisation():
    torch.manual_seed(0)
    x = torch.randn(2, C, 4, 4)
    for name in block_preset_names():
        block = BlockSpec.from_value(name).build(C)
        if "scale" not in getattr(block, "fusion", ("add",)):
            with torch.no_grad():
                assert torch.equal(block(x), x), name  # last layer zero: add blocks start as the identity
    choice = ChoiceBlock(C, [BlockSpec.from_value(n) for n in ("gc", "snl", "gc_avg")])
    assert choice.mask.weight.std() > 0 and not choice.mask.bias.any()
    assert not any(mlp.fc2.weight.any() or mlp.fc2.bias.any() for mlp in choice.mlps.values())
    assert not choice.convs["add"].weight.any()
