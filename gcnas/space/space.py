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
``train.<key>``.

The parts: :mod:`gcnas.space.readers` reads and validates each section, :mod:`gcnas.space.sampling` turns a trial's
suggestions into an architecture, :mod:`gcnas.space.enumeration` lists and counts what the space holds, and
:mod:`gcnas.space.conditions` is the one rule both follow for which design keys a draw holds.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from gcnas.arch import Architecture, BlockSpec
from gcnas.backbones.sites import Site, blocks_by_stage, sites_by_key
from gcnas.space import enumeration, sampling
from gcnas.space.conditions import key_order
from gcnas.space.keys import DESIGN_KEYS, PRESET_CHOICES, SECTIONS, TRAINING_KEYS  # noqa: F401 (importable here)
from gcnas.space.params import Param, fmt
from gcnas.space.readers import (Design, Limits, Positions, Reader, SearchSpaceError, check_limits, read_design,
                                 read_limits, read_positions, read_training, to_plain)
from gcnas.space.sampling import InfeasibleArchitecture

__all__ = ["SearchSpace", "SearchSpaceError", "InfeasibleArchitecture", "DESIGN_KEYS", "TRAINING_KEYS", "Design",
           "Positions", "Limits"]


class SearchSpace:
    """A validated search space bound to one backbone's sites. Build it with :meth:`from_config`."""

    def __init__(self, name: str, source: str, backbone: str, backbone_kwargs: Mapping[str, Any], sites: list[Site],
                 design: Design, positions: Positions, limits: Limits, training: dict[str, Param]) -> None:
        self.name, self.source = name, source
        self.backbone, self.backbone_kwargs, self.sites = backbone, dict(backbone_kwargs), sites
        self.design, self.share, self.conditions = design.params, design.share, design.conditions
        self.key_order = key_order(design.conditions)  # the order a draw picks design keys in
        self.stages, self.stage_sets, self.stage_on = positions.stages, positions.stage_sets, positions.stage_on
        self.blocks, self.position = positions.blocks, positions.position
        self.per_stage, self.replace = positions.per_stage, positions.replace
        self.max_blocks, self.min_blocks = limits.max_blocks, limits.min_blocks
        self.training = training
        self.site_keys = sites_by_key(sites)  # a position's aliases too: a name may be an alias in some blocks only
        self.blocks_in = blocks_by_stage(sites)

    # -- construction: gcnas.space.readers ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Any, *, backbone: str, sites: list[Site], backbone_kwargs: Optional[Mapping] = None,
                    source: Optional[str] = None) -> "SearchSpace":
        """Validate a space (a mapping, e.g. the composed ``search_space`` config) against a backbone's sites.

        Every problem raises :class:`SearchSpaceError` naming ``source`` (the YAML file), the key, the bad value
        and the valid values, before any trial exists. One reader per YAML section; the limits are checked last,
        against the block counts the other sections allow.
        """
        data = to_plain(cfg)
        name = data.get("name") if isinstance(data, Mapping) else None
        r = Reader(source or (f"search_spaces/{name}.yaml" if name else "search space"))
        if not isinstance(data, Mapping):
            raise r.error("search_space", f"must be a mapping; got {data!r}")
        unknown = set(data) - SECTIONS
        if unknown:
            raise r.error(sorted(unknown)[0], f"unknown key; valid top-level keys are {fmt(sorted(SECTIONS))}")
        if not isinstance(name, str) or not name:
            raise r.error("name", f"must be a non-empty string; got {name!r}")
        design = read_design(r, data.get("design"))
        positions = read_positions(r, data.get("positions"), backbone, sites)
        limits = read_limits(r, data.get("limits"))
        training = read_training(r, data.get("training"))
        space = cls(name, r.source, backbone, backbone_kwargs or {}, sites, design, positions, limits, training)
        check_limits(r, limits, enumeration.block_count_bounds(space), backbone)
        return space

    # -- sampling: gcnas.space.sampling ------------------------------------------------------------------------------
    def suggest(self, trial: Any) -> Architecture:
        """Sample an architecture; raises :class:`InfeasibleArchitecture` when it breaks the space's limits."""
        return sampling.suggest(self, trial)

    def suggest_training(self, trial: Any) -> dict[str, Any]:
        """Training hyperparameters the space searches (``train.<key>``), to override the trainer config."""
        return sampling.suggest_training(self, trial)

    # -- size and grid: gcnas.space.enumeration ----------------------------------------------------------------------
    def grid(self) -> dict[str, list]:
        """Every parameter with its finite values, for Optuna's GridSampler; raises for continuous ranges."""
        return enumeration.grid(self)

    def design_choices(self) -> list[tuple[Optional[BlockSpec], dict[str, Any]]]:
        """Every distinct design this space can draw (``None``: the design preset ``none``, no block), each with one
        assignment of the searched design keys that draws it (``{key: value as Optuna names it}``), in a stable
        order; raises for a continuous range."""
        return enumeration.design_choices(self)

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
        return enumeration.reachable_sites(self)

    def size(self) -> Optional[int]:
        """Number of distinct parameter assignments (conditions respected); None if a range is continuous."""
        return enumeration.size(self)
