"""Export a trial of a study as a folder anyone can rebuild, retrain and ship without gcnas's search machinery.

The folder holds ``architecture.yaml`` (rebuild with ``gcnas.build_model``), ``model.safetensors`` (the trial's kept
weights, else weights retrained at the trial's proxy fidelity), ``config.json`` (timm's config for hub models: the
backbone, classes and the ``pretrained_cfg`` with the preprocessing the study validated with), ``model.onnx`` (checked
against torch with onnxruntime), ``model.pt2`` (a ``torch.export`` program with ``config.json`` inside: inference with
torch alone, to compile with ``torch.compile`` or AOTInductor; checked as loaded back) and ``MODEL_CARD.md`` (metrics,
baseline delta, cost, inputs, search space, study, how to load). ``gcnas.load_model(folder)`` reads it back with
torch + timm + gcnas alone and sets ``model.pretrained_cfg``, so ``timm.data.resolve_data_config(model=model)`` +
``create_transform`` feed the model as its study did.

Kept weights are found under the study's folder ``<paths.root>/<study>`` where it lies now
(:func:`gcnas.search.paths.resolve_stored`), so a moved study exports its kept weights instead of retraining.

The folder is written under a temporary name and renamed into place when complete, so a failed export (a full disk, an
ONNX mismatch) never leaves a folder that looks valid; an existing export is replaced only with ``overwrite=True``.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from gcnas.arch import Architecture, build_model, load_weights
from gcnas.backbones import BackboneWeights
from gcnas.errors import ConfigError
from gcnas.search.objective import WEIGHTS_FILE
from gcnas.search.paths import resolve_stored, study_folder
from gcnas.search.study import open_study, storage_file
from gcnas.search.confirm import Confirmed, confirmation, confirmation_table
from gcnas.search.summary import baseline_trial, noise_floor, pareto_trials, ranked_trials
from gcnas.search import record

__all__ = ["export_trial", "ExportResult", "choose_trial", "PICK_BOUNDS", "ONNX_TOLERANCE",
           "CONFIG_FILE", "PROGRAM_FILE"]

log = logging.getLogger("gcnas.export")
PICK_BOUNDS = {"max_params": record.PARAMS, "max_flops": record.FLOPS, "max_latency_ms": record.LATENCY_MS}
ONNX_TOLERANCE = 1e-4  # the largest difference to torch that model.onnx (and model.pt2) may show
CONFIG_FILE = "config.json"  # the name timm reads beside a hub model's weights
PROGRAM_FILE = "model.pt2"  # torch.export's program: the model as one graph with its weights, for torch alone


@dataclass
class ExportResult:
    dir: Path
    trial: int
    weights_source: str  # "kept" | "retrained"
    onnx_max_abs_diff: float
    picked: str = ""
    files: list = field(default_factory=list)
    program_max_abs_diff: Optional[float] = None  # model.pt2 as loaded back vs the module; None: not written
    program_error: str = ""  # why torch.export could not write model.pt2


def _describe(t: FrozenTrial) -> str:
    if t.state == TrialState.PRUNED:
        return f"pruned after epoch {record.EPOCHS.get(t, '?')}"
    if t.state == TrialState.FAIL:
        return "failed" + (f" ({record.ERROR.get(t)[:120]})" if record.ERROR.get(t) else "")
    return t.state.name.lower()


def _parse_pick(pick: Any) -> tuple[str, Optional[float], Optional[int]]:
    """``pick``: an index into the Pareto front (best accuracy first) or ``max_params|max_flops|max_latency_ms=V``."""
    if pick is None:
        return "", None, None
    if isinstance(pick, bool):
        raise ConfigError(f"pick: must be an index or <bound>=<value>; got {pick!r}")
    if isinstance(pick, int):
        if pick < 0:
            raise ConfigError(f"pick: an index must be >= 0; got {pick}")
        return "", None, pick
    m = re.fullmatch(r"\s*(\w+)\s*[=<]=?\s*([0-9.eE+_-]+)\s*", str(pick))
    if not m or m.group(1) not in PICK_BOUNDS:
        raise ConfigError(f"pick: must be an index into the Pareto front or one of "
                          f"{', '.join(k + '=<value>' for k in PICK_BOUNDS)}; got {pick!r}")
    try:
        value = float(m.group(2).replace("_", ""))
    except ValueError:
        raise ConfigError(f"pick: {m.group(2)!r} is not a number") from None
    return m.group(1), value, None


def choose_trial(study: optuna.Study, trial: Union[str, int] = "best", pick: Any = None,
                 confirmed: Optional[Sequence[Confirmed]] = None) -> tuple[FrozenTrial, str]:
    """The trial to export and a sentence saying why it was chosen. With ``confirmed`` (the study's confirmation,
    :func:`gcnas.search.confirm.confirmation`), ``trial=best`` is the confirmed candidate with the largest mean paired
    difference to the plain backbone, not the search's luckiest single run."""
    bound_key, bound, index = _parse_pick(pick)
    multi = len(study.directions) > 1
    trials = study.get_trials(deepcopy=False)
    if trial != "best":
        if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
            raise ConfigError(f"trial: must be 'best' or a trial number >= 0; got {trial!r}")
        if trial >= len(trials):
            raise ConfigError(f"trial: study {study.study_name!r} has trials 0..{len(trials) - 1}; got {trial}")
        t = trials[trial]
        if t.state != TrialState.COMPLETE:
            done = [x.number for x in ranked_trials(study)]
            raise ConfigError(f"trial: trial {trial} is not complete ({_describe(t)}); complete trials: "
                              f"{', '.join(map(str, done[:20])) or 'none'}")
        if record.INFEASIBLE.on(t):
            raise ConfigError(f"trial: trial {trial} was never trained ({record.INFEASIBLE.get(t)})")
        if pick is not None:
            raise ConfigError("pick: chooses among the best trials; give either trial=N or pick, not both")
        return t, f"trial {trial}, as asked"
    front = pareto_trials(study) if multi else ranked_trials(study)
    if not front:
        raise ConfigError(f"trial: study {study.study_name!r} has no complete, trained trial yet")
    what = "Pareto front" if multi else "ranking"
    if index is not None:
        if index >= len(front):
            raise ConfigError(f"pick: the {what} has {len(front)} trials (0..{len(front) - 1}); got {index}")
        t = front[index]
        return t, f"entry {index} of the {what} ({len(front)} trials, best accuracy first)"
    if bound_key:
        attr = PICK_BOUNDS[bound_key]
        metric = attr.name
        ok = [t for t in ranked_trials(study) if attr.get(t) is not None and float(attr.get(t)) <= bound]
        if not ok:
            have = sorted(float(attr.get(t)) for t in ranked_trials(study) if attr.get(t))
            raise ConfigError(f"pick: no complete trial has {metric} <= {bound:g}; the smallest is "
                              f"{have[0]:g}" if have else f"pick: no trial recorded {metric}")
        t = ok[0]
        return t, f"best accuracy with {metric} <= {bound:g} ({metric} = {attr.get(t):g})"
    if multi:
        return front[0], f"best accuracy on the Pareto front ({len(front)} trials)"
    candidates = [c for c in confirmed or () if c.role != "baseline"]
    if candidates:
        c = candidates[0]
        ci = c.interval
        return (trials[c.trial], f"best confirmed candidate ({len(candidates)} confirmed over {len(c.values)} seeds): "
                f"val acc {c.mean:.4f} ± {c.std:.4f}, {100 * c.diff:+.2f} pp vs plain paired by seed"
                + ("" if ci is None else f" (95% CI [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}] pp)")
                + f", {c.verdict}")
    return front[0], "best trial of the study"


