"""A study's report: Optuna's plots, where the blocks of the top trials sit, and a Markdown summary.

Pictures (PNG, matplotlib): optimisation history, parameter importances, intermediate values (single objective) or the
Pareto front (multi-objective), and a stage x position heatmap counting the blocks of the top trials. HTML versions of
Optuna's plots are written too where plotly is installed. ``summary.md`` holds the top-k architectures with their cost
and their delta to the plain backbone, and links the pictures.
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import optuna

from gcnas.arch import Architecture
from gcnas.backbones import GENERIC_POSITIONS, POSITIONS
from gcnas.errors import ConfigError
from gcnas.search.confirm import confirmation, confirmation_table
from gcnas.search import record
from gcnas.search.summary import (baseline_trial, finished_trials, pareto_trials, ranked_trials, results_table,
                                  value_label)

__all__ = ["Report", "write_report", "placement_counts"]

log = logging.getLogger("gcnas.report")


@dataclass
class Report:
    dir: Path
    summary: Path
    pictures: list = field(default_factory=list)
    html: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # plot name -> why it was not drawn


def placement_counts(trials, study=None) -> tuple[list, list, dict]:
    """(stages, positions, {(stage, position): number of blocks}) over the architectures of ``trials``, read from
    ``study`` (theirs; None reads only trials that keep their own, as older gcnas wrote them)."""
    counts: Counter = Counter()
    attrs = {} if study is None else study.user_attrs  # read once: the architectures live there
    for t in trials:
        text = record.architecture_of(attrs, t)
        for p in Architecture.from_yaml(text).placements if text else ():
            counts[(p.stage, p.position)] += 1
    stages = sorted({s for s, _ in counts})
    order = POSITIONS + GENERIC_POSITIONS  # inside a block, in forward order; then the generic ones
    positions = sorted({p for _, p in counts}, key=lambda p: (order.index(p) if p in order else len(order), p))
    return stages, positions, dict(counts)


def _heatmap(study, trials, path: Path, title: str) -> bool:
    import matplotlib.pyplot as plt
    import numpy as np

    stages, positions, counts = placement_counts(trials, study)
    if not counts:
        return False
    grid = np.array([[counts.get((s, p), 0) for s in stages] for p in positions], dtype=float)
    with plt.style.context("default"):  # Optuna's plots switch the global style to ggplot (grid lines over cells)
        return _draw_heatmap(plt, grid, stages, positions, path, title, len(trials))


def _draw_heatmap(plt, grid, stages, positions, path: Path, title: str, n_trials: int) -> bool:
    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * len(stages), 1.6 + 0.6 * len(positions)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(len(stages)), [f"stage {s}" for s in stages])
    ax.set_yticks(range(len(positions)), positions)
    for i in range(len(positions)):
        for j in range(len(stages)):
            ax.text(j, i, f"{int(grid[i, j])}", ha="center", va="center",
                    color="white" if grid[i, j] < grid.max() / 2 else "black")
    ax.set_title(title, fontsize=10)
    ax.grid(False)
    bar = fig.colorbar(im, ax=ax, label=f"blocks in {n_trials} trials")
    bar.ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(study: optuna.Study, out_dir: str | Path, top_k: int = 5, html: Optional[bool] = None,
                 storage: Any = None) -> Report:
    """Write the report of ``study`` into ``out_dir`` (created); returns what was written. With ``storage`` (the
    study's storage URL or object) the summary also has the study's confirmation, when it was confirmed. A folder
    that cannot be written is a :class:`~gcnas.errors.ConfigError` naming ``report.dir``, raised before any plot is
    drawn."""
    import matplotlib

    matplotlib.use("Agg", force=False)

    out = Path(out_dir)
    _check_writable(out)
    multi = len(study.directions) > 1
    metrics = record.METRICS.get(study) or (["accuracy"] if not multi else [f"v{i}" for i in
                                                                                 range(len(study.directions))])
    report = Report(out, out / "summary.md")
    target = (lambda t: t.values[0]) if multi else None
    name0 = value_label(study)
    plots = _plot_names(multi)
    _draw_pictures(study, report, plots, metrics, target, name0)
    _draw_placements(study, report, top_k, multi)
    if html if html is not None else _has_plotly():
        _write_html(study, report, plots, target, name0)
    _summary(study, report, metrics, top_k, multi, None if storage is None else confirmation(study, storage))
    return report


def _check_writable(out: Path) -> None:
    """Create ``out`` and prove it writable: a failed savefig is only a skipped picture, and the summary comes last."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ConfigError(f"report.dir: cannot write to {out} ({e.strerror or e}); choose a writable folder, e.g. "
                          f"report.dir=$PWD/report") from None


def _plot_names(multi: bool) -> list[str]:
    """Optuna's plots the report draws, by the name after ``plot_``."""
    return ["optimization_history", "param_importances", "pareto_front" if multi else "intermediate_values"]


# Parameter importances are a fit (fANOVA's forest) over the complete trials: with fewer, or with one value for all,
# Optuna still draws bars (equal ones, or none), which read as a finding. The report leaves the plot out and says why.
MIN_IMPORTANCE_TRIALS = 5


