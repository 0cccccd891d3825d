"""Cost of a model and of each inserted block: parameters, FLOPs, batch-1 latency.

FLOPs come from torch's own ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add: a plain ResNet-50
at 224 counts about 8.2 GFLOPs, timm's published 4.1 GMACs), with one addition: ``aten.mv``, which the attention
pooling uses on CPU. As with fvcore and timm's tables, element-wise operations, normalisation, pooling, softmax and data
movement are not counted; any *other* operator without a FLOP formula raises an :class:`UncountedOpsWarning` that
names it, so nothing is undercounted silently.

Latency is the median of repeated batch-1 forward passes after warm-up (CUDA synchronised where the model lives on a
GPU). The marginal cost of each placement is the inserted block's own parameters and FLOPs, and its own latency on the
feature map it receives.
"""
from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from gcnas.compat import TorchDispatchMode

__all__ = ["Cost", "BlockCost", "measure_cost", "count_flops", "UncountedOpsWarning"]

aten = torch.ops.aten


class UncountedOpsWarning(UserWarning):
    """The model ran operators that may do arithmetic but have no FLOP formula."""


def _mv_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]


_CUSTOM = {aten.mv: _mv_flop}
_COUNTED = {getattr(k, "overloadpacket", k) for k in flop_registry} | set(_CUSTOM)
# Not counted by convention (element-wise, normalisation, pooling, softmax, shape and memory operations).
_IGNORED_NAMES = {
    "_softmax", "_log_softmax", "softmax", "log_softmax", "native_batch_norm", "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional", "native_layer_norm",
    "native_group_norm", "max_pool2d_with_indices", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "_adaptive_avg_pool2d", "adaptive_max_pool2d", "mean", "sum", "amax", "amin", "max", "min", "var_mean",
    "cat", "stack", "split", "split_with_sizes", "unbind", "chunk", "permute", "view", "_unsafe_view", "reshape",
    "squeeze", "unsqueeze", "t", "transpose", "expand", "as_strided", "as_strided_", "clone", "copy_", "_to_copy",
    "contiguous", "flatten", "slice", "select", "narrow", "empty", "empty_like", "empty_strided", "zeros",
    "zeros_like", "ones", "ones_like", "full", "full_like", "new_empty", "new_zeros", "new_ones", "new_full",
    "constant_pad_nd", "upsample_nearest2d", "upsample_bilinear2d", "detach", "alias", "lift_fresh", "fill_",
    "zero_", "index_select", "gather", "roll", "pad", "_reshape_alias", "repeat", "dropout", "native_dropout",
}


def _is_ignored(op) -> bool:
    packet = getattr(op, "overloadpacket", op)
    name = packet.__name__
    if name in _IGNORED_NAMES or name.rstrip("_") in _IGNORED_NAMES:
        return True
    tags = set(getattr(op, "tags", ()))
    if torch.Tag.pointwise in tags or torch.Tag.reduction in tags or torch.Tag.inplace_view in tags:
        return True
    functional = getattr(aten, name.rstrip("_"), None)
    default = getattr(functional, "default", None) if functional is not None else None
    return default is not None and torch.Tag.pointwise in set(default.tags)


class _OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: set = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func)
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class BlockCost:
    """The marginal cost of one inserted block."""

    name: str
    params: int
    flops: int
    input_shape: tuple[int, ...]
    latency_ms: Optional[float] = None


@dataclass(frozen=True)
class Cost:
    params: int
    flops: int
    latency_ms: Optional[float]
    blocks: tuple[BlockCost, ...] = field(default_factory=tuple)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def _example(model: nn.Module, input_size: Sequence[int], batch: int = 1) -> torch.Tensor:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.randn(batch, *input_size, device=device, dtype=dtype)


def count_flops(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Total FLOPs of ``model(x)`` and per-module totals keyed by module name (``""`` for the model)."""
    counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM)
    recorder = _OpRecorder()
    with counter, recorder, torch.no_grad():
        model(x)
    uncounted = sorted({str(getattr(op, "overloadpacket", op)) for op in recorder.ops
                        if getattr(op, "overloadpacket", op) not in _COUNTED and not _is_ignored(op)})
    if uncounted:
        warnings.warn(f"{type(model).__name__}: FLOPs exclude operators without a formula: {', '.join(uncounted)}",
                      UncountedOpsWarning, stacklevel=2)
    root = type(model).__name__
    per_module = {}
    for key, counts in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = "" if key == root else key[len(root) + 1:] if key.startswith(root + ".") else key
        per_module[name] = int(sum(counts.values()))
    return int(counter.get_total_flops()), per_module


def _latency_ms(fn, device: torch.device, repeats: int, warmup: int) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        sync()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def measure_cost(model: nn.Module, input_size: Sequence[int], latency: bool = True, *, repeats: int = 20,
                 warmup: int = 5) -> Cost:
    """Parameters, FLOPs and batch-1 latency of ``model`` for inputs of size ``input_size`` (C, H, W).

    ``Cost.blocks`` holds the marginal cost of every block gcnas inserted (see ``gcnas.backbones.insert``).
    """
    from gcnas.backbones.insert import inserted_blocks

    was_training = model.training
    model.eval()
    try:
        x = _example(model, input_size)
        blocks = inserted_blocks(model)
        shapes: dict[str, tuple[int, ...]] = {}
        handles = [m.register_forward_pre_hook(
            lambda _m, inp, n=n: shapes.__setitem__(n, tuple(inp[0].shape))) for n, m in blocks.items()]
        try:
            flops, per_module = count_flops(model, x)
        finally:
            for h in handles:
                h.remove()
        device = x.device
        block_costs = []
        for name, block in blocks.items():
            shape = shapes.get(name)
            if shape is None:
                continue
            t = None
            if latency:
                xb = torch.randn(shape, device=device, dtype=x.dtype)
                t = _latency_ms(lambda: block(xb), device, repeats, warmup)
            block_costs.append(BlockCost(name, sum(p.numel() for p in block.parameters()), per_module.get(name, 0),
                                         shape, t))
        total_latency = _latency_ms(lambda: model(x), device, repeats, warmup) if latency else None
        return Cost(sum(p.numel() for p in model.parameters()), flops, total_latency, tuple(block_costs))
    finally:
        model.train(was_training)
