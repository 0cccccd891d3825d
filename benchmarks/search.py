"""Search orchestration, parallel workers and pruning, measured side by side in one run.

Prints a Markdown table with three ratios at a reduced demo fidelity (Fashion-MNIST, the tiny timm ResNet, the
gc_full space, random sampler with a fixed seed so every run proposes the same architectures in the same order):

* orchestration: the share of the trial loop's time spent outside training and evaluation (sampling, model building,
  cost measurement, storage, de-duplication), from one worker without pruning; the loop runs from the first trial's
  start to the last trial's end as the storage recorded them (process start-up and data loading come before it and are
  reported apart);
* workers: wall time of 2 workers (``-m worker=0,1 hydra/launcher=joblib``) over 1 worker, same study budget;
* pruning: epochs trained until the run first reaches the best accuracy of the run without pruning, median pruner
  over none (the same architectures arrive in the same order, so the best is the same architecture).

Usage: python benchmarks/search.py [--trials 10] [--train-subset 3000] [--epochs 4]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

STUDY = "gc_full-gcnas_resnet_tiny-fashion_mnist"


def run(root: Path, *overrides: str, multirun: bool = False) -> float:
    cmd = [sys.executable, "-m", "gcnas.cli.search", *(["-m"] if multirun else []), f"paths.root={root}",
           "progress=none", "sampler=random", *overrides]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return wall


def trials(root: Path) -> list:
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{root}/studies.db")
    return sorted(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)), key=lambda t: t.number)


def epochs_to_reach(ts: list, target: float) -> float | None:
    spent = 0
    for t in ts:
        spent += t.user_attrs.get("epochs", 0) if "duplicate_of" not in t.user_attrs else 0
        if t.state == TrialState.COMPLETE and t.values and t.values[0] >= target - 1e-12:
            return spent
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--train-subset", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args(argv)
    common = [f"study.n_trials={args.trials}", f"data.train_subset={args.train_subset}", "data.val_subset=1000",
              f"trainer.epochs={args.epochs}"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one, two, pruned = tmp / "one", tmp / "two", tmp / "pruned"
        for d in (one, two, pruned):
            d.mkdir()
        wall_one = run(one, *common, "pruner=none")
        wall_two = run(two, *common, "pruner=none", "worker=0,1", "hydra/launcher=joblib", multirun=True)
        run(pruned, *common, "pruner=median")

        t_one, t_pruned = trials(one), trials(pruned)
        train = sum(t.user_attrs.get("train_seconds", 0.0) for t in t_one)
        loop = (max(t.datetime_complete for t in t_one) - min(t.datetime_start for t in t_one)).total_seconds()
        orchestration = (loop - train) / loop
        best = max(t.values[0] for t in t_one if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs)
        e_none, e_pruned = epochs_to_reach(t_one, best), epochs_to_reach(t_pruned, best)
        epochs_none = sum(t.user_attrs.get("epochs", 0) for t in t_one)
        epochs_pruned = sum(t.user_attrs.get("epochs", 0) for t in t_pruned)

    print(f"Fashion-MNIST ({args.train_subset} train / 1000 val images), gcnas_resnet_tiny, gc_full, random sampler "
          f"(seed 0), {args.trials} trials x {args.epochs} epochs, {os.cpu_count()} CPU cores\n")
    print("| measure | value | target | met |")
    print("|---|---:|---:|---|")
    print(f"| orchestration share of the trial loop ({loop:.1f} s loop, {train:.1f} s training and evaluation) | "
          f"{100 * orchestration:.1f}% | <= 3% | {'yes' if orchestration <= 0.03 else 'no'} |")
    print(f"| process start-up and data loading before the loop (1 worker, {wall_one:.1f} s wall) | "
          f"{wall_one - loop:.1f} s | | |")
    print(f"| wall time, 2 workers / 1 worker ({wall_two:.1f} s / {wall_one:.1f} s) | {wall_two / wall_one:.2f}x | "
          f"<= 0.6x | {'yes' if wall_two / wall_one <= 0.6 else 'no'} |")
    if e_pruned is None:
        print(f"| epochs to reach the unpruned best ({best:.4f}), median pruner / none | not reached (pruned) | "
              "<= 0.6x | no |")
    else:
        print(f"| epochs to reach the unpruned best ({best:.4f}), median pruner / none ({e_pruned} / {e_none}) | "
              f"{e_pruned / e_none:.2f}x | <= 0.6x | {'yes' if e_pruned / e_none <= 0.6 else 'no'} |")
    print(f"| total epochs of the study, median pruner / none ({epochs_pruned} / {epochs_none}) | "
          f"{epochs_pruned / epochs_none:.2f}x | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
