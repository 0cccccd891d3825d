"""Search orchestration, parallel workers and pruning, measured side by side in one run.

Prints a Markdown table of ratios at a reduced demo fidelity (Fashion-MNIST, the tiny timm ResNet, the gc_full space,
random sampler with a fixed seed, so every run with that seed proposes the same architectures in the same order):

* orchestration: the share of the trial loop's time spent outside training and evaluation (sampling, model building,
  cost measurement, storage, de-duplication), from one worker without pruning; the loop runs from the first trial's
  start to the last trial's end as the storage recorded them (process start-up and data loading come before it and are
  reported apart);
* workers: wall time of 2 workers (``-m worker=0,1 hydra/launcher=joblib``) over 1 worker on the same study budget,
  twice: with the default ``threads=auto`` (one worker gets every core, two workers get half each, so the ratio is
  bounded by how well one training step uses several cores, also measured here), and with ``threads=1`` for every
  worker (the scaling of the worker design itself: shared storage, exact budget, no batch barrier);
* pruning: epochs trained until the run first reaches the best accuracy of the run without pruning, median pruner over
  none, summed over several sampler seeds (the same architectures arrive in the same order in both runs of a seed, so
  the best is the same architecture). The enqueued baselines are off here: they are always trained first and in full,
  and would only measure where the paper's design happens to rank.

Usage: python benchmarks/search.py [--trials 10] [--train-subset 3000] [--epochs 4]
                                   [--prune-trials 16] [--prune-epochs 6] [--seeds 0 1 2]
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
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "gcnas.cli.search", *(["-m"] if multirun else []), f"paths.root={root}",
           "progress=none", "sampler=random", *overrides]
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    res = subprocess.run(cmd, check=False, cwd=root, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return wall


def trials(root: Path) -> list:
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{root}/studies.db")
    return sorted(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)), key=lambda t: t.number)


def loop_seconds(ts: list) -> float:
    return (max(t.datetime_complete for t in ts) - min(t.datetime_start for t in ts)).total_seconds()


def trained(t) -> bool:
    return t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs


def epochs_to_reach(ts: list, target: float) -> int | None:
    spent = 0
    for t in ts:
        spent += t.user_attrs.get("epochs", 0) if "duplicate_of" not in t.user_attrs else 0
        if trained(t) and t.values[0] >= target - 1e-12:
            return spent
    return None


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--train-subset", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--prune-trials", type=int, default=16)
    ap.add_argument("--prune-epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)
    data = [f"data.train_subset={args.train_subset}", "data.val_subset=1000"]
    common = [f"study.n_trials={args.trials}", f"trainer.epochs={args.epochs}", "pruner=none", *data]
    two = ["worker=0,1", "hydra/launcher=joblib"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wall = {
            "one": run(tmp / "one", *common),
            "two": run(tmp / "two", *common, *two, multirun=True),
            "one_t1": run(tmp / "one_t1", *common, "threads=1"),
            "two_t1": run(tmp / "two_t1", *common, "threads=1", *two, multirun=True),
        }
        loops = {k: loop_seconds(trials(tmp / k)) for k in wall}
        t_one = trials(tmp / "one")
        train = sum(t.user_attrs.get("train_seconds", 0.0) for t in t_one)
        train_t1 = sum(t.user_attrs.get("train_seconds", 0.0) for t in trials(tmp / "one_t1"))
        orchestration = (loops["one"] - train) / loops["one"]

        prune_rows = []
        for seed in args.seeds:
            pc = [f"study.n_trials={args.prune_trials}", f"trainer.epochs={args.prune_epochs}", f"seed={seed}",
                  "study.enqueue_baselines=false", *data]
            run(tmp / f"none{seed}", *pc, "pruner=none")
            run(tmp / f"median{seed}", *pc, "pruner=median")
            t_none, t_med = trials(tmp / f"none{seed}"), trials(tmp / f"median{seed}")
            best = max(t.values[0] for t in t_none if trained(t))
            best_t = next(t.number for t in t_none if trained(t) and t.values[0] >= best - 1e-12)
            prune_rows.append({
                "seed": seed, "best": best, "best_trial": best_t, "e_none": epochs_to_reach(t_none, best),
                "e_med": epochs_to_reach(t_med, best), "total_none": sum(t.user_attrs.get("epochs", 0) for t in t_none),
                "total_med": sum(t.user_attrs.get("epochs", 0) for t in t_med),
                "pruned": sum(t.state == TrialState.PRUNED for t in t_med)})

    print(f"Fashion-MNIST ({args.train_subset} train / 1000 val images), gcnas_resnet_tiny, gc_full, random sampler, "
          f"{os.cpu_count()} CPU cores\n")
    print("| measure | value | target | met |")
    print("|---|---:|---:|---|")
    print(f"| orchestration share of the trial loop (1 worker, {args.trials} trials x {args.epochs} epochs, "
          f"{loops['one']:.1f} s loop, {train:.1f} s training and evaluation) | {100 * orchestration:.1f}% | <= 3% | "
          f"{yes(orchestration <= 0.03)} |")
    print(f"| process start-up and data loading before the loop (1 worker, {wall['one']:.1f} s wall) | "
          f"{wall['one'] - loops['one']:.1f} s | | |")
    r = wall["two"] / wall["one"]
    print(f"| wall, 2 workers / 1 worker, threads=auto ({wall['two']:.1f} s / {wall['one']:.1f} s; trial loop "
          f"{loops['two'] / loops['one']:.2f}x) | {r:.2f}x | <= 0.6x | {yes(r <= 0.6)} |")
    r1 = wall["two_t1"] / wall["one_t1"]
    print(f"| wall, 2 workers / 1 worker, threads=1 each ({wall['two_t1']:.1f} s / {wall['one_t1']:.1f} s; trial "
          f"loop {loops['two_t1'] / loops['one_t1']:.2f}x) | {r1:.2f}x | <= 0.6x | {yes(r1 <= 0.6)} |")
    bound = train_t1 / (2 * train)
    print(f"| training and evaluation of the same trials, 1 thread / {os.cpu_count()} threads ({train_t1:.1f} s / "
          f"{train:.1f} s); so the threads=auto row cannot go below {bound:.2f}x (1 thread's time / 2 workers, over "
          f"the all-cores time) | {train_t1 / train:.2f}x | | |")
    reached = [p for p in prune_rows if p["e_med"] is not None]
    for p in prune_rows:
        got = "not reached (its trial was pruned)" if p["e_med"] is None else \
            f"{p['e_med'] / p['e_none']:.2f}x ({p['e_med']} / {p['e_none']})"
        print(f"| seed {p['seed']}: epochs to reach the unpruned best ({p['best']:.4f}, trial {p['best_trial']}), "
              f"median / none; study total {p['total_med']} / {p['total_none']} epochs, {p['pruned']} pruned | "
              f"{got} | | |")
    if len(reached) == len(prune_rows):
        r = sum(p["e_med"] for p in prune_rows) / sum(p["e_none"] for p in prune_rows)
        print(f"| epochs to reach the same best, median pruner / none, {len(prune_rows)} seeds x {args.prune_trials} "
              f"trials x {args.prune_epochs} epochs | {r:.2f}x | <= 0.6x | {yes(r <= 0.6)} |")
    else:
        print(f"| epochs to reach the same best, median pruner / none | the pruned run missed the best in "
              f"{len(prune_rows) - len(reached)} of {len(prune_rows)} seeds | <= 0.6x | no |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
