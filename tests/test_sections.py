"""gcnas.sections: the config sections and their words are declared once; the code acting on a word uses that one,
and the sections stay importable from the readers' modules callers know."""
from __future__ import annotations

import dataclasses

import pytest

from gcnas import sections


def test_the_code_acting_on_a_word_checks_the_declared_words():
    from gcnas.oneshot import SAMPLINGS, SCORES, SHARES, supernet, train
    from gcnas.train import runtime

    assert runtime.DEVICES is sections.DEVICES
    assert SAMPLINGS is train.SAMPLINGS is sections.SAMPLINGS
    assert SCORES is train.SCORES is sections.SCORES
    assert SHARES is sections.SHARES
    assert supernet.SHARES is sections.SHARES


@pytest.mark.parametrize("module,names", [
    ("gcnas.search.config", ("JobConfig", "StudyConfig", "SearchConfig", "ConstraintsConfig", "ConfirmConfig",
                             "METHODS", "PROGRESS")),
    ("gcnas.track.config", ("WandbConfig", "MODES")),
    ("gcnas.track", ("WandbConfig", "MODES")),
    ("gcnas.cli.args", ("ReportArgs", "ExportArgs", "ExportDirArgs")),
])
def test_each_section_is_still_found_where_its_reader_lives(module, names):
    import importlib

    mod = importlib.import_module(module)
    assert all(getattr(mod, n) is getattr(sections, n) for n in names)


def test_every_section_states_a_default_or_is_required_on_purpose():
    """A field without a default must be one the YAML sets (``study.name``, ``study.storage``, ``wandb.mode``)."""
    required = {f"{cls.__name__}.{f.name}" for cls in (getattr(sections, n) for n in sections.__all__)
                if dataclasses.is_dataclass(cls) for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert required == {"StudyConfig.name", "StudyConfig.storage", "WandbConfig.mode"}