def importance_unfit(study, target=None) -> Optional[str]:
    """Why parameter importances would say nothing about ``study`` (None where they can): fewer than
    :data:`MIN_IMPORTANCE_TRIALS` complete trials, one value for all of them, or no parameter that varies."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return (f"{len(done)} complete trial{'s' if len(done) != 1 else ''}; importances need at least "
                f"{MIN_IMPORTANCE_TRIALS}")
    values = {target(t) if target else t.value for t in done}
    if len(values) == 1:
        return f"every complete trial has the same value ({values.pop():g}): nothing to attribute"
    names = {n for t in done for n in t.params}
    if not any(len({repr(t.params.get(n)) for t in done}) > 1 for n in names):
        return "no parameter takes more than one value among the complete trials"
    return None


def _draw_pictures(study, report: Report, plots: list[str], metrics, target, name0: str) -> None:
    """Optuna's matplotlib plots as ``<name>.png``; a plot Optuna cannot draw, or one that would say nothing (see
    :func:`importance_unfit`), is named in ``report.skipped`` with the reason."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    makers = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, target=target, target_name=name0),
        "param_importances": lambda: ovm.plot_param_importances(study, target=target, target_name=name0),
        "pareto_front": lambda: ovm.plot_pareto_front(study, target_names=list(metrics)),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
    }
    for name in _drawable(study, report, plots, target):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = makers[name]()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            path = report.dir / f"{name}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            report.pictures.append(path)
        except Exception as e:  # e.g. importances need two complete trials with varying parameters
            report.skipped[name] = f"{type(e).__name__}: {e}"


def _drawable(study, report: Report, plots: list[str], target, suffix: str = "") -> list[str]:
    """``plots`` less the importances where they would say nothing (the reason goes to ``report.skipped``)."""
    why = importance_unfit(study, target) if "param_importances" in plots else None
    if why:
        report.skipped[f"param_importances{suffix}"] = why
    return [n for n in plots if not (why and n == "param_importances")]


def _draw_placements(study, report: Report, top_k: int, multi: bool) -> None:
    """``placements.png``: where the blocks of the top searched trials sit."""
    top = pareto_trials(study) if multi else ranked_trials(study)[:top_k]
    searched = [t for t in top if record.ROLE.get(t) != "baseline"]
    path = report.dir / "placements.png"
    if _heatmap(study, searched, path, f"Blocks per stage and position, top {len(searched)} trials with blocks"):
        report.pictures.append(path)
    else:
        report.skipped["placements"] = "no top trial has blocks"


def _write_html(study, report: Report, plots: list[str], target, name0: str) -> None:
    """Optuna's plotly plots as ``<name>.html``."""
    from optuna import visualization as ov

    for name in _drawable(study, report, plots, target, suffix=".html"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn = getattr(ov, f"plot_{name}")
                kw = {} if name in ("intermediate_values", "pareto_front") else {"target": target,
                                                                                  "target_name": name0}
                fig = fn(study, **kw)
            path = report.dir / f"{name}.html"
            fig.write_html(str(path))
            report.html.append(path)
        except Exception as e:
            report.skipped[f"{name}.html"] = f"{type(e).__name__}: {e}"


def _has_plotly() -> bool:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


def _summary(study, report: Report, metrics, top_k: int, multi: bool, confirmed=None) -> None:
    base = baseline_trial(study)
    finished = finished_trials(study)
    # an infeasible draw is pruned before any training: counted apart from the trials the pruner stopped
    states = Counter("infeasible" if record.INFEASIBLE.on(t) else t.state.name.lower() for t in finished)
    lines = [f"# Study `{study.study_name}`", ""]
    lines.append(f"Search space `{record.SEARCH_SPACE.get(study, '?')}`, backbone `{record.BACKBONE.get(study, '?')}`, "
                 f"data `{record.DATA.get(study, '?')}`, objective {' + '.join(metrics)}; {len(finished)} finished "
                 "trials (" + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ").")
    attrs = study.user_attrs  # read once for all trials
    machines = Counter(record.machine_of(attrs, t) for t in finished if record.MACHINE.on(t))
    if machines:  # numbers differ between CPUs; a study run on several machines mixes them
        lines.append("Measured on: " + "; ".join(f"{m} ({n} trials)" for m, n in machines.most_common()) + ".")
    if base is not None:
        lines.append(f"Plain backbone (trial {base.number}): val acc {base.values[0]:.4f}, "
                     f"{record.PARAMS.get(base, 0) / 1e6:.3f}M params, "
                     f"{record.FLOPS.get(base, 0) / 1e6:.1f} MFLOPs.")
    lines += ["", "## Pareto front" if multi else f"## Top {top_k} trials", "",
              results_table(study, metrics, top_k), ""]
    if any("train.seed" in t.params for t in finished):  # a recipe run over seeds: one row per grid point
        from gcnas.analysis.recipes import recipe_table

        lines += ["## Grid points over seeds (mean ± std)", "", recipe_table(study), ""]
    if confirmed:
        info = record.CONFIRMATION.get(study) or {}
        lines += [f"## Confirmation (study `{info.get('study', '?')}`: {info.get('seeds', '?')} fresh seeds from "
                  f"{info.get('first_seed', '?')}, paired with the plain backbone)", "", confirmation_table(confirmed),
                  ""]
    ranked = pareto_trials(study) if multi else ranked_trials(study)
    if ranked:
        best = ranked[0]
        lines += [f"## Best architecture (trial {best.number})", "", "```yaml",
                  (record.architecture_of(study, best) or "").rstrip(), "```", ""]
    if report.pictures:
        lines += ["## Pictures", ""] + [f"![{p.stem}]({p.name})" for p in report.pictures] + [""]
    if report.skipped:
        lines += ["## Not drawn", ""] + [f"- {k}: {v}" for k, v in report.skipped.items()] + [""]
    report.summary.write_text("\n".join(lines))
