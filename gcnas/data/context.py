"""A generated task whose label needs the whole image: a target's colour, re-read through a faint global tint.

Each RGB image holds one *target*, a solid square in one of ``num_colours`` colours (red, green, blue, yellow) at a
random place. Everything outside a ``margin`` around the target is tinted, faintly, magenta or cyan: the image's cue
bit. Gaussian pixel noise of std ``noise`` lies over the whole image (colours are 0/1, the tint is ``tint``). The label
is the target's colour index shifted by the cue, ``(colour + cue * (num_colours // 2)) % num_colours``, so neither the
target nor the tint alone names the class.

Why it rewards global context. With the cue unknown, the target's colour leaves two classes equally likely, and the
cue alone says nothing (every class is equally likely under each cue), so the label is an XOR of a local fact and a
global one. A plain CNN ends with global average pooling and a linear head, whose logits are sums over positions of
per-position features: from pooled "red target here" and pooled "magenta tint here" a linear head can only add
evidence, never let one flip the other, so it tops out at the 50% a known colour gives unless some position's own
features already hold both. The tint is weak per pixel (its per-pixel signal is about the noise) but spread over most
of the image, so an average over the whole image reads it cleanly, and it is absent next to the target, so a position
at the target must bring it in across the margin. A GC block does exactly that: it pools the image into one vector
and adds a transform of it to every position, so the convolutions after it see the target and the cue together.

What a plain CNN can still do, and what was measured. Its receptive field grows with depth: on ``gcnas_resnet_tiny``
at 28x28 the stage maps are 14, 7, 4 and 2 wide and the last stage's 3x3 convolutions mix the whole image, so with
enough training the plain backbone learns the gate too. At the search's budget (``conf/data/context.yaml``: 5,875
training images, 4 epochs of the proxy trainer) it mostly does not: over seeds 0-2 and 10-12
(docs/results.md, "The context task") plain 63.5 +- 15.1% (one seed of six jumped to
93.9%), the paper's GC 79.9 +- 13.4%, and the architectures the search finds (``benchmarks/recovery.py``) 100% on
every confirmation seed. With twice the images and epochs the plain backbone (seeds 0, 1) and every GC architecture
measured reach 100%: the task rewards learning fast with global context, so measure it at the search's budget and
compare means over seeds, not single runs.

Determinism: everything is drawn from ``numpy.random.default_rng(seed)``; the same config gives the same arrays.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from gcnas.errors import ConfigError

__all__ = ["make_context_task", "TARGET_COLOURS", "TINT_COLOURS"]

# Pure, saturated colours so a 1x1 filter tells the targets apart: what the task tests is where the evidence is, not
# how hard the target is to see. The tints differ from every target colour.
TARGET_COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}
TINT_COLOURS = {"magenta": (1, 0, 1), "cyan": (0, 1, 1)}

# Pixel values v (targets near 0..1, noise and tint around them) are stored as uint8 (v + _LOW) / _SPAN * 255.
_LOW, _SPAN = 0.75, 2.5


def _number(cfg: Mapping[str, Any], key: str, default, kind, low, high, what: str):
    value = cfg.get(key, default)
    try:
        value = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"data.{key}: must be {what}; got {value!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"data.{key}: must be {what}; got {value!r}")
    return value


def make_context_task(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Images and labels of the context task (the dict contract of the ``DATASETS`` readers).

    Keys of ``cfg`` (defaults in brackets): ``size`` [9000] images, ``image_size`` [28], ``num_colours`` [4] target
    colours (= classes, 2 to 4), ``object_size`` [6] target side, ``margin`` [5] untinted pixels around the target,
    ``tint`` [0.2] tint strength (colours are 0/1), ``noise`` [0.2] pixel noise std, ``seed`` [0]. One eighth of the
    images come back as ``test_x`` / ``test_y``. Images are uint8, (N, 3, image_size, image_size).
    """
    n = _number(cfg, "size", 9000, int, 16, 10 ** 7, "an integer from 16 to 10000000")
    s = _number(cfg, "image_size", 28, int, 8, 512, "an integer from 8 to 512")
    k = _number(cfg, "num_colours", 4, int, 2, len(TARGET_COLOURS), f"an integer from 2 to {len(TARGET_COLOURS)}")
    g = _number(cfg, "object_size", 6, int, 1, s - 2, f"an integer from 1 to image_size - 2 ({s - 2})")
    m = _number(cfg, "margin", 5, int, 0, (s - g - 1) // 2,
                f"an integer from 0 to (image_size - object_size - 1) // 2 ({(s - g - 1) // 2}), so that some tint "
                "is left wherever the target lies")
    tint = _number(cfg, "tint", 0.2, float, 1e-6, 1.0, "a number in (0, 1]")
    noise = _number(cfg, "noise", 0.2, float, 0.0, 1.0, "a number in [0, 1]")
    seed = _number(cfg, "seed", 0, int, 0, 2 ** 63 - 1, "a non-negative integer")

    rng = np.random.default_rng(seed)
    targets = np.asarray(list(TARGET_COLOURS.values())[:k], np.float32)
    tints = np.asarray(list(TINT_COLOURS.values()), np.float32)
    colour = rng.integers(0, k, size=n)
    cue = rng.integers(0, 2, size=n)
    # A shift by half the colours keeps the two readings of a colour as far apart as they can be.
    y = (colour + cue * (k // 2)) % k
    x = rng.normal(scale=noise, size=(n, 3, s, s)).astype(np.float32)
    row = rng.integers(0, s - g + 1, size=n)
    col = rng.integers(0, s - g + 1, size=n)
    ii = np.arange(s)

    def box(pad: int) -> np.ndarray:  # (n, s, s): the target's square grown by pad on every side
        r = (ii >= row[:, None] - pad) & (ii < row[:, None] + g + pad)
        c = (ii >= col[:, None] - pad) & (ii < col[:, None] + g + pad)
        return r[:, :, None] & c[:, None, :]

    x += tint * tints[cue][:, :, None, None] * ~box(m)[:, None]
    x += targets[colour][:, :, None, None] * box(0)[:, None]
    x = np.clip((x + _LOW) / _SPAN * 255, 0, 255).astype(np.uint8)
    n_test = n // 8
    names = list(TARGET_COLOURS)[:k]
    # Class j is colour j under the magenta tint, colour (j - k // 2) % k under cyan.
    classes = tuple(f"{names[j]}/magenta|{names[(j - k // 2) % k]}/cyan" for j in range(k))
    return {"train_x": x[n_test:], "train_y": y[n_test:].astype(np.int64), "test_x": x[:n_test],
            "test_y": y[:n_test].astype(np.int64), "classes": classes}
