"""The one-shot supernet: each candidate computes what a standalone block with the weights it uses computes, the
weights are really shared, and a whole architecture extracted from the supernet is the supernet's network."""
from __future__ import annotations

import itertools

import pytest
import torch

from gcnas.arch import Architecture, BlockSpec, Placement
from gcnas.backbones import list_sites
from gcnas.errors import ConfigError
from gcnas.oneshot import ChoiceBlock, Supernet, check_supernet_designs
from reference import randomize_

C = 32
DESIGNS = [BlockSpec(context=c, transform=t, ratio=r, fusion=f, norm=n)
           for c, t, r, f, n in itertools.product(("att", "avg"), ("bottleneck", "se", "conv"), (1 / 16, 1 / 4),
                                                  (("add",), ("scale",), ("scale", "add")), ("layernorm", None))
           if not (t != "bottleneck" and n is not None) and not (t == "conv" and r != 1 / 4)]


def _choice() -> ChoiceBlock:
    torch.manual_seed(0)
    block = ChoiceBlock(C, DESIGNS)
    randomize_(block)  # trained-looking weights: the zero-initialised last layers would hide slicing errors
    return block.eval()


@pytest.mark.parametrize("spec", DESIGNS, ids=str)
def test_each_candidate_equals_the_standalone_block_with_its_weights(spec):
    block, x = _choice(), torch.randn(3, C, 7, 5)
    block.choose(spec)
    standalone = block.extract(spec).eval()
    assert isinstance(standalone, torch.nn.Module) and standalone.spec()["transform"] == spec.transform
    torch.testing.assert_close(block(x), standalone(x), rtol=1e-5, atol=1e-6)


def test_candidates_share_weights_narrow_widths_are_slices_of_the_wide():
    block = _choice()
    narrow = BlockSpec(ratio=1 / 16)  # the paper's GC: att, bottleneck + LayerNorm, add
    wide = BlockSpec(ratio=1 / 4)
    a, b = block.extract(narrow), block.extract(wide)
    h = C // 16
    assert torch.equal(a.add_transform.fc1.weight, b.add_transform.fc1.weight[:h])
    assert torch.equal(a.add_transform.fc2.weight, b.add_transform.fc2.weight[:, :h])
    assert torch.equal(a.context.conv_mask.weight, block.extract(BlockSpec(transform="conv")).context.conv_mask.weight)
    # se and bottleneck without a norm are one function: one MLP; with LayerNorm another
    assert set(block.mlps) == {"add_ln", "add_plain", "scale_ln", "scale_plain"} and set(block.convs) == {"add", "scale"}
    widest = C // 4
    mlp = C * widest + widest + widest * C + C
    expected = (C + 1) + 2 * mlp + 2 * (mlp + 2 * widest) + 2 * (C * C + C)  # mask, 2 plain, 2 LayerNorm MLPs, 2 convs
    assert sum(p.numel() for p in block.parameters()) == expected
    assert expected < sum(sum(p.numel() for p in d.build(C).parameters()) for d in DESIGNS) / 5  # 4,385 vs 26,437


