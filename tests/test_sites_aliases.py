"""One site per place: positions of a block that see the same tensor are one site, its other names aliases.

Checked numerically on every family's example models: a randomly initialised global-context block hooked at each
site of a block changes the block's output differently at every site (else two sites would be one place, searched
twice), and hooked where the family's rule puts an alias it gives exactly what it gives at the alias's site.
"""
from __future__ import annotations

import logging

import pytest
import timm
import torch

from gcnas.arch import Architecture, BlockSpec, Placement, build_model
from gcnas.backbones import FAMILIES, inserted_blocks, list_sites, resolve_sites
from gcnas.blocks import GlobalContextBlock
from gcnas.errors import ConfigError
from gcnas.space import SearchSpace

INPUT = (3, 32, 32)  # small: a forward pass costs little on a shared CPU
EXAMPLES = [pytest.param(name, fam, id=name) for fam in FAMILIES for name in fam.examples]


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Norm scales and shifts, biases and layer scales drawn away from timm's initial 1, 0 and 1e-6: a zero-initialised
    last norm (timm's ResNets) would hide everything before it, and make distinct places look alike."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() <= 1:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)


def _gc(channels: int) -> GlobalContextBlock:
    """The same random block for every site with this many channels: at one place it computes one thing."""
    torch.manual_seed(channels)
    block = GlobalContextBlock(channels, context="att", transform="bottleneck", ratio=0.25, fusion=["scale", "add"])
    g = torch.Generator().manual_seed(channels)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return block.eval()


def _hooked_output(block_module: torch.nn.Module, anchor, x: torch.Tensor, gc: torch.nn.Module) -> torch.Tensor:
    """The residual block's output with ``gc`` hooked at ``anchor`` (the family rule's description of a position)."""
    target = block_module if anchor.kind == "self" else getattr(block_module, anchor.attr)
    if anchor.kind == "pre":
        handle = target.register_forward_pre_hook(lambda _m, inp: (gc(inp[0]), *inp[1:]))
    else:
        handle = target.register_forward_hook(lambda _m, _inp, out: gc(out))
    try:
        with torch.no_grad():
            return block_module(x)
    finally:
        handle.remove()


def _one_block_per_kind(sites, modules):
    """The first block of every kind (block class, its sites and their aliases), with its sites."""
    by_block: dict[str, list] = {}
    for s in sites:
        by_block.setdefault(s.block_module, []).append(s)
    chosen = {}
    for name, here in by_block.items():
        kind = (type(modules[name]), tuple((s.position, s.aliases, s.anchor) for s in here))
        chosen.setdefault(kind, (name, here))
    return list(chosen.values())


@pytest.mark.parametrize("name,family", EXAMPLES)
def test_every_site_is_its_own_place_and_aliases_are_the_same_place(name, family):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    _randomise(model, 0)
    sites = resolve_sites(model, INPUT)
    assert {s.family for s in sites} == {family.name}
    modules = dict(model.named_modules())
    chosen = _one_block_per_kind(sites, modules)
    inputs = {}
    handles = [modules[b].register_forward_pre_hook(lambda _m, inp, b=b: inputs.setdefault(b, inp[0].clone()))
               for b, _ in chosen]
    with torch.no_grad():
        model(torch.randn(2, *INPUT, generator=torch.Generator().manual_seed(1)))
    for h in handles:
        h.remove()

    checked_aliases = 0
    for bname, here in chosen:
        block, x = modules[bname], inputs[bname]
        rule = family.rule_for(block)
        anchors = rule.anchors(block)
        assert set(anchors) == {p for s in here for p in (s.position, *s.aliases)}, bname
        with torch.no_grad():
            plain = block(x)
        outs = {s.position: _hooked_output(block, s.anchor, x, _gc(s.channels)) for s in here}
        for s in here:
            assert not torch.equal(outs[s.position], plain), f"{name} {bname}: a block at {s.position} changes nothing"
            for alias in s.aliases:  # where the family's rule puts the alias: the site's place, to the bit
                assert torch.equal(_hooked_output(block, anchors[alias], x, _gc(s.channels)), outs[s.position]), \
                    f"{name} {bname}: {alias} is listed as an alias of {s.position} but computes something else"
                checked_aliases += 1
        for i, a in enumerate(here):
            for b in here[i + 1:]:
                diff = (outs[a.position] - outs[b.position]).abs().max().item()
                scale = outs[a.position].abs().max().item()
                assert diff > 1e-4 * scale, (f"{name} {bname}: sites {a.position} and {b.position} compute the same "
                                             f"network (max difference {diff}): one place listed twice")
    if name in ("resnet18", "gcnas_resnet_tiny", "gernet_s", "efficientnetv2_rw_t", "mobilenetv3_large_100"):
        assert checked_aliases, f"{name} has blocks whose positions share a place; none was checked"


def test_before_add_and_after_add_are_never_aliases():
    """Architecture relies on it to canonicalise without listing sites (gcnas.arch._NEVER_ALIASES)."""
    for fam in FAMILIES:
        for name in fam.examples:
            for s in list_sites(name, input_size=INPUT):
                assert not {"before_add", "after_add"} & set(s.aliases), (name, s)


@pytest.mark.parametrize("name", ["resnet18", "gcnas_resnet_tiny"])
def test_basicblock_resnets_have_three_places_per_block(name):
    sites = list_sites(name, input_size=INPUT)
    blocks = {(s.stage, s.block) for s in sites}
    assert len(blocks) == 8 and len(sites) == 3 * 8
    for st, b in blocks:
        here = [s for s in sites if (s.stage, s.block) == (st, b)]
        assert [(s.position, s.aliases) for s in here] == [("after_conv1", ()), ("before_add", ("after_conv2",)),
                                                          ("after_add", ())]
        assert here[1].module == f"layer{st + 1}.{b}.bn2"
    # with SE (seresnet18) the same block class has four places: after_conv2 is bn2, before_add the SE after it
    se = [s for s in list_sites("seresnet18", input_size=INPUT) if (s.stage, s.block) == (0, 0)]
    assert [(s.position, s.aliases, s.module) for s in se] == [
        ("after_conv1", (), "layer1.0.aa"), ("after_conv2", (), "layer1.0.bn2"), ("before_add", (), "layer1.0.se"),
        ("after_add", (), "layer1.0")]


@pytest.mark.parametrize("name", ["resnet18", "gcnas_resnet_tiny"])
def test_an_alias_is_the_same_architecture_and_network(name):
    spec = BlockSpec(fusion=("scale", "add"))
    canonical = Architecture(name, {"num_classes": 10}, (Placement(1, 0, "before_add", spec),))
    alias = Architecture.from_dict({"backbone": name, "backbone_kwargs": {"num_classes": 10},
                                    "placements": [{"stage": 1, "block": 0, "position": "after_conv2",
                                                    "spec": {"fusion": ["scale", "add"]}}]})
    assert alias.placements[0].position == "before_add"
    assert alias == canonical and alias.key() == canonical.key()
    assert Architecture(name, {"num_classes": 10}, (Placement(1, 0, "after_conv2", spec),)).key() == canonical.key()
    other = Architecture(name, {"num_classes": 10}, (Placement(1, 0, "after_conv1", spec),))
    assert other.key() != canonical.key()
    x = torch.randn(2, *INPUT)
    outs = []
    for arch in (canonical, other):
        torch.manual_seed(0)
        model = build_model(arch).eval()
        _randomise(model, 0)
        assert list(inserted_blocks(model)) == [f"layer2.0.gcnas_{arch.placements[0].position}"]
        with torch.no_grad():
            outs.append(model(x))
    assert not torch.equal(*outs)
    with pytest.raises(ConfigError, match=r"stage 1, block 0: 'before_add' and 'after_conv2' are one place in "
                                          rf"{name} \(the site 'before_add', also named after_conv2\)"):
        Architecture.from_dict({"backbone": name, "placements": [
            {"stage": 1, "block": 0, "positions": ["before_add", "after_conv2"]}]})


def test_spaces_search_each_place_once(caplog):
    """Listing after_conv2 and before_add searches them once on a BasicBlock ResNet, twice on a Bottleneck one."""
    cfg = {"name": "t", "design": {"preset": "gc"},
           "positions": {"stages": "all_but_first", "position": ["after_conv1", "after_conv2", "before_add",
                                                                "after_add"]}}
    with caplog.at_level(logging.WARNING, logger="gcnas.space.readers"):
        basic = SearchSpace.from_config(cfg, backbone="resnet18", sites=list_sites("resnet18", input_size=INPUT))
    assert basic.grid()["position"] == ["after_conv1", "before_add", "after_add"]
    assert [r.getMessage() for r in caplog.records] == [
        "search_spaces/t.yaml: positions.position: 'after_conv2', 'before_add' name the site 'before_add' in every "
        "block of resnet18 in stages [1, 2, 3]; searched once, as 'before_add'"]
    bottleneck = SearchSpace.from_config(cfg, backbone="resnet50", sites=list_sites("resnet50", input_size=INPUT))
    assert bottleneck.grid()["position"] == ["after_conv1", "after_conv2", "before_add", "after_add"]
    every = SearchSpace.from_config({**cfg, "positions": {"position": "all"}}, backbone="gcnas_resnet_tiny",
                                    sites=list_sites("gcnas_resnet_tiny", input_size=(1, 28, 28)))
    assert every.grid()["position"] == ["after_conv1", "before_add", "after_add"]
    # an alias alone is the site's own name; the architectures drawn use it
    alone = SearchSpace.from_config({**cfg, "positions": {"position": "after_conv2"}}, backbone="resnet18",
                                    sites=list_sites("resnet18", input_size=INPUT))
    assert alone.position.values() == ["before_add"]
    assert {s.position for s in alone.reachable_sites()} == {"before_add"}


def test_a_position_that_is_one_place_in_some_blocks_only_stays_a_choice():
    """efficientnetv2's ConvBnAct blocks have after_conv1 = before_add; its other blocks tell them apart."""
    sites = list_sites("efficientnetv2_rw_t", input_size=INPUT)
    space = SearchSpace.from_config({"name": "t", "design": {"preset": "gc"},
                                     "positions": {"position": ["after_conv1", "before_add"]}},
                                    backbone="efficientnetv2_rw_t", sites=sites)
    assert space.grid()["position"] == ["after_conv1", "before_add"]

    class Fixed:  # a trial answering every suggestion from fixed values
        def __init__(self, values):
            self.values = values

        def suggest_categorical(self, name, choices):
            return self.values[name]

    arch = space.suggest(Fixed({"position": "after_conv1"}))
    convbnact = {(s.stage, s.block) for s in sites if "after_conv1" in s.aliases}
    assert convbnact
    for p in arch.placements:
        assert p.position == ("before_add" if (p.stage, p.block) in convbnact else "after_conv1")



def test_insert_takes_an_alias_and_reads_weights_saved_under_it():
    """``gcnas.insert`` accepts an alias for its site; a state dict saved when a block placed by the alias was named
    after it (``gcnas_after_conv2``, before sites had aliases) loads into the site's block."""
    from gcnas.backbones import insert

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=4)
    used = insert(model, [{"stage": 1, "block": 0, "position": "after_conv2", "spec": "gc"}], input_size=(3, 32, 32))
    assert [s.position for s in used] == ["before_add"]
    with pytest.raises(ConfigError, match=r"two placements at stage 1, block 0, position 'before_add' \(also named "
                                          r"after_conv2\)"):
        insert(timm.create_model("resnet18"), [{"stage": 1, "block": 0, "position": p, "spec": "gc"}
                                               for p in ("after_conv2", "before_add")], input_size=(3, 32, 32))
    for p in model.parameters():
        torch.nn.init.normal_(p)
    saved = {k.replace(".gcnas_before_add.", ".gcnas_after_conv2."): v for k, v in model.state_dict().items()}
    assert any(".gcnas_after_conv2." in k for k in saved)
    fresh = timm.create_model("resnet18", num_classes=4)
    insert(fresh, [{"stage": 1, "block": 0, "position": "before_add", "spec": "gc"}], input_size=(3, 32, 32))
    result = fresh.load_state_dict(saved, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
