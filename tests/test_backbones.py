"""Insertion sites across timm families: every listed model, every position it offers."""
from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import pytest
import timm
import torch

from gcnas.backbones import (GenericFallbackWarning, backbone_data_config, insert, inserted_blocks, list_sites,
                             resolve_sites)
from gcnas.blocks import GlobalContextBlock
from gcnas.errors import ConfigError

INPUT = (3, 64, 64)
MODELS = {
    "resnet18": "resnet", "resnet50": "resnet", "resnext50_32x4d": "resnet",
    "regnetx_002": "regnet", "regnety_002": "regnet",
    "efficientnet_b0": "efficientnet", "mobilenetv2_100": "efficientnet", "mobilenetv3_small_100": "efficientnet",
    "convnext_atto": "convnext", "resnet33ts": "byobnet", "cspresnet50": "cspnet", "resnetv2_50": "resnetv2",
}
EXPECTED_STAGES = {"resnet": 4, "regnet": 4, "convnext": 4, "byobnet": 4, "cspnet": 4, "resnetv2": 4}
POSITIONS_OF = {m: {"after_conv1", "after_conv2", "before_add", "after_add"} for m in MODELS}
POSITIONS_OF["convnext_atto"] = {"after_conv1", "before_add", "after_add"}
# A BasicBlock's after_conv2 and before_add are both bn2's output: one site, before_add, with after_conv2 its alias
# (tests/test_sites_aliases.py checks every family's places numerically).
POSITIONS_OF["resnet18"] = {"after_conv1", "before_add", "after_add"}

CASES = [pytest.param(m, p, id=f"{m}-{p}") for m in MODELS for p in sorted(POSITIONS_OF[m])]


def _model(name, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=10, **kw)


@pytest.mark.parametrize("name", list(MODELS))
def test_sites_cover_the_family(name):
    sites = list_sites(name, input_size=INPUT, num_classes=10)
    family = MODELS[name]
    assert {s.family for s in sites} == {family}
    assert {s.position for s in sites} == POSITIONS_OF[name]
    stages = sorted({s.stage for s in sites})
    assert stages == list(range(len(stages)))
    if family in EXPECTED_STAGES:
        assert len(stages) == EXPECTED_STAGES[family]
    for st in stages:
        blocks = sorted({s.block for s in sites if s.stage == st})
        assert blocks == list(range(len(blocks)))
    assert all(s.channels > 0 and s.size[0] > 0 for s in sites)


def test_stage_numbering_follows_timm_module_names():
    r50 = {(s.stage, s.block): s.block_module for s in list_sites("resnet50", input_size=INPUT)}
    assert r50[(0, 0)] == "layer1.0" and r50[(3, 2)] == "layer4.2"
    eff = {(s.stage, s.block): s.block_module for s in list_sites("efficientnet_b0", input_size=INPUT)}
    assert eff[(0, 0)] == "blocks.0.0" and eff[(6, 0)] == "blocks.6.0"
    cnx = {(s.stage, s.block): s.block_module for s in list_sites("convnext_atto", input_size=INPUT)}
    assert cnx[(3, 1)] == "stages.3.blocks.1"
    reg = {(s.stage, s.block): s.block_module for s in list_sites("regnetx_002", input_size=INPUT)}
    assert reg[(0, 0)] == "s1.b1"
    # channels and spatial size at a known site: resnet50 layer3 block 0, after the 3x3 (stride 2): 256 ch, 1/16.
    site = next(s for s in list_sites("resnet50") if (s.stage, s.block, s.position) == (2, 0, "after_conv2"))
    assert (site.channels, site.size) == (256, (14, 14))
    site = next(s for s in list_sites("resnet50") if (s.stage, s.block, s.position) == (2, 0, "before_add"))
    assert (site.channels, site.size) == (1024, (14, 14))


