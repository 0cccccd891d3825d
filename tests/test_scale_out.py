"""Scale-out and faults, for real: 4 concurrent workers on SQLite, Journal and PostgreSQL; SLURM/submitit launchers;
the README's two-worker command as written (default output root) and with DataLoader workers under joblib; a worker
killed with SIGKILL; NaN losses, out-of-memory and raising trials; secrets never written anywhere."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from hydra import compose, initialize_config_module
from optuna.trial import TrialState

from conftest import FAST_SEARCH, compose_search
from processes import finish, run_together, start
from gcnas.cli.search import search
from gcnas.search import objective as objective_module
from gcnas.search.objective import FIXED_ARCH_ATTR, ROLE_ATTR
from gcnas.search.optuna_compat import ask
from gcnas.search.study import make_storage
from gcnas.search.worker import retry_stale_trial

STUDY = "gc_full-gcnas_resnet_tiny-synthetic"
SMALLER = ["trainer.epochs=1", "data.size=256", "wandb.mode=disabled"]
TINY = [*FAST_SEARCH, *SMALLER]  # what _cli gives; compose_search(root, *SMALLER, ...) composes it in this process


def _cli(root: Path, *args: str, multirun: bool = False, env=None, timeout: int = 900, check: bool = True):
    cmd = [sys.executable, "-m", "gcnas.cli.search", *(["-m"] if multirun else []), f"paths.root={root}", *TINY,
           *args]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=timeout,
                         env={**os.environ, **(env or {})})
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def _check_exact_budget(study: optuna.Study, n: int, workers: int) -> None:
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    # the study total is respected, none lost; an infeasible draw (pruned before any training) is not counted
    assert len([t for t in finished if "infeasible" not in t.user_attrs]) == n
    # none duplicated: every trained architecture ran once (a repeat is a marked duplicate that trained nothing)
    trained = [t.user_attrs["trial_key"] for t in finished
               if "duplicate_of" not in t.user_attrs and "infeasible" not in t.user_attrs]
    assert len(trained) == len(set(trained))
    for t in finished:
        assert t.user_attrs["worker"] in range(workers)
    others = study.get_trials(states=(TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING))
    assert all("cancelled" in t.user_attrs for t in others), [t.user_attrs for t in others]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgres"])
def test_four_concurrent_workers_share_one_study(kind, tmp_path, request):
    args = ["study.n_trials=8", "worker=0,1,2,3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]
    if kind == "postgres":
        url = request.getfixturevalue("postgres").create_database("four_workers")
        args.append("storage=postgres")
        env = {"GCNAS_STORAGE_URL": url}
    else:
        args.append(f"storage={kind}")
        env, url = {}, None
    _cli(tmp_path, *args, multirun=True, env=env)
    storage = url if kind == "postgres" else (
        f"sqlite:///{tmp_path}/studies.db" if kind == "sqlite" else None)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(tmp_path / "studies.journal")))
    study = optuna.load_study(study_name=STUDY, storage=storage)
    _check_exact_budget(study, 8, 4)
    assert len({t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}) >= 2


@pytest.mark.slow
def test_two_workers_share_one_confirmation(tmp_path):
    """gcnas-confirm -m worker=0,1 hydra/launcher=joblib, as docs/confirm.md shows: one exact budget, every pair
    complete. The confirmation trains at a higher fidelity (4 epochs, 1024 images) so that its 6 runs outlast a
    worker's start-up: with 1-epoch runs the first worker up could finish them all before the second joined."""
    search(compose_search(tmp_path, *SMALLER, "study.n_trials=4", "storage=sqlite"))  # the study it confirms
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.confirm", "-m", f"paths.root={tmp_path}",
                          f"study.name={STUDY}", "confirm.k=2", "confirm.seeds=2", "+confirm.trainer.epochs=4",
                          "+confirm.data.size=1024", "wandb.mode=disabled",
                          "progress=none", "worker=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    url = f"sqlite:///{tmp_path}/studies.db"
    conf = optuna.load_study(study_name=f"{STUDY}-confirm", storage=url)
    _check_exact_budget(conf, 6, 2)  # (k + 1) x seeds, none twice, none lost
    assert len({t.user_attrs["worker"] for t in conf.trials if "worker" in t.user_attrs}) == 2
    pairs = sorted((t.user_attrs["confirms"], t.user_attrs["replicate"]) for t in conf.get_trials(
        states=(TrialState.COMPLETE,)))
    assert len(pairs) == len(set(pairs)) == 6  # each (architecture, seed) once
    from gcnas.search.confirm import confirmation

    base, *cands = confirmation(optuna.load_study(study_name=STUDY, storage=url), url)
    assert base.role == "baseline" and len(cands) == 2 and all(len(c.diffs) == 2 for c in cands)