def _retrain(study: optuna.Study, t: FrozenTrial, arch: Architecture, data_overrides: Mapping[str, Any],
             device: str, why: str):
    from gcnas.train.one import ArchitectureRun, load_data_for
    from gcnas.train.runtime import select_device

    cfg = record.CONFIG.get(study)
    if not cfg:
        raise ConfigError(f"trial: trial {t.number} kept no weights and study {study.study_name!r} recorded no config "
                          f"to retrain it with; rerun the search with study.keep_weights > 0")
    data_cfg = {**cfg["data"], **dict(data_overrides or {})}
    data = load_data_for(data_cfg, arch.backbone, arch.backbone_kwargs)
    train = {**{k: v for k, v in cfg["trainer"].items() if k != "name"}, **(record.recipe_of(study, t) or {})}
    seed = int(train.pop("seed", cfg.get("seed", 0)))
    weights = BackboneWeights.from_config(cfg.get("backbone"))
    run = ArchitectureRun.build(arch, data.input_size, seed=seed, weights=weights, cost=False)
    device = select_device(device)
    log.warning("trial %d: %s; retraining it at its proxy fidelity (%s epochs on %s)", t.number, why, train["epochs"],
                device)
    result = run.train(data.to(device), train, device=device, test=False)
    return run.model, data, result.final_val_acc


