"""Weights & Biases tracking for a search: one run per trial, one run per study.

Each trial's run has ``group`` = the study name, ``job_type`` = ``trial`` and name ``trial-N``; its config holds the
architecture and the training hyperparameters (with storage credentials masked), its history one row per epoch, its
summary the final metrics, cost and state (complete, pruned, failed, infeasible, duplicate). When a study's budget is
spent, the worker that leaves last logs a ``job_type=study`` run with the trials table, the best architecture as an
Artifact of type ``architecture`` (its YAML, and its weights when kept) and the report's plots.

A trial's run id is recorded in its folder (:mod:`gcnas.track.runs`). A retried trial (its worker died or was
interrupted; :mod:`gcnas.search.retry` queues a copy under a new number, trained from scratch) gets a run of its own,
``trial-<N'>`` with ``retry_of`` in its summary, like the Optuna trial it is; when it ends, the tracker reopens the
run of the trial it retried (W&B's ``resume="allow"``) and closes it with state ``retried`` and ``retried_by`` = N'.
So no run is left open or crashed without a word, every W&B run still matches one Optuna trial, and the retry's
curves start at epoch 1 in a run of their own instead of going back in the steps of a run that W&B would refuse.

Tracking never stops a search: ``wandb.init`` has a time limit (``wandb.init_timeout``), and the first W&B error of any
kind becomes one warning, after which this worker stops tracking. Nor does the trial loop wait for W&B: the trial
runs are started, logged and finished in order on one background thread (the loop only hands the data over), and they
skip what every trial run would repeat (the package list, code and machine description; the study run keeps them).
The thread and W&B's service still share the machine's cores with training (docs/results.md, "Search speed").
"""
from __future__ import annotations

import logging
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from gcnas.errors import ConfigError
from gcnas.schema import read
from gcnas.search.callbacks import SearchCallback
from gcnas.search.paths import study_folder, trial_folder
from gcnas.track.config import MODES, WandbConfig
from gcnas.track.runs import new_run_id, record_run_id, recorded_run_id
from gcnas.search import record

__all__ = ["WandbTracker", "WandbSession", "TrackingWarning", "MODES", "check_wandb_config"]

log = logging.getLogger("gcnas.track")


class TrackingWarning(RuntimeWarning):
    """W&B failed; the search or training goes on without tracking."""


def check_wandb_config(cfg: Mapping[str, Any]) -> WandbConfig:
    """The ``wandb`` config section, read and checked before anything starts (the mode is required)."""
    return read(WandbConfig, cfg, "wandb")


class WandbSession:
    """W&B runs that never raise: the first error of any kind becomes one warning and turns the session off.

    ``cfg`` is the ``wandb`` config section (mode, project, entity, tags, init_timeout, dir, run_id); ``group`` names
    the runs' group (the study, or the training run).
    """

    def __init__(self, cfg: Mapping[str, Any], group: str) -> None:
        c = check_wandb_config(cfg)
        self.mode, self.project, self.entity, self.tags = c.mode, c.project, c.entity, list(c.tags)
        self.run_id = c.run_id
        self.init_timeout = float(c.init_timeout)
        self.dir = Path(c.dir) if c.dir else None
        self.group = group
        self.off = self.mode == "disabled"
        self.runs: dict[Any, Any] = {}
        self._wandb = None

    def fail(self, what: str, e: BaseException) -> None:
        self.off = True
        msg = (f"W&B {what} failed ({type(e).__name__}: {str(e)[:300]}); tracking is off from here on, the work "
               f"goes on")
        log.warning("%s", msg)
        warnings.warn(msg, TrackingWarning, stacklevel=3)
        for run in list(self.runs.values()):
            try:
                run.finish(exit_code=1)
            except Exception:  # already failing; nothing more to report
                pass
        self.runs.clear()

    @property
    def wandb(self):
        if self._wandb is None:
            import wandb

            self._wandb = wandb
        return self._wandb

    def start(self, key: Any, light: bool = False, **kw) -> Any:
        """Start a run kept under ``key``; None when the session is off or the start failed.

        ``light``: skip the environment's package list, code saving and machine description (a search's trial runs;
        the study run records them once). ``kw`` goes to ``wandb.init`` (``id`` and ``resume="allow"`` continue a
        run).
        """
        if self.off:
            return None
        try:
            wandb = self.wandb
            if self.dir is not None:
                self.dir.mkdir(parents=True, exist_ok=True)
            # no system metadata: it records the command line, which may hold a storage URL's password
            extra = dict(x_save_requirements=False, save_code=False, x_disable_machine_info=True) if light else {}
            settings = wandb.Settings(init_timeout=self.init_timeout, console="off", silent=True,
                                      x_disable_stats=True, x_disable_meta=True, disable_git=True, **extra)
            run = wandb.init(mode=self.mode, project=self.project, entity=self.entity, group=self.group,
                             tags=self.tags, dir=str(self.dir) if self.dir else None, reinit="create_new",
                             settings=settings, **kw)
        except Exception as e:
            self.fail("init", e)
            return None
        self.runs[key] = run
        return run

    def log(self, key: Any, data: Mapping[str, Any], step: Optional[int] = None) -> None:
        run = self.runs.get(key)
        if self.off or run is None:
            return
        try:
            run.log(dict(data), step=step)
        except Exception as e:
            self.fail("log", e)

    def finish(self, key: Any, summary: Optional[Mapping[str, Any]] = None, exit_code: int = 0) -> None:
        run = self.runs.pop(key, None)
        if self.off or run is None:
            return
        try:
            if summary:
                run.summary.update(dict(summary))
            run.finish(exit_code=exit_code)
        except Exception as e:
            self.fail("finish", e)

    def close(self, exit_code: int = 0) -> None:
        """Finish every run still open (``exit_code`` 1: the work stopped on an error or an interrupt)."""
        for key in list(self.runs):
            self.finish(key, exit_code=exit_code)


