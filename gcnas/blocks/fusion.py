"""Fusion: the third stage of the global context framework.

Paper: Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019
(arXiv:1904.11492), section 4.1.

Fusion aggregates the transformed context t (one value per channel) into every position of x:

* ``add``: ``x + t`` (broadcast over positions): NL, simplified NL and GC.
* ``scale``: ``x * gate(t)`` with ``gate`` a sigmoid: SE.
* both, ``("scale", "add")``: ``x * gate(t_scale) + t_add``, each with its own transform, as in the official code.
  Whatever order they are given in, scale is applied before add, as the official code does.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from gcnas.errors import ConfigError

__all__ = ["FUSIONS", "FUSION_SPELLINGS", "FusionArg", "parse_fusion", "fusion_spelling", "fuse"]

FUSIONS = ("scale", "add")  # in application order
FusionArg = Union[str, Sequence[str]]


def fusion_spelling(fusion: Sequence[str]) -> str:
    """The one-word form of a canonical fusion, as YAML and search spaces write it: ``add``, ``scale``,
    ``scale+add``."""
    return "+".join(fusion)


# every fusion's one-word spelling: ('add', 'scale', 'scale+add')
FUSION_SPELLINGS = ("add", "scale", fusion_spelling(FUSIONS))


def parse_fusion(fusion: FusionArg, *, owner: str = "") -> tuple[str, ...]:
    """Canonical form of a fusion argument: a tuple in application order, ``("scale",)``, ``("add",)`` or both.

    Takes a name, a list of names (``["scale", "add"]``) or the one-word spelling ``"scale+add"``."""
    where = f"{owner}: " if owner else ""
    valid = "'add', 'scale', 'scale+add' or ['scale', 'add']"
    names = (fusion.split("+") if isinstance(fusion, str) else list(fusion) if isinstance(fusion, (list, tuple))
             else None)
    if not names or any(n not in FUSIONS for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"{where}fusion must be {valid}; got {fusion!r}")
    return tuple(n for n in FUSIONS if n in names)


def fuse(x: torch.Tensor, gate: torch.Tensor | None, add: torch.Tensor | None) -> torch.Tensor:
    """``x * gate + add`` with either term absent; ``gate`` and ``add`` are (B, C), x is (B, C, H, W). The terms take
    x's dtype (a transform may run in another precision under autocast)."""
    b, c = x.shape[:2]
    gate = None if gate is None else gate.to(x.dtype)
    add = None if add is None else add.to(x.dtype)
    if gate is not None and add is not None:
        return torch.addcmul(add.reshape(b, c, 1, 1), x, gate.reshape(b, c, 1, 1))  # one pass over x
    if gate is not None:
        return x * gate.reshape(b, c, 1, 1)
    assert add is not None
    return x + add.reshape(b, c, 1, 1)
