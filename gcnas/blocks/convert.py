"""Exact conversion of global-context weights from the ecosystem into :class:`GlobalContextBlock`.

Sources:

* the official GCNet code and mmcv's ``ContextBlock`` (Cao et al., ICCVW 2019, arXiv:1904.11492): state dict keys
  ``conv_mask.*``, ``channel_add_conv.{0,1,3}.*``, ``channel_mul_conv.{0,1,3}.*`` (1x1 conv, LayerNorm over
  [planes, 1, 1], ReLU, 1x1 conv);
* timm modules: ``GlobalContext`` (``timm.layers.global_context``), ``SEModule`` and ``EffectiveSEModule``
  (``timm.layers.squeeze_excite``) and EfficientNet's ``SqueezeExcite`` (``conv_reduce`` / ``conv_expand``).

The converted block computes the same function (float32 outputs equal within 1e-5). Keys that do not belong to the
source layout, or that it lacks, raise :class:`~gcnas.errors.ConfigError` (a ``ValueError``) naming them. This
module reads timm modules by structure and never imports timm.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from gcnas.blocks.global_context import GlobalContextBlock
from gcnas.errors import ConfigError

__all__ = ["from_mmcv", "to_mmcv", "from_timm"]

_MMCV_FUSION_PREFIX = {"add": "channel_add_conv", "scale": "channel_mul_conv"}
_MMCV_CONV_IDX = ("0", "1", "3")  # conv, LayerNorm, (ReLU has no weights), conv


def _key_error(source: str, unknown: set[str], missing: set[str]) -> ConfigError:
    parts = []
    if unknown:
        parts.append(f"unknown keys {sorted(unknown)}")
    if missing:
        parts.append(f"missing keys {sorted(missing)}")
    return ConfigError(f"{source}: {' and '.join(parts)}")


def from_mmcv(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> GlobalContextBlock:
    """Build the block that an official GCNet / mmcv ``ContextBlock`` state dict describes, weights loaded.

    Context (``att`` when ``conv_mask`` is present, else ``avg``), fusion (from ``channel_add_conv`` /
    ``channel_mul_conv``) and ratio (``planes / in_channels``) are read from the keys and shapes.

    Args:
        state_dict: the block's state dict, or a whole model's with ``prefix`` naming the block
            (``"layer1.0.context_block."``).
        prefix: keep only keys starting with this prefix, stripped.
    """
    source = "from_mmcv"
    sd = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not sd:
        raise ConfigError(f"{source}: no key starts with prefix {prefix!r}")
    fusions = [f for f, head in _MMCV_FUSION_PREFIX.items() if any(k.startswith(head + ".") for k in sd)]
    if not fusions:
        raise ConfigError(f"{source}: no fusion found; expected keys under 'channel_add_conv.' or 'channel_mul_conv.', "
                          f"got {sorted(sd)}")
    context = "att" if any(k.startswith("conv_mask.") for k in sd) else "avg"
    expected = {f"conv_mask.{p}" for p in ("weight", "bias")} if context == "att" else set()
    for f in fusions:
        expected |= {f"{_MMCV_FUSION_PREFIX[f]}.{i}.{p}" for i in _MMCV_CONV_IDX for p in ("weight", "bias")}
    if set(sd) != expected:
        raise _key_error(source, set(sd) - expected, expected - set(sd))

    head = _MMCV_FUSION_PREFIX[fusions[0]]
    planes, channels = sd[f"{head}.0.weight"].shape[:2]
    shapes = {"conv_mask.weight": (1, channels, 1, 1), "conv_mask.bias": (1,)}
    for f in fusions:
        h = _MMCV_FUSION_PREFIX[f]
        shapes.update({
            f"{h}.0.weight": (planes, channels, 1, 1), f"{h}.0.bias": (planes,),
            f"{h}.1.weight": (planes, 1, 1), f"{h}.1.bias": (planes, 1, 1),
            f"{h}.3.weight": (channels, planes, 1, 1), f"{h}.3.bias": (channels,),
        })
    bad = [f"{k} {tuple(v.shape)} (expected {shapes[k]})" for k, v in sd.items() if tuple(v.shape) != shapes[k]]
    if bad:
        raise ConfigError(f"{source}: inconsistent shapes for in_channels={channels}, planes={planes}: {bad}")

    block = GlobalContextBlock(channels, context=context, transform="bottleneck", fusion=fusions, norm="layernorm",
                               act="relu", hidden_channels=planes)
    ours: dict[str, torch.Tensor] = {}
    if context == "att":
        ours["context.conv_mask.weight"] = sd["conv_mask.weight"]
        ours["context.conv_mask.bias"] = sd["conv_mask.bias"]
    for f in fusions:
        h, t = _MMCV_FUSION_PREFIX[f], f"{f}_transform"
        ours[f"{t}.fc1.weight"] = sd[f"{h}.0.weight"].reshape(planes, channels)
        ours[f"{t}.fc1.bias"] = sd[f"{h}.0.bias"]
        ours[f"{t}.norm.weight"] = sd[f"{h}.1.weight"].reshape(planes)
        ours[f"{t}.norm.bias"] = sd[f"{h}.1.bias"].reshape(planes)
        ours[f"{t}.fc2.weight"] = sd[f"{h}.3.weight"].reshape(channels, planes)
        ours[f"{t}.fc2.bias"] = sd[f"{h}.3.bias"]
    block.load_state_dict(ours, strict=True)
    return block


def to_mmcv(block: GlobalContextBlock) -> dict[str, torch.Tensor]:
    """The mmcv ``ContextBlock`` state dict of ``block`` (bottleneck + LayerNorm + ReLU + sigmoid blocks only)."""
    if (block.transform_name, block.norm_name, block.act_name, block.gate_name) != (
            "bottleneck", "layernorm", "relu", "sigmoid") or block.norm_eps != 1e-5:
        raise ConfigError(
            "to_mmcv: mmcv's ContextBlock has transform='bottleneck', norm='layernorm' (eps 1e-5), act='relu' and a "
            f"sigmoid gate; this block has transform={block.transform_name!r}, norm={block.norm_name!r} "
            f"(eps {block.norm_eps:g}), act={block.act_name!r}, gate={block.gate_name!r}")
    c, h = block.channels, block.hidden_channels
    sd = block.state_dict()
    out: dict[str, torch.Tensor] = {}
    if block.context_name == "att":
        out["conv_mask.weight"] = sd["context.conv_mask.weight"].clone()
        out["conv_mask.bias"] = sd["context.conv_mask.bias"].clone()
    for f in block.fusion:
        hd, t = _MMCV_FUSION_PREFIX[f], f"{f}_transform"
        out[f"{hd}.0.weight"] = sd[f"{t}.fc1.weight"].reshape(h, c, 1, 1).clone()
        out[f"{hd}.0.bias"] = sd[f"{t}.fc1.bias"].clone()
        out[f"{hd}.1.weight"] = sd[f"{t}.norm.weight"].reshape(h, 1, 1).clone()
        out[f"{hd}.1.bias"] = sd[f"{t}.norm.bias"].reshape(h, 1, 1).clone()
        out[f"{hd}.3.weight"] = sd[f"{t}.fc2.weight"].reshape(c, h, 1, 1).clone()
        out[f"{hd}.3.bias"] = sd[f"{t}.fc2.bias"].clone()
    return out


# -- timm -------------------------------------------------------------------------------------------------------------
_TIMM_TYPES = "GlobalContext, SEModule (SqueezeExcite), EffectiveSEModule, EfficientNet's SqueezeExcite"


def _gate_name(gate: nn.Module, source: str) -> str:
    name = type(gate).__name__.lower()
    if name == "sigmoid":
        return "sigmoid"
    if name in ("hardsigmoid", "hard_sigmoid"):
        return "hard_sigmoid"
    raise ConfigError(f"{source}: unsupported gate {type(gate).__name__}; supported gates are Sigmoid and Hardsigmoid")


def _conv_vec(conv: nn.Conv2d, source: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 conv as a linear layer's (weight, bias)."""
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ConfigError(f"{source}: {name} must be a 1x1 nn.Conv2d without groups; got {conv!r}")
    if conv.bias is None:
        raise ConfigError(f"{source}: {name} has no bias (bias=False), which GlobalContextBlock does not support")
    return conv.weight.detach().reshape(conv.out_channels, conv.in_channels), conv.bias.detach()


