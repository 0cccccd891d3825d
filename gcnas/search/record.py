"""The trial record: every user attribute a gcnas trial (and study) carries in Optuna's storage, with its type and
meaning, in one place.

Optuna stores user attributes as a free-form mapping; this module is its schema. Writers and readers name an
:class:`Attr` (``ROLE.set(trial, "baseline")``, ``ROLE.get(t)``, ``INFEASIBLE.on(t)``) rather than a string, so a
misspelt name fails at import, and ``tests/test_record.py`` checks that every attribute a real study writes is
declared here, of the declared type. A trial's attributes are what Optuna's own tools show (``optuna trials``,
optuna-dashboard), and what export, confirm, report and the W&B tracker read back.

A trial's record stays small, so that ``optuna trials`` prints lines a terminal holds and every trial row of a study
shared by many workers stays short: what many trials share lives once on the study, under a key the trial keeps
(:class:`Keyed`). The architecture's YAML is the study's ``arch:<arch_key>`` (and ``architecture.yaml`` in the trial's
folder), the training recipe the study's ``recipe:<recipe key>``, the end of the trial's ``trial_key``, the machine's
description the study's ``machine:<key>``. A worker writes each such row once. Read them with :func:`architecture_of`,
:func:`recipe_of` and :func:`machine_of`, which also read the trials of a study written before, which kept all three
themselves (``architecture``, ``train``, ``machine``).

Nor does a trial keep again what Optuna already stores for it: its constraint values are Optuna's own
(``Trial.set_constraint``, what its constrained samplers read), and a single-objective trial that is not a replicate
reports its validation accuracy every epoch (its intermediate values, what the pruner reads), so only the other trials
keep ``history``. Read them with :func:`constraints_of` and :func:`history_of`, which also read the ``constraints`` and
``history`` an older gcnas wrote on every trial.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from gcnas.arch import Architecture
from gcnas.errors import ConfigError

__all__ = ["Attr", "Keyed", "TRIAL_ATTRS", "STUDY_ATTRS", "STUDY_KEYED", "architecture_of", "recipe_of",
           "fixed_architecture_of", "machine_of", "machine_key", "recipe_key", "record_architecture",
           "record_recipe", "record_machine", "enqueue", "constraints_of", "history_of"]


@dataclass(frozen=True)
class Attr:
    """One user attribute: its name in the storage, the JSON types its values take, and what it means."""

    name: str
    types: tuple[type, ...]
    meaning: str
    digits: Optional[int] = None  # a float is stored rounded to this many decimals (a short row, nothing lost)

    def get(self, trial: Any, default: Any = None) -> Any:
        """The value on ``trial`` (an ``optuna.Trial``, a ``FrozenTrial`` or a ``Study``), or ``default``."""
        return trial.user_attrs.get(self.name, default)

    def set(self, trial: Any, value: Any) -> None:
        if self.digits is not None and isinstance(value, float):
            value = round(value, self.digits)
        trial.set_user_attr(self.name, value)

    def on(self, trial: Any) -> bool:
        """Whether ``trial`` carries the attribute at all."""
        return self.name in trial.user_attrs


@dataclass(frozen=True)
class Keyed:
    """A family of study user attributes, one per content key: ``<prefix><key>`` holds the value whose key it is.

    Optuna stores each study user attribute as its own row, and a key names one value only, so workers that write the
    same key at the same time write the same value: no read-modify-write, no race (a concurrent insert of the same row
    is one Optuna ignores)."""

    prefix: str
    types: tuple[type, ...]
    meaning: str

    def name(self, key: str) -> str:
        return self.prefix + key

    def owns(self, name: str) -> bool:
        """Whether ``name`` is an attribute of this family."""
        return name.startswith(self.prefix)

    def get(self, study: Any, key: Optional[str], default: Any = None) -> Any:
        """The value of ``key`` on ``study`` (a ``Study``, or the mapping of its user attributes already read: a
        caller reading many trials reads them once), or ``default``."""
        return default if key is None else _study_attrs(study).get(self.name(key), default)

    def set(self, study: Any, key: str, value: Any) -> None:
        study.set_user_attr(self.name(key), value)


def _study_attrs(study: Any) -> Mapping[str, Any]:
    return study if isinstance(study, Mapping) else study.user_attrs


def _attr(name: str, types: Any, meaning: str, digits: Optional[int] = None) -> Attr:
    return Attr(name, types if isinstance(types, tuple) else (types,), meaning, digits)


# -- a trial: what to run (enqueued, and kept by a retry) -----------------------------------------------------------
FIXED_ARCHITECTURE = _attr("fixed_architecture", str, "an enqueued trial's architecture, run as given: its key (its "
                           "YAML is the study's arch:<key>, see enqueue), or its YAML (as older gcnas wrote it)")
ROLE = _attr("role", str, "baseline | paper_gc | searched")
REPLICATE = _attr("replicate", int, "a reference's k-th seed (training seed = seed + k); a confirmation's j-th seed")
CONFIRMS = _attr("confirms", int, "a confirmation trial: the number of the searched study's trial it retrains")
RETRY_OF = _attr("retry_of", int, "the trial this one runs again (its worker died or was interrupted)")
RETRY_REASON = _attr("retry_reason", str, "why the trial it runs again ended")
# -- a trial: what it is and where it ran ---------------------------------------------------------------------------
WORKER = _attr("worker", int, "the worker that ran it")
MACHINE = _attr("machine", str, "the key of the machine it ran on: its CPU, cores, threads and torch (the study's "
                "machine:<key>; read it with machine_of), or that description itself on trials of older gcnas")
DEVICE = _attr("device", str, "where it trained: cpu, cuda or cuda:N (a worker's GPU on a multi-GPU node)")
ARCH_KEY = _attr("arch_key", str, "the architecture's canonical hash (Architecture.key)")
ARCHITECTURE = _attr("architecture", str, "the architecture's YAML, on trials of older gcnas only (now the study's "
                                         "arch:<arch_key>; read it with architecture_of)")
N_BLOCKS = _attr("n_blocks", int, "blocks the architecture places")
TRAIN = _attr("train", dict, "the training recipe it ran with, on trials of older gcnas only (now the study's "
                             "recipe:<recipe key>; read it with recipe_of)")
TRIAL_KEY = _attr("trial_key", str, "<arch_key>-<recipe key>: equal keys are the same experiment (dedupe)")
DUPLICATE_OF = _attr("duplicate_of", int, "a finished trial of the same trial key, whose result this one took")
# -- a trial: cost and constraints ----------------------------------------------------------------------------------
PARAMS = _attr("params", int, "parameters")
FLOPS = _attr("flops", int, "FLOPs for one input of the study's input size")
LATENCY_MS = _attr("latency_ms", (float, type(None)), "CPU latency at batch 1 in ms, where measured (absent where "
                   "not; older gcnas wrote null)", digits=4)
CONSTRAINTS = _attr("constraints", list, "constraint values (<= 0: met), on trials of older gcnas only (now only "
                    "Optuna's own, Trial.set_constraint; read them with constraints_of)")
INFEASIBLE = _attr("infeasible", str, "why it was never trained (space limits or a hard constraint); pruned, not "
                                      "counted against the budget")
# -- a trial: how it ended ------------------------------------------------------------------------------------------
SCORE = _attr("score", str, "oneshot: its value was scored on the study's supernet, not trained")
ONESHOT_SCORE = _attr("oneshot_score", str, "which search.supernet_score its value is (trial and study attribute)")
WALL_TIME_S = _attr("wall_time_s", float, "seconds from start to end, everything included", digits=3)
TRAIN_SECONDS = _attr("train_seconds", float, "seconds of training and validation", digits=3)
EPOCHS = _attr("epochs", int, "epochs trained")
HISTORY = _attr("history", list, "validation accuracy after each epoch, where it was not reported to Optuna (a "
                "replicate, a multi-objective trial; every trial of older gcnas): read it with history_of")
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

# -- a study: what its trials share, once, by key -------------------------------------------------------------------
ARCHITECTURES = Keyed("arch:", (str,), "an architecture's YAML, under its key (Architecture.key): a trial's arch_key")
RECIPES = Keyed("recipe:", (dict,), "a training recipe (the trainer config and the space's training choices) under its "
                                    "key, the hash that ends a trial's trial_key")
MACHINES = Keyed("machine:", (str,), "a machine's description (gcnas.machine.describe_machine) under its key: a "
                                     "trial's machine")

STUDY_KEYED = (ARCHITECTURES, RECIPES, MACHINES)


# -- reading and writing what lives on the study ----------------------------------------------------------------------
def _once(family: Keyed, study: Any, key: str, value: Any, written: Optional[set[str]]) -> None:
    """Put ``value`` on the study under ``key``, unless ``written`` (the study attributes this worker has already
    written, kept by the caller) says the row is there: one storage transaction the first time, none after."""
    name = family.name(key)
    if written is not None and name in written:
        return
    family.set(study, key, value)
    if written is not None:
        written.add(name)


def record_architecture(study: Any, trial: Any, arch: Architecture, written: Optional[set[str]] = None) -> str:
    """Record that ``trial`` runs ``arch``: its key on the trial, its YAML on the study under that key (the same row and
    value whichever worker writes it; ``written`` as for :func:`_once`). Returns the key."""
    key = arch.key()
    _once(ARCHITECTURES, study, key, arch.to_yaml(), written)
    ARCH_KEY.set(trial, key)
    return key


def record_recipe(study: Any, recipe: Mapping[str, Any], key: str, written: Optional[set[str]] = None) -> None:
    """Put the training recipe whose key is ``key`` (the end of its trials' ``trial_key``) on the study."""
    _once(RECIPES, study, key, dict(recipe), written)


def machine_key(description: str) -> str:
    """The key of a machine's description: 8 hex digits of its SHA-1."""
    return hashlib.sha1(description.encode()).hexdigest()[:8]


def record_machine(study: Any, trial: Any, description: str, written: Optional[set[str]] = None) -> None:
    """Record that ``trial`` runs on the machine ``description`` names: its key on the trial, the description once on
    the study (``machine:<key>``)."""
    key = machine_key(description)
    _once(MACHINES, study, key, description, written)
    MACHINE.set(trial, key)


def machine_of(study: Any, trial: Any) -> Optional[str]:
    """The description of the machine ``trial`` ran on, None where none was recorded; ``study`` as for
    :func:`architecture_of`. A trial of an older gcnas kept the description itself."""
    value = MACHINE.get(trial)
    return None if value is None else MACHINES.get(study, value, value)


def recipe_key(trial: Any) -> Optional[str]:
    """The key of the recipe ``trial`` ran with: its ``trial_key`` after the architecture's key; None without one."""
    key = TRIAL_KEY.get(trial)
    return None if key is None else key.rpartition("-")[2]


def architecture_of(study: Any, trial: Any) -> Optional[str]:
    """The YAML of the architecture ``trial`` ran, None where none was recorded (drawn infeasible). ``study`` is the
    trial's ``Study`` or the mapping of its user attributes (read once by a caller reading many trials)."""
    if ARCHITECTURE.on(trial):  # written by an older gcnas
        return ARCHITECTURE.get(trial)
    return ARCHITECTURES.get(study, ARCH_KEY.get(trial))


def recipe_of(study: Any, trial: Any) -> Optional[dict]:
    """The training recipe ``trial`` ran with (trainer config and the space's training choices, without the recipe's
    name), None where none was recorded; ``study`` as for :func:`architecture_of`."""
    if TRAIN.on(trial):  # written by an older gcnas
        return TRAIN.get(trial)
    return RECIPES.get(study, recipe_key(trial))


def fixed_architecture_of(study: Any, trial: Any) -> Optional[str]:
    """The YAML of the architecture an enqueued ``trial`` runs as given, None for a sampled one. Its
    ``fixed_architecture`` is a key (:func:`enqueue`) or, as enqueued by an older gcnas or by hand, the YAML itself."""
    fixed = FIXED_ARCHITECTURE.get(trial)
    if fixed is None or ":" in fixed:  # a YAML architecture is a mapping; a key is hex digits
        return fixed
    text = ARCHITECTURES.get(study, fixed)
    if text is None:
        raise ConfigError(f"{FIXED_ARCHITECTURE.name}: trial {trial.number} was enqueued with architecture key "
                          f"{fixed!r}, which its study does not hold ({ARCHITECTURES.name(fixed)}); enqueue it "
                          f"with gcnas.search.record.enqueue, or with its YAML")
    return text


def enqueue(study: Any, user_attrs: Mapping[str, Any]) -> None:
    """Enqueue a trial with ``user_attrs``; a fixed architecture given as YAML goes on the study (``arch:<key>``) and
    the trial keeps its key. YAML that is no architecture stays on the trial, for the trial to fail on."""
    attrs = dict(user_attrs)
    text = attrs.get(FIXED_ARCHITECTURE.name)
    if isinstance(text, str) and ":" in text:
        try:
            arch = Architecture.from_yaml(text)
        except ConfigError:
            arch = None
        if arch is not None:
            key = arch.key()
            ARCHITECTURES.set(study, key, arch.to_yaml())
            attrs[FIXED_ARCHITECTURE.name] = key
    study.enqueue_trial({}, user_attrs=attrs)


# -- reading what Optuna keeps for a trial ----------------------------------------------------------------------------
def constraints_of(trial: Any) -> dict[str, float]:
    """The constraint values of ``trial`` (<= 0: met) by name, as Optuna's constrained samplers read them
    (``trial.constraints``); {} where none were set. A trial whose constraints only an older gcnas's ``constraints``
    list holds gets them named "0", "1", ... in its order, as Optuna names the values of a list."""
    values = dict(trial.constraints)
    if not values and CONSTRAINTS.on(trial):
        values = {str(i): float(v) for i, v in enumerate(CONSTRAINTS.get(trial))}
    return values


def history_of(trial: Any) -> list[float]:
    """The validation accuracy after each epoch of ``trial`` (a ``FrozenTrial``), in epoch order: its ``history``
    where it keeps one (a replicate, a multi-objective trial, any trial of an older gcnas), else the accuracies it
    reported to Optuna (its intermediate values, up to the epoch a pruned trial stopped at), else []."""
    if HISTORY.on(trial):
        return [float(v) for v in HISTORY.get(trial)]
    return [float(v) for _, v in sorted(trial.intermediate_values.items())]