@pytest.mark.parametrize("name,position", CASES)
def test_insert_every_block_at_position(name, position):
    model = _model(name).eval()
    plain = copy.deepcopy(model)
    sites = [s for s in resolve_sites(model, INPUT) if s.position == position]
    assert sites
    used = insert(model, [dict(stage=s.stage, block=s.block, position=position, spec="gc") for s in sites],
                  sites=resolve_sites(model, INPUT))
    assert len(used) == len(sites) == len(inserted_blocks(model))
    for name_, block in inserted_blocks(model).items():
        assert isinstance(block, GlobalContextBlock)

    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        out, ref = model(x), plain(x)
    assert out.shape == ref.shape == (2, 10)
    assert torch.equal(out, ref), "an add block must leave the backbone's function unchanged at initialisation"

    plain_keys, keys = set(plain.state_dict()), set(model.state_dict())
    assert plain_keys < keys and all(".gcnas_" in k for k in keys - plain_keys)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and set(missing) == keys - plain_keys

    model.train()
    xg = torch.randn(2, *INPUT, requires_grad=True)
    model(xg).sum().backward()
    assert xg.grad is not None
    assert all(p.grad is not None for b in inserted_blocks(model).values() for p in b.parameters())


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "convnext_atto", "cspresnet50"])
def test_backbone_api_still_works(name):
    model = _model(name).eval()
    plain = copy.deepcopy(model)
    insert(model, [dict(stage=s.stage, block=s.block, position=s.position, spec="gc")
                   for s in resolve_sites(model, INPUT) if s.position == "before_add"])
    x = torch.randn(1, *INPUT)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.equal(feats, plain.forward_features(x))
        assert torch.equal(model.forward_head(feats), plain.forward_head(feats))
    assert model.feature_info == plain.feature_info
    model.reset_classifier(3)
    assert model(x).shape == (1, 3)


@pytest.mark.parametrize("name", ["resnet50", "regnety_002", "efficientnet_b0", "convnext_atto", "resnet33ts",
                                  "cspresnet50", "resnetv2_50", "mobilenetv3_small_100"])
def test_features_only_models(name):
    model = timm.create_model(name, pretrained=False, features_only=True).eval()
    plain = copy.deepcopy(model)
    sites = resolve_sites(model, INPUT)
    assert sites and {s.family for s in sites} == {MODELS[name]}
    insert(model, [dict(stage=s.stage, block=s.block, position=s.position, spec="gc") for s in sites
                   if s.position in ("after_conv1", "after_add")], sites=sites)
    x = torch.randn(1, *INPUT)
    with torch.no_grad():
        outs, refs = model(x), plain(x)
    assert [o.shape for o in outs] == [r.shape for r in refs]
    assert all(torch.equal(o, r) for o, r in zip(outs, refs))


@pytest.mark.parametrize("name,position", [("seresnet18", "before_add"), ("regnety_002", "after_conv2"),
                                           ("efficientnet_b0", "after_conv2"), ("mobilenetv3_small_100",
                                                                                 "after_conv2")])
def test_replace_existing_attention(name, position):
    model = _model(name)
    sites = [s for s in resolve_sites(model, INPUT) if s.position == position and s.attention]
    assert sites
    se_keys = {k for k in model.state_dict() if k.startswith(sites[0].attention + ".")}
    assert se_keys
    insert(model, [dict(stage=s.stage, block=s.block, position=position, spec="gc", replace=True) for s in sites])
    modules = dict(model.named_modules())
    assert all(isinstance(modules[s.attention], GlobalContextBlock) for s in sites)
    assert not (se_keys & set(model.state_dict()))  # SE's weights are gone with it
    assert inserted_blocks(model) == {}  # replacements live where the SE was, no extra hook
    out = model(torch.randn(2, *INPUT))
    out.sum().backward()


def test_insert_errors_name_the_site_and_valid_ones():
    model = _model("resnet18")
    with pytest.raises(ValueError, match=r"stage 4, block 0.*valid sites: stage 0: blocks 0-1"):
        insert(model, [dict(stage=4, block=0, position="before_add", spec="gc")])
    with pytest.raises(ValueError, match=r"stage 0, block 5.*valid sites"):
        insert(model, [dict(stage=0, block=5, position="before_add", spec="gc")])
    with pytest.raises(ValueError, match="offers positions after_conv1, before_add, after_add"):  # one per place
        insert(model, [dict(stage=0, block=0, position="after_conv3", spec="gc")])
    with pytest.raises(ValueError, match="two placements at stage 0, block 0"):
        insert(model, [dict(stage=0, block=0, position="before_add", spec="gc")] * 2)
    with pytest.raises(ValueError, match="replace=true but the backbone has no attention module there; sites with "
                                         "one: none"):
        insert(model, [dict(stage=0, block=0, position="before_add", spec="gc", replace=True)])
    assert inserted_blocks(model) == {}  # a failed insert changes nothing


def test_deepcopy_and_pickle_keep_blocks_independent(tmp_path):
    model = _model("resnet18").eval()
    insert(model, [dict(stage=3, block=1, position="before_add", spec="gc")])
    clone = copy.deepcopy(model)
    block = inserted_blocks(clone)["layer4.1.gcnas_before_add"]
    with torch.no_grad():
        block.add_transform.fc2.bias.fill_(1.0)
    x = torch.randn(1, *INPUT)
    with torch.no_grad():
        assert not torch.equal(clone(x), model(x))
    torch.save(clone, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), clone(x))


