"""benchmarks/scale.py: the search's cost per trial, timed around the real driver's steps."""
from __future__ import annotations

import sys
import time

import pytest

from benchmarks.scale import PARTS, PROBES, WORK, Stopwatch, main


def test_a_part_is_timed_without_the_parts_called_inside_it():
    watch = Stopwatch()

    def inner():
        time.sleep(0.05)

    timed_inner = watch.timed("dedupe", inner)

    def outer():
        time.sleep(0.02)
        timed_inner()

    t0 = time.perf_counter()
    watch.timed("storage", outer)()
    total = time.perf_counter() - t0
    assert watch.totals["dedupe"] >= 0.05 and watch.totals["storage"] >= 0.02
    # the nested part is left out of its caller's: together they are the call's time, not more
    assert watch.totals["storage"] + watch.totals["dedupe"] == pytest.approx(total, abs=0.02)
    assert watch.totals["cpu:dedupe"] < 0.04  # a sleep takes wall time, no CPU time


@pytest.mark.slow
def test_a_tiny_sqlite_study_prints_every_part_as_a_number(tmp_path, capsys):
    """6 trials of a one-shot study through the real worker (in its own process): one row, every column a number,
    every probe found, the parts adding up to the orchestration, and the scorer's time counted as the trial's own."""
    assert main(["--trials", "6", "--storages", "sqlite", "--workers", "1", "--sampler", "random",
                 "--keep", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not timed" not in out  # every probe of PROBES still names a function of gcnas
    lines = [line for line in out.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[:5] == ["storage", "workers", "trials", "copied", "timed"]
    assert head[5:5 + len(PARTS)] == [f"{p} ms" for p in PARTS]
    (row,) = lines[2:]
    cells = dict(zip(head, (c.strip() for c in row.strip("|").split("|"))))
    assert [cells[h] for h in head[:4]] == ["sqlite", "1", "6", "0"]
    assert cells.pop("growth") == cells.pop("CPU growth") == "-"  # the first size has none to grow from
    values = {h: float(c) for h, c in list(cells.items())[3:]}  # a cell that is no number raises here
    assert values["timed"] >= 5  # every trial of so small a study but the worker's first (infeasible draws count)
    assert sum(values[f"{p} ms"] for p in PARTS) == pytest.approx(values["orchestration ms"], abs=0.2)
    assert values["ask ms"] > 0 and values["tell ms"] > 0 and values["storage ms"] > 0
    assert 0 < values["CPU ms"] < values["orchestration ms"] + 1  # CPU time cannot exceed the wall time
    assert values["trial work ms"] > 0  # the supernet scored the references (OneShotScorer.__call__ was timed)
    assert 0 < values["share of a 1.45 s trial %"] < 100
    assert any(part == WORK for _, _, part in PROBES)


@pytest.mark.slow
def test_the_worker_reads_every_trial_once_per_trial_and_cancels_only_past_the_budget(tmp_path, monkeypatch):
    """The trial loop's own reads of the whole study (each O(trials)): the finished trials are counted once per trial
    (the progress line's count is the next budget check's), and the trials ahead of an asked one are read only when
    its number is past the budget, where one can be cancelled; such a trial still is."""
    import optuna
    from optuna.trial import TrialState

    from conftest import compose_search
    from gcnas.cli.search import search
    from gcnas.search import record, worker

    reads = {"counted": 0, "_cancelled": 0}
    real_counted, real_get_trials = worker.counted_trials, optuna.Study.get_trials

    def counted(study):
        reads["counted"] += 1
        return real_counted(study)

    def get_trials(self, *args, **kwargs):
        caller = sys._getframe(1).f_code.co_name
        if caller in reads:
            reads[caller] += 1
        return real_get_trials(self, *args, **kwargs)

    monkeypatch.setattr(worker, "counted_trials", counted)
    monkeypatch.setattr(optuna.Study, "get_trials", get_trials)
    run = ["trainer.epochs=1", "data.size=256", "sampler=random", "pruner=none", "wandb.mode=disabled",
           "study.enqueue_baselines=false", "study.name=reads"]
    result = search(compose_search(tmp_path, *run, "study.n_trials=3"))
    study = optuna.load_study(study_name="reads", storage=f"sqlite:///{tmp_path}/studies.db")
    asked = study.get_trials()
    assert result.n_finished == 3
    # once after each trial, once before the first, once in the closing result (it was twice per trial)
    assert reads["counted"] == len(asked) + 2
    assert reads["_cancelled"] == sum(t.number >= 3 for t in asked)  # infeasible draws push numbers past it

    for _ in range(3):  # three trials another worker runs now, ahead of any this worker asks
        study.ask()
    reads["_cancelled"] = 0
    again = search(compose_search(tmp_path, *run, "study.n_trials=4"))
    assert again.trials_run == 0 and reads["_cancelled"] == 1
    (cancelled,) = study.get_trials(states=(TrialState.FAIL,))
    assert "study budget of 4 trials already taken" in record.CANCELLED.get(cancelled)