def test_no_choice_is_the_identity_and_gradients_reach_only_the_chosen_weights():
    block, x = _choice().train(), torch.randn(2, C, 4, 4)
    block.choose(None)
    assert torch.equal(block(x), x)
    block.choose(BlockSpec(context="avg", transform="se", ratio=1 / 4, fusion=("scale",), norm=None))
    block(x).sum().backward()
    touched = {n for n, p in block.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched == {"mlps.scale_plain.fc1.weight", "mlps.scale_plain.fc1.bias", "mlps.scale_plain.fc2.weight",
                       "mlps.scale_plain.fc2.bias"}
    assert block.mlps["scale_plain"].fc1.weight.grad[C // 4:].abs().sum() == 0  # only the first C/4 rows are used


@pytest.mark.parametrize("spec, key", [
    (BlockSpec(kind="nl"), "design.kind"),
    (BlockSpec(norm="batchnorm"), "design.norm"),
    (BlockSpec(act="prelu"), "design.act"),
])
def test_designs_a_supernet_cannot_hold_are_refused_naming_the_key(spec, key):
    with pytest.raises(ConfigError, match=key):
        check_supernet_designs([BlockSpec(), spec])


def test_an_architecture_extracted_from_the_supernet_computes_what_the_supernet_computes():
    kwargs = {"num_classes": 4, "in_chans": 3}
    sites = list_sites("gcnas_resnet_tiny", input_size=(3, 16, 16), **kwargs)
    specs = [BlockSpec(), BlockSpec(context="avg", transform="se", ratio=1 / 4, fusion=("scale", "add"), norm=None)]
    torch.manual_seed(0)
    net = Supernet("gcnas_resnet_tiny", kwargs, sites, specs)
    randomize_(net)
    net.eval()
    assert len(net.choices) == len(sites)
    by_pos = [s for s in sites if s.position == "before_add"]
    arch = Architecture("gcnas_resnet_tiny", kwargs, (
        Placement(by_pos[0].stage, by_pos[0].block, "before_add", specs[1]),
        Placement(by_pos[-1].stage, by_pos[-1].block, "before_add", specs[0])))
    x = torch.randn(2, 3, 16, 16)
    net.set_architecture(arch)
    with torch.no_grad():
        inside = net(x)
        alone = net.extract(arch).eval()(x)
        torch.testing.assert_close(inside, alone, rtol=1e-4, atol=1e-5)
        net.set_architecture(Architecture("gcnas_resnet_tiny", kwargs, ()))
        plain = net(x)
    assert not torch.allclose(plain, inside)  # the chosen blocks really run


def test_set_architecture_refuses_what_the_supernet_does_not_hold():
    kwargs = {"num_classes": 4, "in_chans": 3}
    sites = list_sites("gcnas_resnet_tiny", input_size=(3, 16, 16), **kwargs)
    one = sites[0]
    net = Supernet("gcnas_resnet_tiny", kwargs, sites, [BlockSpec()], site_keys=[one.key])
    with pytest.raises(ConfigError, match="no choice at stage"):
        net.set_architecture(Architecture("gcnas_resnet_tiny", kwargs, (
            Placement(sites[-1].stage, sites[-1].block, sites[-1].position, BlockSpec()),)))
    with pytest.raises(ConfigError, match="not a candidate"):
        net.set_architecture(Architecture("gcnas_resnet_tiny", kwargs, (
            Placement(one.stage, one.block, one.position, BlockSpec(ratio=1 / 4)),)))


# -- training and scoring ------------------------------------------------------------------------------------------
def _space(**overrides):
    import yaml

    from gcnas.space import SearchSpace

    cfg = yaml.safe_load(open("search_spaces/gc_full.yaml"))
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        cfg.setdefault(section, {})[name] = value
    kwargs = {"num_classes": 4, "in_chans": 3}
    sites = list_sites("gcnas_resnet_tiny", input_size=(3, 16, 16), **kwargs)
    return SearchSpace.from_config(cfg, backbone="gcnas_resnet_tiny", sites=sites, backbone_kwargs=kwargs)


def test_the_supernet_of_gc_full_holds_every_design_at_every_site_and_the_sampler_draws_from_the_space():
    from gcnas.oneshot import PathSampler, supernet_for_space

    space = _space()
    net = supernet_for_space(space)
    assert len(net.specs) == 60 and set(net.choices) == {s.key for s in space.sites}  # gc_full: all of it
    sampler, again = PathSampler(space, seed=3), PathSampler(space, seed=3)
    draws = [sampler() for _ in range(20)]
    assert [a.key() for a in draws] == [again().key() for _ in range(20)]  # reproducible by seed
    assert len({a.key() for a in draws}) > 15  # uniform draws of a large space rarely repeat
    for a in draws:
        assert a.placements and all(p.spec in net.specs for p in a.placements)
        net.set_architecture(a)  # every draw is held


def test_fair_sampling_trains_every_design_equally_often_where_uniform_does_not():
    from collections import Counter

    from gcnas.oneshot import PathSampler

    space = _space()
    designs = space.designs()
    fair, uniform = PathSampler(space, seed=0, sampling="fair"), PathSampler(space, seed=0)
    n = 3 * len(designs)  # three rounds
    fair_counts = Counter(fair().placements[0].spec for _ in range(n))  # gc_full: one design shared by every site
    assert set(fair_counts) == set(designs) and set(fair_counts.values()) == {3}
    uniform_counts = Counter(uniform().placements[0].spec for _ in range(20 * len(designs)))
    # uniform parameters: a conv design (no ratio, no norm to draw) comes up 6x as often as each bottleneck design
    assert max(uniform_counts.values()) > 2 * min(uniform_counts.values())
    again = PathSampler(space, seed=0, sampling="fair")
    fair.start_epoch(2), again.start_epoch(2)
    assert [fair().key() for _ in range(10)] == [again().key() for _ in range(10)]  # reproducible by seed and epoch
    with pytest.raises(ConfigError, match="search.supernet_sampling: must be one of uniform, fair; got 'even'"):
        PathSampler(space, sampling="even")


def test_fair_sampling_per_stage_designs_gives_each_stage_its_own_round():
    from collections import Counter

    from gcnas.oneshot import PathSampler

    space = _space(**{"design.share": "per_stage", "design.context": ["att", "avg"], "design.transform": ["conv"],
                      "design.fusion": ["add", "scale"], "positions.stages": [1, 2], "positions.stage_on": [True]})
    designs = space.designs()
    assert len(designs) == 4 and space.design_prefixes() == ["s1", "s2"]
    sampler = PathSampler(space, seed=1, sampling="fair")
    per_stage = {1: Counter(), 2: Counter()}
    for _ in range(2 * len(designs)):
        arch = sampler()
        for st in (1, 2):
            per_stage[st][next(p.spec for p in arch.placements if p.stage == st)] += 1
    assert all(set(c.values()) == {2} and set(c) == set(designs) for c in per_stage.values())


@pytest.mark.parametrize("overrides, key", [
    ({"design.kind": ["gc", "nl"]}, "design.kind"),
    ({"positions.replace": [True, False]}, "positions.replace"),
    ({"training.lr": [0.1, 0.01]}, "training"),
])
def test_a_space_the_supernet_cannot_hold_is_refused_naming_the_key(overrides, key):
    from gcnas.oneshot import supernet_for_space

    with pytest.raises(ConfigError, match=key):
        supernet_for_space(_space(**overrides))


@pytest.mark.parametrize("share", ["site", "stage"])
def test_training_draws_one_path_per_batch_and_scoring_equals_the_extracted_model_recalibrated(share):
    from gcnas.oneshot import PathSampler, recalibrate_batchnorm, score, supernet_for_space, train_supernet
    from gcnas.data import DataSplits, TensorSplit
    from gcnas.train import evaluate

    space = _space(**{"design.context": "att"})
    torch.manual_seed(0)
    net = supernet_for_space(space, share)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 3, 16, 16, generator=g), torch.randint(0, 4, (96,), generator=g)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    val = TensorSplit(x[64:], y[64:])
    data = DataSplits("random", TensorSplit(x[:64], y[:64]), val, None, 4, (3, 16, 16))
    recipe = {"epochs": 2, "batch_size": 16, "lr": 0.05, "weight_decay": 5e-4}
    result, paths = train_supernet(net, PathSampler(space, seed=0), data, recipe, seed=0)
    assert paths == 2 * 4 and len(result.epochs) == 2  # 64 images in batches of 16, two epochs
    changed = {k.rsplit(".", 2)[-2] for k, v in net.state_dict().items()
               if ".gcnas_" in k and "mlps" in k and not torch.equal(v, before[k])}
    assert len(changed) >= 2  # several candidates' shared MLPs were trained, not one path
    arch = PathSampler(space, seed=5)()
    acc = score(net, arch, x[:64], val, batch_size=16)
    assert acc == score(net, arch, x[:64], val, batch_size=16)  # deterministic
    alone = net.extract(arch)
    recalibrate_batchnorm(alone, x[:64], batch_size=16)
    assert evaluate(alone, val)[1] == acc
    with torch.no_grad():  # the same network: the logits agree, not only the accuracy
        torch.testing.assert_close(net.eval()(x[64:]), alone.eval()(x[64:]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("share", ["site", "stage"])
def test_gradient_score_is_the_squared_gradient_of_the_architectures_block_weights(share):
    from gcnas.oneshot import gradient_score, recalibrate_batchnorm

    kwargs = {"num_classes": 4, "in_chans": 3}
    sites = list_sites("gcnas_resnet_tiny", input_size=(3, 16, 16), **kwargs)
    specs = [BlockSpec(), BlockSpec(context="avg", transform="se", ratio=1 / 4, fusion=("scale", "add"), norm=None)]
    torch.manual_seed(0)
    net = Supernet("gcnas_resnet_tiny", kwargs, sites, specs, share=share)
    randomize_(net)
    after = [s for s in sites if s.position == "after_add"]
    twins = [s for s in after if s.stage == after[0].stage][:2]  # two sites of one stage, one design
    other = next(s for s in after if s.stage != after[0].stage)
    assert len(twins) == 2
    arch = Architecture("gcnas_resnet_tiny", kwargs, tuple(
        [Placement(s.stage, s.block, s.position, specs[1]) for s in twins]
        + [Placement(other.stage, other.block, other.position, specs[0])]))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 3, 16, 16, generator=g), torch.randint(0, 4, (48,), generator=g)
    got = gradient_score(net, arch, x, y, batch_size=16)

    # the same quantity by hand on the extracted standalone network: its blocks' gradients, summed per supernet tensor
    alone = net.extract(arch)
    recalibrate_batchnorm(alone, x, batch_size=16)
    alone.eval()
    torch.nn.functional.cross_entropy(alone(x), y).backward()
    modules = dict(alone.named_modules())
    groups: dict = {}
    for s in twins + [other]:
        block = modules[net.module_names[s.key]]
        group = groups.setdefault(s.stage if share == "stage" else s.key, {})
        for name, p in block.named_parameters():
            group[name] = group.get(name, 0) + p.grad
    want = sum(float((g ** 2).sum()) for group in groups.values() for g in group.values())
    assert want > 0
    assert got == pytest.approx(want, rel=1e-4)
    assert gradient_score(net, arch, x, y, batch_size=16) == got  # deterministic
    assert all(p.grad is None for p in net.parameters())  # nothing left behind for a later training step
    plain = Architecture("gcnas_resnet_tiny", kwargs, ())
    assert gradient_score(net, plain, x, y) == 0.0


def _tiny_task():
    from gcnas.data import DataSplits, TensorSplit

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 3, 16, 16, generator=g), torch.randint(0, 4, (96,), generator=g)
    return DataSplits("random", TensorSplit(x[:64], y[:64]), TensorSplit(x[64:], y[64:]), None, 4, (3, 16, 16))


class _Killed(Exception):
    pass


@pytest.mark.parametrize("share", ["site", "stage"])
def test_an_interrupted_supernet_training_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, share):
    """(With ``stage`` the checkpoint holds tensors that several sites share: they must come back shared.)"""
    from gcnas.oneshot import PathSampler, supernet_for_space, train_supernet

    space, data = _space(), _tiny_task()
    recipe = {"epochs": 3, "batch_size": 16, "lr": 0.05, "weight_decay": 5e-4}

    def trained(ckpt_dir, kill_after=None):
        torch.manual_seed(0)
        net = supernet_for_space(space, share)

        def on_epoch(er):
            if er.epoch == kill_after:
                raise _Killed
        try:
            return net, train_supernet(net, PathSampler(space, seed=3), data, recipe, seed=0, ckpt_dir=ckpt_dir,
                                       on_epoch=on_epoch)
        except _Killed:
            return net, None

    whole, (full, paths) = trained(None)
    assert paths == 3 * 4 and len(full.epochs) == 3
    _, killed = trained(tmp_path / "ckpt", kill_after=1)  # dies after epoch 1's checkpoint
    assert killed is None and (tmp_path / "ckpt" / "state.pt").is_file()
    resumed, (result, paths) = trained(tmp_path / "ckpt")
    assert result.resumed_from == 1 and paths == 2 * 4  # only epochs 2 and 3 were trained
    for k, v in whole.state_dict().items():  # the same paths were drawn, so the same weights came out
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=1e-6, msg=k)
    assert [e.val_acc for e in result.epochs] == [e.val_acc for e in full.epochs]
    if share == "stage":  # still one set of weights per stage after loading the checkpoint
        blocks = sorted(resumed.choices.items())
        assert any(a.mlps is b.mlps for (ka, a), (kb, b) in itertools.combinations(blocks, 2))


