"""One trial, in named steps (:meth:`TrialRunner._run`): resolve (the enqueued architecture or the space's suggestion)
-> dedupe (reuse the result of a trial with the same architecture and recipe) -> cost and hard constraints -> train
with pruning (or the supernet's score) -> record (weights, wall time, objective values)."""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Optional

import optuna
import torch
from safetensors.torch import save_model

from gcnas.arch import Architecture
from gcnas.backbones.weights import BackboneWeights
from gcnas.data import DataSplits
from gcnas.machine import describe_machine
from gcnas.search.callbacks import Callbacks
from gcnas.search.paths import stored_path, trial_folder
from gcnas.space import InfeasibleArchitecture, SearchSpace
from gcnas.train import EpochResult, NonFiniteLossError, fit
from gcnas.train.one import ArchitectureRun
from gcnas.search import record

__all__ = ["TrialRunner", "METRICS", "FIXED_ARCH_ATTR", "ROLE_ATTR", "REPLICATE_ATTR", "SOURCE_ATTR", "WEIGHTS_FILE"]

log = logging.getLogger("gcnas.search")

# The names of the record's attributes (gcnas.search.record) that callers put in the user attributes of a trial they
# enqueue. Enqueued baseline and paper-GC trials have replicate k = 0 .. study.noise_seeds - 1, trained with seed
# ``seed + k``: together they measure the study's seed-to-seed noise (gcnas.search.summary.noise_floor).
FIXED_ARCH_ATTR, ROLE_ATTR, REPLICATE_ATTR = record.FIXED_ARCHITECTURE.name, record.ROLE.name, record.REPLICATE.name
SOURCE_ATTR, ONESHOT_SCORE_ATTR = record.CONFIRMS.name, record.ONESHOT_SCORE.name
WEIGHTS_FILE = "model.safetensors"  # in a trial's folder while the trial is among the study's kept top trials
ONESHOT_SCORE = "oneshot"  # the value of ``score`` of a trial the supernet scored (search.method=oneshot)
METRICS = {"accuracy": "maximize", "params": "minimize", "flops": "minimize", "latency": "minimize"}
_CONSTRAINT_KEYS = (("max_params", "params"), ("max_flops", "flops"), ("max_latency_ms", "latency_ms"))


_Told = tuple[optuna.trial.TrialState, Optional[list]]  # what the worker tells the study: state and values


def _recipe(train_kw: Mapping[str, Any]) -> dict:
    """A trial's training recipe as recorded: its trainer config and the space's training choices; the recipe's name
    is only a label."""
    return {k: v for k, v in train_kw.items() if k != "name"}


def _recipe_key(train_kw: Mapping[str, Any]) -> str:
    """The recipe's key: the end of the trial key, and its name on the study (``recipe:<key>``)."""
    part = json.dumps(dict(sorted(_recipe(train_kw).items())), sort_keys=True, default=str)
    return hashlib.sha256(part.encode()).hexdigest()[:8]


@dataclass
class _Run:
    """One trial while it runs: what it evaluates, where it writes, and its training curve."""

    trial: optuna.Trial
    t0: float  # time.perf_counter() when it started
    tdir: Path
    log: IO[str]
    fixed: Optional[str]  # the enqueued architecture (YAML); None for a sampled one
    replicate: int
    role: str
    arch: Optional[Architecture] = None
    train_kw: dict = field(default_factory=dict)
    key: str = ""  # the architecture's key
    seed: int = 0  # the training seed
    history: list[float] = field(default_factory=list)  # validation accuracy per epoch
    train_seconds: float = 0.0

    def note(self, msg: str) -> None:
        """A line in the trial's log."""
        self.log.write(msg + "\n")
        self.log.flush()

    def seconds(self) -> float:
        return time.perf_counter() - self.t0


