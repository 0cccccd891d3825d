"""The ``wandb`` config section: its keys' types, defaults and valid values, stated once.

``gcnas.conf`` registers these defaults in Hydra's ConfigStore for every command that tracks (search, confirm, train);
:class:`~gcnas.track.WandbSession` reads the section through :func:`gcnas.schema.read`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gcnas.schema import key

__all__ = ["WandbConfig", "MODES"]

MODES = ("offline", "online", "disabled")


@dataclass
class WandbConfig:
    mode: str = key(words=MODES)  # required: offline writes <dir>/wandb/offline-run-* (sync later); online; disabled
    project: str = "gcnas"
    entity: Optional[str] = None
    tags: list[str] = key(factory=list)
    init_timeout: float = key(30, gt=0)      # seconds wandb.init may take before tracking is switched off
    dir: Optional[str] = None                # runs go to <dir>/wandb/ (null: the working directory)
