"""What the benchmarks share: the composed config, mean ± std, rank correlations, training at one fidelity, a
resumable cache.

Imported by the benchmark scripts beside it (``python benchmarks/<name>.py`` puts this folder on ``sys.path``).
"""
from __future__ import annotations

import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from hydra import compose, initialize_config_module

from gcnas.arch import Architecture, build_model
from gcnas.cli.common import resolve
from gcnas.data import load_data
from gcnas.search.summary import describe_architecture
from gcnas.train import fit


def config(*overrides: str) -> dict:
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return resolve(compose("config", overrides=["progress=none", "wandb.mode=disabled", "paths.root=.",
                                                    *overrides]))


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` of ``values`` times ``scale`` (std 0 for a single value); ``scale=100`` for percent."""
    if any(math.isnan(v) for v in values):  # a tau over values that are all tied
        return "nan (all tied)"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.fmean(values):.{digits}f} ± {scale * std:.{digits}f}"


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (pairs tied on one side count in that side's denominator only)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    n = concordant + discordant
    denom = ((n + ties_x) * (n + ties_y)) ** 0.5
    return (concordant - discordant) / denom if denom else float("nan")


def bootstrap_interval(stat: Callable[[list[int]], float], n: int, reps: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile interval of ``stat(indices)`` over ``reps`` resamples of ``range(n)`` with replacement: how
    much a statistic of ``n`` items (a difference of two taus over the same architectures, say) moves with the
    items drawn. Resamples on which the statistic is undefined (NaN: a tau over one distinct item, say) are left
    out, since NaN would scramble the sort; NaN both ways when every resample is."""
    rng = random.Random(seed)
    values = sorted(v for v in (stat([rng.randrange(n) for _ in range(n)]) for _ in range(reps)) if v == v)
    if not values:
        return math.nan, math.nan
    tail = (1 - level) / 2
    return values[int(tail * (len(values) - 1))], values[int(round((1 - tail) * (len(values) - 1)))]


def noise_verdict(lo: float, hi: float) -> str:
    """Where zero lies against a difference's interval (:func:`bootstrap_interval`)."""
    if math.isnan(lo):
        return "no interval (every resample tied)"
    return "inside the noise" if lo <= 0 <= hi else ("above it" if lo > 0 else "below it")


def ranks(x: list[float]) -> list[float]:
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman_rho(x: list[float], y: list[float]) -> float:
    """Spearman's rho (Pearson's r of the ranks, ties sharing their mean rank); nan when one side is constant."""
    try:
        return statistics.correlation(ranks(x), ranks(y))
    except statistics.StatisticsError:
        return float("nan")


class Fidelity:
    """One fidelity: the data loaded once, then any architecture trained with any seed."""

    def __init__(self, cfg: dict) -> None:
        self.cfg, self.data, self.seconds = cfg, load_data(cfg["data"]), 0.0
        self.last_val_loss = self.last_seconds = float("nan")  # of the last ``accuracy`` call

    def accuracy(self, arch: Architecture, seed: int) -> float:
        torch.manual_seed(seed)
        model = build_model(arch)
        t0 = time.perf_counter()
        result = fit(model, self.data, self.cfg["trainer"], seed=seed, test=False)
        self.last_seconds = time.perf_counter() - t0
        self.seconds += self.last_seconds
        self.last_val_loss = result.epochs[-1].val_loss
        return result.final_val_acc


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