def test_stage_sharing_trains_one_set_of_weights_for_every_site_of_a_stage():
    from gcnas.oneshot import SHARES, supernet_for_space

    space = _space(**{"design.context": "att"})
    torch.manual_seed(0)
    by_site, by_stage = supernet_for_space(space, "site"), supernet_for_space(space, "stage")
    groups = {(k[0], b.channels) for k, b in by_stage.choices.items()}
    assert 1 < len(groups) < len(by_stage.choices)  # several stages, several sites in some
    for (ka, a), (kb, b) in itertools.combinations(sorted(by_stage.choices.items()), 2):
        same = (ka[0], a.channels) == (kb[0], b.channels)
        assert (a.mlps is b.mlps) == same and (a.mask is b.mask) == same and (a.convs is b.convs) == same
        assert a.mlps is not by_site.choices[ka].mlps and by_site.choices[ka].mlps is not by_site.choices[kb].mlps
    owners: dict = {}
    dropped = sum(sum(p.numel() for p in b.parameters()) for k, b in sorted(by_site.choices.items())
                  if owners.setdefault((k[0], b.channels), k) != k)
    n_site, n_stage = (sum(p.numel() for p in n.parameters()) for n in (by_site, by_stage))
    assert n_site - n_stage == dropped > 0  # every stage keeps one site's weights; parameters() counts each once
    assert by_stage.identity() == {**by_site.identity(), "share": "stage"}  # a checkpoint says how it shares
    assert "share" not in by_site.identity()  # as supernets saved before the key existed
    from gcnas.search.oneshot import _check_identity

    with pytest.raises(ConfigError, match="another share \\('stage', this study needs None\\)"):
        _check_identity("supernet.pt", by_stage.identity(), by_site.identity())  # a key only the checkpoint holds
    # one update through one site trains the weights another site of its stage runs; per site it does not
    spec = BlockSpec(context="att", transform="conv", fusion=("add",))
    for net, shared in ((by_stage, True), (by_site, False)):
        (ka, a), (kb, b) = [(k, c) for k, c in sorted(net.choices.items()) if k[0] == 1][:2]
        net.set_architecture(Architecture(space.backbone, space.backbone_kwargs,
                                          (Placement(ka[0], ka[1], ka[2], spec),)))
        before = b.extract(spec).add_transform.fc.weight.clone()  # zero at first: the mask gets no gradient yet
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        net(torch.randn(4, 3, 16, 16)).square().mean().backward()
        opt.step()
        assert torch.equal(b.extract(spec).add_transform.fc.weight, before) != shared
    with pytest.raises(ConfigError, match="search.supernet_share: must be one of site, stage; got 'block'"):
        supernet_for_space(space, "block")
    assert SHARES == ("site", "stage")


