"""Sampling and enumeration agree: on which design keys are active, also when a condition names a key that is itself
conditional or one that comes later in ``DESIGN_KEYS``, and on the placement choices a stage that is off never asks
for."""
from __future__ import annotations

import optuna
import pytest

from gcnas.backbones import list_sites
from gcnas.space import InfeasibleArchitecture, SearchSpace, SearchSpaceError
from gcnas.space.enumeration import design_assignments

optuna.logging.set_verbosity(optuna.logging.WARNING)

FIXED_POSITIONS = {"stages": [3], "stage_on": True, "blocks": "last", "position": "before_add"}
CHAINS = {
    # transform is searched only with att; ratio only where the transform has one (an avg draw keeps the default
    # transform, bottleneck, so ratio is searched there too)
    "chained": {"ratio": {"transform": ["bottleneck", "se"]}, "transform": {"context": ["att"]}},
    # a condition on a key DESIGN_KEYS lists later: context is searched only with the bottleneck transform
    "later key": {"ratio": {"transform": ["bottleneck", "se"]}, "context": {"transform": ["bottleneck"]}},
    # three links: norm needs transform, which needs context, which needs fusion
    "three links": {"norm": {"transform": ["bottleneck"]}, "transform": {"context": ["att"]},
                    "context": {"fusion": ["add"]}},
}


PER_STAGE = {
    "stages on and off": ({"share": "per_stage"}, {"stages": [2, 3], "stage_on": [True, False], "per_stage": True}),
    "shared design": ({}, {"stages": [1, 2, 3], "stage_on": [True, False], "per_stage": True}),
    "stage sets": ({"share": "per_stage"}, {"stage_sets": [[2], [1, 3], [1, 2, 3]], "per_stage": True}),
    "one choice for all": ({"share": "per_stage"}, {"stages": [2, 3], "stage_on": [True, False]}),
}


def _space(conditions, design=None, positions=FIXED_POSITIONS):
    cfg = {"name": "chain", "positions": positions,
           "design": {"context": ["att", "avg"], "transform": ["bottleneck", "se", "conv"], "ratio": [0.0625, 0.25],
                      "fusion": ["add", "scale"], "norm": ["layernorm", None], "conditions": conditions}}
    cfg["design"].update(design or {})
    return SearchSpace.from_config(cfg, backbone="resnet18", sites=list_sites("resnet18", input_size=(3, 64, 64)))


def _every_draw(space):
    """Every distinct parameter assignment sampling produces, and the designs it places: Optuna's brute-force sampler
    follows conditional parameters, so it visits each assignment suggest can make once, then stops."""
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    draws, designs = set(), set()

    def objective(trial):
        try:
            designs.update(p.spec for p in space.suggest(trial).placements)
        except InfeasibleArchitecture:
            pass
        draws.add(frozenset(trial.params.items()))
        return 0.0

    study.optimize(objective, n_trials=1000)
    assert len(study.trials) < 1000  # the sampler ran out of assignments, so it saw every one
    return draws, designs


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # BruteForceSampler
@pytest.mark.parametrize("name", CHAINS)
def test_sampling_and_enumeration_agree_on_active_keys(name):
    space = _space(CHAINS[name])
    draws, designs = _every_draw(space)
    listed = {frozenset((f"design.{k}", v) for k, v in a.items() if space.design[k].searched)
              for a in design_assignments(space)}
    assert listed == draws  # every assignment enumerated is drawn, and every one drawn is enumerated
    assert space.size() == len(draws)
    assert designs == set(space.designs())


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # BruteForceSampler
@pytest.mark.parametrize("name", PER_STAGE)
def test_size_counts_only_what_a_stage_that_is_on_asks_for(name):
    design, positions = PER_STAGE[name]
    space = _space({}, {"context": ["att", "avg"], "transform": "bottleneck", "ratio": 0.0625, "fusion": "add",
                        "norm": "layernorm", **design}, {"blocks": ["all", "last"], **positions})
    draws, _ = _every_draw(space)
    assert space.size() == len(draws)


def test_conditions_that_form_a_cycle_are_refused():
    with pytest.raises(SearchSpaceError) as err:
        _space({"ratio": {"transform": ["se"]}, "transform": {"ratio": [0.25]}})
    assert str(err.value) == ("search_spaces/chain.yaml: design.conditions.transform: conditions form a cycle "
                              "(transform -> ratio -> transform): no key of it can be drawn first")
