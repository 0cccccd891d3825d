"""Retraining an exported architecture at full fidelity, optionally beside the plain backbone under the same seeds.

What ``gcnas-train`` runs (the command only reads its config and prints): one :func:`~gcnas.train.fit` run per
(model, seed) with resumable checkpoints under ``out_dir/<model>/seed<k>/``, each tracked as a W&B run
(``job_type=train``), and a comparison table with mean ± std over the seeds and the paired difference to plain.

Each checkpoint records what its run is made from (:func:`run_identity`: the architecture's key, the data's identity
and the starting weights; :func:`~gcnas.train.fit` adds the trainer and the seed). Before the first run trains, every
run's checkpoint is checked (:func:`~gcnas.train.check_checkpoint`), so a resume of another run is refused at once,
not after hours of the first seed, and nothing stored is touched. Without ``out_dir`` the checkpoints go to a folder
named after what decides the results (:func:`default_dir_name`), so two different runs never share one.

Each run's W&B run id is recorded beside its checkpoint (:mod:`gcnas.track.runs`): a resumed run continues its W&B run
(``resume="allow"``, one history row per epoch at step = epoch, so the resumed half starts at the step after the
first half's last), and ``resume=False`` starts a new one. ``wandb.run_id`` names the run of a training of one model
and seed; it is checked with the checkpoints, before anything trains (an id recorded by another training or a search
trial under the same ``paths.root`` is refused).
"""
from __future__ import annotations

import hashlib
import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from gcnas.arch import Architecture
from gcnas.backbones import BackboneWeights
from gcnas.backbones.weights import check_weights
from gcnas.data import DataSplits
from gcnas.errors import ConfigError
from gcnas.track import WandbSession, check_wandb_config
from gcnas.track.runs import RUN_FILE, check_user_run_id, new_run_id, record_run_id, recorded_run_id
from gcnas.train import TrainerConfig, check_checkpoint
from gcnas.train.distributed import init_distributed, is_main_process
from gcnas.train.one import ArchitectureRun, load_data_for
from gcnas.train.runtime import select_device

__all__ = ["TrainReport", "retrain", "load_architecture", "comparison_table", "run_identity", "default_dir_name"]

log = logging.getLogger("gcnas.train")


@dataclass
class TrainReport:
    rows: list = field(default_factory=list)  # dicts: model, seed, val_acc, test_acc, params, flops, seconds, dir
    table: str = ""
    out_dir: Optional[Path] = None  # the checkpoints' folder
    description: str = ""  # one line: what was trained on what, how long, where


