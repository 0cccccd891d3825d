"""gcnas-analyze and the paper's ablation recipes: the NL statistics, the figure, the comparison, the grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from PIL import Image

from conftest import FAST_SEARCH
from gcnas.analysis import nl_statistics, pairwise_cosine_distance, recipe_rows, recipe_table
from gcnas.arch import Architecture, build_model
from gcnas.backbones import list_sites
from gcnas.blocks import NonLocalBlock
from gcnas.cli.analyze import analyze
from gcnas.cli.search import search
from gcnas.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (ROOT / "search_spaces").glob("paper_*.yaml"))


def test_pairwise_cosine_distance_against_a_loop():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 7, 5, generator=g)
    ref = np.mean([np.mean([1 - float(torch.nn.functional.cosine_similarity(v[b, i], v[b, j], dim=0))
                            for i in range(7) for j in range(7) if i != j]) for b in range(3)])
    assert abs(float(pairwise_cosine_distance(v)) - ref) < 1e-6
    same = torch.ones(2, 6, 4)
    assert abs(float(pairwise_cosine_distance(same))) < 1e-12
    zeros = torch.zeros(1, 5, 3)
    assert torch.isnan(pairwise_cosine_distance(zeros))
    partly = torch.cat([torch.eye(3)[None], torch.zeros(1, 2, 3)], dim=1)  # zero vectors have no direction
    assert abs(float(pairwise_cosine_distance(partly)) - 1.0) < 1e-12
    eye = torch.eye(4)[None]
    assert abs(float(pairwise_cosine_distance(eye)) - 1.0) < 1e-12


def test_query_independent_attention_gives_zero_distances():
    """With theta = 0 every query sees the same (uniform) map: output and attention distances vanish, input does not."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), NonLocalBlock(8))
    x = torch.randn(4, 3, 6, 6)
    (random,) = nl_statistics(model, x)
    nl = model[1]
    torch.nn.init.zeros_(nl.theta.weight)
    torch.nn.init.zeros_(nl.theta.bias)
    (flat,) = nl_statistics(model, x)
    assert flat.positions == 36 and flat.input == pytest.approx(random.input)
    assert flat.attention < 1e-9 and flat.output < 1e-9
    assert random.attention > 1e-3 and random.input > 0.1


def _analyze_cfg(tmp_path, *overrides):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("analyze", overrides=[f"paths.root={tmp_path}", "data=synthetic", "data.size=384",
                                             "data.val_size=64", "trainer.epochs=1", "trainer.batch_size=32",
                                             "analysis.samples=32", "threads=1", *overrides])


def test_analysis_trains_designs_side_by_side_and_measures_nl(tmp_path):
    res = analyze(_analyze_cfg(tmp_path, "designs=[nl,gc,none]", "seeds=[0,1]", "placement.stages=[1,2]"))
    assert [(r["design"], r["seed"]) for r in res.runs] == [("nl", 0), ("gc", 0), ("none", 0), ("nl", 1), ("gc", 1),
                                                             ("none", 1)]
    by = {r["design"]: r for r in res.runs}
    assert by["nl"]["params"] > by["gc"]["params"] > by["none"]["params"]
    assert by["nl"]["flops"] > by["gc"]["flops"] > by["none"]["flops"]
    blocks = {s["block"] for s in res.stats}
    assert len(blocks) == 4  # 2 blocks in each of stages 1-2 of the tiny ResNet
    assert sorted({(s["seed"], s["state"]) for s in res.stats}) == [(0, "init"), (0, "trained"), (1, "init"),
                                                                      (1, "trained")]
    for s in res.stats:
        assert 0.0 <= s["attention"] <= 1.0 and 0.0 <= s["input"] <= 2.0
    for name in ("analysis.md", "nl_statistics.csv", "comparison.csv", "attention.png", "attention_init.png"):
        assert (tmp_path / "analysis" / name).is_file(), name
    img = np.asarray(Image.open(tmp_path / "analysis" / "attention.png").convert("L"), dtype=float)
    assert img.std() > 10
    assert "| nl | 2 |" in res.comparison_table and "init" in res.stats_table and "trained" in res.stats_table


