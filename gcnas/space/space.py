"""A search space: block design choices and insertion positions, declared in YAML and validated before any trial.

A space (``search_spaces/<name>.yaml``, Hydra group ``search_space``) has four sections; every value is either fixed
(a scalar), a categorical choice (a list) or a range (``{low, high, step?, log?}``)::

    name: gc_full
    design:                       # the block: what the paper's framework lets you choose
      share: global               # global: one design for every placement | per_stage: one per stage
      kind: gc                    # gc | nl (query-dependent NL)
      context: [att, avg]
      transform: [bottleneck, se, conv]
      ratio: [0.0625, 0.125, 0.25]
      fusion: [add, scale, scale+add]
      norm: [layernorm, batchnorm, null]
      act: relu
      mode: embedded_gaussian     # NL pairwise function, for kind nl
      conditions:                 # declared, not coded: a key is suggested only where its condition holds
        ratio: {transform: [bottleneck, se]}
        norm: {transform: [bottleneck]}
    positions:                    # where blocks go
      stages: [1, 2, 3]           # candidate stages (from 0), or all / all_but_first
      stage_on: [true, false]     # searched on/off per candidate stage; true: all candidates on
      blocks: [all, last]         # all | first | last | every_other | an index list (a list of lists to search)
      position: [before_add, after_add]   # or all: every position the backbone offers there
                                  # (a stage without the position in some blocks gets blocks only where it has it;
                                  # positions that are one place in every block, as a BasicBlock's after_conv2 and
                                  # before_add, are searched once, under the site's own name)
      per_stage: false            # one blocks/position choice for all stages (false) or one per stage (true)
      replace: false              # true / [true, false]: take the place of the backbone's SE
    limits: {max_blocks: 16, min_blocks: 1}
    training:                     # optional hyperparameters searched with the architecture
      lr: {low: 0.01, high: 0.2, log: true}

Optuna parameter names are stable: ``design.<key>`` (or ``s<stage>.<key>`` with ``share: per_stage``),
``stage<k>.on``, ``blocks`` / ``position`` / ``replace`` (or ``s<stage>.blocks`` ... with ``per_stage``), and
``train.<key>``. The trial object is the only Optuna type this module sees.
"""
from __future__ import annotations

import itertools
import logging
import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Sequence

from gcnas.arch import BLOCK_SELECTORS, Architecture, BlockSpec, Placement, select_blocks
from gcnas.backbones.families import GENERIC_POSITIONS, POSITIONS
from gcnas.backbones.sites import Site, blocks_by_stage, sites_by_key
from gcnas.blocks import CONTEXTS, NL_DEFAULTS, NL_MODES, NORMS, TRANSFORMS, block_preset_names, parse_fusion
from gcnas.blocks.fusion import FUSION_SPELLINGS, fusion_spelling
from gcnas.blocks.layers import ACTIVATIONS
from gcnas.blocks.transform import is_ratio
from gcnas.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["SearchSpace", "SearchSpaceError", "InfeasibleArchitecture", "DESIGN_KEYS", "TRAINING_KEYS", "Design",
           "Positions", "Limits"]

DESIGN_KEYS = ("preset", "kind", "context", "transform", "ratio", "fusion", "norm", "act", "mode")
TRAINING_KEYS = ("lr", "weight_decay", "momentum", "batch_size", "opt", "label_smoothing", "seed")
_SECTIONS = {"name", "description", "design", "positions", "limits", "training"}
_DESIGN_EXTRA = {"share", "conditions"}
_POSITION_KEYS = {"stages", "stage_sets", "stage_on", "blocks", "position", "per_stage", "replace"}
_LIMIT_KEYS = {"max_blocks", "min_blocks"}
# design.preset: a named block (gcnas.blocks.block_preset_names: the framework's members and nl), or "none" (no block)
PRESET_CHOICES = tuple(block_preset_names()) + ("none",)
_VALID: dict[str, tuple] = {
    "preset": PRESET_CHOICES + (None,),
    "kind": ("gc", "nl"),
    "context": tuple(CONTEXTS.names()),
    "transform": tuple(TRANSFORMS.names()),
    "fusion": FUSION_SPELLINGS,
    "norm": tuple(NORMS.names()) + (None,),
    "act": tuple(ACTIVATIONS.names()) + (None,),
    "mode": NL_MODES,
}
# A design key the space leaves out takes BlockSpec's default (the paper's GC), or the NL block's for mode.
_SPEC_DEFAULTS = {f.name: f.default for f in fields(BlockSpec)}
_DEFAULTS = {"preset": None, **{k: _SPEC_DEFAULTS[k] for k in ("kind", "context", "transform", "ratio", "norm", "act")},
             "fusion": fusion_spelling(_SPEC_DEFAULTS["fusion"]), "mode": NL_DEFAULTS["mode"]}


