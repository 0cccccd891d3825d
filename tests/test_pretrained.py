"""Pretrained backbones: weights loaded by timm (``backbone.pretrained`` / ``backbone.pretrained_file``), blocks
inserted into them, and every bad input caught before training. No hub is reachable here: the weights are ones these
tests train or write."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest
import timm
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import save_file

from gcnas import Architecture, BlockSpec, Placement, build_model, list_sites
from gcnas.arch import PretrainedScaleWarning
from gcnas.backbones import BackboneWeights
from gcnas.data import DataSplits, TensorSplit
from gcnas.errors import ConfigError
from gcnas.train import evaluate, fit

FAMILIES = ["gcnas_resnet_tiny", "resnet18", "convnext_atto", "efficientnet_b0", "mobilenetv3_small_100"]


def _perturbed(name: str, **kwargs) -> torch.nn.Module:
    """A backbone whose weights and norm statistics are far from timm's init: a stand-in for trained weights."""
    torch.manual_seed(1)
    model = timm.create_model(name, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for n, b in model.named_buffers():
            if n.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif n.endswith("running_mean"):
                b.normal_(0.0, 0.2)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_blocks_inserted_into_pretrained_weights_keep_the_logits(name, tmp_path):
    """For every position the family offers, GC blocks (add fusion) at every site of that position: the model
    computes what the pretrained backbone computes, within 1e-5, in eval mode."""
    kw = {"num_classes": 7}
    plain = _perturbed(name, **kw)
    path = tmp_path / "backbone.safetensors"
    save_file(plain.state_dict(), str(path))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = plain(x)
    sites = list_sites(name, **kw)
    positions = sorted({s.position for s in sites})
    assert positions
    for position in positions:
        placements = tuple(Placement(s.stage, s.block, s.position, BlockSpec(ratio=0.25)) for s in sites
                           if s.position == position)
        model = build_model(Architecture(name, kw, placements), pretrained_file=path).eval()
        assert model.gcnas_weights == BackboneWeights(False, str(path))
        with torch.no_grad():
            got = model(x)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5, msg=lambda m, p=position: f"{name} {p}: {m}")


def _task(n: int = 600):
    """A learnable 4-class task on 1 x 16 x 16 images (which quadrant is bright); classes 0-1 and 2-3 as two halves."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.3
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, :, r * 8:(r + 1) * 8, col * 8:(col + 1) * 8] += 1.0
    return x, y


def test_trained_weights_load_through_timm_with_a_new_head(tmp_path):
    """Weights a run trained (4 classes) start a 2-class model: timm resets the head, keeps the body, and the
    body's features make the new task easy; 3 input channels adapt the stem."""
    x, y = _task()
    data = DataSplits("quadrants", TensorSplit(x[:480], y[:480]), TensorSplit(x[480:], y[480:]), None, 4, (1, 16, 16))
    torch.manual_seed(0)
    trained = timm.create_model("gcnas_resnet_tiny", num_classes=4, in_chans=1)
    fit(trained, data, {"epochs": 3, "batch_size": 32, "lr": 0.05}, test=False)
    path = tmp_path / "tiny.safetensors"
    save_file(trained.state_dict(), str(path))

    same = build_model(Architecture("gcnas_resnet_tiny", {"num_classes": 4, "in_chans": 1}, ()), pretrained_file=path)
    assert evaluate(same, data.val)[1] == evaluate(trained, data.val)[1]  # the whole model, head included
    other = build_model(Architecture("gcnas_resnet_tiny", {"num_classes": 2, "in_chans": 1}, ()), pretrained_file=path)
    assert other.fc.weight.shape == (2, 128)
    assert torch.equal(other.layer3[1].conv2.weight, trained.layer3[1].conv2.weight)
    rgb = build_model(Architecture("gcnas_resnet_tiny", {"num_classes": 4, "in_chans": 3}, ()), pretrained_file=path)
    assert rgb.conv1.weight.shape[1] == 3  # timm's adapt_input_conv
    torch.testing.assert_close(rgb.conv1.weight.sum(1), trained.conv1.weight[:, 0] * 1.0, rtol=1e-5, atol=1e-6)


def test_scale_fusion_from_scratch_does_not_warn():
    arch = Architecture("resnet18", {"num_classes": 3}, (Placement(2, 0, "before_add", BlockSpec(fusion=("scale",))),))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PretrainedScaleWarning)
        build_model(arch)  # random init: nothing to keep, no warning


