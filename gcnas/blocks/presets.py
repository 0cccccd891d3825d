"""The paper's members of the global context framework, by name.

Paper: Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019
(arXiv:1904.11492), Figure 4 and Tables 2-5.

``preset(name)`` returns the :class:`~gcnas.blocks.GlobalContextBlock` keyword arguments of a member; the
query-dependent NL block is :class:`~gcnas.blocks.NonLocalBlock`. ``block_preset(name)`` covers both, for the places
that name a block of either kind (an architecture's ``spec: nl``, a search space's ``design.preset``): the GC members'
arguments with ``kind="gc"``, or ``nl``, the NL block with its defaults (``kind="nl"``).
"""
from __future__ import annotations

import copy
import difflib
from typing import Any

from gcnas.blocks.nonlocal_ import NL_DEFAULTS
from gcnas.registry import Registry, UnknownNameError

__all__ = ["PRESETS", "NL_PRESET", "preset", "preset_names", "block_preset", "block_preset_names"]

NL_PRESET = "nl"  # the name of the NL block among the block presets

PRESETS: Registry[dict[str, Any]] = Registry("preset")
for _name, _kwargs in {
    # GC block (Fig. 4d): attention pooling, bottleneck r=1/16 with LayerNorm and ReLU, add fusion.
    "gc": dict(context="att", transform="bottleneck", ratio=1 / 16, fusion="add", norm="layernorm", act="relu"),
    # GC with r=1/4 (the paper's and the official README's GC r4).
    "gc_r4": dict(context="att", transform="bottleneck", ratio=1 / 4, fusion="add", norm="layernorm", act="relu"),
    # Table 5 ablations of pooling x fusion.
    "gc_scale": dict(context="att", transform="bottleneck", ratio=1 / 16, fusion="scale", norm="layernorm",
                     act="relu"),
    "gc_scale_add": dict(context="att", transform="bottleneck", ratio=1 / 16, fusion=["scale", "add"],
                         norm="layernorm", act="relu"),
    "gc_avg": dict(context="avg", transform="bottleneck", ratio=1 / 16, fusion="add", norm="layernorm", act="relu"),
    # SE block (Fig. 4c): average pooling, FC-ReLU-FC without norm, sigmoid scaling.
    "se": dict(context="avg", transform="se", ratio=1 / 16, fusion="scale", norm=None, act="relu"),
    # Simplified NL block (Fig. 4b): attention pooling, one 1x1 conv W_v, add fusion.
    "snl": dict(context="att", transform="conv", ratio=1.0, fusion="add", norm=None, act=None),
}.items():
    PRESETS.register(_name, _kwargs)


def preset(name: str) -> dict[str, Any]:
    """The keyword arguments of a named member, a fresh copy; unknown names raise an error listing the valid ones."""
    return copy.deepcopy(PRESETS.get(name))


def preset_names() -> list[str]:
    return PRESETS.names()


def block_preset_names() -> list[str]:
    """Every block preset: the GC members, then ``nl``."""
    return [*PRESETS.names(), NL_PRESET]


def block_preset(name: str) -> dict[str, Any]:
    """The block arguments of a named block of either kind, with ``kind``: ``{"kind": "gc", **preset(name)}`` for a
    member of the framework, ``{"kind": "nl", "ratio": 0.5, "mode": "embedded_gaussian"}`` for ``nl``."""
    if name == NL_PRESET:
        return {"kind": "nl", **NL_DEFAULTS}
    if name not in PRESETS:
        names = block_preset_names()
        close = difflib.get_close_matches(name, names, n=3) if isinstance(name, str) else []
        raise UnknownNameError(f"preset must be one of {', '.join(map(repr, names))}; got {name!r}"
                               + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
    return {"kind": "gc", **preset(name)}