def _hub_config(arch: Architecture, model: torch.nn.Module, pretrained_cfg: Mapping[str, Any]) -> dict:
    """``config.json`` in timm's form for hub models (what ``timm.models.push_to_hf_hub`` writes and
    ``load_model_config_from_hf`` reads): ``architecture`` (the timm backbone), ``num_classes``, ``num_features``,
    ``label_names``, ``model_args`` (the backbone's keyword arguments) and ``pretrained_cfg``: the preprocessing of
    ``pretrained_cfg`` (:meth:`gcnas.data.DataSplits.pretrained_cfg`, as a study records it) with the backbone's
    ``first_conv`` and ``classifier``. JSON-ready."""
    num_classes = int(getattr(model, "num_classes"))
    if int(pretrained_cfg.get("num_classes", num_classes)) != num_classes:
        raise ConfigError(f"data: the study's data has {pretrained_cfg['num_classes']} classes, the architecture "
                          f"{arch.backbone} {num_classes} (backbone_kwargs.num_classes); they must agree")
    pre = {k: list(v) if isinstance(v, tuple) else v for k, v in pretrained_cfg.items() if k != "label_names"}
    pre["num_classes"] = num_classes
    timm_cfg = getattr(model, "pretrained_cfg", None) or {}
    for k in ("first_conv", "classifier"):  # what timm's own config.json carries about the modules
        if timm_cfg.get(k):
            pre.setdefault(k, timm_cfg[k])
    out: dict = {"architecture": arch.backbone, "num_classes": num_classes}
    if getattr(model, "num_features", None) is not None:
        out["num_features"] = int(model.num_features)
    if pretrained_cfg.get("label_names"):
        out["label_names"] = list(pretrained_cfg["label_names"])
    if arch.backbone_kwargs:
        out["model_args"] = dict(arch.backbone_kwargs)
    out["pretrained_cfg"] = pre
    return out


def _study_preprocessing(study: optuna.Study, arch: Architecture,
                         data_overrides: Mapping[str, Any]) -> tuple[Optional[dict], str]:
    """The study's ``pretrained_cfg`` (recorded by the search), else computed from its recorded data config (a study
    from before it was recorded); with None, why there is none."""
    recorded = record.PRETRAINED_CFG.get(study)
    if recorded:
        return dict(recorded), ""
    data_cfg = (record.CONFIG.get(study) or {}).get("data")
    if not data_cfg:
        return None, f"study {study.study_name!r} recorded neither its preprocessing nor its data config"
    from gcnas.train.one import load_data_for

    try:
        data = load_data_for({**data_cfg, **dict(data_overrides or {})}, arch.backbone, arch.backbone_kwargs)
    except (ConfigError, OSError) as e:
        return None, f"the study's data cannot be read to compute its preprocessing ({e})"
    return data.pretrained_cfg(), ""


def _onnx(model: torch.nn.Module, input_size, path: Path) -> float:
    import numpy as np
    import onnxruntime

    x = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape checks that are constant for this model
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        ref = model(x).numpy()
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    return float(np.abs(got - ref).max())


