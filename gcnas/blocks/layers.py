"""Activation, normalisation and gate layers by name, for the blocks' transforms.

Layer types are arguments (``act="relu"``, ``act=nn.GELU``, ``norm="layernorm"``) so that every variant of the paper's
framework is a constructor call, not a subclass. Names resolve through small registries whose errors list the valid
names.
"""
from __future__ import annotations

import copy
from typing import Iterable, Optional, Union

from torch import nn

from gcnas.errors import ConfigError
from gcnas.registry import Registry

__all__ = ["ACTIVATIONS", "NORMS", "GATES", "ActArg", "create_act", "act_name", "create_norm", "create_gate",
           "init_official_"]

ActArg = Union[str, type, nn.Module, None]

ACTIVATIONS: Registry[type] = Registry("act")
for _name, _cls in {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "hard_swish": nn.Hardswish,
    "mish": nn.Mish,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,
    "prelu": nn.PReLU,
    "identity": nn.Identity,
}.items():
    ACTIVATIONS.register(_name, _cls)

# Gates squash the scale transform's output before it multiplies the features (fusion "scale").
GATES: Registry[type] = Registry("gate")
GATES.register("sigmoid", nn.Sigmoid)
GATES.register("hard_sigmoid", nn.Hardsigmoid)

NORMS: Registry[object] = Registry("norm")
# The transform runs on the pooled context, a (B, C) vector: LayerNorm over C is the paper's LayerNorm over [C, 1, 1].
# ``supernet``: the name of the one-shot supernet's shared MLP family whose affine parameters it slices with the hidden
# width (LayerNorm normalises the slice alone); BatchNorm's running statistics cannot be sliced, so it declares none.
NORMS.register("layernorm", lambda c, eps: nn.LayerNorm(c, eps=eps), supernet="ln")
NORMS.register("batchnorm", lambda c, eps: nn.BatchNorm1d(c, eps=eps))


def create_act(act: ActArg, *, owner: str = "") -> nn.Module:
    """Build an activation from a registered name, an ``nn.Module`` class, an instance (copied) or ``None``."""
    if act is None:
        return nn.Identity()
    if isinstance(act, str):
        return ACTIVATIONS.get(act, owner=owner)()
    if isinstance(act, type) and issubclass(act, nn.Module):
        return act()
    if isinstance(act, nn.Module):
        return copy.deepcopy(act)
    raise ConfigError(ACTIVATIONS.unknown_message(act, owner=owner) + ", an nn.Module class or instance, or None")


def act_name(act: ActArg) -> str | None:
    """A stable name for ``act``: the registered name where one exists, else the class name."""
    if act is None:
        return None
    if isinstance(act, str):
        return act
    cls = act if isinstance(act, type) else type(act)
    for name in ACTIVATIONS:
        if ACTIVATIONS.get(name) is cls:
            return name
    return cls.__name__


def create_norm(norm: str | None, channels: int, eps: float, *, owner: str = "") -> nn.Module:
    if norm is None:
        return nn.Identity()
    return NORMS.get(norm, owner=owner)(channels, eps)


def create_gate(gate: str, *, owner: str = "") -> nn.Module:
    return GATES.get(gate, owner=owner)()


def init_official_(*, kaiming: Iterable[Optional[nn.Module]] = (), zero: Iterable[Optional[nn.Module]] = ()) -> None:
    """The official GCNet initialisation, the one every block and the one-shot supernet use: the attention conv (and
    the NL block's embeddings) Kaiming normal (fan_in, for ReLU) with zero bias, and the last layer of every
    transform zero, weight and bias, so an ``add`` block starts as the identity. ``None`` entries are skipped."""
    for layer in kaiming:
        if layer is not None:
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    for layer in zero:
        if layer is not None:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
