"""What the benchmarks share: the composed config, mean ± std, training at one fidelity, a resumable cache (the
statistics are the package's own: :mod:`gcnas.stats`).

Imported by the benchmarks beside it, which run as modules (``python -m benchmarks.<name>`` from the repository root).
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from gcnas.arch import Architecture
from gcnas.backbones import list_sites
from gcnas.data import DataSplits, load_data
from gcnas.search.summary import describe_architecture
from gcnas.space import SearchSpace
from gcnas.train.one import train_architecture


def config(*overrides: str) -> dict:
    """The search's config composed from gcnas's ``conf/`` with ``overrides``, resolved to plain containers."""
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=["progress=none", "wandb.mode=disabled", "paths.root=.", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def backbone_kwargs(cfg: dict, data: DataSplits) -> dict:
    """The backbone's keyword arguments for ``data``: the config's, with the data's classes and channels."""
    return {**(cfg["backbone"].get("kwargs") or {}), "num_classes": data.num_classes, "in_chans": data.in_chans}


def space_of(cfg: dict, data: DataSplits, source: str | None = None) -> SearchSpace:
    """The config's search space over its backbone's sites at ``data``'s input size (``source``: its file, named in
    errors)."""
    name, kwargs = cfg["backbone"]["name"], backbone_kwargs(cfg, data)
    sites = list_sites(name, input_size=data.input_size, **kwargs)
    return SearchSpace.from_config(cfg["search_space"], backbone=name, sites=sites, backbone_kwargs=kwargs,
                                   source=source)


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` of ``values`` times ``scale`` (std 0 for a single value); ``scale=100`` for percent."""
    if any(math.isnan(v) for v in values):  # a tau over values that are all tied
        return "nan (all tied)"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.fmean(values):.{digits}f} ± {scale * std:.{digits}f}"


class Fidelity:
    """One fidelity: the data loaded once, then any architecture trained with any seed."""

    def __init__(self, cfg: dict) -> None:
        self.cfg, self.data, self.seconds = cfg, load_data(cfg["data"]), 0.0
        self.last_val_loss = self.last_seconds = float("nan")  # of the last ``accuracy`` call

    def accuracy(self, arch: Architecture, seed: int) -> float:
        """``arch`` trained with ``seed`` through gcnas's one seed-build-train path (as a search trial is)."""
        run = train_architecture(arch, self.data, self.cfg["trainer"], seed=seed, cost=False, test=False)
        self.last_seconds = run.seconds
        self.seconds += self.last_seconds
        self.last_val_loss = run.result.epochs[-1].val_loss
        return run.result.final_val_acc


class Progress:
    """Stores each measured accuracy in the cache file and tells stderr how far the run is."""

    def __init__(self, path: Path, total: int) -> None:
        self.path, self.total, self.t0, self.done = path, total, time.perf_counter(), 0
        self.cache = json.loads(path.read_text()) if path.exists() else {}
        self.fresh = 0

    def save(self) -> None:
        self.path.write_text(json.dumps(self.cache, indent=1))

    def measure(self, fidelity: str, f: Fidelity, arch: Architecture, seed: int) -> float:
        key = f"{fidelity}|{arch.key()}|{seed}"
        if key not in self.cache:
            self.cache[key] = f.accuracy(arch, seed)
            self.cache[f"{key}|val_loss"] = f.last_val_loss
            self.cache[f"{key}|seconds"] = f.last_seconds
            self.fresh += 1
            self.save()
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        left = "" if not self.fresh else f", about {elapsed / self.fresh * (self.total - self.done) / 60:.0f} min left"
        print(f"[{self.done}/{self.total}] {fidelity} seed {seed}: {self.cache[key]:.4f} "
              f"{describe_architecture(arch)} ({elapsed / 60:.1f} min{left})", file=sys.stderr, flush=True)
        return self.cache[key]

    def measure_with_loss(self, fidelity: str, f: Fidelity, arch: Architecture, seed: int) -> tuple[float, float]:
        """``measure``'s accuracy and the same training's final validation loss (trained again if the cache entry
        predates the loss)."""
        key = f"{fidelity}|{arch.key()}|{seed}"
        if f"{key}|val_loss" not in self.cache:
            self.cache.pop(key, None)
        return self.measure(fidelity, f, arch, seed), self.cache[f"{key}|val_loss"]
