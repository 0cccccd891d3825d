"""The Optuna behaviours gcnas/search/optuna_compat.py works around, checked against the installed Optuna.

Each test states the behaviour first: when an Optuna release changes it, the test fails and names what to remove or
rework in the compat module, instead of the worker breaking quietly.
"""
from __future__ import annotations

import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from gcnas.search import record
from gcnas.search.optuna_compat import (GRID_STOP_MESSAGE, HEARTBEAT_WARNING, Heartbeat, _constraint_prefix, ask,
                                         tell, trial_id, without_constraints)
from gcnas.search.retry import queue_again


def _heartbeat_storage(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=60, grace_period=120)


def test_ask_outside_optimize_warns_about_heartbeats_and_ours_does_not(tmp_path):
    storage = _heartbeat_storage(tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    with pytest.warns(UserWarning, match=HEARTBEAT_WARNING):  # Optuna's behaviour; if gone, drop the filter in ask()
        study.ask()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trial = ask(study, f"sqlite:///{tmp_path}/s.db")
    assert trial.number == 1 and not [w for w in seen if HEARTBEAT_WARNING in str(w.message)]


def test_heartbeats_from_our_thread_keep_a_trial_alive_for_optunas_stale_check(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="s", storage=storage)
    alive, dead = ask(study, f"sqlite:///{tmp_path}/s.db"), ask(study, f"sqlite:///{tmp_path}/s.db")
    with Heartbeat(storage, trial_id(storage, study, dead), interval=1):
        pass  # one beat, then silence: a worker that died
    with Heartbeat(storage, trial_id(storage, study, alive), interval=1):
        time.sleep(3.5)  # past the grace period
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {alive.number: TrialState.RUNNING, dead.number: TrialState.FAIL}


def test_an_exhausted_grid_stops_outside_optimize_after_storing_the_trial(tmp_path):
    sampler = optuna.samplers.GridSampler({"x": [0, 1]})
    study = optuna.create_study(sampler=sampler)
    first = study.ask({"x": optuna.distributions.CategoricalDistribution([0, 1])})
    study.tell(first, 1.0)
    second = study.ask({"x": optuna.distributions.CategoricalDistribution([0, 1])})
    with pytest.raises(RuntimeError, match=GRID_STOP_MESSAGE):  # Optuna's behaviour; if gone, simplify tell()
        study.tell(second, 2.0)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2  # stored before the stop
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [0]}))
    only = study.ask({"x": optuna.distributions.CategoricalDistribution([0])})
    tell(study, only, values=1.0)  # ours lets the stop pass
    assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == 1.0


def test_trial_ids_come_from_the_public_storage_api(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/ids.db")
    a = optuna.create_study(study_name="a", storage=storage)
    b = optuna.create_study(study_name="b", storage=storage)
    trials = [a.ask(), b.ask(), b.ask(), a.ask()]
    for study, trial in zip((a, b, b, a), trials):
        frozen = storage.get_trial(trial_id(storage, study, trial))
        assert frozen.number == trial.number and frozen.state == TrialState.RUNNING
    assert len({trial_id(storage, s, t) for s, t in zip((a, b, b, a), trials)}) == 4


def test_a_retry_records_its_own_constraint_values():
    """Optuna's retry callback copies a trial's constraint values into the retry, where set_constraint then keeps the
    old value with a warning (the behaviour worked around: this fails when Optuna changes it); gcnas's queue_again
    leaves them out, so the retry records the value it measures."""
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    first = study.ask()
    first.set_constraint("max_latency_ms", -1.0)
    study.tell(first, state=TrialState.FAIL)
    failed = study.trials[first.number]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, failed)  # Optuna's own copy
    again = study.ask()
    with pytest.warns(UserWarning, match="already set"):
        again.set_constraint("max_latency_ms", 2.0)
    assert study.trials[again.number].system_attrs[f"{_constraint_prefix()}max_latency_ms"] == -1.0
    study.tell(again, state=TrialState.FAIL)

    assert queue_again(study, failed, "stopped")  # gcnas's copy
    ours = study.ask()
    assert record.RETRY_OF.get(ours) == first.number
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours.set_constraint("max_latency_ms", 2.0)
    assert study.trials[ours.number].system_attrs[f"{_constraint_prefix()}max_latency_ms"] == 2.0
    assert without_constraints({"constraints_x": 1, f"{_constraint_prefix()}a": 2.0}) == {"constraints_x": 1}
