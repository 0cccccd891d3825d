"""Full-fidelity training of one model: timm's optimizer and scheduler factories, AMP and channels_last on CUDA,
resumable checkpoints.

A checkpoint is two files written each epoch under a temporary name and renamed into place: ``weights.safetensors``
(the model, via safetensors) and ``state.pt`` (optimizer, scheduler, scaler, RNG states, history; plain tensors and
numbers only, read back with ``torch.load(weights_only=True)``). Training the same model into the same folder again
resumes after the last finished epoch; a finished run is not trained again.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gcnas.errors import ConfigError
from gcnas.train.proxy import EpochResult, NonFiniteLossError

__all__ = ["FullTrainResult", "train_full", "evaluate_amp", "FULL_KEYS"]

log = logging.getLogger("gcnas.train")

FULL_KEYS = ("name", "epochs", "batch_size", "opt", "lr", "momentum", "weight_decay", "sched", "warmup_epochs",
             "warmup_lr", "min_lr", "label_smoothing", "amp", "channels_last", "grad_clip")


@dataclass
class FullTrainResult:
    epochs: list = field(default_factory=list)  # EpochResult per epoch, resumed ones included
    resumed_from: int = 0  # epochs already done when this call started
    test_acc: Optional[float] = None
    seconds: float = 0.0

    @property
    def final_val_acc(self) -> float:
        return self.epochs[-1].val_acc if self.epochs else float("nan")


def _check(cfg: Mapping[str, Any]) -> None:
    unknown = sorted(set(cfg) - set(FULL_KEYS))
    if unknown:
        raise ConfigError(f"trainer.{unknown[0]}: unknown key; valid keys are {', '.join(FULL_KEYS)}")
    for k, lo in (("epochs", 1), ("batch_size", 2)):
        v = cfg.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"trainer.{k}: must be an integer >= {lo}; got {v!r}")
    for k in ("lr", "weight_decay", "warmup_epochs", "label_smoothing", "min_lr", "warmup_lr"):
        v = cfg.get(k, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"trainer.{k}: must be a non-negative number; got {v!r}")
    if cfg.get("amp", True) not in (True, False, "bf16", "fp16"):
        raise ConfigError(f"trainer.amp: must be true, false, bf16 or fp16; got {cfg.get('amp')!r}")


def _amp_dtype(cfg: Mapping[str, Any], device: torch.device) -> Optional[torch.dtype]:
    amp = cfg.get("amp", True)
    if device.type != "cuda" or amp is False:
        return None
    if amp == "fp16":
        return torch.float16
    return torch.bfloat16 if amp in (True, "bf16") and torch.cuda.is_bf16_supported() else torch.float16


def evaluate_amp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
                 amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False) -> tuple[float, float]:
    was = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(xb)
                loss_sum += float(F.cross_entropy(logits.float(), yb, reduction="sum"))
                correct += int((logits.argmax(1) == yb).sum())
    finally:
        model.train(was)
    n = max(1, len(x))
    return loss_sum / n, correct / n


def _save(ckpt_dir: Path, model: nn.Module, state: dict) -> None:
    from safetensors.torch import save_model

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_s = ckpt_dir / f".weights.{os.getpid()}.tmp", ckpt_dir / f".state.{os.getpid()}.tmp"
    save_model(model, str(tmp_w))
    torch.save(state, str(tmp_s))
    # state.pt is renamed last: it names the epoch, so a crash between the renames resumes one epoch early at worst
    os.replace(tmp_w, ckpt_dir / "weights.safetensors")
    os.replace(tmp_s, ckpt_dir / "state.pt")


def train_full(model: nn.Module, data, cfg: Mapping[str, Any], *, seed: int = 0, device: str | torch.device = "cpu",
               ckpt_dir: Optional[Path] = None, resume: bool = True,
               on_epoch: Optional[Callable[[EpochResult], None]] = None) -> FullTrainResult:
    """Train ``model`` on ``data`` (a :class:`gcnas.data.DataSplits`) with the ``trainer`` config ``cfg``."""
    from safetensors.torch import load_model
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    _check(cfg)
    device = torch.device(device)
    epochs, bs = int(cfg["epochs"]), int(cfg["batch_size"])
    amp_dtype = _amp_dtype(cfg, device)
    channels_last = bool(cfg.get("channels_last", True)) and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = create_optimizer_v2(model, opt=str(cfg.get("opt", "sgd")), lr=float(cfg["lr"]),
                              weight_decay=float(cfg.get("weight_decay", 0.0)),
                              momentum=float(cfg.get("momentum", 0.9)))
    sched, _ = create_scheduler_v2(opt, sched=str(cfg.get("sched", "cosine")), num_epochs=epochs,
                                   warmup_epochs=int(cfg.get("warmup_epochs", 0)),
                                   warmup_lr=float(cfg.get("warmup_lr", 1e-5)), min_lr=float(cfg.get("min_lr", 0.0)))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    gen = torch.Generator().manual_seed(seed)
    result = FullTrainResult()
    start = 1
    state_path = ckpt_dir / "state.pt" if ckpt_dir is not None else None
    if resume and state_path is not None and state_path.is_file():
        state = torch.load(str(state_path), map_location="cpu", weights_only=True)
        before = json.loads(state.get("trainer", "{}"))
        changed = [k for k in sorted(set(before) | set(cfg)) if before.get(k) != cfg.get(k)]
        if changed:
            k = changed[0]
            raise ConfigError(f"trainer.{k}: the checkpoint in {ckpt_dir} was trained with trainer.{k}="
                              f"{before.get(k)!r}, not {cfg.get(k)!r}; resume with the same trainer, or start over "
                              f"with a new train.dir or train.resume=false")
        missing, unexpected = load_model(model, str(ckpt_dir / "weights.safetensors"), strict=False, device=str(device))
        if missing or unexpected:
            raise ConfigError(f"train.dir: the checkpoint in {ckpt_dir} belongs to another model (missing "
                              f"{missing[:5]}, unexpected {unexpected[:5]}); use a new train.dir or train.resume=false")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        result.epochs = [EpochResult(*row) for row in state["history"]]
        result.resumed_from = len(result.epochs)
        start = len(result.epochs) + 1
        if start > 1:
            log.info("resuming %s after epoch %d of %d", ckpt_dir, start - 1, epochs)
    else:
        sched.step(0)
    t_start = time.perf_counter()
    model.train()
    steps = max(1, math.ceil(len(data.train_x) / bs))
    for epoch in range(start, epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(len(data.train_x), generator=gen)
        loss_sum, seen = 0.0, 0
        for i in range(steps):
            idx = order[i * bs:(i + 1) * bs]
            if len(idx) < 2:
                continue
            xb, yb = data.train_x[idx].to(device, non_blocking=True), data.train_y[idx].to(device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=float(cfg.get("label_smoothing", 0.0)))
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(epoch, i, value)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.get("grad_clip"):
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
            scaler.step(opt)
            scaler.update()
            loss_sum += value * len(idx)
            seen += len(idx)
        sched.step(epoch)
        val_loss, val_acc = evaluate_amp(model, data.val_x, data.val_y, bs, device, amp_dtype, channels_last)
        er = EpochResult(epoch, loss_sum / max(1, seen), val_loss, val_acc, time.perf_counter() - t0)
        result.epochs.append(er)
        if ckpt_dir is not None:
            _save(ckpt_dir, model, {
                "epoch": epoch, "trainer": json.dumps(dict(cfg), sort_keys=True), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "history": [[e.epoch, e.train_loss, e.val_loss, e.val_acc, e.seconds] for e in result.epochs]})
        if on_epoch is not None:
            on_epoch(er)
    if data.test_x is not None:
        result.test_acc = evaluate_amp(model, data.test_x, data.test_y, bs, device, amp_dtype, channels_last)[1]
    result.seconds = time.perf_counter() - t_start
    return result
