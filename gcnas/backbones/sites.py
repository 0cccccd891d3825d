"""Insertion sites of a timm backbone: one vocabulary (stage, block, position) across families.

``stage`` counts the model's own groups of blocks from 0, stem excluded (resnet ``layer1..layer4`` -> 0..3,
efficientnet ``blocks.0..blocks.6`` -> 0..6, convnext ``stages.0..3`` -> 0..3); ``block`` counts blocks inside a stage
from 0; ``position`` is one of :data:`~gcnas.backbones.families.POSITIONS` (see :mod:`gcnas.backbones.families`).

Models whose blocks no family describes get the *generic fallback*: stages are the modules named by the model's
``feature_info`` that contain blocks, and the positions are ``after_block`` (each block's output) and
``after_stage`` (the stage's output, listed with block 0). :func:`list_sites` warns when it falls back.

One place in the network is one site. Where a block's positions share an anchor (the output of one submodule: a
BasicBlock's ``after_conv2`` and ``before_add`` are both ``bn2``'s), the site takes the latest of them in
:data:`~gcnas.backbones.families.POSITIONS` order (the one nearest the residual sum, so ``before_add`` stays the
paper's name) and lists the others as its ``aliases``. A placement may name an alias (:func:`sites_by_key` finds its
site); an :class:`~gcnas.arch.Architecture` stores the site's own name, so equal networks get equal keys.

A model whose blocks give no (B, C, H, W) feature map anywhere (a vision transformer's tokens) has no site: listing
its sites raises a :class:`~gcnas.errors.ConfigError` naming ``backbone.name``.
"""
from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import torch
from torch import nn

from gcnas.backbones.families import FAMILIES, GENERIC_POSITIONS, POSITIONS, Anchor
from gcnas.errors import ConfigError

if TYPE_CHECKING:
    from gcnas.backbones.weights import BackboneWeights

__all__ = ["Site", "list_sites", "resolve_sites", "create_backbone", "GenericFallbackWarning", "position_order",
           "blocks_by_stage", "sites_by_key"]


def _ours(category: type) -> bool:
    """Whether a warning category is gcnas's own."""
    return category.__module__.split(".")[0] == "gcnas"


class GenericFallbackWarning(UserWarning):
    """A model without a family description: only ``after_block`` / ``after_stage`` sites are offered."""


@dataclass(frozen=True)
class Site:
    """A place where a block can be inserted.

    ``channels`` and ``size`` (H, W) are those of the feature map there for the input size the sites were listed for.
    ``module`` is the anchor's name in the model, ``attention`` the name of an attention module the backbone already
    has at this position (which a placement can ``replace``), ``block_module`` the name of the residual block.
    ``aliases`` are the block's other position names for this same place (a BasicBlock's ``before_add`` has
    ``after_conv2``); ``position`` is the site's own name, the one keys and architectures use.
    """

    stage: int
    block: int
    position: str
    channels: int
    size: Optional[tuple[int, int]]
    module: str
    family: str
    block_module: str
    attention: Optional[str] = None
    aliases: tuple[str, ...] = ()
    anchor: Anchor = field(default=Anchor("self"), repr=False, compare=False)

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.stage, self.block, self.position)


def sites_by_key(sites: Sequence[Site]) -> dict[tuple[int, int, str], Site]:
    """Every (stage, block, position) a placement may name, the site's own position or one of its aliases, with the
    site it names."""
    out = {}
    for s in sites:
        out[s.key] = s
        for alias in s.aliases:
            out[(s.stage, s.block, alias)] = s
    return out


_SITES_CACHE: dict = {}  # (name, input size, kwargs as JSON) -> (sites, warnings); sites are frozen dataclasses
_SITES_CACHE_SIZE = 64

_ORDER = {p: i for i, p in enumerate(POSITIONS + GENERIC_POSITIONS)}


def position_order(position: str) -> int:
    return _ORDER.get(position, len(_ORDER))


