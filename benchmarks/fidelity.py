"""Proxy fidelity, measured: does the demo's ranking of architectures hold at a higher fidelity, and across seeds?

A fixed random sample of ``--archs`` distinct architectures of the ``gc_full`` space (drawn by Optuna's RandomSampler
with ``--sample-seed``, the way a random search draws them; the plain backbone added as one of them) on the demo's
data and backbone (Fashion-MNIST, the tiny timm ResNet), each trained:

* at the demo's fidelity (``conf/data/fashion_mnist.yaml``'s subsets, ``conf/trainer/proxy.yaml``) with seed 0 and
  with seed 1;
* at a higher fidelity (``--high-images`` training images, ``--high-epochs`` epochs; or any Hydra overrides given
  with ``--high``, e.g. ``--high data.size=18000 trainer.epochs=8`` for ``data=context``) with seed 0.

The table gives Kendall's tau and Spearman's rho between the rankings: demo vs higher fidelity (does the proxy rank
as the better measurement would?) and seed 0 vs seed 1 at the demo's fidelity (the noise ceiling: no proxy can agree
with anything better than it agrees with itself). Where the higher fidelity saturates (say every architecture at
100 %), its accuracies tie and tau says nothing, so it is also ranked by accuracy with ties broken by the lower
final validation loss (how surely each architecture learned). Also the spread of the architectures' accuracies against
the mean seed-to-seed difference: when the designs differ by less than a seed moves them, no ranking can be trusted.

Every accuracy is stored in ``--cache`` (JSON, keyed by fidelity, architecture and seed) as soon as it is measured, so
an interrupted run resumes where it stopped; progress lines with an estimate of the time left go to stderr.

Usage: python -m benchmarks.fidelity [--archs 16] [--sample-seed 0] [--high-images 24000] [--high-epochs 8]
                                     [--threads N] [--cache benchmarks/.fidelity-cache.json] [OVERRIDE ...]
                                     [--high OVERRIDE ...]

(``--high`` takes every word after it, so give it last.)

OVERRIDEs are Hydra overrides applied to both fidelities (``data=imagefolder data.root=... backbone=resnet18``): the
same measurement on your own data and backbone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import optuna
import torch

from benchmarks.common import Fidelity, Progress, backbone_kwargs, config, space_of
from gcnas.arch import Architecture
from gcnas.machine import describe_machine
from gcnas.search.summary import describe_architecture
from gcnas.space import InfeasibleArchitecture
from gcnas.stats import kendall_tau, ranks, spearman_rho


def sample(cfg: dict, demo: Fidelity, n: int, seed: int) -> list[Architecture]:
    """``n`` distinct architectures: the plain backbone, then the space's draws by a RandomSampler of ``seed``."""
    space = space_of(cfg, demo.data, source="search_spaces/gc_full.yaml")
    plain = Architecture(cfg["backbone"]["name"], backbone_kwargs(cfg, demo.data), ())
    archs = {plain.key(): plain}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    while len(archs) < n:
        trial = study.ask()
        try:
            arch = space.suggest(trial)
        except InfeasibleArchitecture:
            continue
        archs.setdefault(arch.key(), arch)
    return list(archs.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", type=int, default=16, help="architectures in the sample (the plain backbone is one)")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--high-images", type=int, default=24000, help="training images at the higher fidelity")
    ap.add_argument("--high-epochs", type=int, default=8, help="epochs at the higher fidelity")
    ap.add_argument("--high", nargs="+", default=None, metavar="OVERRIDE",
                    help="Hydra overrides that make the higher fidelity instead of --high-images/--high-epochs, "
                    "e.g. data.size=18000 trainer.epochs=8 (data=context generates its images)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.fidelity-cache.json"),
                    help="accuracies measured so far (a rerun resumes from it; delete it to start over)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of both fidelities, e.g. data=imagefolder "
                    "data.root=/data/pets backbone=resnet18: measure your own data and backbone")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = config(*args.overrides)
    demo = Fidelity(cfg)
    high_over = args.high or [f"data.train_subset={args.high_images}", f"trainer.epochs={args.high_epochs}"]
    high = Fidelity(config(*args.overrides, *high_over))
    archs = sample(cfg, demo, args.archs, args.sample_seed)
    d, tr = cfg["data"], cfg["trainer"]
    tag = "|".join(args.overrides)  # cached results of other data or backbones are not mixed in
    demo_name = f"demo:{d['train_subset']}x{tr['epochs']}{'|' + tag if tag else ''}"
    high_name = (f"high:{' '.join(args.high)}" if args.high else f"high:{args.high_images}x{args.high_epochs}") + \
        (f"|{tag}" if tag else "")
    high_desc = " ".join(args.high) if args.high else f"{args.high_images} x {args.high_epochs}"
    progress = Progress(args.cache, 3 * len(archs))
    seed0 = [progress.measure(demo_name, demo, a, 0) for a in archs]
    seed1 = [progress.measure(demo_name, demo, a, 1) for a in archs]
    hi_loss = [progress.measure_with_loss(high_name, high, a, 0) for a in archs]
    hi = [acc for acc, _ in hi_loss]
    hi_ranked = ranks([(acc, -loss) for acc, loss in hi_loss])  # ties in accuracy broken by the lower loss
    moved = statistics.fmean(abs(a - b) for a, b in zip(seed0, seed1))
    print(f"{len(archs)} architectures of gc_full (RandomSampler seed {args.sample_seed}, the plain backbone "
          f"included), {cfg['backbone']['name']}, {d['name']} ({d.get('val_subset') or 'all'} validation images"
          f"{'; overrides: ' + ' '.join(args.overrides) if args.overrides else ''}); demo fidelity = "
          f"{d['train_subset'] or 'all'} training images x {tr['epochs']} epochs, higher = {high_desc}. "
          f"{describe_machine()}; {time.perf_counter() - t0:.0f} s in this run "
          f"({progress.fresh} of {progress.total} trainings measured in it, the rest from {args.cache})\n")
    print("| rankings compared | Kendall tau | Spearman rho |")
    print("|---|---:|---:|")
    print(f"| demo fidelity (seed 0) vs higher fidelity (seed 0) | {kendall_tau(seed0, hi):.2f} | "
          f"{spearman_rho(seed0, hi):.2f} |")
    print(f"| demo fidelity (seed 0) vs higher fidelity, ties in accuracy broken by loss | "
          f"{kendall_tau(seed0, hi_ranked):.2f} | {spearman_rho(seed0, hi_ranked):.2f} |")
    print(f"| demo fidelity, seed 0 vs seed 1 (the noise ceiling) | {kendall_tau(seed0, seed1):.2f} | "
          f"{spearman_rho(seed0, seed1):.2f} |")
    mean2 = [(a + b) / 2 for a, b in zip(seed0, seed1)]
    print(f"| demo fidelity, mean of seeds 0 and 1 vs higher fidelity | {kendall_tau(mean2, hi):.2f} | "
          f"{spearman_rho(mean2, hi):.2f} |")
    print(f"| demo fidelity, mean of seeds 0 and 1 vs higher fidelity, ties broken by loss | "
          f"{kendall_tau(mean2, hi_ranked):.2f} | {spearman_rho(mean2, hi_ranked):.2f} |")
    print(f"\nSpread of the architectures' accuracies (max - min): demo seed 0 {100 * (max(seed0) - min(seed0)):.2f} "
          f"pp, higher fidelity {100 * (max(hi) - min(hi)):.2f} pp; one seed to the other moves an architecture by "
          f"{100 * moved:.2f} pp on average at the demo's fidelity.")
    print("\n| architecture | demo seed 0 | demo seed 1 | higher | higher, val loss |")
    print("|---|---:|---:|---:|---:|")
    for a, x, y, (z, loss) in zip(archs, seed0, seed1, hi_loss):
        print(f"| {describe_architecture(a)} | {x:.4f} | {y:.4f} | {z:.4f} | {loss:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
