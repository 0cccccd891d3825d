"""The ``wandb`` config section, declared in :mod:`gcnas.sections` (torch-free, so composing a config stays light)
and re-exported here for the tracker.

``gcnas.conf`` registers its defaults in Hydra's ConfigStore for every command that tracks (search, confirm, train);
:class:`~gcnas.track.WandbSession` reads the section through :func:`gcnas.schema.read`.
"""
from gcnas.sections import MODES, WandbConfig

__all__ = ["WandbConfig", "MODES"]
