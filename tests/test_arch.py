"""Architecture: YAML round trip, canonical hash, shorthands, build_model and every invalid-architecture path."""
from __future__ import annotations

import random

import pytest
import timm
import torch
from safetensors.torch import save_file

from gcnas.arch import Architecture, BlockSpec, Placement, build_model
from gcnas.backbones import inserted_blocks

PAPER_R50 = """
backbone: resnet50
backbone_kwargs: {num_classes: 10}
placements:
  - stage: [1, 2, 3]
    blocks: all
    position: before_add
    spec: gc
"""


def test_shorthand_expands_to_one_placement_per_site():
    arch = Architecture.from_yaml(PAPER_R50)
    assert len(arch.placements) == 4 + 6 + 3  # resnet50 layer2..4
    assert {p.position for p in arch.placements} == {"before_add"}
    assert arch.placements[0] == Placement(1, 0, "before_add", BlockSpec())


def test_every_block_preset_names_a_spec_in_an_architecture_file():
    """``spec: nl`` works in an architecture YAML as in a search space (it used to fail: nl was no block preset)."""
    from gcnas.blocks import GlobalContextBlock, NonLocalBlock, block_preset_names

    assert "nl" in block_preset_names() and "gc" in block_preset_names()
    for name in block_preset_names():
        arch = Architecture.from_yaml(f"backbone: gcnas_resnet_tiny\nplacements:\n  - {{stage: 2, block: 0, "
                                      f"position: before_add, spec: {name}}}\n")
        (block,) = [m for m in build_model(arch).modules() if isinstance(m, (GlobalContextBlock, NonLocalBlock))]
        assert isinstance(block, NonLocalBlock if name == "nl" else GlobalContextBlock), name
        assert Architecture.from_yaml(arch.to_yaml()) == arch
    # the search spaces' one-word fusion spelling works in an architecture file too, and means the list form
    assert BlockSpec.from_value({"fusion": "scale+add"}) == BlockSpec.from_value({"fusion": ["scale", "add"]})
    nl = BlockSpec.from_value({"preset": "nl", "ratio": 0.25})
    assert (nl.kind, nl.ratio, nl.mode) == ("nl", 0.25, "embedded_gaussian")
    with pytest.raises(ValueError, match=r"spec: preset must be one of .*'nl'; got 'nll' \(did you mean 'nl'"):
        BlockSpec.from_value("nll")


@pytest.mark.parametrize("selector,expected", [("all", [0, 1, 2, 3, 4, 5]), ("first", [0]), ("last", [5]),
                                               ("every_other", [0, 2, 4]), ([1, 3], [1, 3]), (2, [2])])
def test_block_selectors(selector, expected):
    arch = Architecture.from_dict({"backbone": "resnet50", "placements": [
        {"stage": 2, "blocks": selector, "position": "after_conv2", "spec": "se"}]})
    assert [p.block for p in arch.placements] == expected
    assert all(p.spec == BlockSpec.from_value("se") for p in arch.placements)


def test_yaml_and_dict_round_trip_exactly():
    arch = Architecture.from_dict({"backbone": "resnet18", "backbone_kwargs": {"num_classes": 7, "in_chans": 1},
                                   "placements": [
                                       {"stage": 0, "block": 1, "position": "after_conv1",
                                        "spec": {"preset": "gc", "ratio": 0.25, "fusion": ["add", "scale"]}},
                                       {"stage": 2, "block": 0, "positions": ["after_conv2", "after_add"],
                                        "spec": {"kind": "nl", "mode": "dot"}},
                                       {"stage": 3, "block": 1, "position": "before_add", "spec": "snl"}]})
    assert Architecture.from_yaml(arch.to_yaml()) == arch
    assert Architecture.from_dict(arch.to_dict()) == arch
    assert Architecture.from_yaml(arch.to_yaml()).to_yaml() == arch.to_yaml()
    assert Architecture.from_yaml(arch.to_yaml()).key() == arch.key()


def test_key_ignores_order_and_spelling_but_not_content():
    base = Architecture.from_yaml(PAPER_R50)
    shuffled = list(base.placements)
    random.Random(0).shuffle(shuffled)
    assert Architecture("resnet50", {"num_classes": 10}, tuple(shuffled)).key() == base.key()
    spelled = Architecture.from_dict({"backbone": "resnet50", "backbone_kwargs": {"num_classes": 10}, "placements": [
        {"stages": [3, 1, 2], "blocks": "all", "position": "before_add",
         "spec": {"context": "att", "transform": "bottleneck", "ratio": 1 / 16, "fusion": "add"}}]})
    assert spelled.key() == base.key()
    # A transform without a ratio ignores the ratio it was written with.
    a = BlockSpec.from_value({"preset": "snl", "ratio": 0.25})
    assert a == BlockSpec.from_value("snl")
    different = [
        base.with_placements(base.placements[:-1]),
        base.with_placements([*base.placements[:-1], Placement(3, 2, "after_add", BlockSpec())]),
        base.with_placements([*base.placements[:-1], Placement(3, 2, "before_add", BlockSpec(ratio=0.25))]),
        Architecture("resnet50", {"num_classes": 11}, base.placements),
        Architecture("resnet101", {"num_classes": 10}, base.placements),
    ]
    keys = {base.key()} | {d.key() for d in different}
    assert len(keys) == 1 + len(different)