def blocks_by_stage(sites: Sequence[Site]) -> dict[int, list[int]]:
    """Every stage with the sorted indices of its blocks that have at least one site."""
    out: dict[int, set[int]] = {}
    for s in sites:
        out.setdefault(s.stage, set()).add(s.block)
    return {st: sorted(blocks) for st, blocks in sorted(out.items())}


def create_backbone(name: str, device: Union[str, torch.device, None] = None, *,
                    weights: Optional["BackboneWeights"] = None, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=False, **kwargs)`` with an error listing close names if unknown;
    with ``weights`` (:class:`~gcnas.backbones.weights.BackboneWeights`), timm loads them."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(f"backbone: unknown timm model {name!r}{hint} (timm.list_models() lists all)")
    if weights is not None and weights.loaded:
        from gcnas.backbones.weights import create_pretrained

        model = create_pretrained(name, weights, **kwargs)
        return model if device is None else model.to(device)
    if device is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    with torch.device(device):
        return timm.create_model(name, pretrained=False, **kwargs)


def _generic_candidates(model: nn.Module) -> list[tuple[int, int, str, str, nn.Module, Anchor]]:
    """(stage, block, position, block module name, block module, anchor) from feature_info's modules."""
    info = getattr(model, "feature_info", None)
    if info is None:
        names = []
    elif hasattr(info, "module_name"):  # a features_only model's FeatureInfo
        names = list(info.module_name())
    else:
        names = [f["module"] for f in info]
    modules = dict(model.named_modules())
    out = []
    stage = 0
    for name in names:
        mod = modules.get(name)
        if mod is None:
            continue
        children = list(mod.blocks.named_children()) if isinstance(getattr(mod, "blocks", None), nn.Module) \
            else list(mod.named_children())
        blocks = [(n, c) for n, c in children if any(True for _ in c.parameters())]
        if not blocks:
            continue
        prefix = f"{name}.blocks." if isinstance(getattr(mod, "blocks", None), nn.Module) else f"{name}."
        for j, (cname, child) in enumerate(blocks):
            out.append((stage, j, "after_block", prefix + cname, child, Anchor("self")))
        out.append((stage, 0, "after_stage", name, mod, Anchor("self")))
        stage += 1
    return out


def _candidates(model: nn.Module) -> tuple[str, list]:
    found: dict[str, list] = {}
    for name, module in model.named_modules():
        for fam in FAMILIES:
            rule = fam.rule_for(module)
            if rule is None:
                continue
            m = fam.pattern.match(name)
            if not m:
                continue
            stage, block = int(m.group(1)) - fam.stage_offset, int(m.group(2)) - fam.block_offset
            for position, anchor in rule.anchors(module).items():
                found.setdefault(fam.name, []).append((stage, block, position, name, module, anchor))
    if len(found) == 1:
        return next(iter(found.items()))
    if len(found) > 1:
        raise ConfigError(f"model {type(model).__name__} matches several families: {sorted(found)}")
    return "generic", _generic_candidates(model)


def _places(candidates: list) -> list[tuple[int, int, str, tuple[str, ...], str, nn.Module, Anchor]]:
    """One entry per place: the positions of one block that share an anchor (same kind, same submodule) become one,
    named by the latest of them in POSITIONS order, with the others as its aliases."""
    groups: dict[tuple[str, str, str], list] = {}
    for cand in candidates:
        _, _, _, bname, _, anchor = cand
        groups.setdefault((bname, anchor.kind, anchor.attr), []).append(cand)
    out = []
    for members in groups.values():
        members.sort(key=lambda c: position_order(c[2]))
        stage, block, position, bname, bmod, anchor = members[-1]
        out.append((stage, block, position, tuple(c[2] for c in members[:-1]), bname, bmod, anchor))
    return out


def _probe(model: nn.Module, places: list, input_size: Sequence[int]) -> dict[int, Optional[torch.Size]]:
    """Feature-map shapes at every place's anchor, from one forward pass of a single zero image."""
    shapes: dict[int, Optional[torch.Size]] = {}
    handles = []

    def record(idx: int, kind: str):
        def post(_m, _inp, out):
            shapes[idx] = out.shape if isinstance(out, torch.Tensor) else None

        def pre(_m, inp):
            shapes[idx] = inp[0].shape if inp and isinstance(inp[0], torch.Tensor) else None

        return pre if kind == "pre" else post

    for idx, place in enumerate(places):
        bmod, anchor = place[-2], place[-1]
        target = bmod if anchor.kind == "self" else getattr(bmod, anchor.attr)
        hook = record(idx, anchor.kind)
        handles.append(target.register_forward_pre_hook(hook) if anchor.kind == "pre"
                       else target.register_forward_hook(hook))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return shapes


