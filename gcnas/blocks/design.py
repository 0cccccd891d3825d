"""Which fields a design of the global context framework uses, decided once, from what the registries declare.

Paper: Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019
(arXiv:1904.11492), section 4.1.

A design names a context modeling, a transform and a fusion, and the fields those read: ``ratio``, ``norm`` and
``act`` belong to the transform (each :data:`~gcnas.blocks.transform.TRANSFORMS` entry declares ``uses=(...)``),
``gate`` to the ``scale`` fusion. :class:`~gcnas.blocks.GlobalContextBlock` ignores the fields its design does not use,
``gcnas.arch.BlockSpec`` canonicalises them away (so equal blocks compare equal), and the one-shot supernet shares
weights by the same answer: all three ask :func:`design_fields`.
"""
from __future__ import annotations

from typing import Sequence

from gcnas.blocks.transform import TRANSFORMS

__all__ = ["OPTIONAL_FIELDS", "design_fields"]

OPTIONAL_FIELDS = ("ratio", "norm", "act", "gate")  # the fields a design may leave unused


def design_fields(transform: str, fusion: Sequence[str], *, owner: str = "") -> frozenset[str]:
    """The optional fields (of :data:`OPTIONAL_FIELDS`) a design with ``transform`` and canonical ``fusion`` uses."""
    used = set(TRANSFORMS.traits(transform, owner=owner).get("uses", ()))
    if "scale" in fusion:
        used.add("gate")
    return frozenset(used)
