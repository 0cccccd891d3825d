"""Studies of thousands of trials: the search's own cost per trial against the number of trials in the study.

A one-shot trial scores its architecture on the study's supernet in about 1.45 s (docs/results.md), so a one-shot
study runs thousands of trials, and what the search does around each trial (ask the sampler, record, look for a
duplicate, tell, count the budget, show progress, summarise) must not grow with the study. This benchmark runs
one-shot studies through gcnas's own worker (:func:`gcnas.search.run_search`, one process per worker, as
``gcnas-search -m worker=0,1,2,3`` runs them) on SQLite and on PostgreSQL, with one and several workers, growing each
study to every size of ``--trials`` in turn (the study of 100 trials is resumed to 1,000, then to 5,000: the trials
of a study of n are its first n). The scoring itself is made cheap (a tiny supernet over the tiny backbone, a few
images), since the search's cost is what is measured: the real driver's steps are timed with ``time.perf_counter``
around the real calls (:data:`PROBES`; each part's time excludes the parts called inside it), in these parts:

* **ask**: ``study.ask`` (the sampler's relative draw, the new trial's row; under SQLite's ask lock);
* **suggest**: the space's draws (the sampler's independent draw of each parameter, a parameter row each);
* **storage**: the trial's record (its user attributes, constraint values, folder, log and ``architecture.yaml``),
  its id's lookup;
* **dedupe**: the trial key, and the search for a trial of the same architecture and recipe;
* **tell**: ``study.tell``;
* **budget**: before each trial, the stale trials failed and the finished ones counted (the exact budget), and
  after ``ask``, the trials ahead of it counted (:meth:`_TrialLoop._cancelled`);
* **progress**: the progress line and the callbacks after each trial (the stored trial read back, counted again);
* **other**: the rest of the trial loop (heartbeats, the failure policy);
* **summary**: the closing table (:func:`_finish`), once per worker and study size, shown in seconds.

The trial's own work (building the model, its cost, the supernet's score) is shown apart and is not orchestration.
Per size n the table gives each part in ms per trial over the last trials before the study held n (a tenth of n, at
least 10, at most ``--window``; an infeasible draw or a cancelled trial is a trial here too; each worker's first is
left out, as its first read of the whole study is the worker's start): what one more trial costs in a study of that
size; their sum, the orchestration, in wall time and in the workers' own CPU time (waits for the
disk, the database and other processes left out: the machine's other load inflates the wall time, hardly the CPU
time); and the orchestration's share of a one-shot trial of ``--trial-seconds`` (goal: <= 10 % at 5,000 trials).
Between two sizes the growth exponent k of cost ~ n^k says how it grows (0: constant per trial; 1: linear per
trial, quadratic in all). With ``--fill`` the study reaches each size after the first by copies of its own searched
trials (``Study.add_trials``: parameters, values, attributes and trial key kept) up to the timed window, which the
workers then run: the cost of a trial in a study of 5,000 without running all 5,000. A copy is one transaction of
about 60 statements under the study's row lock (Optuna's trial-number lock), so the rate is set by round trips, not
by the study's size; a connection that does not wait for each commit (:func:`fill_storage`) copies faster, and
copying from several processes, a Unix socket or no prepared statements did not (rates: docs/results.md, "Studies of
thousands of trials").

PostgreSQL: ``--postgres-url`` (or the environment's GCNAS_STORAGE_URL); without one a throw-away server is started
on loopback as the tests start one (``tests/postgres.py``: Debian's server binaries, as the ``postgres`` user) and
removed at the end. Every run has its own study (and SQLite file), kept under ``--keep`` if given.

Usage: python -m benchmarks.scale [--trials 100,1000,5000] [--storages sqlite,postgresql] [--workers 1,4]
                                  [--sampler tpe|random] [--n-startup-trials 8] [--constant-liar true|false]
                                  [--multivariate true|false] [--window 50] [--fill] [--trial-seconds 1.45]
                                  [--postgres-url URL] [--keep DIR] [OVERRIDE ...]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import optuna

from benchmarks.common import config
from gcnas.machine import describe_machine

# The cheap one-shot study: a 1-epoch supernet over the tiny backbone on 256 generated images, each architecture scored
# on 16 calibration and 32 validation images. Everything the search itself does stays as configured by default
# (heartbeats, the references, dedupe, the sampler), W&B off (tracking is measured by benchmarks/search.py).
CHEAP = ["data=synthetic", "data.size=256", "data.val_size=32", "search.method=oneshot", "search.supernet_epochs=1",
         "search.calib_images=16", "search.supernet_score=accuracy", "trainer.batch_size=32", "trainer.epochs=1",
         "progress=plain", "threads=1", "wandb.mode=disabled"]
PARTS = ("ask", "suggest", "storage", "dedupe", "tell", "budget", "progress", "other")
WORK = "trial"  # the trial's own work: model, cost, score
SETUP = "setup"  # data, space, supernet, joining the study: once per worker, not per trial
CPU = "cpu:"  # the prefix of a part's CPU time (this process's thread): its wall time less waits and other processes

# (module, attribute path, part): each is wrapped by a timer that adds its time, less that of the probes it calls, to
# its part. A name that no longer exists is reported (and fails tests/test_scale_bench.py).
PROBES = (
    ("gcnas.search.worker", "prepare_worker", SETUP),
    ("gcnas.search.worker", "make_runner", SETUP),
    ("gcnas.search.worker", "_TrialLoop._finished_unless_done", "budget"),
    ("gcnas.search.worker", "_TrialLoop._cancelled", "budget"),
    ("gcnas.search.worker", "ask", "ask"),
    ("gcnas.search.worker", "trial_id", "storage"),
    ("gcnas.search.worker", "tell", "tell"),
    ("gcnas.search.worker", "_TrialLoop._ended", "progress"),
    ("gcnas.search.worker", "_Progress.start_trial", "progress"),
    ("gcnas.search.worker", "_finish", "summary"),
    ("gcnas.search.objective", "TrialRunner.__call__", "storage"),
    ("gcnas.search.objective", "TrialRunner._resolve", "suggest"),
    ("gcnas.search.objective", "TrialRunner._record_architecture", "storage"),
    ("gcnas.search.objective", "TrialRunner._dedupe", "dedupe"),
    ("gcnas.search.objective", "TrialRunner._reuse", "storage"),
    ("gcnas.search.objective", "TrialRunner._cost", WORK),
    ("gcnas.search.objective", "TrialRunner._check_constraints", "storage"),
    ("gcnas.search.objective", "TrialRunner._score", "storage"),
    ("gcnas.search.oneshot", "OneShotScorer.__call__", WORK),
)
ITERATION = "_TrialLoop._finished_unless_done"  # called once before each trial: where one trial's times are closed


class Stopwatch:
    """Exclusive time per part: a probe's time, less the time of the probes it called, goes to its part. One
    iteration of the trial loop is closed at each call of :data:`ITERATION`, keyed by the finished trials it saw; what
    of its wall time no probe took is its ``other``."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.iterations: list[tuple[Optional[int], dict[str, float]]] = []
        self._stack: list[list[float]] = []  # [start, time in nested probes, CPU start, CPU in nested probes]
        self._size: Optional[int] = None
        self._open: dict[str, float] = {}
        self._opened = self._opened_cpu = 0.0  # perf_counter() and thread_time() when the open iteration began
        self.missing: list[str] = []

    def timed(self, part: str, fn: Callable, closes_iteration: bool = False) -> Callable:
        def wrapper(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return fn(*args, **kwargs)
            if closes_iteration:
                self._close_iteration()
            self._stack.append([time.perf_counter(), 0.0, time.thread_time(), 0.0])
            try:
                out = fn(*args, **kwargs)
            finally:
                start, nested, cpu_start, cpu_nested = self._stack.pop()
                elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
                self._add(part, elapsed - nested)
                self._add(CPU + part, cpu - cpu_nested)
                if self._stack:
                    self._stack[-1][1] += elapsed
                    self._stack[-1][3] += cpu
            if closes_iteration:
                self._size = out
            return out

        wrapper.__wrapped__ = fn
        return wrapper

    def _add(self, part: str, seconds: float) -> None:
        self.totals[part] = self.totals.get(part, 0.0) + seconds
        self._open[part] = self._open.get(part, 0.0) + seconds

    def _close_iteration(self) -> None:
        now, now_cpu = time.perf_counter(), time.thread_time()
        if self._size is not None:
            for prefix, wall in (("", now - self._opened), (CPU, now_cpu - self._opened_cpu)):
                timed = sum(self._open.get(prefix + p, 0.0) for p in (*PARTS, WORK))
                self._open[prefix + "other"] = self._open.get(prefix + "other", 0.0) + max(0.0, wall - timed)
            self.iterations.append((self._size, self._open))
        self._open, self._opened, self._opened_cpu = {}, now, now_cpu

    def install(self) -> None:
        """Wrap every probe of :data:`PROBES` (in this process)."""
        import importlib

        for module_name, path, part in PROBES:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            try:
                for p in parents:
                    owner = getattr(owner, p)
                fn = getattr(owner, name)
            except AttributeError:
                self.missing.append(f"{module_name}.{path}")
                continue
            setattr(owner, name, self.timed(part, fn, closes_iteration=path == ITERATION))


@dataclass
class Run:
    """One study: its storage kind, workers and sampler settings, grown to each size in turn."""

    storage: str  # sqlite | postgresql
    workers: int
    url: str
    name: str
    root: Path
    iterations: dict = field(default_factory=dict)  # size -> [(finished trials seen, {part: seconds})], all workers
    filled: dict = field(default_factory=dict)  # size -> trials copied into the study before it was grown to it
    summary: dict = field(default_factory=dict)  # size -> summary seconds (the slowest worker's)
    setup: dict = field(default_factory=dict)  # size -> setup seconds (the slowest worker's)
    missing: list = field(default_factory=list)


def _worker(cfg: dict, out: str) -> None:
    """One search worker in its own process, its steps timed; writes what it measured to ``out`` (JSON)."""
    warnings.simplefilter("ignore")  # the tiny backbone's degenerate ratios warn once per block built
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    handler = logging.FileHandler(Path(cfg["paths"]["root"]) / f"worker{cfg['worker']}.log")
    logging.getLogger("gcnas").addHandler(handler)  # the per-trial lines go to a file, as Hydra's job log has them
    logging.getLogger("gcnas").setLevel(logging.INFO)
    watch = Stopwatch()
    watch.install()
    from gcnas.search import run_search

    result = run_search(cfg)  # the loop's last budget check (the study is full) closes its last trial
    Path(out).write_text(json.dumps({"iterations": watch.iterations, "totals": watch.totals,
                                     "missing": watch.missing, "ran": result.trials_run,
                                     "finished": result.n_finished}))


def grow(run: Run, cfg: dict, size: int) -> None:
    """Resume ``run``'s study to ``size`` finished trials with its workers, each in its own process."""
    ctx = multiprocessing.get_context("spawn")
    procs, outs = [], []
    t0 = time.perf_counter()
    for w in range(run.workers):
        wcfg = json.loads(json.dumps(cfg))
        wcfg["worker"] = w
        wcfg["study"]["n_trials"] = size
        if wcfg["sampler"].get("seed") is not None:  # a resumed study's sampler would repeat its first draws
            wcfg["sampler"]["seed"] += size
        out = run.root / f"times-{size}-worker{w}.json"
        out.unlink(missing_ok=True)
        p = ctx.Process(target=_worker, args=(wcfg, str(out)))
        p.start()
        procs.append(p)
        outs.append(out)
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    failed = [w for w, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{run.name}: worker(s) {failed} failed growing the study to {size} trials; logs in "
                           f"{run.root}")
    measured = [json.loads(o.read_text()) for o in outs]
    # each worker's first trial left out: its first read of the whole study (all of it, into Optuna's cache) is the
    # worker's start, paid once, not a trial's
    run.iterations[size] = sorted(((s, parts) for m in measured for s, parts in m["iterations"][1:] if s is not None),
                                  key=lambda x: x[0])
    run.summary[size] = max(m["totals"].get("summary", 0.0) for m in measured)
    run.setup[size] = max(m["totals"].get(SETUP, 0.0) for m in measured)
    run.missing = sorted({x for m in measured for x in m["missing"]})
    print(f"{run.name}: {size} trials, {sum(m['ran'] for m in measured)} run now, {wall:.0f} s "
          f"({run.setup[size]:.0f} s set-up)", file=sys.stderr, flush=True)


def fill_storage(url: str) -> Any:
    """The storage the copies go through: on PostgreSQL a connection that does not wait for each commit's WAL write
    (``synchronous_commit=off``, this connection only: the workers' stay as the server is configured); elsewhere the
    URL itself."""
    if not url.startswith("postgresql"):
        return url
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"options": "-c synchronous_commit=off"}})


