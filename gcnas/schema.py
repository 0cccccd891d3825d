"""Config sections as typed dataclasses: each key's type, default and valid values, stated once.

A section's schema is a dataclass. Its fields give each key's type (``int``, ``float``, ``bool``, ``str``,
``Optional[...]``, a ``Union`` of those, lists) and default; :func:`key` adds the bounds and the valid words in the
field's metadata. :func:`read` turns a mapping (a composed Hydra config section, or a plain dict from a library
caller) into an instance through OmegaConf's structured configs, and turns whatever OmegaConf refuses (a value of the
wrong type, an unknown key, a required key left out) and whatever the metadata forbids into one
:class:`~gcnas.errors.ConfigError` that names the key, the bad value and what is valid.
What OmegaConf converts is accepted as it converts it, as in a YAML file: ``"3"`` for an integer, ``"yes"``/``"no"``
(and ``"on"``/``"off"``, ``1``/``0``) for a boolean; a boolean is never taken for a number.

:func:`defaults` gives a schema's defaults as plain data: ``gcnas.conf`` registers them in Hydra's ConfigStore, so the
YAML files compose them instead of restating them. Those nodes are deliberately untyped: Hydra would check the types
while composing, but its errors are several lines and exit status 1, and gcnas reads every section through
:func:`read` before anything starts, where a bad value is one line and exit status 2 like every other user error.

Declaring a schema (:func:`key`, :func:`defaults`) needs the standard library only; :func:`read` imports OmegaConf
(never Hydra) when it first reads. So any layer may declare its section, and importing it loads no config library:
``gcnas.sections`` declares the composed sections and the words the lower layers check against too.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, Optional, Sequence, TypeVar, Union

from gcnas.errors import ConfigError

__all__ = ["key", "read", "read_known", "defaults", "expected"]

T = TypeVar("T")


def key(default: Any = dataclasses.MISSING, *, factory: Any = None, ge: Optional[float] = None,
        gt: Optional[float] = None, le: Optional[float] = None, lt: Optional[float] = None,
        words: Sequence[Any] = (), expect: Optional[str] = None) -> Any:
    """A schema field: its default (or ``factory`` for lists), numeric bounds, the valid words of a string, and
    ``expect``, what the error says is valid where the type and bounds do not say it well."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, expect=expect).items() if v is not None}
    if words:
        meta["words"] = tuple(words)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _bounds(meta: Mapping[str, Any]) -> str:
    lo = ("ge", "[") if "ge" in meta else ("gt", "(") if "gt" in meta else None
    hi = ("le", "]") if "le" in meta else ("lt", ")") if "lt" in meta else None
    if lo and hi:
        return f" in {lo[1]}{meta[lo[0]]}, {meta[hi[0]]}{hi[1]}"
    if lo:
        return f" {'>=' if lo[0] == 'ge' else '>'} {meta[lo[0]]}"
    if hi:
        return f" {'<=' if hi[0] == 'le' else '<'} {meta[hi[0]]}"
    return ""


def _members(hint: Any) -> tuple[list[Any], bool]:
    """The types a hint allows, and whether it allows null."""
    if typing.get_origin(hint) is Union:
        args = typing.get_args(hint)
        return [a for a in args if a is not type(None)], type(None) in args
    return [hint], False


def expected(field: dataclasses.Field, hint: Any) -> str:
    """What a field accepts, in the words of an error message: ``an integer >= 1``, ``auto or an integer >= 1``,
    ``one of standalone, oneshot``, ``a number > 0 or null``."""
    meta = field.metadata
    types, nullable = _members(hint)
    if "expect" in meta:
        text = meta["expect"]
    else:
        words = [str(w) for w in meta.get("words", ())]
        parts = []
        for t in types:
            if t is str and words:
                continue
            if t is bool:
                parts.append("true or false")
            elif t is int:
                parts.append("an integer" + _bounds(meta))
            elif t is float:
                parts.append("a number" + _bounds(meta))
            elif t is str:
                parts.append("a string")
            elif typing.get_origin(t) in (list, tuple) or t in (list, tuple):
                inner = typing.get_args(t)
                parts.append(f"a list of {'strings' if inner and inner[0] is str else 'values'}")
            else:
                parts.append("a mapping" if typing.get_origin(t) is dict or t is dict else "a value")
        if words and not parts:
            text = f"one of {', '.join(words)}"
        else:
            text = " or ".join([*words, *parts])
    return text + (" or null" if nullable else "")


def _valid(value: Any, field: dataclasses.Field, hint: Any) -> bool:
    meta = field.metadata
    if value is None:
        return _members(hint)[1]
    if isinstance(value, str) and "words" in meta:
        return value in meta["words"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        checks = {"ge": value >= meta.get("ge", value), "gt": "gt" not in meta or value > meta["gt"],
                  "le": value <= meta.get("le", value), "lt": "lt" not in meta or value < meta["lt"]}
        return all(checks.values())
    return True


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, (list, tuple)) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def read(schema: type[T], section: Any, where: str = "") -> T:
    """``section`` (a mapping; None reads as empty) as an instance of the dataclass ``schema``, defaults filled in.

    ``where`` is the section's key in the config (``study``, ``wandb``; empty for top-level keys), the prefix of the
    key every error names. Interpolations are resolved first, so a section of a composed config reads as its values.
    """
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

    prefix = f"{where}." if where else ""
    if section is None:
        data: Any = {}
    elif isinstance(section, DictConfig):
        data = OmegaConf.to_container(section, resolve=True)
    elif isinstance(section, Mapping):
        data = dict(section)
    else:
        raise ConfigError(f"{where or 'config'}: must be a mapping of keys to values; got {section!r}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), data))
    except ConfigKeyError as e:
        raise ConfigError(f"{prefix}{e.full_key}: unknown key; valid keys are {', '.join(fields)}") from None
    except MissingMandatoryValue as e:
        raise ConfigError(f"{prefix}{e.full_key}: required (no default)") from None
    except ValidationError as e:
        name = str(e.full_key).split(".")[0].split("[")[0]
        if name not in fields:
            raise ConfigError(f"{prefix}{e.full_key}: {e.msg}") from None
        raise ConfigError(f"{prefix}{name}: must be {expected(fields[name], hints[name])}; "
                          f"got {_at(data, name)!r}") from None
    for name, f in fields.items():
        value = getattr(obj, name)
        if not _valid(value, f, hints[name]):
            raise ConfigError(f"{prefix}{name}: must be {expected(f, hints[name])}; got {_at(data, name)!r}")
    return obj


def read_known(schema: type[T], section: Any, where: str = "") -> T:
    """:func:`read` of the keys of ``section`` that ``schema`` declares, for a section several readers share (the top
    level of a config; ``data``, whose dataset-specific keys belong to the dataset's reader)."""
    names = {f.name for f in dataclasses.fields(schema)}
    return read(schema, {k: v for k, v in (section or {}).items() if k in names}, where)


def defaults(schema: type) -> dict[str, Any]:
    """A schema's defaults as plain data (what ``gcnas.conf`` puts in Hydra's ConfigStore); required keys absent."""
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out