def test_scale_fusion_warning_names_the_blocks(tmp_path):
    plain = timm.create_model("resnet18", num_classes=3)
    path = tmp_path / "r18.safetensors"
    save_file(plain.state_dict(), str(path))
    arch = Architecture("resnet18", {"num_classes": 3}, (Placement(2, 0, "before_add", BlockSpec(fusion=("scale",))),
                                                         Placement(3, 1, "before_add", BlockSpec())))
    with pytest.warns(PretrainedScaleWarning, match=r"1 block\(s\) with scale fusion \(2\.0\.before_add\)"):
        build_model(arch, pretrained_file=path)


class NotATensor:
    """An object a checkpoint may pickle and torch.load(weights_only=True) refuses."""


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": NotATensor()}, pickled)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint" * 4)
    truncated = tmp_path / "truncated.pth"
    torch.save(timm.create_model("resnet18").state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    other = tmp_path / "resnet34.safetensors"
    save_file(timm.create_model("resnet34").state_dict(), str(other))
    return {
        "missing": (tmp_path / "absent.safetensors", "absent.safetensors does not exist"),
        "pickle": (pickled, "refuses to unpickle .*NotATensor.*save the weights alone"),
        "junk": (junk, "is not a readable checkpoint"),
        "truncated": (truncated, "is not a readable checkpoint"),
        "other architecture": (other, r"weights of another architecture than resnet18 \(unexpected keys \["),
    }


def test_bad_pretrained_files_fail_with_one_line_naming_the_key(tmp_path):
    arch = Architecture("resnet18", {"num_classes": 3}, ())
    for what, (path, message) in _bad_files(tmp_path).items():
        with pytest.raises(ConfigError, match="backbone.pretrained_file: .*" + message):
            build_model(arch, pretrained_file=path)
    narrow = tmp_path / "narrow.safetensors"
    save_file(timm.create_model("resnet18", num_classes=3, channels=(64, 128, 256, 256)).state_dict(), str(narrow))
    with pytest.raises(ConfigError, match=r"other shapes \['layer4.0.conv1.weight: file \(256, 256, 3, 3\) vs model "
                                          r"\(512, 256, 3, 3\)'"):
        build_model(arch, pretrained_file=narrow)


def test_pretrained_true_without_weights_or_network(tmp_path):
    with pytest.raises(ConfigError, match="timm has no pretrained weights for gcnas_resnet_tiny; use "
                                          "backbone.pretrained_file"):
        build_model(Architecture("gcnas_resnet_tiny", {}, ()), pretrained=True)
    code = ("from gcnas import Architecture, build_model\n"
            "build_model(Architecture('resnet18', {}, ()), pretrained=True)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "th")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("gcnas.errors.ConfigError: backbone.pretrained=true: timm could not get the weights of "
                           "resnet18"), last
    assert "backbone.pretrained_file=PATH" in last


def test_backbone_weights_config_is_checked():
    assert BackboneWeights.from_config({"pretrained": False, "pretrained_file": None}) == BackboneWeights()
    with pytest.raises(ConfigError, match="backbone.pretrained must be true or false; got 'yes'"):
        BackboneWeights.from_config({"pretrained": "yes"})
    with pytest.raises(ConfigError, match="backbone.pretrained_file must be a path or null; got 3"):
        BackboneWeights.from_config({"pretrained_file": 3})


FAST = ["data=synthetic", "wandb.mode=disabled", "trainer.epochs=1", "trainer.batch_size=32", "progress=none",
        "data.size=256", "data.val_size=64", "study.noise_seeds=1", "threads=1"]


def _tiny_checkpoint(tmp_path: Path, num_classes: int = 10) -> Path:
    """The synthetic task's backbone (1 channel), with weights far from init, saved as a run would save it."""
    path = tmp_path / "tiny.safetensors"
    save_file(_perturbed("gcnas_resnet_tiny", num_classes=num_classes, in_chans=1).state_dict(), str(path))
    return path


def test_search_trials_start_from_the_file_and_a_bad_file_stops_before_the_study(tmp_path):
    from gcnas.cli.search import search

    path = _tiny_checkpoint(tmp_path)
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        bad = compose("config", overrides=[f"paths.root={tmp_path}", *FAST, "study.n_trials=2",
                                           f"backbone.pretrained_file={tmp_path / 'absent.pt'}"])
        good = compose("config", overrides=[f"paths.root={tmp_path}", *FAST, "study.n_trials=2", "trainer=finetune",
                                            "trainer.epochs=1", "trainer.batch_size=32",
                                            f"backbone.pretrained_file={path}"])
    with pytest.raises(ConfigError, match="backbone.pretrained_file: .*absent.pt does not exist"):
        search(bad)
    assert not (tmp_path / "studies.db").exists()  # nothing created, nothing trained
    result = search(good)
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    assert study.user_attrs["config"]["backbone"]["pretrained_file"] == str(path)
    plain = study.trials[0]
    assert plain.user_attrs["role"] == "baseline" and plain.state == optuna.trial.TrialState.COMPLETE
    # trainer=finetune's first epoch (here the only one) trains the head and blocks alone: the body is the file's
    from safetensors.torch import load_file

    trained = load_file(tmp_path / result.study_name / plain.user_attrs["weights"])  # relative to the study folder
    torch.manual_seed(0)  # the trial's own seed: what it would have started from without the file
    scratch = timm.create_model("gcnas_resnet_tiny", num_classes=4, in_chans=1).state_dict()
    k = "layer1.0.conv1.weight"
    assert trained["fc.weight"].shape == (4, 128)  # the file's 10-class head was reset by timm
    assert torch.equal(trained[k], load_file(str(path))[k]) and not torch.equal(trained[k], scratch[k])
    assert study.user_attrs["config"]["trainer"]["block_lr_mult"] == 10.0


def test_a_oneshot_supernet_starts_from_the_file_and_refuses_a_supernet_of_other_weights(tmp_path):
    from gcnas.backbones.weights import file_sha256
    from gcnas.cli.search import search
    from safetensors.torch import load_file

    path = _tiny_checkpoint(tmp_path)
    run = [f"paths.root={tmp_path}", *FAST, "search.method=oneshot", "search.supernet_epochs=1",
           "search.calib_images=32", "trainer=finetune", "trainer.epochs=1", "trainer.batch_size=32",
           "study.name=shot"]
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        pretrained = compose("config", overrides=[*run, "study.n_trials=3", f"backbone.pretrained_file={path}"])
        scratch = compose("config", overrides=[*run, "study.n_trials=4"])
    assert search(pretrained).n_finished == 3
    saved = torch.load(tmp_path / "shot" / "supernet.pt", weights_only=True)
    assert saved["identity"]["weights"] == f"file sha256 {file_sha256(path)}"
    net, file = saved["state_dict"], load_file(str(path))
    # trainer=finetune's first epoch (here the only one) trains the candidates and the head alone: the body, its
    # BatchNorm statistics included, is still the file's, and the blocks trained from their start
    for k in ("layer1.0.conv1.weight", "layer2.1.bn2.running_mean", "conv1.weight"):
        assert torch.equal(net[f"model.{k}"], file[k]), k
    assert net["model.fc.weight"].shape == (4, 128)  # the file's 10-class head was reset by timm, then trained
    blocks = [k for k in net if ".gcnas_" in k and k.endswith("weight")]
    assert blocks and any(net[k].abs().sum() > 0 for k in blocks if "add" in k)  # add starts at 0: it trained
    with pytest.raises(ConfigError, match=r"\(backbone.weights: 'file sha256 [0-9a-f]+' -> 'random'\)"):
        search(scratch)  # the study's supernet started from the file; a run without it is refused, nothing lost
    assert (tmp_path / "shot" / "supernet.pt").is_file()


def test_gcnas_train_fine_tunes_the_file_for_both_models(tmp_path):
    from gcnas.cli.train import train

    path = _tiny_checkpoint(tmp_path, num_classes=4)
    arch = tmp_path / "architecture.yaml"
    arch.write_text("backbone: gcnas_resnet_tiny\nbackbone_kwargs: {num_classes: 4}\nplacements:\n"
                    "  - {stages: [2, 3], blocks: all, position: before_add, spec: gc_r4}\n")
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root={tmp_path}", f"arch={arch}", "data=synthetic", "data.size=256",
                                          "data.val_size=64", "trainer.epochs=1", "trainer.batch_size=32",
                                          "trainer.warmup_epochs=0", "wandb.mode=disabled", "baseline=true", "threads=1",
                                          f"backbone.pretrained_file={path}"])
    report = train(cfg)
    assert f"backbone from local file {path}" in report.description
    assert [r["model"] for r in report.rows] == ["gcnas", "plain"]


