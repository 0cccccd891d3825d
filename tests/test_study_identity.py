"""A study knows what its trials were made from: a search on other data, another trainer or another space never
joins it silently. Real searches on real image folders (Fashion-MNIST written as PNG class folders)."""
from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import torch

from gcnas.cli.search import search
from gcnas.errors import ConfigError
from gcnas.search import record
from conftest import compose_search
from imagefolders import write_folder

FOLDER = ["data=imagefolder", "data.image_size=28", "data.in_chans=1", "data.workers=0", "data.val_size=6",
          "trainer.epochs=1", "trainer.batch_size=16", "study.n_trials=2", "study.noise_seeds=1", "progress=none",
          "threads=1"]


def _folder_search(root: Path, *overrides: str):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return search(compose("config", overrides=[f"paths.root={root}", *FOLDER, *overrides]))


def _trials(root: Path, name: str) -> list:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/studies.db").get_trials()


def test_a_second_folder_gets_its_own_study_and_never_joins_the_first(tmp_path):
    a = write_folder(tmp_path / "data" / "shirts", classes=(0, 2, 6), per_class=12)
    b = write_folder(tmp_path / "data" / "shoes", classes=(5, 7, 9, 1, 8), per_class=8, start=20)
    out = tmp_path / "out"
    first = _folder_search(out, f"data.root={a}")
    second = _folder_search(out, f"data.root={b}")
    # the default name carries the folder's name: two studies, each with its own baseline and its own classes
    assert first.study_name == "gc_full-gcnas_resnet_tiny-imagefolder-shirts"
    assert second.study_name == "gc_full-gcnas_resnet_tiny-imagefolder-shoes"
    for result, classes in ((first, 3), (second, 5)):
        trials = _trials(out, result.study_name)
        assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
        study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{out}/studies.db")
        assert f"num_classes: {classes}" in record.architecture_of(study, trials[0])

    # forced into the first study by name: refused before any training, naming what differs, nothing added
    before = _trials(out, first.study_name)
    with pytest.raises(ConfigError) as e:
        _folder_search(out, f"data.root={b}", f"study.name={first.study_name}", "study.n_trials=4")
    msg = str(e.value)
    assert msg.startswith(f"study.name: study '{first.study_name}' in sqlite:///") and "\n" not in msg
    assert "data.fingerprint: " in msg and "data.num_classes: 3 -> 5" in msg
    assert "Give this run its own study.name" in msg
    after = _trials(out, first.study_name)
    assert [(t.number, t.state, t.values) for t in after] == [(t.number, t.state, t.values) for t in before]


def test_folders_of_the_same_name_are_told_apart_by_their_images(tmp_path):
    a = write_folder(tmp_path / "x" / "data", classes=(0, 1, 2), per_class=12)
    b = write_folder(tmp_path / "y" / "data", classes=(0, 1, 2), per_class=12, start=12)  # same classes, other images
    out = tmp_path / "out"
    first = _folder_search(out, f"data.root={a}")
    with pytest.raises(ConfigError, match=r"\(data\.root: '.*/x/data' -> '.*/y/data'; "
                                          r"data\.fingerprint: '[0-9a-f]+' -> '[0-9a-f]+'\)"):
        _folder_search(out, f"data.root={b}")
    # the same images moved elsewhere are the same data: the study resumes (its 2 trials are there, none is added)
    moved = tmp_path / "z" / "data"
    shutil.move(str(a), str(moved))
    again = _folder_search(out, f"data.root={moved}")
    assert again.study_name == first.study_name and again.trials_run == 0 and again.n_finished == 2


def test_another_trainer_or_space_is_refused_and_the_same_config_resumes(tmp_path):
    fast = ["study.n_trials=2", "trainer.epochs=1"]
    first = search(compose_search(tmp_path, *fast))
    for change, key in (("trainer.epochs=2", "trainer.epochs: 1 -> 2"),
                        ("data.val_size=32", "data.val_size: 64 -> 32"),
                        ("search_space.limits.min_blocks=2", "search_space.digest: ")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            search(compose_search(tmp_path, *fast, change, f"study.name={first.study_name}"))
    # what only changes how fast it runs is not an identity: threads, data loading, progress
    try:
        again = search(compose_search(tmp_path, "study.n_trials=3", "trainer.epochs=1", "threads=2", "progress=plain"))
    finally:
        torch.set_num_threads(1)  # threads=2 set this process's torch; the tests after it run on one thread
    assert again.study_name == first.study_name and again.trials_run == 1 and again.n_finished == 3