class SearchSpaceError(ConfigError):
    """A malformed search space; the message names the file, the key, the bad value and the valid values."""


class InfeasibleArchitecture(Exception):
    """A sampled architecture breaks the space's limits (too many or too few blocks)."""


@dataclass(frozen=True)
class _Param:
    """One searchable value: fixed, categorical or a range."""

    kind: str  # "fixed" | "choice" | "int" | "float"
    value: Any = None
    choices: tuple = ()
    low: float = 0
    high: float = 0
    step: Optional[float] = None
    log: bool = False

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            encoded = [_encode(c) for c in self.choices]
            picked = trial.suggest_categorical(name, encoded)
            return self.choices[encoded.index(picked)]
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)

    def values(self) -> Optional[list]:
        """Every value, where finite."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is not None:
            n = int(round((self.high - self.low) / self.step))
            return [self.low + i * self.step for i in range(n + 1)]
        return None

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"


class _Assignment:
    """A trial-like object that answers every ``suggest_*`` from fixed values by parameter name (enumeration)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def suggest_categorical(self, name: str, choices: Sequence) -> Any:
        return self.values[name]

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.values[name]

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.values[name]


def _encode(value: Any) -> Any:
    """Optuna's categorical choices are scalars: lists (an explicit block list) become strings."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, msg: str) -> SearchSpaceError:
        return SearchSpaceError(f"{self.source}: {key}: {msg}")

    def param(self, key: str, raw: Any, valid: Optional[Sequence] = None, number: bool = False) -> _Param:
        if isinstance(raw, Mapping):
            unknown = set(raw) - {"low", "high", "step", "log"}
            if unknown or "low" not in raw or "high" not in raw:
                raise self.error(key, f"a range needs low and high (optional step, log); got {dict(raw)!r}")
            low, high, step, log = raw["low"], raw["high"], raw.get("step"), bool(raw.get("log", False))
            for n, v in (("low", low), ("high", high)):
                if isinstance(v, bool) or not isinstance(v, numbers.Real):
                    raise self.error(key, f"range {n} must be a number; got {v!r}")
            if not low < high:
                raise self.error(key, f"range needs low < high; got low={low!r}, high={high!r}")
            if log and low <= 0:
                raise self.error(key, f"a log range needs low > 0; got low={low!r}")
            if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Real) or step <= 0):
                raise self.error(key, f"range step must be a positive number; got {step!r}")
            if log and step is not None:
                raise self.error(key, "a range takes step or log, not both")
            if valid is not None:
                raise self.error(key, f"takes named values, not a range; valid values are {_fmt(valid)}")
            is_int = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (low, high)) and (
                step is None or isinstance(step, numbers.Integral))
            return _Param("int" if is_int else "float", low=low, high=high, step=step, log=log)
        if isinstance(raw, list):
            if not raw:
                raise self.error(key, "empty list of choices; give at least one value"
                                 + (f" from {_fmt(valid)}" if valid is not None else ""))
            for v in raw:
                self._check_value(key, v, valid, number)
            if len({_encode(v) for v in raw}) != len(raw):
                raise self.error(key, f"repeated choices in {raw!r}")
            return _Param("choice", choices=tuple(raw)) if len(raw) > 1 else _Param("fixed", value=raw[0])
        self._check_value(key, raw, valid, number)
        return _Param("fixed", value=raw)

    def _check_value(self, key: str, v: Any, valid: Optional[Sequence], number: bool) -> None:
        if valid is not None and v not in valid:
            raise self.error(key, f"{v!r} is not valid; valid values are {_fmt(valid)}")
        if number and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise self.error(key, f"{v!r} is not a number")


def _fmt(values: Sequence) -> str:
    return ", ".join("null" if v is None else repr(v) for v in values)


def _to_plain(obj: Any) -> Any:
    """OmegaConf containers to plain dicts/lists (without importing omegaconf here)."""
    if hasattr(obj, "_content") or type(obj).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf  # only reached when a Hydra config was passed in

        return OmegaConf.to_container(obj, resolve=True)
    return obj


@dataclass(frozen=True)
class Design:
    """``design:``: one parameter per block argument (``DESIGN_KEYS``), how widely a design is shared, conditions."""

    params: dict[str, _Param]
    share: str  # global | per_stage
    conditions: dict[str, dict[str, tuple]]  # key -> {other key: values under which key is searched}


@dataclass(frozen=True)
class Positions:
    """``positions:``: where blocks may go."""

    stages: tuple[int, ...]
    stage_sets: Optional[_Param]  # one explicit set of stages per trial, instead of stage_on per stage
    stage_on: _Param
    blocks: _Param
    position: _Param
    per_stage: bool
    replace: _Param


@dataclass(frozen=True)
class Limits:
    """``limits:``: the fewest and most blocks an architecture may have (checked against the space once built)."""

    max_blocks: Optional[int]
    min_blocks: int


def _read_design(r: _Reader, section: Any) -> Design:
    design_raw = dict(section or {})
    unknown = set(design_raw) - set(DESIGN_KEYS) - _DESIGN_EXTRA
    if unknown:
        raise r.error(f"design.{sorted(unknown)[0]}",
                      f"unknown key; valid keys are {_fmt(list(DESIGN_KEYS) + sorted(_DESIGN_EXTRA))}")
    share = design_raw.pop("share", "global")
    if share not in ("global", "per_stage"):
        raise r.error("design.share", f"{share!r} is not valid; valid values are 'global', 'per_stage'")
    cond_raw = design_raw.pop("conditions", None) or {}
    design = {}
    for key in DESIGN_KEYS:
        raw = design_raw.get(key, _DEFAULTS[key])
        if key == "ratio":
            p = r.param("design.ratio", raw, number=True)
            vals = p.values() or [p.low, p.high]
            bad = [v for v in vals if not is_ratio(v)]
            if bad:
                raise r.error("design.ratio", f"{bad[0]!r} is not in (0, 1]")
            if p.kind == "int":
                raise r.error("design.ratio", "must be a float range in (0, 1]")
        else:
            p = r.param(f"design.{key}", raw, valid=_VALID[key])
        design[key] = p
        if key == "preset" and design_raw.get("preset") is not None:
            others = sorted(k for k in design_raw if k != "preset")
            if others:
                raise r.error(f"design.{others[0]}", "cannot be combined with design.preset: a preset fixes the "
                                                     "whole block design (use one or the other)")
            if cond_raw:
                raise r.error("design.conditions", "cannot be combined with design.preset")

    conditions: dict[str, dict[str, tuple]] = {}
    if not isinstance(cond_raw, Mapping):
        raise r.error("design.conditions", f"must map a key to its condition; got {cond_raw!r}")
    for key, cond in cond_raw.items():
        if key not in DESIGN_KEYS:
            raise r.error(f"design.conditions.{key}", f"condition on unknown key; valid keys are "
                                                      f"{_fmt(DESIGN_KEYS)}")
        if not isinstance(cond, Mapping) or not cond:
            raise r.error(f"design.conditions.{key}", f"must map keys to allowed values; got {cond!r}")
        conditions[key] = {}
        for dep, allowed in cond.items():
            where = f"design.conditions.{key}.{dep}"
            if dep not in DESIGN_KEYS:
                raise r.error(where, f"refers to unknown key {dep!r}; valid keys are {_fmt(DESIGN_KEYS)}")
            if dep == key:
                raise r.error(where, "a key cannot be conditional on itself")
            allowed = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
            if dep in _VALID:
                bad = [a for a in allowed if a not in _VALID[dep]]
                if bad:
                    raise r.error(where, f"{bad[0]!r} is not a value of {dep}; valid values are "
                                         f"{_fmt(_VALID[dep])}")
            conditions[key][dep] = allowed
    return Design(design, share, conditions)


def _read_positions(r: _Reader, section: Any, backbone: str, sites: list[Site]) -> Positions:
    pos_raw = dict(section or {})
    unknown = set(pos_raw) - _POSITION_KEYS
    if unknown:
        raise r.error(f"positions.{sorted(unknown)[0]}", f"unknown key; valid keys are {_fmt(sorted(_POSITION_KEYS))}")
    blocks_in = blocks_by_stage(sites)
    all_stages = sorted(blocks_in)
    stage_sets = None
    if "stage_sets" in pos_raw:
        if pos_raw.get("stages") is not None or pos_raw.get("stage_on", True) is not True:
            raise r.error("positions.stage_sets", "replaces positions.stages and positions.stage_on; give "
                                                  "stage_sets alone")
        sets = pos_raw["stage_sets"]
        if not isinstance(sets, list) or not sets or not all(isinstance(x, list) and x for x in sets):
            raise r.error("positions.stage_sets", f"must be a non-empty list of non-empty stage lists, e.g. "
                                                  f"[[1], [2], [1, 2]]; got {sets!r}")
        for x in sets:
            for st in x:
                if isinstance(st, bool) or not isinstance(st, int) or st not in blocks_in:
                    raise r.error("positions.stage_sets", f"{st!r} is not a stage of {backbone}; valid stages "
                                                          f"are {all_stages}")
        stage_sets = r.param("positions.stage_sets", [sorted(set(x)) for x in sets])
        pos_raw["stages"] = sorted({st for x in sets for st in x})
    stages_raw = pos_raw.get("stages", "all")
    if stages_raw in ("all", "all_but_first"):
        stages = tuple(all_stages if stages_raw == "all" else all_stages[1:])
    else:
        stages_list = stages_raw if isinstance(stages_raw, list) else [stages_raw]
        if not stages_list:
            raise r.error("positions.stages", f"empty list; valid stages of {backbone} are {all_stages}, "
                                              "'all' or 'all_but_first'")
        for st in stages_list:
            if isinstance(st, bool) or not isinstance(st, int) or st not in blocks_in:
                raise r.error("positions.stages", f"{st!r} is not a stage of {backbone}; valid stages are "
                                                  f"{all_stages}, 'all' or 'all_but_first'")
        stages = tuple(sorted(set(stages_list)))
    stage_on = r.param("positions.stage_on", pos_raw.get("stage_on", True), valid=(True, False))
    blocks = r.param("positions.blocks", pos_raw.get("blocks", "all"))
    for sel in blocks.values() or []:
        if isinstance(sel, str):
            if sel not in BLOCK_SELECTORS:
                raise r.error("positions.blocks", f"{sel!r} is not valid; valid values are "
                                                  f"{_fmt(BLOCK_SELECTORS)} or a list of block indices")
        else:
            idx = sel if isinstance(sel, list) else [sel]
            for st in stages:
                bad = [b for b in idx if isinstance(b, bool) or not isinstance(b, int) or b not in blocks_in[st]]
                if bad:
                    raise r.error("positions.blocks", f"block {bad[0]!r} does not exist in stage {st} of "
                                                      f"{backbone}; valid blocks there are {blocks_in[st]}")
    offered = [p for p in POSITIONS + GENERIC_POSITIONS if any(s.position == p and s.stage in stages
                                                               for s in sites)]
    aliases = [p for p in POSITIONS if p not in offered and any(p in s.aliases and s.stage in stages for s in sites)]
    pos_value = pos_raw.get("position", "before_add")
    if pos_value == "all":
        pos_value = offered if len(offered) > 1 else offered[0]
    position = r.param("positions.position", pos_value, valid=POSITIONS + GENERIC_POSITIONS + ("all",))
    for p in position.values() or []:
        if p not in offered and p not in aliases:
            also = f" (also named {_fmt(aliases)})" if aliases else ""
            raise r.error("positions.position", f"{p!r} is not a position of {backbone} (family "
                                                f"{sites[0].family}) in stages {list(stages)}; valid positions "
                                                f"there are {_fmt(offered)}{also} or 'all'")
    position = _distinct_places(r, position, backbone, sites, {st: blocks_in[st] for st in stages})
    per_stage = pos_raw.get("per_stage", False)
    if not isinstance(per_stage, bool):
        raise r.error("positions.per_stage", f"{per_stage!r} is not valid; valid values are true, false")
    replace = r.param("positions.replace", pos_raw.get("replace", False), valid=(True, False))
    if True in (replace.values() or []):
        for p in position.values() or []:
            lacking = [st for st in stages if not any(s.attention for s in sites if s.stage == st
                                                      and p in (s.position, *s.aliases))]
            if lacking:
                raise r.error("positions.replace", f"true needs an attention module to replace, but {backbone} "
                                                   f"has none at {p!r} in stage(s) {lacking}")
    return Positions(stages, stage_sets, stage_on, blocks, position, per_stage, replace)


def _distinct_places(r: _Reader, position: _Param, backbone: str, sites: list[Site],
                     blocks: dict[int, list[int]]) -> _Param:
    """The position choice with one value per distinct place. Two names that give the same site in every block of
    the space's stages (a BasicBlock's after_conv2 and before_add) are one choice, under the site's own name where
    every block agrees on it, so Optuna never draws the same network under two names; a name that is one place
    with another only in some blocks (after_conv1 in efficientnetv2, one place with before_add in its ConvBnAct
    blocks only) stays a choice of its own."""
    values = position.values() or []
    lookup = sites_by_key(sites)
    groups: dict[tuple, list[str]] = {}
    for p in values:
        where = tuple(getattr(lookup.get((st, b, p)), "key", None) for st, bs in blocks.items() for b in bs)
        groups.setdefault(where, []).append(p)
    distinct = []
    for where, names in groups.items():
        own = {key[2] for key in where if key is not None}
        name = next(iter(own)) if len(own) == 1 else names[0]
        distinct.append(name)
        if names != [name]:
            what = f"the site {name!r}" if len(own) == 1 else "one place"
            log.warning("%s: positions.position: %s name%s %s in every block of %s in stages %s; searched once, as %r",
                        r.source, ", ".join(map(repr, names)), "" if len(names) > 1 else "s", what, backbone,
                        list(blocks), name)
    return position if distinct == list(values) else r.param("positions.position", distinct)


def _read_limits(r: _Reader, section: Any) -> Limits:
    limits = dict(section or {})
    unknown = set(limits) - _LIMIT_KEYS
    if unknown:
        raise r.error(f"limits.{sorted(unknown)[0]}", f"unknown key; valid keys are {_fmt(sorted(_LIMIT_KEYS))}")
    max_blocks, min_blocks = limits.get("max_blocks"), limits.get("min_blocks", 0)
    for key, v in (("max_blocks", max_blocks), ("min_blocks", min_blocks)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise r.error(f"limits.{key}", f"must be a non-negative integer or null; got {v!r}")
    return Limits(max_blocks, min_blocks or 0)


def _read_training(r: _Reader, section: Any) -> dict[str, _Param]:
    training: dict[str, _Param] = {}
    train_raw = dict(section or {})
    unknown = set(train_raw) - set(TRAINING_KEYS)
    if unknown:
        raise r.error(f"training.{sorted(unknown)[0]}", f"unknown key; valid keys are {_fmt(TRAINING_KEYS)}")
    for key, raw in train_raw.items():
        if key == "seed":
            training[key] = r.param("training.seed", raw, number=True)
            bad = [v for v in training[key].values() or [] if not isinstance(v, int) or isinstance(v, bool)]
            if bad or training[key].values() is None:
                raise r.error("training.seed", f"must be integers (a list of seeds); got {raw!r}")
        elif key == "opt":
            training[key] = r.param("training.opt", raw)
        else:
            training[key] = r.param(f"training.{key}", raw, number=True)
    return training


class SearchSpace:
    """A validated search space bound to one backbone's sites. Build it with :meth:`from_config`."""

    def __init__(self, name: str, source: str, backbone: str, backbone_kwargs: Mapping[str, Any], sites: list[Site],
                 design: Design, positions: Positions, limits: Limits, training: dict[str, _Param]) -> None:
        self.name, self.source = name, source
        self.backbone, self.backbone_kwargs, self.sites = backbone, dict(backbone_kwargs), sites
        self.design, self.share, self.conditions = design.params, design.share, design.conditions
        self.stages, self.stage_sets, self.stage_on = positions.stages, positions.stage_sets, positions.stage_on
        self.blocks, self.position = positions.blocks, positions.position
        self.per_stage, self.replace = positions.per_stage, positions.replace
        self.max_blocks, self.min_blocks = limits.max_blocks, limits.min_blocks
        self.training = training
        self._site_keys = sites_by_key(sites)  # a position's aliases too: a name may be an alias in some blocks only
        self._blocks_in = blocks_by_stage(sites)

    # -- construction ------------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Any, *, backbone: str, sites: list[Site], backbone_kwargs: Optional[Mapping] = None,
                    source: Optional[str] = None) -> "SearchSpace":
        """Validate a space (a mapping, e.g. the composed ``search_space`` config) against a backbone's sites.

        Every problem raises :class:`SearchSpaceError` naming ``source`` (the YAML file), the key, the bad value
        and the valid values, before any trial exists. One reader per YAML section; the limits are checked last,
        against the block counts the other sections allow.
        """
        data = _to_plain(cfg)
        name = data.get("name") if isinstance(data, Mapping) else None
        r = _Reader(source or (f"search_spaces/{name}.yaml" if name else "search space"))
        if not isinstance(data, Mapping):
            raise r.error("search_space", f"must be a mapping; got {data!r}")
        unknown = set(data) - _SECTIONS
        if unknown:
            raise r.error(sorted(unknown)[0], f"unknown key; valid top-level keys are {_fmt(sorted(_SECTIONS))}")
        if not isinstance(name, str) or not name:
            raise r.error("name", f"must be a non-empty string; got {name!r}")
        design = _read_design(r, data.get("design"))
        positions = _read_positions(r, data.get("positions"), backbone, sites)
        limits = _read_limits(r, data.get("limits"))
        training = _read_training(r, data.get("training"))
        space = cls(name, r.source, backbone, backbone_kwargs or {}, sites, design, positions, limits, training)
        space._check_limits(r)
        return space

    def _check_limits(self, r: _Reader) -> None:
        max_blocks, min_blocks = self.max_blocks, self.min_blocks
        lo, hi = self._block_count_bounds()
        if max_blocks is not None and min_blocks and max_blocks < min_blocks:
            raise r.error("limits.max_blocks", f"{max_blocks} is below limits.min_blocks={min_blocks}")
        if min_blocks and min_blocks > hi:
            raise r.error("limits.min_blocks", f"{min_blocks} is impossible: this space places at most {hi} blocks in "
                                               f"{self.backbone}")
        if max_blocks is not None and max_blocks < lo:
            raise r.error("limits.max_blocks", f"{max_blocks} is impossible: this space always places at least {lo} "
                                               f"blocks in {self.backbone}")

    # -- sampling ----------------------------------------------------------------------------------------------------
    def _design_for(self, trial: Any, prefix: str) -> Optional[BlockSpec]:
        """The block spec to place, or None for the design preset ``none`` (no block)."""
        name = self.design["preset"].suggest(trial, f"{prefix}.preset")
        if name == "none":
            return None
        if name is not None:  # a GC member or nl: gcnas.blocks.block_preset
            return BlockSpec.from_value(name, f"{prefix}.preset")
        chosen: dict[str, Any] = {}
        for key in DESIGN_KEYS[1:]:
            cond = self.conditions.get(key, {})
            if any(chosen.get(dep, _DEFAULTS[dep]) not in allowed for dep, allowed in cond.items()):
                continue
            chosen[key] = self.design[key].suggest(trial, f"{prefix}.{key}")
        kind = chosen.get("kind", _DEFAULTS["kind"])
        if kind == "nl":
            return BlockSpec(kind="nl", ratio=chosen.get("ratio"), mode=chosen.get("mode"))  # None: NL_DEFAULTS
        return BlockSpec(context=chosen.get("context", _DEFAULTS["context"]),
                         transform=chosen.get("transform", _DEFAULTS["transform"]),
                         ratio=chosen.get("ratio", _DEFAULTS["ratio"]),
                         fusion=parse_fusion(chosen.get("fusion", _DEFAULTS["fusion"])),
                         norm=chosen.get("norm"), act=chosen.get("act"))

    def _select(self, stage: int, selector: Any) -> list[int]:
        return select_blocks(self._blocks_in[stage], selector)

    def suggest(self, trial: Any) -> Architecture:
        """Sample an architecture; raises :class:`InfeasibleArchitecture` when it breaks the space's limits."""
        shared_design = self._design_for(trial, "design") if self.share == "global" else None
        placements: list[Placement] = []
        shared = {}
        if not self.per_stage:
            shared = {"blocks": self.blocks.suggest(trial, "blocks"),
                      "position": self.position.suggest(trial, "position"),
                      "replace": self.replace.suggest(trial, "replace")}
        chosen_stages = set(self.stage_sets.suggest(trial, "stages")) if self.stage_sets is not None else None
        for st in self.stages:
            if chosen_stages is not None:
                if st not in chosen_stages:
                    continue
            elif not self.stage_on.suggest(trial, f"stage{st}.on"):
                continue
            if self.per_stage:
                choice = {k: p.suggest(trial, f"s{st}.{k}") for k, p in
                          (("blocks", self.blocks), ("position", self.position), ("replace", self.replace))}
            else:
                choice = shared
            spec = shared_design if self.share == "global" else self._design_for(trial, f"s{st}")
            if spec is None:  # design preset "none"
                continue
            for b in self._select(st, choice["blocks"]):
                site = self._site_keys.get((st, b, choice["position"]))
                if site is not None:
                    placements.append(Placement(st, b, site.position, spec, bool(choice["replace"])))
        n = len(placements)
        if self.max_blocks is not None and n > self.max_blocks:
            raise InfeasibleArchitecture(f"{n} blocks exceed limits.max_blocks={self.max_blocks}")
        if n < self.min_blocks:
            raise InfeasibleArchitecture(f"{n} blocks are fewer than limits.min_blocks={self.min_blocks}")
        return Architecture(self.backbone, self.backbone_kwargs, tuple(placements))

    def suggest_training(self, trial: Any) -> dict[str, Any]:
        """Training hyperparameters the space searches (``train.<key>``), to override the trainer config."""
        return {k: p.suggest(trial, f"train.{k}") for k, p in self.training.items()}

    # -- size and grid -----------------------------------------------------------------------------------------------
    def _block_count_bounds(self) -> tuple[int, int]:
        """The fewest and most blocks this space can place (before limits)."""
        def placed(st: int, selector: Any, position: str) -> int:
            return sum((st, b, position) in self._site_keys for b in self._select(st, selector))

        choices = [(sel, pos) for sel in self.blocks.values() or [] for pos in self.position.values() or []]
        if self.per_stage:  # each stage picks its own selector and position
            fewest = sum(min(placed(st, *c) for c in choices) for st in self.stages)
            most = sum(max(placed(st, *c) for c in choices) for st in self.stages)
        else:  # one shared choice for every stage
            totals = [sum(placed(st, *c) for st in self.stages) for c in choices]
            fewest, most = min(totals), max(totals)
        on_values = self.stage_on.values() or [True]
        lo = 0 if False in on_values or "none" in (self.design["preset"].values() or []) else fewest
        if self.stage_sets is not None:  # each trial's stages are one of the explicit sets
            per_set = [sum(min(placed(st, *c) for c in choices) for st in s) for s in self.stage_sets.values()]
            lo = min(lo, min(per_set))
        hi = most if True in on_values else 0
        return lo, hi

    def _finite_values(self, name: str, p: _Param, why: str) -> list:
        """Every value of parameter ``name`` as Optuna names it (encoded); a continuous range raises, saying ``why``."""
        vals = p.values()
        if vals is None:
            raise SearchSpaceError(f"{self.source}: {name}: a continuous range {why}")
        return [_encode(v) for v in vals]

    def grid(self) -> dict[str, list]:
        """Every parameter with its finite values, for Optuna's GridSampler; raises for continuous ranges."""
        out: dict[str, list] = {}

        def add(name: str, p: _Param) -> None:
            if p.searched:
                out[name] = self._finite_values(name, p, "cannot be gridded; give a step or a list of values "
                                                         "(sampler=grid)")

        for prefix in self.design_prefixes():
            for key in DESIGN_KEYS:
                add(f"{prefix}.{key}", self.design[key])
        if self.stage_sets is not None:
            add("stages", self.stage_sets)
        else:
            for st in self.stages:
                add(f"stage{st}.on", self.stage_on)
        if self.per_stage:
            for st in self.stages:
                add(f"s{st}.blocks", self.blocks)
                add(f"s{st}.position", self.position)
                add(f"s{st}.replace", self.replace)
        else:
            add("blocks", self.blocks)
            add("position", self.position)
            add("replace", self.replace)
        for key, p in self.training.items():
            add(f"train.{key}", p)
        return out

    def design_choices(self) -> list[tuple[Optional[BlockSpec], dict[str, Any]]]:
        """Every distinct design this space can draw (``None``: the design preset ``none``, no block), each with one
        assignment of the searched design keys that draws it (``{key: value as Optuna names it}``), in a stable
        order; raises for a continuous range."""
        keys = [key for key in DESIGN_KEYS if self.design[key].searched]
        values = [self._finite_values(f"design.{key}", self.design[key], "has no finite set of designs; give "
                                      "a list of values") for key in keys]
        out: dict[Optional[BlockSpec], dict[str, Any]] = {}
        for combo in itertools.product(*values):
            assignment = dict(zip(keys, combo))
            spec = self._design_for(_Assignment({f"design.{k}": v for k, v in assignment.items()}), "design")
            out.setdefault(spec, assignment)
        return list(out.items())

    def designs(self) -> list[BlockSpec]:
        """Every block design this space can place (conditions respected), in a stable order; raises for a
        continuous range (a one-shot supernet must hold every design)."""
        return [spec for spec, _ in self.design_choices() if spec is not None]

    def design_prefixes(self) -> list[str]:
        """The parameter-name prefixes under which a draw picks a design: ``design`` when one design is shared,
        else one per stage (``s0``, ``s1``, ...)."""
        return ["design"] if self.share == "global" else [f"s{st}" for st in self.stages]

    def reachable_sites(self) -> list[Site]:
        """Every site some architecture of this space can place a block at, in the backbone's order."""
        keys = {self._site_keys[(st, b, pos)].key for st in self.stages for sel in self.blocks.values() or []
                for b in self._select(st, sel) for pos in self.position.values() or []
                if (st, b, pos) in self._site_keys}
        return [s for s in self.sites if s.key in keys]

    def size(self) -> Optional[int]:
        """Number of distinct parameter assignments (conditions respected); None if a range is continuous."""
        n_design = self._design_assignments()
        if n_design is None:
            return None
        designs = n_design ** (1 if self.share == "global" else len(self.stages))
        per = []
        for p in (self.blocks, self.position, self.replace):
            vals = p.values()
            per.append(len(vals))
        pos = math.prod(per)
        positions = pos if not self.per_stage else pos ** len(self.stages)
        stage_states = len(self.stage_on.values()) ** len(self.stages) if self.stage_sets is None else \
            len(self.stage_sets.values())
        training = 1
        for p in self.training.values():
            vals = p.values()
            if vals is None:
                return None
            training *= len(vals)
        return designs * positions * stage_states * training

    def _design_assignments(self) -> Optional[int]:
        values = {}
        for key in DESIGN_KEYS:
            v = self.design[key].values()
            if v is None:
                return None
            values[key] = v
        seen = set()
        for combo in itertools.product(*(values[k] for k in DESIGN_KEYS)):
            chosen = dict(zip(DESIGN_KEYS, combo))
            active = tuple((k, _encode(chosen[k])) for k in DESIGN_KEYS
                           if all(chosen[d] in allowed for d, allowed in self.conditions.get(k, {}).items()))
            seen.add(active)
        return len(seen)
