"""Plain re-statements of the papers' formulas, written independently of gcnas's implementation.

They read a block's parameters and recompute its output with einsum, so the tests can compare gcnas (fused and
unfused paths) against the maths rather than against itself.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def reference_global_context(block, x: torch.Tensor) -> torch.Tensor:
    """Cao et al. 2019, eq. (3)-(4) generalised: z = x * sigmoid(T_s(c)) + T_a(c), c = sum_j p_j x_j."""
    b, ch, h, w = x.shape
    xs = x.reshape(b, ch, h * w)
    if block.context_name == "att":
        wk = block.context.conv_mask.weight.reshape(ch)
        logits = torch.einsum("c,bcn->bn", wk, xs) + block.context.conv_mask.bias
        p = torch.softmax(logits, dim=-1)
        c = torch.einsum("bn,bcn->bc", p, xs)
    else:
        c = xs.mean(dim=-1)

    def transform(t, v):
        if block.transform_name == "identity":
            return v
        if block.transform_name == "conv":
            return v @ t.fc.weight.T + t.fc.bias
        hid = v @ t.fc1.weight.T + t.fc1.bias
        if block.norm_name == "layernorm":
            mu = hid.mean(-1, keepdim=True)
            var = hid.var(-1, unbiased=False, keepdim=True)
            hid = (hid - mu) / torch.sqrt(var + block.norm_eps) * t.norm.weight + t.norm.bias
        elif block.norm_name == "batchnorm":
            if t.norm.training:
                mu, var = hid.mean(0), hid.var(0, unbiased=False)
            else:
                mu, var = t.norm.running_mean, t.norm.running_var
            hid = (hid - mu) / torch.sqrt(var + block.norm_eps) * t.norm.weight + t.norm.bias
        hid = t.act(hid)
        return hid @ t.fc2.weight.T + t.fc2.bias

    out = x
    if "scale" in block.fusion:
        s = transform(block.scale_transform, c)
        s = torch.sigmoid(s) if block.gate_name == "sigmoid" else F.hardsigmoid(s)
        out = out * s[:, :, None, None]
    if "add" in block.fusion:
        out = out + transform(block.add_transform, c)[:, :, None, None]
    return out


def reference_nonlocal(block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wang et al. 2018, eq. (1)-(2): z_i = x_i + W_z sum_j f(x_i, x_j)/C(x) g(x_j)."""
    b, ch, h, w = x.shape
    n = h * w
    xs = x.reshape(b, ch, n)

    def conv(m, v):
        return torch.einsum("oc,bcn->bon", m.weight.reshape(m.out_channels, -1), v) + m.bias[None, :, None]

    if block.mode == "gaussian":
        attn = torch.softmax(torch.einsum("bci,bcj->bij", xs, xs), dim=-1)
    else:
        th, ph = conv(block.theta, xs), conv(block.phi, xs)
        f = torch.einsum("bci,bcj->bij", th, ph)
        if block.mode == "dot":
            attn = f / n
        else:
            attn = torch.softmax(f / math.sqrt(block.inner_channels) if block.scale else f, dim=-1)
    y = torch.einsum("bij,bcj->bci", attn, conv(block.g, xs))
    return x + conv(block.conv_out, y).reshape(b, ch, h, w), attn


class MMCVContextBlock(nn.Module):
    """The official GCNet / mmcv ContextBlock layout (module names and shapes), from the paper's formulas.

    Used to produce state dicts with the official keys; its forward is the paper's GC block.
    """

    def __init__(self, in_channels: int, ratio: float, pooling_type: str = "att",
                 fusion_types: tuple = ("channel_add",)) -> None:
        super().__init__()
        planes = int(in_channels * ratio)
        self.pooling_type = pooling_type
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1)

        def mlp():
            return nn.Sequential(nn.Conv2d(in_channels, planes, 1), nn.LayerNorm([planes, 1, 1]), nn.ReLU(),
                                 nn.Conv2d(planes, in_channels, 1))

        self.channel_add_conv = mlp() if "channel_add" in fusion_types else None
        self.channel_mul_conv = mlp() if "channel_mul" in fusion_types else None

    def forward(self, x):
        b, c, h, w = x.shape
        if self.pooling_type == "att":
            p = torch.softmax(self.conv_mask(x).reshape(b, 1, h * w), dim=-1)
            ctx = torch.einsum("bn,bcn->bc", p[:, 0], x.reshape(b, c, h * w))[:, :, None, None]
        else:
            ctx = x.mean(dim=(2, 3), keepdim=True)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(ctx))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(ctx)
        return out


def randomize_(module: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Give every parameter and norm buffer random values, so zero-initialised layers do not hide errors."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * std)
    return module
