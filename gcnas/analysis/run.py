"""``gcnas-analyze``: the paper's NL statistics before and after training, the attention figure, and NL vs SNL vs GC vs
SE vs no block trained side by side over several seeds."""
from __future__ import annotations

import csv
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from gcnas.backbones import BackboneWeights
from gcnas.backbones.weights import check_weights
from gcnas.analysis.heatmaps import attention_figure
from gcnas.analysis.nl_stats import NLStats, nl_statistics
from gcnas.arch import Architecture, build_model, load_model
from gcnas.errors import ConfigError
from gcnas.train.one import ArchitectureRun, load_data_for

__all__ = ["DESIGNS", "AnalysisResult", "run_analysis", "design_architecture"]

log = logging.getLogger("gcnas.analysis")

# The members of the global context framework the paper compares (Sec. 3-4), as block specs.
DESIGNS: dict[str, Optional[dict]] = {
    "nl": {"kind": "nl", "ratio": 0.5, "mode": "embedded_gaussian"},  # Non-local, embedded Gaussian
    "snl": {"preset": "snl"},  # simplified NL: query-independent attention pooling, one 1x1 transform, add
    "gc": {"preset": "gc"},  # global context: attention pooling, bottleneck r16 + LayerNorm + ReLU, add
    "se": {"preset": "se"},  # squeeze-excitation: average pooling, FC-ReLU-FC r16, scale
    "none": None,  # the plain backbone
}


@dataclass
class AnalysisResult:
    dir: Path
    stats: list = field(default_factory=list)  # dicts: seed, block, state (init|trained), positions, input, ...
    runs: list = field(default_factory=list)  # dicts: design, seed, val_acc, test_acc, params, flops, latency_ms
    stats_table: str = ""
    comparison_table: str = ""
    figure: Optional[Path] = None
    seconds: float = 0.0