class WandbTracker(SearchCallback):
    """Search callback that mirrors trials into W&B. ``cfg`` is the ``wandb`` config section."""

    def __init__(self, cfg: Mapping[str, Any], study_name: str, config: Optional[Mapping[str, Any]] = None) -> None:
        self.session = WandbSession(cfg, study_name)
        if self.session.run_id is not None:
            raise ConfigError(f"wandb.run_id: a search opens one W&B run per trial, with ids of its own; leave it null "
                              f"(got {self.session.run_id!r})")
        self.study_name = study_name
        self.config = dict(config or {})
        root = (self.config.get("paths") or {}).get("root")
        # where each trial's run id is recorded, for a retry to find; None: not recorded (a tracker without a study)
        self.study_dir = study_folder(root, study_name) if root else None
        self.run_ids: dict[int, str] = {}
        # One thread runs the W&B calls of trial runs in the order they were made; the loop never waits for W&B.
        self._pool: Optional[ThreadPoolExecutor] = ThreadPoolExecutor(1, thread_name_prefix="gcnas-wandb")

    @property
    def off(self) -> bool:
        return self.session.off

    def _submit(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        if self._pool is None:  # closed: run in the caller's thread
            fn(*args, **kw)
        else:
            self._pool.submit(fn, *args, **kw)

    def drain(self) -> None:
        """Wait until every W&B call handed over so far has run."""
        if self._pool is not None:
            self._pool.submit(lambda: None).result()

    # -- hooks ---------------------------------------------------------------------------------------------------------
    def trial_started(self, number: int, role: str, arch, train: Mapping[str, Any]) -> None:
        if self.off:
            return
        config = {"architecture": arch.to_dict(), "train": dict(train), "role": role, "study": self.study_name,
                  "arch_key": arch.key()}
        for k in ("backbone", "data", "search_space", "seed", "worker", "objective", "constraints"):
            if k in self.config:
                config[k] = self.config[k]
        self._submit(self.session.start, number, light=True, job_type="trial", name=f"trial-{number}", config=config,
                     id=self._new_run_id(number))

    def _new_run_id(self, number: int) -> str:
        """A new run id for trial ``number``, recorded in its folder (before W&B starts the run) for a retry to find."""
        run_id = self.run_ids[number] = new_run_id()
        if self.study_dir is not None:
            try:
                record_run_id(trial_folder(self.study_dir, number), run_id, trial=number, study=self.study_name)
            except OSError as e:  # a retry will not find the run to close; the trial's own run is unaffected
                log.warning("could not record trial %d's W&B run id: %s", number, e)
        return run_id

    def _run_id_of(self, number: int) -> Optional[str]:
        if number in self.run_ids:
            return self.run_ids[number]
        return recorded_run_id(trial_folder(self.study_dir, number)) if self.study_dir is not None else None

    def epoch_ended(self, number: int, result) -> None:
        if self.off:
            return
        self._submit(self.session.log, number, {"epoch": result.epoch, "train_loss": result.train_loss,
                                                "val_loss": result.val_loss, "val_acc": result.val_acc,
                                                "epoch_seconds": result.seconds}, step=result.epoch)

    def trial_ended(self, trial) -> None:
        if self.off:
            return
        self._submit(self._end_trial, trial.number, self._summary(trial), 1 if trial.state.name == "FAIL" else 0)
        retried = record.RETRY_OF.get(trial)
        if retried is not None:
            self._submit(self._close_retried, retried, self._run_id_of(retried), trial.number)

    def _end_trial(self, number: int, summary: Mapping[str, Any], exit_code: int) -> None:
        if number not in self.session.runs:  # ended before its architecture was known (space limits)
            self.session.start(number, light=True, job_type="trial", name=f"trial-{number}",
                               config={"study": self.study_name}, id=self._new_run_id(number))
        self.session.finish(number, summary, exit_code=exit_code)

    def _close_retried(self, number: int, run_id: Optional[str], retry: int) -> None:
        """Close the run of trial ``number`` (left crashed by a worker that died, or failed by an interrupt) as
        ``retried`` by trial ``retry``; nothing where its run id was never recorded."""
        if run_id is None:
            return
        key = ("retried", number)
        self.session.start(key, light=True, job_type="trial", name=f"trial-{number}", id=run_id, resume="allow")
        self.session.finish(key, {"state": "retried", "retried_by": retry}, exit_code=1)

    def _summary(self, trial) -> dict:
        state = trial.state.name.lower()
        if record.INFEASIBLE.on(trial):
            state = "infeasible"
        elif record.DUPLICATE_OF.on(trial):
            state = "duplicate"
        summary = {"state": state}
        for attr in (record.RETRY_OF, record.PARAMS, record.FLOPS, record.LATENCY_MS, record.EPOCHS, record.WALL_TIME_S,
                     record.TRAIN_SECONDS, record.DUPLICATE_OF, record.INFEASIBLE, record.ERROR, record.N_BLOCKS):
            if attr.get(trial) is not None:
                summary[attr.name] = attr.get(trial)
        if trial.values:
            from gcnas.search.summary import oneshot_values

            metrics = self.config.get("objective", {}).get("metrics") or ["accuracy"]
            kind = oneshot_values(trial)
            value = "val_acc" if kind is None else f"oneshot_{kind}"  # a one-shot score is not an accuracy
            for m, v in zip(metrics, trial.values):
                summary[value if m == "accuracy" else f"objective_{m}"] = v
        history = record.history_of(trial)
        if history:
            summary["best_val_acc"] = max(history)
        return summary

    def study_ended(self, study, result, study_dir: Path) -> None:
        self.drain()
        if self.off:
            return
        from gcnas.report import write_report
        from gcnas.search.summary import finished_trials, noise_floor

        try:
            report = write_report(study, Path(study_dir) / "report")
        except Exception as e:  # the study run is still worth logging without pictures
            log.warning("report for W&B failed: %s", e)
            report = None
        run = self.session.start("study", job_type="study", name="study", config=dict(self.config))
        if run is None:
            return
        try:
            wandb = self.session.wandb
            metrics = list(self.config.get("objective", {}).get("metrics") or ["accuracy"])
            cols = ["trial", "state", "role", *metrics, "params", "flops", "latency_ms", "epochs", "arch_key"]
            rows = []
            for t in finished_trials(study):
                vals = list(t.values) if t.values else [None] * len(metrics)
                rows.append([t.number, t.state.name.lower(), record.ROLE.get(t), *vals, record.PARAMS.get(t),
                             record.FLOPS.get(t), record.LATENCY_MS.get(t), record.EPOCHS.get(t),
                             record.ARCH_KEY.get(t)])
            log_data = {"trials": wandb.Table(columns=cols, data=rows)}
            noise = noise_floor(study)
            if noise is not None:  # every delta a user reads here has its noise beside it
                run.summary.update({"noise/std": noise.std, "noise/band": noise.band, "noise/seeds": noise.seeds,
                                    **({"noise/baseline_mean": noise.baseline_mean} if noise.baseline else {})})
            for png in report.pictures if report else []:
                log_data[f"report/{png.stem}"] = wandb.Image(str(png))
            run.log(log_data)
            if result.best_architecture:
                name = re.sub(r"[^A-Za-z0-9._-]", "-", f"{self.study_name}-best")
                art = wandb.Artifact(name, type="architecture",
                                     metadata={"trial": result.best_number, "values": result.best_values})
                art.add_file(result.best_architecture, name="architecture.yaml")
                weights = Path(result.best_architecture).with_name("model.safetensors")
                if weights.exists():
                    art.add_file(str(weights), name="model.safetensors")
                run.log_artifact(art)
        except Exception as e:
            self.session.fail("study run", e)
            return
        self.session.finish("study", {"best_trial": result.best_number, "best_values": result.best_values,
                                      "n_finished": result.n_finished})

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # every handed-over call runs before the worker returns
            self._pool = None
        self.session.close()
