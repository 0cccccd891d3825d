"""Small trial records: a trial keeps what Optuna's tools show well, and what its trials share (the architecture's YAML,
the training recipe) lives once on the study, by key. The ``optuna trials`` command the summary prints shows them in
lines a terminal can hold, and a study written before, whose trials kept both themselves, still exports, reports,
confirms and resumes."""
from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from conftest import compose_search
from gcnas.arch import Architecture
from gcnas.cli.search import search
from gcnas.export import export_trial
from gcnas.report import placement_counts, write_report
from gcnas.search import record
from gcnas.search.confirm import _paired_trials
from gcnas.search.optuna_compat import without_constraints
from gcnas.search.paths import trial_folder
from gcnas.search.retry import queue_again
from gcnas.search.summary import baseline_trial, ranked_trials, results_table

OPTUNA = str(Path(sys.executable).parent / "optuna")


def test_optuna_trials_prints_short_lines(searched):
    root, result, study = searched
    out = subprocess.run([OPTUNA, "trials", "--study-name", result.study_name, "--storage",
                          f"sqlite:///{root}/studies.db", "-f", "table"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(study.trials) + 4  # a row per trial: it is the table of this study
    # 3,548 characters wide when each trial carried its architecture, recipe and machine, 762 with its history and
    # constraints (Optuna's intermediate values and constraint values); now the widest cell is Optuna's params (the
    # space's choices, about 250) next to about 15 short attributes (707)
    assert max(map(len, lines)) < 740
    assert "placements" not in out.stdout and "weight_decay" not in out.stdout and "torch" not in out.stdout
    for t in study.trials:
        sizes = {k: len(json.dumps(v)) for k, v in t.user_attrs.items()}
        assert max(sizes.values()) <= 40, sizes  # a kept weights' path is the longest (34)
        assert len(json.dumps(t.user_attrs)) < 400  # 1.1 to 3.2 kB before; 360 to 420 with history and constraints


def test_the_optuna_command_the_summary_prints_shows_every_trial_in_lines_a_terminal_holds(searched, monkeypatch):
    """The table above is as wide as Optuna's params column makes it; the command the summary names prints YAML. It
    runs as printed, pasted into a shell whose PATH does not hold the environment (the README runs .venv/bin/...)."""
    from gcnas.cli.search import open_study_hint

    root, result, study = searched
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    line = open_study_hint(result.study_name, result.storage).splitlines()[1].split("or: ", 1)[1]
    assert shlex.split(line)[0] == str(Path(sys.executable).parent / "optuna") and line.endswith(" -f yaml")
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert [t["number"] for t in shown] == [t.number for t in study.trials]
    assert all(t["user_attrs"] == study.trials[t["number"]].user_attrs for t in shown)  # nothing cut
    assert max(map(len, out.stdout.splitlines())) <= 80


def test_optunas_tools_are_named_bare_where_the_shell_finds_the_ones_beside_this_python(monkeypatch):
    from gcnas.cli.search import tool_command

    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert tool_command("optuna") == "optuna"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert tool_command("optuna") == str(venv_bin / "optuna")
    assert tool_command("no-such-tool") == "no-such-tool"  # not installed here: named, for the install hint


def test_a_trained_trial_keeps_no_curve_or_constraints_optuna_already_holds(searched):
    root, result, study = searched
    for t in study.trials:  # single-objective, no replicates: each reported its accuracy every epoch
        assert t.state == TrialState.COMPLETE and not record.HISTORY.on(t) and not record.CONSTRAINTS.on(t)
        logged = re.findall(r"^epoch \d+: .* val acc ([\d.]+) ", (trial_folder(root / result.study_name, t.number)
                                                                  / "log.txt").read_text(), re.M)
        history = record.history_of(t)  # read back from its intermediate values, in epoch order
        assert [f"{v:.4f}" for v in history] == logged and len(history) == record.EPOCHS.get(t) == 2
        assert history[-1] == t.values[0]
        # no limits set: the one constraint every trained trial meets, where Optuna's samplers read it
        assert record.constraints_of(t) == t.constraints == {"space_limits": 0.0}


def test_multi_objective_trials_keep_their_curve_and_constraints_read_back_as_optuna_sees_them(tmp_path):
    limit = 10_000_000
    result = search(compose_search(tmp_path, "objective=accuracy_params", "sampler=nsga2", "study.n_trials=3",
                                   "study.keep_weights=0", "trainer.epochs=1", f"constraints.max_params={limit}",
                                   "wandb.mode=disabled"))
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    trained = [t for t in study.trials if record.EPOCHS.on(t)]
    assert len(trained) >= 2
    for t in trained:  # nothing reported to Optuna: the curve stays on the trial
        assert t.intermediate_values == {} and len(record.HISTORY.get(t)) == record.EPOCHS.get(t) == 1
        assert record.history_of(t) == record.HISTORY.get(t)
        assert not record.CONSTRAINTS.on(t)
        assert record.constraints_of(t) == {"max_params": float(record.PARAMS.get(t) - limit)} == t.constraints


def test_a_curve_and_constraints_written_the_old_way_still_read(searched):
    _, _, study = searched
    old = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    for t in study.trials:  # as an older gcnas wrote them: both user attributes, nothing else to read them from
        t = copy.deepcopy(t)
        t.user_attrs = {**t.user_attrs, record.HISTORY.name: [0.25, 0.5], record.CONSTRAINTS.name: [-3.0, 0.0]}
        t.system_attrs = without_constraints(t.system_attrs)
        old.add_trial(t)
    for t in old.trials:
        assert t.constraints == {} and list(t.intermediate_values) == [1, 2]
        assert record.history_of(t) == [0.25, 0.5]  # the trial's own list comes first
        assert record.constraints_of(t) == {"0": -3.0, "1": 0.0}  # named as Optuna names a list's values


def _written_before(study: optuna.Study, name: str, storage: str) -> optuna.Study:
    """``study`` as gcnas wrote it before (through Optuna's public API): each trial keeps its architecture and recipe
    itself, an enqueued one its architecture's YAML, a trained one its curve and constraint values too, and the study
    holds none of them."""
    attrs, trials = study.user_attrs, study.get_trials()
    optuna.delete_study(study_name=name, storage=storage)
    old = optuna.create_study(study_name=name, storage=storage, directions=study.directions)
    for k, v in attrs.items():
        if not any(family.owns(k) for family in record.STUDY_KEYED):
            old.set_user_attr(k, v)
    for t in trials:
        t = copy.deepcopy(t)
        ua = dict(t.user_attrs)
        if record.ARCH_KEY.on(t):
            ua[record.ARCHITECTURE.name] = record.architecture_of(attrs, t)
            ua[record.TRAIN.name] = record.recipe_of(attrs, t)
        if record.MACHINE.on(t):
            ua[record.MACHINE.name] = record.machine_of(attrs, t)
        if record.FIXED_ARCHITECTURE.on(t):
            ua[record.FIXED_ARCHITECTURE.name] = record.fixed_architecture_of(attrs, t)
        if record.EPOCHS.on(t):
            ua[record.HISTORY.name] = record.history_of(t)
            ua[record.CONSTRAINTS.name] = list(t.constraints.values())
        t.user_attrs = ua
        old.add_trial(t)
    assert not any(k.startswith(("arch:", "recipe:", "machine:")) for k in old.user_attrs)
    return old


def test_a_study_written_before_still_exports_reports_confirms_and_resumes(searched, tmp_path):
    src, result, study = searched
    root = tmp_path / "root"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("wandb", "reports"))
    url, name = f"sqlite:///{root}/studies.db", result.study_name
    machine = record.machine_of(study, study.trials[0])  # where the session's search ran (its torch threads included)
    old = _written_before(optuna.load_study(study_name=name, storage=url), name, url)
    best = ranked_trials(old)[0]
    yaml_text = record.ARCHITECTURE.get(best)
    assert record.architecture_of(old, best) == yaml_text and record.recipe_of(old, best)["epochs"] == 2

    out = export_trial(url, name, out_dir=tmp_path / "export")  # the kept weights, the architecture of the trial
    assert out.weights_source == "kept"
    assert (tmp_path / "export" / "architecture.yaml").read_text() == Architecture.from_yaml(yaml_text).to_yaml()
    assert "- training: " in (tmp_path / "export" / "MODEL_CARD.md").read_text()

    top = [t for t in ranked_trials(old)[:3] if record.ROLE.get(t) != "baseline"]
    assert placement_counts(top, old)[2] == placement_counts(top)[2] != {}  # read from the trials themselves
    summary = write_report(old, tmp_path / "report", html=False).summary.read_text()
    assert yaml_text.rstrip() in summary and "no architecture recorded" not in results_table(old, ["accuracy"])
    assert f"Measured on: {machine} ({len(old.trials)} trials)." in summary  # each trial kept it itself

    paired = _paired_trials(old, baseline_trial(old), [best], 1)
    assert paired[1][record.FIXED_ARCHITECTURE.name] == yaml_text

    # resumed by this gcnas: one more trial, written the new way, next to the old ones
    written = len(old.trials)
    more = search(compose_search(root, "study.n_trials=6", "study.keep_weights=2", "sampler=random", "pruner=none",
                                 "wandb.mode=disabled"))
    assert more.n_finished == 6 and more.trials_run >= 1
    resumed = optuna.load_study(study_name=name, storage=url)
    drawn = [t for t in resumed.trials if record.ARCH_KEY.on(t)]  # an infeasible draw records no architecture
    assert not record.ARCHITECTURE.on(drawn[-1]) and drawn[-1].number >= written
    assert all(record.architecture_of(resumed, t) for t in drawn)
    assert "no architecture recorded" not in results_table(resumed, ["accuracy"], top_k=6)
    ran = [t for t in resumed.trials if record.MACHINE.on(t)]
    for t in ran:  # an old trial keeps the description, a new one its key, the study the description
        assert record.machine_of(resumed, t) == (machine if t.number < written else
                                                 resumed.user_attrs[f"machine:{record.MACHINE.get(t)}"])
    assert ran[-1].number >= written and record.MACHINE.get(ran[-1]) == record.machine_key(
        record.machine_of(resumed, ran[-1]))
    trained = [t for t in resumed.trials if record.EPOCHS.on(t)]  # an old trial keeps its curve, a new one reported it
    assert all(len(record.history_of(t)) == record.EPOCHS.get(t) == 2 for t in trained)
    assert [record.HISTORY.on(t) for t in trained] == [t.number < written for t in trained]
    assert trained[-1].number >= written and not record.CONSTRAINTS.on(trained[-1])


def test_an_enqueued_architecture_lives_on_the_study_and_a_retry_still_runs_it(searched):
    _, _, source = searched
    text = record.architecture_of(source, source.trials[1])  # the paper's GC: the longest YAML of the study
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    record.enqueue(study, {record.FIXED_ARCHITECTURE.name: text, record.ROLE.name: "paper_gc"})
    record.enqueue(study, {record.FIXED_ARCHITECTURE.name: "not: an architecture", record.ROLE.name: "x"})
    keyed, kept = study.get_trials(states=(TrialState.WAITING,))
    key = Architecture.from_yaml(text).key()
    assert keyed.user_attrs[record.FIXED_ARCHITECTURE.name] == key and study.user_attrs[f"arch:{key}"] == text
    assert record.fixed_architecture_of(study, keyed) == text
    assert kept.user_attrs[record.FIXED_ARCHITECTURE.name] == "not: an architecture"  # the trial fails on it

    trial = study.ask()  # the worker takes the enqueued trial, its run ends, and it is queued again
    assert trial.number == keyed.number
    trial.report(0.5, 1)  # an epoch of the run that stopped
    trial.set_constraint("space_limits", 0.0)
    study.tell(trial, state=TrialState.FAIL)
    assert queue_again(study, study.trials[trial.number], "stopped")
    again = study.get_trials(states=(TrialState.WAITING,))[-1]
    assert record.RETRY_OF.get(again) == keyed.number and record.fixed_architecture_of(study, again) == text
    assert record.history_of(again) == [] and record.constraints_of(again) == {}  # the retry's curve is its own
    assert yaml.safe_load(record.fixed_architecture_of(study, again))["backbone"] == "gcnas_resnet_tiny"
