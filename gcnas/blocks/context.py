"""Context modeling: the first stage of the global context framework.

Paper: Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019
(arXiv:1904.11492), section 4.1.

Context modeling pools a feature map x of shape (B, C, H, W) into one context vector per sample, shape (B, C):

* ``avg``: global average pooling, as in SE: ``c = 1/N * sum_j x_j``.
* ``att``: attention pooling, as in the simplified NL block and GC: a 1x1 conv ``W_k`` maps x to one logit per position,
  a softmax over all N = H*W positions turns the logits into weights ``p``, and ``c = sum_j p_j x_j``. The weights are
  the same for every query position: the paper's observation that NL attention maps barely depend on the query.

The attention logit's bias is kept (official checkpoints carry it) but has no effect: softmax is shift invariant.
"""
from __future__ import annotations


import torch
from torch import nn

from gcnas.blocks.layers import init_official_
from gcnas.registry import Registry

__all__ = ["CONTEXTS", "AvgContext", "AttentionContext", "attention_weights", "pool", "pool_context"]


def attention_weights(x3: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention weights ``p`` of shape (B, N) for ``x3`` of shape (B, C, N) and the mask conv's parameters.

    The softmax of half-precision inputs runs in float32, then returns in the input dtype.
    """
    # A batched matmul with an expanded weight: one pass over x (torch.matmul would fold the batch into a copy of
    # x). The bias has no effect on p; it is kept so the maths matches the checkpoint's.
    b = x3.shape[0]
    w = weight.reshape(1, 1, -1).to(x3.dtype).expand(b, 1, -1)
    if bias is None:
        logits = torch.bmm(w, x3)
    else:
        logits = torch.baddbmm(bias.reshape(1, 1, 1).to(x3.dtype).expand(b, 1, 1), w, x3)
    logits = logits.reshape(b, -1)  # (B, N)
    if x3.dtype in (torch.float16, torch.bfloat16):
        return torch.softmax(logits, dim=-1, dtype=torch.float32).to(x3.dtype)
    return torch.softmax(logits, dim=-1)


# Per-sample size (C * N) from which one matrix-vector product per sample beats a batched matmul with one column.
_MV_MIN_ELEMENTS = 1 << 16


def pool(x3: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``sum_j p_j x_j`` for ``x3`` (B, C, N) and ``p`` (B, N), returned as (B, C)."""
    _, c, n = x3.shape
    if (c * n >= _MV_MIN_ELEMENTS and x3.device.type == "cpu" and x3.stride(-1) == 1
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling()):
        # On CPU a batched matmul with a single column runs well below the memory bandwidth of a plain
        # matrix-vector product; one mv per sample wins once a sample is large. Traced and compiled graphs keep
        # the batched form, which does not unroll over the batch.
        return torch.stack([torch.mv(xi, pi) for xi, pi in zip(x3, p)])
    return torch.bmm(x3, p.unsqueeze(-1)).squeeze(-1)


def pool_context(x: torch.Tensor, mask_weight: torch.Tensor | None = None, mask_bias: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Context modeling of ``x`` (B, C, H, W), once for every caller: the context vector (B, C) and the attention
    weights (B, H*W) with the mask conv's parameters (``att``), or the mean and ``None`` without them (``avg``)."""
    if mask_weight is None:
        return x.mean(dim=(2, 3)), None
    b, c, h, w = x.shape
    x3 = x.reshape(b, c, h * w)
    p = attention_weights(x3, mask_weight, mask_bias)
    return pool(x3, p), p


class AvgContext(nn.Module):
    """Global average pooling (SE's squeeze)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def reset_parameters(self) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_context(x)[0]

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The uniform weights average pooling gives every position, shape (B, H*W)."""
        b, _, h, w = x.shape
        return x.new_full((b, h * w), 1.0 / (h * w))


class AttentionContext(nn.Module):
    """Attention pooling: 1x1 conv to one channel, softmax over all positions, weighted sum of the features.

    ``fast``: pool a CUDA input in eager mode through the one-read Triton kernels of :mod:`gcnas.blocks.fast_pool`
    (same parameters, same result within rounding); off by default. The block's fused training path
    (``GlobalContextBlock(fused=True)``), ``torch.compile`` and tracing keep the reference composition.
    """

    fast = False  # on the class too: a module pickled before the option existed unpickles with it off

    def __init__(self, channels: int, *, fast: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.fast = bool(fast)
        self.conv_mask = nn.Conv2d(channels, 1, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_official_(kaiming=[self.conv_mask])

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The query-independent attention map, shape (B, H*W), summing to one over positions."""
        b, c, h, w = x.shape
        return attention_weights(x.reshape(b, c, h * w), self.conv_mask.weight, self.conv_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            from gcnas.blocks import fast_pool  # imports Triton, so only where asked for

            if fast_pool.fast_pool_available(x):
                return fast_pool.attention_pool(x, self.conv_mask.weight, self.conv_mask.bias)
        return pool_context(x, self.conv_mask.weight, self.conv_mask.bias)[0]


# ``supernet``: how the one-shot supernet shares the entry's weights ("mask": one attention conv per site, read by every
# att candidate; "weightless"); an entry without it is refused there.
CONTEXTS: Registry[type] = Registry("context")
CONTEXTS.register("avg", AvgContext, supernet="weightless")
CONTEXTS.register("att", AttentionContext, supernet="mask")