def _norm_spec(norm: nn.Module, source: str) -> tuple[str | None, float, dict[str, torch.Tensor]]:
    """(norm name, eps, our norm's state) for a timm transform's norm layer."""
    if isinstance(norm, nn.Identity):
        return None, 1e-5, {}
    if isinstance(norm, nn.LayerNorm) and norm.elementwise_affine and norm.bias is not None:
        # timm's LayerNorm2d normalises over channels only; on a 1x1 map that is LayerNorm over the vector.
        return "layernorm", norm.eps, {"weight": norm.weight.detach().reshape(-1), "bias": norm.bias.detach().reshape(-1)}
    if isinstance(norm, nn.BatchNorm2d) and norm.affine and norm.track_running_stats:
        return "batchnorm", norm.eps, {k: v.detach() for k, v in norm.state_dict().items()}
    raise ConfigError(f"{source}: unsupported norm {norm!r}; supported are Identity, affine LayerNorm / LayerNorm2d "
                      "and affine BatchNorm2d with running stats")


def _check_keys(module: nn.Module, expected: set[str], source: str) -> None:
    keys = set(module.state_dict())
    if keys != expected:
        raise _key_error(source, keys - expected, expected - keys)


def _mlp_parts(mlp: nn.Module, names: tuple[str, str, str, str], source: str) -> dict[str, Any]:
    fc1_name, norm_name, act_name, fc2_name = names
    fc1 = _conv_vec(getattr(mlp, fc1_name), source, fc1_name)
    fc2 = _conv_vec(getattr(mlp, fc2_name), source, fc2_name)
    norm = getattr(mlp, norm_name) if norm_name else nn.Identity()
    norm_kind, eps, norm_state = _norm_spec(norm, source)
    return {"fc1": fc1, "fc2": fc2, "norm": norm_kind, "eps": eps, "norm_state": norm_state,
            "act": getattr(mlp, act_name)}


