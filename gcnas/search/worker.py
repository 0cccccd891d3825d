"""A search worker: opens the study on shared storage and runs trials until the study's budget is spent.

Every Hydra job is such a worker, so ``gcnas-search -m worker=0,1 hydra/launcher=joblib`` runs two asynchronous workers
on one study, and running the same command again resumes it. The budget ``study.n_trials`` counts finished (complete or
pruned) trials across all workers and restarts, exactly: trial numbers are handed out by the storage, and a trial whose
number comes after the budget's last is cancelled (recorded as failed with the reason) rather than run.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
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
from optuna.trial import FrozenTrial, TrialState

from gcnas.backbones import BackboneWeights, backbone_data_config, list_sites
from gcnas.backbones.weights import check_weights
from gcnas.data import DataSplits, load_data
from gcnas.errors import ConfigError, Interrupted
from gcnas.oneshot import supernet_for_space
from gcnas.search.callbacks import Callbacks, SearchCallback
from gcnas.search.objective import FIXED_ARCH_ATTR, METRICS, REPLICATE_ATTR, ROLE_ATTR, TrialRunner
from gcnas.search.config import SearchConfig, SearchJob, StudyConfig, read_job
from gcnas.search.oneshot import check_study_score, oneshot_scorer, study_reference, study_supernet
from gcnas.search.optuna_compat import Heartbeat, ask, tell, trial_id
from gcnas.search.identity import check_study_identity, study_identity
from gcnas.search.paths import resolve_stored, study_folder, trial_folder
from gcnas.search.study import make_pruner, make_sampler, make_storage, make_study, redact_url
from gcnas.search.summary import REFERENCE_ROLES, counted_trials, pareto_trials, ranked_trials, results_table
from gcnas.space import SearchSpace, paper_default_architecture
from gcnas.train.loop import check_layer_decay
from gcnas.train.runtime import select_device, set_threads
from gcnas.train import TrainerConfig
from gcnas.train.pretrain import ensure_pretrained
from gcnas.arch import Architecture
from gcnas.search import record

__all__ = ["run_search", "SearchResult", "validate_config", "public_config", "keep_top_weights", "PRETRAINED_CFG_ATTR"]

log = logging.getLogger("gcnas.search")
_RUNNING = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# study user attribute: the data's preprocessing as timm's pretrained_cfg (gcnas.data.DataSplits.pretrained_cfg)
PRETRAINED_CFG_ATTR = record.PRETRAINED_CFG.name
# the user attributes a retried trial keeps
_WHAT_TO_RUN = (record.FIXED_ARCHITECTURE, record.ROLE, record.REPLICATE, record.CONFIRMS)


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


def validate_config(cfg: Mapping[str, Any]) -> SearchJob:
    """Check the parts of the config that no library checks, before anything is created; returns the job's own
    sections read (:mod:`gcnas.search.config`)."""
    job = read_job(cfg)
    TrainerConfig.from_mapping(cfg["trainer"])
    obj = cfg["objective"]
    metrics, directions = list(obj.get("metrics") or []), list(obj.get("directions") or [])
    if not metrics or metrics[0] != "accuracy" or any(m not in METRICS for m in metrics):
        raise ConfigError(f"objective.metrics: must start with 'accuracy' and use {', '.join(METRICS)}; got {metrics}")
    if directions != [METRICS[m] for m in metrics]:
        raise ConfigError(f"objective.directions: must be {[METRICS[m] for m in metrics]} for metrics {metrics}; "
                          f"got {directions}")
    return job


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


def _initialise(study: optuna.Study, space: SearchSpace, cfg: Mapping[str, Any], study_cfg: StudyConfig,
                data: DataSplits, search_cfg: Optional[SearchConfig] = None,
                fixed_trials: Optional[Sequence[Mapping[str, Any]]] = None) -> None:
    """Worker 0, once per study: record what the study is (space, backbone, data, preprocessing, config) and enqueue
    its fixed trials: the references (:func:`_enqueue_references`), or, for a study of given architectures (the
    confirmation's), the user attributes of each in ``fixed_trials``."""
    if record.INITIALISED.get(study):
        return
    record.SEARCH_SPACE.set(study, space.name)
    record.BACKBONE.set(study, space.backbone)
    record.DATA.set(study, cfg["data"]["name"])
    record.METRICS.set(study, list(cfg["objective"]["metrics"]))
    record.CONFIG.set(study, public_config(cfg))
    record.INPUT_SIZE.set(study, list(data.input_size))
    record.PRETRAINED_CFG.set(study, data.pretrained_cfg())  # what an export tells timm (gcnas-export)
    if search_cfg is not None and search_cfg.method == "oneshot":  # what its values are (check_study_score)
        record.ONESHOT_SCORE.set(study, search_cfg.supernet_score)
    if fixed_trials is not None:  # a study of given architectures only (gcnas.search.confirm)
        for attrs in list(fixed_trials)[: study_cfg.n_trials]:
            study.enqueue_trial({}, user_attrs=dict(attrs))
    record.INITIALISED.set(study, True)


def references(space: SearchSpace, study_cfg: StudyConfig) -> list[dict]:
    """The user attributes of a study's reference trials: the plain backbone and the paper's default GC, each with
    ``study.noise_seeds`` training seeds, in pairs (so the first two trials are still plain and paper GC)."""
    if not study_cfg.enqueue_baselines:
        return []
    plain = Architecture(space.backbone, space.backbone_kwargs, ())
    paper = paper_default_architecture(space.backbone, space.sites, space.backbone_kwargs)
    return [{FIXED_ARCH_ATTR: arch.to_yaml(), ROLE_ATTR: role, REPLICATE_ATTR: k}
            for k in range(study_cfg.noise_seeds) for role, arch in (("baseline", plain), ("paper_gc", paper))]


def _enqueue_references(study: optuna.Study, refs: Sequence[Mapping[str, Any]]) -> int:
    """Enqueue every reference the study does not hold yet (worker 0, at every start), whatever ``study.n_trials`` is:
    a small first budget runs the first ones, and a larger one later runs the rest before any searched trial (they
    wait at the head of the queue). A reference counts as held in any state but one: cancelled by the budget (as
    older gcnas versions did). Returns how many were enqueued."""
    held = set()
    for t in study.get_trials(deepcopy=False):
        if record.ROLE.get(t) not in REFERENCE_ROLES or (t.state == TrialState.FAIL and record.CANCELLED.on(t)):
            continue
        held.add((record.ROLE.get(t), int(record.REPLICATE.get(t, 0))))
    missing = [r for r in refs if (r[ROLE_ATTR], r[REPLICATE_ATTR]) not in held]
    for attrs in missing:
        study.enqueue_trial({}, user_attrs=dict(attrs))
    return len(missing)


def retry_stale_trial(max_retries: int):
    """The heartbeat's stale-trial callback: fails the trial whose worker died and queues a waiting copy (at most
    ``max_retries`` retries in a chain; see :func:`queue_again`). Logs what it did."""

    def retry(study: optuna.Study, trial: FrozenTrial) -> None:
        reason = (f"trial {trial.number} (worker {record.WORKER.get(trial, '?')}) stopped sending "
                  f"heartbeats")
        if queue_again(study, trial, reason, max_retries):
            log.warning("trial %d went stale (its worker stopped); its architecture is queued again", trial.number)
        else:
            log.warning("trial %d went stale and has been retried %d times already; not again", trial.number,
                        max_retries)

    return retry


def queue_again(study: optuna.Study, trial: FrozenTrial, reason: str, max_retries: Optional[int] = None) -> bool:
    """Queue a waiting copy of ``trial`` (same parameters) through Optuna's ``RetryHeartbeatStaleTrialCallback``,
    which records the chain in ``retry_history``; the copy gets only the user attributes that say what to run (the
    enqueued architecture, its role, replicate and source trial) plus ``retry_of`` / ``retry_reason``: everything the
    earlier run measured is left behind. False when the chain already holds ``max_retries`` retries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # public since 2.8, still "experimental"
        if max_retries is not None and len(
                optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)) >= max_retries:
            return False
        what = copy.copy(trial)
        what.user_attrs = {**{a.name: a.get(trial) for a in _WHAT_TO_RUN if a.on(trial)},
                           record.RETRY_OF.name: trial.number, record.RETRY_REASON.name: reason}
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, what)
    return True


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


def public_config(cfg: Mapping[str, Any]) -> dict:
    """The config as stored with the study and shown to trackers: storage URLs with their passwords masked."""
    out = copy.deepcopy({k: v for k, v in cfg.items() if not str(k).startswith("_")})
    if isinstance(out.get("study"), dict) and isinstance(out["study"].get("storage"), str):
        out["study"]["storage"] = redact_url(out["study"]["storage"])
    if isinstance(out.get("storage"), dict) and isinstance(out["storage"].get("url"), str):
        out["storage"]["url"] = redact_url(out["storage"]["url"])
    return out


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
    """End an interrupted trial as failed with the reason and queue it again, so the next run retries it first (a
    trial left running would count against the budget until its heartbeats went stale); returns the exception to raise,
    saying so."""
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


def _trial_loop(study: optuna.Study, storage, url: str, runner: TrialRunner, study_cfg: StudyConfig,
                heartbeat: Optional[float], progress: _Progress, hooks: Callbacks, keep: int,
                interrupts: _Interrupts) -> int:
    """Ask, run and tell trials until the study counts ``study.n_trials`` finished ones (infeasible draws, which
    train nothing, do not count), the worker's timeout, too many failures in a row, or an interrupt; returns the
    trials this worker ran."""
    n_trials, timeout, max_failures = study_cfg.n_trials, study_cfg.timeout, study_cfg.max_failures
    started = time.perf_counter()
    ran = failures_in_a_row = infeasible_in_a_row = 0
    while True:
        if heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, and queued again
        finished = len(counted_trials(study))
        if finished >= n_trials:
            break
        if timeout is not None and time.perf_counter() - started > timeout:
            log.info("study.timeout=%ss reached; this worker stops", timeout)
            break
        trial = ask(study, url)
        tid = trial_id(storage, study, trial)  # two storage queries: once per trial
        try:
            ahead = sum(1 for t in study.get_trials(deepcopy=False, states=_RUNNING)
                        if t.number < trial.number and not record.INFEASIBLE.on(t))
            # a reference is never cancelled: every delta and the noise floor are read from the references, and a
            # retried one comes after the trials that took its place in the queue
            if ahead >= n_trials and not record.FIXED_ARCHITECTURE.on(trial):
                record.CANCELLED.set(trial, f"study budget of {n_trials} trials already taken by earlier trials")
                tell(study, trial, state=TrialState.FAIL)
                break
            progress.start_trial(trial.number, finished)
            try:
                with Heartbeat(storage, tid, heartbeat):
                    state, values = runner(study, trial)
            except Interrupted:
                raise
            except Exception as e:  # a trial that raises is recorded as failed; the study goes on
                if interrupts.signum is not None:  # raised because of the interrupt (a killed DataLoader worker)
                    raise Interrupted(interrupts.signum) from None
                reason = _failure_reason(e)
                trial_log = runner.trial_dir(trial.number) / "log.txt"
                with trial_log.open("a") as f:  # the whole traceback, for whoever fixes it
                    f.write(f"failed: {reason}\n{''.join(traceback.format_exception(e))}")
                del e
                _free_memory()  # an out-of-memory trial must not take the next ones with it
                record.ERROR.set(trial, reason)
                tell(study, trial, state=TrialState.FAIL)
                log.warning("trial %d failed: %s (traceback in %s)", trial.number, reason, trial_log)
                hooks("trial_ended", storage.get_trial(tid))
                ran += 1
                failures_in_a_row += 1
                if failures_in_a_row >= max_failures:
                    raise RuntimeError(f"{failures_in_a_row} trials in a row failed in this worker (study.max_failures="
                                       f"{max_failures}); the last: {reason}. Finished trials are kept; fix the "
                                       f"cause and run the same command to resume.") from None
                continue
            failures_in_a_row = 0
            tell(study, trial, values=values, state=state)
        except Interrupted as e:
            with interrupts.held():  # a second Ctrl-C while this is written would leave the trial running
                raise _record_interrupt(study, storage, tid, trial, runner, e, hooks) from None
        ran += 1
        if keep > 0 and record.WEIGHTS.on(trial):
            keep_top_weights(study, keep, runner.study_dir)
        hooks("trial_ended", storage.get_trial(tid))
        note = f" (same as trial {record.DUPLICATE_OF.get(trial)})" if record.DUPLICATE_OF.on(trial) else ""
        infeasible = record.INFEASIBLE.get(trial)
        if infeasible:
            note = f" (infeasible, not counted: {infeasible})"
            infeasible_in_a_row += 1
            if infeasible_in_a_row >= study_cfg.max_infeasible:
                raise ConfigError(f"study.max_infeasible: {infeasible_in_a_row} draws in a row were infeasible (the "
                                  f"last: {infeasible}); widen the limits of {runner.space.source} (limits.min_blocks, "
                                  f"limits.max_blocks) or the constraints (constraints.max_params, max_flops, "
                                  f"max_latency_ms)")
        else:
            infeasible_in_a_row = 0
        progress.end_trial(trial.number, state, values, len(counted_trials(study)), n_trials, note)
    return ran


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
    the reason, and queued again, so the next run retries it first.
    """
    with _Interrupts() as interrupts:
        return _run_search(cfg, callbacks, interrupts, fixed_trials, space_source)


def _run_search(cfg: Mapping[str, Any], callbacks: Sequence[SearchCallback], interrupts: _Interrupts,
                fixed_trials: Optional[Sequence[Mapping[str, Any]]], space_source: Optional[str]) -> SearchResult:
    job = validate_config(cfg)
    set_threads(job.job.threads)
    device = select_device(job.job.device)

    bb = cfg["backbone"]
    data = load_data(cfg["data"], backbone_data=backbone_data_config(bb["name"], **(bb.get("kwargs") or {})))
    data = data.to(device)
    kwargs = {**(bb.get("kwargs") or {}), "num_classes": data.num_classes, "in_chans": data.in_chans}
    weights = BackboneWeights.from_config(bb)
    ensure_pretrained(bb, cfg["data"], cfg.get("pretrain"), device)  # a pretrain section makes a missing file once
    check_weights(bb["name"], weights, **kwargs)  # a wrong checkpoint fails here, before the study exists
    if weights.loaded:
        log.info("backbone %s starts from %s", bb["name"], weights.describe())
    sites = list_sites(bb["name"], input_size=data.input_size, **kwargs)
    space_cfg = cfg["search_space"]
    source = space_source or f"search_spaces/{space_cfg.get('name')}.yaml"
    space = SearchSpace.from_config(space_cfg, backbone=bb["name"], sites=sites, backbone_kwargs=kwargs,
                                    source=source)
    search_cfg, study_cfg = job.search, job.study
    oneshot = search_cfg.method == "oneshot"
    if oneshot:
        # a space the supernet cannot hold fails here, before the study exists; its backbone starts from the weights
        supernet = supernet_for_space(space, search_cfg.supernet_share, weights)
        check_layer_decay(supernet, TrainerConfig.from_mapping(cfg["trainer"]))  # its fine-tune would refuse it
        if study_cfg.noise_seeds > 1:  # a supernet scores an architecture the same for any seed
            log.info("search.method=oneshot: the references are scored once (study.noise_seeds=%s would repeat the "
                     "same score); the noise of one-shot scores is measured by confirming the top trials",
                     study_cfg.noise_seeds)
            study_cfg = dataclasses.replace(study_cfg, noise_seeds=1)
    metrics = tuple(cfg["objective"]["metrics"])
    sampler_cfg = dict(cfg["sampler"])
    if sampler_cfg.get("seed") is not None:  # one random stream per worker, or concurrent workers sample alike
        sampler_cfg["seed"] = int(sampler_cfg["seed"]) + job.job.worker
    sampler = make_sampler(sampler_cfg, grid=space.grid)
    pruner = make_pruner(cfg["pruner"])

    url = study_cfg.storage
    heartbeat = study_cfg.heartbeat_interval
    if heartbeat and str(url).startswith("journal://"):
        log.warning("storage=journal has no heartbeats: a killed worker's trial stays RUNNING (and counts against "
                    "study.n_trials) until it is failed by hand; use sqlite or postgres to have it retried")
        heartbeat = None
    storage = make_storage(url, heartbeat, study_cfg.grace_period,
                           retry_stale_trial(study_cfg.max_retries) if heartbeat else None)
    study = make_study(study_cfg.name, storage, cfg["objective"]["directions"], sampler, pruner)
    worker, seed = job.job.worker, job.job.seed
    where = f"{study_cfg.name!r} in {redact_url(url)}"
    identity = study_identity(cfg, data, space, weights, metrics)
    refs = references(space, study_cfg) if fixed_trials is None else []
    if worker == 0:
        check_study_identity(study, identity, where)  # before anything is recorded or enqueued
        _initialise(study, space, cfg, study_cfg, data, search_cfg, fixed_trials)
        added = _enqueue_references(study, refs)
        if added and len(study.get_trials(deepcopy=False)) > added:
            log.info("study %s: %d reference trial(s) it lacked queued ahead of the searched ones", study_cfg.name,
                     added)
    else:
        # worker 0 enqueues the study's fixed trials (the references, or a confirmation's architectures); a trial
        # asked before that would be a sampled one, and under a tight budget the references could be left waiting
        # behind trials that used the budget up (seen: a paper-GC reference never run in an 8-trial study of 4 workers)
        waited = time.monotonic()
        while not record.INITIALISED.get(study):
            if time.monotonic() - waited > 600:
                raise RuntimeError(f"study {study_cfg.name!r}: worker 0 has not enqueued its trials after 600 s; "
                                   "start worker=0 (it creates the study's trials)")
            time.sleep(1.0)
        check_study_identity(study, identity, where)
    check_study_score(study, search_cfg, study_cfg.name)  # before any training: its values are one score
    study_dir = study_folder(cfg["paths"]["root"], study_cfg.name)
    n_trials = study_cfg.n_trials
    if refs and n_trials <= len(refs):
        log.warning("study.n_trials=%d cannot hold the study's %d references (plain backbone and paper GC, %d seed(s) "
                    "each: its noise floor) and a searched trial; this run trains references only, the rest wait for "
                    "a larger study.n_trials (at least %d)", n_trials, len(refs), len(refs) // 2, len(refs) + 1)
    size = space.size()
    log.info("study %s on %s: %d trials, space %s (%s), backbone %s, data %s (%d train / %d val), worker %d, "
             "%d threads", study_cfg.name, redact_url(url), n_trials, space.name,
             f"{size:,} assignments" if size else "continuous", bb["name"], data.name,
             len(data.train), len(data.val), worker, torch.get_num_threads())
    if len(metrics) > 1:
        log.info("multi-objective study: Optuna cannot prune it, every trial trains %d epochs",
                 cfg["trainer"]["epochs"])

    progress = _Progress(job.job.progress, n_trials, int(cfg["trainer"]["epochs"]))
    hooks = Callbacks(callbacks)
    keep = study_cfg.keep_weights or 0
    scorer = None
    if oneshot:
        net = study_supernet(supernet, space, data, cfg["trainer"], search_cfg, seed, study_dir, device)
        batch = int(cfg["trainer"]["batch_size"])
        reference = study_reference(net, space, data, search_cfg, study_dir, batch, device)
        scorer = oneshot_scorer(net, data, search_cfg, batch, device, reference)
        keep = 0  # supernet weights are not an architecture's own: gcnas-export retrains
    runner = TrialRunner(space, data, dict(cfg["trainer"]), metrics, job.constraints.limits(),
                         worker, seed, study_dir, device, weights=weights,
                         on_epoch=progress.epoch,
                         callbacks=hooks, keep_weights=keep, scorer=scorer)
    try:
        ran = _trial_loop(study, storage, url, runner, study_cfg, heartbeat, progress, hooks, keep, interrupts)
    finally:
        progress.close()

    table = results_table(study, metrics, study_cfg.top_k)
    ranked = pareto_trials(study) if len(metrics) > 1 else ranked_trials(study)
    best = ranked[0] if ranked else None
    best_path = str(trial_folder(study_dir, best.number) / "architecture.yaml") if best else None
    result = SearchResult(study_cfg.name, redact_url(url), len(counted_trials(study)), ran,
                          best.number if best else None, list(best.values) if best else None, best_path, table,
                          type(study.sampler).__name__)
    if result.n_finished >= n_trials and not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        hooks("study_ended", study, result, study_dir)
    hooks("close")
    return result
