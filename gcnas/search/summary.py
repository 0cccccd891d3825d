"""Tables of a study's results: top trials with baseline deltas, the Pareto front for multi-objective studies."""
from __future__ import annotations

from typing import Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["finished_trials", "ranked_trials", "baseline_trial", "results_table"]


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _feasible(t: FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs


def baseline_trial(study: optuna.Study) -> Optional[FrozenTrial]:
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("role") == "baseline":
            return t
    return None


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible complete trials, best first (first objective), duplicates left out."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if _feasible(t) and "duplicate_of" not in t.user_attrs]
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(trials, key=lambda t: (sign * t.values[0], t.number))


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    feasible = {t.number for t in ranked_trials(study)}
    return sorted((t for t in study.best_trials if t.number in feasible), key=lambda t: -t.values[0])


def _fusion_name(fusion) -> str:
    return "+".join(fusion) if isinstance(fusion, list) else str(fusion)


def _fmt_blocks(t: FrozenTrial) -> str:
    import yaml

    arch = yaml.safe_load(t.user_attrs.get("architecture", "placements: []")) or {}
    placements = arch.get("placements") or []
    if not placements:
        return "plain backbone"
    specs = {(p["spec"].get("kind"), p["spec"].get("context"), p["spec"].get("transform"), p["spec"].get("ratio"),
              _fusion_name(p["spec"].get("fusion"))) for p in placements}
    positions = sorted({p["position"] for p in placements})
    stages = sorted({p["stage"] for p in placements})
    if len(specs) == 1:
        kind, ctx, tr, ratio, fusion = next(iter(specs))
        design = "nl" if kind == "nl" else f"{ctx}/{tr}{'' if ratio is None else f' r{ratio:g}'}/{fusion}"
    else:
        design = f"{len(specs)} designs"
    return f"{len(placements)}x {design} @ {','.join(positions)} s{','.join(map(str, stages))}"


def results_table(study: optuna.Study, metrics: Sequence[str], top_k: int = 5, trial_dir: Optional[str] = None) -> str:
    """A Markdown table of the top trials (or the Pareto front) with deltas against the plain backbone."""
    base = baseline_trial(study)
    multi = len(metrics) > 1
    rows = pareto_trials(study) if multi else ranked_trials(study)[:top_k]
    head = ["trial", "role", "val acc", "vs plain", "params", "MFLOPs", "latency ms", "epochs", "blocks"]
    if not rows:
        return "(no feasible complete trial yet)"
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i in (2, 3, 4, 5, 6, 7) else "---"
                                                        for i in range(len(head))) + "|"]
    for t in rows:
        acc = t.values[0]
        delta = "" if base is None else f"{100 * (acc - base.values[0]):+.2f} pp"
        lat = t.user_attrs.get("latency_ms")
        lines.append("| " + " | ".join([
            str(t.number), t.user_attrs.get("role", ""), f"{acc:.4f}", delta,
            f"{t.user_attrs.get('params', 0) / 1e6:.3f}M", f"{t.user_attrs.get('flops', 0) / 1e6:.1f}",
            "-" if lat is None else f"{lat:.2f}", str(t.user_attrs.get("epochs", "")), _fmt_blocks(t)]) + " |")
    return "\n".join(lines)