def _program(model: torch.nn.Module, input_size, path: Path, hub: Optional[Mapping[str, Any]]) -> float:
    """Write ``model`` (in eval mode) as a ``torch.export`` program with a dynamic batch and ``config.json`` as an
    extra file, load it back and return its largest difference to the module on a batch size it was not traced with.
    Raises whatever ``torch.export`` raises for a model it cannot capture as one graph."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, *input_size, generator=gen), torch.randn(3, *input_size, generator=gen)
    with torch.no_grad():
        program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                      strict=False)
    extra = {} if hub is None else {CONFIG_FILE: json.dumps(hub)}
    torch.export.save(program, str(path), extra_files=extra)
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        return float((loaded(y) - model(y)).abs().max())


def _inputs(hub: Optional[Mapping[str, Any]], no_hub: str, input_size) -> list[str]:
    """The card's inputs section, from the same ``config.json`` dict the export writes (nothing restated)."""
    lines = ["## Inputs", ""]
    if hub is None:
        return lines + [f"Tensors of shape (N, {', '.join(map(str, input_size))}), float32. The preprocessing the "
                        f"model was validated with is not recorded ({no_hub}): this folder has no config.json, and "
                        f"timm's default for the backbone may not be it.", ""]
    pre = hub["pretrained_cfg"]
    names = hub.get("label_names")
    lines += [f"`{CONFIG_FILE}` holds timm's `pretrained_cfg`: the evaluation transform the study validated with. "
              "`gcnas.load_model` sets it on the model, so `timm.data.resolve_data_config(model=model)` and "
              "`timm.data.create_transform(**config)` reproduce it (pixel values scaled to [0, 1], resized and "
              "cropped as below, normalised per channel with mean and std).", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in pre.items() if k not in ("num_classes", "first_conv", "classifier")]
    lines += ["", f"Output: logits over {hub['num_classes']} classes" + (f" ({', '.join(map(str, names))})"
                                                                           if names else "") + ".", ""]
    return lines


def _card(study, t: FrozenTrial, arch: Architecture, why: str, out: ExportResult, input_size,
          hub: Optional[Mapping[str, Any]], no_hub: str, retrained_acc: Optional[float],
          confirmed: Optional[Sequence[Confirmed]] = None) -> str:
    metrics = record.METRICS.get(study) or ["accuracy"]
    base = baseline_trial(study)
    lines = [f"# {arch.backbone} with {len(arch.placements)} global-context block(s): trial {t.number} of "
             f"`{study.study_name}`", "",
             f"Exported {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by gcnas-export. "
             f"Chosen: {why}.", ""]
    lines += _card_metrics(study, t, base, metrics, retrained_acc)
    lines += _card_confirmation(study, confirmed)
    lines += _card_cost(t, base, input_size)
    lines += _card_origin(study, t, arch, metrics, out)
    lines += [*_inputs(hub, no_hub, input_size), *_card_usage(arch, out, hub is not None)]
    return "\n".join(lines)


def _card_metrics(study, t: FrozenTrial, base: Optional[FrozenTrial], metrics: Sequence[str],
                  retrained_acc: Optional[float]) -> list[str]:
    """The card's metrics: the trial's accuracy beside the plain backbone's (and the study's noise, when measured)."""
    acc = t.values[0]
    lines = ["## Metrics (proxy fidelity of the search)", "", "| | value |", "|---|---:|",
             f"| validation accuracy | {acc:.4f} |"]
    noise = noise_floor(study)
    if noise is not None and noise.baseline:
        lines.append(f"| plain backbone (mean of {len(noise.baseline)} seeds) | {noise.baseline_mean:.4f} |")
        lines.append(f"| delta vs plain | {100 * (acc - noise.baseline_mean):+.2f} pp |")
        lines.append(f"| seed-to-seed std of the study (noise floor) | {100 * noise.std:.2f} pp |")
        lines.append(f"| delta beyond the noise (outside ±{100 * noise.band:.2f} pp) | "
                     f"{'yes' if noise.beyond(acc - noise.baseline_mean) else 'no'} |")
    elif base is not None:
        lines.append(f"| plain backbone (trial {base.number}) | {base.values[0]:.4f} |")
        lines.append(f"| delta vs plain | {100 * (acc - base.values[0]):+.2f} pp |")
    if retrained_acc is not None:
        lines.append(f"| validation accuracy of the exported (retrained) weights | {retrained_acc:.4f} |")
    for m, v in zip(metrics[1:], t.values[1:]):
        lines.append(f"| objective {m} | {v:g} |")
    return lines + [f"| epochs | {record.EPOCHS.get(t, '?')} |", ""]


