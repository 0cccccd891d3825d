"""Search orchestration, parallel workers and pruning, measured side by side in one run.

Prints a Markdown table of ratios (Fashion-MNIST, the tiny timm ResNet, the gc_full space, random sampler with a fixed
seed, so every run with that seed proposes the same architectures in the same order):

* orchestration, at the demo's fidelity (the data config's subsets, ``trainer.epochs``, W&B offline tracking, kept
  weights and heartbeats on, as ``make demo`` runs): the share of the trial loop's time spent outside training and
  evaluation (sampling, model building, cost measurement, storage, de-duplication, tracking); the loop runs from the
  first trial's start to the last trial's end as the storage recorded them (process start-up and data loading come
  before it and are reported apart). The same trials again with ``wandb.mode=disabled`` give tracking's whole cost,
  including what its background thread and service take from training;
* workers, at a reduced fidelity (``--train-subset``): wall time of 2 workers (``-m worker=0,1
  hydra/launcher=joblib``) over 1 worker on the same study budget, twice: with ``threads=1`` for every worker (each
  worker has the same resources, as on a cluster: the scaling of the worker design itself, shared storage, exact
  budget, no batch barrier) and with the default ``threads=auto`` (one worker alone gets every core, two get half each,
  so that ratio is bounded by how well one training step uses several cores, also measured here);
* pruning, at the reduced fidelity: the default median pruner against none over several sampler seeds. Both runs of a
  seed see the same architectures in the same order; the pruned search must end with the same best accuracy, and the
  target is met when it spends <= 0.6x the epochs (the study totals, summed over the seeds). The epochs until the best
  first appears are shown too: they depend on where the best falls in the random order (a best among the pruner's
  start-up trials costs the same epochs either way). The enqueued baselines are off here: they are always trained
  first and in full, and would only measure where the paper's design happens to rank.

Usage: python benchmarks/search.py [--orch-trials 10] [--trials 10] [--train-subset 3000] [--epochs 4]
                                   [--prune-trials 24] [--seeds 0 1 2]
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
    ap.add_argument("--orch-trials", type=int, default=10, help="trials of each orchestration run (demo fidelity)")
    ap.add_argument("--trials", type=int, default=10, help="study budget of the worker runs")
    ap.add_argument("--train-subset", type=int, default=3000, help="training images per trial: workers and pruning")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per trial: workers and pruning")
    ap.add_argument("--prune-trials", type=int, default=24)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)
    data = [f"data.train_subset={args.train_subset}", "data.val_subset=1000"]
    common = [f"study.n_trials={args.trials}", f"trainer.epochs={args.epochs}", "pruner=none", *data]
    two = ["worker=0,1", "hydra/launcher=joblib"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        orch = [f"study.n_trials={args.orch_trials}", "pruner=none"]  # the demo's data and trainer config
        wall = {"demo": run(tmp / "demo", *orch), "demo_off": run(tmp / "demo_off", *orch, "wandb.mode=disabled"),
                "one_t1": run(tmp / "one_t1", *common, "threads=1"),
                "two_t1": run(tmp / "two_t1", *common, "threads=1", *two, multirun=True),
                "one": run(tmp / "one", *common),
                "two": run(tmp / "two", *common, *two, multirun=True)}
        loops = {k: loop_seconds(trials(tmp / k)) for k in wall}
        t_demo = trials(tmp / "demo")
        train_demo = sum(t.user_attrs.get("train_seconds", 0.0) for t in t_demo)
        train_demo_off = sum(t.user_attrs.get("train_seconds", 0.0) for t in trials(tmp / "demo_off"))
        orchestration = (loops["demo"] - train_demo) / loops["demo"]
        orchestration_off = (loops["demo_off"] - train_demo_off) / loops["demo_off"]
        train = sum(t.user_attrs.get("train_seconds", 0.0) for t in trials(tmp / "one"))
        train_t1 = sum(t.user_attrs.get("train_seconds", 0.0) for t in trials(tmp / "one_t1"))

        prune_rows = []
        for seed in args.seeds:
            pc = [f"study.n_trials={args.prune_trials}", f"trainer.epochs={args.epochs}", f"seed={seed}",
                  "study.enqueue_baselines=false", *data]
            run(tmp / f"none{seed}", *pc, "pruner=none")
            run(tmp / f"median{seed}", *pc, "pruner=median")
            t_none, t_med = trials(tmp / f"none{seed}"), trials(tmp / f"median{seed}")
            best = max(t.values[0] for t in t_none if trained(t))
            best_med = max((t.values[0] for t in t_med if trained(t)), default=float("nan"))
            prune_rows.append({
                "seed": seed, "best": best, "best_med": best_med, "same": best_med >= best - 1e-12,
                "best_trial": next(t.number for t in t_none if trained(t) and t.values[0] >= best - 1e-12),
                "e_none": epochs_to_reach(t_none, best), "e_med": epochs_to_reach(t_med, best),
                "total_none": sum(t.user_attrs.get("epochs", 0) for t in t_none),
                "total_med": sum(t.user_attrs.get("epochs", 0) for t in t_med),
                "pruned": sum(t.state == TrialState.PRUNED for t in t_med)})

    n_demo = len([t for t in t_demo if trained(t)])
    print(f"Fashion-MNIST, gcnas_resnet_tiny, gc_full, random sampler, {os.cpu_count()} CPU cores; demo fidelity = "
          f"the data config's subsets and trainer.epochs; reduced = {args.train_subset} train / 1000 val images, "
          f"{args.epochs} epochs\n")
    print("| measure | value | target | met |")
    print("|---|---:|---:|---|")
    print(f"| orchestration share of the trial loop, demo fidelity (1 worker, {args.orch_trials} trials, {n_demo} "
          f"trained; {loops['demo']:.1f} s loop, {train_demo:.1f} s training and evaluation; W&B offline, kept "
          f"weights, heartbeats) | {100 * orchestration:.1f}% | <= 3% | {yes(orchestration <= 0.03)} |")
    print(f"| the same with W&B disabled ({loops['demo_off']:.1f} s loop, {train_demo_off:.1f} s training); "
          f"tracking's whole cost: loop offline / disabled = {loops['demo'] / loops['demo_off']:.3f}x | "
          f"{100 * orchestration_off:.1f}% | | |")
    print(f"| process start-up and data loading before the loop (demo run, {wall['demo']:.1f} s wall) | "
          f"{wall['demo'] - loops['demo']:.1f} s | | |")
    r1 = wall["two_t1"] / wall["one_t1"]
    print(f"| wall, 2 workers / 1 worker, threads=1 each, reduced fidelity ({args.trials} trials; "
          f"{wall['two_t1']:.1f} s / {wall['one_t1']:.1f} s; trial loop {loops['two_t1'] / loops['one_t1']:.2f}x) | "
          f"{r1:.2f}x | <= 0.6x | {yes(r1 <= 0.6)} |")
    r = wall["two"] / wall["one"]
    bound = train_t1 / (2 * train)
    print(f"| wall, 2 workers / 1 worker, threads=auto ({wall['two']:.1f} s / {wall['one']:.1f} s; trial loop "
          f"{loops['two'] / loops['one']:.2f}x): one worker alone trains on every core, so this cannot go below "
          f"{bound:.2f}x here | {r:.2f}x | | |")
    print(f"| training and evaluation of the same trials, 1 thread / {os.cpu_count()} threads ({train_t1:.1f} s / "
          f"{train:.1f} s) | {train_t1 / train:.2f}x | | |")
    for p in prune_rows:
        first = "not reached" if p["e_med"] is None else f"{p['e_med']} / {p['e_none']} epochs"
        print(f"| seed {p['seed']}: study epochs, median / none ({p['pruned']} of {args.prune_trials} pruned; best "
              f"{p['best_med']:.4f} / {p['best']:.4f}{'' if p['same'] else ', NOT the same'}; the best first "
              f"appears at trial {p['best_trial']}: {first}) | {p['total_med'] / p['total_none']:.2f}x "
              f"({p['total_med']} / {p['total_none']}) | | |")
    same = sum(p["same"] for p in prune_rows)
    r = sum(p["total_med"] for p in prune_rows) / sum(p["total_none"] for p in prune_rows)
    reached = [p for p in prune_rows if p["e_med"] is not None]
    first = sum(p["e_med"] for p in reached) / max(1, sum(p["e_none"] for p in reached))
    print(f"| epochs to reach the same best, median pruner / none, {len(prune_rows)} seeds x {args.prune_trials} "
          f"trials x {args.epochs} epochs (same best in {same} of {len(prune_rows)}; until the best first appears: "
          f"{first:.2f}x) | {r:.2f}x | <= 0.6x | {yes(r <= 0.6 and same == len(prune_rows))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
