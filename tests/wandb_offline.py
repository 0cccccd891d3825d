"""Read what an offline W&B run wrote (``wandb/offline-run-*/run-*.wandb``) without syncing it anywhere.

The file is a log of protobuf records in 32 KiB blocks (the LevelDB log layout) after a 7-byte W&B header. Reading it
shows exactly what ``wandb sync`` would upload: the run's name, group and job type, its config, every history row, the
final summary and the artifacts it logged. The tests use it to check our tracking against real offline runs; it is a
test helper, not part of the gcnas package (users read their runs in W&B after ``wandb sync``).

Why the tests have their own reader: W&B's Python package (0.31) has none left to call (its Go core writes and reads
these files), and ``wandb sync`` only uploads. The record types come from W&B's own protobuf module (``wandb.proto``); only
the block framing is read here. When W&B changes the file, the tracking tests that read real offline runs fail.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gcnas.errors import ConfigError

__all__ = ["OfflineRun", "read_offline_run", "offline_runs"]

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    path: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    project: str = ""
    tags: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    artifacts: list = field(default_factory=list)  # dicts: name, type, files
    exit_code: int | None = None


def _records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ConfigError(f"{path}: not a W&B run file (no :W&B header)")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        pos += _HEADER
        if kind == 0 and length == 0:
            pos += left - _HEADER
            continue
        chunk = data[pos:pos + length]
        pos += length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _value(item) -> Any:
    return json.loads(item.value_json)


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Parse one ``offline-run-*`` folder (or its ``run-*.wandb`` file)."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = [run_dir] if run_dir.is_file() else sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
    out = OfflineRun(path=files[0].parent)
    for raw in _records(files[0]):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.name, out.group, out.job_type, out.project = r.display_name, r.run_group, r.job_type, r.project
            out.tags = list(r.tags)
            out.config.update({_key(i): _value(i) for i in r.config.update})
        elif kind == "config":
            out.config.update({_key(i): _value(i) for i in rec.config.update})
        elif kind == "history":
            out.history.append({_key(i): _value(i) for i in rec.history.item})
        elif kind == "summary":
            out.summary.update({_key(i): _value(i) for i in rec.summary.update if _key(i)})
        elif kind == "artifact":
            a = rec.artifact
            out.artifacts.append({"name": a.name, "type": a.type, "files": [m.path for m in a.manifest.contents]})
        elif kind == "exit":
            out.exit_code = rec.exit.exit_code
    out.config.pop("_wandb", None)
    return out


def offline_runs(root: str | Path) -> list[OfflineRun]:
    """Every offline run under ``root`` (a folder holding ``wandb/``, or ``wandb/`` itself), oldest first."""
    root = Path(root)
    base = root / "wandb" if (root / "wandb").is_dir() else root
    return [read_offline_run(d) for d in sorted(base.glob("offline-run-*"))]