# What a forward pass raises for an input the model cannot take: torch's shape errors, and timm's own input checks
# (``timm.layers._assert``: a ViT's fixed image size) raise AssertionError.
_INPUT_ERRORS = (RuntimeError, ValueError, AssertionError)


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def _no_feature_maps(model: nn.Module, shapes: dict[int, Optional[torch.Size]]) -> ConfigError:
    seen = next((tuple(s) for s in shapes.values() if s is not None), None)
    gave = f"its blocks give {len(seen)}-d tensors such as {seen}" if seen else "its blocks give no tensors"
    families = ", ".join(f.name for f in FAMILIES)
    return ConfigError(f"backbone.name: {_model_name(model)} ({type(model).__name__}) has no (B, C, H, W) feature maps "
                       f"for a global-context block to work on ({gave}, like a vision transformer's tokens); use a "
                       f"convolutional backbone of a family gcnas describes ({families}; e.g. resnet50, "
                       f"efficientnet_b0, convnext_atto)")


def _shapes(model: nn.Module, places: list, size: tuple[int, ...]) -> dict[int, Optional[torch.Size]]:
    """The places' shapes at ``size``; a model with no (B, C, H, W) map, or one that cannot take ``size``, is a
    ConfigError saying which."""
    try:
        shapes = _probe(model, places, size)
    except _INPUT_ERRORS as e:
        failure = e
    else:
        if not any(s is not None and len(s) == 4 for s in shapes.values()):
            raise _no_feature_maps(model, shapes)
        return shapes
    # The model's own size tells a model that has no feature maps at all (whose first layer may also refuse other
    # sizes, as a ViT's patch embedding does) from one that only cannot take this size.
    own = (size[0], *_default_input_size(model)[1:])
    own_shapes = None
    if own != size:
        try:
            own_shapes = _probe(model, places, own)
        except _INPUT_ERRORS:
            pass
    if own_shapes is not None and not any(s is not None and len(s) == 4 for s in own_shapes.values()):
        raise _no_feature_maps(model, own_shapes)
    if own_shapes is None and isinstance(failure, AssertionError):
        raise failure  # not an input check we can attribute to the size: a bug, with its traceback
    detail = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    raise ConfigError(f"{type(model).__name__} cannot run on an input of size {tuple(size)} (C, H, W): {detail}")


def _default_input_size(model: nn.Module) -> tuple[int, int, int]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") or (3, 224, 224)
    return tuple(int(s) for s in size)


def resolve_sites(model: nn.Module, input_size: Optional[Sequence[int]] = None, *, warn: bool = True) -> list[Site]:
    """The sites of an existing model (see :func:`list_sites`)."""
    family, candidates = _candidates(model)
    if not candidates:
        raise ConfigError(f"model {type(model).__name__}: no family describes its blocks and its feature_info names no "
                          "stage with blocks, so gcnas finds no insertion site")
    size = tuple(int(s) for s in input_size) if input_size is not None else _default_input_size(model)
    places = _places(candidates)
    shapes = _shapes(model, places, size)
    if family == "generic" and warn:
        warnings.warn(f"{type(model).__name__}: no gcnas family describes its blocks; using the generic fallback "
                      f"(positions {', '.join(GENERIC_POSITIONS)} from feature_info's stages)", GenericFallbackWarning,
                      stacklevel=3)
    sites = []
    for idx, (stage, block, position, aliases, bname, bmod, anchor) in enumerate(places):
        shape = shapes.get(idx)
        if shape is None or len(shape) != 4:
            continue  # never reached for this input, or not a (B, C, H, W) map there
        module = bname if anchor.kind == "self" else f"{bname}.{anchor.attr}"
        attention = f"{bname}.{anchor.attention}" if anchor.attention else None
        sites.append(Site(stage, block, position, int(shape[1]), (int(shape[2]), int(shape[3])), module, family,
                          bname, attention, aliases, anchor=anchor))
    sites.sort(key=lambda s: (s.stage, s.block, position_order(s.position)))
    return sites


