"""Confirming a study's top trials: fresh seeds, paired with the plain backbone, stored as a study of its own."""
from __future__ import annotations

import optuna
import pytest
from hydra import compose, initialize_config_module

from conftest import compose_search
from gcnas.cli.confirm import confirm
from gcnas.cli.search import search
from gcnas.export import export_trial
from gcnas.report import write_report
from gcnas.search import record
from gcnas.search.confirm import CONFIRMATION_ATTR, Confirmed, confirmation


def test_paired_interval_and_verdicts():
    # differences 0.02, 0.03, 0.01: mean 0.02, sd 0.01, half-width t(2) * 0.01 / sqrt(3) = 0.02484
    c = Confirmed(3, "searched", (0.80, 0.82, 0.81), (0.02, 0.03, 0.01))
    lo, hi = c.interval
    assert c.diff == pytest.approx(0.02) and lo == pytest.approx(0.02 - 0.024844, abs=1e-5)
    assert hi == pytest.approx(0.02 + 0.024844, abs=1e-5) and c.verdict == "not distinguishable"
    assert Confirmed(4, "searched", (0.9,) * 3, (0.05, 0.06, 0.04)).verdict == "better"
    assert Confirmed(5, "searched", (0.7,) * 3, (-0.05, -0.06, -0.04)).verdict == "worse"
    assert Confirmed(6, "searched", (0.9,), (0.05,)).interval is None


def _confirm_cfg(root, *overrides: str):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("confirm", overrides=[f"paths.root={root}", "wandb.mode=disabled", "progress=none", "threads=1",
                                             *overrides])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("confirm")
    result = search(compose_search(root, "study.n_trials=5", "sampler=random", "pruner=none", "study.keep_weights=0",
                                   "wandb.mode=disabled"))
    return root, result.study_name


@pytest.mark.slow
def test_confirm_retrains_the_top_trials_with_paired_fresh_seeds(source, tmp_path, monkeypatch):
    root, name = source
    url = f"sqlite:///{root}/studies.db"
    result = confirm(_confirm_cfg(root, f"study.name={name}", "confirm.k=2", "confirm.seeds=2",
                                  "+confirm.trainer.epochs=1"))
    assert result.study_name == f"{name}-confirm" and result.n_finished == 6
    study = optuna.load_study(study_name=name, storage=url)
    conf = optuna.load_study(study_name=f"{name}-confirm", storage=url)
    trials = conf.get_trials()
    # seed by seed: the baseline and both candidates share it (100, then 101); the fidelity override applies
    assert [t.user_attrs["replicate"] for t in trials] == [0, 0, 0, 1, 1, 1]
    assert [record.recipe_of(conf, t).get("seed") for t in trials] == [None] * 3 + [101] * 3
    assert all(t.user_attrs["epochs"] == 1 and record.recipe_of(conf, t)["epochs"] == 1 for t in trials)
    assert trials[0].user_attrs["role"] == "baseline"
    found = confirmation(study, url)
    base, *cands = found
    assert base.role == "baseline" and len(cands) == 2 and all(len(c.values) == 2 for c in cands)
    by_source = {}
    for t in trials:
        by_source.setdefault(t.user_attrs["confirms"], []).append(t.values[0])
    for c in cands:
        assert list(c.values) == by_source[c.trial]
        assert list(c.diffs) == pytest.approx([v - b for v, b in zip(by_source[c.trial], base.values)])
    assert [c.diff for c in cands] == sorted((c.diff for c in cands), reverse=True)
    # running it again resumes: nothing left to train
    again = confirm(_confirm_cfg(root, f"study.name={name}", "confirm.k=2", "confirm.seeds=2",
                                 "+confirm.trainer.epochs=1"))
    assert again.trials_run == 0
    # export picks the best confirmed candidate and its card states the confirmed numbers
    monkeypatch.chdir(tmp_path)
    out = export_trial(url, name)
    assert out.trial == cands[0].trial and out.picked.startswith("best confirmed candidate (2 confirmed over 2 seeds)")
    card = (out.dir / "MODEL_CARD.md").read_text()
    assert "## Confirmation (fresh seeds, paired with the plain backbone)" in card and "epochs=1" in card
    assert f"| {cands[0].trial} | {cands[0].role} | 2 | {cands[0].mean:.4f} ± {cands[0].std:.4f} |" in card
    rep = write_report(study, tmp_path / "report", storage=url)
    assert "## Confirmation" in rep.summary.read_text()
    # another confirmation of the same study is refused, naming the one it has
    with pytest.raises(ValueError, match="was confirmed with"):
        confirm(_confirm_cfg(root, f"study.name={name}", "confirm.k=3"))


@pytest.fixture(scope="module")
def fresh_source(tmp_path_factory):
    """A study no confirmation touched, shared by the bad-input cases: each checks it is still untouched."""
    tmp_path = tmp_path_factory.mktemp("fresh")
    result = search(compose_search(tmp_path, "study.n_trials=3", "sampler=random", "pruner=none", "trainer.epochs=1",
                                   "wandb.mode=disabled"))
    return tmp_path, result.study_name


@pytest.mark.parametrize("overrides,message", [
    (["confirm.k=0"], "confirm.k: must be an integer >= 1; got 0"),
    (["confirm.seeds=0"], "confirm.seeds: must be an integer >= 1; got 0"),
    (["confirm.first_seed=-2"], "confirm.first_seed: must be an integer >= 0; got -2"),
    (["+confirm.trainer.epochz=3"], "confirm.trainer.epochz: not a key of the search's trainer config; valid keys "
                                    "are accum_steps, amp, batch_size"),
    (["+confirm.data.train_subsett=3"], "confirm.data.train_subsett: not a key of the search's data config"),
    (["worker=-1"], "worker: must be an integer >= 0; got -1"),
])
def test_bad_confirmation_input_changes_nothing(fresh_source, overrides, message):
    root, name = fresh_source
    url = f"sqlite:///{root}/studies.db"
    with pytest.raises(ValueError) as e:
        confirm(_confirm_cfg(root, f"study.name={name}", *overrides))
    assert message in str(e.value)
    assert CONFIRMATION_ATTR not in optuna.load_study(study_name=name, storage=url).user_attrs
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == [name]


def test_confirming_a_missing_or_empty_study_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="study.storage: sqlite:///.*none.db does not exist"):
        confirm(_confirm_cfg(tmp_path, "study.name=nope", "study.storage=sqlite:///" + str(tmp_path / "none.db")))
    search(compose_search(tmp_path, "study.n_trials=1", "wandb.mode=disabled"))  # the baseline alone
    with pytest.raises(ValueError, match="study.name: no study 'nope' in .* it holds: gc_full-gcnas_resnet_tiny-syn"):
        confirm(_confirm_cfg(tmp_path, "study.name=nope"))
    with pytest.raises(ValueError, match="has no finished trained trial besides the baseline yet; nothing to confirm"):
        confirm(_confirm_cfg(tmp_path, "study.name=gc_full-gcnas_resnet_tiny-synthetic"))
    names = [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/studies.db")]
    assert names == ["gc_full-gcnas_resnet_tiny-synthetic"]  # no confirmation study was created
