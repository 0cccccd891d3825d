"""Hydra configuration of gcnas (installed as the package gcnas.conf).

Importing it registers, in Hydra's ConfigStore, the defaults of the config sections whose keys are declared as
dataclasses (:mod:`gcnas.schema`): ``gcnas/job`` (a search job's top-level keys), ``gcnas/study``,
``gcnas/search``, ``gcnas/constraints``, ``gcnas/wandb``, ``gcnas/confirm``, ``gcnas/report``, ``gcnas/export`` and
``gcnas/export_dir``. The YAML files list them in their defaults instead of restating them, and
set only what differs (the study's name and storage, W&B's mode and folder). Hydra imports this package when it reads
``pkg://gcnas.conf``, before it resolves a defaults list.
"""
from hydra.core.config_store import ConfigStore

from gcnas.cli.args import ExportArgs, ExportDirArgs, ReportArgs
from gcnas.schema import defaults
from gcnas.search.config import ConfirmConfig, ConstraintsConfig, JobConfig, SearchConfig, StudyConfig
from gcnas.track.config import WandbConfig


def _register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="gcnas", name="job", node=defaults(JobConfig), package="_global_")
    cs.store(group="gcnas", name="export", node=defaults(ExportArgs), package="_global_")
    for name, schema in (("study", StudyConfig), ("search", SearchConfig), ("constraints", ConstraintsConfig),
                         ("wandb", WandbConfig), ("confirm", ConfirmConfig), ("report", ReportArgs)):
        cs.store(group="gcnas", name=name, node=defaults(schema), package=name)
    cs.store(group="gcnas", name="export_dir", node=defaults(ExportDirArgs), package="export")


_register()
