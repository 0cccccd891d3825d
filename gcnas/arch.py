"""The architecture: a timm backbone plus global-context blocks at named sites.

:class:`Architecture` is the one currency between search, export, retraining and reports: plain dataclasses with a
stable YAML form and a canonical hash. Equal architectures hash equal, whatever order their placements were written in
or which shorthand wrote them.

YAML form (what users write; shorthands are expanded to one placement per site)::

    backbone: resnet50
    backbone_kwargs: {num_classes: 10}
    placements:
      - stage: [1, 2, 3]          # an int, a list, or "all"
        blocks: all               # all | first | last | every_other | an int | a list (also spelled "block")
        position: before_add      # or a list of positions
        spec: gc                  # a preset name (nl too), or a dict: {preset: gc, ratio: 0.25} / {context: avg, ...}
                                  # / {kind: nl, ratio: 0.5, mode: embedded_gaussian}
        replace: false            # true: take the place of the backbone's attention module (SE) there

This module imports torch, timm and the lower gcnas layers only: no optuna, hydra or wandb.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import yaml
from torch import nn

from gcnas.backbones.families import GENERIC_POSITIONS, POSITIONS
from gcnas.backbones.insert import insert
from gcnas.backbones.sites import Site, blocks_by_stage, create_backbone, list_sites, position_order, sites_by_key
from gcnas.blocks import (CONTEXTS, GATES, NL_DEFAULTS, NL_MODES, NORMS, TRANSFORMS, block_arguments, create_block,
                          design_fields, parse_fusion)
from gcnas.blocks.layers import ACTIVATIONS
from gcnas.blocks.transform import check_ratio
from gcnas.errors import ConfigError

__all__ = ["BlockSpec", "Placement", "Architecture", "build_model", "load_model", "load_weights",
           "PretrainedScaleWarning", "BLOCK_SELECTORS", "select_blocks", "paper_default_architecture"]

BLOCK_SELECTORS = ("all", "first", "last", "every_other")
_SPEC_KEYS = {"kind", "preset", "context", "transform", "ratio", "fusion", "norm", "act", "gate", "mode"}
_PLACEMENT_KEYS = {"stage", "stages", "block", "blocks", "position", "positions", "spec", "replace"}
_ARCH_KEYS = {"backbone", "backbone_kwargs", "placements"}


def select_blocks(blocks: Sequence[int], selector: Any) -> list[int]:
    """The block indices a selector picks from a stage's sorted ``blocks``: a name in BLOCK_SELECTORS, an index
    or a list of indices (returned as given)."""
    if isinstance(selector, str):
        return {"all": list(blocks), "first": list(blocks[:1]), "last": list(blocks[-1:]),
                "every_other": list(blocks[::2])}[selector]
    return list(selector) if isinstance(selector, (list, tuple)) else [selector]


def _err(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}" if where else msg)


@dataclass(frozen=True)
class BlockSpec:
    """What block goes at a site: a member of the global context framework (``kind="gc"``) or an NL block.

    Fields that the design does not use are canonicalised away (``ratio`` for ``conv``/``identity``, ``norm`` outside
    ``bottleneck``, ``act`` outside ``bottleneck``/``se``, ``gate`` without ``scale``: what the registries declare,
    read through :func:`gcnas.blocks.design_fields`), so equal blocks compare and hash equal.
    """

    context: str = "att"
    transform: str = "bottleneck"
    ratio: Optional[float] = 1 / 16
    fusion: tuple[str, ...] = ("add",)
    norm: Optional[str] = "layernorm"
    act: Optional[str] = "relu"
    kind: str = "gc"
    gate: str = "sigmoid"
    mode: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind == "nl":
            canon = self._canonical_nl()
        elif self.kind == "gc":
            canon = self._canonical_gc()
        else:
            raise _err("spec", f"kind must be 'gc' or 'nl'; got {self.kind!r}")
        for k, v in canon.items():
            object.__setattr__(self, k, v)

    def _canonical_nl(self) -> dict[str, Any]:
        ratio = NL_DEFAULTS["ratio"] if self.ratio is None else self.ratio
        mode = self.mode or NL_DEFAULTS["mode"]
        if mode not in NL_MODES:
            raise _err("spec", f"mode must be one of {', '.join(map(repr, NL_MODES))}; got {mode!r}")
        check_ratio(ratio, "spec")
        return dict(context=None, transform=None, ratio=float(ratio), fusion=("add",), norm=None, act=None,
                    gate="sigmoid", mode=mode)

    def _canonical_gc(self) -> dict[str, Any]:
        """The fields validated, and those the design does not use (gcnas.blocks.design_fields) at their blank."""
        for registry, value in ((CONTEXTS, self.context), (TRANSFORMS, self.transform)):
            if value not in registry:
                raise _err("spec", registry.unknown_message(value))
        fusion = parse_fusion(self.fusion)
        for registry, value, blank in ((GATES, self.gate, ""), (NORMS, self.norm, " or null"),
                                       (ACTIVATIONS, self.act, " or null")):
            if (value is not None or not blank) and value not in registry:
                raise _err("spec", registry.unknown_message(value) + blank)
        fields = design_fields(self.transform, fusion)
        if "ratio" in fields:
            check_ratio(self.ratio, "spec")
        return dict(context=self.context, transform=self.transform,
                    ratio=float(self.ratio) if "ratio" in fields else None, fusion=fusion,
                    norm=self.norm if "norm" in fields else None, act=self.act if "act" in fields else None,
                    gate=self.gate if "gate" in fields else "sigmoid", mode=None)

    @classmethod
    def from_value(cls, value: Any, where: str = "spec") -> "BlockSpec":
        """From a preset name, a dict (optionally with ``preset`` plus overrides) or a BlockSpec: the forms
        :func:`gcnas.blocks.block_arguments` reads for every caller."""
        if isinstance(value, BlockSpec):
            return value
        unknown = set(value) - _SPEC_KEYS if isinstance(value, Mapping) else set()
        if unknown:
            raise _err(where, f"unknown keys {sorted(unknown)}; valid keys are {sorted(_SPEC_KEYS)}")
        kw = block_arguments(value, where)
        if isinstance(kw.get("fusion"), list):
            kw["fusion"] = tuple(kw["fusion"])
        try:
            return cls(**kw)
        except ValueError as e:
            raise _err(where, str(e).removeprefix("spec: ")) from None

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "nl":
            return {"kind": "nl", "ratio": self.ratio, "mode": self.mode}
        return {"kind": "gc", "context": self.context, "transform": self.transform, "ratio": self.ratio,
                "fusion": list(self.fusion) if len(self.fusion) > 1 else self.fusion[0], "norm": self.norm,
                "act": self.act, "gate": self.gate}

    def build(self, channels: int) -> nn.Module:
        """The block for ``channels`` channels (:func:`gcnas.blocks.create_block`, as every placement is built)."""
        kw = self.to_dict()
        if kw.get("ratio") is None:
            kw.pop("ratio")
        return create_block(channels, **kw)


@dataclass(frozen=True)
class Placement:
    """One block at one site: ``stage`` and ``block`` count from 0, ``position`` names the point in the block."""

    stage: int
    block: int
    position: str
    spec: BlockSpec = field(default_factory=BlockSpec)
    replace: bool = False

    @property
    def site(self) -> tuple[int, int, str]:
        return (self.stage, self.block, self.position)

    def to_dict(self) -> dict[str, Any]:
        out = {"stage": self.stage, "block": self.block, "position": self.position, "spec": self.spec.to_dict()}
        if self.replace:
            out["replace"] = True
        return out

    def sort_key(self) -> tuple:
        return (self.stage, self.block, position_order(self.position), self.position)


# A site takes the latest of its names in POSITIONS order, and after_add, the only position after before_add, is the
# block's output, which no other position shares: placements at these need no site listing to be canonical.
_NEVER_ALIASES = frozenset(POSITIONS[-2:] + GENERIC_POSITIONS)


def _canonical_positions(backbone: str, backbone_kwargs: Mapping[str, Any],
                         placements: tuple[Placement, ...]) -> tuple[Placement, ...]:
    """Placements that name a site by one of its aliases (a BasicBlock's ``after_conv2`` for ``before_add``) take the
    site's own position, so that equal networks are equal architectures with equal keys; two placements that name
    one place under different names are refused. Positions the backbone lacks are left for ``validate`` to explain."""
    if all(p.position in _NEVER_ALIASES for p in placements):
        return placements
    lookup = sites_by_key(list_sites(backbone, **dict(backbone_kwargs)))
    out, written = [], {}
    for p in placements:
        site = lookup.get(p.site)
        if site is None:
            out.append(p)
            continue
        other = written.setdefault(site.key, p.position)
        if other != p.position:
            raise ConfigError(f"placements: stage {p.stage}, block {p.block}: {other!r} and {p.position!r} are one "
                              f"place in {backbone} (the site {site.position!r}, also named "
                              f"{', '.join(site.aliases)}); a site holds one block")
        out.append(p if site.position == p.position else dataclasses.replace(p, position=site.position))
    return tuple(out)


@dataclass(frozen=True)
class Architecture:
    """A timm backbone (name and ``timm.create_model`` keyword arguments) and the blocks placed in it.

    A placement written with a position's alias (``gcnas-sites`` lists them: a BasicBlock's ``after_conv2`` is its
    ``before_add``) is stored under the site's own position; finding it lists the backbone's sites (once per process,
    and only for placements at ``after_conv1`` or ``after_conv2``, the positions that can be aliases)."""

    backbone: str
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    placements: tuple[Placement, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbone_kwargs", dict(sorted(dict(self.backbone_kwargs).items())))
        placements = _canonical_positions(self.backbone, self.backbone_kwargs, tuple(self.placements))
        object.__setattr__(self, "placements", tuple(sorted(placements, key=Placement.sort_key)))

    # -- serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "backbone_kwargs": dict(self.backbone_kwargs),
                "placements": [p.to_dict() for p in self.placements]}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)

    @classmethod
    def from_yaml(cls, text_or_path: Union[str, Path], sites: Optional[list[Site]] = None) -> "Architecture":
        """From YAML text or a ``.yaml`` file path (errors name the file)."""
        source = ""
        text = text_or_path
        if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                               and text_or_path.endswith((".yaml", ".yml"))):
            path = Path(text_or_path)
            if not path.is_file():
                raise ConfigError(f"architecture file {path} does not exist")
            source, text = str(path), path.read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source or 'architecture YAML'}: not valid YAML ({e})") from None
        try:
            return cls.from_dict(data, sites=sites)
        except ValueError as e:
            raise ConfigError(f"{source}: {e}" if source else str(e)) from None

    @classmethod
    def from_dict(cls, data: Any, sites: Optional[list[Site]] = None) -> "Architecture":
        """From the (shorthand or canonical) dict form; shorthands expand against the backbone's sites."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"architecture must be a mapping with keys {sorted(_ARCH_KEYS)}; got {data!r}")
        unknown = set(data) - _ARCH_KEYS
        if unknown:
            raise ConfigError(f"architecture: unknown keys {sorted(unknown)}; valid keys are {sorted(_ARCH_KEYS)}")
        backbone = data.get("backbone")
        if not isinstance(backbone, str) or not backbone:
            raise ConfigError(f"backbone: must be a timm model name; got {backbone!r}")
        kwargs = data.get("backbone_kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"backbone_kwargs: must be a mapping; got {kwargs!r}")
        raw = data.get("placements") or []
        if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
            raise ConfigError(f"placements: must be a list; got {raw!r}")

        cache: dict[str, list[Site]] = {}

        def get_sites() -> list[Site]:
            if sites is not None:
                return sites
            if "s" not in cache:
                cache["s"] = list_sites(backbone, **dict(kwargs))
            return cache["s"]

        placements: list[Placement] = []
        for i, item in enumerate(raw):
            placements.extend(_expand(item, f"placements[{i}]", get_sites))
        arch = cls(backbone, kwargs, tuple(placements))
        seen: dict[tuple, int] = {}
        for p in arch.placements:
            if p.site in seen:
                raise ConfigError(f"placements: two blocks at stage {p.stage}, block {p.block}, position "
                                  f"{p.position!r}; a site holds one block")
            seen[p.site] = 1
        return arch

    # -- identity ------------------------------------------------------------------------------------------------
    def key(self) -> str:
        """Canonical hash: equal architectures give equal keys, whatever order their placements were written in."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_placements(self, placements: Sequence[Placement]) -> "Architecture":
        return dataclasses.replace(self, placements=tuple(placements))

    def validate(self, sites: Optional[list[Site]] = None) -> list[Site]:
        """Check every placement against the backbone's sites; returns the sites used."""
        sites = sites if sites is not None else list_sites(self.backbone, **dict(self.backbone_kwargs))
        by_key = {s.key: s for s in sites}
        used = []
        for i, p in enumerate(self.placements):
            if p.site not in by_key:
                valid = sorted({s.position for s in sites if (s.stage, s.block) == (p.stage, p.block)},
                               key=position_order)
                if valid:
                    hint = f"valid positions there: {', '.join(valid)}"
                else:
                    hint = "valid sites: " + ", ".join(f"stage {st} blocks 0-{b[-1]}"
                                                       for st, b in blocks_by_stage(sites).items())
                raise ConfigError(f"placements: {self.backbone} has no site at stage {p.stage}, block {p.block}, "
                                  f"position {p.position!r}; {hint}")
            site = by_key[p.site]
            if p.replace and site.attention is None:
                raise ConfigError(f"placements: stage {p.stage}, block {p.block}, position {p.position!r} has "
                                  f"replace: true but {self.backbone} has no attention module there")
            used.append(site)
        return used


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _expand(item: Any, where: str, get_sites) -> list[Placement]:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a mapping with stage, block(s), position and spec; got {item!r}")
    unknown = set(item) - _PLACEMENT_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; valid keys are {sorted(_PLACEMENT_KEYS)}")
    for a, b in (("stage", "stages"), ("block", "blocks"), ("position", "positions")):
        if a in item and b in item:
            raise ConfigError(f"{where}: give either {a!r} or {b!r}, not both")
    stage_v = item.get("stage", item.get("stages"))
    block_v = item.get("block", item.get("blocks"))
    pos_v = item.get("position", item.get("positions"))
    for name, v in (("stage", stage_v), ("block", block_v), ("position", pos_v)):
        if v is None:
            raise ConfigError(f"{where}.{name}: missing")
    spec = BlockSpec.from_value(item.get("spec", "gc"), where=f"{where}.spec")
    replace = item.get("replace", False)
    if not isinstance(replace, bool):
        raise ConfigError(f"{where}.replace: must be true or false; got {replace!r}")

    positions = _as_list(pos_v)
    valid_positions = POSITIONS + GENERIC_POSITIONS
    for p in positions:
        if p not in valid_positions:
            raise ConfigError(f"{where}.position: {p!r} is not a position; valid positions are "
                              f"{', '.join(valid_positions)}")

    simple = (isinstance(stage_v, int) and not isinstance(stage_v, bool) and isinstance(block_v, int)
              and not isinstance(block_v, bool))
    if simple:
        return [Placement(stage_v, block_v, p, spec, replace) for p in positions]

    blocks_in = blocks_by_stage(get_sites())
    if stage_v == "all":
        stages = sorted(blocks_in)
    else:
        stages = _as_list(stage_v)
        for st in stages:
            if isinstance(st, bool) or not isinstance(st, int) or st not in blocks_in:
                raise ConfigError(f"{where}.stage: {st!r} is not a stage of this backbone; valid stages are "
                                  f"{sorted(blocks_in)} or 'all'")
    out = []
    for st in stages:
        if isinstance(block_v, str):
            if block_v not in BLOCK_SELECTORS:
                raise ConfigError(f"{where}.blocks: {block_v!r} is not a selector; valid are "
                                  f"{', '.join(BLOCK_SELECTORS)}, an integer or a list of integers")
        else:
            for b in _as_list(block_v):
                if isinstance(b, bool) or not isinstance(b, int):
                    raise ConfigError(f"{where}.blocks: {b!r} is not a block index; valid are "
                                      f"{', '.join(BLOCK_SELECTORS)}, an integer or a list of integers")
        for b in select_blocks(blocks_in[st], block_v):
            out.extend(Placement(st, b, p, spec, replace) for p in positions)
    return out


class PretrainedScaleWarning(UserWarning):
    """Blocks with ``scale`` fusion inserted into trained weights: at insertion they halve their site's features."""


def build_model(arch: Architecture, pretrained_backbone: Optional[Union[str, Path]] = None, *,
                pretrained: bool = False, pretrained_file: Optional[Union[str, Path]] = None) -> nn.Module:
    """``timm.create_model`` with the architecture's kwargs, the backbone's weights, then the blocks.

    Args:
        arch: the architecture.
        pretrained: timm's pretrained weights (``timm.create_model(pretrained=True)``: its hub cache, offline once
            cached).
        pretrained_file: a local checkpoint of the plain backbone, loaded by timm
            (``pretrained_cfg_overlay=dict(file=...)``: classifier reset and first-conv adaptation are timm's).
        pretrained_backbone: the former name of ``pretrained_file``.

    Blocks are inserted after the weights are loaded. A block with ``add`` fusion starts at the identity (its last
    layer is zero), so the model computes exactly what the pretrained backbone computes; a block with ``scale``
    fusion starts at ``x * sigmoid(0) = x / 2`` and changes it, which :class:`PretrainedScaleWarning` says.
    """
    from gcnas.backbones.weights import BackboneWeights

    if pretrained_backbone is not None:
        if pretrained_file is not None:
            raise ConfigError("build_model: give pretrained_file or its former name pretrained_backbone, not both")
        pretrained_file = pretrained_backbone
    weights = BackboneWeights(bool(pretrained), None if pretrained_file is None else str(pretrained_file))
    sites = list_sites(arch.backbone, **dict(arch.backbone_kwargs))
    arch.validate(sites)
    model = create_backbone(arch.backbone, weights=weights, **dict(arch.backbone_kwargs))
    insert(model, arch.placements, sites=sites)
    if weights.loaded:
        scaled = [f"{p.stage}.{p.block}.{p.position}" for p in arch.placements if "scale" in p.spec.fusion]
        if scaled:
            import warnings

            warnings.warn(
                f"{len(scaled)} block(s) with scale fusion "
                f"({', '.join(scaled[:4])}{', ...' if len(scaled) > 4 else ''})"
                f" were inserted into pretrained weights: at insertion they multiply their site's features by "
                f"sigmoid(0) = 0.5, so the model no longer computes what the pretrained backbone did (add-fusion "
                f"blocks do); fine-tuning learns the gate", PretrainedScaleWarning, stacklevel=2)
    model.gcnas_architecture = arch
    model.gcnas_weights = weights
    return model


def load_weights(model: nn.Module, path: Union[str, Path], *, device: str = "cpu", key: str = "load_model",
                 against: Union[str, Path] = "the architecture", fix: str = "") -> None:
    """Load a safetensors file into ``model``, exactly: each of its tensors, in its shape, and no other.

    A damaged file, or weights of another architecture, is one :class:`~gcnas.errors.ConfigError` starting with
    ``key``, naming the file and the first key that differs (with both shapes where only the shape does), and ending
    with ``fix`` (what to do). The header is read first, so a truncated file fails before any tensor is read, and
    shapes are compared before loading: torch's own size-mismatch error names no file.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model as load_safetensors

    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{key}: {path} is not a readable safetensors file ({e}); it may be truncated or damaged"
                          + (f": {fix}" if fix else "")) from None
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    differ = [f"{k} has shape {stored[k]} in the weights and {own[k]} in the architecture" for k in own
              if k in stored and stored[k] != own[k]]
    counts = f"{len(differ)} keys differ in shape"
    if not differ:
        missing, unexpected = load_safetensors(model, str(path), strict=False, device=device)
        differ = ([f"{k} is in the architecture but not in the weights" for k in own if k in set(missing)]
                  + [f"{k} is in the weights but not in the architecture" for k in sorted(unexpected)])
        counts = f"{len(missing)} missing, {len(unexpected)} unexpected keys"
    if differ:
        raise ConfigError(f"{key}: {path} does not match {against}: {differ[0]} ({counts})"
                          + (f"; {fix}" if fix else ""))


def load_model(folder: Union[str, Path], device: str = "cpu") -> nn.Module:
    """Rebuild an exported model (``architecture.yaml``, ``model.safetensors``, ``config.json``) with torch, timm and
    gcnas alone. Returns the model in eval mode on ``device``.

    The weights are read by safetensors (no pickle) and must match the architecture exactly; a damaged file or the
    weights of another architecture is a :class:`~gcnas.errors.ConfigError` naming the file and the first key that
    differs. ``config.json`` (timm's form for hub models) sets ``model.pretrained_cfg`` and its alias ``default_cfg``
    to the preprocessing the model was validated with, so ``timm.data.resolve_data_config(model=model)`` +
    ``create_transform`` feed it as its study did. A folder exported before gcnas wrote ``config.json`` still loads,
    with timm's default for the backbone there and a warning saying so.
    """
    import warnings

    folder = Path(folder)
    arch_path, weights, config = folder / "architecture.yaml", folder / "model.safetensors", folder / "config.json"
    for p in (arch_path, weights):
        if not p.is_file():
            raise ConfigError(f"load_model: {p} is missing; an export folder holds architecture.yaml and "
                              f"model.safetensors (write one with gcnas-export)")
    arch = Architecture.from_yaml(arch_path.read_text())
    model = build_model(arch)
    load_weights(model, weights, device=device, against=arch_path,
                 fix="the weights belong to another architecture (copied from another export?)")
    if not config.is_file():
        warnings.warn(f"{folder} has no config.json (an export from before gcnas wrote one): model.pretrained_cfg is "
                      f"timm's default for {arch.backbone}, not the preprocessing the model was trained with; "
                      f"MODEL_CARD.md states its inputs, or export the trial again", UserWarning, stacklevel=2)
        return model.to(device).eval()
    try:
        hub = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"load_model: {config} is not readable JSON ({e}); export the trial again") from None
    pretrained = hub.get("pretrained_cfg") if isinstance(hub, dict) else None
    if not isinstance(pretrained, dict):
        raise ConfigError(f"load_model: {config} has no pretrained_cfg mapping (timm's config.json form); export the "
                          f"trial again")
    if hub.get("architecture") != arch.backbone:
        raise ConfigError(f"load_model: {config} describes architecture {hub.get('architecture')!r}, {arch_path} "
                          f"backbone {arch.backbone!r}; the files come from different exports")
    classes = hub.get("num_classes", pretrained.get("num_classes"))
    if classes is not None and classes != getattr(model, "num_classes", classes):
        raise ConfigError(f"load_model: {config} says num_classes {classes}, {arch_path} builds {model.num_classes}; "
                          f"the files come from different exports")
    # Over timm's default for the backbone (first_conv, classifier, ...); lists of numbers as timm's own tuples
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    for k, v in {**pretrained, **{k: hub[k] for k in ("label_names", "label_descriptions") if k in hub}}.items():
        numbers = isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)
        cfg[k] = tuple(v) if numbers else v
    model.pretrained_cfg = cfg
    model.default_cfg = model.pretrained_cfg  # timm's older name, kept as an alias by timm's own builder
    return model.to(device).eval()


def paper_default_architecture(backbone: str, sites: list[Site], backbone_kwargs: Optional[Mapping] = None,
                               ) -> Architecture:
    """The paper's default: GC r16 (att, bottleneck + LayerNorm, add) after the last 1x1 (``before_add``) of every
    block of every stage but the first (ResNet's c3-c5). Falls back to ``after_block`` on generic backbones."""
    position = "before_add" if any(s.position == "before_add" for s in sites) else "after_block"
    stages = sorted({s.stage for s in sites})
    placements = [Placement(s.stage, s.block, s.position, BlockSpec()) for s in sites
                  if s.position == position and s.stage in stages[1:]]
    return Architecture(backbone, dict(backbone_kwargs or {}), tuple(placements))