@dataclass
class TrialRunner:
    """Runs trials of one study for one worker. Everything it needs is built once per worker."""

    space: SearchSpace
    data: DataSplits
    trainer: Mapping[str, Any]
    metrics: tuple[str, ...]
    constraints: Mapping[str, Optional[float]]
    worker: int
    seed: int
    study_dir: Path
    device: str = "cpu"
    weights: BackboneWeights = field(default_factory=BackboneWeights)  # the backbone's starting weights
    on_epoch: Optional[Callable[[int, EpochResult], None]] = None
    callbacks: Callbacks = field(default_factory=Callbacks)
    keep_weights: int = 3  # > 0: every trained trial saves its weights; the worker then keeps only the top ones
    max_twin_wait_s: float = 3600.0  # how long to wait for another worker evaluating the same architecture
    scorer: Optional[Callable[[Architecture], float]] = None  # search.method=oneshot: the supernet's score, no training
    # the study rows this worker has written (arch:, recipe:, machine:): each is written once, not once per trial
    _written: set[str] = field(default_factory=set, init=False, repr=False)

    @property
    def needs_latency(self) -> bool:
        return "latency" in self.metrics or self.constraints.get("max_latency_ms") is not None

    # -- helpers -----------------------------------------------------------------------------------------------------
    def _values(self, accuracy: float, cost: Mapping[str, float]) -> list[float]:
        out = []
        for m in self.metrics:
            if m == "accuracy":
                out.append(accuracy)
            elif m == "latency":
                out.append(float(cost["latency_ms"]))
            else:
                out.append(float(cost[m]))
        return out

    _FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def _find_duplicate(self, study: optuna.Study, key: str, number: int,
                        note) -> Optional[optuna.trial.FrozenTrial]:
        """A finished trial (any worker) that evaluated the same architecture with the same recipe; else, if an earlier
        one is running now (another worker sampled it at the same time), wait for it and return it once finished. None
        if there is none, or the running one failed.
        """
        started, told = time.monotonic(), False
        while time.monotonic() - started < self.max_twin_wait_s:
            same = [t for t in study.get_trials(deepcopy=False)  # one read answers both questions
                    if t.number != number and record.TRIAL_KEY.get(t) == key
                    and not record.DUPLICATE_OF.on(t)]
            done = next((t for t in same if t.state in self._FINISHED), None)
            if done is not None:
                return done
            twins = [t for t in same if t.state == optuna.trial.TrialState.RUNNING and t.number < number]
            if not twins:
                return None
            if not told:
                note(f"trial {twins[0].number} is evaluating the same architecture right now: waiting for its result")
                told = True
            time.sleep(1.0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a twin whose worker died stops being waited for
        note(f"waited {self.max_twin_wait_s:.0f}s for a running trial with the same architecture; training it here")
        return None

    def trial_dir(self, number: int) -> Path:
        """The folder of trial ``number`` (its log, architecture and kept weights), created on first use."""
        d = trial_folder(self.study_dir, number)
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- the trial: resolve, dedupe, cost, train, record --------------------------------------------------------------
    def __call__(self, study: optuna.Study, trial: optuna.Trial) -> _Told:
        """Run ``trial``; returns the state and values to ``tell`` (values None for pruned or failed)."""
        t0 = time.perf_counter()
        record.WORKER.set(trial, self.worker)
        record.record_machine(study, trial, describe_machine(), self._written)  # numbers differ between CPUs
        record.DEVICE.set(trial, self.device)
        fixed = record.fixed_architecture_of(study, trial)
        replicate = int(record.REPLICATE.get(trial, 0))
        role = record.ROLE.get(trial, "searched")
        record.ROLE.set(trial, role)
        tdir = self.trial_dir(trial.number)
        with (tdir / "log.txt").open("a") as logf:
            return self._run(study, _Run(trial, t0, tdir, logf, fixed, replicate, role))

    def _run(self, study: optuna.Study, run: "_Run") -> _Told:
        """The named steps of one trial, each of which may end it."""
        infeasible = self._resolve(run)
        if infeasible is not None:
            return self._infeasible(run.trial, run.note, infeasible, run.t0)
        self._record_architecture(study, run)
        dup = self._dedupe(study, run)
        if dup is not None:
            return self._reuse(run, dup)
        model, cost = self._cost(run)
        violated = self._check_constraints(run, cost)
        if violated is not None:
            return violated
        if self.scorer is not None:  # one-shot: inherited weights, nothing trained
            return self._score(run, cost)
        return self._train(run, model, cost)

    def _resolve(self, run: "_Run") -> Optional[str]:
        """The architecture and training recipe: the enqueued one, or the space's suggestion; returns why the draw is
        infeasible (the space's limits), None if it is not."""
        run.train_kw = dict(self.trainer)
        try:
            if run.fixed is not None:
                run.arch = Architecture.from_yaml(run.fixed, sites=self.space.sites)
                if run.replicate:  # part of the trial key, so replicates are trained, never taken as duplicates
                    run.train_kw["seed"] = self.seed + run.replicate
            else:
                run.arch = self.space.suggest(run.trial)
                run.train_kw.update(self.space.suggest_training(run.trial))
        except InfeasibleArchitecture as e:
            return f"search space limits: {e}"
        return None

    def _record_architecture(self, study: optuna.Study, run: "_Run") -> None:
        """The architecture and recipe, once on the study under their keys (the trial keeps the keys: a short row
        that ``optuna trials`` shows whole), and the architecture in the trial's folder."""
        trial, arch = run.trial, run.arch
        run.key = record.record_architecture(study, trial, arch, self._written)
        record.N_BLOCKS.set(trial, len(arch.placements))
        record.record_recipe(study, _recipe(run.train_kw), _recipe_key(run.train_kw), self._written)
        (run.tdir / "architecture.yaml").write_text(arch.to_yaml())
        run.note(f"trial {trial.number} ({run.role}) worker {self.worker}: {len(arch.placements)} blocks, "
                 f"key {run.key}")
        self.callbacks("trial_started", trial.number, run.role, arch, run.train_kw)

    def _dedupe(self, study: optuna.Study, run: "_Run") -> Optional[optuna.trial.FrozenTrial]:
        """The trial key (architecture and recipe), recorded; and a finished trial with the same key, if any."""
        trial_key = f"{run.key}-{_recipe_key(run.train_kw)}"
        record.TRIAL_KEY.set(run.trial, trial_key)  # set before looking, so concurrent twins see each other
        return self._find_duplicate(study, trial_key, run.trial.number, run.note)

    def _reuse(self, run: "_Run", dup: optuna.trial.FrozenTrial) -> _Told:
        """End the trial with the result of ``dup``, which evaluated the same architecture and recipe."""
        for attr in (record.PARAMS, record.FLOPS, record.LATENCY_MS, record.EPOCHS, record.INFEASIBLE,
                     record.PRUNED_REASON):
            if attr.on(dup):
                attr.set(run.trial, attr.get(dup))
        history = record.history_of(dup)  # this trial reports nothing: it keeps the curve it took
        if history:
            record.HISTORY.set(run.trial, history)
        for name, value in record.constraints_of(dup).items():
            run.trial.set_constraint(name, value)
        record.DUPLICATE_OF.set(run.trial, dup.number)
        record.WALL_TIME_S.set(run.trial, run.seconds())
        run.note(f"same architecture and recipe as trial {dup.number}: its result is reused, nothing trained")
        if dup.state == optuna.trial.TrialState.PRUNED:
            return optuna.trial.TrialState.PRUNED, None
        return optuna.trial.TrialState.COMPLETE, list(dup.values)

    def _cost(self, run: "_Run") -> tuple[torch.nn.Module, dict]:
        """The model, built with the trial's seed, and its cost (params, FLOPs, latency), recorded."""
        run.seed = int(run.train_kw.get("seed", self.seed))  # a space may search the seed (the paper recipes do)
        built = ArchitectureRun.build(run.arch, self.data.input_size, seed=run.seed, weights=self.weights,
                                      latency=self.needs_latency)  # the one seed-build-cost path (gcnas.train.one)
        model, cost_obj = built.model, built.cost
        cost = {"params": cost_obj.params, "flops": cost_obj.flops, "latency_ms": cost_obj.latency_ms}
        for attr in (record.PARAMS, record.FLOPS, record.LATENCY_MS):
            if cost[attr.name] is not None:  # latency is measured only where a constraint or metric needs it
                attr.set(run.trial, cost[attr.name])
        run.note(f"cost: {cost_obj.params:,} params, {cost_obj.flops / 1e6:.2f} MFLOPs"
                 + (f", {cost_obj.latency_ms:.2f} ms" if cost_obj.latency_ms is not None else ""))
        return model, cost

    def _check_constraints(self, run: "_Run", cost: Mapping[str, float]) -> Optional[_Told]:
        """The hard constraints: an architecture over one ends infeasible (returned); else its values are recorded."""
        violations = []
        for limit_key, metric in _CONSTRAINT_KEYS:
            limit = self.constraints.get(limit_key)
            if limit is not None:
                violations.append((limit_key, float(cost[metric]) - float(limit), cost[metric], limit))
        if any(v > 0 for _, v, _, _ in violations):
            reason = "; ".join(f"{k[len('max_'):]} {value:,.6g} > constraints.{k}={limit:,.6g}"
                               for k, v, value, limit in violations if v > 0)
            return self._infeasible(run.trial, run.note, reason, run.t0, {k: v for k, v, _, _ in violations})
        self._set_constraints(run.trial, {k: v for k, v, _, _ in violations})
        return None

    def _score(self, run: "_Run", cost: Mapping[str, float]) -> _Told:
        """search.method=oneshot: the supernet's score with inherited weights, nothing trained."""
        accuracy = self.scorer(run.arch)  # search.supernet_score=gradient: the blocks' gradient, not an accuracy
        kind = getattr(self.scorer, "kind", "accuracy")
        record.SCORE.set(run.trial, ONESHOT_SCORE)
        record.ONESHOT_SCORE.set(run.trial, kind)
        record.WALL_TIME_S.set(run.trial, run.seconds())
        run.note(f"done: one-shot {kind} (supernet weights) {accuracy:.4g} in {run.seconds():.1f}s")
        return optuna.trial.TrialState.COMPLETE, self._values(accuracy, cost)

    def _reports(self, run: "_Run") -> bool:
        """Whether ``run`` reports its accuracy to Optuna every epoch (its intermediate values, for the pruner): a
        single-objective trial that is not a replicate. The references' extra seeds measure the noise; as the pruner's
        evidence they would count the references three times over and set its median at theirs, pruning nearly every
        searched trial."""
        return len(self.metrics) == 1 and not run.replicate

    def _on_epoch(self, run: "_Run") -> Callable[[EpochResult], None]:
        """What each epoch does: log and report its accuracy, and let the pruner stop a searched trial."""
        reports, frozen = self._reports(run), int(run.train_kw.get("freeze_backbone_epochs") or 0)

        def on_epoch(er: EpochResult) -> None:
            run.history.append(er.val_acc)
            run.train_seconds += er.seconds
            run.note(f"epoch {er.epoch}: train loss {er.train_loss:.4f}, val loss {er.val_loss:.4f}, "
                     f"val acc {er.val_acc:.4f} ({er.seconds:.1f}s)")
            if self.on_epoch is not None:
                self.on_epoch(run.trial.number, er)
            self.callbacks("epoch_ended", run.trial.number, er)
            if reports:
                run.trial.report(er.val_acc, er.epoch)
                # the enqueued references always train in full: every delta and the noise floor are read from them.
                # While the backbone is frozen (trainer=finetune) an epoch shows how the blocks start, not how they
                # train (scale fusion starts at x/2): no pruning before the backbone has trained an epoch.
                if run.fixed is None and er.epoch > frozen and run.trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {er.epoch} (val acc {er.val_acc:.4f})")

        return on_epoch

    def _train(self, run: "_Run", model: torch.nn.Module, cost: Mapping[str, float]) -> _Told:
        """The proxy training, which the pruner may stop and a diverging loss ends; then the trial's record."""
        trial, single = run.trial, len(self.metrics) == 1
        try:
            result = fit(model, self.data, run.train_kw, seed=run.seed, device=self.device,
                         on_epoch=self._on_epoch(run), test=False)
        except optuna.TrialPruned as e:
            record.WALL_TIME_S.set(trial, run.seconds())
            run.note(str(e))
            return optuna.trial.TrialState.PRUNED, None
        except NonFiniteLossError as e:  # this architecture/recipe diverged: end it with the reason, go on
            record.PRUNED_REASON.set(trial, str(e))
            record.WALL_TIME_S.set(trial, run.seconds())
            run.note(f"stopped: {e}")
            if not single:
                record.ERROR.set(trial, str(e))
            return (optuna.trial.TrialState.PRUNED if single else optuna.trial.TrialState.FAIL), None
        finally:
            # once per trial, however it ended (each write is a storage transaction). A trial that reported its
            # accuracies every epoch has them as its intermediate values (record.history_of reads them): only
            # the others keep the curve as an attribute.
            if run.history:
                if not self._reports(run):
                    record.HISTORY.set(trial, run.history)
                record.TRAIN_SECONDS.set(trial, run.train_seconds)
                record.EPOCHS.set(trial, len(run.history))
        return self._record_trained(run, model, result.final_val_acc, cost)

    def _record_trained(self, run: "_Run", model: torch.nn.Module, accuracy: float,
                        cost: Mapping[str, float]) -> _Told:
        if self.keep_weights > 0:
            # Saved now, while the model exists; the worker deletes the files of trials that leave the top.
            save_model(model, str(run.tdir / WEIGHTS_FILE), metadata={"arch_key": run.key})
            record.WEIGHTS.set(run.trial, stored_path(self.study_dir, run.tdir / WEIGHTS_FILE))  # folder can move
        record.WALL_TIME_S.set(run.trial, run.seconds())
        run.note(f"done: val acc {accuracy:.4f} in {run.seconds():.1f}s")
        return optuna.trial.TrialState.COMPLETE, self._values(accuracy, cost)

    @staticmethod
    def _set_constraints(trial, values: Mapping[str, float]) -> None:
        """Optuna's constraint values (<= 0 feasible), read by its constrained samplers (and record.constraints_of)."""
        values = {"space_limits": 0.0, **values} if not values else dict(values)
        for k, v in values.items():
            trial.set_constraint(k, float(v))

    def _infeasible(self, trial, note, reason: str, t0: float,
                    constraint_values: Optional[Mapping[str, float]] = None):
        """End an architecture that is never trained as pruned, with the reason (user attribute ``infeasible``) and
        the constraint values Optuna's constrained samplers read: no value stands for an accuracy it never had, and
        the worker does not count it against the budget."""
        record.INFEASIBLE.set(trial, reason)
        self._set_constraints(trial, constraint_values or {"space_limits": 1.0})
        record.WALL_TIME_S.set(trial, time.perf_counter() - t0)
        note(f"infeasible, not trained: {reason}")
        return optuna.trial.TrialState.PRUNED, None