def test_a_killed_workers_supernet_training_is_resumed_by_the_next_and_another_spaces_is_refused(tmp_path, caplog):
    import json
    import logging

    from gcnas.oneshot import PathSampler, supernet_for_space, train_supernet
    from gcnas.search.oneshot import CHECKPOINT, TRAINING_DIR, _recipe, study_supernet

    space, data = _space(), _tiny_task()
    trainer, search = {"batch_size": 16, "lr": 0.05, "epochs": 1}, {"supernet_epochs": 3, "calib_images": 32}
    net = supernet_for_space(space)
    ckpt = tmp_path / TRAINING_DIR
    ckpt.mkdir()  # what a worker killed after epoch 1 leaves behind
    (ckpt / "identity.json").write_text(json.dumps({**net.identity(), "recipe": _recipe(trainer, search, 0, data)}))
    recipe = {**trainer, "epochs": 3}

    def die(er):
        raise _Killed
    with pytest.raises(_Killed):
        train_supernet(net, PathSampler(space, seed=0), data, recipe, seed=0, ckpt_dir=ckpt, on_epoch=die)

    other = supernet_for_space(_space(**{"design.context": "att"}))
    with pytest.raises(ConfigError, match=f"{TRAINING_DIR} holds a supernet of another designs"):
        study_supernet(other, _space(**{"design.context": "att"}), data, trainer, search, 0, tmp_path, "cpu")
    with pytest.raises(ConfigError, match=f"{TRAINING_DIR} holds a supernet of another share \\(None, this study "
                       "needs 'stage'\\)"):
        study_supernet(supernet_for_space(space, "stage"), space, data, trainer, search, 0, tmp_path, "cpu")
    assert (ckpt / "state.pt").is_file() and not (tmp_path / CHECKPOINT).exists()  # nothing lost

    with caplog.at_level(logging.INFO, logger="gcnas.search"):
        study_supernet(supernet_for_space(space), space, data, trainer, search, 0, tmp_path, "cpu")
    assert "resumed after epoch 1 of 3" in caplog.text
    assert (tmp_path / CHECKPOINT).is_file() and not ckpt.exists()  # finished: the training folder is gone


