"""Name -> constructor registries with errors that list what exists.

Every swappable choice in gcnas (activation, context modeling, transform, fusion, preset, ...) is looked up by name in
a :class:`Registry`. An unknown name raises :class:`UnknownNameError`, which is both a ``KeyError`` (it is a failed
lookup) and a :class:`~gcnas.errors.ConfigError` (it is bad user input), and whose message names the argument, the
bad value and the valid names, so callers can pass the message straight to the user.
"""
from __future__ import annotations

import difflib
from types import MappingProxyType
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from gcnas.errors import ConfigError

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError, ConfigError):
    """A name that a registry does not hold."""

    def __str__(self) -> str:
        # KeyError would show repr(message), quotes and escapes included.
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A small mapping from names to constructors (or values).

    Args:
        what: the name of the argument that selects from this registry, used in error messages (``"context"``).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._traits: dict[str, Mapping[str, Any]] = {}

    def register(self, name: str, item: T | None = None, **traits: Any) -> Callable[[T], T] | T:
        """Register ``item`` under ``name``, with what the entry declares (``traits``, e.g. which block fields a
        transform uses), so callers ask the registry instead of keeping their own lists; without ``item``, return a
        decorator."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._items[name] = obj
            self._traits[name] = MappingProxyType(dict(traits))
            return obj

        return add if item is None else add(item)

    def get(self, name: str, *, owner: str = "") -> T:
        """Return the item registered as ``name``; raise :class:`UnknownNameError` naming the valid ones."""
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        raise UnknownNameError(self.unknown_message(name, owner=owner))

    def traits(self, name: str, *, owner: str = "") -> Mapping[str, Any]:
        """What the entry ``name`` declared when it was registered (read-only; empty if nothing)."""
        self.get(name, owner=owner)
        return self._traits[name]

    def declaring(self, trait: str) -> list[str]:
        """The names whose entries declare ``trait``, in registration order."""
        return [n for n in self._items if trait in self._traits[n]]

    def unknown_message(self, name: object, *, owner: str = "") -> str:
        where = f"{owner}: " if owner else ""
        msg = f"{where}{self.what} must be one of {', '.join(repr(n) for n in self._items)}; got {name!r}"
        if isinstance(name, str):
            close = difflib.get_close_matches(name, list(self._items), n=3)
            if close:
                msg += f" (did you mean {' or '.join(repr(c) for c in close)}?)"
        return msg

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