def _load_mlp(target: nn.Module, parts: dict[str, Any]) -> None:
    with torch.no_grad():
        target.fc1.weight.copy_(parts["fc1"][0])
        target.fc1.bias.copy_(parts["fc1"][1])
        target.fc2.weight.copy_(parts["fc2"][0])
        target.fc2.bias.copy_(parts["fc2"][1])
    if parts["norm_state"]:
        target.norm.load_state_dict(parts["norm_state"], strict=True)


def from_timm(module: nn.Module) -> GlobalContextBlock:
    """Build the :class:`GlobalContextBlock` equal to a timm attention module, weights copied.

    Supported: ``GlobalContext`` (att/avg context, add and/or scale fusion, bottleneck with LayerNorm2d),
    ``SEModule`` (avg, se or bottleneck+batchnorm when it has a norm, scale), ``EffectiveSEModule`` (avg, conv,
    scale with its hard sigmoid) and EfficientNet's ``SqueezeExcite``. Anything else raises ``ConfigError``.
    """
    kind = type(module).__name__
    source = f"from_timm({kind})"
    if kind == "GlobalContext":
        return _from_timm_gc(module, source)
    if hasattr(module, "conv_reduce") and hasattr(module, "conv_expand"):
        _check_keys(module, {f"{c}.{p}" for c in ("conv_reduce", "conv_expand") for p in ("weight", "bias")}, source)
        parts = _mlp_parts(module, ("conv_reduce", "", "act1", "conv_expand"), source)
        return _build_se(module, parts, source)
    if kind in ("SEModule", "SqueezeExcite") and hasattr(module, "fc1"):
        if getattr(module, "add_maxpool", False):
            raise ConfigError(f"{source}: add_maxpool=True (average + max pooling) has no GlobalContextBlock "
                              "equivalent")
        parts = _mlp_parts(module, ("fc1", "bn", "act", "fc2"), source)
        expected = {f"{c}.{p}" for c in ("fc1", "fc2") for p in ("weight", "bias")}
        expected |= {f"bn.{k}" for k in parts["norm_state"]}
        _check_keys(module, expected, source)
        block = _build_se(module, parts, source)
        if parts["norm"] == "batchnorm":
            block.scale_transform.norm.momentum = module.bn.momentum
        return block
    if kind == "EffectiveSEModule":
        if getattr(module, "add_maxpool", False):
            raise ConfigError(f"{source}: add_maxpool=True (average + max pooling) has no GlobalContextBlock "
                              "equivalent")
        _check_keys(module, {"fc.weight", "fc.bias"}, source)
        w, b = _conv_vec(module.fc, source, "fc")
        block = GlobalContextBlock(w.shape[1], context="avg", transform="conv", fusion="scale",
                                   gate=_gate_name(module.gate, source))
        with torch.no_grad():
            block.scale_transform.fc.weight.copy_(w)
            block.scale_transform.fc.bias.copy_(b)
        return block
    raise ConfigError(f"from_timm: unsupported module type {kind}; supported: {_TIMM_TYPES}")