# -- search.method=oneshot -------------------------------------------------------------------------------------------
def test_a_oneshot_search_trains_one_supernet_and_scores_every_trial_on_it(tmp_path, caplog):
    import logging

    import optuna

    from conftest import compose_search
    from gcnas.cli.search import search

    run = ["wandb.mode=disabled", "search.method=oneshot", "search.supernet_epochs=4", "search.calib_images=64",
           "study.name=one", "study.noise_seeds=3", "trainer.epochs=1", "search.supernet_score=accuracy"]
    with caplog.at_level(logging.INFO, logger="gcnas.search"):
        result = search(compose_search(tmp_path, *run, "study.n_trials=4"))
    assert result.n_finished == 4
    checkpoint = tmp_path / "one" / "supernet.pt"
    assert checkpoint.is_file() and "training the study's supernet" in caplog.text
    study = optuna.load_study(study_name="one", storage=f"sqlite:///{tmp_path}/studies.db")
    trials = study.get_trials()
    assert [t.user_attrs.get("score") for t in trials] == ["oneshot"] * 4  # scored, none trained
    assert not any("history" in t.user_attrs or "weights" in t.user_attrs for t in trials)
    roles = [t.user_attrs["role"] for t in trials]
    assert roles[:2] == ["baseline", "paper_gc"] and "searched" in roles  # references once, not noise_seeds times
    assert all(0.5 < t.values[0] <= 1 for t in trials)  # the supernet learned the task (4 classes: chance 0.25)

    mtime = checkpoint.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gcnas.search"):
        search(compose_search(tmp_path, *run, "study.n_trials=6"))  # resumes: loads the supernet, trains none
    assert checkpoint.stat().st_mtime_ns == mtime and "supernet loaded" in caplog.text
    assert len(study.get_trials()) == 6

    # the study records what made it (its space and how its supernet is trained and read): another is refused
    with pytest.raises(ConfigError, match=r"study.name: study 'one' .*\(search_space.digest: "):
        search(compose_search(tmp_path, *run, "study.n_trials=7", "search_space.design.context=[avg]"))
    with pytest.raises(ConfigError, match=r"\(search.supernet_sampling: 'uniform' -> 'fair'\)"):
        search(compose_search(tmp_path, *run, "study.n_trials=7", "search.supernet_sampling=fair"))
    with pytest.raises(ConfigError, match=r"\(search.supernet_share: 'site' -> 'stage'\)"):
        search(compose_search(tmp_path, *run, "study.n_trials=7", "search.supernet_share=stage"))
    assert len(study.get_trials()) == 6


