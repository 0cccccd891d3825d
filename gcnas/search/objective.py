"""One trial: suggest -> build -> cost and hard constraints -> proxy training with pruning -> objective values."""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import optuna
import torch
from safetensors.torch import save_model

from gcnas.arch import Architecture, build_model
from gcnas.backbones.cost import measure_cost
from gcnas.backbones.weights import BackboneWeights
from gcnas.data import DataSplits
from gcnas.machine import describe_machine
from gcnas.search.callbacks import Callbacks
from gcnas.search.paths import stored_path, trial_folder
from gcnas.space import InfeasibleArchitecture, SearchSpace
from gcnas.train import EpochResult, NonFiniteLossError, fit
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

    # -- the trial ---------------------------------------------------------------------------------------------------
    def __call__(self, study: optuna.Study, trial: optuna.Trial) -> tuple[optuna.trial.TrialState, Optional[list]]:
        """Run ``trial``; returns the state and values to ``tell`` (values None for pruned or failed)."""
        t0 = time.perf_counter()
        record.WORKER.set(trial, self.worker)
        record.MACHINE.set(trial, describe_machine())  # numbers differ between CPUs: say where it ran
        fixed = record.FIXED_ARCHITECTURE.get(trial)
        replicate = int(record.REPLICATE.get(trial, 0))
        role = record.ROLE.get(trial, "searched")
        record.ROLE.set(trial, role)
        tdir = self.trial_dir(trial.number)
        logf = (tdir / "log.txt").open("a")

        def note(msg: str) -> None:
            logf.write(msg + "\n")
            logf.flush()

        try:
            train_kw = dict(self.trainer)
            try:
                if fixed is not None:
                    arch = Architecture.from_yaml(fixed, sites=self.space.sites)
                    if replicate:  # part of the trial key, so replicates are trained, never taken as duplicates
                        train_kw["seed"] = self.seed + replicate
                else:
                    arch = self.space.suggest(trial)
                    train_kw.update(self.space.suggest_training(trial))
            except InfeasibleArchitecture as e:
                return self._infeasible(trial, note, f"search space limits: {e}", t0)

            key = arch.key()
            record.ARCH_KEY.set(trial, key)
            record.ARCHITECTURE.set(trial, arch.to_yaml())
            record.N_BLOCKS.set(trial, len(arch.placements))
            record.TRAIN.set(trial, {k: v for k, v in train_kw.items() if k != "name"})
            (tdir / "architecture.yaml").write_text(arch.to_yaml())
            note(f"trial {trial.number} ({role}) worker {self.worker}: {len(arch.placements)} blocks, key {key}")
            self.callbacks("trial_started", trial.number, role, arch, train_kw)

            train_part = json.dumps({k: v for k, v in sorted(train_kw.items()) if k != "name"}, sort_keys=True,
                                    default=str)
            trial_key = f"{key}-{hashlib.sha256(train_part.encode()).hexdigest()[:8]}"
            record.TRIAL_KEY.set(trial, trial_key)  # set before looking, so concurrent twins see each other
            dup = self._find_duplicate(study, trial_key, trial.number, note)
            if dup is not None:
                for attr in (record.PARAMS, record.FLOPS, record.LATENCY_MS, record.EPOCHS, record.HISTORY,
                             record.CONSTRAINTS, record.INFEASIBLE, record.PRUNED_REASON):
                    if attr.on(dup):
                        attr.set(trial, attr.get(dup))
                record.DUPLICATE_OF.set(trial, dup.number)
                record.WALL_TIME_S.set(trial, time.perf_counter() - t0)
                note(f"same architecture and recipe as trial {dup.number}: its result is reused, nothing trained")
                if dup.state == optuna.trial.TrialState.PRUNED:
                    return optuna.trial.TrialState.PRUNED, None
                return optuna.trial.TrialState.COMPLETE, list(dup.values)

            seed = int(train_kw.get("seed", self.seed))  # a space may search the seed (the paper recipes do)
            torch.manual_seed(seed)
            model = build_model(arch, pretrained=self.weights.pretrained, pretrained_file=self.weights.file)
            cost_obj = measure_cost(model, self.data.input_size, latency=self.needs_latency, repeats=10, warmup=3)
            cost = {"params": cost_obj.params, "flops": cost_obj.flops, "latency_ms": cost_obj.latency_ms}
            for attr in (record.PARAMS, record.FLOPS, record.LATENCY_MS):
                attr.set(trial, cost[attr.name])
            note(f"cost: {cost_obj.params:,} params, {cost_obj.flops / 1e6:.2f} MFLOPs"
                 + (f", {cost_obj.latency_ms:.2f} ms" if cost_obj.latency_ms is not None else ""))

            violations = []
            for limit_key, metric in _CONSTRAINT_KEYS:
                limit = self.constraints.get(limit_key)
                if limit is not None:
                    violations.append((limit_key, float(cost[metric]) - float(limit), cost[metric], limit))
            if any(v > 0 for _, v, _, _ in violations):
                reason = "; ".join(f"{k[len('max_'):]} {value:,.6g} > constraints.{k}={limit:,.6g}"
                                   for k, v, value, limit in violations if v > 0)
                return self._infeasible(trial, note, reason, t0, {k: v for k, v, _, _ in violations})
            self._set_constraints(trial, {k: v for k, v, _, _ in violations})

            if self.scorer is not None:  # one-shot: inherited weights, nothing trained
                accuracy = self.scorer(arch)  # search.supernet_score=gradient: the blocks' gradient, not an accuracy
                kind = getattr(self.scorer, "kind", "accuracy")
                record.SCORE.set(trial, ONESHOT_SCORE)
                record.ONESHOT_SCORE.set(trial, kind)
                record.WALL_TIME_S.set(trial, time.perf_counter() - t0)
                note(f"done: one-shot {kind} (supernet weights) {accuracy:.4g} in {time.perf_counter() - t0:.1f}s")
                return optuna.trial.TrialState.COMPLETE, self._values(accuracy, cost)

            history: list[float] = []
            single = len(self.metrics) == 1

            train_seconds = [0.0]
            frozen = int(train_kw.get("freeze_backbone_epochs") or 0)

            def on_epoch(er: EpochResult) -> None:
                history.append(er.val_acc)
                train_seconds[0] += er.seconds
                note(f"epoch {er.epoch}: train loss {er.train_loss:.4f}, val loss {er.val_loss:.4f}, "
                     f"val acc {er.val_acc:.4f} ({er.seconds:.1f}s)")
                if self.on_epoch is not None:
                    self.on_epoch(trial.number, er)
                self.callbacks("epoch_ended", trial.number, er)
                # The references' extra seeds measure the noise; as the pruner's evidence they would count the
                # references three times over and set its median at theirs, pruning nearly every searched trial.
                if single and not replicate:
                    trial.report(er.val_acc, er.epoch)
                    # the enqueued references always train in full: every delta and the noise floor are read from them.
                    # While the backbone is frozen (trainer=finetune) an epoch shows how the blocks start, not how they
                    # train (scale fusion starts at x/2): no pruning before the backbone has trained an epoch.
                    if fixed is None and er.epoch > frozen and trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {er.epoch} (val acc {er.val_acc:.4f})")

            try:
                try:
                    result = fit(model, self.data, train_kw, seed=seed, device=self.device, on_epoch=on_epoch,
                                 test=False)
                except optuna.TrialPruned as e:
                    record.WALL_TIME_S.set(trial, time.perf_counter() - t0)
                    note(str(e))
                    return optuna.trial.TrialState.PRUNED, None
                except NonFiniteLossError as e:  # this architecture/recipe diverged: end it with the reason, go on
                    record.PRUNED_REASON.set(trial, str(e))
                    record.WALL_TIME_S.set(trial, time.perf_counter() - t0)
                    note(f"stopped: {e}")
                    state = optuna.trial.TrialState.PRUNED if single else optuna.trial.TrialState.FAIL
                    if not single:
                        record.ERROR.set(trial, str(e))
                    return state, None
            finally:
                # once per trial, however it ended (each write is a storage transaction; the intermediate values
                # that pruning reads are reported every epoch)
                if history:
                    record.HISTORY.set(trial, history)
                    record.TRAIN_SECONDS.set(trial, train_seconds[0])
                    record.EPOCHS.set(trial, len(history))
            accuracy = result.final_val_acc
            if self.keep_weights > 0:
                # Saved now, while the model exists; the worker deletes the files of trials that leave the top.
                save_model(model, str(tdir / WEIGHTS_FILE), metadata={"arch_key": key})
                record.WEIGHTS.set(trial, stored_path(self.study_dir, tdir / WEIGHTS_FILE))  # folder can move
            record.WALL_TIME_S.set(trial, time.perf_counter() - t0)
            note(f"done: val acc {accuracy:.4f} in {time.perf_counter() - t0:.1f}s")
            return optuna.trial.TrialState.COMPLETE, self._values(accuracy, cost)
        finally:
            logf.close()

    @staticmethod
    def _set_constraints(trial, values: Mapping[str, float]) -> None:
        """Optuna's constraint values (<= 0 feasible), read by its constrained samplers; also kept as a user attr."""
        values = {"space_limits": 0.0, **values} if not values else dict(values)
        for k, v in values.items():
            trial.set_constraint(k, float(v))
        record.CONSTRAINTS.set(trial, [float(v) for v in values.values()])

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
