"""Transform: the second stage of the global context framework.

Paper: Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019
(arXiv:1904.11492), sections 4.1-4.2.

A transform maps the pooled context (B, C) to one term per channel (B, C) that the fusion applies to every position.
A 1x1 conv on a 1x1 map is a fully connected layer, so every transform here is built from ``nn.Linear``:

* ``bottleneck``: C -> C*ratio, norm, act, C*ratio -> C. The paper's GC transform with ``norm="layernorm"`` (LayerNorm
  over [C*ratio, 1, 1], which on a vector is LayerNorm over C*ratio); it eases optimisation of the two-layer bottleneck.
* ``se``: C -> C*ratio, act, C*ratio -> C, no norm: SE's excitation.
* ``conv``: one C -> C layer: the simplified NL block's ``W_v``.
* ``identity``: the context itself.

The last layer of every transform starts at zero (official initialisation), so an ``add`` fusion starts as the
identity function.
"""
from __future__ import annotations

import numbers
from typing import Callable

import torch
from torch import nn

from gcnas.blocks.layers import ActArg, create_act, create_norm, init_official_
from gcnas.errors import ConfigError
from gcnas.registry import Registry

__all__ = ["TRANSFORMS", "TRANSFORMS_WITH_RATIO", "TRANSFORMS_WITH_NORM", "MLPTransform", "ConvTransform",
           "IdentityTransform", "hidden_channels_for", "is_ratio", "check_ratio", "transform_terms"]

def is_ratio(value: object) -> bool:
    """A reduction ratio (of a transform, or of the NL block's embedding) is a real number in (0, 1]."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and 0 < value <= 1


def check_ratio(value: object, owner: str = "") -> float:
    """``value`` as a float if :func:`is_ratio`; else a ConfigError naming ``owner`` (e.g. ``spec``) and the range."""
    if not is_ratio(value):
        raise ConfigError(f"{owner + ': ' if owner else ''}ratio must be a number in (0, 1]; got {value!r}")
    return float(value)


def hidden_channels_for(channels: int, ratio: float) -> int:
    """Hidden width of a ratio-reduced transform: ``floor(channels * ratio)``, as the official code computes it.

    The small tolerance keeps ratios such as ``planes / channels`` read back from a checkpoint exact.
    """
    return int(channels * ratio + 1e-6)


Stage = Callable[[torch.Tensor], torch.Tensor]  # a transform or a gate: a module, or a function of the supernet's


def transform_terms(c: torch.Tensor, scale: Stage | None, add: Stage | None,
                    gate: Stage | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The fusion terms of context ``c`` (B, C): ``gate(scale(c))`` and ``add(c)``, each None where its transform is
    (a design without that fusion)."""
    return (gate(scale(c)) if scale is not None else None), (add(c) if add is not None else None)


class MLPTransform(nn.Module):
    """fc1 (C -> hidden), norm, act, fc2 (hidden -> C); ``norm=None`` gives SE's transform."""

    def __init__(self, channels: int, hidden: int, norm: str | None = "layernorm", act: ActArg = "relu",
                 norm_eps: float = 1e-5, *, owner: str = "") -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.norm = create_norm(norm, hidden, norm_eps, owner=owner)
        self.act = create_act(act, owner=owner)
        self.fc2 = nn.Linear(hidden, channels)
        self.reset_parameters()

    @property
    def last(self) -> nn.Linear:
        return self.fc2

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        if hasattr(self.norm, "reset_parameters"):
            self.norm.reset_parameters()
        init_official_(zero=[self.fc2])

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(c))))


class ConvTransform(nn.Module):
    """One C -> C layer (the simplified NL block's transform)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)
        self.reset_parameters()

    @property
    def last(self) -> nn.Linear:
        return self.fc

    def reset_parameters(self) -> None:
        init_official_(zero=[self.fc])

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.fc(c)


class IdentityTransform(nn.Module):
    """The context itself, no parameters."""

    last = None

    def reset_parameters(self) -> None:
        pass

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return c


# Each entry declares the design fields it reads (``uses``: gcnas.blocks.design.design_fields answers every caller from
# these) and how the one-shot supernet shares its weights between candidates (``supernet``: "mlp", one MLP per norm
# whose width is sliced; "linear", one C -> C layer; "weightless"); an entry without ``supernet`` is refused there.
TRANSFORMS: Registry[object] = Registry("transform")
TRANSFORMS.register("bottleneck", lambda c, h, norm, act, eps, owner: MLPTransform(c, h, norm, act, eps, owner=owner),
                    uses=("ratio", "norm", "act"), supernet="mlp")
TRANSFORMS.register("se", lambda c, h, norm, act, eps, owner: MLPTransform(c, h, None, act, eps, owner=owner),
                    uses=("ratio", "act"), supernet="mlp")
TRANSFORMS.register("conv", lambda c, h, norm, act, eps, owner: ConvTransform(c), uses=(), supernet="linear")
TRANSFORMS.register("identity", lambda c, h, norm, act, eps, owner: IdentityTransform(), uses=(),
                    supernet="weightless")

# The built-in transforms that use ratio / norm, as these names have always listed them; code asks design_fields,
# which also knows transforms registered later.
TRANSFORMS_WITH_RATIO = tuple(n for n in TRANSFORMS if "ratio" in TRANSFORMS.traits(n)["uses"])
TRANSFORMS_WITH_NORM = tuple(n for n in TRANSFORMS if "norm" in TRANSFORMS.traits(n)["uses"])