def list_sites(model_or_name: Union[nn.Module, str], input_size: Optional[Sequence[int]] = None,
               **model_kwargs) -> list[Site]:
    """Every insertion site of a timm model (or model name), with channels and spatial size for ``input_size``.

    Args:
        model_or_name: a model built by timm, or a timm model name (built on the meta device: no weights, no memory).
        input_size: (C, H, W) of one input image; default the model's ``pretrained_cfg['input_size']``.
        model_kwargs: passed to ``timm.create_model`` when a name is given.

    Each place is listed once, its other position names in ``Site.aliases``. A model without (B, C, H, W) feature
    maps (a vision transformer), or one that cannot take ``input_size``, raises a one-line ConfigError saying which.
    """
    if not isinstance(model_or_name, str):
        return resolve_sites(model_or_name, input_size)
    if input_size is not None:
        model_kwargs.setdefault("in_chans", int(input_size[0]))
    try:  # a name's sites depend only on the name, its kwargs and the input size: built and probed once per process
        key = (model_or_name, None if input_size is None else tuple(int(s) for s in input_size),
               json.dumps(model_kwargs, sort_keys=True))
    except (TypeError, ValueError):  # kwargs that are not plain data (rare): no caching
        key = None
    hit = _SITES_CACHE.get(key) if key is not None else None
    if hit is None:
        model = create_backbone(model_or_name, device="meta", **model_kwargs)
        if input_size is None and "in_chans" in model_kwargs:
            input_size = (int(model_kwargs["in_chans"]), *_default_input_size(model)[1:])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sites = resolve_sites(model, input_size)
        # gcnas's own warnings (what it says of this model) are kept and said on every call; another library's (a
        # one-time import or deprecation warning raised while probing) pass on once, as they would without the cache
        for w in caught:
            if not _ours(w.category):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
        hit = (tuple(sites), [(w.message, w.category) for w in caught if _ours(w.category)])
        if key is not None:
            if len(_SITES_CACHE) >= _SITES_CACHE_SIZE:
                _SITES_CACHE.pop(next(iter(_SITES_CACHE)))
            _SITES_CACHE[key] = hit
    for message, category in hit[1]:  # the same warnings on every call, cached or not
        warnings.warn(message, category, stacklevel=2)
    return list(hit[0])


def _require_feature_maps(model: nn.Module, channels: int) -> None:
    """Refuse a model whose blocks give no (B, C, H, W) map at its own input size. The families describe
    convolutional blocks, so only the generic fallback is probed (on the meta device this costs nothing); a model that
    cannot run here is left to :func:`resolve_sites`, which says why."""
    family, candidates = _candidates(model)
    if family != "generic" or not candidates:
        return
    places = _places(candidates)
    try:
        shapes = _probe(model, places, (channels, *_default_input_size(model)[1:]))
    except _INPUT_ERRORS:
        return
    if not any(s is not None and len(s) == 4 for s in shapes.values()):
        raise _no_feature_maps(model, shapes)


def backbone_data_config(name: str, **kwargs: Any) -> dict[str, Any]:
    """The backbone's data config as timm resolves it (``timm.data.resolve_data_config``): input size,
    interpolation, crop fraction, mean and std, read from a model built on the meta device (no weights, no memory).

    Every command reads it before its data, so a backbone gcnas cannot put a block in (no (B, C, H, W) feature maps:
    a vision transformer) is refused here, in one line naming ``backbone.name``, before any data is read."""
    from timm.data import resolve_data_config

    model = create_backbone(name, device="meta", **kwargs)
    _require_feature_maps(model, int(kwargs.get("in_chans", _default_input_size(model)[0])))
    return dict(resolve_data_config({}, model=model))