def _quadrants():
    x, y = _task(256)
    return DataSplits("quadrants", TensorSplit(x, y), TensorSplit(x[:64], y[:64]), None, 4, (1, 16, 16))


def _gc_tiny():
    torch.manual_seed(0)
    arch = Architecture.from_dict({"backbone": "gcnas_resnet_tiny", "backbone_kwargs": {"num_classes": 4, "in_chans": 1},
                                   "placements": [{"stages": [2, 3], "blocks": "all", "position": "before_add",
                                                   "spec": "gc_r4"}]})
    return build_model(arch)


def test_finetune_freezes_the_backbone_first_then_trains_everything():
    model, data = _gc_tiny(), _quadrants()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    states = []
    fit(model, data, {"epochs": 2, "batch_size": 32, "lr": 0.01, "block_lr_mult": 10.0, "freeze_backbone_epochs": 1},
        test=False, on_epoch=lambda e: states.append({k: v.clone() for k, v in model.state_dict().items()}))
    first, second = states
    for k in ("layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.running_mean"):  # frozen, stats too
        assert torch.equal(first[k], start[k]), k
    assert not torch.equal(first["fc.weight"], start["fc.weight"])
    assert any(not torch.equal(first[k], start[k]) for k in start if ".gcnas_" in k)
    assert not torch.equal(second["layer1.0.conv1.weight"], first["layer1.0.conv1.weight"])  # then unfrozen
    assert all(p.requires_grad for p in model.parameters())