def load_architecture(value: Any, key: str = "arch") -> tuple[Architecture, Path]:
    """An architecture from a file (or a folder holding ``architecture.yaml``), errors naming ``key``."""
    if not value:
        raise ConfigError(f"{key}: required; give {key}=path/to/architecture.yaml (gcnas-export writes one, and "
                          "every search trial folder holds one)")
    path = Path(str(value))
    if path.is_dir():
        path = path / "architecture.yaml"
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist")
    try:
        return Architecture.from_yaml(path.read_text()), path
    except ValueError as e:
        raise ConfigError(f"{key}: {path}: {e}") from None


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def comparison_table(rows: list[dict]) -> str:
    """Markdown: one row per model (mean ± std over its seeds), then each model's paired difference to plain."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    has_test = all(r["test_acc"] is not None for r in rows)
    head = ["model", "seeds", "val acc %", *(["test acc %"] if has_test else []), "params", "MFLOPs", "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    base = [r for r in rows if r["model"] == "plain"]
    for m in models:
        rs = [r for r in rows if r["model"] == m]
        cells = [m, str(len(rs)), _fmt([r["val_acc"] for r in rs])]
        if has_test:
            cells.append(_fmt([r["test_acc"] for r in rs]))
        cells += [f"{rs[0]['params'] / 1e6:.3f}M", f"{rs[0]['flops'] / 1e6:.1f}",
                  f"{sum(r['seconds'] for r in rs) / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if base and len(models) > 1:
        key = "test_acc" if has_test else "val_acc"
        for m in models:
            if m == "plain":
                continue
            by_seed = {r["seed"]: r[key] for r in rows if r["model"] == m}
            deltas = [by_seed[r["seed"]] - r[key] for r in base if r["seed"] in by_seed]
            lines.append(f"\n{m} vs plain ({key.replace('_', ' ')}, same seeds): {_fmt(deltas)} pp")
    return "\n".join(lines)


def run_identity(arch: Architecture, data: DataSplits, weights: BackboneWeights) -> dict[str, Any]:
    """What one retraining run is made from besides its trainer and seed (which :func:`~gcnas.train.fit` records
    itself): ``arch``'s key (as trained: ``in_chans`` / ``num_classes`` follow the data), the data's identity and the
    starting weights (a file by its content)."""
    return {"arch": arch.key(), "data": dict(data.identity), "weights": weights.identity()}


def default_dir_name(arch: Architecture, data: DataSplits, trainer_cfg: Mapping[str, Any],
                     weights: BackboneWeights) -> str:
    """``<arch key>-<hash>``: the checkpoint folder of a retraining when none is given. The first part is ``arch``'s
    key (as the architecture file gives it); the hash covers the data (its identity without the root: a moved copy
    is the same data), the trainer's values that differ from their defaults (a trainer key added later leaves old
    names alone) and the starting weights. Seeds and the plain baseline are sub-folders of it."""
    tc = TrainerConfig.from_mapping(trainer_cfg).to_dict()
    rest = {"data": {k: v for k, v in data.identity.items() if k != "root"},
            # trainer.compile changes the speed only: a compiled run and a plain one resume each other's checkpoints
            "trainer": {k: v for k, v in tc.items() if v != TrainerConfig.default(k) and k != "compile"},
            "weights": weights.identity()}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()
    return f"{arch.key()[:8]}-{digest[:8]}"


def retrain(arch: Architecture, data_cfg: Mapping[str, Any], trainer_cfg: Mapping[str, Any],
            out_dir: Optional[Union[str, Path]] = None, *, root: Union[str, Path] = Path("outputs") / "train",
            seeds: Sequence[int] = (0,), baseline: bool = False, device: str = "auto", resume: bool = True,
            wandb: Optional[Mapping[str, Any]] = None, weights: Optional[BackboneWeights] = None) -> TrainReport:
    """Train ``arch`` (and, with ``baseline``, the plain backbone) on ``data_cfg`` with ``trainer_cfg`` (the
    ``trainer`` config section) once per seed. The architecture's ``in_chans`` / ``num_classes`` follow the data.
    Checkpoints go to ``out_dir``, or when it is None to ``root/<default_dir_name(...)>``. ``wandb`` is the
    ``wandb`` config section (default: disabled); ``weights`` the backbone's starting weights (the plain baseline
    starts from the same ones). With ``resume``, a checkpoint of another run in any run's folder is refused before
    anything trains."""
    weights = weights or BackboneWeights()
    device = init_distributed(select_device(device))  # under torchrun: this rank's device, in the process group
    main = is_main_process()  # rank 0 alone tracks, writes files and logs
    data = load_data_for(data_cfg, arch.backbone, arch.backbone_kwargs)
    data = data.to(device)  # in-memory splits live where training runs: a CUDA step copies nothing from the host
    kwargs = {**dict(arch.backbone_kwargs), "in_chans": data.in_chans, "num_classes": data.num_classes}
    if kwargs != dict(arch.backbone_kwargs):
        log.info("architecture built for %s; training it on %s with in_chans=%d, num_classes=%d",
                 dict(arch.backbone_kwargs), data.name, data.in_chans, data.num_classes)
    trained = Architecture(arch.backbone, kwargs, arch.placements)
    check_weights(arch.backbone, weights, **kwargs)  # a wrong checkpoint fails before any training
    models = [("gcnas", trained)] + ([("plain", Architecture(arch.backbone, kwargs, ()))] if baseline else [])
    trainer = dict(trainer_cfg)
    out = Path(out_dir) if out_dir is not None else Path(root) / default_dir_name(arch, data, trainer, weights)
    identities = {name: run_identity(a, data, weights) for name, a in models}
    if resume:  # every run's checkpoint, before the first run trains (read only: a refusal leaves them as they are)
        for seed in seeds:
            for name, _ in models:
                check_checkpoint(out / name / f"seed{seed}", trainer, seed=seed, identity=identities[name])
    tracked = check_wandb_config(wandb) if wandb else None
    if tracked is not None and tracked.mode != "disabled":  # every rank: all of them stop, or none
        # the runs of the trainings under root and in out, and of the search trials beside them (<paths.root>/<study>)
        recorded = [*Path(root).glob(f"*/*/seed*/{RUN_FILE}"), *out.glob(f"*/seed*/{RUN_FILE}"),
                    *Path(root).parent.glob(f"*/trials/trial-*/{RUN_FILE}")]
        check_user_run_id(tracked.run_id, len(models) * len(seeds), out / models[0][0] / f"seed{seeds[0]}", resume,
                          [f.parent for f in recorded])
    session = WandbSession(wandb if main and wandb else {"mode": "disabled"}, f"train-{arch.key()}")
    if main:
        log.info("checkpoints in %s", out)
    report = TrainReport(out_dir=out)
    try:
        for seed in seeds:
            for name, a in models:
                report.rows.append(_one_run(session, name, a, seed, data, data_cfg, trainer, out, device, resume, main,
                                            weights, identities[name]))
    except BaseException:  # an interrupted or failed run shows as failed in W&B until its resume continues it
        session.close(exit_code=1)
        raise
    session.close()
    report.table = comparison_table(report.rows)
    report.description = (f"{data.describe()}, {trainer['epochs']} epochs, seeds {list(seeds)}, {device}, "
                          f"backbone from {weights.describe()}; "
                          f"checkpoints in {out}")
    return report


def _wandb_run(session: WandbSession, run_dir: Path, resume: bool) -> dict[str, Any]:
    """``wandb.init``'s arguments for the W&B run of the checkpoint in ``run_dir``: with ``resume``, the run recorded
    there (or ``wandb.run_id``), continued; else a new one. The id is recorded before W&B starts the run, so that a
    run killed at any point is continued by the next start."""
    continued = (session.run_id or recorded_run_id(run_dir)) if resume else session.run_id
    run_id = continued or new_run_id()
    record_run_id(run_dir, run_id)
    return {"id": run_id, "resume": "allow"} if continued else {"id": run_id}


def _one_run(session: WandbSession, name: str, arch: Architecture, seed: int, data, data_cfg, trainer: dict,
             out: Path, device: str, resume: bool, main: bool = True,
             weights: Optional[BackboneWeights] = None, identity: Optional[Mapping[str, Any]] = None) -> dict:
    run = ArchitectureRun.build(arch, data.input_size, seed=seed, weights=weights)
    run_dir = out / name / f"seed{seed}"
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (out / name / "architecture.yaml").write_text(arch.to_yaml())
    key = (name, seed)
    if not session.off:
        session.start(key, job_type="train", name=f"{name}-seed{seed}",
                      config={"architecture": arch.to_dict(), "trainer": trainer, "data": dict(data_cfg), "seed": seed,
                              "model": name, "arch_key": arch.key()}, **_wandb_run(session, run_dir, resume))

    def on_epoch(er) -> None:
        session.log(key, {"epoch": er.epoch, "train_loss": er.train_loss, "val_loss": er.val_loss,
                          "val_acc": er.val_acc, "epoch_seconds": er.seconds}, step=er.epoch)
        if main:
            log.info("%s seed %d epoch %d/%d: train loss %.4f, val acc %.4f (%.1fs)", name, seed, er.epoch,
                     trainer["epochs"], er.train_loss, er.val_acc, er.seconds)

    result = run.train(data, trainer, device=device, ckpt_dir=run_dir, resume=resume, on_epoch=on_epoch,
                       identity=identity)
    row = {**run.row(model=name), "seconds": result.seconds, "dir": str(run_dir), "resumed_from": result.resumed_from}
    session.finish(key, {k: v for k, v in row.items() if k not in ("dir", "model")})
    return row
