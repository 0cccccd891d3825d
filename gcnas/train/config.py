"""The trainer's recipe: one dataclass states every key, its type and its default.

``conf/trainer/proxy.yaml`` (search trials) and ``conf/trainer/full.yaml`` (``gcnas-train``) are two settings of
these keys, not two trainers. :meth:`TrainerConfig.from_mapping` reads a ``trainer`` config section and raises a
:class:`~gcnas.errors.ConfigError` naming the key, the bad value and what is valid.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from gcnas.errors import ConfigError

__all__ = ["TrainerConfig", "AMP_MODES"]

AMP_MODES = (True, False, "bf16", "fp16")


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    name: str = "custom"
    epochs: int
    batch_size: int
    opt: str = "sgd"               # any timm.optim.create_optimizer_v2 name
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    sched: str = "cosine"          # any timm.scheduler.create_scheduler_v2 name
    step_on_epochs: bool = False   # the schedule advances per epoch (true) or per optimizer update (false)
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0             # timm's Mixup: mixup alpha (0: off)
    cutmix: float = 0.0            # timm's Mixup: cutmix alpha (0: off)
    amp: Union[bool, str] = True   # true | bf16 | fp16 | false; CUDA only
    channels_last: bool = True     # CUDA only
    grad_clip: Optional[float] = None
    accum_steps: int = 1           # batches whose gradients add up to one optimizer update
    ema_decay: Optional[float] = None  # timm's ModelEmaV3; validation (and the trained model) use the average
    sync_bn: bool = False          # SyncBatchNorm under torchrun
    # fine-tuning a pretrained backbone (trainer=finetune); the defaults train every parameter alike
    block_lr_mult: float = 1.0     # learning-rate factor of the new parameters: inserted blocks and the classifier
    freeze_backbone_epochs: int = 0  # first epochs train only the new parameters
    freeze_bn: bool = False        # the backbone's BatchNorm layers keep their statistics (eval mode) throughout
    layer_decay: Optional[float] = None  # timm's layer-wise lr decay (models with a group_matcher), e.g. 0.75

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], where: str = "trainer") -> "TrainerConfig":
        """Read a ``trainer`` section; ``seed`` (a search space may search it) is the caller's, not the recipe's."""
        cfg = {k: v for k, v in dict(cfg).items() if k != "seed"}
        valid = cls.keys()
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            hint = " (renamed opt, timm's name, when the two training loops became one)" \
                if unknown[0] == "optimizer" else ""
            raise ConfigError(f"{where}.{unknown[0]}: unknown key{hint}; valid keys are {', '.join(valid)}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and cfg.get(f.name) is None]
        if missing:
            raise ConfigError(f"{where}.{missing[0]}: required (no default)")

        def number(key: str, lo: float = 0.0, integer: bool = False, positive: bool = False,
                   optional: bool = False) -> None:
            v = cfg.get(key)
            if v is None and (optional or key not in cfg):
                return
            ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok_type or v < lo or (positive and v <= 0):
                kind = "an integer" if integer else "a number"
                bound = f"> {lo}" if positive else f">= {lo}"
                raise ConfigError(f"{where}.{key}: must be {kind} {bound}{' or null' if optional else ''}; got {v!r}")

        number("epochs", 1, integer=True)
        number("batch_size", 2, integer=True)
        number("accum_steps", 1, integer=True)
        for k in ("lr", "weight_decay", "momentum", "warmup_epochs", "warmup_lr", "min_lr", "label_smoothing", "mixup",
                  "cutmix"):
            number(k)
        number("grad_clip", positive=True, optional=True)
        number("block_lr_mult", positive=True)
        number("freeze_backbone_epochs", 0, integer=True)
        ld = cfg.get("layer_decay")
        if ld is not None and (isinstance(ld, bool) or not isinstance(ld, (int, float)) or not 0 < ld <= 1):
            raise ConfigError(f"{where}.layer_decay: must be a number in (0, 1] (e.g. 0.75) or null; got {ld!r}")
        if cfg.get("label_smoothing", 0.0) >= 1:
            raise ConfigError(f"{where}.label_smoothing: must be below 1; got {cfg['label_smoothing']!r}")
        ema = cfg.get("ema_decay")
        if ema is not None and (isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 < ema < 1):
            raise ConfigError(f"{where}.ema_decay: must be a number between 0 and 1 (e.g. 0.999) or null; got {ema!r}")
        if cfg.get("amp", True) not in AMP_MODES:
            raise ConfigError(f"{where}.amp: must be true, false, bf16 or fp16; got {cfg.get('amp')!r}")
        for k in ("step_on_epochs", "channels_last", "sync_bn", "freeze_bn"):
            if k in cfg and not isinstance(cfg[k], bool):
                raise ConfigError(f"{where}.{k}: must be true or false; got {cfg[k]!r}")
        for k in ("opt", "sched", "name"):
            if k in cfg and (not isinstance(cfg[k], str) or not cfg[k]):
                raise ConfigError(f"{where}.{k}: must be a non-empty string; got {cfg[k]!r}")
        _check_factories(cfg, where)
        return cls(**cfg)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def default(cls, key: str) -> Any:
        """A key's default (``dataclasses.MISSING`` for the required ones and for keys it does not have)."""
        return next((f.default for f in dataclasses.fields(cls) if f.name == key), dataclasses.MISSING)

    @property
    def fine_tunes(self) -> bool:
        return (self.block_lr_mult != 1.0 or self.freeze_backbone_epochs > 0 or self.freeze_bn
                or self.layer_decay is not None)


def _check_factories(cfg: Mapping[str, Any], where: str) -> None:
    """Unknown optimizer or scheduler names, found before training (timm raises deep inside otherwise)."""
    from timm.optim import list_optimizers

    if "opt" in cfg:
        known = set(list_optimizers())
        name = str(cfg["opt"]).lower()
        name = name[len("lookahead_"):] if name.startswith("lookahead_") else name  # timm's Lookahead wrapper
        if name not in known:
            raise ConfigError(f"{where}.opt: unknown optimizer {cfg['opt']!r}; timm knows "
                              f"{', '.join(sorted(known)[:12])}, ... (timm.optim.list_optimizers())")
    scheds = ("cosine", "tanh", "step", "multistep", "poly", "wsd", "rsqrt", "constant", "plateau", "none")
    if "sched" in cfg and cfg["sched"] not in scheds:
        raise ConfigError(f"{where}.sched: unknown schedule {cfg['sched']!r}; valid are {', '.join(scheds)}")
