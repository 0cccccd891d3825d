"""Exact conversion from mmcv / official GCNet state dicts and timm modules."""
from __future__ import annotations

import pytest
import torch
from timm.layers import EffectiveSEModule, GlobalContext, SEModule
from timm.models._efficientnet_blocks import SqueezeExcite as EfficientNetSE

from gcnas.blocks import convert
from reference import MMCVContextBlock, randomize_

MMCV_CASES = [(p, f) for p in ("att", "avg") for f in (("channel_add",), ("channel_mul",),
                                                      ("channel_mul", "channel_add"))]


@pytest.mark.parametrize("pooling,fusions", MMCV_CASES, ids=[f"{p}-{'+'.join(f)}" for p, f in MMCV_CASES])
def test_from_mmcv_is_exact_and_round_trips(pooling, fusions):
    ref = randomize_(MMCVContextBlock(64, 1 / 4, pooling, fusions)).eval()
    sd = ref.state_dict()
    block = convert.from_mmcv(sd).eval()
    assert block.context_name == pooling
    assert block.hidden_channels == 16
    assert set(block.fusion) == {"add" if f == "channel_add" else "scale" for f in fusions}
    x = torch.randn(2, 64, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref(x), rtol=0, atol=1e-5)
    back = convert.to_mmcv(block)
    assert back.keys() == sd.keys()
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_from_mmcv_reads_ratio_from_shapes_and_prefix():
    ref = randomize_(MMCVContextBlock(96, 1 / 16))
    model_sd = {f"layer3.1.context_block.{k}": v for k, v in ref.state_dict().items()}
    model_sd["layer3.1.conv1.weight"] = torch.zeros(3)
    block = convert.from_mmcv(model_sd, prefix="layer3.1.context_block.")
    assert block.hidden_channels == 6 and block.channels == 96
    x = torch.randn(1, 96, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref(x), rtol=0, atol=1e-5)


def test_from_mmcv_names_unknown_and_missing_keys():
    sd = MMCVContextBlock(32, 1 / 4).state_dict()
    extra = dict(sd, **{"channel_add_conv.2.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unknown keys \['channel_add_conv.2.weight'\]"):
        convert.from_mmcv(extra)
    missing = {k: v for k, v in sd.items() if k != "conv_mask.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['conv_mask.bias'\]"):
        convert.from_mmcv(missing)
    with pytest.raises(ValueError, match="no fusion found"):
        convert.from_mmcv({"conv_mask.weight": sd["conv_mask.weight"], "conv_mask.bias": sd["conv_mask.bias"]})
    bad = dict(sd, **{"channel_add_conv.3.weight": torch.zeros(32, 4, 3, 3)})
    with pytest.raises(ValueError, match="inconsistent shapes"):
        convert.from_mmcv(bad)
    with pytest.raises(ValueError, match="no key starts with prefix 'backbone.'"):
        convert.from_mmcv(sd, prefix="backbone.")


def test_to_mmcv_refuses_blocks_mmcv_cannot_hold():
    from gcnas.blocks import GlobalContextBlock

    with pytest.raises(ValueError, match="transform='se'"):
        convert.to_mmcv(GlobalContextBlock(32, transform="se", ratio=1 / 4))


TIMM_GC = [dict(use_attn=a, fuse_add=fa, fuse_scale=fs) for a in (True, False)
           for fa, fs in ((True, False), (False, True), (True, True))]


@pytest.mark.parametrize("kwargs", TIMM_GC, ids=lambda k: "-".join(f"{n}={v}" for n, v in k.items()))
def test_from_timm_global_context(kwargs):
    src = randomize_(GlobalContext(48, rd_ratio=1 / 8, **kwargs)).eval()
    block = convert.from_timm(src).eval()
    assert block.norm_eps == 1e-6  # timm's LayerNorm2d
    x = torch.randn(2, 48, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), src(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("src", [
    lambda: SEModule(64),
    lambda: SEModule(64, rd_ratio=1 / 4, act_layer=torch.nn.SiLU),
    lambda: SEModule(64, norm_layer=torch.nn.BatchNorm2d),
    lambda: EffectiveSEModule(64),
    lambda: EfficientNetSE(64, rd_ratio=0.25, act_layer=torch.nn.SiLU),
], ids=["se", "se-silu", "se-bn", "ese", "efficientnet-se"])
def test_from_timm_squeeze_excite(src):
    module = randomize_(src()).eval()
    block = convert.from_timm(module).eval()
    assert block.context_name == "avg" and block.fusion == ("scale",)
    x = torch.randn(2, 64, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), module(x), rtol=0, atol=1e-5)


def test_from_timm_rejects_unsupported():
    with pytest.raises(ValueError, match="unsupported module type Conv2d; supported: GlobalContext"):
        convert.from_timm(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="add_maxpool"):
        convert.from_timm(SEModule(32, add_maxpool=True))
    with pytest.raises(ValueError, match="bias=False"):
        convert.from_timm(SEModule(32, bias=False))
    se = SEModule(32)
    se.extra = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"unknown keys \['extra.bias', 'extra.weight'\]"):
        convert.from_timm(se)