def test_analysis_of_an_exported_model(tmp_path):
    from safetensors.torch import save_model

    arch = Architecture.from_dict({"backbone": "gcnas_resnet_tiny", "backbone_kwargs": {"in_chans": 1,
                                   "num_classes": 4}, "placements": [{"stages": [2], "blocks": "all",
                                   "position": "before_add", "spec": {"kind": "nl"}}]})
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "architecture.yaml").write_text(arch.to_yaml())
    torch.manual_seed(5)
    save_model(build_model(arch), str(folder / "model.safetensors"))
    res = analyze(_analyze_cfg(tmp_path, f"model={folder}", "seeds=[0]"))
    assert res.runs == [] and {s["state"] for s in res.stats} == {"init", "trained"}
    assert len({s["block"] for s in res.stats}) == 2 and res.figure.is_file()


@pytest.mark.parametrize("overrides,message", [
    (["designs=[nl,transformer]"], "designs: 'transformer' is not a design; valid designs are nl, snl, gc, se, none"),
    (["seeds=[]"], "seeds: must be a non-empty list of integers"),
    (["analysis.samples=1"], "analysis.samples: must be an integer >= 2"),
])
def test_analysis_bad_input(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        analyze(_analyze_cfg(tmp_path, *overrides))


@pytest.mark.parametrize("recipe", RECIPES)
def test_each_recipe_is_a_grid_of_its_experiment_size(recipe):
    """The experiment's study.n_trials is exactly the recipe's grid (points x seeds), and every point is reachable."""
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={recipe}"])
    space_cfg = yaml.safe_load((ROOT / "search_spaces" / f"{recipe}.yaml").read_text())
    sites = list_sites("gcnas_resnet_tiny", input_size=(1, 28, 28), in_chans=1, num_classes=10)
    space = SearchSpace.from_config(space_cfg, backbone="gcnas_resnet_tiny", sites=sites,
                                    backbone_kwargs={"in_chans": 1, "num_classes": 10})
    assert cfg.sampler._target_.endswith("GridSampler") and cfg.pruner._target_.endswith("NopPruner")
    assert space.size() == cfg.study.n_trials
    assert cfg.search_space.name == recipe and not cfg.study.enqueue_baselines
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space.grid(), seed=0))
    keys = set()
    for _ in range(space.size()):
        trial = study.ask()
        arch = space.suggest(trial)
        keys.add((arch.key(), space.suggest_training(trial)["seed"]))
        try:
            study.tell(trial, 0.0)
        except RuntimeError as e:  # GridSampler stops the study after its last point (the worker allows for it)
            assert "Study.stop" in str(e) and len(keys) == space.size()
    assert len(keys) == space.size()  # every grid point a different (architecture, seed)


def test_design_recipe_has_the_five_members():
    sites = list_sites("gcnas_resnet_tiny", input_size=(1, 28, 28), in_chans=1, num_classes=10)
    space_cfg = yaml.safe_load((ROOT / "search_spaces" / "paper_design.yaml").read_text())
    space = SearchSpace.from_config(space_cfg, backbone="gcnas_resnet_tiny", sites=sites)
    kinds = {}
    for preset in ("nl", "snl", "gc", "se", "none"):
        trial = optuna.trial.FixedTrial({"design.preset": preset, "train.seed": 0})
        arch = space.suggest(trial)
        kinds[preset] = {(p.spec.kind, p.spec.context, p.spec.transform, p.spec.fusion) for p in arch.placements}
    assert kinds["none"] == set()
    assert len(kinds["nl"]) == 1 and next(iter(kinds["nl"]))[0] == "nl"
    assert kinds["gc"] == {("gc", "att", "bottleneck", ("add",))}
    assert kinds["se"] == {("gc", "avg", "se", ("scale",))}
    assert kinds["snl"] == {("gc", "att", "conv", ("add",))}


@pytest.mark.slow
def test_a_recipe_runs_as_one_command_and_tabulates_over_seeds(tmp_path):
    result = search(compose_recipe(tmp_path, "paper_position"))
    assert result.n_finished == 9
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    rows = recipe_rows(study)
    assert sorted(r["label"] for r in rows) == ["position=after_add", "position=after_conv1", "position=before_add"]
    assert all(r["seeds"] == [0, 1, 2] for r in rows)
    table = recipe_table(study, reference="position=before_add")
    assert "vs position=before_add" in table and "+0.00 pp" in table


def compose_recipe(root, recipe, *overrides):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("config", overrides=[f"+experiment={recipe}", f"paths.root={root}", *FAST_SEARCH,
                                            "trainer.epochs=1", "data.size=256", "wandb.mode=disabled", *overrides])
