"""Attention pooling in one read of the input: an online-softmax weighted sum, as Triton kernels.

Paper: Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019
(arXiv:1904.11492), section 4.1 (attention pooling); the online softmax is Milakov and Gimelshein, "Online
normalizer calculation for softmax" (arXiv:1805.02867), as FlashAttention uses it.

Attention pooling ``c = sum_j softmax(W_k x)_j x_j`` composed from torch operations reads the (B, C, N) input twice
(the logits, then the weighted sum), and its autograd writes two full-size gradients (one per use of x) and sums
them. Here the forward reads each chunk of positions once from memory: the logits of a chunk, then a running max
``m``, a running denominator ``l`` and a running weighted sum of x, rescaled by ``exp(m_old - m_new)`` whenever the
max grows; the chunk is re-read from cache, not from memory, for the weighted sum.
Positions are split over programs (B x S of them) and the S partial sums merged in float32. The backward recomputes
the weights from the saved logits, max and denominator, and writes

    dL/dx_j = p_j dL/dc + u_j W_k,   u_j = p_j (<dL/dc, x_j> - <dL/dc, c>),   dL/dW_k = sum_b sum_j u_j x_j

reading x once more and writing one full-size gradient. The mask conv's bias has no effect (softmax is shift
invariant): its gradient is zero.

Used by :class:`~gcnas.blocks.context.AttentionContext` with ``fast = True`` (:func:`set_fast_pool` switches every
one in a model) on a CUDA input in eager mode; ``torch.compile``, tracing, export and the CPU keep the reference
composition. On the CPU the kernels run under Triton's interpreter in a process started with ``TRITON_INTERPRET=1``
(tests). Parameters and state_dict keys are the reference's; results agree within float32 / bfloat16 rounding.
"""
from __future__ import annotations

import contextlib
import functools
import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

try:  # the CUDA builds of torch ship Triton; a CPU-only install keeps the reference path
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = tl = None

__all__ = ["attention_pool", "fast_pool_available", "set_fast_pool"]

_BLOCK_C = 64
_BLOCK_N = 64


def _interpreted() -> bool:
    """Whether this process runs Triton kernels through its interpreter: decided once, by ``TRITON_INTERPRET=1`` at
    the moment Triton was imported, when its own library (``tl.sum``, ...) was built for one mode or the other."""
    return not isinstance(tl.sum, triton.runtime.JITFunction)


def fast_pool_available(x: torch.Tensor) -> bool:
    """Whether :func:`attention_pool` can run on ``x`` here: Triton is installed and x is on a CUDA device (or on
    the CPU in a process that imported Triton with ``TRITON_INTERPRET=1``), in eager mode, a non-empty float32,
    float16 or bfloat16 tensor (the kernels accumulate in float32: float64 keeps the reference)."""
    if triton is None or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16) or x.numel() == 0:
        return False
    return x.device.type == "cuda" or (x.device.type == "cpu" and _interpreted())


def set_fast_pool(model: nn.Module, enabled: bool = True) -> int:
    """Switch the one-read attention pooling on (or off) for every attention context in ``model``; returns how many
    there are. Changes no parameter, buffer or state_dict key."""
    from gcnas.blocks.context import AttentionContext

    found = [m for m in model.modules() if isinstance(m, AttentionContext)]
    for m in found:
        m.fast = bool(enabled)
    return len(found)