def _card_confirmation(study, confirmed: Optional[Sequence[Confirmed]]) -> list[str]:
    """The card's confirmation section, when the study was confirmed."""
    if not confirmed:
        return []
    info = record.CONFIRMATION.get(study) or {}
    fidelity = ", ".join(f"{k}={v}" for part in ("trainer", "data") for k, v in (info.get(part) or {}).items())
    return ["## Confirmation (fresh seeds, paired with the plain backbone)", "",
            f"Study `{info.get('study', '?')}`: each architecture retrained with {info.get('seeds', '?')} seeds "
            f"from {info.get('first_seed', '?')} at the search's fidelity"
            + (f" with {fidelity}" if fidelity else "") + ".", "", confirmation_table(confirmed), ""]


def _card_cost(t: FrozenTrial, base: Optional[FrozenTrial], input_size) -> list[str]:
    """The card's cost table, as the search measured it."""
    lines = ["## Cost", "", "| | value |", "|---|---:|",
             f"| parameters | {record.PARAMS.get(t, 0):,} |",
             f"| FLOPs at {tuple(input_size)} | {record.FLOPS.get(t, 0):,} |"]
    if record.LATENCY_MS.get(t) is not None:
        lines.append(f"| CPU latency (batch 1, search machine) | {record.LATENCY_MS.get(t):.2f} ms |")
    if base is not None:
        lines.append(f"| parameters vs plain | {record.PARAMS.get(t, 0) - record.PARAMS.get(base, 0):+,} |")
    return lines


def _card_origin(study, t: FrozenTrial, arch: Architecture, metrics: Sequence[str], out: ExportResult) -> list[str]:
    """The card's provenance: study, trial, machine, recipe, starting and exported weights, the ONNX and torch.export
    checks."""
    cfg = record.CONFIG.get(study) or {}
    trainer = {**{k: v for k, v in (cfg.get("trainer") or {}).items() if k != "name"},
               **(record.recipe_of(study, t) or {})}
    return ["", "## Where it came from", "",
            f"- study `{study.study_name}`, search space `{record.SEARCH_SPACE.get(study, '?')}`, backbone "
            f"`{arch.backbone}`, data `{record.DATA.get(study, '?')}`, objective {' + '.join(metrics)}",
            f"- trial {t.number} ({record.ROLE.get(t, 'searched')}), architecture key "
            f"`{record.ARCH_KEY.get(t, arch.key())}`",
            f"- measured on: {record.machine_of(study, t) or 'not recorded (a study from before gcnas recorded them)'}"
            "; another CPU gives other numbers (other floating-point kernels)",
            "- training: " + ", ".join(f"{k}={v}" for k, v in sorted(trainer.items())),
            f"- backbone started from: {BackboneWeights.from_config(cfg.get('backbone')).describe()}",
            f"- weights: {'kept by the search' if out.weights_source == 'kept' else 'retrained at the trial fidelity'}",
            f"- ONNX checked with onnxruntime: max abs difference to torch {out.onnx_max_abs_diff:.2e} "
            f"(tolerance {ONNX_TOLERANCE:g})",
            (f"- `{PROGRAM_FILE}` checked as loaded back: max abs difference to torch {out.program_max_abs_diff:.2e}"
             if out.program_max_abs_diff is not None else
             f"- no `{PROGRAM_FILE}`: torch.export failed on the model ({out.program_error})"), ""]


