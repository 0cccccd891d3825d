"""The query-dependent Non-local block, for comparison and for the paper's analysis.

Papers: Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018 (arXiv:1711.07971); and Cao et al.,
"GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019 (arXiv:1904.11492), section 3.

For every query position i the NL block computes its own attention over all positions j,

    z_i = x_i + W_z sum_j f(x_i, x_j) / C(x) * W_v x_j,

which costs O((HW)^2) time and memory. GCNet observes that after training these maps are nearly the same for every
query, which motivates the query-independent global context block. ``return_attention=True`` returns all maps,
(B, HW, HW) with row i the map of query i, for that analysis.

Pairwise functions (``mode``):

* ``embedded_gaussian``: ``softmax_j(theta(x_i) . phi(x_j) / sqrt(d))`` (d the embedding width; ``scale=False``
  drops it)
* ``gaussian``: ``softmax_j(x_i . x_j)``, no embeddings
* ``dot``: ``theta(x_i) . phi(x_j) / N``, no softmax

``W_z`` starts at zero, so the block is the identity at initialisation.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from gcnas.blocks.layers import init_official_
from gcnas.blocks.transform import check_ratio
from gcnas.errors import ConfigError

__all__ = ["NonLocalBlock", "NL_MODES", "NL_DEFAULTS"]

NL_MODES = ("embedded_gaussian", "gaussian", "dot")
NL_DEFAULTS = {"ratio": 1 / 2, "mode": "embedded_gaussian"}  # the NL paper's block; every NL default reads these
_OWNER = "NonLocalBlock"


class NonLocalBlock(nn.Module):
    """Non-local block with a residual connection.

    Args:
        channels: input and output channels C.
        ratio: embedding width ``floor(C * ratio)`` of ``theta``, ``phi`` and ``g``, in (0, 1]; the NL paper uses 1/2.
        mode: pairwise function, one of ``"embedded_gaussian"``, ``"gaussian"``, ``"dot"``.
        scale: divide ``embedded_gaussian`` logits by ``sqrt(d)``.
    """

    def __init__(self, channels: int, ratio: float = NL_DEFAULTS["ratio"], mode: str = NL_DEFAULTS["mode"], *,
                 scale: bool = True) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
            raise ConfigError(f"{_OWNER}: channels must be a positive integer; got {channels!r}")
        check_ratio(ratio, _OWNER)
        if mode not in NL_MODES:
            raise ConfigError(f"{_OWNER}: mode must be one of {', '.join(map(repr, NL_MODES))}; got {mode!r}")
        inner = int(channels * ratio + 1e-6)
        if inner < 1:
            raise ConfigError(f"{_OWNER}: ratio={ratio!r} leaves no embedding channel for channels={channels}; "
                              f"valid ratios are in [1/{channels}, 1]")
        self.channels = int(channels)
        self.ratio = float(ratio)
        self.mode = mode
        self.inner_channels = inner
        self.scale = bool(scale)
        if mode != "gaussian":
            self.theta = nn.Conv2d(channels, inner, kernel_size=1)
            self.phi = nn.Conv2d(channels, inner, kernel_size=1)
        else:
            self.theta = self.phi = None
        self.g = nn.Conv2d(channels, inner, kernel_size=1)
        self.conv_out = nn.Conv2d(inner, channels, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_official_(kaiming=[self.theta, self.phi, self.g], zero=[self.conv_out])

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """All attention maps, (B, N, N): row i is the map of query position i over the N = H*W positions."""
        b, c, h, w = x.shape
        n = h * w
        if self.mode == "gaussian":
            xs = x.reshape(b, c, n)
            return torch.softmax(torch.bmm(xs.transpose(1, 2), xs), dim=-1)
        q = self.theta(x).reshape(b, self.inner_channels, n)
        k = self.phi(x).reshape(b, self.inner_channels, n)
        logits = torch.bmm(q.transpose(1, 2), k)
        if self.mode == "dot":
            return logits / n
        if self.scale:
            logits = logits / math.sqrt(self.inner_channels)
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ConfigError(f"{_OWNER}: expected input of shape (B, {self.channels}, H, W); got {tuple(x.shape)}")
        b, _, h, w = x.shape
        attn = self.attention(x)
        v = self.g(x).reshape(b, self.inner_channels, h * w)
        y = torch.bmm(v, attn.transpose(1, 2)).reshape(b, self.inner_channels, h, w)
        out = x + self.conv_out(y)
        return (out, attn) if return_attention else out

    def extra_repr(self) -> str:
        return f"{self.channels}, ratio={self.ratio:g}, mode={self.mode!r}, inner_channels={self.inner_channels}"
