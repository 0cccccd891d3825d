"""Each study's noise floor: the references trained with several seeds, and every delta read against them."""
from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from conftest import compose_search
from gcnas.cli.search import search
from gcnas.search import record
from gcnas.search.summary import noise_floor, ranked_trials, results_table
from wandb_offline import offline_runs


def _study(values: dict[str, list[float]], searched: list[float] = ()) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for role, accs in values.items():
        for k, acc in enumerate(accs):
            study.add_trial(create_trial(value=acc, user_attrs={"role": role, "replicate": k}))
    for acc in searched:
        study.add_trial(create_trial(value=acc, params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)},
                                     user_attrs={"role": "searched"}))
    return study


def test_pooled_std_band_and_verdicts():
    study = _study({"baseline": [0.80, 0.82, 0.84], "paper_gc": [0.85, 0.85, 0.88]}, searched=[0.83, 0.90])
    noise = noise_floor(study)
    # variances 4e-4 and 3e-4 with 2 degrees of freedom each: pooled 3.5e-4
    assert noise.std == pytest.approx(math.sqrt(3.5e-4))
    assert noise.seeds == 3 and noise.baseline_mean == pytest.approx(0.82)
    assert noise.band == pytest.approx(2 * math.sqrt(3.5e-4) * math.sqrt(4 / 3))  # ±4.32 pp
    assert not noise.beyond(0.83 - 0.82) and noise.beyond(0.90 - 0.82)
    table = results_table(study, ["accuracy"], top_k=10)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    # the 0.90 trial is 8 pp above the plain mean (beyond ±4.32), the 0.83 one 1 pp (within)
    assert " | +8.00 pp | yes | " in rows["7"] and " | +1.00 pp | no | " in rows["6"]
    assert "noise floor: 1.87 pp seed-to-seed std" in table and "±4.32 pp" in table
    # the references' extra seeds measure the noise; they are not candidates
    assert sorted(t.number for t in ranked_trials(study)) == [0, 3, 6, 7]  # replicate 0 of each, the searched


def test_no_floor_until_a_reference_has_two_seeds():
    assert noise_floor(_study({"baseline": [0.8], "paper_gc": [0.85]})) is None
    table = results_table(_study({"baseline": [0.8], "paper_gc": [0.85]}), ["accuracy"])
    assert "noise floor" not in table and " | +5.00 pp | - | " in table  # against the one baseline run


@pytest.mark.slow
def test_a_study_trains_its_references_with_several_seeds(tmp_path):
    result = search(compose_search(tmp_path, "study.noise_seeds=3", "study.n_trials=7", "sampler=random",
                                   "wandb.mode=offline"))
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    trials = study.get_trials()
    assert [(t.user_attrs["role"], t.user_attrs.get("replicate")) for t in trials[:6]] == [
        ("baseline", 0), ("paper_gc", 0), ("baseline", 1), ("paper_gc", 1), ("baseline", 2), ("paper_gc", 2)]
    assert trials[6].user_attrs["role"] == "searched"
    # each replicate trained in full with its own seed (seed + k), none taken as a duplicate of another
    assert [record.recipe_of(study, t).get("seed") for t in trials[:6]] == [None, None, 1, 1, 2, 2]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["epochs"] == 2 and "duplicate_of" not in t.user_attrs
               for t in trials[:6])
    # only replicate 0 is the pruner's evidence (extra seeds would set its median at the references')
    assert [list(t.intermediate_values) for t in trials[:6]] == [[1, 2], [1, 2], [], [], [], []]
    # the others keep their curve themselves; each trial's reads the same either way
    assert "history" not in trials[0].user_attrs and len(trials[5].user_attrs["history"]) == 2
    assert all(len(record.history_of(t)) == 2 for t in trials[:6])
    noise = noise_floor(study)
    assert noise.baseline == tuple(t.values[0] for t in trials[:6:2])
    assert noise.values["paper_gc"] == tuple(t.values[0] for t in trials[1:6:2])
    assert "noise floor:" in result.table and "beyond noise" in result.table
    (run,) = [r for r in offline_runs(tmp_path) if r.job_type == "study"]  # the W&B study run states it too
    assert run.summary["noise/std"] == pytest.approx(noise.std) and run.summary["noise/seeds"] == 3
    assert run.summary["noise/baseline_mean"] == pytest.approx(noise.baseline_mean)


def test_a_budget_smaller_than_the_references_trains_the_first_and_keeps_the_rest_queued(tmp_path):
    result = search(compose_search(tmp_path, "study.noise_seeds=3", "study.n_trials=3", "wandb.mode=disabled",
                                   "trainer.epochs=1"))
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    assert [(t.user_attrs["role"], t.user_attrs["replicate"], t.state.name) for t in study.get_trials()] == [
        ("baseline", 0, "COMPLETE"), ("paper_gc", 0, "COMPLETE"), ("baseline", 1, "COMPLETE"),
        ("paper_gc", 1, "WAITING"), ("baseline", 2, "WAITING"), ("paper_gc", 2, "WAITING")]
    assert len(noise_floor(study).baseline) == 2
