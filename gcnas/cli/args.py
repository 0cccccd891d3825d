"""The keys of the commands' own sections (``report``, ``gcnas-export``'s), declared once.

Like :mod:`gcnas.search.config` (which also holds ``confirm``'s, read by :func:`gcnas.search.confirm.confirm_study`),
each section is a dataclass that states its keys' types, defaults and valid values; ``gcnas.conf`` registers the
defaults in Hydra's ConfigStore, and the commands read their section with :func:`gcnas.schema.read`. This module
imports :mod:`gcnas.schema` and the device words of :mod:`gcnas.train.runtime` only, so composing a config stays
light.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from gcnas.schema import key
from gcnas.train.runtime import DEVICES

__all__ = ["ReportArgs", "ExportArgs", "ExportDirArgs"]


@dataclass
class ReportArgs:
    """``report``: where ``gcnas-report`` writes and what it shows."""
    dir: Optional[str] = None         # default: <paths.root>/<study>/report
    top_k: int = key(5, ge=1)         # trials in the summary table and in the placement heatmap
    html: Union[bool, str] = key("auto", words=("auto",), expect="auto, true or false")  # plotly's HTML plots


@dataclass
class ExportArgs:
    """``gcnas-export``'s top-level keys."""
    trial: Union[int, str] = key("best", ge=0, words=("best",), expect="'best' or a trial number >= 0")
    pick: Optional[Any] = None        # multi-objective: a Pareto-front index, or max_params=V / max_flops=V / ...
    overwrite: bool = False           # replace an existing export folder
    retrain: bool = True              # a trial whose weights were not kept is retrained at its proxy fidelity
    threads: Union[int, str] = key("auto", ge=1, words=("auto",))  # torch threads for that retraining; auto: the cores
    device: str = key("auto", words=DEVICES)                        # where that retraining runs; auto: CUDA if any


@dataclass
class ExportDirArgs:
    """``export``: where ``gcnas-export`` writes."""
    dir: Optional[str] = None         # default: exports/<study>/trial-<N> under the current directory
