"""The budget: every reference a study needs is queued whatever study.n_trials is at its start, references are never
cancelled, and infeasible draws (never trained) neither count against the budget nor stand as results."""
from __future__ import annotations

import logging

import optuna
from optuna.trial import TrialState

from gcnas.cli.search import search
from gcnas.search.objective import FIXED_ARCH_ATTR, REPLICATE_ATTR, ROLE_ATTR
from gcnas.search.prepare import enqueue_references
from conftest import compose_search


def _study(root, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/studies.db")


def test_a_small_first_budget_queues_every_reference_and_a_larger_one_runs_them_first(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="gcnas.search")
    first = search(compose_search(tmp_path, "study.n_trials=2", "study.noise_seeds=3", "trainer.epochs=1"))
    assert ("study.n_trials=2 cannot hold the study's 6 references (plain backbone and paper GC, 3 seed(s) each: its "
            "noise floor) and a searched trial" in caplog.text)
    study = _study(tmp_path, first.study_name)
    states = [(t.state, t.user_attrs[ROLE_ATTR], t.user_attrs[REPLICATE_ATTR]) for t in study.get_trials()]
    assert states == [(TrialState.COMPLETE, "baseline", 0), (TrialState.COMPLETE, "paper_gc", 0),
                      (TrialState.WAITING, "baseline", 1), (TrialState.WAITING, "paper_gc", 1),
                      (TrialState.WAITING, "baseline", 2), (TrialState.WAITING, "paper_gc", 2)]
    assert "noise floor" not in first.table

    more = search(compose_search(tmp_path, "study.n_trials=7", "study.noise_seeds=3", "trainer.epochs=1"))
    finished = [t for t in _study(tmp_path, more.study_name).get_trials()
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 7 == more.n_finished
    assert [t.user_attrs[ROLE_ATTR] for t in finished] == ["baseline", "paper_gc"] * 3 + ["searched"]
    assert "noise floor:" in more.table and "3 seeds" in more.table


def test_references_an_older_study_lacks_are_queued_again():
    """A study from before references were all queued (or whose reference an older version cancelled) gets the missing
    ones; those it holds in any other state are not queued twice."""
    study = optuna.create_study()
    refs = [{FIXED_ARCH_ATTR: "yaml", ROLE_ATTR: role, REPLICATE_ATTR: k} for k in range(2)
            for role in ("baseline", "paper_gc")]
    study.add_trial(optuna.create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs=refs[0]))
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={**refs[1], "cancelled": "budget taken"}))
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={**refs[2], "error": "out of memory"}))
    assert enqueue_references(study, refs) == 2
    waiting = [(t.user_attrs[ROLE_ATTR], t.user_attrs[REPLICATE_ATTR])
               for t in study.get_trials(states=(TrialState.WAITING,))]
    assert waiting == [("paper_gc", 0), ("paper_gc", 1)]
    assert enqueue_references(study, refs) == 0  # idempotent: every worker-0 start calls it


def test_infeasible_draws_are_pruned_with_the_reason_and_do_not_count(tmp_path):
    # at most one block: most draws of gc_full place more (or none), and are never trained
    result = search(compose_search(tmp_path, "study.n_trials=5", "sampler=random", "pruner=none",
                                   "+search_space.limits.max_blocks=1", "trainer.epochs=1"))
    trials = _study(tmp_path, result.study_name).get_trials()
    infeasible = [t for t in trials if "infeasible" in t.user_attrs]
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t not in infeasible]
    assert len(counted) == 5 == result.n_finished  # 2 references and 3 searched, each trained
    assert infeasible, "the space should have drawn infeasible architectures"
    for t in infeasible:
        assert t.state == TrialState.PRUNED and t.values is None and "epochs" not in t.user_attrs
        assert t.user_attrs["infeasible"].startswith("search space limits: ")
    assert all(t.user_attrs["n_blocks"] <= 1 for t in counted if t.user_attrs[ROLE_ATTR] == "searched")
    assert "infeasible" not in result.table
    from gcnas.report import write_report  # the report counts them apart from what the pruner stopped

    summary = write_report(_study(tmp_path, result.study_name), tmp_path / "report").summary.read_text()
    assert f"{len(infeasible)} infeasible" in summary
