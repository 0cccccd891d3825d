"""Search orchestration, parallel workers and pruning, measured side by side in one run.

Prints a Markdown table of ratios (Fashion-MNIST, the tiny timm ResNet, the gc_full space, random sampler with a fixed
seed, so every run with that seed proposes the same architectures in the same order):

* orchestration, at the demo's fidelity (the data config's subsets, ``trainer.epochs``, W&B offline tracking, kept
  weights and heartbeats on, as ``make demo`` runs): the share of the trial loop's time spent outside training and
  evaluation (sampling, model building, cost measurement, storage, de-duplication, tracking); the loop runs from the
  first trial's start to the last trial's end as the storage recorded them (process start-up and data loading come
  before it and are reported apart). The same trials again with ``wandb.mode=disabled`` give tracking's whole cost,
  including what its background thread and service take from training;
* workers, at a reduced fidelity (``--worker-subset`` images, ``--trials`` trials): wall time of 2 workers
  (``-m worker=0,1 hydra/launcher=joblib``, which gives each half the cores) over 1 worker with the same threads
  (the scaling of the worker design itself, as when each worker has its own cores or machine: shared storage, exact
  budget, no batch barrier), and over 1 worker that uses every core (``threads=auto`` alone), a ratio bounded by how
  well one training step uses several cores, also measured here;
* pruning, at a reduced fidelity (``--train-subset`` images): the default median pruner against none over several
  sampler seeds. Both runs of a seed see the same architectures in the same order; the pruned search must end with the
  same best accuracy (shown exactly, and within the binomial standard error of that accuracy on the validation
  images), and the target is met when it spends <= 0.6x the epochs (the study totals, summed over the seeds). The
  epochs until the best first appears are shown too: they depend on where the best falls in the random order (a best
  among the pruner's start-up trials costs the same epochs either way). The enqueued baselines are off here: they are
  always trained first and in full, and would only measure where the paper's design happens to rank. The median pruner
  also runs with ``pruner.n_warmup_steps=2`` (``--compare-warmup``), the earlier default, to show why the default
  prunes from epoch 1.

Usage: python -m benchmarks.search [--parts orchestration workers pruning] [--orch-trials 10] [--trials 24]
                                   [--worker-subset 2000] [--train-subset 3000] [--epochs 4] [--prune-trials 24]
                                   [--seeds 0 1 2] [--compare-warmup 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from gcnas.machine import describe_machine
from gcnas.search import record

STUDY = "gc_full-gcnas_resnet_tiny-fashion_mnist"
PARTS = ("orchestration", "workers", "pruning")
VAL_IMAGES = 1000  # validation images per trial in the workers and pruning parts


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


@dataclasses.dataclass
class Search:
    """One search run (:func:`run`) and its study's finished trials."""

    wall: float  # seconds of the whole command
    trials: list

    @property
    def loop(self) -> float:
        """Seconds of the trial loop: the first trial's start to the last trial's end, as the storage recorded them."""
        return (max(t.datetime_complete for t in self.trials)
                - min(t.datetime_start for t in self.trials)).total_seconds()

    @property
    def train(self) -> float:
        """Seconds of training and evaluation, summed over the trials."""
        return sum(record.TRAIN_SECONDS.get(t, 0.0) for t in self.trials)

    @property
    def n_trained(self) -> int:
        return sum(trained(t) for t in self.trials)


def search(root: Path, *overrides: str, multirun: bool = False) -> Search:
    """:func:`run` a search in ``root``, then read its study."""
    wall = run(root, *overrides, multirun=multirun)
    return Search(wall, trials(root))


def trained(t) -> bool:
    return t.state == TrialState.COMPLETE and not record.INFEASIBLE.on(t)


def epochs_of(t) -> int:
    """Epochs this trial trained (a duplicate copies its original's attributes but trains nothing)."""
    return 0 if record.DUPLICATE_OF.on(t) else int(record.EPOCHS.get(t, 0))


