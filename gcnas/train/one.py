"""One architecture trained with one seed: seed, build, cost, fit, row.

The path every caller that trains an :class:`~gcnas.arch.Architecture` shares (retraining, analysis, export's
retraining of a trial without kept weights; search trials and benchmarks can take it too): the global generator seeded
with the run's seed, the model built with the backbone's starting weights, its cost measured (which draws an example
input from that generator, so it comes before training, as everywhere), then :func:`~gcnas.train.fit`, and the row a
results table takes from it. :meth:`ArchitectureRun.build` and :meth:`ArchitectureRun.train` are the two halves, for a
caller that acts between them (a search trial checks its cost limits; the analysis reads the untrained blocks);
:func:`train_architecture` runs both.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from gcnas.arch import Architecture, build_model
from gcnas.backbones.cost import Cost, measure_cost
from gcnas.backbones.sites import backbone_data_config
from gcnas.backbones.weights import BackboneWeights
from gcnas.data import load_data
from gcnas.data.splits import DataSplits
from gcnas.train.config import TrainerConfig
from gcnas.train.loop import TrainResult, fit

__all__ = ["ArchitectureRun", "load_data_for", "train_architecture"]

COST_REPEATS, COST_WARMUP = 10, 3  # latency: timed batch-1 forward passes, after untimed ones


def load_data_for(data_cfg: Mapping[str, Any], backbone: Optional[str],
                  backbone_kwargs: Optional[Mapping[str, Any]] = None) -> DataSplits:
    """The data a ``data`` config names, read for ``backbone`` (timm's data config of that model: the input size,
    interpolation and crop that files are resized with where ``data`` leaves them open); no backbone, no such
    config. Every command that trains or measures an architecture loads its data through this."""
    backbone_data = backbone_data_config(backbone, **dict(backbone_kwargs or {})) if backbone else None
    return load_data(data_cfg, backbone_data=backbone_data)


@dataclass
class ArchitectureRun:
    """An architecture built with one seed: its model and cost, and once :meth:`train` ran, its training result."""

    arch: Architecture
    seed: int
    model: nn.Module
    cost: Optional[Cost] = None  # None: built with cost=False
    result: Optional[TrainResult] = None
    seconds: float = 0.0  # wall time of :meth:`train` (fit's setup included; ``result.seconds`` is its epochs)

    @classmethod
    def build(cls, arch: Architecture, input_size: Sequence[int], *, seed: int = 0,
              weights: Optional[BackboneWeights] = None, cost: bool = True, latency: bool = False,
              repeats: int = COST_REPEATS, warmup: int = COST_WARMUP) -> "ArchitectureRun":
        """Seed torch's global generator with ``seed``, build ``arch`` from ``weights`` (default: timm's own
        initialisation) and, with ``cost``, measure it for inputs of ``input_size`` (latency only with ``latency``)."""
        weights = weights or BackboneWeights()
        torch.manual_seed(seed)
        model = build_model(arch, pretrained=weights.pretrained, pretrained_file=weights.file)
        measured = measure_cost(model, input_size, latency=latency, repeats=repeats, warmup=warmup) if cost else None
        return cls(arch, seed, model, measured)

    def train(self, data: DataSplits, trainer: Union[TrainerConfig, Mapping[str, Any]], **fit_kwargs: Any
              ) -> TrainResult:
        """:func:`~gcnas.train.fit` the model on ``data`` with ``trainer`` and the run's seed; ``fit_kwargs`` are
        fit's (``device``, ``ckpt_dir``, ``resume``, ``on_epoch``, ``test``, ``identity``, ...)."""
        t0 = time.perf_counter()
        self.result = fit(self.model, data, trainer, seed=self.seed, **fit_kwargs)
        self.seconds = time.perf_counter() - t0
        return self.result

    def row(self, **first: Any) -> dict[str, Any]:
        """A results row: ``first`` (what names the run: model, design), then seed, val_acc, test_acc, params and
        flops; a caller appends its own columns."""
        if self.result is None:
            raise RuntimeError("ArchitectureRun.row: the run has not been trained (call train first)")
        return {**first, "seed": self.seed, "val_acc": self.result.final_val_acc, "test_acc": self.result.test_acc,
                "params": self.cost.params if self.cost is not None else None,
                "flops": self.cost.flops if self.cost is not None else None}


def train_architecture(arch: Architecture, data: DataSplits, trainer: Union[TrainerConfig, Mapping[str, Any]], *,
                       seed: int = 0, weights: Optional[BackboneWeights] = None, cost: bool = True,
                       latency: bool = False, **fit_kwargs: Any) -> ArchitectureRun:
    """Seed, build, cost (:meth:`ArchitectureRun.build` for ``data.input_size``) and train
    (:meth:`ArchitectureRun.train`) ``arch``; the trained run, whose :meth:`~ArchitectureRun.row` is its results
    row."""
    run = ArchitectureRun.build(arch, data.input_size, seed=seed, weights=weights, cost=cost, latency=latency)
    run.train(data, trainer, **fit_kwargs)
    return run
