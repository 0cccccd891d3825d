"""W&B tracking of a search, checked in the real offline runs it wrote; tracking failures never stop a search."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import yaml
from optuna.trial import TrialState

from gcnas.search import record
from gcnas.search.worker import public_config
from gcnas.track import TrackingWarning, WandbSession, WandbTracker
from gcnas.track.runs import recorded_run_id
from wandb_offline import offline_runs


def test_one_offline_run_per_trial_and_one_for_the_study(searched):
    root, result, study = searched
    runs = offline_runs(root)
    trials = [r for r in runs if r.job_type == "trial"]
    study_runs = [r for r in runs if r.job_type == "study"]
    assert sorted(r.name for r in trials) == [f"trial-{t.number}" for t in study.get_trials()]
    assert len(study_runs) == 1
    assert {r.group for r in runs} == {result.study_name}
    by_name = {r.name: r for r in trials}
    for t in study.get_trials():
        run = by_name[f"trial-{t.number}"]
        assert run.config["architecture"] == yaml.safe_load(record.architecture_of(study, t))
        assert run.config["train"]["epochs"] == 2 and run.config["role"] == t.user_attrs["role"]
        assert run.config["arch_key"] == t.user_attrs["arch_key"]
        epochs = [row["epoch"] for row in run.history if "epoch" in row]
        if "duplicate_of" in t.user_attrs:
            assert epochs == [] and run.summary["state"] == "duplicate"
            continue
        assert epochs == [1, 2]
        assert [row["val_acc"] for row in run.history if "val_acc" in row] == record.history_of(t)
        assert run.summary["best_val_acc"] == max(record.history_of(t))
        assert run.summary["state"] == "complete" and run.summary["val_acc"] == t.values[0]
        assert run.summary["params"] == t.user_attrs["params"] and run.summary["flops"] == t.user_attrs["flops"]
        assert run.exit_code == 0


def test_each_trial_run_id_is_recorded_in_its_folder_for_a_retry_to_find(searched):
    """A retry closes the run of the trial it retried by the id in that trial's folder (tests/test_wandb_resume.py)."""
    root, result, study = searched
    ids = {r.name: next(r.path.glob("run-*.wandb")).stem[len("run-"):] for r in offline_runs(root)
           if r.job_type == "trial"}
    for t in study.get_trials():
        assert recorded_run_id(root / result.study_name / "trials" / f"trial-{t.number}") == ids[f"trial-{t.number}"]
    assert len(set(ids.values())) == len(ids)


def test_study_run_logs_table_best_architecture_artifact_and_plots(searched):
    root, result, study = searched
    (run,) = [r for r in offline_runs(root) if r.job_type == "study"]
    arts = {a["type"]: a for a in run.artifacts}
    assert sorted(arts["architecture"]["files"]) == ["architecture.yaml", "model.safetensors"]
    assert run.summary["best_trial"] == result.best_number
    assert any(k.startswith("report/optimization_history") for k in run.summary)
    assert any(k.startswith("report/placements") for k in run.summary)
    tables = list(run.path.glob("files/media/table/trials_*.table.json"))
    assert len(tables) == 1
    import json

    data = json.loads(tables[0].read_text())
    assert len(data["data"]) == len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))


def test_the_storage_password_never_reaches_wandb_config():
    cfg = {"study": {"storage": "postgresql+psycopg://gc:s3cret-pw@db.local:5432/nas", "name": "x"},
           "storage": {"url": "postgresql+psycopg://gc:s3cret-pw@db.local:5432/nas"}, "_space_source": "x"}
    shown = public_config(cfg)
    assert "s3cret-pw" not in repr(shown) and "gc:***@db.local" in shown["study"]["storage"]
    assert "_space_source" not in shown and cfg["study"]["storage"].endswith("@db.local:5432/nas")


def test_disabled_mode_writes_nothing(tmp_path):
    s = WandbSession({"mode": "disabled", "dir": str(tmp_path)}, "g")
    assert s.start(1, job_type="trial", name="x") is None
    assert not (tmp_path / "wandb").exists()


@pytest.mark.parametrize("cfg,message", [
    ({"mode": "onilne"}, "wandb.mode: must be one of offline, online, disabled; got 'onilne'"),
    ({"mode": "offline", "init_timeout": 0}, "wandb.init_timeout: must be a number > 0; got 0"),
    ({"mode": "offline", "tags": "a,b"}, "wandb.tags: must be a list of strings"),
])
def test_bad_wandb_config_is_named(cfg, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WandbTracker(cfg, "study")


@pytest.mark.slow
def test_unreachable_wandb_in_online_mode_is_one_warning_and_the_search_goes_on(tmp_path):
    """Online mode against a closed loopback port: wandb.init times out, one warning, every trial still runs."""
    code = (
        "import warnings\n"
        "from conftest import compose_search\n"
        "from gcnas.cli.search import search\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    r = search(compose_search({str(tmp_path)!r}, 'study.n_trials=3', 'wandb.mode=online',\n"
        "                              'wandb.init_timeout=3'))\n"
        "ours = [x for x in w if 'W&B' in str(x.message)]\n"
        "print('FINISHED', r.n_finished, 'WARNINGS', len(ours))\n"
    )
    env = dict(os.environ, WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9", WANDB_SILENT="true",
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "FINISHED 3 WARNINGS 1" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_a_failing_tracker_becomes_one_warning(tmp_path):
    """The first W&B error of any kind (here: a run that cannot log) turns tracking off with one warning."""
    s = WandbSession({"mode": "offline", "dir": str(tmp_path)}, "g")
    run = s.start(1, job_type="trial", name="x")
    assert run is not None
    run.finish()  # logging to a finished run raises inside wandb
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s.log(1, {"a": 1})
        s.log(1, {"a": 2})
        assert s.start(2, job_type="trial", name="y") is None
    assert s.off and len([x for x in w if issubclass(x.category, TrackingWarning)]) == 1
