"""Preparing a search worker: everything :func:`gcnas.search.worker.run_search` needs before its first trial.

In order: the config checked, the data and the backbone's weights loaded, the search space read, the one-shot
supernet built, the study opened and joined (worker 0 records what it is and queues its fixed trials; every worker
checks it was made from the same inputs), and, once the trials can be run, the trial runner (:func:`make_runner`).
Nothing here trains an architecture; running the trials and their failure policy live in :mod:`gcnas.search.worker`.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import optuna
import torch
from optuna.trial import TrialState

from gcnas.arch import Architecture
from gcnas.backbones import BackboneWeights, list_sites
from gcnas.backbones.weights import check_weights
from gcnas.data import DataSplits
from gcnas.errors import ConfigError
from gcnas.oneshot import supernet_for_space
from gcnas.search import record
from gcnas.search.callbacks import Callbacks
from gcnas.search.config import SearchConfig, SearchJob, StudyConfig, read_job
from gcnas.search.identity import check_study_identity, study_identity
from gcnas.search.objective import FIXED_ARCH_ATTR, METRICS, REPLICATE_ATTR, ROLE_ATTR, TrialRunner
from gcnas.search.oneshot import check_study_score, oneshot_scorer, study_reference, study_supernet
from gcnas.search.paths import study_folder
from gcnas.search.retry import retry_stale_trial
from gcnas.search.study import make_pruner, make_sampler, make_storage, make_study, redact_url
from gcnas.search.summary import REFERENCE_ROLES
from gcnas.space import SearchSpace, paper_default_architecture
from gcnas.train import EpochResult, TrainerConfig
from gcnas.train.loop import check_layer_decay
from gcnas.train.one import load_data_for
from gcnas.train.pretrain import ensure_pretrained
from gcnas.train.runtime import select_device, set_threads

__all__ = ["PreparedWorker", "prepare_worker", "make_runner", "validate_config", "public_config", "references"]

log = logging.getLogger("gcnas.search")
_WORKER_0_WAIT_S = 600  # how long another worker waits for worker 0 to queue the study's fixed trials


@dataclass
class PreparedWorker:
    """A worker ready to run trials: its inputs loaded and its study joined."""

    cfg: Mapping[str, Any]
    job: SearchJob
    study_cfg: StudyConfig  # search.method=oneshot scores the references once (noise_seeds=1)
    device: str
    data: DataSplits
    weights: BackboneWeights
    space: SearchSpace
    metrics: tuple[str, ...]
    study: optuna.Study
    storage: Any
    url: str
    heartbeat: Optional[float]  # None where the storage has no heartbeats (journal)
    study_dir: Path
    supernet: Any = None  # search.method=oneshot: the untrained supernet over the space

    @property
    def worker(self) -> int:
        return self.job.job.worker


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


def public_config(cfg: Mapping[str, Any]) -> dict:
    """The config as stored with the study and shown to trackers: storage URLs with their passwords masked."""
    out = copy.deepcopy({k: v for k, v in cfg.items() if not str(k).startswith("_")})
    if isinstance(out.get("study"), dict) and isinstance(out["study"].get("storage"), str):
        out["study"]["storage"] = redact_url(out["study"]["storage"])
    if isinstance(out.get("storage"), dict) and isinstance(out["storage"].get("url"), str):
        out["storage"]["url"] = redact_url(out["storage"]["url"])
    return out


def references(space: SearchSpace, study_cfg: StudyConfig) -> list[dict]:
    """The user attributes of a study's reference trials: the plain backbone and the paper's default GC, each with
    ``study.noise_seeds`` training seeds, in pairs (so the first two trials are still plain and paper GC)."""
    if not study_cfg.enqueue_baselines:
        return []
    plain = Architecture(space.backbone, space.backbone_kwargs, ())
    paper = paper_default_architecture(space.backbone, space.sites, space.backbone_kwargs)
    return [{FIXED_ARCH_ATTR: arch.to_yaml(), ROLE_ATTR: role, REPLICATE_ATTR: k}
            for k in range(study_cfg.noise_seeds) for role, arch in (("baseline", plain), ("paper_gc", paper))]


def enqueue_references(study: optuna.Study, refs: Sequence[Mapping[str, Any]]) -> int:
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
        record.enqueue(study, attrs)  # the architecture on the study, by key
    return len(missing)


# -- the inputs ------------------------------------------------------------------------------------------------------
def _load_inputs(cfg: Mapping[str, Any], device: str) -> tuple[DataSplits, BackboneWeights, dict]:
    """The data (on ``device``), the backbone's starting weights (checked) and the backbone's keyword arguments."""
    bb = cfg["backbone"]
    data = load_data_for(cfg["data"], bb["name"], bb.get("kwargs"))
    data = data.to(device)
    kwargs = {**(bb.get("kwargs") or {}), "num_classes": data.num_classes, "in_chans": data.in_chans}
    weights = BackboneWeights.from_config(bb)
    ensure_pretrained(bb, cfg["data"], cfg.get("pretrain"), device)  # a pretrain section makes a missing file once
    check_weights(bb["name"], weights, **kwargs)  # a wrong checkpoint fails here, before the study exists
    if weights.loaded:
        log.info("backbone %s starts from %s", bb["name"], weights.describe())
    return data, weights, kwargs


def _read_space(cfg: Mapping[str, Any], data: DataSplits, kwargs: Mapping[str, Any],
                space_source: Optional[str]) -> SearchSpace:
    name = cfg["backbone"]["name"]
    sites = list_sites(name, input_size=data.input_size, **kwargs)
    space_cfg = cfg["search_space"]
    source = space_source or f"search_spaces/{space_cfg.get('name')}.yaml"
    return SearchSpace.from_config(space_cfg, backbone=name, sites=sites, backbone_kwargs=kwargs, source=source)


def _oneshot_supernet(cfg: Mapping[str, Any], job: SearchJob, space: SearchSpace,
                      weights: BackboneWeights) -> tuple[Any, StudyConfig]:
    """search.method=oneshot: the supernet over ``space`` and the study config it scores with; (None, the study
    config) otherwise."""
    study_cfg = job.study
    if job.search.method != "oneshot":
        return None, study_cfg
    # a space the supernet cannot hold fails here, before the study exists; its backbone starts from the weights
    supernet = supernet_for_space(space, job.search.supernet_share, weights)
    check_layer_decay(supernet, TrainerConfig.from_mapping(cfg["trainer"]))  # its fine-tune would refuse it
    if study_cfg.noise_seeds > 1:  # a supernet scores an architecture the same for any seed
        log.info("search.method=oneshot: the references are scored once (study.noise_seeds=%s would repeat the "
                 "same score); the noise of one-shot scores is measured by confirming the top trials",
                 study_cfg.noise_seeds)
        study_cfg = dataclasses.replace(study_cfg, noise_seeds=1)
    return supernet, study_cfg


# -- the study -------------------------------------------------------------------------------------------------------
def _open_study(cfg: Mapping[str, Any], job: SearchJob, study_cfg: StudyConfig,
                space: SearchSpace) -> tuple[optuna.Study, Any, Optional[float]]:
    """The study (created or loaded) with this worker's sampler and pruner, its storage, and the heartbeat interval
    the storage can keep."""
    sampler_cfg = dict(cfg["sampler"])
    seed = sampler_cfg.get("seed")
    if seed is not None:
        sampler_cfg["seed"] = sampler_seed(int(seed), job.job.worker, 0)
    # a bad sampler or pruner is refused here, before the storage (and a new database file) is touched
    sampler = make_sampler(sampler_cfg, grid=space.grid)
    pruner = make_pruner(cfg["pruner"])
    url, heartbeat = study_cfg.storage, study_cfg.heartbeat_interval
    if heartbeat and str(url).startswith("journal://"):
        log.warning("storage=journal has no heartbeats: a killed worker's trial stays RUNNING (and counts against "
                    "study.n_trials) until it is failed by hand; use sqlite or postgres to have it retried")
        heartbeat = None
    storage = make_storage(url, heartbeat, study_cfg.grace_period,
                           retry_stale_trial(study_cfg.max_retries) if heartbeat else None)
    before = _trials_of(storage, study_cfg.name, job.job.worker) if seed is not None else 0
    if before:  # this worker ran trials of the study before: a stream of its own (sampler_seed)
        sampler_cfg["seed"] = sampler_seed(int(seed), job.job.worker, before)
        sampler = make_sampler(sampler_cfg, grid=space.grid)
    study = make_study(study_cfg.name, storage, cfg["objective"]["directions"], sampler, pruner)
    return study, storage, heartbeat


def sampler_seed(seed: int, worker: int, trials_before: int) -> int:
    """A worker's sampler seed: ``seed + worker`` for a worker new to its study (one random stream per worker, or
    concurrent workers would propose alike); for one that already ran ``trials_before`` trials of it, a stream derived
    from all three, or a worker started again would draw its first run's architectures again, every one a duplicate
    that takes a trial of the budget and trains nothing new. Reproducible either way: the same runs draw the same."""
    if trials_before == 0:
        return seed + worker
    digest = hashlib.blake2b(f"{seed}:{worker}:{trials_before}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def _trials_of(storage: Any, name: str, worker: int) -> int:
    """How many trials of the study ``name`` in ``storage`` ``worker`` ran (0 where there is no such study yet)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return sum(record.WORKER.get(t) == worker for t in storage.get_all_trials(study_id, deepcopy=False))