def _card_usage(arch: Architecture, out: ExportResult, has_config: bool) -> list[str]:
    """The card's closing sections: how to load the folder, and the architecture."""
    program = [] if out.program_max_abs_diff is None else [
        f"- torch alone: `torch.export.load(\"{PROGRAM_FILE}\").module()` (inference only, with no `.eval()` to call; "
        "dynamic batch; `torch.compile` it, or compile it ahead of time with AOTInductor)"
        + (f"; `{CONFIG_FILE}` is inside it (`extra_files`)." if has_config else ".")]
    return ["## How to load", "", "```python", "import gcnas",
            "from timm.data import create_transform, resolve_data_config", "",
            "model = gcnas.load_model(\"path/to/this/folder\")  # torch + timm + gcnas; weights via safetensors",
            "transform = create_transform(**resolve_data_config(model=model))  # PIL image -> input tensor", "```",
            "", "- ONNX: `onnxruntime.InferenceSession(\"model.onnx\")`, input `input`, output `logits`, dynamic "
            "batch.", *program,
            "- Retrain at full fidelity: `gcnas-train arch=path/to/this/folder/architecture.yaml trainer=full`.", "",
            "## Architecture", "", "```yaml", arch.to_yaml().rstrip(), "```", ""]


def _check_free(final: Path, overwrite: bool) -> None:
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite: must be true or false; got {overwrite!r}")
    if final.exists() and not overwrite:
        raise ConfigError(f"export.dir: {final} already exists; pass overwrite=true to replace it, or choose another "
                          f"export.dir")


def _write_atomically(final: Path, overwrite: bool, fill) -> None:
    final = Path(final)
    _check_free(final, overwrite)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    except OSError as e:
        raise ConfigError(f"export.dir: cannot write under {final.parent} ({e.strerror or e})") from None
    try:
        fill(tmp)
        umask = os.umask(0)
        os.umask(umask)
        for p in tmp.iterdir():
            p.chmod(0o666 & ~umask)
        tmp.chmod(0o777 & ~umask)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"export.dir: writing {final} failed ({e.strerror or e}); nothing was left there") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _default_root(storage: str) -> Path:
    """``paths.root`` as the default configs lay it out: the folder of the storage's file, for file storages."""
    file = storage_file(storage)
    return Path("outputs") if file is None else file.parent


def export_trial(storage: str, study_name: str, trial: Union[str, int] = "best", pick: Any = None,
                 out_dir: Optional[Union[str, Path]] = None, overwrite: bool = False, retrain: bool = True,
                 data_overrides: Optional[Mapping[str, Any]] = None, root: Optional[Union[str, Path]] = None,
                 device: str = "auto") -> ExportResult:
    """Export one trial of ``study_name`` (see the module docstring). ``out_dir`` defaults to
    ``exports/<study>/trial-<N>`` under the current directory. ``root`` is ``paths.root``, the folder that holds the
    study's folder, where the kept weights are looked up; by default the folder of a SQLite or journal storage file
    (the default layout, ``sqlite:///<paths.root>/studies.db``), else ``outputs`` under the current directory.
    ``device`` (cpu, cuda or auto) retrains a trial whose weights were not kept."""
    study = open_study(storage, study_name)
    confirmed = confirmation(study, storage)
    t, why = choose_trial(study, trial, pick, confirmed)
    source = t  # the trial whose weights these are: a duplicate reused another trial's training
    if record.DUPLICATE_OF.on(t):
        source = study.get_trials(deepcopy=False)[int(record.DUPLICATE_OF.get(t))]
    arch = Architecture.from_yaml(record.architecture_of(study, t))
    final = Path(out_dir) if out_dir else Path("exports") / study_name / f"trial-{t.number}"
    _check_free(final, overwrite)
    study_dir = study_folder(_default_root(storage) if root is None else Path(root), study_name)
    w = _exported_weights(study, t, source, arch, study_dir, retrain, data_overrides or {}, device)
    model = w.model.cpu().eval()
    hub = None if w.preprocessing is None else _hub_config(arch, model, w.preprocessing)
    if hub is None:
        log.warning("trial %d is exported without %s: %s; timm's default preprocessing for %s will not be how it was "
                    "validated", t.number, CONFIG_FILE, w.no_hub, arch.backbone)
    in_chans = int(arch.backbone_kwargs.get("in_chans", 3))
    input_size = tuple(hub["pretrained_cfg"]["input_size"] if hub else
                       record.INPUT_SIZE.get(study) or (in_chans, 224, 224))
    out = ExportResult(final, t.number, w.source, float("nan"), why)

    def card() -> str:
        return _card(study, t, arch, why, out, input_size, hub, w.no_hub, w.retrained_acc, confirmed)

    metadata = {"arch_key": arch.key(), "study": study_name, "trial": str(t.number)}
    _write_atomically(final, overwrite, lambda tmp: _fill(tmp, out, model, arch, metadata, hub, input_size, card))
    return out


