"""The search job's own config keys: their types, defaults and valid values, stated once.

``conf/config.yaml`` composes these defaults from Hydra's ConfigStore (``gcnas.conf`` registers them), and
:func:`read_job` reads a composed config's ``study``, ``search`` and ``constraints`` sections and its top-level keys
into these dataclasses, so the worker reads attributes instead of ``cfg.get(key, default)``. The trainer's keys are
:class:`gcnas.train.TrainerConfig`, W&B's :class:`gcnas.track.WandbConfig`. Comments on the fields are the keys'
documentation (docs/configuration.md has the table).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from gcnas.errors import ConfigError
from gcnas.oneshot import SAMPLINGS, SCORES, SHARES
from gcnas.schema import key, read, read_known
from gcnas.train.runtime import DEVICES

__all__ = ["JobConfig", "StudyConfig", "SearchConfig", "ConstraintsConfig", "ConfirmConfig", "SearchJob", "read_job",
           "METHODS", "PROGRESS"]

METHODS = ("standalone", "oneshot")
PROGRESS = ("auto", "bar", "plain", "none")


@dataclass
class JobConfig:
    """The top-level keys of a search job (``gcnas-search``) and a confirmation (``gcnas-confirm``)."""
    seed: int = key(0, ge=0)
    worker: int = key(0, ge=0)                                        # this worker's id (-m worker=0,1,2,3)
    threads: Union[int, str] = key("auto", ge=1, words=("auto",))     # torch threads; auto: cores / workers
    device: str = key("cpu", words=DEVICES)
    progress: str = key("auto", words=PROGRESS)  # auto: bars on a terminal, plain lines otherwise


@dataclass
class StudyConfig:
    name: str = key(expect="a study name")   # required; conf/config.yaml: <space>-<backbone>-<data>
    storage: str = key(expect="a storage URL")  # required; conf/config.yaml: ${storage.url}
    n_trials: int = key(20, ge=1)        # finished trials in the study, across all workers and restarts
    timeout: Optional[float] = key(None, gt=0)  # seconds this worker searches at most
    enqueue_baselines: bool = True       # first trials: the plain backbone and the paper's default GC
    noise_seeds: int = key(3, ge=1)      # each baseline trained with this many seeds: the study's noise floor
    top_k: int = key(5, ge=1)            # rows of the final table
    keep_weights: Optional[int] = key(3, ge=0)  # trials whose weights stay on disk (top k or Pareto front); 0: none
    heartbeat_interval: Optional[float] = key(30, gt=0)  # seconds between a running trial's heartbeats; null: off
    grace_period: Optional[float] = key(120, gt=0)  # a trial silent this long is failed and queued again
    max_retries: int = key(2, ge=0)      # times one architecture is queued again after its worker died
    max_failures: int = key(5, ge=1)     # trials in a row that may fail before this worker stops
    max_infeasible: int = key(200, ge=1)  # draws in a row that break the limits or constraints before it stops

    def __post_init__(self) -> None:
        hb, grace = self.heartbeat_interval, self.grace_period
        if grace is not None and hb is None:
            raise ConfigError("study.grace_period: needs study.heartbeat_interval (heartbeats are off); set both or "
                              "neither")
        if grace is not None and hb is not None and grace <= hb:
            raise ConfigError(f"study.grace_period: must be longer than study.heartbeat_interval={hb:g}; got {grace:g}")


@dataclass
class SearchConfig:
    method: str = key("standalone", words=METHODS)  # oneshot: one supernet per study scores each trial
    supernet_epochs: int = key(8, ge=1)             # oneshot: epochs of supernet training, once per study
    supernet_sampling: str = key("uniform", words=SAMPLINGS)  # oneshot: uniform | fair (each design equally often)
    supernet_share: str = key("site", words=SHARES)  # oneshot: site (own weights per site) | stage (one set per stage)
    # oneshot: gradient_and_loss (the blocks' loss gradient and the validation loss, each placed among a reference
    # sample's) | gradient (the first alone) | accuracy (validation accuracy; does not rank on data=context)
    supernet_score: str = key("gradient_and_loss", words=SCORES)
    calib_images: int = key(512, ge=1)              # oneshot: images that re-estimate BatchNorm per architecture


@dataclass
class ConstraintsConfig:
    """Hard limits, checked on the measured cost before any training; null: no limit."""
    max_params: Optional[float] = key(None, gt=0)
    max_flops: Optional[float] = key(None, gt=0)
    max_latency_ms: Optional[float] = key(None, gt=0)

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class ConfirmConfig:
    """``confirm``: what ``gcnas-confirm`` retrains."""
    k: int = key(5, ge=1)             # top trials to confirm (besides the plain backbone, always the pairing reference)
    seeds: int = key(3, ge=1)         # training seeds per architecture, shared by candidates and baseline (paired)
    first_seed: int = key(100, ge=0)  # seeds first_seed, first_seed + 1, ...: none of them used by the search
    trainer: dict[str, Any] = key(factory=dict)  # overrides of the search's trainer, e.g. +confirm.trainer.epochs=8
    data: dict[str, Any] = key(factory=dict)     # overrides of the search's data, e.g. +confirm.data.train_subset=20000


@dataclass
class SearchJob:
    """A search job's config, read: what the worker needs beyond the data, space, trainer and Optuna sections."""
    job: JobConfig
    study: StudyConfig
    search: SearchConfig
    constraints: ConstraintsConfig


def read_job(cfg: Mapping[str, Any]) -> SearchJob:
    """The typed sections of a composed search config; a :class:`~gcnas.errors.ConfigError` names any bad key."""
    return SearchJob(job=read_known(JobConfig, cfg), study=read(StudyConfig, cfg.get("study"), "study"),
                     search=read(SearchConfig, cfg.get("search"), "search"),
                     constraints=read(ConstraintsConfig, cfg.get("constraints"), "constraints"))
