"""A search worker: opens the study on shared storage and runs trials until the study's budget is spent.

Every Hydra job is such a worker, so ``gcnas-search -m worker=0,1 hydra/launcher=joblib`` runs two asynchronous workers
on one study, and running the same command again resumes it. The budget ``study.n_trials`` counts finished (complete or
pruned) trials across all workers and restarts, exactly: trial numbers are handed out by the storage, and a trial whose
number comes after the budget's last is cancelled (recorded as failed with the reason) rather than run.

Preparing the worker (data, space, study, supernet) is :mod:`gcnas.search.prepare`; this module runs it: the ask/tell
loop, its failure policy (a failed trial, too many in a row, an interrupt, infeasible draws) and the closing result.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import optuna
import torch
from optuna.trial import TrialState

from gcnas.errors import ConfigError, Interrupted
from gcnas.search import record
from gcnas.search.callbacks import Callbacks, SearchCallback
from gcnas.search.objective import TrialRunner
from gcnas.search.optuna_compat import Heartbeat, ask, tell, trial_id
from gcnas.search.paths import resolve_stored, trial_folder
from gcnas.search.prepare import PreparedWorker, make_runner, prepare_worker, public_config, references, validate_config
from gcnas.search.retry import queue_again, retry_stale_trial
from gcnas.search.study import redact_url
from gcnas.search.summary import counted_trials, pareto_trials, ranked_trials, results_table

__all__ = ["run_search", "SearchResult", "validate_config", "public_config", "keep_top_weights", "PRETRAINED_CFG_ATTR",
           "references", "queue_again", "retry_stale_trial"]

log = logging.getLogger("gcnas.search")
_RUNNING = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# study user attribute: the data's preprocessing as timm's pretrained_cfg (gcnas.data.DataSplits.pretrained_cfg)
PRETRAINED_CFG_ATTR = record.PRETRAINED_CFG.name


@dataclass
class SearchResult:
    study_name: str
    storage: str  # redacted
    n_finished: int
    trials_run: int  # by this worker
    best_number: Optional[int]
    best_values: Optional[list]
    best_architecture: Optional[str]  # path of architecture.yaml
    table: str
    sampler: str = ""  # the class of the sampler this worker asked with (its config's sampler._target_)
    duplicates: int = 0  # of trials_run: sampled architectures already trained, which took that trial's result


class _Progress:
    """Bars on a terminal, plain log lines otherwise."""

    def __init__(self, mode: str, total: int, epochs: int) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "plain"
        self.mode, self.bar, self.epoch_bar, self.epochs = mode, None, None, epochs
        if mode == "bar":
            from tqdm import tqdm

            self._tqdm = tqdm
            self.bar = tqdm(total=total, desc="trials", position=0, dynamic_ncols=True)

    def start_trial(self, number: int, finished: int) -> None:
        if self.bar is not None:
            self.bar.n = finished
            self.bar.refresh()
            self.epoch_bar = self._tqdm(total=self.epochs, desc=f"trial {number} epochs", position=1, leave=False,
                                        dynamic_ncols=True)

    def epoch(self, number: int, er) -> None:
        if self.epoch_bar is not None:
            self.epoch_bar.update(1)
            self.epoch_bar.set_postfix(val_acc=f"{er.val_acc:.4f}")
        elif self.mode == "plain":
            log.info("trial %d epoch %d: val acc %.4f (%.1fs)", number, er.epoch, er.val_acc, er.seconds)

    def end_trial(self, number: int, state: TrialState, values, finished: int, total: int, note: str = "") -> None:
        if self.epoch_bar is not None:
            self.epoch_bar.close()
            self.epoch_bar = None
        if self.bar is not None:
            self.bar.n = finished
            self.bar.refresh()
        if self.mode != "none":
            shown = "" if values is None else ", ".join(f"{v:.4g}" for v in values)
            log.info("trial %d %s %s [%d/%d finished]%s", number, state.name.lower(), shown, finished, total, note)

    def close(self) -> None:
        for b in (self.epoch_bar, self.bar):
            if b is not None:
                b.close()


def _failure_reason(e: BaseException) -> str:
    """One line for the trial's ``error`` attribute: the kind, the message and where it was raised."""
    oom = isinstance(e, torch.OutOfMemoryError) or "can't allocate memory" in str(e) or "out of memory" in str(e)
    frames = traceback.extract_tb(e.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    kind = "out of memory" if oom else type(e).__name__
    return f"{kind}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} [{where}]"[:2000]


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def keep_top_weights(study: optuna.Study, keep: int, study_dir: Path) -> list[int]:
    """Delete the saved weights of trials outside the top ``keep`` (single objective) or off the Pareto front.

    Returns the trial numbers whose weights remain. Any worker may call it; a file another worker removed first is fine.
    ``study_dir`` is the study's folder, which the recorded paths are relative to.
    """
    multi = len(study.directions) > 1
    top = pareto_trials(study) if multi else ranked_trials(study)[:keep]
    kept = {t.number for t in top}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        path = resolve_stored(study_dir, record.WEIGHTS.get(t))
        if path is not None and t.number not in kept:
            path.unlink(missing_ok=True)
    return sorted(n for n in kept if any(t.number == n and record.WEIGHTS.get(t) for t in top))


class _Interrupts:
    """While active (in the main thread), SIGINT and SIGTERM raise :class:`~gcnas.errors.Interrupted` and are
    remembered in :attr:`signum`: an exception a signal caused elsewhere (a DataLoader worker killed by the same
    Ctrl-C) is then known for an interrupt too. :meth:`held` ignores further signals while one is being recorded."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict = {}

    def _raise(self, signum, _frame) -> None:
        self.signum = signum
        raise Interrupted(signum)

    def __enter__(self) -> "_Interrupts":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {sig: signal.signal(sig, self._raise) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @contextlib.contextmanager
    def held(self):
        if not self._previous:
            yield
            return
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            yield
        finally:
            for sig in self.SIGNALS:
                signal.signal(sig, self._raise)


def _record_interrupt(study: optuna.Study, storage, tid: int, trial: optuna.Trial, runner: TrialRunner,
                      e: Interrupted, hooks: Callbacks) -> Interrupted:
    """End an interrupted trial as failed with the reason and queue it again, so the next run retries it before any new
    draw (a trial left running would count against the budget until its heartbeats went stale); returns the exception
    to raise, saying so."""
    reason = f"interrupted by {e.signal_name} (worker {runner.worker})"
    record.INTERRUPTED.set(trial, reason)
    record.ERROR.set(trial, reason)
    tell(study, trial, state=TrialState.FAIL)
    with (runner.trial_dir(trial.number) / "log.txt").open("a") as f:
        f.write(f"{reason}: failed, and queued again\n")
    queue_again(study, storage.get_trial(tid), reason)
    hooks("trial_ended", storage.get_trial(tid))
    log.warning("trial %d %s: recorded as failed and queued again", trial.number, reason)
    return Interrupted(e.signum, f"interrupted by {e.signal_name}: trial {trial.number} is recorded as failed and "
                                 f"queued again; run the same command to resume (finished trials are kept)")


class _TrialLoop:
    """Ask, run and tell trials until the study counts ``study.n_trials`` finished ones (infeasible draws, which
    train nothing, do not count), the worker's timeout, too many failures in a row (``study.max_failures``), too many
    infeasible draws in a row (``study.max_infeasible``), or an interrupt; :meth:`run` returns the trials this worker
    ran, of which ``duplicates`` drew an architecture already trained."""

    def __init__(self, w: PreparedWorker, runner: TrialRunner, progress: _Progress, hooks: Callbacks,
                 interrupts: _Interrupts) -> None:
        self.w, self.study, self.storage, self.study_cfg = w, w.study, w.storage, w.study_cfg
        self.runner, self.progress, self.hooks, self.interrupts = runner, progress, hooks, interrupts
        self.ran = self.duplicates = self.failures_in_a_row = self.infeasible_in_a_row = 0
        # the finished trials counted for the last trial's progress line, just after it was told: the next budget
        # check reads no other count (one read of every trial per trial, not two; a trial another worker finished
        # in between is caught by _cancelled, which keeps the budget exact)
        self._counted: Optional[int] = None

    def run(self) -> int:
        started = time.perf_counter()
        while True:
            finished = self._finished_unless_done(started)
            if finished is None:
                break
            trial = ask(self.study, self.w.url)
            tid = trial_id(self.storage, self.study, trial)  # two storage queries: once per trial
            try:
                if self._cancelled(trial):
                    break
                told = self._run_one(trial, tid, finished)
            except Interrupted as e:
                with self.interrupts.held():  # a second Ctrl-C while this is written would leave the trial running
                    raise _record_interrupt(self.study, self.storage, tid, trial, self.runner, e, self.hooks) from None
            if told is not None:
                self._ended(trial, tid, *told)
        return self.ran

    def _finished_unless_done(self, started: float) -> Optional[int]:
        """How many trials the study counts finished; None when this worker is done (the budget or its timeout)."""
        if self.w.heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # a dead worker's trial: failed, and queued again
        finished = len(counted_trials(self.study)) if self._counted is None else self._counted
        self._counted = None
        if finished >= self.study_cfg.n_trials:
            return None
        timeout = self.study_cfg.timeout
        if timeout is not None and time.perf_counter() - started > timeout:
            log.info("study.timeout=%ss reached; this worker stops", timeout)
            return None
        return finished

    def _cancelled(self, trial: optuna.Trial) -> bool:
        """Cancel ``trial`` (failed, with the reason) when earlier trials took the whole budget."""
        n_trials = self.study_cfg.n_trials
        if trial.number < n_trials:  # fewer trials than the budget come before it, whatever their states
            return False
        ahead = sum(1 for t in self.study.get_trials(deepcopy=False, states=_RUNNING)
                    if t.number < trial.number and not record.INFEASIBLE.on(t))
        # a reference is never cancelled: every delta and the noise floor are read from the references, and a
        # retried one comes after the trials that took its place in the queue
        if ahead >= n_trials and not record.FIXED_ARCHITECTURE.on(trial):
            record.CANCELLED.set(trial, f"study budget of {n_trials} trials already taken by earlier trials")
            tell(self.study, trial, state=TrialState.FAIL)
            return True
        return False

    def _run_one(self, trial: optuna.Trial, tid: int, finished: int) -> Optional[tuple[TrialState, Optional[list]]]:
        """Run and tell ``trial``; returns its state and values, or None when it raised (recorded as failed)."""
        self.progress.start_trial(trial.number, finished)
        try:
            with Heartbeat(self.storage, tid, self.w.heartbeat):
                state, values = self.runner(self.study, trial)
        except Interrupted:
            raise
        except Exception as e:  # a trial that raises is recorded as failed; the study goes on
            if self.interrupts.signum is not None:  # raised because of the interrupt (a killed DataLoader worker)
                raise Interrupted(self.interrupts.signum) from None
            reason = self._log_failure(trial, e)
            del e
            self._failed(trial, tid, reason)
            return None
        self.failures_in_a_row = 0
        tell(self.study, trial, values=values, state=state)
        return state, values

    def _log_failure(self, trial: optuna.Trial, e: BaseException) -> str:
        """Write the whole traceback to the trial's log, for whoever fixes it; returns the one-line reason."""
        reason = _failure_reason(e)
        with (self.runner.trial_dir(trial.number) / "log.txt").open("a") as f:
            f.write(f"failed: {reason}\n{''.join(traceback.format_exception(e))}")
        return reason

    def _failed(self, trial: optuna.Trial, tid: int, reason: str) -> None:
        """Record a trial that raised as failed; ``study.max_failures`` of them in a row stop the worker."""
        _free_memory()  # an out-of-memory trial must not take the next ones with it
        record.ERROR.set(trial, reason)
        tell(self.study, trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s (traceback in %s)", trial.number, reason,
                    self.runner.trial_dir(trial.number) / "log.txt")
        self.hooks("trial_ended", self.storage.get_trial(tid))
        self.ran += 1
        self.failures_in_a_row += 1
        max_failures = self.study_cfg.max_failures
        if self.failures_in_a_row >= max_failures:
            raise RuntimeError(f"{self.failures_in_a_row} trials in a row failed in this worker (study.max_failures="
                               f"{max_failures}); the last: {reason}. Finished trials are kept; fix the "
                               f"cause and run the same command to resume.") from None

    def _ended(self, trial: optuna.Trial, tid: int, state: TrialState, values: Optional[list]) -> None:
        """After a told trial: prune the kept weights, tell the callbacks, count infeasible draws, show progress."""
        self.ran += 1
        if self.runner.keep_weights > 0 and record.WEIGHTS.on(trial):
            keep_top_weights(self.study, self.runner.keep_weights, self.runner.study_dir)
        self.hooks("trial_ended", self.storage.get_trial(tid))
        duplicate_of = record.DUPLICATE_OF.get(trial)
        note = "" if duplicate_of is None else f" (same as trial {duplicate_of})"
        if duplicate_of is not None and not record.FIXED_ARCHITECTURE.on(trial):
            self.duplicates += 1
        infeasible = record.INFEASIBLE.get(trial)
        if infeasible:
            note = f" (infeasible, not counted: {infeasible})"
            self._count_infeasible(infeasible)
        else:
            self.infeasible_in_a_row = 0
        self._counted = len(counted_trials(self.study))
        self.progress.end_trial(trial.number, state, values, self._counted, self.study_cfg.n_trials, note)

    def _count_infeasible(self, reason: str) -> None:
        """``study.max_infeasible`` infeasible draws in a row stop the worker: the limits or constraints are too
        tight."""
        self.infeasible_in_a_row += 1
        if self.infeasible_in_a_row >= self.study_cfg.max_infeasible:
            raise ConfigError(f"study.max_infeasible: {self.infeasible_in_a_row} draws in a row were infeasible (the "
                              f"last: {reason}); widen the limits of {self.runner.space.source} (limits.min_blocks, "
                              f"limits.max_blocks) or the constraints (constraints.max_params, max_flops, "
                              f"max_latency_ms)")


def run_search(cfg: Mapping[str, Any], callbacks: Sequence[SearchCallback] = (), *,
               fixed_trials: Optional[Sequence[Mapping[str, Any]]] = None,
               space_source: Optional[str] = None) -> SearchResult:
    """Run one search worker with a resolved, plain config (see ``conf/config.yaml``); returns what it found (the
    command prints it).

    ``callbacks`` see every trial (``gcnas.track.WandbTracker`` is one); none of them can stop the search.
    ``fixed_trials``: a study of given architectures only (the confirmation's): the user attributes of each trial,
    enqueued in order instead of the references, and nothing is sampled. ``space_source``: the file the search space
    was read from, named in errors (default ``search_spaces/<search_space.name>.yaml``).

    SIGINT and SIGTERM raise :class:`~gcnas.errors.Interrupted`; a trial they interrupt is recorded as failed, with
    the reason, and queued again, so the next run retries it before any new draw.
    """
    with _Interrupts() as interrupts:
        w = prepare_worker(cfg, fixed_trials, space_source)
        progress = _Progress(w.job.job.progress, w.study_cfg.n_trials, int(cfg["trainer"]["epochs"]))
        hooks = Callbacks(callbacks)
        runner = make_runner(w, progress.epoch, hooks)
        loop = _TrialLoop(w, runner, progress, hooks, interrupts)
        try:
            loop.run()
        finally:
            progress.close()
        return _finish(w, loop.ran, loop.duplicates, hooks)


def _finish(w: PreparedWorker, ran: int, duplicates: int, hooks: Callbacks) -> SearchResult:
    """The worker's result; the callbacks hear the study ended when its budget is spent and no trial runs."""
    study, study_cfg = w.study, w.study_cfg
    table = results_table(study, w.metrics, study_cfg.top_k)
    ranked = pareto_trials(study) if len(w.metrics) > 1 else ranked_trials(study)
    best = ranked[0] if ranked else None
    best_path = str(trial_folder(w.study_dir, best.number) / "architecture.yaml") if best else None
    result = SearchResult(study_cfg.name, redact_url(w.url), len(counted_trials(study)), ran,
                          best.number if best else None, list(best.values) if best else None, best_path, table,
                          type(study.sampler).__name__, duplicates)
    if result.n_finished >= study_cfg.n_trials and not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        hooks("study_ended", study, result, w.study_dir)
    hooks("close")
    return result
