"""Tables of a study's results: top trials with baseline deltas next to the study's noise floor, the Pareto front for
multi-objective studies."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from gcnas.arch import Architecture
from gcnas.blocks.fusion import fusion_spelling
from gcnas.search import record

__all__ = ["finished_trials", "counted_trials", "ranked_trials", "baseline_trial", "results_table", "describe_blocks",
           "describe_architecture", "NoiseFloor", "noise_floor"]

REFERENCE_ROLES = ("baseline", "paper_gc")


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The finished trials that count against ``study.n_trials``: every complete or pruned trial but the infeasible
    draws (pruned before any training: they cost nothing and measure nothing)."""
    return [t for t in finished_trials(study) if not record.INFEASIBLE.on(t)]


def _feasible(t: FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and not record.INFEASIBLE.on(t)


def baseline_trial(study: optuna.Study) -> Optional[FrozenTrial]:
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if record.ROLE.get(t) == "baseline":
            return t
    return None


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible complete trials, best first (first objective); duplicates and the references' extra seeds (they
    measure the noise floor, see :func:`noise_floor`) left out."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if _feasible(t) and not record.DUPLICATE_OF.on(t) and not record.REPLICATE.get(t)]
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(trials, key=lambda t: (sign * t.values[0], t.number))


@dataclass(frozen=True)
class NoiseFloor:
    """A study's seed-to-seed noise, from its references (plain backbone, paper's GC) trained with several seeds.

    ``std`` is the pooled standard deviation of one training run's accuracy across seeds (each reference's sample
    variance, weighted by its degrees of freedom). A trial is one run, compared with the mean of the baseline's
    ``n`` runs, so its difference has standard deviation ``std * sqrt(1 + 1/n)``; :attr:`band` is twice that (about
    95% of differences between equally good architectures fall inside it).
    """

    std: float
    values: dict  # role -> accuracies, one per seed

    @property
    def seeds(self) -> int:
        return max(len(v) for v in self.values.values())

    @property
    def baseline(self) -> tuple[float, ...]:
        return tuple(self.values.get("baseline", ()))

    @property
    def baseline_mean(self) -> Optional[float]:
        return statistics.fmean(self.baseline) if self.baseline else None

    @property
    def band(self) -> float:
        return 2 * self.std * math.sqrt(1 + 1 / max(1, len(self.baseline)))

    def beyond(self, delta: float) -> bool:
        """Whether a difference to the baseline's mean lies outside the noise band."""
        return abs(delta) > self.band

    def describe(self) -> str:
        names = {"baseline": "plain", "paper_gc": "paper GC"}
        parts = [f"{names[role]} {100 * statistics.fmean(v):.2f}" + (f" ± {100 * statistics.stdev(v):.2f}"
                                                                      if len(v) > 1 else "")
                 for role, v in self.values.items()]
        return (f"noise floor: {100 * self.std:.2f} pp seed-to-seed std (val acc %: {'; '.join(parts)}; "
                f"{self.seeds} seeds); a trial's difference to the plain mean is beyond the noise outside "
                f"±{100 * self.band:.2f} pp")


