"""Where a study keeps its files, and paths recorded relative to it so that a study folder can be moved or copied.

A study's folder is ``<paths.root>/<study name>``: ``trials/trial-<N>/`` (each trial's log, architecture and, while the
trial is among the kept top trials, its weights), ``runs/`` (Hydra's job folders), the one-shot supernet and the
report. What the study records in its storage (a trial's ``weights``) is relative to that folder, so ``mv outputs
elsewhere`` and ``gcnas-export paths.root=elsewhere`` still find the weights instead of retraining.

Studies made before paths were recorded this way hold absolute paths; :func:`resolve_stored` still finds those files
after a move, by the part of the path below the study's folder.
"""
from __future__ import annotations

from pathlib import Path, PurePath
from typing import Optional, Union

__all__ = ["study_folder", "trial_folder", "stored_path", "resolve_stored"]


def study_folder(root: Union[str, Path], study_name: str) -> Path:
    """``<paths.root>/<study name>``: everything a study writes besides its storage."""
    return Path(root) / study_name


def trial_folder(study_dir: Union[str, Path], number: int) -> Path:
    return Path(study_dir) / "trials" / f"trial-{number}"


def stored_path(study_dir: Union[str, Path], path: Union[str, Path]) -> str:
    """``path`` as a study records it: relative to ``study_dir`` (POSIX separators) when it lies inside it."""
    try:
        return Path(path).resolve().relative_to(Path(study_dir).resolve()).as_posix()
    except ValueError:  # outside the study's folder: kept as given
        return str(path)


def resolve_stored(study_dir: Union[str, Path], recorded: Optional[str]) -> Optional[Path]:
    """The file a study recorded as ``recorded``, found under ``study_dir`` (where the study lies now).

    A relative path is taken under ``study_dir``. An absolute one (a study made before paths were relative) is taken
    as it is when the file exists, else by its part from ``trials/`` on under ``study_dir`` (the folder was moved).
    Returns None for no recorded path; the returned path may not exist (the caller says what is missing).
    """
    if not recorded:
        return None
    p = PurePath(recorded)
    if not p.is_absolute():
        return Path(study_dir) / p
    if Path(p).is_file():
        return Path(p)
    parts = p.parts
    if "trials" in parts:
        return Path(study_dir).joinpath(*parts[len(parts) - 1 - parts[::-1].index("trials"):])
    return Path(p)