def fill(run: Run, size: int, target: int) -> None:
    """Bring ``run``'s study to ``target`` counted trials (on its way to ``size``) by copying its searched trials (each
    with its parameters, values, attributes and trial key, under a new number: ``Study.add_trials``)."""
    from gcnas.search import record
    from gcnas.search.summary import counted_trials

    study = optuna.load_study(study_name=run.name, storage=fill_storage(run.url))
    have = counted_trials(study)
    searched = [t for t in have if record.ROLE.get(t) == "searched"]
    missing = target - len(have)
    if missing <= 0 or not searched:
        return
    t0 = time.perf_counter()
    study.add_trials([searched[k % len(searched)] for k in range(missing)])
    seconds = time.perf_counter() - t0
    run.filled[size] = missing
    print(f"{run.name}: {missing} trials copied in {seconds:.0f} s ({missing / seconds:.1f} trials/s)",
          file=sys.stderr, flush=True)


@dataclass
class Row:
    """The table's numbers for one run at one size."""

    parts: dict  # part -> ms per asked trial
    cpu: float  # the orchestration's CPU ms per asked trial (the workers'; the database server's not included)
    work: float  # ms per asked trial
    asked: int
    summary: float  # seconds

    @property
    def orchestration(self) -> float:
        return sum(self.parts.values())


