"""Hydra configuration of gcnas (installed as the package gcnas.conf).

Importing it registers, in Hydra's ConfigStore, the defaults of the config sections whose keys are declared as
dataclasses (:mod:`gcnas.sections`, read by :mod:`gcnas.schema`): ``gcnas/job`` (a search job's top-level keys),
``gcnas/study``, ``gcnas/search``, ``gcnas/constraints``, ``gcnas/wandb``, ``gcnas/confirm``, ``gcnas/report``,
``gcnas/export`` and ``gcnas/export_dir``. The YAML files list them in their defaults instead of restating them, and
set only what differs (the study's name and storage, W&B's mode and folder). It also registers the resolver
``gcnas.data_tag`` (:func:`data_tag`) that default study names use. Hydra imports this package when it reads
``pkg://gcnas.conf``, before it resolves a defaults list. It imports Hydra, OmegaConf and :mod:`gcnas.sections` only:
composing a config loads no torch, timm, Optuna or W&B (``tests/test_layering.py``).
"""
import os
import re

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from gcnas.schema import defaults
from gcnas.sections import (ConfirmConfig, ConstraintsConfig, ExportArgs, ExportDirArgs, JobConfig, ReportArgs,
                            SearchConfig, StudyConfig, WandbConfig)


FOLDER_DATASETS = ("imagefolder", "timm")  # data sets whose images are the user's own: the default study names them


def data_tag(data) -> str:
    """The data part of a default study name (``${gcnas.data_tag:${data}}`` in conf/config.yaml): the data set's name,
    and for a user's own images (:data:`FOLDER_DATASETS`) also the folder's name or timm's dataset, so that a search on
    a second folder starts its own study instead of joining the first one's (``imagefolder-pets``)."""
    name = str(data.get("name"))
    if name not in FOLDER_DATASETS:
        return name
    what = str(data.get("dataset") or "") or os.path.basename(os.path.normpath(str(data.get("root") or "")))
    what = re.sub(r"[^A-Za-z0-9_.-]+", "_", what).strip("_.")
    return f"{name}-{what}" if what else name


def _register() -> None:
    OmegaConf.register_new_resolver("gcnas.data_tag", data_tag, replace=True)
    cs = ConfigStore.instance()
    cs.store(group="gcnas", name="job", node=defaults(JobConfig), package="_global_")
    cs.store(group="gcnas", name="export", node=defaults(ExportArgs), package="_global_")
    for name, schema in (("study", StudyConfig), ("search", SearchConfig), ("constraints", ConstraintsConfig),
                         ("wandb", WandbConfig), ("confirm", ConfirmConfig), ("report", ReportArgs)):
        cs.store(group="gcnas", name=name, node=defaults(schema), package=name)
    cs.store(group="gcnas", name="export_dir", node=defaults(ExportDirArgs), package="export")


_register()