def epochs_to_reach(ts: list, target: float) -> int | None:
    spent = 0
    for t in ts:
        spent += epochs_of(t)
        if trained(t) and t.values[0] >= target - 1e-12:
            return spent
    return None


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def row(measure: str, value: str, target: str = "", met: str = "") -> str:
    """A row of the table: measure, value, target, met (an empty cell as ``| |``)."""
    return "|" + "|".join(f" {cell} " if cell else " " for cell in (measure, value, target, met)) + "|"


def measure_orchestration(tmp: Path, args) -> list[str]:
    orch = [f"study.n_trials={args.orch_trials}", "pruner=none"]  # the demo's data and trainer config
    demo, off = search(tmp / "demo", *orch), search(tmp / "demo_off", *orch, "wandb.mode=disabled")
    share, share_off = ((s.loop - s.train) / s.loop for s in (demo, off))
    return [
        row(f"orchestration share of the trial loop, demo fidelity (1 worker, {args.orch_trials} trials, "
            f"{demo.n_trained} trained; {demo.loop:.1f} s loop, {demo.train:.1f} s training and evaluation; W&B "
            "offline, kept weights, heartbeats)", f"{100 * share:.1f}%", "<= 3%", yes(share <= 0.03)),
        row(f"the same with W&B disabled ({off.loop:.1f} s loop, {off.train:.1f} s training); tracking's whole cost: "
            f"loop offline / disabled = {demo.loop / off.loop:.3f}x", f"{100 * share_off:.1f}%"),
        row(f"process start-up and data loading before the loop (demo run, {demo.wall:.1f} s wall)",
            f"{demo.wall - demo.loop:.1f} s")]


