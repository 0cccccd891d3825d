"""The one training loop: search trials, ``gcnas-train``, export retraining, confirmation, analysis and the one-shot
supernet all train through :func:`fit`; their fidelity is a :class:`~gcnas.train.config.TrainerConfig`.

timm's optimizer and scheduler factories; AMP (bf16 where the GPU has it, else fp16 with a gradient scaler) and
channels_last on CUDA; optional ``torch.compile`` of the training forward (``trainer.compile``; checkpoints hold the
uncompiled module's weights, the same with or without it); optional EMA (timm's ``ModelEmaV3``); gradient
accumulation; label smoothing; a per-epoch callback that may raise to stop (pruning); DistributedDataParallel when a
process group is up (``torchrun``), each rank training its shard of every epoch; resumable checkpoints.

A checkpoint is two files written each epoch under a temporary name and renamed into place (by rank 0 alone):
``weights.safetensors`` (the model) and ``state.pt`` (optimizer, scheduler, scaler, EMA, RNG states, history; plain
tensors and numbers only, read back with ``torch.load(weights_only=True)``). Training the same model into the same
folder again resumes after the last finished epoch; a finished run is not trained again.

A checkpoint records what its run was made from: the trainer config always, and the caller's ``identity`` (for
``gcnas-train``: the architecture's key, the data's identity and the starting weights) with the seed. A resume is
refused before anything is loaded or trained when any of it differs (:func:`check_checkpoint`, which a caller with
several runs can also call first, for all of them): one line naming each ``key: recorded -> now``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from gcnas.data.identity import identity_differences
from gcnas.data.splits import DataSplits, Split
from gcnas.errors import ConfigError
from gcnas.files import atomic_write
from gcnas.train.config import RUNTIME_KEYS, TrainerConfig
from gcnas.train.distributed import all_reduce_sum, rank_and_world

__all__ = ["EpochResult", "TrainResult", "NonFiniteLossError", "FineTune", "check_layer_decay", "fit", "evaluate",
           "amp_dtype", "check_checkpoint"]

log = logging.getLogger("gcnas.train")
CHECK_EVERY = 32  # on an accelerator, training losses are read back (and checked) once per this many steps
EVAL_BATCH_BYTES = 64 << 20  # float32 input per validation batch, at most (see eval_batch_size)
SHOWN_DIFFERENCES = 4  # differences a refused resume names; the rest are counted


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
    epochs: list[EpochResult] = field(default_factory=list)  # resumed epochs included
    resumed_from: int = 0  # epochs already done when this call started
    test_acc: Optional[float] = None
    seconds: float = 0.0  # this call's wall time
    bad_images: int = 0  # training images skipped as unreadable (streamed data)

    @property
    def final_val_acc(self) -> float:
        return self.epochs[-1].val_acc if self.epochs else float("nan")

    @property
    def best_val_acc(self) -> float:
        return max((e.val_acc for e in self.epochs), default=float("nan"))


def amp_dtype(cfg: TrainerConfig, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype ``cfg.amp`` asks for on ``device`` (None: full precision; always on CPU)."""
    if device.type != "cuda" or cfg.amp is False:
        return None
    if cfg.amp == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, *, batch_size: int = 512, device: Union[torch.device, str] = "cpu",
             dtype: Optional[torch.dtype] = None, channels_last: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``split``; under torchrun each rank reads its share and the sums
    are added up, so every rank returns the same numbers."""
    device = torch.device(device)
    rank, world = rank_and_world()
    order = torch.arange(rank, len(split), world) if world > 1 else None
    was_training = model.training
    model.eval()
    sums, seen = [], 0  # per batch (loss sum, correct) on the device: read back once, not once per batch
    try:
        for xb, yb in split.batches(batch_size, order, device):
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(xb)
            sums.append(torch.stack([F.cross_entropy(logits.float(), yb, reduction="sum"),
                                     (logits.argmax(1) == yb).sum().float()]))
            seen += len(yb)
    finally:
        model.train(was_training)
    loss_sum, correct = 0.0, 0
    for batch_loss, batch_correct in (torch.stack(sums).double().tolist() if sums else []):
        loss_sum += batch_loss
        correct += int(batch_correct)
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], device)
    n = max(1, seen)
    return loss_sum / n, correct / n


def check_layer_decay(model: nn.Module, tc: TrainerConfig) -> None:
    """Refuse ``trainer.layer_decay`` for a model timm cannot split into layers (no ``group_matcher``); a caller can
    run it before anything trains (:class:`FineTune` runs it too)."""
    if tc.layer_decay is not None and not hasattr(model, "group_matcher"):
        raise ConfigError(f"trainer.layer_decay: {type(model).__name__} has no group_matcher, so timm cannot "
                          f"tell its layers apart; use null; got {tc.layer_decay!r}")


class FineTune:
    """A fine-tuning recipe's view of the model: which parameters are new (the inserted blocks and the classifier,
    ``block_lr_mult``), the backbone frozen for ``freeze_backbone_epochs``, its BatchNorm layers in eval mode with
    ``freeze_bn``, and timm's layer-wise decay with ``layer_decay``."""

    def __init__(self, model: nn.Module, tc: TrainerConfig) -> None:
        from gcnas.backbones import inserted_blocks

        self.model, self.tc = model, tc
        new_modules = list(inserted_blocks(model).values())
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        if isinstance(head, nn.Module):
            new_modules.append(head)
        self.new = {id(p): p for m in new_modules for p in m.parameters()}
        inside_new = {id(m) for nm in new_modules for m in nm.modules()}
        self.backbone = [p for p in model.parameters() if id(p) not in self.new and p.requires_grad]
        self.backbone_bn = [m for m in model.modules() if id(m) not in inside_new and isinstance(
            m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm))]
        if tc.freeze_backbone_epochs > 0 and not self.new:
            raise ConfigError("trainer.freeze_backbone_epochs: this model has no new parameters to train while the "
                              "backbone is frozen (no inserted blocks, no classifier timm can name); use 0")
        check_layer_decay(model, tc)

    def param_groups(self) -> list[dict]:
        """timm's parameter groups (no weight decay on biases and norms; per-layer ``lr_scale`` with
        ``layer_decay``), each split into backbone and new parameters, the new ones at ``lr_scale=block_lr_mult``."""
        from timm.optim import param_groups_layer_decay, param_groups_weight_decay

        tc, model = self.tc, self.model
        skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
        if tc.layer_decay is not None:
            base = param_groups_layer_decay(model, weight_decay=tc.weight_decay, layer_decay=tc.layer_decay,
                                            no_weight_decay_list=skip)
        else:
            base = param_groups_weight_decay(model, weight_decay=tc.weight_decay, no_weight_decay_list=skip)
        groups = []
        for g in base:
            old = [p for p in g["params"] if id(p) not in self.new]
            new = [p for p in g["params"] if id(p) in self.new]
            if old:
                groups.append({**g, "params": old, "lr_scale": g.get("lr_scale", 1.0)})
            if new:
                groups.append({**g, "params": new, "lr_scale": tc.block_lr_mult})
        return groups

    def start_epoch(self, epoch: int) -> None:
        frozen = epoch <= self.tc.freeze_backbone_epochs
        for p in self.backbone:
            p.requires_grad_(not frozen)
        if self.tc.freeze_bn or frozen:  # a frozen backbone's statistics stay too
            for m in self.backbone_bn:
                m.eval()

    def finish(self) -> None:
        for p in self.backbone:
            p.requires_grad_(True)