def test_a_gradient_scored_oneshot_study_labels_its_values_and_keeps_one_score(tmp_path):
    import optuna

    from conftest import compose_search
    from gcnas.cli.search import search
    from gcnas.search.summary import results_table
    from wandb_offline import offline_runs

    run = ["search.method=oneshot", "search.supernet_epochs=2", "search.calib_images=64", "study.name=grad",
           "trainer.epochs=1", "search.supernet_score=gradient"]
    result = search(compose_search(tmp_path, *run, "study.n_trials=4", "wandb.mode=offline"))
    assert result.n_finished == 4
    study = optuna.load_study(study_name="grad", storage=f"sqlite:///{tmp_path}/studies.db")
    trials = study.get_trials()
    assert study.user_attrs["oneshot_score"] == "gradient"
    assert [t.user_attrs["oneshot_score"] for t in trials] == ["gradient"] * 4
    plain = next(t for t in trials if t.user_attrs["role"] == "baseline")
    assert plain.values[0] == 0.0  # no block, no block gradient
    assert any(t.values[0] > 0 for t in trials)  # the paper's GC and the searched ones have something to learn
    table = results_table(study, ["accuracy"])
    assert "| one-shot gradient |" in table and "val acc" not in table and " pp " not in table
    runs = {r.name: r for r in offline_runs(tmp_path) if r.job_type == "trial"}
    for t in trials:  # W&B does not call a gradient an accuracy
        assert runs[f"trial-{t.number}"].summary["oneshot_gradient"] == t.values[0]
        assert "val_acc" not in runs[f"trial-{t.number}"].summary

    with pytest.raises(ConfigError, match=r"study.name: study 'grad' .*\(search.supernet_score: 'gradient' -> "
                                          r"'accuracy'\)"):
        search(compose_search(tmp_path, *run[:-1], "search.supernet_score=accuracy", "study.n_trials=6",
                              "wandb.mode=disabled"))
    with pytest.raises(ConfigError, match=r"\(search.method: 'oneshot' -> 'standalone'; "):
        search(compose_search(tmp_path, *[r for r in run if "supernet_score" not in r and "method" not in r],
                              "study.n_trials=6", "wandb.mode=disabled"))
    assert len(study.get_trials()) == 4  # refused before any trial; nothing lost


