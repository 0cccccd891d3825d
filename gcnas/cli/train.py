"""``gcnas-train``: train an architecture from scratch at full fidelity, optionally beside the plain backbone.

``gcnas-train arch=exports/<study>/trial-N/architecture.yaml trainer=full baseline=true seeds=[0,1,2]`` trains the
architecture and the plain backbone under the same seeds, tracks every run in W&B (``job_type=train``), keeps resumable
checkpoints under ``train.dir`` and prints a comparison table with mean +- std over the seeds.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from gcnas.arch import Architecture, build_model
from gcnas.backbones.cost import measure_cost
from gcnas.cli.common import resolve, user_errors
from gcnas.data import load_data
from gcnas.errors import ConfigError
from gcnas.track import WandbSession
from gcnas.train import train_full
from gcnas.train.runtime import select_device, set_threads

log = logging.getLogger("gcnas.train")


@dataclass
class TrainReport:
    rows: list = field(default_factory=list)  # dicts: model, seed, val_acc, test_acc, params, flops, seconds, dir
    table: str = ""


def _load_arch(value) -> tuple[Architecture, Path]:
    if not value:
        raise ConfigError("arch: required; give arch=path/to/architecture.yaml (gcnas-export writes one, and every "
                          "search trial folder holds one)")
    path = Path(str(value))
    if path.is_dir():
        path = path / "architecture.yaml"
    if not path.is_file():
        raise ConfigError(f"arch: {path} does not exist")
    try:
        return Architecture.from_yaml(path.read_text()), path
    except ValueError as e:
        raise ConfigError(f"arch: {path}: {e}") from None


def _fmt(values: list[float], pct: bool = True) -> str:
    scale = 100 if pct else 1
    if len(values) == 1:
        return f"{scale * values[0]:.2f}"
    return f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}"


def comparison_table(rows: list[dict]) -> str:
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


def train(cfg: DictConfig) -> TrainReport:
    """Train from a composed ``train`` config (tests call this with ``hydra.compose``)."""
    c = resolve(cfg)
    arch, arch_path = _load_arch(c.get("arch"))
    seeds = c.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise ConfigError(f"seeds: must be a non-empty list of integers, e.g. seeds=[0,1,2]; got {seeds!r}")
    if not isinstance(c.get("baseline", False), bool):
        raise ConfigError(f"baseline: must be true or false; got {c.get('baseline')!r}")
    device = select_device(c.get("device", "auto"))
    set_threads(c.get("threads", "auto"))
    tc = c.get("train") or {}
    session = WandbSession(c.get("wandb") or {"mode": "disabled"}, f"train-{arch.key()}")

    data = load_data(c["data"])
    kwargs = {**dict(arch.backbone_kwargs), "in_chans": data.in_chans, "num_classes": data.num_classes}
    if kwargs != dict(arch.backbone_kwargs):
        log.info("architecture built for %s; training it on %s with in_chans=%d, num_classes=%d",
                 dict(arch.backbone_kwargs), data.name, data.in_chans, data.num_classes)
    arch = Architecture(arch.backbone, kwargs, arch.placements)
    models = [("gcnas", arch)]
    if c.get("baseline"):
        models.append(("plain", Architecture(arch.backbone, kwargs, ())))
    out = Path(tc.get("dir") or Path(c["paths"]["root"]) / "train" / arch_path.resolve().parent.name)
    trainer = {k: v for k, v in c["trainer"].items()}
    report = TrainReport()
    for seed in seeds:
        for name, a in models:
            torch.manual_seed(seed)
            model = build_model(a)
            cost = measure_cost(model, data.input_size, latency=False)
            run_dir = out / name / f"seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            (out / name / "architecture.yaml").write_text(a.to_yaml())
            key = (name, seed)
            session.start(key, job_type="train", name=f"{name}-seed{seed}",
                          config={"architecture": a.to_dict(), "trainer": trainer, "data": c["data"], "seed": seed,
                                  "model": name, "arch_key": a.key()})

            def on_epoch(er, key=key):
                session.log(key, {"epoch": er.epoch, "train_loss": er.train_loss, "val_loss": er.val_loss,
                                  "val_acc": er.val_acc, "epoch_seconds": er.seconds}, step=er.epoch)
                log.info("%s seed %d epoch %d/%d: train loss %.4f, val acc %.4f (%.1fs)", key[0], key[1], er.epoch,
                         trainer["epochs"], er.train_loss, er.val_acc, er.seconds)

            result = train_full(model, data, trainer, seed=seed, device=device, ckpt_dir=run_dir,
                                resume=bool(tc.get("resume", True)), on_epoch=on_epoch)
            row = {"model": name, "seed": seed, "val_acc": result.final_val_acc, "test_acc": result.test_acc,
                   "params": cost.params, "flops": cost.flops, "seconds": result.seconds, "dir": str(run_dir),
                   "resumed_from": result.resumed_from}
            report.rows.append(row)
            session.finish(key, {k: v for k, v in row.items() if k not in ("dir", "model")})
    session.close()
    report.table = comparison_table(report.rows)
    print(f"\nTrained {arch_path} on {data.name} ({len(data.train_x)} train / {len(data.val_x)} val images"
          + (f" / {len(data.test_x)} test" if data.test_x is not None else "")
          + f", {trainer['epochs']} epochs, seeds {seeds}, {device}); checkpoints in {out}\n")
    print(report.table)
    return report


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="train")
@user_errors("gcnas-train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