@dataclass
class _Weights:
    """The weights an export ships, where they came from, and the preprocessing they were validated with."""
    model: torch.nn.Module
    source: str  # "kept" | "retrained"
    preprocessing: Optional[dict]  # None: not recorded, for the reason in no_hub
    no_hub: str
    retrained_acc: Optional[float] = None


def _exported_weights(study: optuna.Study, t: FrozenTrial, source: FrozenTrial, arch: Architecture, study_dir: Path,
                      retrain: bool, data_overrides: Mapping[str, Any], device: str) -> _Weights:
    """The trial's kept weights, else (with ``retrain``) weights retrained at the trial's proxy fidelity."""
    kept = resolve_stored(study_dir, record.WEIGHTS.get(source))
    if kept is not None and kept.is_file():
        model = build_model(arch)
        load_weights(model, kept, key="trial", against=f"trial {source.number}'s architecture",
                     fix="delete the file to retrain the trial instead")
        return _Weights(model, "kept", *_study_preprocessing(study, arch, data_overrides))
    if kept is None:
        missing = "its weights were not kept (study.keep_weights keeps the top trials only)"
    elif not study_dir.is_dir():
        missing = (f"its kept weights are not at {kept}: there is no study folder {study_dir} (if the study was "
                   f"moved, give paths.root=<the folder that holds it now>)")
    else:
        missing = f"its kept weights are not at {kept} (deleted when it left the study's top study.keep_weights)"
    if not retrain:
        raise ConfigError(f"trial: trial {t.number}: {missing}; allow retraining (retrain=true) or export a kept "
                          f"trial")
    model, data, retrained_acc = _retrain(study, source, arch, data_overrides, device, missing)
    return _Weights(model, "retrained", data.pretrained_cfg(), "", retrained_acc)


def _fill(tmp: Path, out: ExportResult, model: torch.nn.Module, arch: Architecture, metadata: Mapping[str, str],
          hub: Optional[Mapping[str, Any]], input_size, card) -> None:
    """Write the export's files into ``tmp``: architecture, weights, timm's config, ONNX and the torch.export program
    (each checked against the module), the card. A model torch.export cannot capture is exported without
    ``model.pt2``, with a warning and the reason on the card; a file that computes something else fails the export."""
    from safetensors.torch import save_model

    (tmp / "architecture.yaml").write_text(arch.to_yaml())
    save_model(model, str(tmp / WEIGHTS_FILE), metadata=dict(metadata))
    if hub is not None:
        (tmp / CONFIG_FILE).write_text(json.dumps(hub, indent=2) + "\n")
    diff = _onnx(model, input_size, tmp / "model.onnx")
    if not diff <= ONNX_TOLERANCE:
        raise ConfigError(f"model.onnx: onnxruntime differs from torch by {diff:.3g} (> {ONNX_TOLERANCE:g}); "
                          f"the export was not written")
    out.onnx_max_abs_diff = diff
    try:
        out.program_max_abs_diff = _program(model, input_size, tmp / PROGRAM_FILE, hub)
    except Exception as e:  # noqa: BLE001 - torch.export raises many types for a model it cannot capture
        out.program_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        (tmp / PROGRAM_FILE).unlink(missing_ok=True)
        log.warning("%s not written: torch.export failed on the model (%s); the other files are", PROGRAM_FILE,
                    out.program_error)
    if out.program_max_abs_diff is not None and not out.program_max_abs_diff <= ONNX_TOLERANCE:
        raise ConfigError(f"{PROGRAM_FILE}: the torch.export program differs from the model by "
                          f"{out.program_max_abs_diff:.3g} (> {ONNX_TOLERANCE:g}); the export was not written")
    (tmp / "MODEL_CARD.md").write_text(card())
    out.files = sorted(p.name for p in tmp.iterdir())
