"""Cost: FLOPs against timm's published numbers, marginal cost per placement, uncounted-op warnings."""
from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torch.nn.functional as F

from gcnas.arch import Architecture, build_model
from gcnas.backbones import UncountedOpsWarning, count_flops, measure_cost
from gcnas.blocks import GlobalContextBlock


def test_resnet50_flops_match_timm_published_macs():
    model = timm.create_model("resnet50")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncountedOpsWarning)
        cost = measure_cost(model, (3, 224, 224), latency=False)
    assert abs(cost.flops - 2 * 4.1e9) / (2 * 4.1e9) < 0.02
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert cost.latency_ms is None


def test_marginal_costs_add_up():
    arch = Architecture.from_dict({"backbone": "resnet18", "placements": [
        {"stage": [2, 3], "blocks": "all", "position": "before_add", "spec": "gc"},
        {"stage": 1, "block": 0, "position": "after_conv1", "spec": {"kind": "nl"}}]})
    plain = measure_cost(timm.create_model("resnet18"), (3, 64, 64), latency=False)
    cost = measure_cost(build_model(arch), (3, 64, 64), latency=True, repeats=3, warmup=1)
    assert len(cost.blocks) == 5
    assert cost.params - plain.params == sum(b.params for b in cost.blocks)
    assert cost.flops - plain.flops == sum(b.flops for b in cost.blocks)
    assert all(b.flops > 0 and b.latency_ms > 0 for b in cost.blocks)
    assert cost.latency_ms > 0
    nl = next(b for b in cost.blocks if "gcnas_after_conv1" in b.name)
    assert nl.input_shape == (1, 128, 8, 8)


def test_attention_pooling_is_counted_on_both_code_paths():
    # Large maps pool with aten.mv on CPU, small ones with bmm; both must count 2*C*N for the pooling.
    for size in (8, 64):
        block = GlobalContextBlock(32, ratio=1 / 4).eval()
        x = torch.randn(1, 32, size, size)
        flops, _ = count_flops(block, x)
        n = size * size
        expected = 2 * 32 * n + 2 * 32 * n + 2 * (32 * 8) * 2  # logits, pooling, two FC layers
        assert flops == expected


def test_uncounted_operators_warn_by_name():
    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.matrix_exp(x[0, :, :4, :4])

    with pytest.warns(UncountedOpsWarning, match="linalg_matrix_exp"):
        count_flops(Odd(), torch.randn(1, 2, 4, 4))

    class Pointwise(torch.nn.Module):
        def forward(self, x):
            return F.relu(x).mean() + F.max_pool2d(x, 2).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("error", UncountedOpsWarning)
        assert count_flops(Pointwise(), torch.randn(1, 2, 4, 4))[0] == 0
