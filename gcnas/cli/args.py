"""The keys of the commands' own sections (``report``, ``gcnas-export``'s, ``confirm``), declared in
:mod:`gcnas.sections` and re-exported here for the commands.

Like every section ``gcnas.conf`` registers, they live in :mod:`gcnas.sections`, which imports neither torch nor timm,
so composing a config stays light; the commands read their section with :func:`gcnas.schema.read`.
"""
from gcnas.sections import ConfirmConfig, ExportArgs, ExportDirArgs, ReportArgs

__all__ = ["ReportArgs", "ExportArgs", "ExportDirArgs", "ConfirmConfig"]
