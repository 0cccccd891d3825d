"""The trial record: every user attribute a gcnas trial (and study) carries in Optuna's storage, with its type and
meaning, in one place.

Optuna stores user attributes as a free-form mapping; this module is its schema. Writers and readers name an
:class:`Attr` (``ROLE.set(trial, "baseline")``, ``ROLE.get(t)``, ``INFEASIBLE.on(t)``) rather than a string, so a
misspelt name fails at import, and ``tests/test_record.py`` checks that every attribute a real study writes is
declared here, of the declared type. A trial's attributes are what Optuna's own tools show (``optuna trials``,
optuna-dashboard), and what export, confirm, report and the W&B tracker read back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Attr", "TRIAL_ATTRS", "STUDY_ATTRS"]


@dataclass(frozen=True)
class Attr:
    """One user attribute: its name in the storage, the JSON types its values take, and what it means."""

    name: str
    types: tuple[type, ...]
    meaning: str

    def get(self, trial: Any, default: Any = None) -> Any:
        """The value on ``trial`` (an ``optuna.Trial``, a ``FrozenTrial`` or a ``Study``), or ``default``."""
        return trial.user_attrs.get(self.name, default)

    def set(self, trial: Any, value: Any) -> None:
        trial.set_user_attr(self.name, value)

    def on(self, trial: Any) -> bool:
        """Whether ``trial`` carries the attribute at all."""
        return self.name in trial.user_attrs


def _attr(name: str, types: Any, meaning: str) -> Attr:
    return Attr(name, types if isinstance(types, tuple) else (types,), meaning)


# -- a trial: what to run (enqueued, and kept by a retry) -----------------------------------------------------------
FIXED_ARCHITECTURE = _attr("fixed_architecture", str, "an enqueued trial's architecture YAML, run as given")
ROLE = _attr("role", str, "baseline | paper_gc | searched")
REPLICATE = _attr("replicate", int, "a reference's k-th seed (training seed = seed + k); a confirmation's j-th seed")
CONFIRMS = _attr("confirms", int, "a confirmation trial: the number of the searched study's trial it retrains")
RETRY_OF = _attr("retry_of", int, "the trial this one runs again (its worker died or was interrupted)")
RETRY_REASON = _attr("retry_reason", str, "why the trial it runs again ended")
# -- a trial: what it is and where it ran ---------------------------------------------------------------------------
WORKER = _attr("worker", int, "the worker that ran it")
MACHINE = _attr("machine", str, "CPU, cores, threads and torch it ran with (gcnas.machine.describe_machine)")
DEVICE = _attr("device", str, "where it trained: cpu, cuda or cuda:N (a worker's GPU on a multi-GPU node)")
ARCH_KEY = _attr("arch_key", str, "the architecture's canonical hash (Architecture.key)")
ARCHITECTURE = _attr("architecture", str, "the architecture's YAML")
N_BLOCKS = _attr("n_blocks", int, "blocks the architecture places")
TRAIN = _attr("train", dict, "the training recipe it ran with: the trainer config and the space's training choices")
TRIAL_KEY = _attr("trial_key", str, "architecture key + recipe hash: equal keys are the same experiment (dedupe)")
DUPLICATE_OF = _attr("duplicate_of", int, "a finished trial of the same trial key, whose result this one took")
# -- a trial: cost and constraints ----------------------------------------------------------------------------------
PARAMS = _attr("params", int, "parameters")
FLOPS = _attr("flops", int, "FLOPs for one input of the study's input size")
LATENCY_MS = _attr("latency_ms", (float, type(None)), "CPU latency at batch 1 in ms, where measured")
CONSTRAINTS = _attr("constraints", list, "constraint values as Optuna's constrained samplers read them (<= 0: met)")
INFEASIBLE = _attr("infeasible", str, "why it was never trained (space limits or a hard constraint); pruned, not "
                                      "counted against the budget")
# -- a trial: how it ended ------------------------------------------------------------------------------------------
SCORE = _attr("score", str, "oneshot: its value was scored on the study's supernet, not trained")
ONESHOT_SCORE = _attr("oneshot_score", str, "which search.supernet_score its value is (trial and study attribute)")
WALL_TIME_S = _attr("wall_time_s", float, "seconds from start to end, everything included")
TRAIN_SECONDS = _attr("train_seconds", float, "seconds of training and validation")
EPOCHS = _attr("epochs", int, "epochs trained")
HISTORY = _attr("history", list, "validation accuracy after each epoch")
PRUNED_REASON = _attr("pruned_reason", str, "why training stopped early other than by the pruner (a NaN loss)")
ERROR = _attr("error", str, "a failed trial's exception, in one line")
INTERRUPTED = _attr("interrupted", str, "the signal that ended it (SIGINT, SIGTERM) and the worker")
CANCELLED = _attr("cancelled", str, "asked past the budget by a concurrent worker: failed, never run")
WEIGHTS = _attr("weights", str, "its kept weights, relative to the study's folder (while among the kept top trials)")

TRIAL_ATTRS = (FIXED_ARCHITECTURE, ROLE, REPLICATE, CONFIRMS, RETRY_OF, RETRY_REASON, WORKER, MACHINE, DEVICE,
               ARCH_KEY, ARCHITECTURE, N_BLOCKS, TRAIN, TRIAL_KEY, DUPLICATE_OF, PARAMS, FLOPS, LATENCY_MS, CONSTRAINTS,
               INFEASIBLE, SCORE, ONESHOT_SCORE, WALL_TIME_S, TRAIN_SECONDS, EPOCHS, HISTORY, PRUNED_REASON, ERROR,
               INTERRUPTED, CANCELLED, WEIGHTS)

# -- a study --------------------------------------------------------------------------------------------------------
SEARCH_SPACE = _attr("search_space", str, "the search space's name")
BACKBONE = _attr("backbone", str, "the timm backbone")
DATA = _attr("data", str, "the data set's name")
METRICS = _attr("metrics", list, "the objective's metrics, accuracy first")
CONFIG = _attr("config", dict, "the composed config of the run that created it, storage passwords masked")
INPUT_SIZE = _attr("input_size", list, "(C, H, W) of one input")
PRETRAINED_CFG = _attr("pretrained_cfg", dict, "the data's preprocessing as timm's pretrained_cfg (for the export)")
IDENTITY = _attr("identity", dict, "what its trials were made from (gcnas.search.identity)")
INITIALISED = _attr("gcnas_initialised", bool, "worker 0 recorded the study and queued its fixed trials")
CONFIRMATION = _attr("confirmation", dict, "its confirmation: {study, k, seeds, first_seed, trainer, data}")

STUDY_ATTRS = (SEARCH_SPACE, BACKBONE, DATA, METRICS, CONFIG, INPUT_SIZE, PRETRAINED_CFG, IDENTITY, ONESHOT_SCORE,
               INITIALISED, CONFIRMATION)
