"""The config sections ``gcnas.conf`` registers, and the words their keys are checked against: stated once, torch-free.

Composing a config (``gcnas.conf``, Hydra's compose API, a CLI's ``--help``) needs each section's defaults, not the
code that runs them, so the sections live here, importing :mod:`gcnas.schema` (OmegaConf) and :mod:`gcnas.errors`
only: composing loads no torch, timm, Optuna or W&B (``tests/test_layering.py`` checks it). The code that acts on a
word imports it from here (``gcnas.train.runtime`` the devices, ``gcnas.oneshot`` the supernet's sampling, scores and
sharing), never the reverse. The readers re-export their sections where callers know them: :mod:`gcnas.search.config`
(the job, ``study``, ``search``, ``constraints``, ``confirm``), :mod:`gcnas.track.config` (``wandb``),
:mod:`gcnas.cli.args` (``report``, ``gcnas-export``'s). The trainer's keys are :class:`gcnas.train.TrainerConfig`,
the data's :mod:`gcnas.data`'s. Comments on the fields are the keys' documentation (docs/configuration.md has the
table).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from gcnas.errors import ConfigError
from gcnas.schema import key

__all__ = ["check_device", "JobConfig", "StudyConfig", "SearchConfig", "ConstraintsConfig", "ConfirmConfig",
           "WandbConfig", "ReportArgs", "ExportArgs", "ExportDirArgs", "DEVICES", "PROGRESS", "METHODS", "SAMPLINGS",
           "SCORES", "SHARES", "MODES"]

DEVICES = ("cpu", "cuda", "auto")  # where training runs (gcnas.train.runtime.select_device); auto: CUDA if any
DEVICE_WORDS = "cpu, cuda (a search worker: GPU worker mod visible GPUs), cuda:N (GPU N) or auto"
PROGRESS = ("auto", "bar", "plain", "none")
METHODS = ("standalone", "oneshot")
SAMPLINGS = ("uniform", "fair")  # search.supernet_sampling (gcnas.oneshot.PathSampler)
# search.supernet_score: gcnas.oneshot's score(), gradient_score() or gradient_and_loss_score() against a ScoreReference
SCORES = ("accuracy", "gradient", "gradient_and_loss")
SHARES = ("site", "stage")  # search.supernet_share: what one set of candidate weights serves (gcnas.oneshot.Supernet)
MODES = ("offline", "online", "disabled")  # wandb.mode
RUN_ID_RESERVED = ":;,#?/'"  # characters W&B refuses in a run id


def check_device(device: Any, where: str = "device") -> None:
    """``device`` must be one of :data:`DEVICES` or ``cuda:N`` (N a GPU index); a :class:`ConfigError` naming
    ``where`` otherwise. Whether GPU N exists is :func:`gcnas.train.runtime.select_device`'s to check."""
    if device in DEVICES:
        return
    index = device[len("cuda:"):] if isinstance(device, str) and device.startswith("cuda:") else None
    if index is None or not index.isdigit():
        raise ConfigError(f"{where}: must be {DEVICE_WORDS}; got {device!r}")


# -- gcnas-search, gcnas-confirm ---------------------------------------------------------------------------------------
@dataclass
class JobConfig:
    """The top-level keys of a search job (``gcnas-search``) and a confirmation (``gcnas-confirm``)."""
    seed: int = key(0, ge=0)
    worker: int = key(0, ge=0)                                        # this worker's id (-m worker=0,1,2,3)
    threads: Union[int, str] = key("auto", ge=1, words=("auto",))     # torch threads; auto: cores / workers
    device: str = key("cpu", expect=DEVICE_WORDS)
    progress: str = key("auto", words=PROGRESS)  # auto: bars on a terminal, plain lines otherwise

    def __post_init__(self) -> None:
        check_device(self.device)


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
    # device=cuda: workers w*i .. w*i+w-1 share GPU i (worker // workers_per_gpu mod the visible GPUs); more than one
    # where a proxy trial is too small to fill a GPU
    workers_per_gpu: int = key(1, ge=1)


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


# -- wandb: every command that tracks (search, confirm, train) --------------------------------------------------------
@dataclass
class WandbConfig:
    mode: str = key(words=MODES)  # required: offline writes <dir>/wandb/offline-run-* (sync later); online; disabled
    project: str = "gcnas"
    entity: Optional[str] = None
    tags: list[str] = key(factory=list)
    init_timeout: float = key(30, gt=0)      # seconds wandb.init may take before tracking is switched off
    dir: Optional[str] = None                # runs go to <dir>/wandb/ (null: the working directory)
    # gcnas-train with one model and seed: the W&B run it continues; null: the run recorded beside its checkpoint, or
    # a new one (a search's trial runs have ids of their own)
    run_id: Optional[str] = None

    def __post_init__(self) -> None:
        rid = self.run_id
        if rid is not None and (not rid.strip() or rid != rid.strip() or any(c in RUN_ID_RESERVED for c in rid)):
            raise ConfigError(f"wandb.run_id: must be a W&B run id (no spaces around it, none of {RUN_ID_RESERVED}); "
                              f"got {rid!r}")


# -- gcnas-report, gcnas-export ---------------------------------------------------------------------------------------
@dataclass
class ReportArgs:
    """``report``: where ``gcnas-report`` writes and what it shows."""
    dir: Optional[str] = None         # default: <paths.root>/<study>/report
    top_k: int = key(5, ge=1)         # trials in the summary table and in the placement heatmap
    html: Union[bool, str] = key("auto", words=("auto",), expect="auto, true or false")  # plotly's HTML plots
    # after the report, serve the study with optuna-dashboard on 127.0.0.1 until Ctrl-C (the gcnas[dashboard] extra)
    dashboard: Union[bool, int] = key(False, ge=1, le=65535, expect="false, true (port 8080) or a port number in "
                                                                    "[1, 65535]")


@dataclass
class ExportArgs:
    """``gcnas-export``'s top-level keys."""
    trial: Union[int, str] = key("best", ge=0, words=("best",), expect="'best' or a trial number >= 0")
    pick: Optional[Any] = None        # multi-objective: a Pareto-front index, or max_params=V / max_flops=V / ...
    overwrite: bool = False           # replace an existing export folder
    retrain: bool = True              # a trial whose weights were not kept is retrained at its proxy fidelity
    threads: Union[int, str] = key("auto", ge=1, words=("auto",))  # torch threads for that retraining; auto: the cores
    device: str = key("auto", expect=DEVICE_WORDS)                  # where that retraining runs; auto: CUDA if any

    def __post_init__(self) -> None:
        check_device(self.device)


@dataclass
class ExportDirArgs:
    """``export``: where ``gcnas-export`` writes."""
    dir: Optional[str] = None         # default: exports/<study>/trial-<N> under the current directory
