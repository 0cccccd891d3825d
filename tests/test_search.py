"""The search, end to end on the real conf/: real SQLite studies, real training on the synthetic task."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_module
from optuna.trial import TrialState

from processes import finish, start
from gcnas.cli.search import print_summary, search
from gcnas.errors import ConfigError
from gcnas.search import record

# One seed per reference (no noise-floor replicates): these tests count and order the trials; tests/test_noise.py
# covers the replicates.
FAST = ["data=synthetic", "wandb.mode=disabled", "trainer.epochs=2", "trainer.batch_size=32", "progress=none",
        "data.size=512", "data.val_size=64", "study.noise_seeds=1", "threads=1"]


def _cfg(tmp_path: Path, *overrides: str):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("config", overrides=[f"paths.root={tmp_path}", *FAST, *overrides])


def _study(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/studies.db")


def _finished(study):
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """A finished 3-trial search: (output root, SearchResult). Tests that add to the study copy the root first."""
    root = tmp_path_factory.mktemp("three")
    return root, search(_cfg(root, "study.n_trials=3"))


def test_three_trial_search_records_everything(three):
    tmp_path, result = three
    assert result.n_finished == 3 and result.trials_run == 3
    study = _study(tmp_path, result.study_name)
    assert result.study_name == "gc_full-gcnas_resnet_tiny-synthetic"
    trials = study.get_trials()
    assert [t.user_attrs["role"] for t in trials] == ["baseline", "paper_gc", "searched"]
    assert trials[0].user_attrs["n_blocks"] == 0 and trials[1].user_attrs["n_blocks"] == 6
    for t in trials:
        for key in ("arch_key", "params", "flops", "worker", "wall_time_s"):
            assert key in t.user_attrs, key
        folder = tmp_path / result.study_name / "trials" / f"trial-{t.number}"
        assert (folder / "architecture.yaml").read_text() == record.architecture_of(study, t)
        assert "trial" in (folder / "log.txt").read_text()
    assert trials[1].user_attrs["params"] > trials[0].user_attrs["params"]
    assert "| 0 | baseline |" in result.table and "+0.00 pp" in result.table
    assert Path(result.best_architecture).is_file()


def test_rerun_resumes_the_same_study(three, tmp_path):
    shutil.copytree(three[0], tmp_path, dirs_exist_ok=True)  # the two references and one searched trial
    result = search(_cfg(tmp_path, "study.n_trials=6"))
    assert result.trials_run == 3 and result.n_finished == 6
    study = _study(tmp_path, result.study_name)
    assert [t.number for t in study.get_trials()] == [0, 1, 2, 3, 4, 5]
    assert sum(t.user_attrs.get("role") == "baseline" for t in study.get_trials()) == 1
    # the second run's sampler does not restart the first run's stream: its draws are new architectures, not
    # duplicates of trial 2 (each of which would take a trial of the budget and train nothing)
    assert [t.user_attrs.get("duplicate_of") for t in study.get_trials()[3:]] == [None, None, None]
    assert result.duplicates == 0
    assert search(_cfg(tmp_path, "study.n_trials=6")).trials_run == 0  # nothing left to do


def test_a_worker_seeds_its_sampler_apart_from_other_workers_and_from_its_earlier_runs():
    from gcnas.search.prepare import sampler_seed

    assert [sampler_seed(7, w, 0) for w in range(3)] == [7, 8, 9]  # a new study: seed + worker
    resumed = {sampler_seed(7, w, n) for w in range(4) for n in range(1, 50)}
    assert len(resumed) == 4 * 49 and not resumed & {7, 8, 9, 10}  # every (worker, trials before) its own stream
    assert sampler_seed(7, 1, 12) == sampler_seed(7, 1, 12)  # reproducible


def test_same_architecture_is_never_trained_twice(tmp_path, capsys):
    fixed = ["search_space=gc_design", "search_space.design.context=att", "search_space.design.transform=bottleneck",
             "search_space.design.ratio=0.0625", "search_space.design.fusion=add",
             "search_space.design.norm=layernorm", "search_space.design.act=relu"]
    result = search(_cfg(tmp_path, "study.n_trials=4", *fixed))
    trials = _study(tmp_path, result.study_name).get_trials()
    # The space holds one architecture: the paper's GC, which trial 1 (enqueued) already trained.
    assert trials[1].user_attrs["role"] == "paper_gc" and "duplicate_of" not in trials[1].user_attrs
    for t in trials[2:]:
        assert t.user_attrs["duplicate_of"] == 1
        assert t.values == trials[1].values
        assert "epochs" in t.user_attrs  # copied from the trained trial
        # its curve (kept on it: it reported none) and constraint values (Optuna's own) are the trained trial's
        assert record.history_of(t) == record.history_of(trials[1]) and len(record.history_of(t)) == 2
        assert t.constraints == trials[1].constraints != {}
    ranked = [line.split("|")[1].strip() for line in result.table.splitlines()[2:]]
    assert sorted(ranked) == ["0", "1"]  # duplicates are not ranked twice
    # the summary says how much of the budget went to architectures already trained (the references are not counted)
    assert result.trials_run == 4 and result.duplicates == 2
    print_summary(result)
    assert "2 of the 4 trials this worker ran drew an architecture already trained" in capsys.readouterr().out


def test_one_machine_same_seed_same_trials(tmp_path):
    """What docs/searching.md ("Reproducibility") promises: on one machine, one worker, the same seed and threads give
    the same architectures, values, pruning decisions and intermediate values, in a fresh folder and storage."""
    runs = []
    for name in ("a", "b"):
        result = search(_cfg(tmp_path / name, "study.n_trials=5", "seed=3", "threads=1", "pruner.n_startup_trials=2"))
        runs.append([(t.params, t.state, t.values, t.intermediate_values, t.user_attrs.get("arch_key"))
                     for t in _study(tmp_path / name, result.study_name).get_trials()])
    assert runs[0] == runs[1]
    assert len({key for *_, key in runs[0]}) >= 3  # it searched, not five copies of one architecture


def test_hard_constraints_are_checked_before_training(tmp_path):
    # Every architecture, the plain backbone too, is over the limit: each draw is pruned as infeasible before any
    # training, none counts against the budget, and the worker stops after study.max_infeasible of them in a row.
    with pytest.raises(ConfigError, match=r"study.max_infeasible: 6 draws in a row were infeasible \(the last: "
                                          r"params [\d,]+ > constraints.max_params=100,000\); widen"):
        search(_cfg(tmp_path, "study.n_trials=3", "constraints.max_params=100000", "study.max_infeasible=6"))
    trials = _study(tmp_path, "gc_full-gcnas_resnet_tiny-synthetic").get_trials()
    assert len(trials) == 6
    for t in trials:
        assert t.state == TrialState.PRUNED and t.values is None  # no accuracy it never had
        assert "params" in t.user_attrs and t.user_attrs["params"] > 100000
        assert t.user_attrs["infeasible"].startswith("params ")
        assert "> constraints.max_params=100,000" in t.user_attrs["infeasible"]
        assert "epochs" not in t.user_attrs  # never trained
        assert list(record.constraints_of(t).values())[0] > 0  # what Optuna's constrained samplers read
        assert "constraints" not in t.user_attrs  # they are Optuna's own, not kept twice


def test_multi_objective_pareto_front(tmp_path):
    result = search(_cfg(tmp_path, "study.n_trials=6", "objective=accuracy_params", "sampler=nsga2"))
    study = _study(tmp_path, result.study_name)
    assert len(study.directions) == 2 and result.sampler == "NSGAIISampler"
    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,))  # a duplicate repeats its twin's values
            if not t.user_attrs.get("replicate") and "duplicate_of" not in t.user_attrs]
    assert all(len(t.values) == 2 for t in done)

    def dominates(a, b):  # higher accuracy, fewer parameters
        return a.values[0] >= b.values[0] and a.values[1] <= b.values[1] and a.values != b.values

    listed = {int(line.split("|")[1]) for line in result.table.splitlines()[2:] if line.startswith("|")}
    front = {t.number for t in done if not any(dominates(o, t) for o in done)}
    assert listed == front
    assert result.best_number in front


def test_pruning_reports_every_epoch(tmp_path):
    # A threshold no trial reaches: every searched trial is pruned after its first epoch. The enqueued references
    # (plain, paper GC) report too but always train in full: every delta and the noise floor are read from them.
    result = search(_cfg(tmp_path, "study.n_trials=4", "~pruner", "+pruner._target_=optuna.pruners.ThresholdPruner",
                         "+pruner.lower=0.999"))
    trials = _study(tmp_path, result.study_name).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    assert all(t.user_attrs["epochs"] == 2 and list(t.intermediate_values) == [1, 2] for t in trials[:2])
    assert all(t.user_attrs["epochs"] == 1 and list(t.intermediate_values) == [1] for t in trials[2:])


@pytest.mark.parametrize("sampler", ["random", "grid", "gp"])
def test_samplers(tmp_path, sampler):
    space = ["search_space=gc_design"] if sampler == "grid" else []
    result = search(_cfg(tmp_path, "study.n_trials=3", f"sampler={sampler}", *space))
    assert result.n_finished == 3
    # the worker asked with the sampler the config names, not the default TPE
    assert result.sampler == {"random": "RandomSampler", "grid": "GridSampler", "gp": "GPSampler"}[sampler]


def test_journal_storage(tmp_path, capsys):
    result = search(_cfg(tmp_path, "study.n_trials=2", "storage=journal"))
    assert result.n_finished == 2 and (tmp_path / "studies.journal").is_file()
    # the command prints what the worker returned: the table, the best architecture, how to open the study
    out = capsys.readouterr().out
    assert f"Top trials of study {result.study_name} (2 finished trials, 2 run by this worker):" in out
    assert result.table in out and f"Best architecture (trial {result.best_number}):" in out
    # Optuna's tools open a journal by its file's path (a journal:/// URL would be taken for a database URL)
    assert result.storage.startswith("journal:///") and f"optuna-dashboard {tmp_path / 'studies.journal'}" in out


@pytest.fixture(scope="module", autouse=True)
def refused(tmp_path_factory):
    """gcnas-search with a bad search-space value, started with this module's first test (it runs on the core the
    in-process searches leave idle) and read by test_cli_user_error_exits_2_without_traceback."""
    root = tmp_path_factory.mktemp("refused")
    procs = start({"bad space": [sys.executable, "-m", "gcnas.cli.search", f"paths.root={root}", *FAST,
                                 "search_space.positions.position=middle"]}, cwd=root)
    yield procs
    finish(procs, timeout=120)  # ended, if the test that reads it did not run


def test_cli_user_error_exits_2_without_traceback(refused):
    res = finish(refused, timeout=600)["bad space"]
    assert res.returncode == 2
    assert "gcnas-search: search_spaces/gc_full.yaml: positions.position: 'middle' is not valid" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


# Two joblib workers sharing one SQLite study (exact budget, both workers, one baseline, cancelled late asks, 1 thread
# each): tests/test_scale_out.py::test_the_readme_two_worker_command_runs_as_written, on the README's command.


def test_a_space_extends_another_and_overrides_from_the_command_line(tmp_path):
    own = tmp_path / "my_spaces" / "search_space"
    own.mkdir(parents=True)
    (own / "gc_design_r4.yaml").write_text("defaults:\n  - gc_design\n  - _self_\nname: gc_design_r4\n"
                                           "design:\n  ratio: [0.25]\n")
    cfg = _cfg(tmp_path, f"hydra.searchpath=[file://{tmp_path / 'my_spaces'}]", "search_space=gc_design_r4",
               "search_space.design.context=avg", "study.n_trials=3")
    assert cfg.search_space.positions.stages == "all_but_first"  # inherited from gc_design
    assert list(cfg.search_space.design.ratio) == [0.25] and cfg.search_space.design.context == "avg"
    result = search(cfg)
    searched = [t for t in _study(tmp_path, result.study_name).get_trials() if t.user_attrs["role"] == "searched"]
    assert searched and all(t.params.get("design.ratio", 0.25) == 0.25 for t in searched)
    assert all("design.context" not in t.params for t in searched)  # fixed by the override, not searched


@pytest.mark.parametrize("mode", ["bar", "plain"])
def test_progress_modes(tmp_path, mode, capsys, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="gcnas.search")
    cfg = _cfg(tmp_path, "study.n_trials=2")
    cfg.progress = mode
    search(cfg)
    err = capsys.readouterr().err
    if mode == "bar":
        assert "trials" in err and "2/2" in err  # tqdm's bar over trials
    else:
        assert "trial 0 epoch 1: val acc" in caplog.text and "[2/2 finished]" in caplog.text
