"""What training reads: splits of labelled images, decoded in memory or streamed from disk, batched in an order the
trainer chooses.

A split gives ``len(split)``, ``batches(batch_size, order, device)`` (``order`` a tensor of indices, ``None`` for
the split's own order) and ``head(n)`` (the first ``n`` images as tensors, for BatchNorm calibration or figures). The
trainer owns the order (shuffling, sharding across processes), so in-memory and streamed data train the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Optional, Protocol

import torch

__all__ = ["Split", "TensorSplit", "DataSplits"]

Batch = tuple[torch.Tensor, torch.Tensor]


class Split(Protocol):
    streamed: bool

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, order: Optional[torch.Tensor] = None,
                device: torch.device | str = "cpu") -> Iterator[Batch]: ...

    def head(self, n: int) -> Batch: ...


class TensorSplit:
    """Decoded, normalised images in one float tensor (on the GPU when the trainer runs there: a step copies nothing)."""

    streamed = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> "TensorSplit":
        return TensorSplit(self.x.to(device), self.y.to(device))

    def batches(self, batch_size: int, order: Optional[torch.Tensor] = None,
                device: torch.device | str = "cpu") -> Iterator[Batch]:
        n = len(self) if order is None else len(order)
        if order is not None:
            order = order.to(self.x.device)  # indexing a GPU tensor with a host index copies it each batch
        for i in range(0, n, batch_size):
            if order is None:
                xb, yb = self.x[i:i + batch_size], self.y[i:i + batch_size]
            else:
                idx = order[i:i + batch_size]
                xb, yb = self.x[idx], self.y[idx]
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    def head(self, n: int) -> Batch:
        return self.x[:n], self.y[:n]


@dataclass
class DataSplits:
    """A dataset ready to train on: training, validation (held out of the training images) and optional test splits.

    ``mean`` / ``std`` are per channel, of pixel values scaled to [0, 1]: a model's inputs are ``(x - mean) / std``
    (the exported model card states them). ``input_size`` is (C, H, W) of one input image.

    ``identity`` says what the splits were made from (:func:`gcnas.data.identity.data_identity`: data set, resolved
    root, classes, size, subsets, split seed, augmentation and a fingerprint of the images); whatever stores results
    records it and refuses to reuse them on other data. ``preprocessing`` is the evaluation transform in the form of
    timm's ``pretrained_cfg`` (input size, interpolation, crop, mean, std, classes), so that
    ``timm.data.resolve_data_config`` + ``create_transform`` feed an exported model as it was validated.
    """

    name: str
    train: Split
    val: Split
    test: Optional[Split]
    num_classes: int
    input_size: tuple[int, int, int]
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    identity: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)

    @property
    def in_chans(self) -> int:
        return int(self.input_size[0])

    @property
    def streamed(self) -> bool:
        return bool(self.train.streamed)

    def to(self, device: torch.device | str) -> "DataSplits":
        """The same data with in-memory splits moved to ``device`` (streamed ones are read as they are)."""
        def move(s: Optional[Split]) -> Optional[Split]:
            return s.to(device) if isinstance(s, TensorSplit) else s

        return replace(self, train=move(self.train), val=move(self.val), test=move(self.test))

    def pretrained_cfg(self) -> dict:
        """What a model trained on these splits expects, as timm's ``pretrained_cfg`` holds it for hub models:
        :attr:`preprocessing` plus ``num_classes`` and ``label_names`` (JSON-ready: lists, not tuples)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in self.preprocessing.items()}
        return {**out, "num_classes": int(self.num_classes), "label_names": list(self.classes)}

    def describe(self) -> str:
        parts = [f"{len(self.train)} train", f"{len(self.val)} val"] + ([f"{len(self.test)} test"] if self.test else [])
        how = "streamed from disk" if self.streamed else "in memory"
        return f"{self.name} ({' / '.join(parts)} images, {'x'.join(map(str, self.input_size))}, {how})"