def measure_workers(tmp: Path, args) -> list[str]:
    data = [f"data.train_subset={args.worker_subset}", f"data.val_subset={VAL_IMAGES}"]
    common = [f"study.n_trials={args.trials}", f"trainer.epochs={args.epochs}", "pruner=none", *data]
    half = max(1, (os.cpu_count() or 2) // 2)  # threads=auto of each of two joblib workers (1 on 2 cores)
    one_t1 = search(tmp / "one_t1", *common, f"threads={half}")
    two = search(tmp / "two", *common, "worker=0,1", "hydra/launcher=joblib", multirun=True)
    one = search(tmp / "one", *common)
    r1, r = two.wall / one_t1.wall, two.wall / one.wall
    return [
        row(f"wall, 2 workers / 1 worker with the same threads per worker ({args.trials} trials x {args.epochs} "
            f"epochs on {args.worker_subset} images, {two.n_trained} / {one_t1.n_trained} trained; {two.wall:.1f} s "
            f"/ {one_t1.wall:.1f} s; trial loop {two.loop / one_t1.loop:.2f}x)", f"{r1:.2f}x", "<= 0.6x",
            yes(r1 <= 0.6)),
        row(f"wall, 2 workers / 1 worker using every core (threads=auto: {two.wall:.1f} s / {one.wall:.1f} s; trial "
            f"loop {two.loop / one.loop:.2f}x): can't go below {one_t1.train / (2 * one.train):.2f}x here, see the "
            "next row", f"{r:.2f}x"),
        row(f"training and evaluation of the same trials, 1 worker, {half} thread / {os.cpu_count()} threads "
            f"({one_t1.train:.1f} s / {one.train:.1f} s)", f"{one_t1.train / one.train:.2f}x")]


def measure_pruning(tmp: Path, args) -> list[str]:
    data = [f"data.train_subset={args.train_subset}", f"data.val_subset={VAL_IMAGES}"]
    pruners = {"median": ["pruner=median"]}
    if args.compare_warmup:
        pruners[f"median, n_warmup_steps={args.compare_warmup}"] = [
            "pruner=median", f"pruner.n_warmup_steps={args.compare_warmup}"]
    rows: dict[str, list[dict]] = {name: [] for name in pruners}
    for seed in args.seeds:
        pc = [f"study.n_trials={args.prune_trials}", f"trainer.epochs={args.epochs}", f"seed={seed}",
              "study.enqueue_baselines=false", *data]
        t_none = search(tmp / f"none{seed}", *pc, "pruner=none").trials
        best = max(t.values[0] for t in t_none if trained(t))
        for k, (name, overrides) in enumerate(pruners.items()):
            t_med = search(tmp / f"pruned{k}-{seed}", *pc, *overrides).trials
            best_med = max((t.values[0] for t in t_med if trained(t)), default=float("nan"))
            se = math.sqrt(best * (1 - best) / VAL_IMAGES)  # binomial standard error of the best's accuracy
            rows[name].append({
                "seed": seed, "best": best, "best_med": best_med, "same": best_med >= best - 1e-12,
                "near": best_med >= best - se - 1e-12, "se": se,
                "best_trial": next(t.number for t in t_none if trained(t) and t.values[0] >= best - 1e-12),
                "e_none": epochs_to_reach(t_none, best), "e_med": epochs_to_reach(t_med, best),
                "total_none": sum(epochs_of(t) for t in t_none), "total_med": sum(epochs_of(t) for t in t_med),
                "pruned": sum(t.state == TrialState.PRUNED for t in t_med)})
    out = []
    for name, prs in rows.items():
        for p in prs:
            first = ("not reached: it was pruned" if p["e_med"] is None
                     else f"reached after {p['e_med']} / {p['e_none']} epochs")
            how = "the same" if p["same"] else (f"{100 * (p['best'] - p['best_med']):.1f} pp lower, within" if p["near"]
                                                 else f"{100 * (p['best'] - p['best_med']):.1f} pp lower, beyond")
            if not p["same"]:
                how += f" the validation standard error {100 * p['se']:.1f} pp"
            out.append(row(f"{name}, seed {p['seed']}: study epochs, pruned / none ({p['pruned']} of "
                           f"{args.prune_trials} pruned; best {p['best_med']:.4f} / {p['best']:.4f}: {how}; the "
                           f"unpruned best first appears at trial {p['best_trial']}, {first})",
                           f"{p['total_med'] / p['total_none']:.2f}x ({p['total_med']} / {p['total_none']})"))
        same, near = sum(p["same"] for p in prs), sum(p["near"] for p in prs)
        r = sum(p["total_med"] for p in prs) / sum(p["total_none"] for p in prs)
        reached = [p for p in prs if p["e_med"] is not None]
        first = sum(p["e_med"] for p in reached) / max(1, sum(p["e_none"] for p in reached))
        target, met = ("<= 0.6x", f"{yes(r <= 0.6 and same == len(prs))} (exactly the same best); "
                                  f"{yes(r <= 0.6 and near == len(prs))} (the same within the validation noise)") \
            if name == "median" else ("", "")
        out.append(f"| study epochs for the same best, {name} / none, {len(prs)} seeds x {args.prune_trials} trials "
                   f"x {args.epochs} epochs (the same best in {same} of {len(prs)}, within the validation standard "
                   f"error in {near}; epochs until the unpruned best first appears, where reached: {first:.2f}x) | "
                   f"{r:.2f}x | {target} | {met} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--orch-trials", type=int, default=10, help="trials of each orchestration run (demo fidelity)")
    ap.add_argument("--trials", type=int, default=24, help="study budget of the worker runs")
    ap.add_argument("--worker-subset", type=int, default=2000, help="training images per trial in the worker runs")
    ap.add_argument("--train-subset", type=int, default=3000, help="training images per trial in the pruning runs")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per trial: workers and pruning")
    ap.add_argument("--prune-trials", type=int, default=24)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--compare-warmup", type=int, default=2, metavar="N",
                    help="also run the median pruner with pruner.n_warmup_steps=N on the same seeds (0: not)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the studies in this folder (default: a temp dir)")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or Path(tmp)
        if "orchestration" in args.parts:
            rows += measure_orchestration(tmp, args)
        if "workers" in args.parts:
            rows += measure_workers(tmp, args)
        if "pruning" in args.parts:
            rows += measure_pruning(tmp, args)
    print(f"{describe_machine()}. Fashion-MNIST, gcnas_resnet_tiny, gc_full, random sampler; demo fidelity = "
          f"the data config's subsets and trainer.epochs; workers: {args.worker_subset}, pruning: {args.train_subset} "
          f"training images, {VAL_IMAGES} validation images, {args.epochs} epochs per trial\n")
    print("| measure | value | target | met |")
    print("|---|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