def _initialise(study: optuna.Study, space: SearchSpace, cfg: Mapping[str, Any], study_cfg: StudyConfig,
                data: DataSplits, search_cfg: Optional[SearchConfig] = None,
                fixed_trials: Optional[Sequence[Mapping[str, Any]]] = None) -> None:
    """Worker 0, once per study: record what the study is (space, backbone, data, preprocessing, config) and enqueue
    its fixed trials: the references (:func:`enqueue_references`), or, for a study of given architectures (the
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
            record.enqueue(study, attrs)  # the architecture on the study, by key
    record.INITIALISED.set(study, True)


def _wait_for_worker_0(study: optuna.Study, name: str) -> None:
    # worker 0 enqueues the study's fixed trials (the references, or a confirmation's architectures); a trial
    # asked before that would be a sampled one, and under a tight budget the references could be left waiting
    # behind trials that used the budget up (seen: a paper-GC reference never run in an 8-trial study of 4 workers)
    waited = time.monotonic()
    while not record.INITIALISED.get(study):
        if time.monotonic() - waited > _WORKER_0_WAIT_S:
            raise RuntimeError(f"study {name!r}: worker 0 has not enqueued its trials after {_WORKER_0_WAIT_S} s; "
                               "start worker=0 (it creates the study's trials)")
        time.sleep(1.0)


def _join_study(w: PreparedWorker, refs: Sequence[Mapping[str, Any]],
                fixed_trials: Optional[Sequence[Mapping[str, Any]]]) -> None:
    """Check the study was made from this worker's inputs, before any training; worker 0 first records it and queues
    its fixed trials, every other worker waits for that."""
    name = w.study_cfg.name
    where = f"{name!r} in {redact_url(w.url)}"
    identity = study_identity(w.cfg, w.data, w.space, w.weights, w.metrics)
    if w.worker == 0:
        check_study_identity(w.study, identity, where)  # before anything is recorded or enqueued
        _initialise(w.study, w.space, w.cfg, w.study_cfg, w.data, w.job.search, fixed_trials)
        added = enqueue_references(w.study, refs)
        if added and len(w.study.get_trials(deepcopy=False)) > added:
            log.info("study %s: %d reference trial(s) it lacked queued ahead of the searched ones", name, added)
    else:
        _wait_for_worker_0(w.study, name)
        check_study_identity(w.study, identity, where)
    check_study_score(w.study, w.job.search, name)  # before any training: its values are one score


def _log_start(w: PreparedWorker, refs: Sequence[Mapping[str, Any]]) -> None:
    n_trials, cfg = w.study_cfg.n_trials, w.cfg
    if refs and n_trials <= len(refs):
        log.warning("study.n_trials=%d cannot hold the study's %d references (plain backbone and paper GC, %d seed(s) "
                    "each: its noise floor) and a searched trial; this run trains references only, the rest wait for "
                    "a larger study.n_trials (at least %d)", n_trials, len(refs), len(refs) // 2, len(refs) + 1)
    size = w.space.size()
    log.info("study %s on %s: %d trials, space %s (%s), backbone %s, data %s (%d train / %d val), worker %d "
             "on %s, %d threads", w.study_cfg.name, redact_url(w.url), n_trials, w.space.name,
             f"{size:,} assignments" if size else "continuous", cfg["backbone"]["name"], w.data.name,
             len(w.data.train), len(w.data.val), w.worker, w.device, torch.get_num_threads())
    if len(w.metrics) > 1:
        log.info("multi-objective study: Optuna cannot prune it, every trial trains %d epochs",
                 cfg["trainer"]["epochs"])


# -- the worker ------------------------------------------------------------------------------------------------------
def prepare_worker(cfg: Mapping[str, Any], fixed_trials: Optional[Sequence[Mapping[str, Any]]] = None,
                   space_source: Optional[str] = None) -> PreparedWorker:
    """Load a worker's inputs and join its study (see the module's docstring); the arguments are
    :func:`~gcnas.search.worker.run_search`'s."""
    job = validate_config(cfg)
    set_threads(job.job.threads)
    device = select_device(job.job.device, worker=job.job.worker, workers_per_gpu=job.search.workers_per_gpu)
    data, weights, kwargs = _load_inputs(cfg, device)
    space = _read_space(cfg, data, kwargs, space_source)
    supernet, study_cfg = _oneshot_supernet(cfg, job, space, weights)
    metrics = tuple(cfg["objective"]["metrics"])
    study, storage, heartbeat = _open_study(cfg, job, study_cfg, space)
    w = PreparedWorker(cfg, job, study_cfg, device, data, weights, space, metrics, study, storage, study_cfg.storage,
                       heartbeat, study_folder(cfg["paths"]["root"], study_cfg.name), supernet)
    refs = references(space, study_cfg) if fixed_trials is None else []
    _join_study(w, refs, fixed_trials)
    _log_start(w, refs)
    return w


def make_runner(w: PreparedWorker, on_epoch: Optional[Callable[[int, EpochResult], None]],
                callbacks: Callbacks) -> TrialRunner:
    """The worker's trial runner; search.method=oneshot first trains (or loads) the study's supernet and scores the
    plain backbone with it, and keeps no weights (supernet weights are not an architecture's own: gcnas-export
    retrains)."""
    trainer, search_cfg = w.cfg["trainer"], w.job.search
    keep, scorer = w.study_cfg.keep_weights or 0, None
    if w.supernet is not None:
        net = study_supernet(w.supernet, w.space, w.data, trainer, search_cfg, w.job.job.seed, w.study_dir, w.device)
        batch = int(trainer["batch_size"])
        reference = study_reference(net, w.space, w.data, search_cfg, w.study_dir, batch, w.device)
        scorer = oneshot_scorer(net, w.data, search_cfg, batch, w.device, reference)
        keep = 0
    return TrialRunner(w.space, w.data, dict(trainer), w.metrics, w.job.constraints.limits(), w.worker,
                       w.job.job.seed, w.study_dir, w.device, weights=w.weights, on_epoch=on_epoch,
                       callbacks=callbacks, keep_weights=keep, scorer=scorer)