def test_build_model_inserts_and_keeps_plain_function():
    arch = Architecture.from_yaml(PAPER_R50)
    model = build_model(arch).eval()
    assert len(inserted_blocks(model)) == 13
    assert model.gcnas_architecture is arch
    plain = timm.create_model("resnet50", num_classes=10)
    plain.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), plain.eval()(x))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_build_model_loads_local_backbone_weights(tmp_path, suffix):
    plain = timm.create_model("resnet18", num_classes=10)
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        save_file(plain.state_dict(), str(path))
    else:
        torch.save({"state_dict": plain.state_dict()}, path)
    arch = Architecture.from_dict({"backbone": "resnet18", "backbone_kwargs": {"num_classes": 10},
                                   "placements": [{"stage": 3, "block": 1, "position": "before_add", "spec": "gc"}]})
    model = build_model(arch, pretrained_backbone=path)
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], plain.state_dict()["layer1.0.conv1.weight"])
    torch.save({"x": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="weights of another architecture than resnet18 \\(missing keys"):
        build_model(arch, pretrained_backbone=tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="backbone.pretrained_file: .*absent.pth does not exist"):
        build_model(arch, pretrained_backbone=tmp_path / "absent.pth")


INVALID = [
    ({"backbone": "resnet51"}, "unknown timm model 'resnet51'; close matches: resnet51q, resnet50"),
    ({"backbone": "resnet18", "placements": [{"stage": 4, "block": 0, "position": "before_add"}]},
     "no site at stage 4, block 0.*valid sites: stage 0 blocks 0-1"),
    ({"backbone": "resnet18", "placements": [{"stage": 1, "block": 2, "position": "before_add"}]},
     "no site at stage 1, block 2"),
    ({"backbone": "convnext_atto", "placements": [{"stage": 0, "block": 0, "position": "after_conv2"}]},
     "position 'after_conv2'; valid positions there: after_conv1, before_add, after_add"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "block": 0, "position": "after_conv3"}]},
     "placements\\[0\\].position: 'after_conv3' is not a position; valid positions are after_conv1"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "block": 0, "position": "before_add"},
                                             {"stage": 0, "blocks": "first", "position": "before_add"}]},
     "two blocks at stage 0, block 0, position 'before_add'"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "block": 0, "position": "before_add", "replace": True}]},
     "replace: true but resnet18 has no attention module there"),
    ({"backbone": "resnet18", "placements": [{"stage": 9, "blocks": "all", "position": "before_add"}]},
     "placements\\[0\\].stage: 9 is not a stage of this backbone; valid stages are \\[0, 1, 2, 3\\]"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "blocks": "odd", "position": "before_add"}]},
     "placements\\[0\\].blocks: 'odd' is not a selector; valid are all, first, last, every_other"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "block": 0, "position": "before_add", "spec": "gcc"}]},
     "placements\\[0\\].spec: preset must be one of 'gc'"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "block": 0, "position": "before_add",
                                              "spec": {"context": "max"}}]},
     "placements\\[0\\].spec: context must be one of 'avg', 'att'; got 'max'"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "block": 0, "position": "before_add",
                                              "spec": {"ratio": 3}}]},
     "placements\\[0\\].spec: ratio must be a number in \\(0, 1\\]; got 3"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "block": 0, "position": "before_add",
                                              "spec": {"colour": "red"}}]},
     "placements\\[0\\].spec: unknown keys \\['colour'\\]"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "position": "before_add"}]},
     "placements\\[0\\].block: missing"),
    ({"backbone": "resnet18", "layers": 3}, "unknown keys \\['layers'\\]"),
    ({"backbone": "resnet18", "placements": [{"stage": 0, "block": 0, "position": "before_add", "where": 1}]},
     "placements\\[0\\]: unknown keys \\['where'\\]"),
]


@pytest.mark.parametrize("data,message", INVALID, ids=[m[:40] for _, m in INVALID])
def test_invalid_architectures_are_explained(data, message):
    with pytest.raises(ValueError, match=message):
        build_model(Architecture.from_dict(data))


def test_errors_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "arch.yaml"
    path.write_text("backbone: resnet18\nplacements:\n  - {stage: 0, block: 0, position: middle}\n")
    with pytest.raises(ValueError, match=f"{path}: placements\\[0\\].position: 'middle'"):
        Architecture.from_yaml(path)
    path.write_text("backbone: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        Architecture.from_yaml(path)
