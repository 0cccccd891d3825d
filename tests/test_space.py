"""Search spaces: every shipped space validates and reaches every choice; every malformed space is explained."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import optuna
import pytest
import yaml

from gcnas.backbones import list_sites
from gcnas.space import InfeasibleArchitecture, SearchSpace, SearchSpaceError

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
SHIPPED = sorted(p.stem for p in SPACES.glob("*.yaml"))
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sites(name="resnet18"):
    return list_sites(name, input_size=(3, 64, 64))


def _space(space_name, backbone="resnet18", **patch):
    cfg = yaml.safe_load((SPACES / f"{space_name}.yaml").read_text())
    for dotted, value in patch.items():
        node = cfg
        *path, last = dotted.split("__")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return SearchSpace.from_config(cfg, backbone=backbone, sites=_sites(backbone),
                                   source=f"search_spaces/{space_name}.yaml")


def test_the_issue_spaces_ship():
    assert {"gc_full", "gc_design", "gc_positions", "gc_mobile"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_sampling_reaches_every_choice(name):
    backbone = "efficientnet_b0" if name == "gc_mobile" else "resnet18"
    space = _space(name, backbone)
    grid = space.grid()
    seen = defaultdict(set)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(400):
        trial = study.ask()
        try:
            space.suggest(trial)
        except InfeasibleArchitecture:
            pass
        space.suggest_training(trial)
        for k, v in trial.params.items():
            seen[k].add(v)
        study.tell(trial, 0.0)
    for param, values in grid.items():
        assert set(values) == seen[param], f"{name}: {param} never sampled {set(values) - seen[param]}"


def test_conditions_are_respected():
    space = _space("gc_full")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(200):
        t = study.ask()
        try:
            arch = space.suggest(t)
        except InfeasibleArchitecture:
            study.tell(t, 0.0)
            continue
        if t.params["design.transform"] == "conv":
            assert "design.ratio" not in t.params and "design.norm" not in t.params
        if t.params["design.transform"] == "se":
            assert "design.norm" not in t.params and "design.ratio" in t.params
        for p in arch.placements:
            assert p.spec.transform == t.params["design.transform"]
        study.tell(t, 0.0)


def test_paper_positions_of_gc_design():
    space = _space("gc_design", "resnet50")
    study = optuna.create_study()
    arch = space.suggest(study.ask())
    assert {(p.stage, p.position) for p in arch.placements} == {(s, "before_add") for s in (1, 2, 3)}
    assert len(arch.placements) == 4 + 6 + 3
    assert space.size() == 204


def test_limits_make_architectures_infeasible():
    space = _space("gc_positions", positions__stage_on=True, positions__blocks="all", positions__position="before_add",
                   limits={"max_blocks": 8})
    study = optuna.create_study()
    assert len(space.suggest(study.ask()).placements) == 8
    space = _space("gc_positions", positions__stage_on=[True, False], positions__blocks="all",
                   positions__position="before_add", limits={"max_blocks": 5, "min_blocks": 1})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    reasons, sizes = [], []
    for _ in range(60):
        try:
            sizes.append(len(space.suggest(study.ask()).placements))
        except InfeasibleArchitecture as e:
            reasons.append(str(e))
    assert sizes and all(1 <= n <= 5 for n in sizes)
    assert any("exceed limits.max_blocks=5" in r for r in reasons)
    assert any("fewer than limits.min_blocks=1" in r for r in reasons)


def test_grid_refuses_continuous_ranges():
    space = _space("gc_design", design__ratio={"low": 0.05, "high": 0.5, "log": True})
    assert space.size() is None
    with pytest.raises(SearchSpaceError, match="design.ratio: a continuous range cannot be gridded"):
        space.grid()
    stepped = _space("gc_design", design__ratio={"low": 0.125, "high": 0.5, "step": 0.125})
    assert stepped.grid()["design.ratio"] == [0.125, 0.25, 0.375, 0.5]


def test_training_hyperparameters_are_searched():
    space = _space("gc_design", training={"lr": {"low": 0.01, "high": 0.2, "log": True}, "batch_size": [32, 64]})
    t = optuna.create_study().ask()
    hp = space.suggest_training(t)
    assert 0.01 <= hp["lr"] <= 0.2 and hp["batch_size"] in (32, 64)
    assert set(t.params) >= {"train.lr", "train.batch_size"}


MALFORMED = [
    (dict(colour="red"), "search_spaces/gc_full.yaml: colour: unknown key; valid top-level keys are"),
    (dict(design__colour="red"), "design.colour: unknown key; valid keys are 'preset', 'kind', 'context'"),
    (dict(design__preset=["gc", "transformer"]), "design.preset: 'transformer' is not valid; valid values are "),
    (dict(design__preset="gc"), "design.act: cannot be combined with design.preset: a preset fixes the whole"),
    (dict(positions__stage_sets=[[1]]), "positions.stage_sets: replaces positions.stages and positions.stage_on; "
                                        "give stage_sets alone"),
    (dict(positions__stage_sets=[[1], [9]], positions__stages=None, positions__stage_on=True),
     "positions.stage_sets: 9 is not a stage of resnet18; valid stages are [0, 1, 2, 3]"),
    (dict(positions__stage_sets=[], positions__stages=None, positions__stage_on=True),
     "positions.stage_sets: must be a non-empty list of non-empty stage lists"),
    (dict(training={"seed": [0, 1.5]}), "training.seed: must be integers (a list of seeds)"),
    (dict(design__context=[]), "design.context: empty list of choices; give at least one value from 'avg', 'att'"),
    (dict(design__context=["att", "max"]), "design.context: 'max' is not valid; valid values are 'avg', 'att'"),
    (dict(design__transform="mlp"), "design.transform: 'mlp' is not valid; valid values are 'bottleneck'"),
    (dict(design__fusion=["add", "mul"]), "design.fusion: 'mul' is not valid; valid values are 'add', 'scale', "
                                          "'scale+add'"),
    (dict(design__ratio=[0.25, 2]), "design.ratio: 2 is not in (0, 1]"),
    (dict(design__ratio={"low": 0.5, "high": 0.1}), "design.ratio: range needs low < high"),
    (dict(design__ratio={"low": 0.1}), "design.ratio: a range needs low and high"),
    (dict(design__norm=["layernorm", "groupnorm"]), "design.norm: 'groupnorm' is not valid; valid values are "
                                                    "'layernorm', 'batchnorm', null"),
    (dict(design__share="per_block"), "design.share: 'per_block' is not valid; valid values are 'global', "
                                      "'per_stage'"),
    (dict(design__conditions={"colour": {"transform": ["se"]}}), "design.conditions.colour: condition on unknown key"),
    (dict(design__conditions={"ratio": {"depth": [3]}}), "design.conditions.ratio.depth: refers to unknown key "
                                                         "'depth'"),
    (dict(design__conditions={"ratio": {"transform": ["mlp"]}}),
     "design.conditions.ratio.transform: 'mlp' is not a value of transform; valid values are 'bottleneck'"),
    (dict(positions__stages=[1, 7]), "positions.stages: 7 is not a stage of resnet18; valid stages are "
                                     "[0, 1, 2, 3], 'all' or 'all_but_first'"),
    (dict(positions__stages=[]), "positions.stages: empty list"),
    (dict(positions__position=["after_conv3"]), "positions.position: 'after_conv3' is not valid; valid values are "
                                                "'after_conv1'"),
    (dict(positions__position="after_block"), "positions.position: 'after_block' is not a position of resnet18 "
                                              "(family resnet)"),
    (dict(positions__blocks=["all", "odd"]), "positions.blocks: 'odd' is not valid; valid values are 'all', 'first', "
                                             "'last', 'every_other'"),
    (dict(positions__blocks=[[0, 5]]), "positions.blocks: block 5 does not exist in stage 0 of resnet18"),
    (dict(positions__replace=True), "positions.replace: true needs an attention module to replace, but resnet18 "
                                    "has none"),
    (dict(positions__where="here"), "positions.where: unknown key"),
    (dict(limits={"max_blocks": -1}), "limits.max_blocks: must be a non-negative integer"),
    (dict(limits={"min_blocks": 50}), "limits.min_blocks: 50 is impossible: this space places at most 8 blocks"),
    (dict(positions__stage_on=True, positions__blocks="all", limits={"max_blocks": 3}),
     "limits.max_blocks: 3 is impossible: this space always places at least"),
    (dict(limits={"min_blocks": 3, "max_blocks": 2}), "limits.max_blocks: 2 is below limits.min_blocks=3"),
    (dict(training={"epochs": 3}), "training.epochs: unknown key; valid keys are 'lr'"),
    (dict(name=""), "name: must be a non-empty string"),
]


@pytest.mark.parametrize("patch,message", MALFORMED, ids=[m.split(":")[1].strip() if ":" in m else m
                                                           for _, m in MALFORMED])
def test_malformed_spaces_are_explained(patch, message):
    with pytest.raises(SearchSpaceError) as err:
        _space("gc_full", **patch)
    assert message in str(err.value)
    assert str(err.value).startswith("search_spaces/gc_full.yaml: ")


@pytest.mark.parametrize("backbone", ["resnet_tiny", "resnet18"])
def test_paper_position_compares_three_distinct_places_on_basicblock_backbones(backbone, caplog):
    """gcnas-search +experiment=paper_position on a BasicBlock ResNet (the default backbone, or resnet18): its three
    positions are three places (after_conv2 would be before_add again), so no grid point repeats another's network;
    the grid is the experiment's n_trials."""
    import logging

    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=paper_position", f"backbone={backbone}"])
        four = compose("config", overrides=["+experiment=paper_position", f"backbone={backbone}",
                                            "search_space.positions.position=[after_conv1,after_conv2,before_add,"
                                            "after_add]"])
    name = cfg.backbone.name
    kwargs = {"in_chans": 1, "num_classes": 10}  # fashion_mnist, the default data: 1x28x28, 10 classes
    sites = list_sites(name, input_size=(1, 28, 28), **kwargs)
    with caplog.at_level(logging.WARNING, logger="gcnas.space.readers"):
        space = SearchSpace.from_config(cfg.search_space, backbone=name, sites=sites, backbone_kwargs=kwargs)
    assert caplog.records == []
    assert space.grid()["position"] == ["after_conv1", "before_add", "after_add"]
    assert space.size() == cfg.study.n_trials == 9
    keys = {space.suggest(_Fixed({"position": p})).key() for p in space.grid()["position"]}
    assert len(keys) == 3
    # listing after_conv2 as well searches the same three places, and says so once
    with caplog.at_level(logging.WARNING, logger="gcnas.space.readers"):
        again = SearchSpace.from_config(four.search_space, backbone=name, sites=sites, backbone_kwargs=kwargs)
    assert again.grid()["position"] == ["after_conv1", "before_add", "after_add"] and again.size() == 9
    assert len(caplog.records) == 1 and "'after_conv2', 'before_add' name the site 'before_add'" in caplog.text


class _Fixed:
    """A trial whose every categorical answer is given."""

    def __init__(self, values):
        self.values = values

    def suggest_categorical(self, name, choices):
        return self.values[name]
