"""Enumeration: what a space holds, listed or counted without sampling: Optuna's grid, the designs, the sites, the
number of assignments and the fewest and most blocks.

Which design keys an assignment holds is the condition rule's (:mod:`gcnas.space.conditions`), the same one sampling
follows, so what is counted here is what a draw can be.
"""
from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Optional

from gcnas.arch import BlockSpec, select_blocks
from gcnas.backbones.sites import Site
from gcnas.space.conditions import pick
from gcnas.space.keys import DESIGN_KEYS
from gcnas.space.params import Param, encode
from gcnas.space.readers import SearchSpaceError
from gcnas.space.sampling import block_spec

if TYPE_CHECKING:
    from gcnas.space.space import SearchSpace


def block_count_bounds(space: "SearchSpace") -> tuple[int, int]:
    """The fewest and most blocks this space can place (before limits)."""
    def placed(st: int, selector: Any, position: str) -> int:
        return sum((st, b, position) in space.site_keys for b in select_blocks(space.blocks_in[st], selector))

    choices = [(sel, pos) for sel in space.blocks.values() or [] for pos in space.position.values() or []]
    if space.per_stage:  # each stage picks its own selector and position
        fewest = sum(min(placed(st, *c) for c in choices) for st in space.stages)
        most = sum(max(placed(st, *c) for c in choices) for st in space.stages)
    else:  # one shared choice for every stage
        totals = [sum(placed(st, *c) for st in space.stages) for c in choices]
        fewest, most = min(totals), max(totals)
    on_values = space.stage_on.values() or [True]
    lo = 0 if False in on_values or "none" in (space.design["preset"].values() or []) else fewest
    if space.stage_sets is not None:  # each trial's stages are one of the explicit sets
        per_set = [sum(min(placed(st, *c) for c in choices) for st in s) for s in space.stage_sets.values()]
        lo = min(lo, min(per_set))
    hi = most if True in on_values else 0
    return lo, hi


def finite_values(space: "SearchSpace", name: str, p: Param, why: str) -> list:
    """Every value of parameter ``name`` as Optuna names it (encoded); a continuous range raises, saying ``why``."""
    vals = p.values()
    if vals is None:
        raise SearchSpaceError(f"{space.source}: {name}: a continuous range {why}")
    return [encode(v) for v in vals]


def grid(space: "SearchSpace") -> dict[str, list]:
    """Every parameter with its finite values, for Optuna's GridSampler; raises for continuous ranges."""
    named: list[tuple[str, Param]] = [(f"{prefix}.{key}", space.design[key]) for prefix in space.design_prefixes()
                                      for key in DESIGN_KEYS]
    if space.stage_sets is not None:
        named.append(("stages", space.stage_sets))
    else:
        named += [(f"stage{st}.on", space.stage_on) for st in space.stages]
    prefixes = [f"s{st}." for st in space.stages] if space.per_stage else [""]
    named += [(f"{prefix}{key}", p) for prefix in prefixes
              for key, p in (("blocks", space.blocks), ("position", space.position), ("replace", space.replace))]
    named += [(f"train.{key}", p) for key, p in space.training.items()]
    return {name: finite_values(space, name, p, "cannot be gridded; give a step or a list of values (sampler=grid)")
            for name, p in named if p.searched}


def design_choices(space: "SearchSpace") -> list[tuple[Optional[BlockSpec], dict[str, Any]]]:
    """Every distinct design this space can draw (``None``: the design preset ``none``, no block), each with one
    assignment of the searched design keys that draws it (``{key: value as Optuna names it}``), in a stable
    order; raises for a continuous range."""
    keys = [key for key in DESIGN_KEYS if space.design[key].searched]
    for key in keys:
        finite_values(space, f"design.{key}", space.design[key], "has no finite set of designs; give a list of values")
    out: dict[Optional[BlockSpec], dict[str, Any]] = {}
    for combo in _combinations(space):
        spec = block_spec(pick(space.key_order, space.conditions, combo.__getitem__), "design")
        out.setdefault(spec, {key: encode(combo[key]) for key in keys})
    return list(out.items())


def _combinations(space: "SearchSpace") -> list[dict[str, Any]]:
    """Every combination of the design keys' values, conditions not applied (the caller has checked they are
    finite)."""
    values = [space.design[key].values() for key in DESIGN_KEYS]
    return [dict(zip(DESIGN_KEYS, combo)) for combo in itertools.product(*values)]


def design_assignments(space: "SearchSpace") -> Optional[list[dict[str, Any]]]:
    """Every distinct assignment of the design keys a draw picks (``{key: value as Optuna names it}``, fixed keys
    included), in a stable order; None where a range is continuous."""
    if any(space.design[key].values() is None for key in DESIGN_KEYS):
        return None
    seen: dict[tuple, dict[str, Any]] = {}
    for combo in _combinations(space):
        picked = {k: encode(v) for k, v in pick(space.key_order, space.conditions, combo.__getitem__).items()}
        seen.setdefault(tuple(picked.items()), picked)
    return list(seen.values())


def size(space: "SearchSpace") -> Optional[int]:
    """Number of distinct parameter assignments (conditions respected); None if a range is continuous.

    A draw asks for what it places: the shared design and placement choice always, a stage's own ones (``per_stage``)
    only where that stage is on."""
    assignments = design_assignments(space)
    if assignments is None or any(p.values() is None for p in space.training.values()):
        return None
    n_design = len(assignments)
    places = math.prod(len(p.values()) for p in (space.blocks, space.position, space.replace))
    shared = (n_design if space.share == "global" else 1) * (1 if space.per_stage else places)
    per_stage_on = (n_design if space.share == "per_stage" else 1) * (places if space.per_stage else 1)
    if space.stage_sets is None:
        on_values = space.stage_on.values()
        stages = (on_values.count(True) * per_stage_on + on_values.count(False)) ** len(space.stages)
    else:
        stages = sum(per_stage_on ** len(s) for s in space.stage_sets.values())
    return shared * stages * math.prod(len(p.values()) for p in space.training.values())


def reachable_sites(space: "SearchSpace") -> list[Site]:
    """Every site some architecture of this space can place a block at, in the backbone's order."""
    keys = {space.site_keys[(st, b, pos)].key for st in space.stages for sel in space.blocks.values() or []
            for b in select_blocks(space.blocks_in[st], sel) for pos in space.position.values() or []
            if (st, b, pos) in space.site_keys}
    return [s for s in space.sites if s.key in keys]
