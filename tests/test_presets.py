"""Named presets are the paper's members of the framework."""
from __future__ import annotations

import pytest
import torch

from gcnas.blocks import GlobalContextBlock, preset, preset_names

EXPECTED = {
    "gc": ("att", "bottleneck", ("add",), "layernorm", 1 / 16),
    "gc_r4": ("att", "bottleneck", ("add",), "layernorm", 1 / 4),
    "gc_scale": ("att", "bottleneck", ("scale",), "layernorm", 1 / 16),
    "gc_scale_add": ("att", "bottleneck", ("scale", "add"), "layernorm", 1 / 16),
    "gc_avg": ("avg", "bottleneck", ("add",), "layernorm", 1 / 16),
    "se": ("avg", "se", ("scale",), None, 1 / 16),
    "snl": ("att", "conv", ("add",), None, 1.0),
}


def test_every_preset_is_checked():
    assert sorted(preset_names()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_builds_the_paper_member(name):
    context, transform, fusion, norm, ratio = EXPECTED[name]
    block = GlobalContextBlock.from_preset(name, 256)
    assert (block.context_name, block.transform_name, block.fusion, block.norm_name) == (context, transform, fusion,
                                                                                         norm)
    if block.hidden_channels is not None:
        assert block.hidden_channels == int(256 * ratio)
    x = torch.randn(2, 256, 4, 4)
    assert block(x).shape == x.shape


def test_param_counts_match_the_paper_formulas():
    c = 256
    gc = GlobalContextBlock.from_preset("gc", c)
    # W_k (C + 1) + bottleneck (C*C/16 + C/16) + LN (2*C/16) + (C/16*C + C)
    h = c // 16
    assert sum(p.numel() for p in gc.parameters()) == (c + 1) + (c * h + h) + 2 * h + (h * c + c)
    se = GlobalContextBlock.from_preset("se", c)
    assert sum(p.numel() for p in se.parameters()) == (c * h + h) + (h * c + c)
    snl = GlobalContextBlock.from_preset("snl", c)
    assert sum(p.numel() for p in snl.parameters()) == (c + 1) + (c * c + c)


def test_preset_returns_a_copy_and_accepts_overrides():
    kwargs = preset("gc")
    kwargs["ratio"] = 0.5
    assert preset("gc")["ratio"] == 1 / 16
    assert GlobalContextBlock.from_preset("gc", 64, ratio=1 / 4).hidden_channels == 16
