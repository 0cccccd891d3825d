"""The global context block: context modeling -> transform -> fusion.

Paper: Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019
(arXiv:1904.11492).

The paper abstracts NL, simplified NL, SE and its own GC block into one framework: (a) context modeling pools the
features of all positions into a global context vector, (b) a transform captures channel-wise dependencies of that
vector, (c) fusion aggregates the result into every position. :class:`GlobalContextBlock` builds any member of that
family from three names; :mod:`gcnas.blocks.presets` names the paper's members.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Any, Iterator, Optional

import torch
from torch import nn

from gcnas.blocks.context import CONTEXTS
from gcnas.blocks.fused import global_context_fused
from gcnas.blocks.fusion import FusionArg, fuse, parse_fusion
from gcnas.blocks.layers import GATES, NORMS, ActArg, act_name, create_act, create_gate
from gcnas.blocks.design import design_fields
from gcnas.blocks.transform import TRANSFORMS, Stage, check_ratio, hidden_channels_for, transform_terms
from gcnas.errors import ConfigError

__all__ = ["GlobalContextBlock", "DegenerateBlockWarning", "global_context_forward"]


class DegenerateBlockWarning(UserWarning):
    """A block whose output cannot depend on its input's context (see :class:`GlobalContextBlock`)."""


_OWNER = "GlobalContextBlock"


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{_OWNER}: {name} must be a positive integer; got {value!r}")
    return int(value)


def global_context_forward(x: torch.Tensor, context: Stage, scale: Stage | None, add: Stage | None,
                           gate: Stage | None) -> torch.Tensor:
    """A design's forward, the one both :class:`GlobalContextBlock` and the one-shot supernet's choice run: context
    modeling ``context(x)`` (B, C), the fusion terms ``gate(scale(c))`` and ``add(c)`` (None: that fusion is absent),
    then fusion into every position of ``x``."""
    return fuse(x, *transform_terms(context(x), scale, add, gate))


def _check_arguments(context: Any, transform: Any, ratio: Any, fusion: Any, norm: Any, gate: Any, norm_eps: Any,
                     act: Any) -> tuple[str, ...]:
    """A ConfigError naming the first bad argument, before anything is built; else the canonical fusion."""
    CONTEXTS.get(context, owner=_OWNER)
    TRANSFORMS.get(transform, owner=_OWNER)
    check_ratio(ratio, _OWNER)
    fusions = parse_fusion(fusion, owner=_OWNER)
    if norm is not None and norm not in NORMS:
        raise ConfigError(NORMS.unknown_message(norm, owner=_OWNER) + " or None")
    GATES.get(gate, owner=_OWNER)
    if isinstance(norm_eps, bool) or not isinstance(norm_eps, numbers.Real) or not norm_eps > 0:
        raise ConfigError(f"{_OWNER}: norm_eps must be a positive number; got {norm_eps!r}")
    create_act(act, owner=_OWNER)
    return fusions


def _hidden_width(channels: int, ratio: float, hidden_channels: Any) -> tuple[int, float]:
    """The hidden width of a ratio-reduced transform, and the ratio it stands for (``hidden_channels`` wins)."""
    if hidden_channels is None:
        hidden = hidden_channels_for(channels, ratio)
        if hidden < 1:
            raise ConfigError(
                f"{_OWNER}: ratio={ratio!r} leaves no hidden channel for channels={channels} "
                f"(floor({channels} * {ratio!r}) = 0); valid ratios are in [1/{channels}, 1]")
        return hidden, ratio
    hidden = _check_positive_int("hidden_channels", hidden_channels)
    if hidden > channels:
        raise ConfigError(f"{_OWNER}: hidden_channels must be in [1, channels={channels}]; got {hidden}")
    return hidden, hidden / channels