def noise_floor(study: optuna.Study) -> Optional[NoiseFloor]:
    """The study's :class:`NoiseFloor`; None until some reference has finished with two or more seeds."""
    values: dict[str, list[float]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        role = record.ROLE.get(t)
        if role in REFERENCE_ROLES and _feasible(t) and not record.DUPLICATE_OF.on(t):
            values.setdefault(role, []).append(t.values[0])
    dof = sum(len(v) - 1 for v in values.values())
    if dof < 1:
        return None
    pooled = sum((len(v) - 1) * statistics.variance(v) for v in values.values() if len(v) > 1) / dof
    return NoiseFloor(math.sqrt(pooled), {r: tuple(values[r]) for r in REFERENCE_ROLES if r in values})


def oneshot_values(holder: Any) -> Optional[str]:
    """The one-shot score a study's (or a trial's) values are, when they are not accuracies (``search.supernet_score``:
    ``gradient`` or ``gradient_and_loss``); ``None`` for accuracies."""
    kind = record.ONESHOT_SCORE.get(holder, "accuracy")
    return None if kind == "accuracy" else kind


def value_label(holder: Any) -> str:
    """What a study's first value is called in tables and plots: ``val acc``, or ``one-shot <score>``."""
    kind = oneshot_values(holder)
    return "val acc" if kind is None else f"one-shot {kind}"


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    feasible = {t.number for t in ranked_trials(study)}
    return sorted((t for t in study.best_trials if t.number in feasible), key=lambda t: -t.values[0])


def describe_architecture(arch: Architecture) -> str:
    """One line for an architecture's blocks: how many, which design(s), at which positions and stages."""
    if not arch.placements:
        return "plain backbone"
    specs = {p.spec for p in arch.placements}
    positions = sorted({p.position for p in arch.placements})
    stages = sorted({p.stage for p in arch.placements})
    if len(specs) == 1:
        spec = next(iter(specs))
        design = "nl" if spec.kind == "nl" else (f"{spec.context}/{spec.transform}"
                                                  f"{'' if spec.ratio is None else f' r{spec.ratio:g}'}/"
                                                  f"{fusion_spelling(spec.fusion)}")
    else:
        design = f"{len(specs)} designs"
    return f"{len(arch.placements)}x {design} @ {','.join(positions)} s{','.join(map(str, stages))}"


def describe_blocks(t: FrozenTrial, study: Any = None) -> str:
    """:func:`describe_architecture` of a trial's recorded architecture; ``study`` is its study, or the mapping of its
    user attributes, where the architecture lives (None reads only a trial that keeps its own, as older gcnas wrote)."""
    text = record.architecture_of({} if study is None else study, t)
    return "no architecture recorded" if text is None else describe_architecture(Architecture.from_yaml(text))


def results_table(study: optuna.Study, metrics: Sequence[str], top_k: int = 5, trial_dir: Optional[str] = None) -> str:
    """A Markdown table of the top trials (or the Pareto front) with deltas against the plain backbone: against the
    mean of its seeds and marked against the noise floor once the study knows it, otherwise against its one run."""
    base = baseline_trial(study)
    noise = noise_floor(study)
    reference = noise.baseline_mean if noise is not None and noise.baseline else (
        None if base is None else base.values[0])
    multi = len(metrics) > 1
    rows = pareto_trials(study) if multi else ranked_trials(study)[:top_k]
    scored = oneshot_values(study) is not None
    if scored:
        reference = None  # a one-shot score's difference to the plain backbone's is no accuracy gain
    head = ["trial", "role", value_label(study), "vs plain", "beyond noise", "params",
            "MFLOPs", "latency ms", "epochs", "blocks"]
    if not rows:
        return "(no feasible complete trial yet)"
    attrs = study.user_attrs  # read once: the rows' architectures live there
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i in (2, 3, 5, 6, 7, 8) else "---"
                                                        for i in range(len(head))) + "|"]
    for t in rows:
        acc = t.values[0]
        delta = "" if reference is None else f"{100 * (acc - reference):+.2f} pp"
        beyond = "-" if noise is None or reference is None else ("yes" if noise.beyond(acc - reference) else "no")
        lat = record.LATENCY_MS.get(t)
        lines.append("| " + " | ".join([
            str(t.number), record.ROLE.get(t, ""), f"{acc:.4g}" if scored else f"{acc:.4f}", delta, beyond,
            f"{record.PARAMS.get(t, 0) / 1e6:.3f}M", f"{record.FLOPS.get(t, 0) / 1e6:.1f}",
            "-" if lat is None else f"{lat:.2f}", str(record.EPOCHS.get(t, "")), describe_blocks(t, attrs)]) + " |")
    if noise is not None:
        lines += ["", noise.describe() + "."]
    return "\n".join(lines)
