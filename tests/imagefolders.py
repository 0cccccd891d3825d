"""Real image folders for the tests: Fashion-MNIST (Debian's files) written as PNG class folders.

Several tests need two different image data sets (a second study, a checkpoint of other data); these write them from
disjoint slices of Fashion-MNIST, so both are real images a small network learns from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from gcnas.data.datasets import FASHION_MNIST_DEFAULT_ROOT, read_idx
from conftest import skip_or_fail

NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def fashion_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's training images (N, 28, 28) and labels; skipped (failed in CI) without Debian's files."""
    root = Path(FASHION_MNIST_DEFAULT_ROOT)
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        skip_or_fail("Debian's dataset-fashion-mnist is not installed (make test installs it)")
    return read_idx(root / "train-images-idx3-ubyte.gz"), read_idx(root / "train-labels-idx1-ubyte.gz")


def write_folder(root: Path, classes: Sequence[int], per_class: int, start: int = 0) -> Path:
    """``root/<class name>/<i>.png``: ``per_class`` grey 28x28 images of each Fashion-MNIST class in ``classes``,
    taken from the ``start``-th image of that class on (different ``start`` values give disjoint images)."""
    x, y = fashion_arrays()
    for c in classes:
        d = root / NAMES[c]
        d.mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(y == c)[start:start + per_class]):
            Image.fromarray(x[index]).save(d / f"{start + i}.png")
    return root
