"""Ctrl-C and SIGTERM: a real gcnas-search process is interrupted mid-trial, says so in one line, leaves its study
consistent (the trial failed with the reason and queued again), and the next run retries it at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_module
from optuna.trial import TrialState

BIN = Path(sys.executable).parent
NAME = "gc_full-gcnas_resnet_tiny-synthetic"
RUN = ["data=synthetic", "data.size=2048", "data.val_size=256", "trainer.epochs=2", "trainer.batch_size=32",
       "study.noise_seeds=1", "progress=plain", "wandb.mode=offline", "threads=1"]


def _start(cwd: Path, *overrides: str) -> subprocess.Popen:
    # a session of its own, so that the signal reaches the whole group as a terminal's Ctrl-C does
    return subprocess.Popen([str(BIN / "gcnas-search"), *RUN, *overrides], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_epoch(cwd: Path, trial: int, proc: subprocess.Popen, limit: float = 240) -> None:
    log = cwd / "outputs" / NAME / "trials" / f"trial-{trial}" / "log.txt"
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if log.is_file() and "epoch 1:" in log.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the search ended before trial {trial} trained an epoch: {proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError(f"trial {trial} trained no epoch in {limit} s")


def _interrupt(cwd: Path, sig: int, trial: int, *overrides: str) -> tuple[int, str]:
    proc = _start(cwd, *overrides)
    _wait_for_epoch(cwd, trial, proc)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _study(cwd: Path) -> optuna.Study:
    return optuna.load_study(study_name=NAME, storage=f"sqlite:///{cwd}/outputs/studies.db")


@pytest.mark.slow
def test_an_interrupted_trial_fails_with_the_reason_and_the_next_run_retries_it_first(tmp_path):
    code, err = _interrupt(tmp_path, signal.SIGINT, 0, "study.n_trials=3")
    assert code == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == ("gcnas-search: interrupted by SIGINT: trial 0 is recorded as failed and queued again; run the "
                    "same command to resume (finished trials are kept)")
    trials = _study(tmp_path).get_trials()
    # trial 1 is the paper-GC reference, still waiting; trial 2 the interrupted baseline, queued again
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    assert trials[0].user_attrs["interrupted"] == "interrupted by SIGINT (worker 0)"
    assert trials[2].user_attrs["retry_of"] == 0 and trials[2].user_attrs["role"] == "baseline"
    assert "interrupted by SIGINT (worker 0): failed, and queued again" in (
        tmp_path / "outputs" / NAME / "trials" / "trial-0" / "log.txt").read_text()

    # SIGTERM (a scheduler's stop) while the paper-GC reference trains: the same, with 128 + 15
    code, err = _interrupt(tmp_path, signal.SIGTERM, 1, "study.n_trials=3")
    assert code == 143 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("gcnas-search: interrupted by SIGTERM: trial 1 is recorded as failed")

    # at once (no heartbeat grace period to wait out), the next run finishes the study: the reference retried, never
    # cancelled, and the budget exact. It runs in this process (no third start-up of torch): the same config as the
    # command composes, its default paths.root (the folder it ran in, /outputs) given
    from gcnas.cli.search import search

    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root={tmp_path / 'outputs'}", *RUN, "study.n_trials=3"])
    assert search(cfg).trials_run == 3
    trials = _study(tmp_path).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    assert not any("cancelled" in t.user_attrs for t in trials)
    assert [(t.number, t.user_attrs["role"], t.user_attrs.get("retry_of")) for t in finished][:2] == [
        (2, "baseline", 0), (3, "paper_gc", 1)]  # both references retried first, in the order they were queued
    assert sorted(t.number for t in trials if t.state == TrialState.FAIL) == [0, 1]