def test_finetune_learning_rates_follow_block_lr_mult_and_layer_decay():
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    from gcnas.train.config import TrainerConfig
    from gcnas.train.loop import FineTune

    model = _gc_tiny()
    block = next(p for n, p in model.named_parameters() if ".gcnas_" in n and n.endswith("fc1.weight"))
    for ld in (None, 0.5):
        tc = TrainerConfig.from_mapping({"epochs": 2, "batch_size": 32, "lr": 0.01, "block_lr_mult": 10.0,
                                         "layer_decay": ld})
        opt = create_optimizer_v2(FineTune(model, tc).param_groups(), opt="sgd", lr=0.01, momentum=0.9)
        create_scheduler_v2(opt, sched="cosine", num_epochs=2, updates_per_epoch=1)
        lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        assert lr[id(model.fc.weight)] == pytest.approx(0.1) and lr[id(block)] == pytest.approx(0.1)
        if ld is None:
            assert lr[id(model.conv1.weight)] == pytest.approx(0.01)
        else:  # the stem is the deepest layer down: several halvings below the last layer
            assert lr[id(model.conv1.weight)] < lr[id(model.layer4[1].conv2.weight)] <= 0.01


def test_freeze_bn_keeps_the_backbone_statistics():
    model, data = _gc_tiny(), _quadrants()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, data, {"epochs": 2, "batch_size": 32, "lr": 0.01, "freeze_bn": True}, test=False)
    after = model.state_dict()
    assert torch.equal(after["layer2.1.bn2.running_var"], start["layer2.1.bn2.running_var"])
    assert not torch.equal(after["layer2.1.conv2.weight"], start["layer2.1.conv2.weight"])


def test_finetune_keys_are_checked():
    from gcnas.train.config import TrainerConfig

    base = {"epochs": 1, "batch_size": 8, "lr": 0.1}
    for key, value, message in (("block_lr_mult", 0, "must be a number > 0"),
                                ("freeze_backbone_epochs", -1, "must be an integer >= 0"),
                                ("layer_decay", 1.5, r"must be a number in \(0, 1\]"),
                                ("freeze_bn", "maybe", "must be true or false")):
        with pytest.raises(ConfigError, match=f"trainer.{key}: {message}"):
            TrainerConfig.from_mapping({**base, key: value})
    with pytest.raises(ConfigError, match="trainer.freeze_backbone_epochs: this model has no new parameters"):
        fit(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 4)), _quadrants(),
            {**base, "freeze_backbone_epochs": 1}, test=False)