# -- search.supernet_score=gradient_and_loss -----------------------------------------------------------------------
def test_smooth_percentile_ranks_beyond_the_references_range_and_agrees_with_the_plain_percentile_inside_it():
    import math

    from gcnas.oneshot import smooth_percentile

    reference = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    values = [-3.0, -1.0, 0.5, 3.5, 6.5, 8.0, 10.0]
    got = [smooth_percentile(v, reference) for v in values]
    assert all(0.0 < a < b < 1.0 for a, b in zip(got, got[1:]))  # strictly increasing, where a plain one is flat
    assert smooth_percentile(3.5, reference) == pytest.approx(0.5)  # the middle, by symmetry
    assert smooth_percentile(6.5, reference) == pytest.approx(7 / 8, abs=0.06)  # near the plain share below it
    assert smooth_percentile(-math.inf, reference) == 0.0  # the plain backbone's log-gradient: below every block
    # a reference's -inf (its plain backbone) lies below every finite value, and leaves the bandwidth alone
    assert smooth_percentile(0.0, [-math.inf, 0.0, 1.0, 2.0]) == pytest.approx(
        (1 + 3 * smooth_percentile(0.0, [0.0, 1.0, 2.0])) / 4)
    assert smooth_percentile(2.0, [2.0, 2.0]) == 0.5 and smooth_percentile(3.0, [2.0, 2.0]) == 1.0  # no spread
    with pytest.raises(ValueError, match="empty reference"):
        smooth_percentile(1.0, [])


