"""One autograd function for context modeling + fusion, with a hand-derived backward.

The global context block touches the big (B, C, H, W) tensor only in context modeling and fusion; the transform runs
on a (B, C) vector. Plain autograd of ``x + t(softmax(W_k x) . x)`` materialises two full-size gradient tensors (one
from each use of x in attention pooling) and sums them with the fusion's gradient: several extra passes over memory
and two extra full-size buffers. Here the gradient of x is assembled in one pass:

    out = x * s + t                           s = gate(T_s(c)), t = T_a(c)   (either may be absent)
    c   = sum_j p_j x_j,   p = softmax(W_k x)   (attention)   or   c = mean_j x_j   (average)

    dL/dt   = sum_j g_j                       dL/ds = sum_j g_j * x_j          (per channel)
    dL/dc   = autograd through the small transforms
    q_j     = <dL/dc, x_j>,  u_j = p_j (q_j - <dL/dc, c>)      (softmax backward; <p, q> = <dL/dc, c>)
    dL/dx_j = g_j * s + p_j dL/dc + u_j W_k                    (a rank-2 update: one batched matmul)
    dL/dW_k = sum_b sum_j u_j x_j,   dL/db_k = 0               (softmax is shift invariant)

Nothing full-size is saved beyond the input itself. The transforms keep ordinary autograd: their graph is built in the
forward on a detached copy of c and differentiated in the backward. This path is used for training in eager mode;
inference, ``torch.compile``, tracing and ONNX export use the plain composition of the same operations. The forward
here is that composition's pieces (:func:`~gcnas.blocks.context.pool_context`, the block's transform terms,
:func:`~gcnas.blocks.fusion.fuse`) with the transforms' graph kept apart; only the backward is written out.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.autograd.function import once_differentiable

from gcnas.blocks.context import pool, pool_context
from gcnas.blocks.fusion import fuse

if TYPE_CHECKING:
    from gcnas.blocks.global_context import GlobalContextBlock

__all__ = ["global_context_fused"]


def _rowdot(a3: torch.Tensor, b3: torch.Tensor) -> torch.Tensor:
    """``sum_j a[b, c, j] * b[b, c, j]`` as (B, C) without a full-size temporary where the layout allows it."""
    b, c, n = a3.shape
    if a3.stride(-1) == 1 and b3.stride(-1) == 1 and a3.is_contiguous() and b3.is_contiguous():
        return torch.bmm(a3.reshape(b * c, 1, n), b3.reshape(b * c, n, 1)).reshape(b, c)
    return (a3 * b3).sum(-1)


class _GlobalContextFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, block, mask_weight, mask_bias, *params):  # noqa: D401 - autograd signature
        pooled, p = pool_context(x, mask_weight)  # the bias has no effect on p (see context.py)
        with torch.enable_grad():
            cvec = pooled.detach().requires_grad_()
            gate, add = block.transform_terms(cvec)
        out = fuse(x, None if gate is None else gate.detach(), None if add is None else add.detach())
        ctx.save_for_backward(x, mask_weight, p, pooled)
        ctx.inner = (cvec, gate, add)
        ctx.params = params
        ctx.has_bias = mask_bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, mask_weight, p, pooled = ctx.saved_tensors
        cvec, gate, add = ctx.inner
        params = ctx.params
        b, c, h, w = x.shape
        n = h * w
        x3 = x.reshape(b, c, n)
        g3 = g.reshape(b, c, n)

        outs, grads = [], []
        if add is not None:
            outs.append(add)
            grads.append(g3.sum(-1).to(add.dtype))
        if gate is not None:
            outs.append(gate)
            grads.append(_rowdot(g3, x3).to(gate.dtype))
        trainable = [i for i, prm in enumerate(params) if prm.requires_grad]
        # retain_graph: the small inner graph lives as long as this node, so backward(retain_graph=True) can rerun.
        inner = torch.autograd.grad(outs, [cvec] + [params[i] for i in trainable], grads, allow_unused=True,
                                    retain_graph=True)
        grad_c = inner[0] if inner[0] is not None else torch.zeros_like(cvec)
        grad_c = grad_c.to(x.dtype)
        grad_params: list = [None] * len(params)
        for i, gp in zip(trainable, inner[1:]):
            grad_params[i] = torch.zeros_like(params[i]) if gp is None else gp

        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        grad_x = grad_w = grad_bias = None
        scale = None if gate is None else gate.detach().to(x.dtype).unsqueeze(-1)
        if mask_weight is not None and (need_x or need_w):
            q = torch.matmul(grad_c.unsqueeze(1), x3).squeeze(1)  # (B, N)
            u = p * (q - (grad_c * pooled).sum(-1, keepdim=True))
            if need_x:
                wk = mask_weight.reshape(1, c, 1).to(x.dtype).expand(b, c, 1)
                lhs = torch.cat([grad_c.unsqueeze(-1), wk], dim=2)  # (B, C, 2)
                rhs = torch.stack([p, u], dim=1)  # (B, 2, N)
                grad_x = (g3 * scale).baddbmm_(lhs, rhs) if scale is not None else torch.baddbmm(g3, lhs, rhs)
            if need_w:
                grad_w = pool(x3, u).sum(0).reshape(mask_weight.shape).to(mask_weight.dtype)
        elif need_x:
            mean_term = (grad_c / n).unsqueeze(-1)
            grad_x = torch.addcmul(mean_term, g3, scale) if scale is not None else g3 + mean_term
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = torch.zeros(1, dtype=mask_weight.dtype, device=mask_weight.device)
        if grad_x is not None:
            grad_x = grad_x.reshape(b, c, h, w)
        return (grad_x, None, grad_w, grad_bias, *grad_params)


def global_context_fused(block: "GlobalContextBlock", x: torch.Tensor) -> torch.Tensor:
    """The block's forward through :class:`_GlobalContextFunction` (training path)."""
    conv = getattr(block.context, "conv_mask", None)
    weight = None if conv is None else conv.weight
    bias = None if conv is None else conv.bias
    return _GlobalContextFunction.apply(x, block, weight, bias, *block.transform_parameters())
