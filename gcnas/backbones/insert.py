"""Insert global-context (or NL) blocks into a timm backbone in place, at named sites.

The backbone keeps working as timm built it: a block runs through a forward hook (or pre-hook) on the module at the
site, so timm's forward code, ``feature_info``, ``forward_features``, ``forward_head``, ``reset_classifier`` and
``features_only`` models are untouched, and the backbone's own state-dict keys stay as they are. Each inserted block is
registered as a child of its residual block, named ``gcnas_<position>`` (``layer3.1.gcnas_before_add.*``), so a plain
backbone checkpoint loads into the modified model with exactly the blocks' keys missing. A placement with
``replace=True`` instead takes the place of the attention module the backbone already has at that site (SE).

Hooks are picklable objects holding the block, so ``copy.deepcopy``, ``torch.save`` of the whole model, ``.to()`` and
``torch.compile`` keep working.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import nn

from gcnas.backbones.sites import Site, blocks_by_stage, position_order, resolve_sites, sites_by_key
from gcnas.errors import ConfigError

__all__ = ["insert", "build_block", "inserted_blocks"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class _ApplyAfter:
    """Forward hook: the block transforms the anchor's output."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return self.block(output)


class _ApplyBefore:
    """Forward pre-hook: the block transforms the anchor's first input."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block

    def __call__(self, module: nn.Module, inputs: tuple) -> tuple:
        return (self.block(inputs[0]), *inputs[1:])


@dataclass(frozen=True)
class _Request:
    stage: int
    block: int
    position: str
    spec: Any
    replace: bool


def _as_request(p: Any) -> _Request:
    if isinstance(p, Mapping):
        get = p.get
    else:
        def get(k, default=None):
            return getattr(p, k, default)
    try:
        return _Request(int(get("stage")), int(get("block")), str(get("position")), get("spec"),
                        bool(get("replace", False)))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"placement {p!r}: needs integer stage and block, a position and a spec ({e})") from None


def build_block(spec: Any, channels: int) -> nn.Module:
    """The module a placement's spec describes, for ``channels`` input channels.

    ``spec`` is an object with ``build(channels)`` (``gcnas.arch.BlockSpec``), or what ``BlockSpec.from_value``
    reads, through the same path (:func:`gcnas.blocks.block_arguments`, :func:`gcnas.blocks.create_block`): a preset
    name (``nl`` too), or a dict of ``GlobalContextBlock`` arguments, optionally with ``preset`` whose arguments it
    overrides (``kind: nl`` for a ``NonLocalBlock`` with ``ratio`` and ``mode``).
    """
    from gcnas.blocks import block_arguments, create_block

    if hasattr(spec, "build"):
        return spec.build(channels)
    if isinstance(spec, (str, Mapping)):
        return create_block(channels, **block_arguments(spec))
    raise ConfigError(f"spec must be a BlockSpec, a preset name or a dict of block arguments; got {spec!r}")


def _host(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The nearest module at or above ``name`` whose forward does not iterate its children, and its name."""
    modules = dict(model.named_modules())
    parts = name.split(".") if name else []
    while True:
        cur = ".".join(parts)
        mod = modules[cur]
        if not isinstance(mod, _CONTAINERS):
            return mod, cur
        if not parts:
            raise ConfigError(f"model {type(model).__name__}: no module around {name!r} can hold an inserted block "
                              "(every enclosing module is a container whose forward runs all its children)")
        parts.pop()


def _describe_valid(sites: list[Site], stage: int, block: int) -> str:
    here = sorted({s.position for s in sites if s.stage == stage and s.block == block}, key=position_order)
    if here:
        return f"stage {stage} block {block} offers positions {', '.join(here)}"
    ranges = ", ".join(f"stage {st}: blocks 0-{b[-1]}" for st, b in blocks_by_stage(sites).items())
    return f"valid sites: {ranges}"