def _forward_kernel(x_ptr, w_ptr, logit_ptr, acc_ptr, m_ptr, l_ptr, C, N, span, S, stride_b, stride_c, stride_n,
                    BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (sample b, split s): positions [s * span, (s + 1) * span) of sample b."""
    b = tl.program_id(0)
    s = tl.program_id(1)
    start = s * span
    end = tl.minimum(start + span, N)
    x_b = x_ptr + b.to(tl.int64) * stride_b
    acc_row = acc_ptr + (b * S + s).to(tl.int64) * C
    m = -float("inf")
    den = 0.0
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        logits = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            mask_c = offs_c < C
            xt = tl.load(x_b + offs_c[:, None] * stride_c + offs_n[None, :] * stride_n,
                         mask=mask_c[:, None] & mask_n[None, :], other=0.0).to(tl.float32)
            w = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
            logits += tl.sum(xt * w[:, None], axis=0)
        logits = tl.where(mask_n, logits, -float("inf"))
        tl.store(logit_ptr + b.to(tl.int64) * N + offs_n, logits, mask=mask_n)
        m_new = tl.maximum(m, tl.max(logits, axis=0))
        alpha = tl.exp(m - m_new)
        e = tl.exp(logits - m_new)
        den = den * alpha + tl.sum(e, axis=0)
        for c0 in range(0, C, BLOCK_C):  # the same tile again: a cache hit, not a second read from memory
            offs_c = c0 + tl.arange(0, BLOCK_C)
            mask_c = offs_c < C
            xt = tl.load(x_b + offs_c[:, None] * stride_c + offs_n[None, :] * stride_n,
                         mask=mask_c[:, None] & mask_n[None, :], other=0.0).to(tl.float32)
            acc = tl.load(acc_row + offs_c, mask=mask_c, other=0.0)
            tl.store(acc_row + offs_c, acc * alpha + tl.sum(xt * e[None, :], axis=1), mask=mask_c)
        m = m_new
    tl.store(m_ptr + b * S + s, m)
    tl.store(l_ptr + b * S + s, den)


def _backward_kernel(x_ptr, w_ptr, logit_ptr, mx_ptr, den_ptr, gc_ptr, k_ptr, dx_ptr, dw_ptr, C, N, span, S,
                     stride_b, stride_c, stride_n, dstride_b, dstride_c, dstride_n,
                     NEED_X: tl.constexpr, NEED_W: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (sample, split), as the forward: dL/dx of its positions and its part of dL/dW_k."""
    b = tl.program_id(0)
    s = tl.program_id(1)
    start = s * span
    end = tl.minimum(start + span, N)
    x_b = x_ptr + b.to(tl.int64) * stride_b
    dx_b = dx_ptr + b.to(tl.int64) * dstride_b
    gc_b = gc_ptr + b.to(tl.int64) * C
    dw_row = dw_ptr + (b * S + s).to(tl.int64) * C
    mx = tl.load(mx_ptr + b)
    inv_den = 1.0 / tl.load(den_ptr + b)
    k = tl.load(k_ptr + b)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        logits = tl.load(logit_ptr + b.to(tl.int64) * N + offs_n, mask=mask_n, other=-float("inf"))
        p = tl.exp(logits - mx) * inv_den
        q = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            mask_c = offs_c < C
            xt = tl.load(x_b + offs_c[:, None] * stride_c + offs_n[None, :] * stride_n,
                         mask=mask_c[:, None] & mask_n[None, :], other=0.0).to(tl.float32)
            g = tl.load(gc_b + offs_c, mask=mask_c, other=0.0)
            q += tl.sum(xt * g[:, None], axis=0)
        u = p * (q - k)
        for c0 in range(0, C, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            mask_c = offs_c < C
            mask = mask_c[:, None] & mask_n[None, :]
            if NEED_X:
                g = tl.load(gc_b + offs_c, mask=mask_c, other=0.0)
                w = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
                dx = g[:, None] * p[None, :] + w[:, None] * u[None, :]
                tl.store(dx_b + offs_c[:, None] * dstride_c + offs_n[None, :] * dstride_n,
                         dx.to(dx_ptr.dtype.element_ty), mask=mask)
            if NEED_W:
                xt = tl.load(x_b + offs_c[:, None] * stride_c + offs_n[None, :] * stride_n, mask=mask,
                             other=0.0).to(tl.float32)
                acc = tl.load(dw_row + offs_c, mask=mask_c, other=0.0)
                tl.store(dw_row + offs_c, acc + tl.sum(xt * u[None, :], axis=1), mask=mask_c)


@functools.cache
def _kernels():
    """The two kernels, compiled for the GPU or run by the interpreter, as the rest of Triton is in this process."""
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = _interpreted()
        return triton.jit(_forward_kernel), triton.jit(_backward_kernel)


def _on(x: torch.Tensor):
    """Launch on x's GPU, not the current one (Triton launches on the current device)."""
    return torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()


def _splits(b: int, n: int, block_n: int, device: torch.device, splits: int | None) -> tuple[int, int]:
    """(positions per program, programs per sample): enough programs to fill the GPU's multiprocessors a few times
    over, each a whole number of chunks, none empty."""
    chunks = math.ceil(n / block_n)
    if splits is None:
        units = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
        splits = math.ceil(4 * units / b)
    per = math.ceil(chunks / max(1, min(splits, chunks)))
    span = per * block_n
    return span, math.ceil(n / span)


class _AttentionPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x3, weight, bias, block_c, block_n, splits):  # noqa: D401 - autograd signature
        b, c, n = x3.shape
        fwd, _ = _kernels()
        span, s = _splits(b, n, block_n, x3.device, splits)
        f32 = dict(device=x3.device, dtype=torch.float32)
        logits = torch.empty(b, n, **f32)
        acc = torch.zeros(b, s, c, **f32)
        m = torch.empty(b, s, **f32)
        den = torch.empty(b, s, **f32)
        w = weight.reshape(-1)
        with _on(x3):
            fwd[(b, s)](x3, w, logits, acc, m, den, c, n, span, s, *x3.stride(), BLOCK_C=block_c, BLOCK_N=block_n)
        mx = m.amax(1)
        rescale = torch.exp(m - mx[:, None])
        total = (den * rescale).sum(1)
        pooled = (acc * rescale[..., None]).sum(1) / total[:, None]
        ctx.save_for_backward(x3, weight, logits, mx, total, pooled)
        ctx.config = (block_c, block_n, span, s)
        ctx.bias = None if bias is None else (bias.shape, bias.dtype, bias.device)
        return pooled.to(x3.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x3, weight, logits, mx, total, pooled = ctx.saved_tensors
        block_c, block_n, span, s = ctx.config
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # zero, as the reference's up to rounding: the bias keeps a gradient, so optimizers treat it alike
        grad_bias = None if ctx.bias is None or not ctx.needs_input_grad[2] else torch.zeros(
            ctx.bias[0], dtype=ctx.bias[1], device=ctx.bias[2])
        if not (need_x or need_w):
            return None, None, grad_bias, None, None, None
        b, c, n = x3.shape
        _, bwd = _kernels()
        gc = grad.float().contiguous()
        k = (gc * pooled).sum(1)
        dx = torch.empty_like(x3) if need_x else x3  # x3 is a placeholder the kernel does not write to
        dw = torch.zeros(b, s, c, device=x3.device, dtype=torch.float32) if need_w else pooled
        with _on(x3):
            bwd[(b, s)](x3, weight.reshape(-1), logits, mx, total, gc, k, dx, dw, c, n, span, s, *x3.stride(),
                        *dx.stride(), NEED_X=need_x, NEED_W=need_w, BLOCK_C=block_c, BLOCK_N=block_n)
        grad_w = dw.sum((0, 1)).reshape(weight.shape).to(weight.dtype) if need_w else None
        return (dx if need_x else None), grad_w, grad_bias, None, None, None


def attention_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                   block_c: int = _BLOCK_C, block_n: int = _BLOCK_N, splits: int | None = None) -> torch.Tensor:
    """``sum_j softmax(W_k x + b_k)_j x_j`` of ``x`` (B, C, H, W) for the mask conv's ``weight`` (C elements) and
    ``bias`` (no effect; its gradient is zero), as (B, C) in x's dtype, through the one-read kernels (see
    :func:`fast_pool_available`). ``block_c`` and ``block_n`` (powers of two) size a tile; ``splits`` sets how many
    programs share a sample's positions (default: from the GPU's size).
    """
    if triton is None:
        raise RuntimeError("attention_pool needs Triton, which ships with the CUDA builds of torch")
    if x.device.type != "cuda" and not _interpreted():
        raise RuntimeError(f"attention_pool runs on CUDA tensors, or on {x.device.type} tensors in a process started "
                           "with TRITON_INTERPRET=1 (Triton's interpreter)")
    b, c, h, w = x.shape
    return _AttentionPool.apply(x.reshape(b, c, h * w), weight, bias, block_c, block_n, splits)
