"""What a data set is: the facts that decide a result trained on it, recorded with whatever gcnas stores.

A study, a training checkpoint and an export each record :func:`data_identity` of the data they were made from, and
whatever reuses them compares it first (:func:`identity_differences`), so that results of two data sets are never
mixed: a second image folder does not join the first one's study, a checkpoint of other data is not resumed.

The identity holds the data set's name and its own keys (folder, timm dataset, class subset, generator settings), the
resolved root, the class names, the image size, the split (validation size, split seed, proxy subsets), the
augmentation, and a **fingerprint**: a hash of the images that costs milliseconds, not a pass over the data. For
arrays it hashes every label and up to :data:`SAMPLE` evenly spaced images; for files it hashes every file's path
(relative to the root) and label, and the sizes of up to :data:`SAMPLE` evenly spaced files. So a renamed, added,
removed or relabelled file changes it, and a folder moved or copied elsewhere keeps it: the root is recorded, but two
roots with the same fingerprint are the same data.

Keys that change how data is read but not what is learnt (``workers``, ``in_memory``, ``on_bad_image``,
``download``) are not part of it.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

__all__ = ["data_identity", "array_fingerprint", "identity_differences", "SAMPLE", "RUNTIME_KEYS"]

SAMPLE = 1024  # images (arrays) or file sizes (folders) a fingerprint reads
# data keys that decide how images are read, not which images or how they look: never part of the identity
RUNTIME_KEYS = ("workers", "in_memory", "on_bad_image", "download", "root")
# what the identity measures itself; a config key of the same name (none today) must not shadow it
_MEASURED = ("name", "class_names", "num_classes", "input_size", "images", "fingerprint")


def _update(h, *parts: Any) -> None:
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")


def spread_indices(n: int, k: int = SAMPLE) -> np.ndarray:
    """Up to ``k`` evenly spaced indices of ``range(n)``, first and last included."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, num=k).round().astype(np.int64))


def array_fingerprint(x: np.ndarray, y: Optional[np.ndarray]) -> str:
    """A hash of an array data set: its shape, every label and up to :data:`SAMPLE` evenly spaced images."""
    h = hashlib.sha256()
    _update(h, "arrays", tuple(x.shape), str(x.dtype))
    if y is not None:
        h.update(np.ascontiguousarray(np.asarray(y, dtype=np.int64)).tobytes())
    h.update(np.ascontiguousarray(x[spread_indices(len(x))]).tobytes())
    return h.hexdigest()[:16]


def files_fingerprint(names: Sequence[str], labels: Optional[Sequence[int]], sizes: Iterable[tuple[str, int]]) -> str:
    """A hash of a file data set: every file's relative name and label, and the sizes ``sizes`` gives."""
    h = hashlib.sha256()
    _update(h, "files", len(names))
    for i, name in enumerate(names):
        _update(h, name, None if labels is None else int(labels[i]))
    for name, size in sizes:
        _update(h, name, size)
    return h.hexdigest()[:16]


def sampled_sizes(paths: Sequence[str]) -> list[tuple[int, int]]:
    """(index, size in bytes) of up to :data:`SAMPLE` evenly spaced files (-1: unreadable)."""
    out = []
    for i in spread_indices(len(paths)):
        try:
            out.append((int(i), os.stat(paths[i]).st_size))
        except OSError:
            out.append((int(i), -1))
    return out


def data_identity(cfg: Mapping[str, Any], *, fingerprint: str, classes: Sequence[str], num_classes: int,
                  input_size: Sequence[int], train: int, val: int, test: Optional[int]) -> dict[str, Any]:
    """The identity of data read from the ``data`` config ``cfg`` (see the module docstring).

    ``train`` / ``val`` / ``test`` are the split sizes (after subsets). The data set's own keys come from ``cfg`` as
    given, except :data:`RUNTIME_KEYS`; the root is resolved to an absolute path.
    """
    own = {k: v for k, v in sorted(cfg.items()) if k not in RUNTIME_KEYS and k not in _MEASURED and v is not None}
    root = cfg.get("root")
    return {
        "name": cfg.get("name"),
        "root": os.path.abspath(os.path.expanduser(str(root))) if root else None,
        **own,  # the data set's own keys as the config names them: data.train_subset, data.classes (a subset), ...
        "class_names": list(classes),
        "num_classes": int(num_classes),
        "input_size": [int(v) for v in input_size],
        "images": {"train": int(train), "val": int(val), "test": None if test is None else int(test)},
        "fingerprint": fingerprint,
    }


def _flat(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def identity_differences(recorded: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Where two identities differ, one ``key: recorded -> now`` string each, in a stable order; ``[]`` when equal.

    Nested mappings are compared key by key (``data.images.train``). Data whose fingerprints match is the same
    data wherever it lies, so a differing ``root`` beside an equal ``fingerprint`` (at any depth) is no difference.
    """
    a, b = _flat(recorded, prefix), _flat(now, prefix)
    out = []
    for k in sorted(set(a) | set(b)):
        if k.rpartition(".")[2] == "root":  # data found elsewhere: the same data if its fingerprint is the same
            fp = k[: -len("root")] + "fingerprint"
            if a.get(fp) is not None and a.get(fp) == b.get(fp):
                continue
        if k not in a or k not in b or _norm(a[k]) != _norm(b[k]):
            out.append(f"{k}: {_show(a, k)} -> {_show(b, k)}")
    return out


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _show(d: Mapping[str, Any], k: str) -> str:
    text = "(unset)" if k not in d else "null" if d[k] is None else repr(d[k])
    # a long value keeps its start and its end, where two paths or lists usually differ (/x/data, /y/data)
    return text if len(text) <= 80 else text[:24] + "..." + text[-53:]