def _build_se(module: nn.Module, parts: dict[str, Any], source: str) -> GlobalContextBlock:
    hidden, channels = parts["fc1"][0].shape
    transform = "bottleneck" if parts["norm"] is not None else "se"
    block = GlobalContextBlock(channels, context="avg", transform=transform, fusion="scale", norm=parts["norm"],
                               act=parts["act"], hidden_channels=hidden, norm_eps=parts["eps"],
                               gate=_gate_name(module.gate, source))
    _load_mlp(block.scale_transform, parts)
    return block


def _from_timm_gc(module: nn.Module, source: str) -> GlobalContextBlock:
    fusions = [f for f, attr in (("scale", "mlp_scale"), ("add", "mlp_add")) if getattr(module, attr) is not None]
    if not fusions:
        raise ConfigError(f"{source}: neither mlp_add nor mlp_scale is set")
    context = "att" if module.conv_attn is not None else "avg"
    parts = {}
    expected = {"conv_attn.weight", "conv_attn.bias"} if context == "att" else set()
    for f in fusions:
        mlp = getattr(module, f"mlp_{f}")
        drop = getattr(mlp, "drop", None)
        if drop is not None and getattr(drop, "p", 0.0) > 0:
            raise ConfigError(f"{source}: mlp_{f}.drop has p={drop.p}; dropout inside the transform is not supported")
        parts[f] = _mlp_parts(mlp, ("fc1", "norm", "act", "fc2"), source)
        expected |= {f"mlp_{f}.{c}.{p}" for c in ("fc1", "fc2") for p in ("weight", "bias")}
        expected |= {f"mlp_{f}.norm.{k}" for k in parts[f]["norm_state"]}
    _check_keys(module, expected, source)
    first = parts[fusions[0]]
    hidden, channels = first["fc1"][0].shape
    block = GlobalContextBlock(channels, context=context, transform="bottleneck" if first["norm"] else "se",
                               fusion=fusions, norm=first["norm"], act=first["act"], hidden_channels=hidden,
                               norm_eps=first["eps"], gate=_gate_name(module.gate, source))
    if context == "att":
        with torch.no_grad():
            block.context.conv_mask.weight.copy_(module.conv_attn.weight)
            block.context.conv_mask.bias.copy_(module.conv_attn.bias)
    for f in fusions:
        _load_mlp(getattr(block, f"{f}_transform"), parts[f])
    return block