def design_architecture(design: str, backbone: str, kwargs: Mapping[str, Any], placement: Mapping[str, Any]):
    if design not in DESIGNS:
        raise ConfigError(f"designs: {design!r} is not a design; valid designs are {', '.join(DESIGNS)}")
    spec = DESIGNS[design]
    placements = [] if spec is None else [{**dict(placement), "spec": spec}]
    return Architecture.from_dict({"backbone": backbone, "backbone_kwargs": dict(kwargs), "placements": placements})


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    vals = [v * scale for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def stats_table(stats: list[dict]) -> str:
    lines = ["| NL block | positions | state | input | output (context) | attention | seeds |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for block in dict.fromkeys(s["block"] for s in stats):
        for state in ("init", "trained"):
            rows = [s for s in stats if s["block"] == block and s["state"] == state]
            if not rows:
                continue
            lines.append(f"| {block} | {rows[0]['positions']} | {state} | {_mean_std([r['input'] for r in rows])} | "
                         f"{_mean_std([r['output'] for r in rows])} | {_mean_std([r['attention'] for r in rows])} | "
                         f"{len(rows)} |")
    return "\n".join(lines)


def comparison_table(runs: list[dict]) -> str:
    has_test = all(r["test_acc"] is not None for r in runs)
    head = ["design", "seeds", "val acc %", *(["test acc %"] if has_test else []), "params", "MFLOPs",
            "latency ms", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for d in dict.fromkeys(r["design"] for r in runs):
        rs = [r for r in runs if r["design"] == d]
        cells = [d, str(len(rs)), _mean_std([r["val_acc"] for r in rs], 100, 2)]
        if has_test:
            cells.append(_mean_std([r["test_acc"] for r in rs], 100, 2))
        cells += [f"{rs[0]['params'] / 1e6:.3f}M", f"{rs[0]['flops'] / 1e6:.2f}",
                  _mean_std([r["latency_ms"] for r in rs], 1, 2), f"{statistics.mean(r['seconds'] for r in rs):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _display(data, x: torch.Tensor):
    import numpy as np

    mean = torch.tensor(data.mean or [0.0] * x.shape[1])[None, :, None, None]
    std = torch.tensor(data.std or [1.0] * x.shape[1])[None, :, None, None]
    img = (x * std + mean).clamp(0, 1).numpy()
    return img[:, 0] if img.shape[1] == 1 else np.transpose(img, (0, 2, 3, 1))


@dataclass
class _Sample:
    """What the statistics and the figures read: validation images, and the ones drawn in the figure."""
    images: torch.Tensor  # analysis.samples validation images, the statistics' input
    figure: torch.Tensor  # analysis.figure_images of them, the figure's input
    shown: Any  # the figure's images as displayed (normalisation undone)
    queries: int  # query positions per figure image
    out: Path


def run_analysis(cfg: Mapping[str, Any]) -> AnalysisResult:
    """Run with a resolved ``analyze`` config (see ``conf/analyze.yaml``)."""
    t_start = time.perf_counter()
    out = Path(cfg["analysis"]["dir"])
    out.mkdir(parents=True, exist_ok=True)
    designs, seeds, samples = _read_settings(cfg)
    bb = cfg.get("backbone") or {}
    data = load_data_for(cfg["data"], bb.get("name"), bb.get("kwargs"))
    images = data.val.head(samples)[0]
    queries = int(cfg["analysis"].get("queries", 4))
    fig_images = data.val.head(int(cfg["analysis"].get("figure_images", 3)))[0]
    sample = _Sample(images, fig_images, _display(data, fig_images), queries, out)
    result = AnalysisResult(out)
    if cfg.get("model"):  # an exported model: its statistics against the same architecture at initialisation
        _analyse_exported(cfg["model"], seeds, sample, result)
    else:
        _compare_designs(cfg, data, designs, seeds, sample, result)
    _write_results(result, out)
    result.seconds = time.perf_counter() - t_start
    return result


def _read_settings(cfg: Mapping[str, Any]) -> tuple[list[str], list[int], int]:
    """``designs``, ``seeds`` and ``analysis.samples``, checked."""
    designs = list(cfg.get("designs") or [])
    seeds = list(cfg.get("seeds") or [])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"seeds: must be a non-empty list of integers; got {cfg.get('seeds')!r}")
    for d in designs:
        if d not in DESIGNS:
            raise ConfigError(f"designs: {d!r} is not a design; valid designs are {', '.join(DESIGNS)}")
    samples = cfg["analysis"].get("samples", 512)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ConfigError(f"analysis.samples: must be an integer >= 2; got {samples!r}")
    return designs, seeds, samples


def _nl_rows(model: torch.nn.Module, images: torch.Tensor, seed: int, state: str) -> list[dict]:
    """The NL statistics of every NL block of ``model``, as rows of ``nl_statistics.csv``."""
    return [{"seed": seed, "state": state, "block": s.name, **_stat_values(s)} for s in nl_statistics(model, images)]


def _analyse_exported(folder: Any, seeds: list[int], sample: _Sample, result: AnalysisResult) -> None:
    """An exported model's NL statistics (once) beside its architecture's at initialisation (each seed), and the
    attention figure of the trained model."""
    model = load_model(folder)
    arch = Architecture.from_yaml(Path(folder) / "architecture.yaml")
    for seed in seeds:
        torch.manual_seed(seed)
        for state, m in (("init", build_model(arch)), ("trained", model)):
            if state == "trained" and seed != seeds[0]:
                continue
            result.stats += _nl_rows(m, sample.images, seed, state)
    result.figure = attention_figure(model, sample.figure, sample.shown, sample.out / "attention.png",
                                     k=sample.queries)


def _compare_designs(cfg: Mapping[str, Any], data, designs: list[str], seeds: list[int], sample: _Sample,
                     result: AnalysisResult) -> None:
    """Every design trained with every seed (seed-major), on the backbone's starting weights."""
    bb = cfg["backbone"]
    kwargs = {**(bb.get("kwargs") or {}), "in_chans": data.in_chans, "num_classes": data.num_classes}
    weights = BackboneWeights.from_config(bb)
    check_weights(bb["name"], weights, **kwargs)  # before any training
    tr = dict(cfg["trainer"])
    for seed in seeds:
        for design in designs:
            arch = design_architecture(design, bb["name"], kwargs, cfg["placement"])
            _train_design(design, arch, seed, seed == seeds[0], data, tr, weights, sample, result)


def _train_design(design: str, arch: Architecture, seed: int, first_seed: bool, data, trainer: Mapping[str, Any],
                  weights: BackboneWeights, sample: _Sample, result: AnalysisResult) -> None:
    """One design with one seed: seed, build, cost, train (:class:`~gcnas.train.one.ArchitectureRun`) and its row;
    for NL, its statistics before and after training, and with the first seed the attention figures."""
    run = ArchitectureRun.build(arch, data.input_size, seed=seed, weights=weights, latency=True)
    if design == "nl":
        result.stats += _nl_rows(run.model, sample.images, seed, "init")
    res = run.train(data, trainer)
    result.runs.append({**run.row(design=design), "latency_ms": run.cost.latency_ms, "seconds": run.seconds})
    log.info("%s seed %d: val acc %.4f%s (%.0fs)", design, seed, res.final_val_acc,
             "" if res.test_acc is None else f", test acc {res.test_acc:.4f}", run.seconds)
    if design != "nl":
        return
    result.stats += _nl_rows(run.model, sample.images, seed, "trained")
    if first_seed:
        result.figure = attention_figure(
            run.model, sample.figure, sample.shown, sample.out / "attention.png", k=sample.queries,
            title=f"NL attention maps of four query positions after training (seed {seed})")
        attention_figure(build_model(arch), sample.figure, sample.shown, sample.out / "attention_init.png",
                         k=sample.queries, title="the same NL blocks at initialisation")


def _write_results(result: AnalysisResult, out: Path) -> None:
    """The tables, ``nl_statistics.csv``, ``comparison.csv`` and ``analysis.md``."""
    result.stats_table = stats_table(result.stats) if result.stats else ""
    result.comparison_table = comparison_table(result.runs) if result.runs else ""
    _write_csv(out / "nl_statistics.csv", result.stats)
    _write_csv(out / "comparison.csv", result.runs)
    md = []
    if result.stats_table:
        md += ["## NL statistics: mean cosine distance between query positions (mean ± std over seeds)", "",
               result.stats_table, ""]
    if result.comparison_table:
        md += ["## NL vs SNL vs GC vs SE vs none", "", result.comparison_table, ""]
    (out / "analysis.md").write_text("\n".join(md))


def _stat_values(s: NLStats) -> dict:
    d = asdict(s)
    d.pop("name")
    return d