def eval_batch_size(batch_size: int, input_size) -> int:
    """Validation batches: at least the training batch, up to 512 small images (fewer, faster steps), but no more
    than EVAL_BATCH_BYTES of float32 input, so large images do not multiply the peak memory of training (without
    gradients a batch's activations are freed layer by layer, but each layer's output is batch x its map)."""
    per_image = 4 * math.prod(int(d) for d in input_size)
    return max(int(batch_size), min(512, EVAL_BATCH_BYTES // max(1, per_image)))


def _take_losses(losses: list, loss_sum: float, seen: int, epoch: int) -> tuple[float, int]:
    """Read the queued step losses back (one device sync), raise on the first non-finite one, add them to the sums."""
    if not losses:
        return loss_sum, seen
    values = torch.stack([loss for _, loss, _ in losses]).float().tolist()
    for (step, _, n), value in zip(losses, values):
        if not math.isfinite(value):
            raise NonFiniteLossError(epoch, step, value)
        loss_sum += value * n
        seen += n
    losses.clear()
    return loss_sum, seen


def _save(ckpt_dir: Path, model: nn.Module, state: dict) -> None:
    from safetensors.torch import save_model

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # state.pt is written last: it names the epoch, so a crash between the two resumes one epoch early at worst
    atomic_write(ckpt_dir / "weights.safetensors", lambda tmp: save_model(model, str(tmp)))
    atomic_write(ckpt_dir / "state.pt", lambda tmp: torch.save(state, str(tmp)))


def _epoch_order(n: int, gen: torch.Generator, epoch: int, seed: int) -> torch.Tensor:
    """This process's training order for one epoch: a permutation from the run's generator, or under torchrun this
    rank's share of one (torch's DistributedSampler: padded so every rank takes the same number of steps)."""
    rank, world = rank_and_world()
    if world == 1:
        return torch.randperm(n, generator=gen)
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def fit(model: nn.Module, data: DataSplits, cfg: Union[TrainerConfig, Mapping[str, Any]], *, seed: int = 0,
        device: Union[str, torch.device] = "cpu", ckpt_dir: Optional[Path] = None, resume: bool = True,
        on_epoch: Optional[Callable[[EpochResult], None]] = None, test: bool = True,
        on_epoch_start: Optional[Callable[[int], None]] = None,
        identity: Optional[Mapping[str, Any]] = None) -> TrainResult:
    """Train ``model`` on ``data`` with the recipe ``cfg``, validating after every epoch.

    ``on_epoch_start`` is called with each epoch's number (1-based) before its first batch, resumed runs included
    (the one-shot supernet reseeds its path draws there). ``on_epoch`` is called with each epoch's result and may
    raise to stop (pruning); a NaN or infinite loss raises
    :class:`NonFiniteLossError` naming the epoch and step. ``ckpt_dir`` makes the run resumable (see the module's
    docstring); ``identity`` (plain data: strings, numbers, lists, mappings) says what the run is made from besides
    the trainer and the seed, is recorded in the checkpoint with both, and a resume is refused unless all of it is the
    same (:func:`check_checkpoint`). With ``test`` and a test split, the result carries the test accuracy of the final
    model.
    """
    tc = cfg if isinstance(cfg, TrainerConfig) else TrainerConfig.from_mapping(cfg)
    run = _Training(model, data, tc, seed, torch.device(device))
    recorded = _run_identity(identity, seed)
    state_path = ckpt_dir / "state.pt" if ckpt_dir is not None else None
    if resume and state_path is not None and state_path.is_file():
        run.num_updates, kept = _resume(ckpt_dir, state_path, tc, recorded, run.model, run.opt, run.sched,
                                        run.scaler, run.ema, run.gen, run.result, run.device)
        if recorded is None:  # a caller that names no identity continues the recorded run: its record stays
            recorded = kept
    start = run.skip_done_epochs()
    t_start = time.perf_counter()
    run.train_model.train()
    for epoch in range(start, tc.epochs + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        er = run.epoch(epoch)
        if ckpt_dir is not None and run.rank == 0:
            _save(ckpt_dir, run.model, run.checkpoint(epoch, recorded))
        if on_epoch is not None:
            on_epoch(er)
    run.finish(test)
    run.result.seconds = time.perf_counter() - t_start
    return run.result


class _Training:
    """One :func:`fit` call's state and its steps: the model as placed and wrapped for training, the optimizer,
    scheduler, gradient scaler, EMA and Mixup built from the recipe, the run's generator, and the result so far."""

    def __init__(self, model: nn.Module, data: DataSplits, tc: TrainerConfig, seed: int,
                 device: torch.device) -> None:
        self.tc, self.data, self.seed, self.device = tc, data, seed, device
        self.rank, self.world = rank_and_world()
        self.dtype = amp_dtype(tc, device)
        self.channels_last = tc.channels_last and device.type == "cuda"
        self.model, self.train_model = self._place(model)
        if tc.compile is not False:  # the training forward only; checkpoints, EMA and evaluation use self.model
            self.train_model = torch.compile(self.train_model, mode=None if tc.compile is True else tc.compile)
        # after SyncBN: it lists the BatchNorm layers to freeze
        self.tuning = FineTune(self.model, tc) if tc.fine_tunes else None
        self.opt, self.sched = self._optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.ema = None
        if tc.ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=tc.ema_decay, device=device)
        self.mix, self.soft_ce = self._mixup()
        self.gen = torch.Generator().manual_seed(seed)
        self.result = TrainResult()
        self.num_updates = 0
        self.eval_model = self.ema.module if self.ema is not None else self.model
        # Reading a loss back waits for the device: on CUDA the losses are read every CHECK_EVERY steps, so the host
        # queues work ahead; a non-finite loss is still named by its step, and training stops within CHECK_EVERY
        # steps.
        self.check_every = 1 if device.type == "cpu" else CHECK_EVERY
        self.eval_batch = eval_batch_size(tc.batch_size, data.input_size)

    def _place(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """The model on the device (channels_last on CUDA) and, under torchrun, with SyncBN if asked; returns it and
        the module that trains (DistributedDataParallel around it under torchrun)."""
        tc, device = self.tc, self.device
        model.to(device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.world > 1 and tc.freeze_backbone_epochs > 0:
            raise ConfigError("trainer.freeze_backbone_epochs: not supported under torchrun yet "
                              "(DistributedDataParallel needs every parameter's gradient); use 0, or one process")
        if self.world == 1:
            return model, model
        if tc.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model, nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def _optimizer(self):
        """timm's optimizer (over the fine-tuning's parameter groups, if any) and scheduler (None: a constant lr)."""
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        tc = self.tc
        opt = create_optimizer_v2(self.model if self.tuning is None else self.tuning.param_groups(), opt=tc.opt,
                                  lr=tc.lr, weight_decay=tc.weight_decay, momentum=tc.momentum)
        # batches per epoch, per rank
        steps = max(1, math.ceil(math.ceil(len(self.data.train) / self.world) / tc.batch_size))
        updates = max(1, math.ceil(steps / tc.accum_steps))
        sched, _ = create_scheduler_v2(opt, sched=tc.sched, num_epochs=tc.epochs, warmup_epochs=tc.warmup_epochs,
                                       warmup_lr=tc.warmup_lr, min_lr=tc.min_lr, step_on_epochs=tc.step_on_epochs,
                                       updates_per_epoch=updates)
        if sched is None:  # timm's schedulers apply a group's lr_scale; without one, it is applied here, once
            for group in opt.param_groups:
                group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        return opt, sched

    def _mixup(self):
        """timm's Mixup/CutMix and the soft-target loss it needs, or (None, None) when the recipe mixes nothing."""
        tc = self.tc
        if not (tc.mixup > 0 or tc.cutmix > 0):
            return None, None
        import numpy as np
        from timm.data import Mixup
        from timm.loss import SoftTargetCrossEntropy

        soft_ce = SoftTargetCrossEntropy()
        np.random.seed(self.seed)  # timm's Mixup draws from numpy's global generator
        return Mixup(mixup_alpha=tc.mixup, cutmix_alpha=tc.cutmix, label_smoothing=tc.label_smoothing,
                     num_classes=self.data.num_classes), soft_ce

    def skip_done_epochs(self) -> int:
        """The scheduler moved past the epochs a resumed checkpoint holds; returns the first epoch to train."""
        start = len(self.result.epochs) + 1
        if self.sched is not None and start > 1:
            self.sched.step(start - 1)
            self.sched.step_update(self.num_updates)
        return start

    def update(self) -> None:
        """One optimizer update from the gradients added up so far."""
        tc, opt, scaler = self.tc, self.opt, self.scaler
        if tc.grad_clip:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        self.num_updates += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)
        if self.sched is not None:
            self.sched.step_update(self.num_updates)

    def loss(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, int]:
        """One batch's training loss (under autocast) and the number of images it covers."""
        target = yb
        if self.mix is not None:  # soft targets, smoothed by Mixup itself; it pairs images, so an odd one is left out
            even = len(yb) - len(yb) % 2
            xb, target = self.mix(xb[:even], yb[:even])
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.train_model(xb)
            if self.mix is None:
                loss = F.cross_entropy(logits, target, label_smoothing=self.tc.label_smoothing)
            else:
                loss = self.soft_ce(logits.float(), target)
        return loss, len(target)

    def train_batches(self, epoch: int) -> tuple[float, int]:
        """One pass over this process's share of the training split; returns (loss sum, images) of this process."""
        tc = self.tc
        order = _epoch_order(len(self.data.train), self.gen, epoch, self.seed)
        loss_sum, seen, pending = 0.0, 0, 0
        losses: list[tuple[int, torch.Tensor, int]] = []  # (step, loss, images) not yet read back from the device
        self.opt.zero_grad(set_to_none=True)
        for i, (xb, yb) in enumerate(self.data.train.batches(tc.batch_size, order, self.device)):
            if len(yb) < 2:  # a batch of one breaks batch norm; the remainder is dropped
                continue
            loss, n = self.loss(xb, yb)
            losses.append((i, loss.detach(), n))
            if len(losses) >= self.check_every:
                loss_sum, seen = _take_losses(losses, loss_sum, seen, epoch)
            self.scaler.scale(loss / tc.accum_steps if tc.accum_steps > 1 else loss).backward()
            pending += 1
            if pending == tc.accum_steps:
                self.update()
                pending = 0
        loss_sum, seen = _take_losses(losses, loss_sum, seen, epoch)
        if pending:  # the epoch's last, shorter accumulation
            self.update()
        return loss_sum, seen

    def epoch(self, epoch: int) -> EpochResult:
        """Train one epoch, validate, step the scheduler; the epoch's result, also added to the run's."""
        if self.tuning is not None:  # evaluate() left the model in train mode; the tuning's frozen parts are set again
            self.train_model.train()
            self.tuning.start_epoch(epoch)
        t0 = time.perf_counter()
        loss_sum, seen = self.train_batches(epoch)
        self.result.bad_images += int(getattr(self.data.train, "take_bad_count", lambda: 0)())
        loss_sum, seen = all_reduce_sum([loss_sum, seen], self.device)
        val_loss, val_acc = evaluate(self.eval_model, self.data.val, batch_size=self.eval_batch, device=self.device,
                                     dtype=self.dtype, channels_last=self.channels_last)
        if self.sched is not None:
            self.sched.step(epoch, val_acc)
        er = EpochResult(epoch, loss_sum / max(1, seen), val_loss, val_acc, time.perf_counter() - t0)
        self.result.epochs.append(er)
        return er

    def checkpoint(self, epoch: int, recorded: Optional[Mapping[str, Any]]) -> dict:
        """What ``state.pt`` holds after ``epoch`` (read back by :func:`_resume`)."""
        opt, sched, scaler, ema = self.opt, self.sched, self.scaler, self.ema
        return {
            "epoch": epoch, "trainer": json.dumps(self.tc.to_dict(), sort_keys=True), "updates": self.num_updates,
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else {},
            "scaler": scaler.state_dict(), "ema": ema.module.state_dict() if ema is not None else {},
            "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "history": [[e.epoch, e.train_loss, e.val_loss, e.val_acc, e.seconds] for e in self.result.epochs],
            **({"identity": json.dumps(recorded, sort_keys=True)} if recorded is not None else {})}

    def finish(self, test: bool) -> None:
        """Unfreeze, take the EMA weights (the model that was validated), and measure the test accuracy if asked."""
        if self.tuning is not None:
            self.tuning.finish()
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
        if test and self.data.test is not None:
            self.result.test_acc = evaluate(self.model, self.data.test, batch_size=self.eval_batch,
                                            device=self.device, dtype=self.dtype,
                                            channels_last=self.channels_last)[1]


def _run_identity(identity: Optional[Mapping[str, Any]], seed: int) -> Optional[dict[str, Any]]:
    """The identity a checkpoint records and a resume compares, in its JSON form (what state.pt holds, so that a
    tuple and the list it is read back as compare equal); None where the caller names none."""
    if identity is None:
        return None
    return json.loads(json.dumps({**identity, "seed": seed}, sort_keys=True, default=str))


def _differences(state: Mapping[str, Any], tc: TrainerConfig, identity: Optional[Mapping[str, Any]]) -> list[str]:
    """``key: recorded -> now`` for each way the run in ``state`` differs from this one. A section that is a mapping
    (``data``) is compared by :func:`~gcnas.data.identity.identity_differences` under its own prefix, so its rules
    hold there (data with the same fingerprint is the same data wherever its root is)."""
    out = []
    recorded = json.loads(state["identity"]) if state.get("identity") else None
    if identity is not None and recorded is not None:
        for k in sorted(set(recorded) | set(identity)):
            a, b = recorded.get(k), identity.get(k)
            if isinstance(a, Mapping) and isinstance(b, Mapping):
                out += identity_differences(a, b, f"{k}.")
            else:
                out += identity_differences({k: a}, {k: b})
    before, now = json.loads(state.get("trainer", "{}")), tc.to_dict()
    # a key the checkpoint predates counts as its default (adding a trainer key must not orphan old checkpoints); the
    # keys that change only the speed (channels_last, compile) may differ: the run computes the same either way
    before = {k: before.get(k, TrainerConfig.default(k)) for k in sorted(set(before) | set(now))
              if k not in RUNTIME_KEYS}
    return out + [f"trainer.{k}: {_yaml(before[k])} -> {_yaml(now.get(k))}" for k in before if before[k] != now.get(k)]


def _yaml(value: Any) -> str:
    """A trainer value as the user writes it on the command line (null, not None)."""
    return "null" if value is None else repr(value)


def _check_state(ckpt_dir: Path, state: Mapping[str, Any], tc: TrainerConfig,
                 identity: Optional[Mapping[str, Any]]) -> None:
    diffs = _differences(state, tc, identity)
    if diffs:
        shown = "; ".join(diffs[:SHOWN_DIFFERENCES])
        if len(diffs) > SHOWN_DIFFERENCES:
            shown += f"; and {len(diffs) - SHOWN_DIFFERENCES} more"
        raise ConfigError(f"train.dir: the checkpoint in {ckpt_dir} is of another run (checkpoint -> this run: "
                          f"{shown}); resume with the same settings, or train into a new train.dir, or start over "
                          f"there with train.resume=false")


def check_checkpoint(ckpt_dir: Union[str, Path], cfg: Union[TrainerConfig, Mapping[str, Any]], *, seed: int = 0,
                     identity: Optional[Mapping[str, Any]] = None) -> int:
    """Refuse (:class:`~gcnas.errors.ConfigError`) to resume the checkpoint in ``ckpt_dir`` unless :func:`fit` with
    these arguments would resume it as the same run; returns the epochs it holds (0 where there is none).

    :func:`fit` checks this itself before it loads anything; a caller that trains several runs (seeds, models) calls
    it for all of them first, so that a refusal does not come after hours of the first run.
    """
    tc = cfg if isinstance(cfg, TrainerConfig) else TrainerConfig.from_mapping(cfg)
    state_path = Path(ckpt_dir) / "state.pt"
    if not state_path.is_file():
        return 0
    # mapped, not read: the optimizer's tensors in it are not needed to check a run
    state = torch.load(str(state_path), map_location="cpu", weights_only=True, mmap=True)
    _check_state(Path(ckpt_dir), state, tc, _run_identity(identity, seed))
    return len(state.get("history", []))


def _resume(ckpt_dir: Path, state_path: Path, tc: TrainerConfig, identity: Optional[dict[str, Any]],
            model: nn.Module, opt, sched, scaler, ema, gen: torch.Generator, result: TrainResult,
            device: torch.device) -> tuple[int, Optional[dict[str, Any]]]:
    """Check, then load a checkpoint written by :func:`fit` into the run's objects; returns the optimizer updates done
    and the identity the checkpoint records (None: none)."""
    from safetensors.torch import load_model

    state = torch.load(str(state_path), map_location="cpu", weights_only=True)
    _check_state(ckpt_dir, state, tc, identity)  # before any weight is loaded into the model
    if identity is not None and not state.get("identity"):
        # refusing would throw away the work of a run that may well be this one; what could be checked was, and the
        # weights' names are checked next
        log.warning("the checkpoint in %s predates recorded identities: its trainer matches, but its architecture, "
                    "data, seed and starting weights cannot be checked; resuming it (train.resume=false starts over)",
                    ckpt_dir)
    missing, unexpected = load_model(model, str(ckpt_dir / "weights.safetensors"), strict=False, device=str(device))
    if missing or unexpected:  # a checkpoint without a recorded identity can still be of another model
        raise ConfigError(f"train.dir: the checkpoint in {ckpt_dir} belongs to another model (missing "
                          f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); use a new train.dir or "
                          f"train.resume=false")
    opt.load_state_dict(state["optimizer"])
    if sched is not None:
        sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    if ema is not None and state.get("ema"):
        ema.module.load_state_dict(state["ema"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    result.epochs = [EpochResult(*row) for row in state["history"]]
    result.resumed_from = len(result.epochs)
    if result.epochs:
        log.info("resuming %s after epoch %d of %d", ckpt_dir, len(result.epochs), tc.epochs)
    return int(state.get("updates", 0)), json.loads(state["identity"]) if state.get("identity") else None
