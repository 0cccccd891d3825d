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
from gcnas.schema import key, read

__all__ = ["TrainerConfig", "AMP_MODES", "SCHEDULES", "COMPILE_MODES", "RUNTIME_KEYS"]

AMP_MODES = (True, False, "bf16", "fp16")


# torch.compile's modes; trainer.compile=true is "default"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# keys that change how fast a run trains, not what it computes: a checkpoint resumes, and a study's identity holds,
# whatever they are
RUNTIME_KEYS = ("channels_last", "compile")


SCHEDULES = ("cosine", "tanh", "step", "multistep", "poly", "wsd", "rsqrt", "constant", "plateau", "none")


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    name: str = "custom"
    epochs: int = key(ge=1)
    batch_size: int = key(ge=2)
    opt: str = "sgd"               # any timm.optim.create_optimizer_v2 name
    lr: float = key(ge=0)
    momentum: float = key(0.9, ge=0)
    weight_decay: float = key(0.0, ge=0)
    sched: str = key("cosine", words=SCHEDULES)  # timm.scheduler.create_scheduler_v2's names
    step_on_epochs: bool = False   # the schedule advances per epoch (true) or per optimizer update (false)
    warmup_epochs: float = key(0.0, ge=0)
    warmup_lr: float = key(0.0, ge=0)
    min_lr: float = key(0.0, ge=0)
    label_smoothing: float = key(0.0, ge=0, lt=1)
    mixup: float = key(0.0, ge=0)  # timm's Mixup: mixup alpha (0: off)
    cutmix: float = key(0.0, ge=0)  # timm's Mixup: cutmix alpha (0: off)
    amp: Union[bool, str] = key(True, words=[m for m in AMP_MODES if isinstance(m, str)],
                                expect="true, false, bf16 or fp16")  # CUDA only
    channels_last: bool = True     # CUDA only
    # torch.compile the training forward (and backward); false, true or one of COMPILE_MODES
    compile: Union[bool, str] = key(False, words=COMPILE_MODES,
                                    expect="true, false, " + ", ".join(COMPILE_MODES))
    grad_clip: Optional[float] = key(None, gt=0)
    accum_steps: int = key(1, ge=1)  # batches whose gradients add up to one optimizer update
    ema_decay: Optional[float] = key(None, gt=0, lt=1)  # timm's ModelEmaV3, e.g. 0.999; validation uses the average
    sync_bn: bool = False          # SyncBatchNorm under torchrun
    # fine-tuning a pretrained backbone (trainer=finetune); the defaults train every parameter alike
    block_lr_mult: float = key(1.0, gt=0)  # learning-rate factor of the new parameters: inserted blocks, classifier
    freeze_backbone_epochs: int = key(0, ge=0)  # first epochs train only the new parameters
    freeze_bn: bool = False        # the backbone's BatchNorm layers keep their statistics (eval mode) throughout
    layer_decay: Optional[float] = key(None, gt=0, le=1)  # timm's layer-wise lr decay (a group_matcher), e.g. 0.75

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], where: str = "trainer") -> "TrainerConfig":
        """Read a ``trainer`` section; ``seed`` (a search space may search it) is the caller's, not the recipe's."""
        cfg = {k: v for k, v in dict(cfg).items() if k != "seed"}
        if "optimizer" in cfg:
            raise ConfigError(f"{where}.optimizer: unknown key (renamed opt, timm's name, when the two training loops "
                              f"became one); valid keys are {', '.join(cls.keys())}")
        tc = read(cls, cfg, where)
        if not tc.opt or not tc.name:
            raise ConfigError(f"{where}.{'opt' if not tc.opt else 'name'}: must be a non-empty string; got ''")
        _check_optimizer(tc.opt, where)
        return tc

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


def _check_optimizer(opt: str, where: str) -> None:
    """An unknown optimizer name, found before training (timm raises deep inside otherwise)."""
    from timm.optim import list_optimizers

    known = set(list_optimizers())
    name = opt.lower()
    name = name[len("lookahead_"):] if name.startswith("lookahead_") else name  # timm's Lookahead wrapper
    if name not in known:
        raise ConfigError(f"{where}.opt: unknown optimizer {opt!r}; timm knows {', '.join(sorted(known)[:12])}, ... "
                          "(timm.optim.list_optimizers())")