def _console_script(name: str) -> str:
    """The installed console script beside this interpreter (what the README runs as ``.venv/bin/NAME``)."""
    script = Path(sys.executable).parent / name
    assert script.is_file(), f"{script} is not installed: pip install -e . installs the console scripts"
    return str(script)


def _two_workers_ran(study: optuna.Study) -> None:
    """Both workers of ``worker=0,1`` ran trials, when joblib's default ``n_jobs=-1`` runs them side by side (on one
    core it runs them one after the other, and the first finishes the study alone)."""
    from joblib import cpu_count

    workers = {t.user_attrs["worker"] for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))}
    assert workers == ({0, 1} if cpu_count() >= 2 else {0}), workers


@pytest.mark.slow
def test_the_readme_two_worker_command_runs_as_written(tmp_path):
    """``gcnas-search -m worker=0,1 hydra/launcher=joblib`` from a fresh folder, with the default paths.root: only
    overrides that make it small are added. The launching process resolves hydra.sweep.dir, which lies under
    paths.root = ${hydra:runtime.cwd}/outputs; Hydra 1.3 gives it no HydraConfig, so it failed (``HydraConfig was
    not set``) until gcnas.cli.callbacks installed one. Every other scale-out test gives paths.root, which hid that.
    The same run is the two-worker SQLite study: one baseline, a late ask cancelled naming the budget, and each
    worker's log saying it runs 1 thread (2 workers on 2 cores)."""
    small = ["data=synthetic", "data.size=512", "trainer.epochs=2", "study.n_trials=6", "study.noise_seeds=1",
             "progress=none", "wandb.mode=disabled"]
    res = subprocess.run([_console_script("gcnas-search"), "-m", "worker=0,1", "hydra/launcher=joblib", *small],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    root = tmp_path / "outputs"  # the default paths.root, under the folder the command ran in
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{root}/studies.db")
    _check_exact_budget(study, 6, 2)
    _two_workers_ran(study)
    assert sum(t.user_attrs.get("role") == "baseline" for t in study.get_trials()) == 1
    for t in study.get_trials(states=(TrialState.FAIL,)):  # a worker that asked after the budget was taken
        assert "study budget of 6 trials already taken" in t.user_attrs["cancelled"]
    logs = list((root / "multirun").rglob("*.log"))
    assert logs and all("1 threads" in p.read_text() for p in logs)  # 2 workers on 2 cores: 1 thread each
    jobs = sorted(p.name.split("-")[0] for p in (root / "multirun").glob("*/*") if p.is_dir())
    assert jobs == ["0", "1"]  # one sweep folder under the default root, one job folder per worker


@pytest.mark.slow
def test_two_workers_stream_an_image_folder_through_dataloader_workers_under_joblib(tmp_path):
    """The same command on an image folder streamed by DataLoader worker processes (data.in_memory=false,
    data.workers=1). A joblib (loky) worker's start method is ``loky``, with which DataLoader could not start its
    workers (``'Process' object has no attribute 'env'``); gcnas.data.stream.worker_start_method picks fork there."""
    from imagefolders import write_folder

    folder = write_folder(tmp_path / "images", classes=(0, 1, 7, 9), per_class=48)
    res = subprocess.run([_console_script("gcnas-search"), "-m", "worker=0,1", "hydra/launcher=joblib",
                          "data=imagefolder", f"data.root={folder}", "data.image_size=28", "data.in_chans=1",
                          "data.in_memory=false", "data.workers=1", "trainer.epochs=2", "study.n_trials=6",
                          "study.noise_seeds=1", "progress=none", "wandb.mode=disabled"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "has no attribute 'env'" not in res.stderr
    storage = f"sqlite:///{tmp_path}/outputs/studies.db"
    (name,) = optuna.get_all_study_names(storage)  # the study's name carries the folder's
    study = optuna.load_study(study_name=name, storage=storage)
    _check_exact_budget(study, 6, 2)
    _two_workers_ran(study)


def _stream_in_this_process(folder: str) -> tuple:
    """(start method DataLoader was given, images streamed) for one pass over ``folder`` with one DataLoader worker."""
    import numpy as np

    from gcnas.data.stream import SourceImages, StreamSplit, make_transforms, timm_sources, worker_start_method

    source, _, _ = timm_sources("", folder)
    transform, _ = make_transforms(28, 1, (0.5,), (0.5,), "none", native=True)
    split = StreamSplit(SourceImages(source, np.arange(len(source)), transform, "L"), workers=1)
    return worker_start_method(), sum(len(y) for _, y in split.batches(16))


@pytest.mark.slow
def test_dataloader_workers_start_inside_a_loky_worker_and_as_before_elsewhere(tmp_path):
    from joblib import Parallel, delayed

    from imagefolders import write_folder

    folder = str(write_folder(tmp_path / "images", classes=(0, 1), per_class=20))
    assert _stream_in_this_process(folder) == (None, 40)  # a plain process keeps DataLoader's default
    # two tasks on two loky workers: with one task joblib would run it here, in this process
    results = Parallel(n_jobs=2, backend="loky")(delayed(_stream_in_this_process)(folder) for _ in range(2))
    assert results == [("fork", 40), ("fork", 40)]


@pytest.mark.slow
def test_hydra_still_leaves_a_multirun_launching_process_without_hydra_config(tmp_path):
    """Pins the Hydra behaviour that gcnas.cli.callbacks.install_controller_config works around, and that it undoes
    what it installs. When the first assertion fails, Hydra installs HydraConfig itself (its PR 3439): remove the
    work-around. A real Hydra app, run twice: once without gcnas's callbacks, once with CheckOutputRoot first."""
    app = tmp_path / "app.py"
    app.write_text(
        "import hydra\n"
        "from hydra.core.hydra_config import HydraConfig\n"
        "from hydra.experimental.callback import Callback\n\n"
        "class Probe(Callback):\n"
        "    def on_multirun_start(self, config, **kwargs):\n"
        "        print('at start:', HydraConfig.initialized())\n\n"
        "@hydra.main(version_base='1.3', config_path='.', config_name='config')\n"
        "def main(cfg):\n"
        "    print('job:', cfg.x)\n\n"
        "main()\n"
        "print('after:', HydraConfig.initialized())\n")
    callbacks = {"without": "", "with": "    gcnas:\n      _target_: gcnas.cli.callbacks.CheckOutputRoot\n"}
    out = {}
    for name, first in callbacks.items():
        (tmp_path / "config.yaml").write_text(
            f"x: 1\nhydra:\n  callbacks:\n{first}    probe:\n      _target_: __main__.Probe\n"
            f"  sweep:\n    dir: ${{hydra:runtime.cwd}}/sweep-{name}\n")
        res = subprocess.run([sys.executable, str(app), "-m", "x=1,2"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=120)
        out[name] = res
    assert "at start: False" in out["without"].stdout  # Hydra 1.3.8: nothing installed in the launching process
    assert out["without"].returncode == 1 and "HydraConfig was not set" in out["without"].stderr
    assert out["with"].returncode == 0, out["with"].stderr[-2000:]
    assert "at start: True" in out["with"].stdout and "job: 2" in out["with"].stdout
    assert (tmp_path / "sweep-with" / "1").is_dir()  # ${hydra:runtime.cwd} resolved in the launching process
    assert "after: False" in out["with"].stdout  # removed again when the multirun ended


def test_slurm_launcher_composes_as_array_tasks():
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.cpus_per_task == 4 and launcher.array_parallelism == 64
    assert launcher.tasks_per_node == 1 and launcher.timeout_min == 720


@pytest.mark.slow
def test_the_same_multirun_through_submitit_local_executor(tmp_path):
    _cli(tmp_path, "study.n_trials=4", "worker=0,1", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
         multirun=True)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path}/studies.db")
    _check_exact_budget(study, 4, 2)
    assert list((tmp_path / "multirun").rglob(".submitit/*/*_result.pkl"))  # submitit really ran the jobs


@pytest.mark.slow
def test_kill_9_mid_trial_fails_the_stale_trial_and_retries_its_architecture(tmp_path):
    hb = ["study.heartbeat_interval=1", "study.grace_period=3", "sampler=random", "trainer.epochs=3",
          "data.size=1024", "study.enqueue_baselines=false"]
    cmd = [sys.executable, "-m", "gcnas.cli.search", f"paths.root={tmp_path}", *TINY, *hb, "study.n_trials=3"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = f"sqlite:///{tmp_path}/studies.db"
    victim = None
    deadline = time.time() + 240
    while time.time() < deadline and victim is None:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=STUDY, storage=storage)
        except KeyError:
            continue
        running = study.get_trials(states=(TrialState.RUNNING,))
        if running and len(running[0].intermediate_values) >= 1:  # training, past its first (reported) epoch
            victim = running[0]
    assert victim is not None, "the worker never got into a trial"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(4)  # the grace period passes without heartbeats
    # the same search resumes (here in this process, as _cli's command composes it): the stale trial is failed and
    # queued again (the same trainer and data: a study refuses a run made from other inputs)
    search(compose_search(tmp_path, *SMALLER, *hb, "study.n_trials=3"))
    study = optuna.load_study(study_name=STUDY, storage=storage)
    dead = study.trials[victim.number]
    assert dead.state == TrialState.FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs["arch_key"] == victim.user_attrs["arch_key"]
    assert "stopped sending heartbeats" in retries[0].user_attrs["retry_reason"]
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3



def test_a_stale_trial_is_retried_with_what_to_run_only_and_at_most_max_retries_times(tmp_path):
    """The retry goes through Optuna's own RetryHeartbeatStaleTrialCallback (its retry history counts the chain), on a
    real heartbeat storage: the dead run's measurements stay behind, the enqueued architecture goes along."""
    storage = make_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=1,
                           failed_trial_callback=retry_stale_trial(max_retries=1))
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({}, user_attrs={FIXED_ARCH_ATTR: "backbone: x", ROLE_ATTR: "paper_gc"})

    def die(trial) -> None:  # a worker that started the trial, measured something, then stopped sending heartbeats
        trial.set_user_attr("worker", 7)
        trial.set_user_attr("arch_key", "measured by the dead run")
        storage.record_heartbeat(trial._trial_id)
        time.sleep(2.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # what the next worker's ask does

    url = f"sqlite:///{tmp_path}/s.db"
    first = ask(study, url)  # the worker's ask: without Optuna's warning about heartbeats outside optimize()
    die(first)
    trials = study.get_trials(deepcopy=False)
    assert trials[first.number].state == TrialState.FAIL
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1
    assert waiting[0].user_attrs == {FIXED_ARCH_ATTR: "backbone: x", ROLE_ATTR: "paper_gc", "retry_of": first.number,
                                     "retry_reason": f"trial {first.number} (worker 7) stopped sending heartbeats"}
    second = ask(study, url)
    assert second.number == waiting[0].number
    die(second)  # the retry dies too: max_retries=1 is spent, so nothing is queued again
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.FAIL, TrialState.FAIL]


def test_nan_loss_ends_the_trial_pruned_with_reason_and_the_study_goes_on(tmp_path):
    result = search(compose_search(tmp_path, "study.n_trials=3", "trainer.lr=1e12", "wandb.mode=disabled",
                                   "trainer.epochs=2"))
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    assert result.n_finished == 3
    diverged = [t for t in study.trials if "pruned_reason" in t.user_attrs]
    assert diverged and all(t.state == TrialState.PRUNED for t in diverged)
    assert all("at epoch 1, step" in t.user_attrs["pruned_reason"] and "loss became" in t.user_attrs["pruned_reason"]
               for t in diverged)


def _failing_first(monkeypatch, error: BaseException, times: int = 1):
    """The first ``times`` trainings raise ``error`` (a real CUDA OOM cannot happen on this CPU machine)."""
    real = objective_module.fit
    calls = {"n": 0}

    def fit(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(objective_module, "fit", fit)


def test_out_of_memory_fails_that_trial_and_the_worker_continues(tmp_path, monkeypatch):
    _failing_first(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    result = search(compose_search(tmp_path, "study.n_trials=2", "wandb.mode=disabled"))
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["error"].startswith("out of memory: CUDA out of memory.")
    assert "objective.py" in failed[0].user_attrs["error"]  # where it was raised
    assert result.n_finished == 2


def test_a_raising_trial_is_recorded_and_too_many_in_a_row_stop_the_worker(tmp_path, monkeypatch):
    _failing_first(monkeypatch, RuntimeError("boom in a layer"), times=100)
    with pytest.raises(RuntimeError, match=r"3 trials in a row failed in this worker \(study.max_failures=3\); "
                                           r"the last: RuntimeError: boom in a layer"):
        search(compose_search(tmp_path, "study.n_trials=5", "study.max_failures=3", "wandb.mode=disabled"))
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path}/studies.db")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert all("RuntimeError: boom in a layer" in t.user_attrs["error"] for t in study.trials)
    for t in study.trials:  # the trial's log holds the whole traceback, down to the raising frame
        text = (tmp_path / STUDY / "trials" / f"trial-{t.number}" / "log.txt").read_text()
        assert "Traceback (most recent call last):" in text and "in fit" in text and "raise error" in text


@pytest.fixture(scope="module", autouse=True)
def refused(tmp_path_factory):
    """Two searches refused before anything, started with this module's first test so that their start-up (each
    imports torch anew) overlaps the other tests instead of adding to them; read by the two tests below: an output root
    under a file, and storage=postgres without GCNAS_STORAGE_URL. Yields (the blocking file, {case: Popen})."""
    root = tmp_path_factory.mktemp("refused")
    blocker = root / "a-file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "GCNAS_STORAGE_URL"}
    cmd = [sys.executable, "-m", "gcnas.cli.search", f"paths.root={root}", *TINY]
    procs = start({"unwritable": [*cmd, f"paths.root={blocker}/outputs"], "no url": [*cmd, "storage=postgres"]},
                  cwd=root, env=env)
    yield blocker, procs
    finish(procs, timeout=120)  # ended, if the tests that read them did not run


def test_unwritable_output_root_is_a_clear_error_before_anything(refused):
    blocker, procs = refused
    res = finish({"unwritable": procs["unwritable"]}, timeout=600)["unwritable"]
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"paths.root: cannot write to {blocker}/outputs" in res.stderr


def test_postgres_without_its_url_says_how_to_give_it(refused):
    res = finish({"no url": refused[1]["no url"]}, timeout=600)["no url"]
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "GCNAS_STORAGE_URL" in res.stderr and "export GCNAS_STORAGE_URL=postgresql+psycopg://" in res.stderr


@pytest.mark.slow
def test_the_storage_password_is_written_nowhere(postgres, tmp_path):
    """A search (2 workers, URL given literally on the command line), W&B offline, an export and a report: no file
    they write and no line they print holds the password. The export, the report and a refused export read the
    finished study side by side (each process imports torch anew)."""
    from postgres import PASSWORD

    url = postgres.create_database("secrets")
    res = _cli(tmp_path, "worker=0,1", "hydra/launcher=joblib", f"study.storage={url}", "study.n_trials=3",
               "wandb.mode=offline", "hydra.job_logging.root.level=DEBUG", multirun=True)
    out = res.stdout + res.stderr
    tools = {"export": ("export", f"study.name={STUDY}"), "report": ("report", f"study.name={STUDY}"),
             "bad": ("export", "study.name=nope")}
    runs = run_together({key: [sys.executable, "-m", f"gcnas.cli.{tool}", f"paths.root={tmp_path}",
                               f"study.storage={url}", name] for key, (tool, name) in tools.items()},
                        timeout=300, cwd=tmp_path)
    for key in ("export", "report"):
        assert runs[key].returncode == 0, runs[key].stderr[-2000:]
    assert runs["bad"].returncode == 2 and "postgres:***@127.0.0.1" in runs["bad"].stderr
    out += "".join(r.stdout + r.stderr for r in runs.values())
    assert PASSWORD not in out
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written) and any(p.name == "overrides.yaml" for p in written)
    assert any(p.name == "model.onnx" for p in written) and any(p.name.endswith(".log") for p in written)
    leaks = [str(p) for p in written if PASSWORD.encode() in p.read_bytes()]
    assert not leaks, leaks


def test_opening_storage_retries_connection_errors_only_and_keeps_the_cause(caplog, monkeypatch):
    """A database that does not answer is tried STORAGE_ATTEMPTS times (it may be starting), 0.25 s, 0.5 s, ... apart;
    a URL no driver can open fails at once. Either way the error names study.storage and keeps the library's error as
    its cause. The waits between tries are recorded, not slept (they add up to 9 s)."""
    from types import SimpleNamespace

    import sqlalchemy.exc

    from gcnas.errors import ConfigError
    from gcnas.search.study import STORAGE_ATTEMPTS, make_storage

    waits = []
    monkeypatch.setattr("gcnas.search.study.time", SimpleNamespace(sleep=waits.append))  # the module's waits only
    caplog.set_level("WARNING", logger="gcnas.search")
    with pytest.raises(ConfigError, match=r"study.storage: cannot open postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/db") \
            as e:
        make_storage("postgresql+psycopg://u:secret@127.0.0.1:1/db")  # nothing listens on port 1
    assert isinstance(e.value.__cause__, sqlalchemy.exc.OperationalError)
    tries = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert len(tries) == STORAGE_ATTEMPTS and "secret" not in caplog.text
    assert waits == [0.25 * k for k in range(1, STORAGE_ATTEMPTS + 1)]
    caplog.clear()
    with pytest.raises(ConfigError, match="study.storage: cannot open nosuchdb://") as e:
        make_storage("nosuchdb://host/db")
    assert isinstance(e.value.__cause__, sqlalchemy.exc.NoSuchModuleError)
    assert not [r for r in caplog.records if "attempt" in r.getMessage()]  # not retried
    assert len(waits) == STORAGE_ATTEMPTS  # nothing waited for