def test_a_checkpoint_from_before_the_finetune_keys_still_resumes(tmp_path):
    import json

    model, data = _gc_tiny(), _quadrants()
    recipe = {"epochs": 2, "batch_size": 32, "lr": 0.01}
    fit(model, data, {**recipe, "epochs": 1}, test=False, ckpt_dir=tmp_path)  # noqa: F841
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    trainer = json.loads(state["trainer"])
    for k in ("block_lr_mult", "freeze_backbone_epochs", "freeze_bn", "layer_decay"):
        del trainer[k]  # as written before these keys existed
    trainer["epochs"] = 2
    state["trainer"] = json.dumps(trainer, sort_keys=True)
    torch.save(state, tmp_path / "state.pt")
    res = fit(_gc_tiny(), data, recipe, test=False, ckpt_dir=tmp_path)
    assert res.resumed_from == 1 and len(res.epochs) == 2


def test_data_classes_keep_a_relabelled_subset():
    from gcnas.data import load_data

    cfg = {"name": "synthetic", "size": 512, "num_classes": 4, "in_chans": 1, "image_size": 16, "val_size": 64,
           "seed": 0}
    full, half = load_data(cfg), load_data({**cfg, "classes": [3, 1]})
    assert half.num_classes == 2 and half.classes == ("class_3", "class_1")
    assert set(half.train.y.tolist()) == {0, 1}
    assert len(half.train) + len(half.val) < len(full.train) + len(full.val)
    with pytest.raises(ConfigError, match=r"data.classes: must be a list of at least 2 distinct class indices in "
                                          r"\[0, 3\] or null"):
        load_data({**cfg, "classes": [1, 7]})


def test_a_pretrain_section_makes_the_file_once_and_the_search_fine_tunes_it(tmp_path):
    """+experiment=transfer's mechanism on the synthetic task: classes 0-1 pretrain the backbone (once), the search
    fine-tunes it on classes 2-3."""
    from gcnas.cli.search import search

    file = tmp_path / "pretrained" / "tiny-synthetic-01.safetensors"
    overrides = [f"paths.root={tmp_path}", *FAST, "study.n_trials=2", "trainer=finetune", "trainer.epochs=1",
                 "trainer.batch_size=32", "data.classes=[2,3]", f"backbone.pretrained_file={file}",
                 "pretrain={seed:0,data:{classes:[0,1]},trainer:{epochs:2,batch_size:32,lr:0.05}}"]
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    search(cfg)
    record = __import__("json").loads(file.with_suffix(".json").read_text())
    assert file.is_file() and record["classes"] == ["class_0", "class_1"] and record["trainer"]["epochs"] == 2
    made = file.stat().st_mtime_ns
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        again = compose("config", overrides=[*overrides, "study.n_trials=3"])
    search(again)
    assert file.stat().st_mtime_ns == made  # reused, not trained again


def test_transfer_experiment_composes():
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=transfer", "paths.root=/tmp/x"])
    assert cfg.trainer.name == "finetune" and list(cfg.data.classes) == [5, 6, 7, 8, 9]
    assert list(cfg.pretrain.data.classes) == [0, 1, 2, 3, 4]
    assert cfg.backbone.pretrained_file == "/tmp/x/pretrained/gcnas_resnet_tiny-fashion_mnist-classes0-4.safetensors"


@pytest.mark.parametrize("frozen", [0, 1])
def test_no_trial_is_pruned_while_its_backbone_is_frozen(tmp_path, frozen):
    import optuna

    from conftest import compose_search
    from gcnas.cli.search import search

    # a pruner that prunes every trial it is asked about, from the first epoch on
    prune_all = ["pruner=none", "pruner._target_=optuna.pruners.ThresholdPruner", "+pruner.lower=1.1"]
    search(compose_search(tmp_path, "wandb.mode=disabled", "study.name=frozen", "study.n_trials=4", "sampler=random",
                          "search_space.limits.min_blocks=1", "trainer=finetune", "trainer.epochs=3",
                          "trainer.batch_size=32", f"trainer.freeze_backbone_epochs={frozen}", *prune_all))
    study = optuna.load_study(study_name="frozen", storage=f"sqlite:///{tmp_path}/studies.db")
    searched = [t for t in study.trials if t.user_attrs.get("role") == "searched"
                and "duplicate_of" not in t.user_attrs and "infeasible" not in t.user_attrs]
    assert searched and all(t.state == optuna.trial.TrialState.PRUNED for t in searched)
    # pruned at the first epoch it may judge: the one after the frozen epochs
    assert {t.user_attrs["epochs"] for t in searched} == {frozen + 1}
