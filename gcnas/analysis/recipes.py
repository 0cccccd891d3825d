"""Results of an ablation recipe (``search_spaces/paper_*.yaml`` run as a grid with ``training.seed``): one row per
grid point, mean ± std over the seeds."""
from __future__ import annotations

import statistics
from typing import Optional

import optuna
from optuna.trial import TrialState

from gcnas.search import record

__all__ = ["recipe_rows", "recipe_table"]

_SEED = "train.seed"


def _label(params: dict) -> str:
    parts = []
    for k, v in sorted(params.items()):
        short = k.split(".", 1)[1] if k.startswith(("design.", "train.")) else k
        parts.append(f"{short}={v}")
    return ", ".join(parts) or "(fixed)"


def recipe_rows(study: optuna.Study) -> list[dict]:
    """Per grid point (the trial's parameters but the seed): label, seeds, mean/std accuracy, params, FLOPs."""
    groups: dict[tuple, list] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if record.INFEASIBLE.on(t) or not t.values:
            continue
        key = tuple(sorted((k, str(v)) for k, v in t.params.items() if k != _SEED))
        groups.setdefault(key, []).append(t)
    rows = []
    for key, ts in groups.items():
        accs = [t.values[0] for t in ts]
        rows.append({"label": _label(dict(key)), "seeds": sorted(t.params.get(_SEED, 0) for t in ts),
                     "mean": statistics.mean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     "params": record.PARAMS.get(ts[0]), "flops": record.FLOPS.get(ts[0]),
                     "n_blocks": record.N_BLOCKS.get(ts[0]),
                     "minutes": sum(record.WALL_TIME_S.get(t, 0.0) for t in ts) / 60})
    return rows


def recipe_table(study: optuna.Study, reference: Optional[str] = None) -> str:
    """Markdown, in the grid's order of first appearance; ``reference`` (a label) gets the delta column."""
    rows = recipe_rows(study)
    if not rows:
        return "(no complete trial)"
    ref = next((r for r in rows if r["label"] == reference), None)
    head = ["grid point", "seeds", "val acc % (mean ± std)", *(["vs " + reference] if ref else []), "blocks",
            "params", "MFLOPs"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|" + "---:|" * (len(head) - 3)]
    for r in rows:
        cells = [r["label"], str(len(r["seeds"])), f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"]
        if ref:
            cells.append(f"{100 * (r['mean'] - ref['mean']):+.2f} pp")
        cells += [str(r["n_blocks"]), f"{(r['params'] or 0) / 1e6:.3f}M", f"{(r['flops'] or 0) / 1e6:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