def window(size: int, most: int) -> int:
    """How many of the last trials before ``size`` are timed: a tenth of it, at least 10, at most ``most``."""
    return min(most, max(10, size // 10))


def row_at(run: Run, size: int, most: int) -> Row:
    timed = [parts for _, parts in run.iterations[size][-window(size, most):]]

    def per_trial(part: str) -> float:
        return 1000 * sum(p.get(part, 0.0) for p in timed) / max(1, len(timed))

    return Row({part: per_trial(part) for part in PARTS}, sum(per_trial(CPU + part) for part in PARTS),
               per_trial(WORK), len(timed), run.summary.get(size, float("nan")))


def growth(a: float, b: float, na: int, nb: int) -> float:
    """The exponent k of a cost ~ n^k that is ``a`` at ``na`` trials and ``b`` at ``nb``."""
    if a <= 0 or b <= 0:
        return float("nan")
    return math.log(b / a) / math.log(nb / na)


def table(runs: list[Run], sizes: list[int], trial_seconds: float, most: int) -> list[str]:
    head = ["storage", "workers", "trials", "copied", "timed", *(f"{p} ms" for p in PARTS), "orchestration ms",
            "growth", "CPU ms", "CPU growth", "summary s", "trial work ms", f"share of a {trial_seconds:g} s trial %",
            "share by CPU %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for run in runs:
        previous: Optional[tuple[int, Row]] = None
        for n in sizes:
            if n not in run.summary:
                continue
            r = row_at(run, n, most)
            g, g_cpu = ((growth(a, b, previous[0], n) if previous else float("nan"))
                        for a, b in ((previous[1].orchestration if previous else 0, r.orchestration),
                                     (previous[1].cpu if previous else 0, r.cpu)))
            share, share_cpu = (100 * x / (x + 1000 * trial_seconds) for x in (r.orchestration, r.cpu))
            cells = [run.storage, str(run.workers), str(n), str(run.filled.get(n, 0)), str(r.asked),
                     *(f"{r.parts[p]:.2f}" for p in PARTS), f"{r.orchestration:.1f}",
                     "-" if math.isnan(g) else f"{g:.2f}", f"{r.cpu:.1f}", "-" if math.isnan(g_cpu) else f"{g_cpu:.2f}",
                     f"{r.summary:.2f}", f"{r.work:.1f}", f"{share:.1f}", f"{share_cpu:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
            previous = (n, r)
    return lines


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list]:
    return lambda text: [kind(x) for x in text.split(",") if x]


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")
    return text.lower() == "true"


def sampler_overrides(args) -> list[str]:
    out = [f"sampler={args.sampler}"]
    if args.sampler == "tpe":
        out += [f"sampler.n_startup_trials={args.n_startup_trials}",
                f"sampler.constant_liar={str(args.constant_liar).lower()}",
                f"sampler.multivariate={str(args.multivariate).lower()}"]
    return out


def _postgres(args, stack: list) -> str:
    url = args.postgres_url or os.environ.get("GCNAS_STORAGE_URL")
    if url:
        return url
    from tests.postgres import PostgresServer  # the tests' throw-away server (a folder of the repository)

    server = PostgresServer()
    why = server.start()
    stack.append(server)
    if why:
        raise RuntimeError(f"--storages postgresql: no --postgres-url and no server could be started: {why}")
    return server.create_database("gcnas_scale")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=_csv(int), default=[100, 1000, 5000], help="study sizes, grown in turn")
    ap.add_argument("--storages", type=_csv(str), default=["sqlite", "postgresql"])
    ap.add_argument("--workers", type=_csv(int), default=[1, 4])
    ap.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    ap.add_argument("--n-startup-trials", type=int, default=8, help="TPE's (conf/sampler/tpe.yaml: 8)")
    ap.add_argument("--constant-liar", type=_bool, default=True, help="TPE's (conf/sampler/tpe.yaml: true)")
    ap.add_argument("--multivariate", type=_bool, default=True, help="TPE's (conf/sampler/tpe.yaml: true)")
    ap.add_argument("--trial-seconds", type=float, default=1.45,
                    help="a one-shot trial's own time the share is read against (docs/results.md: 1.45 s a score)")
    ap.add_argument("--window", type=int, default=50,
                    help="trials timed at each size: the last tenth before it, at most this many")
    ap.add_argument("--fill", action="store_true",
                    help="reach each size after the first by copying the study's searched trials up to the window "
                         "before it, then run the window's trials: the cost at 5,000 trials without running 5,000")
    ap.add_argument("--postgres-url", default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the studies in this folder (default: a temp dir)")
    ap.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides after the cheap study's")
    args = ap.parse_args(argv)
    if any(s not in ("sqlite", "postgresql") for s in args.storages):
        ap.error(f"--storages: sqlite and/or postgresql, got {args.storages}")
    sizes = sorted(set(args.trials))
    cfg = config(*CHEAP, *sampler_overrides(args), *args.overrides)
    settings = " ".join(sampler_overrides(args))
    servers: list = []
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        top = args.keep or Path(tmp)
        try:
            for storage in args.storages:
                for workers in args.workers:
                    name = f"scale-{storage}-{workers}w-{args.sampler}-{int(time.time())}"
                    root = top / name
                    root.mkdir(parents=True, exist_ok=True)
                    url = f"sqlite:///{root}/studies.db" if storage == "sqlite" else _postgres(args, servers)
                    run = Run(storage, workers, url, name, root)
                    rcfg = {**cfg, "paths": {**cfg["paths"], "root": str(root)},
                            "study": {**cfg["study"], "name": name, "storage": url}}
                    from gcnas.search import make_storage

                    make_storage(url)  # the schema, once before the workers start (as gcnas-search's callback does)
                    for k, n in enumerate(sizes):
                        if args.fill and k > 0:
                            fill(run, n, n - window(n, args.window))
                        grow(run, rcfg, n)
                    runs.append(run)
        finally:
            for server in servers:
                server.stop()
    print(f"{describe_machine()}. One-shot studies (gc_full space, tiny backbone, cheap scoring: {' '.join(CHEAP)}); "
          f"{settings}; each part in ms per trial over the last trials before n ('timed': a tenth of n, at least 10, "
          f"at most {args.window}; 'copied': trials copied into the study before, --fill), their sum the "
          f"orchestration; "
          f"growth: exponent k of orchestration ~ n^k since the previous size (0: constant per trial, 1: linear); "
          f"CPU: the workers' own CPU time of the same (waits for the disk, the database and other processes left "
          f"out); summary: the closing table, once per worker; share: the orchestration against itself plus a "
          f"one-shot trial of {args.trial_seconds:g} s\n")
    print("\n".join(table(runs, sizes, args.trial_seconds, args.window)))
    missing = sorted({m for r in runs for m in r.missing})
    if missing:
        print(f"\nnot timed (no longer in gcnas; their time counts in their callers' parts): {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