@pytest.mark.parametrize("name", ["densenet121", "dla34"])
def test_generic_fallback(name):
    model = _model(name).eval()
    plain = copy.deepcopy(model)
    with pytest.warns(GenericFallbackWarning, match="generic fallback"):
        sites = list_sites(model, INPUT)
    assert {s.position for s in sites} == {"after_block", "after_stage"}
    assert {s.family for s in sites} == {"generic"}
    chosen = [s for s in sites if s.position == "after_stage"] + [s for s in sites if s.position == "after_block"][:3]
    insert(model, [dict(stage=s.stage, block=s.block, position=s.position, spec="gc") for s in chosen], sites=sites)
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    model.train()
    model(x).sum().backward()
    assert len(inserted_blocks(model)) == len(chosen)


def test_nonlocal_block_inserts_too():
    model = _model("resnet18").eval()
    plain = copy.deepcopy(model)
    # after_conv1: resnet18's after_conv2 is an alias of before_add, and insert takes the sites' own names
    insert(model, [dict(stage=2, block=0, position="after_conv1", spec={"kind": "nl", "ratio": 0.5})])
    x = torch.randn(1, *INPUT)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


def test_list_sites_by_name_is_built_once_per_process(monkeypatch):
    """A name's sites are cached (build_model asks for them every trial); each call gets its own list and the same
    warnings, and other kwargs or input sizes are listed afresh."""
    import gcnas.backbones.sites as sites_mod

    built = []
    real = sites_mod.create_backbone
    monkeypatch.setattr(sites_mod, "create_backbone", lambda *a, **k: built.append(a) or real(*a, **k))
    monkeypatch.setattr(sites_mod, "_SITES_CACHE", {})
    first = list_sites("resnet18", input_size=(3, 64, 64), num_classes=7)
    second = list_sites("resnet18", input_size=(3, 64, 64), num_classes=7)
    assert second == first and second is not first and len(built) == 1
    other = list_sites("resnet18", input_size=(3, 32, 32), num_classes=7)
    assert len(built) == 2 and other[0].size != first[0].size
    for _ in range(2):
        with pytest.warns(GenericFallbackWarning, match="generic fallback"):
            list_sites("dla34", input_size=(3, 64, 64))
    assert len(built) == 3

    # another library's warning while the first call probes (a one-time import warning) passes once, is not replayed
    real_shapes = sites_mod._shapes

    def shapes_with_a_library_warning(*a, **k):
        warnings.warn("a library's one-time warning", DeprecationWarning)
        return real_shapes(*a, **k)

    monkeypatch.setattr(sites_mod, "_shapes", shapes_with_a_library_warning)
    said = []
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            list_sites("dla34", input_size=(3, 32, 32))
        said.append(sorted(w.category.__name__ for w in caught))
    assert said == [["DeprecationWarning", "GenericFallbackWarning"], ["GenericFallbackWarning"]]


def test_a_backbone_without_feature_maps_is_refused_in_one_line(tmp_path):
    """A vision transformer's blocks give tokens, not (B, C, H, W) maps: refused before any work, naming
    backbone.name, the model and why; at the search's own input size (28x28, which the ViT's patch embedding refuses
    with an AssertionError) as at the model's."""
    why = (r"backbone.name: vit_tiny_patch16_224 \(VisionTransformer\) has no \(B, C, H, W\) feature maps for a "
           r"global-context block to work on \(its blocks give 3-d tensors such as \(1, 197, 192\).*use a "
           r"convolutional backbone of a family gcnas describes \(resnet, regnet, efficientnet")
    with pytest.raises(ConfigError, match=why):
        list_sites("vit_tiny_patch16_224", input_size=(1, 28, 28), in_chans=1, num_classes=10)
    with pytest.raises(ConfigError, match=why):
        list_sites("vit_tiny_patch16_224")
    with pytest.raises(ConfigError, match=why):
        backbone_data_config("vit_tiny_patch16_224", in_chans=1)

    res = subprocess.run([sys.executable, "-m", "gcnas.cli.search", "backbone.name=vit_tiny_patch16_224",
                          f"paths.root={tmp_path}", "data=synthetic", "wandb.mode=disabled", "progress=none"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if "backbone.name" in line]
    assert len(lines) == 1 and "vit_tiny_patch16_224 (VisionTransformer) has no (B, C, H, W) feature maps" in lines[0]
    assert "backbone.name" not in res.stdout  # once on the console (Hydra's console log would have echoed it)
    logs = [p.read_text() for p in tmp_path.glob("**/runs/*/search.log")]
    assert len(logs) == 1 and "[ERROR] - backbone.name: vit_tiny_patch16_224" in logs[0]  # and in the job's log
    assert not list(tmp_path.glob("**/*.db")), "refused after the study was created"