def insert(model: nn.Module, placements: Iterable[Any], input_size: Optional[tuple[int, int, int]] = None,
           sites: Optional[list[Site]] = None) -> list[Site]:
    """Insert one block per placement into ``model`` (in place) and return the sites used.

    Args:
        model: a timm model (also ``features_only``).
        placements: objects or dicts with ``stage``, ``block``, ``position``, ``spec`` and optional ``replace``.
        input_size: (C, H, W) used to find the sites' channels; default the model's own.
        sites: sites already listed for this model (skips the listing).

    Raises:
        ValueError: a site the model lacks, two blocks at one site, or ``replace`` where the site has no attention
            module; the message names the site and the valid ones. Nothing is inserted then.
    """
    requests = sorted((_as_request(p) for p in placements),
                      key=lambda r: (r.stage, r.block, position_order(r.position)))
    if sites is None:
        sites = resolve_sites(model, input_size, warn=False)
    by_key = sites_by_key(sites)  # a position's aliases name its site too
    seen: set[tuple[int, int, str]] = set()
    plan = []
    for r in requests:
        site = by_key.get((r.stage, r.block, r.position))
        if site is None:
            raise ConfigError(f"placement at stage {r.stage}, block {r.block}, position {r.position!r}: "
                              f"{type(model).__name__} has no such site; {_describe_valid(sites, r.stage, r.block)}")
        if site.key in seen:
            raise ConfigError(f"two placements at stage {r.stage}, block {r.block}, position {site.position!r}"
                              + (f" (also named {', '.join(site.aliases)})" if site.aliases else "")
                              + "; a site holds one block")
        seen.add(site.key)
        if r.replace and site.attention is None:
            with_attn = [f"({s.stage}, {s.block}, {s.position})" for s in sites if s.attention]
            listing = ", ".join(with_attn[:8]) + (" ..." if len(with_attn) > 8 else "") if with_attn else "none"
            raise ConfigError(f"placement at stage {r.stage}, block {r.block}, position {r.position!r} has "
                              f"replace=true but the backbone has no attention module there; sites with one: {listing}")
        plan.append((r, site, build_block(r.spec, site.channels)))

    modules = dict(model.named_modules())
    for r, site, block in plan:
        _attach(model, modules, site, block, r.replace)
    return [site for _, site, _ in plan]


def _attach(model: nn.Module, modules: dict[str, nn.Module], site: Site, block: nn.Module, replace: bool) -> None:
    """Put ``block`` at ``site``: in place of its attention module (``replace``), or as a child of the residual block
    that runs through a hook on the anchor."""
    param = next(modules[site.block_module].parameters(), None)
    if param is not None:
        block.to(device=param.device, dtype=param.dtype if param.is_floating_point() else None)
    if replace:
        parent_name, _, attr = site.attention.rpartition(".")
        setattr(modules[parent_name], attr, block)
        return
    host, host_name = _host(model, site.block_module)

    def name(position: str) -> str:
        return f"gcnas_{position}" if host_name == site.block_module else \
            f"gcnas_s{site.stage}_b{site.block}_{position}"

    host.add_module(name(site.position), block)
    if site.aliases:
        host.register_load_state_dict_pre_hook(_AliasKeys(name(site.position), [name(a) for a in site.aliases]))
    anchor = modules[site.module]
    if site.anchor.kind == "pre":
        anchor.register_forward_pre_hook(_ApplyBefore(block))
    else:
        anchor.register_forward_hook(_ApplyAfter(block))


class _AliasKeys:
    """Reads the weights of a block saved under one of its site's aliases: before gcnas merged the positions that name
    one place into one site (a BasicBlock's ``after_conv2`` is its ``before_add``), a block placed by the alias was
    named after it (``gcnas_after_conv2``); such checkpoints and exports load into the block's own name."""

    def __init__(self, child: str, aliases: list[str]) -> None:
        self.child, self.aliases = child, aliases

    def __call__(self, module, state_dict, prefix, *_args) -> None:
        for alias in self.aliases:
            old = f"{prefix}{alias}."
            for k in [k for k in state_dict if k.startswith(old)]:
                state_dict[f"{prefix}{self.child}.{k[len(old):]}"] = state_dict.pop(k)


def inserted_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The modules :func:`insert` added (not replacements, which take the attention module's own name), by module
    name: gcnas blocks, or a one-shot supernet's choice of candidate blocks at each site."""
    return {n: m for n, m in model.named_modules() if n.rpartition(".")[2].startswith("gcnas_")}
