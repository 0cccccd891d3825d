"""gcnas-train: full-fidelity training with timm's factories, resumable checkpoints, baseline comparison, W&B."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from omegaconf import OmegaConf
from safetensors.torch import load_file

from gcnas.arch import Architecture, build_model
from gcnas.cli.train import train
from gcnas.data import load_data
from gcnas.train import train_full
from gcnas.track import offline_runs

ARCH = """
backbone: gcnas_resnet_tiny
backbone_kwargs: {in_chans: 1, num_classes: 4}
placements:
  - {stages: [2, 3], blocks: all, position: before_add, spec: gc_r4}
"""
FAST = ["data=synthetic", "data.size=384", "data.val_size=64", "trainer.epochs=2", "trainer.batch_size=32",
        "trainer.warmup_epochs=0"]


def _cfg(tmp_path: Path, *overrides: str):
    arch = tmp_path / "architecture.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    if not arch.exists():
        arch.write_text(ARCH)
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("train", overrides=[f"paths.root={tmp_path}", f"arch={arch}", *FAST, *overrides])


def test_baseline_comparison_over_seeds_with_tracking(tmp_path):
    rep = train(_cfg(tmp_path, "baseline=true", "seeds=[0,1]", "wandb.mode=offline"))
    assert [(r["model"], r["seed"]) for r in rep.rows] == [("gcnas", 0), ("plain", 0), ("gcnas", 1), ("plain", 1)]
    gc, plain = rep.rows[0], rep.rows[1]
    assert gc["params"] > plain["params"] and 0.0 <= gc["val_acc"] <= 1.0 and gc["test_acc"] is not None
    assert "| gcnas | 2 |" in rep.table and "| plain | 2 |" in rep.table and " ± " in rep.table
    assert "gcnas vs plain (test acc, same seeds)" in rep.table
    runs = offline_runs(tmp_path)
    assert sorted(r.name for r in runs) == ["gcnas-seed0", "gcnas-seed1", "plain-seed0", "plain-seed1"]
    assert {r.job_type for r in runs} == {"train"}
    r = next(r for r in runs if r.name == "gcnas-seed1")
    assert [h["epoch"] for h in r.history if "epoch" in h] == [1, 2]
    assert r.summary["val_acc"] == rep.rows[2]["val_acc"] and r.config["trainer"]["epochs"] == 2


def test_checkpoints_resume_and_load_without_pickle(tmp_path):
    first = train(_cfg(tmp_path, "wandb.mode=disabled"))
    ckpt = Path(first.rows[0]["dir"])
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.pt", "weights.safetensors"]
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    again = train(_cfg(tmp_path, "wandb.mode=disabled"))  # finished: nothing trained again, same result
    assert again.rows[0]["resumed_from"] == 2 and again.rows[0]["val_acc"] == first.rows[0]["val_acc"]
    with pytest.raises(ValueError, match="trainer.epochs: the checkpoint in .* was trained with trainer.epochs=2, "
                                         "not 3"):
        train(_cfg(tmp_path, "wandb.mode=disabled", "trainer.epochs=3"))


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    """Two epochs in one go equal one epoch, a stop, and a resumed second epoch (same seed, same data order)."""
    whole = train(_cfg(tmp_path / "a", "wandb.mode=disabled"))
    c = OmegaConf.to_container(_cfg(tmp_path / "b", "wandb.mode=disabled"), resolve=True)
    data = load_data(c["data"])
    arch = Architecture.from_yaml(ARCH)
    ck = tmp_path / "b" / "ck"

    class Stop(Exception):
        pass

    def stop_after_first(er):
        if er.epoch == 1:
            raise Stop

    torch.manual_seed(0)
    with pytest.raises(Stop):
        train_full(build_model(arch), data, c["trainer"], seed=0, ckpt_dir=ck, on_epoch=stop_after_first)
    torch.manual_seed(0)
    resumed = train_full(build_model(arch), data, c["trainer"], seed=0, ckpt_dir=ck)
    assert resumed.resumed_from == 1
    assert resumed.final_val_acc == whole.rows[0]["val_acc"]
    a = load_file(str(Path(whole.rows[0]["dir"]) / "weights.safetensors"))
    b = load_file(str(ck / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("overrides,message", [
    (["arch=null"], "arch: required; give arch=path/to/architecture.yaml"),
    (["arch=/nonexistent/architecture.yaml"], "arch: /nonexistent/architecture.yaml does not exist"),
    (["seeds=[]"], "seeds: must be a non-empty list of integers"),
    (["baseline=maybe"], "baseline: must be true or false; got 'maybe'"),
    (["trainer.amp=fp8"], "trainer.amp: must be true, false, bf16 or fp16; got 'fp8'"),
    (["+trainer.lr_decay=0.1"], "trainer.lr_decay: unknown key; valid keys are name, epochs"),
    (["device=tpu"], "device: must be cpu, cuda or auto; got 'tpu'"),
])
def test_bad_input_is_named_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train(_cfg(tmp_path, "wandb.mode=disabled", *overrides))
    assert not (tmp_path / "train").exists() or not any((tmp_path / "train").rglob("state.pt"))


def test_bad_architecture_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: gcnas_resnet_tiny\nplacements:\n  - {stages: [9], position: before_add, spec: gc}\n")
    with pytest.raises(ValueError, match=f"arch: {bad}: "):
        train(_cfg(tmp_path, "wandb.mode=disabled", f"arch={bad}"))


def test_cli_exits_2_on_user_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.train", f"paths.root={tmp_path}", "wandb.mode=disabled"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "arch: required" in res.stderr
