"""The search job's config: its sections read into dataclasses, so the worker reads attributes instead of
``cfg.get(key, default)``.

The sections themselves (keys, types, defaults, valid words) are declared in :mod:`gcnas.sections`, torch-free so that
composing a config stays light, and re-exported here where the search's callers know them. :func:`read_job` reads a
composed config's ``study``, ``search`` and ``constraints`` sections and its top-level keys. The trainer's keys are
:class:`gcnas.train.TrainerConfig`, W&B's :class:`gcnas.track.WandbConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gcnas.schema import read, read_known
from gcnas.sections import (METHODS, PROGRESS, ConfirmConfig, ConstraintsConfig, JobConfig, SearchConfig,
                            StudyConfig)

__all__ = ["JobConfig", "StudyConfig", "SearchConfig", "ConstraintsConfig", "ConfirmConfig", "SearchJob", "read_job",
           "METHODS", "PROGRESS"]


@dataclass
class SearchJob:
    """A search job's config, read: what the worker needs beyond the data, space, trainer and Optuna sections."""
    job: JobConfig
    study: StudyConfig
    search: SearchConfig
    constraints: ConstraintsConfig


def read_job(cfg: Mapping[str, Any]) -> SearchJob:
    """The typed sections of a composed search config; a :class:`~gcnas.errors.ConfigError` names any bad key."""
    return SearchJob(job=read_known(JobConfig, cfg), study=read(StudyConfig, cfg.get("study"), "study"),
                     search=read(SearchConfig, cfg.get("search"), "search"),
                     constraints=read(ConstraintsConfig, cfg.get("constraints"), "constraints"))
