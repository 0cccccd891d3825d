"""Reading a search space: one reader per YAML section, each turning its mapping into validated parameters.

Every problem raises :class:`SearchSpaceError` naming the file, the key, the bad value and the valid values, before
any trial exists.
"""
from __future__ import annotations

import logging
import numbers
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from gcnas.arch import BLOCK_SELECTORS
from gcnas.backbones.families import GENERIC_POSITIONS, POSITIONS
from gcnas.backbones.sites import Site, blocks_by_stage, sites_by_key
from gcnas.blocks.transform import is_ratio
from gcnas.errors import ConfigError
from gcnas.space.conditions import ConditionCycle, key_order
from gcnas.space.keys import DEFAULTS, DESIGN_EXTRA, DESIGN_KEYS, LIMIT_KEYS, POSITION_KEYS, TRAINING_KEYS, VALID
from gcnas.space.params import Param, encode, fmt

log = logging.getLogger(__name__)


class SearchSpaceError(ConfigError):
    """A malformed search space; the message names the file, the key, the bad value and the valid values."""


class Reader:
    """Reads values of one space, naming ``source`` (its file) in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, msg: str) -> SearchSpaceError:
        return SearchSpaceError(f"{self.source}: {key}: {msg}")

    def param(self, key: str, raw: Any, valid: Optional[Sequence] = None, number: bool = False) -> Param:
        if isinstance(raw, Mapping):
            return self._range(key, raw, valid)
        if isinstance(raw, list):
            if not raw:
                raise self.error(key, "empty list of choices; give at least one value"
                                 + (f" from {fmt(valid)}" if valid is not None else ""))
            for v in raw:
                self._check_value(key, v, valid, number)
            if len({encode(v) for v in raw}) != len(raw):
                raise self.error(key, f"repeated choices in {raw!r}")
            return Param("choice", choices=tuple(raw)) if len(raw) > 1 else Param("fixed", value=raw[0])
        self._check_value(key, raw, valid, number)
        return Param("fixed", value=raw)

    def _range(self, key: str, raw: Mapping, valid: Optional[Sequence]) -> Param:
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
            raise self.error(key, f"takes named values, not a range; valid values are {fmt(valid)}")
        is_int = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (low, high)) and (
            step is None or isinstance(step, numbers.Integral))
        return Param("int" if is_int else "float", low=low, high=high, step=step, log=log)

    def _check_value(self, key: str, v: Any, valid: Optional[Sequence], number: bool) -> None:
        if valid is not None and v not in valid:
            raise self.error(key, f"{v!r} is not valid; valid values are {fmt(valid)}")
        if number and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise self.error(key, f"{v!r} is not a number")


def to_plain(obj: Any) -> Any:
    """An OmegaConf container (a composed Hydra config) as plain dicts and lists; anything else as it is.

    Only a process that imported omegaconf can hold one of its containers, so this never imports it itself.
    """
    omegaconf = sys.modules.get("omegaconf")
    if omegaconf is not None and omegaconf.OmegaConf.is_config(obj):
        return omegaconf.OmegaConf.to_container(obj, resolve=True)
    return obj


@dataclass(frozen=True)
class Design:
    """``design:``: one parameter per block argument (``DESIGN_KEYS``), how widely a design is shared, conditions."""

    params: dict[str, Param]
    share: str  # global | per_stage
    conditions: dict[str, dict[str, tuple]]  # key -> {other key: values under which key is searched}


@dataclass(frozen=True)
class Positions:
    """``positions:``: where blocks may go."""

    stages: tuple[int, ...]
    stage_sets: Optional[Param]  # one explicit set of stages per trial, instead of stage_on per stage
    stage_on: Param
    blocks: Param
    position: Param
    per_stage: bool
    replace: Param


@dataclass(frozen=True)
class Limits:
    """``limits:``: the fewest and most blocks an architecture may have (checked against the space once built)."""

    max_blocks: Optional[int]
    min_blocks: int


# -- design ------------------------------------------------------------------------------------------------------------
def read_design(r: Reader, section: Any) -> Design:
    design_raw = dict(section or {})
    unknown = set(design_raw) - set(DESIGN_KEYS) - DESIGN_EXTRA
    if unknown:
        raise r.error(f"design.{sorted(unknown)[0]}",
                      f"unknown key; valid keys are {fmt(list(DESIGN_KEYS) + sorted(DESIGN_EXTRA))}")
    share = design_raw.pop("share", "global")
    if share not in ("global", "per_stage"):
        raise r.error("design.share", f"{share!r} is not valid; valid values are 'global', 'per_stage'")
    cond_raw = design_raw.pop("conditions", None) or {}
    design = {}
    for key in DESIGN_KEYS:
        design[key] = _design_param(r, key, design_raw.get(key, DEFAULTS[key]))
        if key == "preset" and design_raw.get("preset") is not None:
            others = sorted(k for k in design_raw if k != "preset")
            if others:
                raise r.error(f"design.{others[0]}", "cannot be combined with design.preset: a preset fixes the "
                                                     "whole block design (use one or the other)")
            if cond_raw:
                raise r.error("design.conditions", "cannot be combined with design.preset")
    return Design(design, share, read_conditions(r, cond_raw))


def _design_param(r: Reader, key: str, raw: Any) -> Param:
    if key != "ratio":
        return r.param(f"design.{key}", raw, valid=VALID[key])
    p = r.param("design.ratio", raw, number=True)
    bad = [v for v in p.values() or [p.low, p.high] if not is_ratio(v)]
    if bad:
        raise r.error("design.ratio", f"{bad[0]!r} is not in (0, 1]")
    if p.kind == "int":
        raise r.error("design.ratio", "must be a float range in (0, 1]")
    return p


def read_conditions(r: Reader, cond_raw: Any) -> dict[str, dict[str, tuple]]:
    """``design.conditions``: each key's condition, checked to name known keys and values, and to leave some key to
    pick first (no cycle)."""
    conditions: dict[str, dict[str, tuple]] = {}
    if not isinstance(cond_raw, Mapping):
        raise r.error("design.conditions", f"must map a key to its condition; got {cond_raw!r}")
    for key, cond in cond_raw.items():
        if key not in DESIGN_KEYS:
            raise r.error(f"design.conditions.{key}", f"condition on unknown key; valid keys are "
                                                      f"{fmt(DESIGN_KEYS)}")
        if not isinstance(cond, Mapping) or not cond:
            raise r.error(f"design.conditions.{key}", f"must map keys to allowed values; got {cond!r}")
        conditions[key] = {}
        for dep, allowed in cond.items():
            where = f"design.conditions.{key}.{dep}"
            if dep not in DESIGN_KEYS:
                raise r.error(where, f"refers to unknown key {dep!r}; valid keys are {fmt(DESIGN_KEYS)}")
            if dep == key:
                raise r.error(where, "a key cannot be conditional on itself")
            allowed = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
            if dep in VALID:
                bad = [a for a in allowed if a not in VALID[dep]]
                if bad:
                    raise r.error(where, f"{bad[0]!r} is not a value of {dep}; valid values are "
                                         f"{fmt(VALID[dep])}")
            conditions[key][dep] = allowed
    try:
        key_order(conditions)
    except ConditionCycle as e:
        raise r.error(f"design.conditions.{e.ring[0]}", f"conditions form a cycle ({e}): no key of it can be drawn "
                                                        "first") from None
    return conditions


# -- positions ---------------------------------------------------------------------------------------------------------
def read_positions(r: Reader, section: Any, backbone: str, sites: list[Site]) -> Positions:
    pos_raw = dict(section or {})
    unknown = set(pos_raw) - POSITION_KEYS
    if unknown:
        raise r.error(f"positions.{sorted(unknown)[0]}", f"unknown key; valid keys are {fmt(sorted(POSITION_KEYS))}")
    blocks_in = blocks_by_stage(sites)
    stage_sets = None
    if "stage_sets" in pos_raw:
        stage_sets = _read_stage_sets(r, pos_raw, backbone, blocks_in)
        pos_raw["stages"] = sorted({st for x in stage_sets.values() for st in x})
    stages = _read_stages(r, pos_raw.get("stages", "all"), backbone, blocks_in)
    stage_on = r.param("positions.stage_on", pos_raw.get("stage_on", True), valid=(True, False))
    blocks = _read_blocks(r, pos_raw.get("blocks", "all"), backbone, stages, blocks_in)
    position = _read_position(r, pos_raw.get("position", "before_add"), backbone, sites, stages)
    position = _distinct_places(r, position, backbone, sites, {st: blocks_in[st] for st in stages})
    per_stage = pos_raw.get("per_stage", False)
    if not isinstance(per_stage, bool):
        raise r.error("positions.per_stage", f"{per_stage!r} is not valid; valid values are true, false")
    replace = _read_replace(r, pos_raw.get("replace", False), backbone, sites, stages, position)
    return Positions(stages, stage_sets, stage_on, blocks, position, per_stage, replace)


def _read_stage_sets(r: Reader, pos_raw: dict, backbone: str, blocks_in: dict[int, list[int]]) -> Param:
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
                                                      f"are {sorted(blocks_in)}")
    return r.param("positions.stage_sets", [sorted(set(x)) for x in sets])


def _read_stages(r: Reader, stages_raw: Any, backbone: str, blocks_in: dict[int, list[int]]) -> tuple[int, ...]:
    all_stages = sorted(blocks_in)
    if stages_raw in ("all", "all_but_first"):
        return tuple(all_stages if stages_raw == "all" else all_stages[1:])
    stages_list = stages_raw if isinstance(stages_raw, list) else [stages_raw]
    if not stages_list:
        raise r.error("positions.stages", f"empty list; valid stages of {backbone} are {all_stages}, "
                                          "'all' or 'all_but_first'")
    for st in stages_list:
        if isinstance(st, bool) or not isinstance(st, int) or st not in blocks_in:
            raise r.error("positions.stages", f"{st!r} is not a stage of {backbone}; valid stages are "
                                              f"{all_stages}, 'all' or 'all_but_first'")
    return tuple(sorted(set(stages_list)))


def _read_blocks(r: Reader, raw: Any, backbone: str, stages: tuple[int, ...],
                 blocks_in: dict[int, list[int]]) -> Param:
    blocks = r.param("positions.blocks", raw)
    for sel in blocks.values() or []:
        if isinstance(sel, str):
            if sel not in BLOCK_SELECTORS:
                raise r.error("positions.blocks", f"{sel!r} is not valid; valid values are "
                                                  f"{fmt(BLOCK_SELECTORS)} or a list of block indices")
            continue
        idx = sel if isinstance(sel, list) else [sel]
        for st in stages:
            bad = [b for b in idx if isinstance(b, bool) or not isinstance(b, int) or b not in blocks_in[st]]
            if bad:
                raise r.error("positions.blocks", f"block {bad[0]!r} does not exist in stage {st} of "
                                                  f"{backbone}; valid blocks there are {blocks_in[st]}")
    return blocks


def _read_position(r: Reader, pos_value: Any, backbone: str, sites: list[Site], stages: tuple[int, ...]) -> Param:
    offered = [p for p in POSITIONS + GENERIC_POSITIONS if any(s.position == p and s.stage in stages
                                                               for s in sites)]
    aliases = [p for p in POSITIONS if p not in offered and any(p in s.aliases and s.stage in stages for s in sites)]
    if pos_value == "all":
        pos_value = offered if len(offered) > 1 else offered[0]
    position = r.param("positions.position", pos_value, valid=POSITIONS + GENERIC_POSITIONS + ("all",))
    for p in position.values() or []:
        if p not in offered and p not in aliases:
            also = f" (also named {fmt(aliases)})" if aliases else ""
            raise r.error("positions.position", f"{p!r} is not a position of {backbone} (family "
                                                f"{sites[0].family}) in stages {list(stages)}; valid positions "
                                                f"there are {fmt(offered)}{also} or 'all'")
    return position


def _distinct_places(r: Reader, position: Param, backbone: str, sites: list[Site],
                     blocks: dict[int, list[int]]) -> Param:
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


def _read_replace(r: Reader, raw: Any, backbone: str, sites: list[Site], stages: tuple[int, ...],
                  position: Param) -> Param:
    replace = r.param("positions.replace", raw, valid=(True, False))
    if True in (replace.values() or []):
        for p in position.values() or []:
            lacking = [st for st in stages if not any(s.attention for s in sites if s.stage == st
                                                      and p in (s.position, *s.aliases))]
            if lacking:
                raise r.error("positions.replace", f"true needs an attention module to replace, but {backbone} "
                                                   f"has none at {p!r} in stage(s) {lacking}")
    return replace


# -- limits and training -----------------------------------------------------------------------------------------------
def read_limits(r: Reader, section: Any) -> Limits:
    limits = dict(section or {})
    unknown = set(limits) - LIMIT_KEYS
    if unknown:
        raise r.error(f"limits.{sorted(unknown)[0]}", f"unknown key; valid keys are {fmt(sorted(LIMIT_KEYS))}")
    max_blocks, min_blocks = limits.get("max_blocks"), limits.get("min_blocks", 0)
    for key, v in (("max_blocks", max_blocks), ("min_blocks", min_blocks)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise r.error(f"limits.{key}", f"must be a non-negative integer or null; got {v!r}")
    return Limits(max_blocks, min_blocks or 0)


def check_limits(r: Reader, limits: Limits, bounds: tuple[int, int], backbone: str) -> None:
    """The limits against ``bounds``, the fewest and most blocks the rest of the space places."""
    max_blocks, min_blocks = limits.max_blocks, limits.min_blocks
    lo, hi = bounds
    if max_blocks is not None and min_blocks and max_blocks < min_blocks:
        raise r.error("limits.max_blocks", f"{max_blocks} is below limits.min_blocks={min_blocks}")
    if min_blocks and min_blocks > hi:
        raise r.error("limits.min_blocks", f"{min_blocks} is impossible: this space places at most {hi} blocks in "
                                           f"{backbone}")
    if max_blocks is not None and max_blocks < lo:
        raise r.error("limits.max_blocks", f"{max_blocks} is impossible: this space always places at least {lo} "
                                           f"blocks in {backbone}")


def read_training(r: Reader, section: Any) -> dict[str, Param]:
    training: dict[str, Param] = {}
    train_raw = dict(section or {})
    unknown = set(train_raw) - set(TRAINING_KEYS)
    if unknown:
        raise r.error(f"training.{sorted(unknown)[0]}", f"unknown key; valid keys are {fmt(TRAINING_KEYS)}")
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
