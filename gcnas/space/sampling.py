"""Sampling: a trial's suggestions become an :class:`~gcnas.arch.Architecture` of the space.

The trial object is the only Optuna type this module sees; which design keys it is asked for is the condition rule's
(:mod:`gcnas.space.conditions`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from gcnas.arch import Architecture, BlockSpec, Placement, select_blocks
from gcnas.blocks import parse_fusion
from gcnas.space.conditions import pick
from gcnas.space.keys import DEFAULTS

if TYPE_CHECKING:
    from gcnas.space.space import SearchSpace


class InfeasibleArchitecture(Exception):
    """A sampled architecture breaks the space's limits (too many or too few blocks)."""


def block_spec(picked: Mapping[str, Any], prefix: str) -> Optional[BlockSpec]:
    """The block a draw of design keys describes, or None for the design preset ``none`` (no block)."""
    name = picked.get("preset")
    if name == "none":
        return None
    if name is not None:  # a GC member or nl: gcnas.blocks.block_preset
        return BlockSpec.from_value(name, f"{prefix}.preset")
    if picked.get("kind", DEFAULTS["kind"]) == "nl":
        return BlockSpec(kind="nl", ratio=picked.get("ratio"), mode=picked.get("mode"))  # None: NL_DEFAULTS
    return BlockSpec(context=picked.get("context", DEFAULTS["context"]),
                     transform=picked.get("transform", DEFAULTS["transform"]),
                     ratio=picked.get("ratio", DEFAULTS["ratio"]),
                     fusion=parse_fusion(picked.get("fusion", DEFAULTS["fusion"])),
                     norm=picked.get("norm"), act=picked.get("act"))


def suggest_design(space: "SearchSpace", trial: Any, prefix: str) -> Optional[BlockSpec]:
    """The block spec to place (``<prefix>.<key>`` parameters), or None for the design preset ``none``."""
    picked = pick(space.key_order, space.conditions,
                  lambda key: space.design[key].suggest(trial, f"{prefix}.{key}"))
    return block_spec(picked, prefix)


def _place_choice(space: "SearchSpace", trial: Any, prefix: str) -> dict[str, Any]:
    """Which blocks, at which position, replacing the backbone's attention or not (``<prefix>blocks``, ...)."""
    return {"blocks": space.blocks.suggest(trial, f"{prefix}blocks"),
            "position": space.position.suggest(trial, f"{prefix}position"),
            "replace": space.replace.suggest(trial, f"{prefix}replace")}


def suggest(space: "SearchSpace", trial: Any) -> Architecture:
    """Sample an architecture; raises :class:`InfeasibleArchitecture` when it breaks the space's limits."""
    shared_design = suggest_design(space, trial, "design") if space.share == "global" else None
    shared = _place_choice(space, trial, "") if not space.per_stage else {}
    chosen_stages = set(space.stage_sets.suggest(trial, "stages")) if space.stage_sets is not None else None
    placements: list[Placement] = []
    for st in space.stages:
        if chosen_stages is not None:
            if st not in chosen_stages:
                continue
        elif not space.stage_on.suggest(trial, f"stage{st}.on"):
            continue
        choice = _place_choice(space, trial, f"s{st}.") if space.per_stage else shared
        spec = shared_design if space.share == "global" else suggest_design(space, trial, f"s{st}")
        if spec is None:  # design preset "none"
            continue
        for b in select_blocks(space.blocks_in[st], choice["blocks"]):
            site = space.site_keys.get((st, b, choice["position"]))
            if site is not None:
                placements.append(Placement(st, b, site.position, spec, bool(choice["replace"])))
    n = len(placements)
    if space.max_blocks is not None and n > space.max_blocks:
        raise InfeasibleArchitecture(f"{n} blocks exceed limits.max_blocks={space.max_blocks}")
    if n < space.min_blocks:
        raise InfeasibleArchitecture(f"{n} blocks are fewer than limits.min_blocks={space.min_blocks}")
    return Architecture(space.backbone, space.backbone_kwargs, tuple(placements))


def suggest_training(space: "SearchSpace", trial: Any) -> dict[str, Any]:
    """Training hyperparameters the space searches (``train.<key>``), to override the trainer config."""
    return {k: p.suggest(trial, f"train.{k}") for k, p in space.training.items()}
