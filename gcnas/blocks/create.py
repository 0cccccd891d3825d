"""A block from its description: the one path from a spec to a module.

An architecture's ``spec`` (``gcnas.arch.BlockSpec``), a placement handed to ``gcnas.backbones.insert`` and a search
space's design all name a block the same ways: a preset name (a member of the framework such as ``gc`` or ``se``, or
``nl``), or a mapping of block arguments, optionally with ``preset`` whose arguments it overrides and ``kind`` (``gc``,
the default, or ``nl``). :func:`block_arguments` reads either form into keyword arguments with ``kind``;
:func:`create_block` builds them, a :class:`~gcnas.blocks.GlobalContextBlock` or a :class:`~gcnas.blocks.NonLocalBlock`.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from gcnas.blocks.global_context import GlobalContextBlock
from gcnas.blocks.nonlocal_ import NonLocalBlock
from gcnas.blocks.presets import block_preset
from gcnas.errors import ConfigError

__all__ = ["BLOCK_KINDS", "block_arguments", "create_block"]

BLOCK_KINDS = {"gc": GlobalContextBlock, "nl": NonLocalBlock}


def block_arguments(value: Any, where: str = "spec") -> dict[str, Any]:
    """The keyword arguments (with ``kind``) of the block a preset name or a mapping names; ``where`` names the key
    in errors (an unknown preset, or a value of neither form)."""
    if not isinstance(value, (str, Mapping)):
        raise ConfigError(f"{where}: must be a preset name or a mapping of block arguments; got {value!r}")
    kw = {"preset": value} if isinstance(value, str) else dict(value)
    base: dict[str, Any] = {}
    if "preset" in kw:
        try:
            base = block_preset(kw.pop("preset"))
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    return {"kind": "gc", **base, **kw}


def create_block(channels: int, kind: str = "gc", **kwargs: Any) -> nn.Module:
    """The block of ``kind`` (``gc`` or ``nl``) for ``channels`` channels, built from its constructor's arguments."""
    if not isinstance(kind, str) or kind not in BLOCK_KINDS:
        raise ConfigError(f"spec: kind must be 'gc' or 'nl'; got {kind!r}")
    return BLOCK_KINDS[kind](channels, **kwargs)
