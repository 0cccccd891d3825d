"""gcnas: neural architecture search over the GCNet global context framework on timm backbones.

The public names below are imported on first use (PEP 562), so that importing a light part of the package
(``gcnas.conf`` to compose a config, ``gcnas.errors``) does not load torch and timm through this file.
``from gcnas import Architecture`` and ``gcnas.build_model`` work as before.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "GlobalContextBlock": "gcnas.blocks", "NonLocalBlock": "gcnas.blocks", "preset": "gcnas.blocks",
    "Architecture": "gcnas.arch", "BlockSpec": "gcnas.arch", "Placement": "gcnas.arch", "build_model": "gcnas.arch",
    "load_model": "gcnas.arch", "list_sites": "gcnas.backbones", "insert": "gcnas.backbones",
    "measure_cost": "gcnas.backbones", "ConfigError": "gcnas.errors",
}

__all__ = [*_EXPORTS, "__version__"]

# Subpackages this file imported eagerly before it turned lazy: ``import gcnas; gcnas.arch`` still finds them.
_EAGER_BEFORE = ("arch", "backbones", "blocks", "errors", "registry")

if TYPE_CHECKING:
    from gcnas.arch import Architecture, BlockSpec, Placement, build_model, load_model
    from gcnas.backbones import insert, list_sites, measure_cost
    from gcnas.blocks import GlobalContextBlock, NonLocalBlock, preset
    from gcnas.errors import ConfigError


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _EAGER_BEFORE:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
