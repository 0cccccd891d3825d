"""The observation GCNet starts from: in a trained Non-local network, the attention maps of different query positions
are almost the same, so one query-independent map can replace them (Cao et al., GCNet, ICCVW 2019, Sec. 3.1).

For every :class:`~gcnas.blocks.NonLocalBlock` in a model, on a batch of images, three averages of the cosine distance
``1 - cos(a, b)`` over all pairs of positions ``i != j`` (then over images):

* ``input``: between the block's input features ``x_i`` and ``x_j`` (C-dim vectors);
* ``output``: between the non-local context the block computes for query ``i`` and for query ``j``,
  ``y_i = sum_k a_ik g(x_k)`` (before the output 1x1 conv and the residual add; with a zero-initialised output conv the
  block's own output equals its input at initialisation, which would say nothing);
* ``attention``: between the attention maps ``a_i`` and ``a_j`` (N-dim vectors over the positions).

A query-independent block has ``output = attention = 0`` whatever its input. Compare a trained model with the same
architecture at initialisation to see what training did.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gcnas.blocks import NonLocalBlock
from gcnas.errors import ConfigError

__all__ = ["NLStats", "pairwise_cosine_distance", "nl_statistics", "nl_blocks"]


@dataclass
class NLStats:
    name: str  # the block's module path in the model
    positions: int  # N = H * W
    input: float
    output: float
    attention: float


def pairwise_cosine_distance(v: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between the N vectors of each sample, averaged over samples. ``v``: (B, N, D).

    Pairs with an all-zero vector have no direction and are left out (at initialisation a block after a zero-init
    BatchNorm sees only zeros); NaN when no sample has two non-zero vectors.
    """
    v = v.double()
    norms = v.norm(dim=-1)
    valid = norms > 1e-12 * norms.amax(dim=-1, keepdim=True).clamp_min(1e-300)  # (B, N)
    f = v / norms.clamp_min(1e-300).unsqueeze(-1)
    sim = torch.bmm(f, f.transpose(1, 2))
    pairs = valid.unsqueeze(2) & valid.unsqueeze(1)
    pairs &= ~torch.eye(v.shape[1], dtype=torch.bool, device=v.device)
    count = pairs.sum(dim=(1, 2))
    keep = count > 0
    if not bool(keep.any()):
        return torch.tensor(float("nan"), dtype=torch.float64)
    per_sample = (sim * pairs).sum(dim=(1, 2))[keep] / count[keep]
    return (1.0 - per_sample).mean()


def nl_blocks(model: nn.Module) -> list[tuple[str, NonLocalBlock]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, NonLocalBlock)]


@torch.no_grad()
def nl_statistics(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> list[NLStats]:
    """The three distances for every NL block of ``model`` on ``images`` (B, C, H, W), in eval mode."""
    blocks = nl_blocks(model)
    if not blocks:
        raise ConfigError("the model has no NonLocalBlock; insert one (spec kind: nl) to analyse it")
    sums = {name: [0.0, 0.0, 0.0, 0, 0] for name, _ in blocks}  # input, output, attention, images, positions

    def hook(name):
        def fn(module: NonLocalBlock, args, _out):
            x = args[0]
            b, c, h, w = x.shape
            attn = module.attention(x)  # (B, N, N), row i = map of query i
            v = module.g(x).reshape(b, module.inner_channels, h * w)
            y = torch.bmm(v, attn.transpose(1, 2))  # (B, inner, N): context for every query
            s = sums[name]
            s[0] += float(pairwise_cosine_distance(x.reshape(b, c, h * w).transpose(1, 2))) * b
            s[1] += float(pairwise_cosine_distance(y.transpose(1, 2))) * b
            s[2] += float(pairwise_cosine_distance(attn)) * b
            s[3] += b
            s[4] = h * w
        return fn

    was = model.training
    model.eval()
    handles = [m.register_forward_hook(hook(name)) for name, m in blocks]
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return [NLStats(name, s[4], s[0] / s[3], s[1] / s[3], s[2] / s[3]) for name, s in sums.items()]