def test_a_score_reference_places_an_architecture_by_its_gradient_and_loss_and_the_draws_are_fixed():
    from gcnas.oneshot import (ScoreReference, gradient_and_loss, gradient_and_loss_score, gradient_score,
                               reference_architectures, score_with_loss, supernet_for_space)

    space = _space()
    draws = reference_architectures(space, 6)
    assert len({a.key() for a in draws}) == 6
    assert [a.key() for a in reference_architectures(space, 6)] == [a.key() for a in draws]  # every worker's
    small = _space(**{"design.context": ["avg"], "design.transform": ["conv"], "design.fusion": ["add"],
                      "design.norm": [None], "positions.blocks": ["last"], "positions.position": ["after_add"]})
    assert 1 <= len(reference_architectures(small, 32)) < 32  # a small space gives what it holds

    torch.manual_seed(0)
    net = supernet_for_space(space)
    randomize_(net)
    data = _tiny_task()
    x, y = data.train.head(64)
    ref = ScoreReference.measure(net, draws, x, y, data.val, batch_size=32)
    assert ref.calib_images == 64 and len(ref.gradients) == len(ref.losses) == 6
    assert ScoreReference.from_dict(ref.to_dict()) == ref
    arch = draws[2]
    alone = gradient_score(net, arch, x, y, 32), score_with_loss(net, arch, x, data.val, 32)[1]
    assert gradient_and_loss(net, arch, x, y, data.val, 32) == pytest.approx(alone, rel=1e-6)  # one recalibration
    want = ref.place(*alone)
    assert gradient_and_loss_score(net, arch, x, y, data.val, ref, batch_size=32) == pytest.approx(want)
    assert 0 < want < 2
    own = [ref.place(g, loss) for g, loss in zip(ref.gradients, ref.losses)]
    best = ref.place(max(ref.gradients) * 10, min(ref.losses) - 1)  # beyond the reference on both readings
    worst = ref.place(0.0, max(ref.losses) + 1)
    assert max(own) < best < 2 and 0 <= worst < min(own)
    assert ref.place(max(ref.gradients) * 5, min(ref.losses) - 1) < best  # no tie past the reference's best


def test_a_gradient_and_loss_study_measures_one_reference_and_refuses_other_calibration_images(tmp_path, caplog):
    import json
    import logging

    import optuna

    from conftest import compose_search
    from gcnas.cli.search import search
    from gcnas.search.summary import results_table
    from wandb_offline import offline_runs

    run = ["search.method=oneshot", "search.supernet_epochs=1", "search.calib_images=64", "study.name=gl",
           "trainer.epochs=1"]  # search.supernet_score=gradient_and_loss: the default
    (tmp_path / "gl").mkdir()
    stale = tmp_path / "gl" / "supernet-reference.json"  # of a supernet this study's training replaces
    stale.write_text(json.dumps({"gradients": [1.0], "losses": [1.0], "calib_images": 64}))
    with caplog.at_level(logging.INFO, logger="gcnas.search"):
        assert search(compose_search(tmp_path, *run, "study.n_trials=4", "wandb.mode=offline")).n_finished == 4
    assert "score reference: 32 architectures measured" in caplog.text
    saved = json.loads(stale.read_text())
    assert len(saved["gradients"]) == len(saved["losses"]) == 32 and saved["calib_images"] == 64
    study = optuna.load_study(study_name="gl", storage=f"sqlite:///{tmp_path}/studies.db")
    trials = study.get_trials()
    assert [t.user_attrs["oneshot_score"] for t in trials] == ["gradient_and_loss"] * 4
    assert all(0 < t.values[0] < 2 for t in trials) and len({t.values[0] for t in trials}) > 1
    assert "| one-shot gradient_and_loss |" in results_table(study, ["accuracy"])
    runs = {r.name: r for r in offline_runs(tmp_path) if r.job_type == "trial"}
    assert all(runs[f"trial-{t.number}"].summary["oneshot_gradient_and_loss"] == t.values[0] for t in trials)

    mtime = stale.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gcnas.search"):
        search(compose_search(tmp_path, *run, "study.n_trials=5", "wandb.mode=disabled"))
    assert stale.stat().st_mtime_ns == mtime and "score reference" not in caplog.text  # read, not measured again
    with pytest.raises(ConfigError, match=r"study.name: study 'gl' .*\(search.calib_images: 64 -> 32\)"):
        search(compose_search(tmp_path, *run, "search.calib_images=32", "study.n_trials=6", "wandb.mode=disabled"))
    assert len(study.get_trials()) == 5  # refused before any trial; nothing lost
