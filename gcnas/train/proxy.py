"""Proxy training: a few epochs on in-memory tensors, evaluated every epoch.

The per-epoch callback is how the search reports intermediate values and prunes (it may raise to stop training);
training itself knows nothing of Optuna, Hydra or W&B.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gcnas.errors import ConfigError

__all__ = ["EpochResult", "TrainResult", "NonFiniteLossError", "train_proxy", "evaluate"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_acc: float
    seconds: float


@dataclass
class TrainResult:
    epochs: list[EpochResult] = field(default_factory=list)

    @property
    def final_val_acc(self) -> float:
        return self.epochs[-1].val_acc if self.epochs else float("nan")

    @property
    def best_val_acc(self) -> float:
        return max((e.val_acc for e in self.epochs), default=float("nan"))

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.epochs)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             device: torch.device | str = "cpu") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``x``, ``y``."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    n = max(1, len(x))
    return loss_sum / n, correct / n


def proxy_kwargs(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`train_proxy`'s recipe arguments from a ``trainer`` config (the keys of ``conf/trainer/proxy.yaml``)."""
    return {"epochs": int(trainer["epochs"]), "batch_size": int(trainer["batch_size"]), "lr": float(trainer["lr"]),
            "weight_decay": float(trainer["weight_decay"]), "momentum": float(trainer.get("momentum", 0.9)),
            "optimizer": str(trainer.get("optimizer", "sgd")),
            "warmup_epochs": float(trainer.get("warmup_epochs", 0.0)),
            "label_smoothing": float(trainer.get("label_smoothing", 0.0))}


def train_proxy(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                val_y: torch.Tensor, *, epochs: int, batch_size: int = 128, lr: float = 0.05,
                weight_decay: float = 5e-4, momentum: float = 0.9, optimizer: str = "sgd", warmup_epochs: float = 0.0,
                label_smoothing: float = 0.0, seed: int = 0, device: torch.device | str = "cpu",
                on_epoch: Optional[Callable[[EpochResult], None]] = None) -> TrainResult:
    """Train with a cosine learning-rate schedule and evaluate after every epoch.

    ``optimizer`` is any name ``timm.optim.create_optimizer_v2`` knows (``sgd``, ``adamw``, ...). ``on_epoch`` is
    called with each epoch's result and may raise to stop (pruning); a NaN or infinite loss raises
    :class:`NonFiniteLossError` naming the epoch and step.
    """
    from timm.optim import create_optimizer_v2

    if epochs < 1:
        raise ConfigError(f"trainer.epochs must be >= 1; got {epochs}")
    if batch_size < 1:
        raise ConfigError(f"trainer.batch_size must be >= 1; got {batch_size}")
    model.to(device).train()
    opt = create_optimizer_v2(model, opt=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum)
    steps_per_epoch = max(1, math.ceil(len(train_x) / batch_size))
    total = epochs * steps_per_epoch
    warmup = int(warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    gen = torch.Generator().manual_seed(seed)
    result = TrainResult()
    step = 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(len(train_x), generator=gen)
        loss_sum, seen = 0.0, 0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            if len(idx) < 2:  # a batch of one breaks batch norm; the remainder is dropped
                continue
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            xb, yb = train_x[idx].to(device), train_y[idx].to(device)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(epoch, i, value)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += value * len(idx)
            seen += len(idx)
            step += 1
        val_loss, val_acc = evaluate(model, val_x, val_y, device=device)
        er = EpochResult(epoch, loss_sum / max(1, seen), val_loss, val_acc, time.perf_counter() - t0)
        result.epochs.append(er)
        if on_epoch is not None:
            on_epoch(er)
    return result
