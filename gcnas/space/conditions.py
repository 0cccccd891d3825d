"""The condition rule: which design keys a draw picks.

``design.conditions`` maps a key to ``{other key: allowed values}``. A key is picked only where every key its
condition names holds one of the allowed values; a key that is not picked holds its default (``keys.DEFAULTS``, the
value of a key the space leaves out), also for the conditions of other keys, so a condition may name a key that is
itself conditional. Keys are picked in :func:`key_order`: each after the keys its condition names, in
``DESIGN_KEYS`` order otherwise, so a condition reads the value drawn, never one still to come.

Sampling (one Optuna suggestion per picked key) and enumeration (every combination of values) both go through
:func:`pick`, so the assignments enumeration counts are the ones sampling draws.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from gcnas.space.keys import DEFAULTS, DESIGN_KEYS

Conditions = Mapping[str, Mapping[str, tuple]]  # key -> {other key: values under which key is picked}


class ConditionCycle(ValueError):
    """Conditions that name each other in a ring: no key of the ring can be picked first."""

    def __init__(self, ring: list[str]) -> None:
        super().__init__(" -> ".join(ring))
        self.ring = ring


def key_order(conditions: Conditions) -> tuple[str, ...]:
    """``DESIGN_KEYS`` with every key after the keys its condition names; raises :class:`ConditionCycle`."""
    done: list[str] = []
    left = list(DESIGN_KEYS)
    while left:
        ready = next((k for k in left if all(dep in done for dep in conditions.get(k, {}))), None)
        if ready is None:
            raise ConditionCycle(_ring(conditions, left))
        done.append(ready)
        left.remove(ready)
    return tuple(done)


def _ring(conditions: Conditions, left: list[str]) -> list[str]:
    """A ring among the keys left: each of them waits on another one left, so following those ends in a ring."""
    path = [left[0]]
    while True:
        nxt = next(dep for dep in conditions[path[-1]] if dep in left)
        if nxt in path:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)


def holds(condition: Mapping[str, tuple], picked: Mapping[str, Any]) -> bool:
    """Whether a key with this condition is picked, given the keys picked before it."""
    return all(picked.get(dep, DEFAULTS[dep]) in allowed for dep, allowed in condition.items())


def pick(order: tuple[str, ...], conditions: Conditions, value: Callable[[str], Any]) -> dict[str, Any]:
    """The keys a draw picks, each with ``value(key)``, in ``order``; ``value`` is asked for picked keys only."""
    picked: dict[str, Any] = {}
    for key in order:
        if holds(conditions.get(key, {}), picked):
            picked[key] = value(key)
    return picked
