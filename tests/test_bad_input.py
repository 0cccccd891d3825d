"""The bad-input catalog: malformed search spaces, overrides, storage URLs, architecture YAMLs and export arguments.

Each one is refused before any training, by the same code path as the command line (a ``ValueError`` becomes one
paragraph on stderr and exit status 2, no traceback), naming the key, the bad value and the valid values; no study is
created, and an existing study is not changed.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from conftest import compose_search
from gcnas.cli.common import user_errors
from gcnas.cli.export import export
from gcnas.cli.search import search
from gcnas.cli.train import train
from gcnas.errors import ConfigError

SEARCH = [  # (overrides, words the message must hold)
    (["+search_space.design.colour=[red]"], ["search_spaces/gc_full.yaml", "design.colour", "unknown key",
                                             "'context'"]),
    (["search_space.design.context=[]"], ["design.context", "empty list", "'avg', 'att'"]),
    (["+search_space.design.conditions.ratio.colour=[x]"], ["design.conditions.ratio.colour", "unknown key 'colour'",
                                                            "'transform'"]),
    (["search_space.positions.stages=[7]"], ["positions.stages", "7 is not a stage of gcnas_resnet_tiny",
                                             "[0, 1, 2, 3]"]),
    (["search_space.positions.position=[after_nothing]"], ["positions.position", "'after_nothing'", "'before_add'"]),
    (["search_space.limits.min_blocks=100"], ["limits.min_blocks", "100 is impossible", "at most 8 blocks"]),
    (["study.n_trials=0"], ["study.n_trials", "integer >= 1", "got 0"]),
    (["study.noise_seeds=0"], ["study.noise_seeds", "integer >= 1", "got 0"]),
    (["trainer.epochs=0"], ["trainer.epochs", "integer >= 1", "got 0"]),
    (["trainer.opt=sgdd"], ["trainer.opt", "unknown optimizer 'sgdd'", "timm.optim.list_optimizers()"]),
    (["trainer.sched=cosinus"], ["trainer.sched", "'cosinus'", "cosine, tanh, step"]),
    (["+trainer.optimizer=adamw"], ["trainer.optimizer", "unknown key", "opt"]),
    (["trainer.ema_decay=2"], ["trainer.ema_decay", "a number in (0, 1) or null", "got 2"]),
    (["trainer.compile=nonsense"], ["trainer.compile", "'nonsense'", "true, false, default, reduce-overhead"]),
    (["data.in_memory=true", "data.aug=basic"], ["data.in_memory", "cannot augment", "data.aug=basic"]),
    (["data.aug=sharpen"], ["data.aug", "'sharpen'", "rand-m9-mstd0.5"]),
    (["data.workers=-2"], ["data.workers", "auto or an integer >= 0", "-2"]),
    (["constraints.max_params=-1"], ["constraints.max_params", "a number > 0 or null", "got -1"]),
    (["sampler._target_=optuna.samplers.Nope"], ["sampler._target_", "'optuna.samplers.Nope' does not exist"]),
    (["+pruner.n_startup=3"], ["pruner", "n_startup", "n_startup_trials, n_warmup_steps"]),
    (["pruner.n_min_trials=0"], ["pruner: MedianPruner refuses", "pruner.n_min_trials=0", "must be at least 1"]),
    (["study.storage=notaurl"], ["study.storage", "'notaurl' is not a URL", "sqlite:///path", "journal:///path"]),
    (["study.storage=journal:///tmp/x.journal", "study.heartbeat_interval=-1"],
     ["study.heartbeat_interval", "a number > 0 or null", "got -1"]),
    (["study.grace_period=1"], ["study.grace_period", "longer than study.heartbeat_interval=30", "got 1"]),
    (["wandb.mode=onilne"], ["wandb.mode", "offline, online, disabled", "'onilne'"]),
    (["device=tpu"], ["device", "must be cpu, cuda", "cuda:N (GPU N) or auto", "'tpu'"]),
    (["data.val_size=-5"], ["data.val_size", "an integer >= 1 or null", "-5"]),
    (["backbone.name=resnet_nope"], ["backbone", "unknown timm model 'resnet_nope'", "close matches"]),
    (["objective.directions=[minimize]"], ["objective.directions", "['maximize']", "['minimize']"]),
    (["progress=loud"], ["progress", "auto, bar, plain, none", "'loud'"]),
    (["data.name=mnist"], ["data.name must be one of", "'fashion_mnist'", "'imagefolder'", "'timm'", "'mnist'"]),
    (["seed=notanint"], ["seed", "integer >= 0", "'notanint'"]),
    # a value of the wrong type names its key in every section read through gcnas.schema
    (["study.n_trials=many"], ["study.n_trials", "integer >= 1", "'many'"]),
    (["trainer.lr=fast"], ["trainer.lr", "a number >= 0", "'fast'"]),
    (["wandb.init_timeout=soon"], ["wandb.init_timeout", "a number > 0", "'soon'"]),
    (["study.enqueue_baselines=maybe"], ["study.enqueue_baselines", "true or false", "'maybe'"]),
    (["+study.colour=red"], ["study.colour", "unknown key", "n_trials"]),
    (["threads=many"], ["threads", "auto or an integer >= 1", "'many'"]),
    (["search.method=oneshots"], ["search.method", "standalone, oneshot", "'oneshots'"]),
    (["search.method=oneshot", "search.supernet_epochs=0"], ["search.supernet_epochs", "integer >= 1", "got 0"]),
    (["search.method=oneshot", "search.supernet_sampling=even"], ["search.supernet_sampling", "uniform, fair",
                                                                  "'even'"]),
    (["search.method=oneshot", "search.supernet_share=block"], ["search.supernet_share", "site, stage", "'block'"]),
    (["search.method=oneshot", "search.supernet_score=loss"],
     ["search.supernet_score", "accuracy, gradient", "'loss'"]),
    (["search.method=oneshot", "search_space=paper_design"], ["paper_design.yaml: training", "(seed)",
                                                                "search.method=standalone"]),
    (["search.method=oneshot", "search_space=paper_design", "~search_space.training"], ["design.kind", "kind gc",
                                                                                         "'nl'"]),
    (["search.method=oneshot", "search_space.design.norm=[batchnorm]"], ["design.norm", "layernorm, None",
                                                                         "'batchnorm'"]),
    (["search.method=oneshot", "trainer=finetune", "trainer.layer_decay=0.75"], ["trainer.layer_decay", "use null",
                                                                                "got 0.75"]),
]


def _db_state(root: Path) -> str:
    db = root / "studies.db"
    return hashlib.sha256(db.read_bytes()).hexdigest() if db.exists() else "absent"


@pytest.mark.parametrize("overrides,words", SEARCH, ids=[" ".join(o) for o, _ in SEARCH])
def test_search_refuses(overrides, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        user_errors("gcnas-search")(search)(compose_search(tmp_path, "wandb.mode=disabled", *overrides))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gcnas-search: ") and "Traceback" not in err and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    assert _db_state(tmp_path) == "absent"  # no study created
    assert not list(tmp_path.rglob("trial-*"))  # nothing trained


@pytest.mark.parametrize("data,words", [
    (["data=fashion_mnist"], ["data.root", "/nonexistent/data", "dataset-fashion-mnist"]),
    (["data=imagefolder"], ["data.root", "/nonexistent/data", "does not exist"]),
    (["data=timm", "data.dataset=torch/cifar100"], ["data.root", "torch/cifar100 is not in", "data.download=true"]),
    (["data=timm", "data.dataset=torch/imagenette"], ["data.dataset", "torch/imagenette", "torch/cifar10"]),
])
def test_a_missing_data_root_is_one_line(data, words, tmp_path, capsys):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root={tmp_path}", *data, "data.root=/nonexistent/data",
                                           "wandb.mode=disabled", "progress=none", "threads=1"])
    with pytest.raises(SystemExit) as exc:
        user_errors("gcnas-search")(search)(cfg)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert all(w in err for w in words), err


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    """Only ConfigError (the user's to fix) becomes one line and exit status 2; any other exception is a bug and
    propagates with its traceback (Hydra prints it and exits 1), even a ValueError from inside a library."""
    def bad_input():
        raise ConfigError("trainer.epochs: must be an integer >= 1; got 0")

    def bug():
        return int("not a number")  # a ValueError nobody meant for the user

    with pytest.raises(SystemExit) as exc:
        user_errors("gcnas-x")(bad_input)()
    assert exc.value.code == 2
    assert capsys.readouterr().err == "gcnas-x: trainer.epochs: must be an integer >= 1; got 0\n"
    with pytest.raises(ValueError, match="invalid literal"):
        user_errors("gcnas-x")(bug)()
    assert capsys.readouterr().err == ""
    # the library's own user errors are all ConfigErrors, and stay ValueErrors for callers that catch those
    from gcnas.data import DataUnavailableError
    from gcnas.registry import UnknownNameError
    from gcnas.space.space import SearchSpaceError

    for kind in (DataUnavailableError, UnknownNameError, SearchSpaceError):
        assert issubclass(kind, ConfigError) and issubclass(kind, ValueError)
    assert issubclass(DataUnavailableError, FileNotFoundError)


def test_a_bad_input_leaves_an_existing_study_unchanged(searched, tmp_path, capsys):
    root, result, _ = searched
    shutil.copy(root / "studies.db", tmp_path / "studies.db")
    before = _db_state(tmp_path)
    for overrides, _ in SEARCH[:6]:
        with pytest.raises(SystemExit):
            user_errors("gcnas-search")(search)(compose_search(tmp_path, "wandb.mode=disabled", "study.n_trials=9",
                                                               *overrides))
    assert _db_state(tmp_path) == before


ARCHS = [  # architecture YAMLs given to gcnas-train
    ("backbone: gcnas_resnet_tiny\nplacements:\n  - {stages: [1], blocks: all, position: after_nothing, spec: gc}\n",
     ["position", "after_nothing", "before_add"]),
    ("backbone: gcnas_resnet_tiny\nplacements:\n  - {stages: [1], blocks: all, position: before_add, spec: gc_r3}\n",
     ["gc_r3", "gc_r4"]),
    ("placements: []\n", ["backbone"]),
    ("backbone: gcnas_resnet_tiny\nplacements:\n  - {stages: [1], blocks: all, position: before_add,\n"
     "     spec: {context: att, transform: bottleneck, ratio: 3.0}}\n", ["ratio", "3"]),
    ("backbone: [unclosed\n", ["arch:"]),
]


@pytest.mark.parametrize("text,words", ARCHS, ids=[f"arch{i}" for i in range(len(ARCHS))])
def test_train_refuses_a_bad_architecture_file(text, words, tmp_path, capsys):
    bad = tmp_path / "architecture.yaml"
    bad.write_text(text)
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root={tmp_path}", f"arch={bad}", "data=synthetic",
                                          "wandb.mode=disabled"])
    with pytest.raises(SystemExit) as exc:
        user_errors("gcnas-train")(train)(cfg)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith(f"gcnas-train: arch: {bad}") and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "train").exists()


EXPORTS = [
    (["trial=-1"], ["trial", "'best' or a trial number >= 0", "-1"]),
    (["pick=fastest"], ["pick", "max_params=<value>", "'fastest'"]),
    (["overwrite=maybe"], ["overwrite", "true or false", "'maybe'"]),
    (["study.name=nope"], ["study.name", "no study 'nope'", "it holds: gc_full-gcnas_resnet_tiny-synthetic"]),
    (["study.storage=sqlite:////nonexistent/studies.db"], ["study.storage", "does not exist"]),
]


@pytest.mark.parametrize("overrides,words", EXPORTS, ids=[" ".join(o) for o, _ in EXPORTS])
def test_export_refuses(overrides, words, searched, tmp_path, capsys):
    root, result, _ = searched
    args = [f"paths.root={root}", f"study.name={result.study_name}", f"export.dir={tmp_path / 'out'}", "threads=1",
            *overrides]
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("export", overrides=args)
    with pytest.raises(SystemExit) as exc:
        user_errors("gcnas-export")(export)(cfg)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override,words", [
    ("search_space=nope", ["search_space", "nope", "gc_full"]),
    ("study.n_trial=5", ["study.n_trial", "not in struct"]),
    ("sampler=annealing", ["sampler", "annealing", "tpe"]),
])
def test_command_line_typos_are_named_by_hydra(override, words, tmp_path):
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.search", f"paths.root={tmp_path}", override],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    for w in words:
        assert w in res.stderr, (w, res.stderr)
    assert not (tmp_path / "studies.db").exists()