class GlobalContextBlock(nn.Module):
    """A member of the paper's global context framework.

    Args:
        channels: channels C of the input (B, C, H, W); the output has the same shape.
        context: context modeling, ``"att"`` (attention pooling: 1x1 conv, softmax over positions, weighted sum) or
            ``"avg"`` (global average pooling).
        transform: ``"bottleneck"`` (C -> C*ratio, norm, act, -> C), ``"se"`` (the same without norm), ``"conv"``
            (one C -> C layer) or ``"identity"``.
        ratio: reduction ratio of ``bottleneck`` and ``se``, in (0, 1]; the hidden width is ``floor(C * ratio)`` and
            must be at least 1. Ignored by ``conv`` and ``identity``.
        fusion: ``"add"`` (x + t), ``"scale"`` (x * sigmoid(t)) or both, ``["scale", "add"]``, each with its own
            transform.
        norm: ``"layernorm"`` (the paper's, over [C*ratio, 1, 1]), ``"batchnorm"`` or ``None``; only ``bottleneck``
            has a norm, other transforms ignore it.
        act: activation inside ``bottleneck`` and ``se``: a name (``"relu"``, ``"gelu"``, ...), an ``nn.Module``
            class or instance, or ``None``.
        hidden_channels: hidden width, overriding ``ratio`` (checkpoints whose width is not ``floor(C * ratio)``).
        gate: squashing of the scale fusion, ``"sigmoid"`` (paper) or ``"hard_sigmoid"``.
        norm_eps: epsilon of the norm layer.
        fused: train through the fused autograd function (fewer passes over memory, smaller peak memory). ``None``
            (default): on the CPU, where it is faster; on a GPU plain autograd is faster (H200, bfloat16,
            channels_last: 0.8x the fused time, ``benchmarks/gpu.py``). Set False for double backward (gradient
            penalties) or functorch transforms, which the fused function does not support.
    """

    def __init__(
        self,
        channels: int,
        context: str = "att",
        transform: str = "bottleneck",
        ratio: float = 1 / 16,
        fusion: FusionArg = "add",
        norm: str | None = "layernorm",
        act: ActArg = "relu",
        *,
        hidden_channels: int | None = None,
        gate: str = "sigmoid",
        norm_eps: float = 1e-5,
        fused: Optional[bool] = None,
    ) -> None:
        super().__init__()
        channels = _check_positive_int("channels", channels)
        fusions = _check_arguments(context, transform, ratio, fusion, norm, gate, norm_eps, act)
        fields = design_fields(transform, fusions, owner=_OWNER)
        hidden = None
        if "ratio" in fields:
            hidden, ratio = _hidden_width(channels, ratio, hidden_channels)
        if hidden == 1 and "norm" in fields and norm == "layernorm":
            warnings.warn(f"{_OWNER}: ratio={ratio!r} leaves 1 hidden channel for channels={channels}, and LayerNorm "
                          "over one channel outputs a constant: this block adds the same vector to every input, no "
                          f"global context. Use ratio >= {2 / channels:g} or norm=None", DegenerateBlockWarning,
                          stacklevel=2)

        self.channels = channels
        self.context_name = context
        self.transform_name = transform
        self.ratio = float(ratio)
        self.fusion = fusions
        self.norm_name = norm if "norm" in fields else None
        self.act_name = act_name(act) if "act" in fields else None
        self.gate_name = gate
        self.hidden_channels = hidden
        self.norm_eps = float(norm_eps)
        self.fused = None if fused is None else bool(fused)

        self.context = CONTEXTS.get(context)(channels)
        make_transform = TRANSFORMS.get(transform)
        build = lambda: make_transform(channels, hidden, norm, act, norm_eps, _OWNER)  # noqa: E731
        self.scale_transform = build() if "scale" in fusions else None
        self.add_transform = build() if "add" in fusions else None
        self.gate = create_gate(gate) if "scale" in fusions else None

    # -- construction helpers ------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, channels: int, **overrides: Any) -> "GlobalContextBlock":
        """Build a named member of the family (``"gc"``, ``"se"``, ``"snl"``, ...), optionally overriding arguments."""
        from gcnas.blocks.presets import preset

        return cls(channels, **{**preset(name), **overrides})

    def spec(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this block (without ``channels``)."""
        out: dict[str, Any] = {
            "context": self.context_name,
            "transform": self.transform_name,
            "ratio": self.ratio,
            "fusion": list(self.fusion) if len(self.fusion) > 1 else self.fusion[0],
            "norm": self.norm_name,
            "act": self.act_name,
        }
        if self.gate_name != "sigmoid":
            out["gate"] = self.gate_name
        return out

    def reset_parameters(self) -> None:
        """Official initialisation: mask conv Kaiming normal (fan_in), last layer of every transform zero."""
        self.context.reset_parameters()
        for t in self._transforms():
            t.reset_parameters()

    # -- forward --------------------------------------------------------------------------------------------------
    def _transforms(self) -> Iterator[nn.Module]:
        return (t for t in (self.scale_transform, self.add_transform) if t is not None)

    def transform_parameters(self) -> list[nn.Parameter]:
        return [p for t in self._transforms() for p in t.parameters()]

    def transform_terms(self, c: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The fusion terms for context ``c`` (B, C): the gate (after the sigmoid) and the additive term."""
        return transform_terms(c, self.scale_transform, self.add_transform, self.gate)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The block's query-independent attention map over positions, (B, H*W); uniform for ``avg`` context."""
        return self.context.attention(x)

    def _use_fused(self, x: torch.Tensor) -> bool:
        if self.fused is False or not torch.is_grad_enabled():
            return False
        if self.fused is None and x.device.type != "cpu":
            return False
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return False
        return x.requires_grad or any(p.requires_grad for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ConfigError(f"{_OWNER}: expected input of shape (B, {self.channels}, H, W); got {tuple(x.shape)}")
        if self._use_fused(x):
            return global_context_fused(self, x)
        return global_context_forward(x, self.context, self.scale_transform, self.add_transform, self.gate)

    def extra_repr(self) -> str:
        s = f"{self.channels}, context={self.context_name!r}, transform={self.transform_name!r}"
        if self.hidden_channels is not None:
            s += f", ratio={self.ratio:g}, hidden_channels={self.hidden_channels}"
        fusion = list(self.fusion) if len(self.fusion) > 1 else self.fusion[0]
        return s + f", fusion={fusion!r}"
