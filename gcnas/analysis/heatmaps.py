"""The paper's attention figure: images with query positions marked, and each query's NL attention map."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gcnas.analysis.nl_stats import nl_blocks
from gcnas.errors import ConfigError

__all__ = ["default_queries", "attention_maps", "attention_figure"]

_COLOURS = ["#e41a1c", "#377eb8", "#4daf4a", "#ff7f00", "#984ea3", "#ffff33"]


def default_queries(h: int, w: int, k: int = 4) -> list[tuple[int, int]]:
    """``k`` query positions spread over an h x w feature map: the centre first, then the quarter points."""
    cands = [(h // 2, w // 2), (h // 4, w // 4), (h // 4, (3 * w) // 4), ((3 * h) // 4, w // 4),
             ((3 * h) // 4, (3 * w) // 4), (h // 2, w // 4)]
    out: list[tuple[int, int]] = []
    for c in cands:
        if c not in out:
            out.append(c)
    return out[:k]


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor, block: Optional[str] = None) -> tuple[str, torch.Tensor]:
    """(block name, attention (B, h, w, h, w)) of one NL block (default: the first) for ``images``."""
    blocks = dict(nl_blocks(model))
    if not blocks:
        raise ConfigError("the model has no NonLocalBlock")
    name = block or next(iter(blocks))
    if name not in blocks:
        raise ConfigError(f"block: {name!r} is not an NL block of the model; NL blocks: {', '.join(blocks)}")
    seen = {}

    def hook(module, args, _out):
        x = args[0]
        seen["attn"] = module.attention(x).reshape(x.shape[0], x.shape[2], x.shape[3], x.shape[2], x.shape[3])

    was = model.training
    model.eval()
    handle = blocks[name].register_forward_hook(hook)
    try:
        model(images)
    finally:
        handle.remove()
        model.train(was)
    return name, seen["attn"]


def attention_figure(model: nn.Module, images: torch.Tensor, shown: np.ndarray, path: str | Path,
                     queries: Optional[Sequence[tuple[int, int]]] = None, k: int = 4, block: Optional[str] = None,
                     title: str = "") -> Path:
    """One row per image: the image with ``k`` query positions marked, then each query's attention map over the image.

    ``images``: the model's inputs (B, C, H, W); ``shown``: the same images for display, (B, H, W) or (B, H, W, 3)
    in [0, 1].
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    name, attn = attention_maps(model, images, block)
    b, h, w = attn.shape[:3]
    queries = list(queries or default_queries(h, w, k))
    H, W = shown.shape[1], shown.shape[2]
    with plt.style.context("default"):
        fig, axes = plt.subplots(b, 1 + len(queries), figsize=(2.1 * (1 + len(queries)), 2.2 * b), squeeze=False)
        cmap = "gray" if shown.ndim == 3 else None
        for r in range(b):
            ax = axes[r, 0]
            ax.imshow(shown[r], cmap=cmap, vmin=0, vmax=1)
            for qi, (qy, qx) in enumerate(queries):
                ax.scatter([(qx + 0.5) * W / w - 0.5], [(qy + 0.5) * H / h - 0.5], s=60,
                           c=_COLOURS[qi % len(_COLOURS)], edgecolors="white", linewidths=1.2)
            ax.set_axis_off()
            if r == 0:
                ax.set_title("queries", fontsize=9)
            for qi, (qy, qx) in enumerate(queries):
                a = attn[r, qy, qx][None, None].float()
                up = F.interpolate(a, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
                ax = axes[r, 1 + qi]
                ax.imshow(shown[r], cmap=cmap, vmin=0, vmax=1)
                ax.imshow(up, cmap="jet", alpha=0.55)
                ax.scatter([(qx + 0.5) * W / w - 0.5], [(qy + 0.5) * H / h - 0.5], s=40,
                           c=_COLOURS[qi % len(_COLOURS)], edgecolors="white", linewidths=1.0)
                ax.set_axis_off()
                if r == 0:
                    ax.set_title(f"query {qi + 1} ({qy},{qx})", fontsize=9)
        fig.suptitle(title or f"attention maps of {name} ({h}x{w} positions)", fontsize=10)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return path
