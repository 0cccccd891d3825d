"""trainer.compile: the blocks compile without graph breaks, and fit's compiled training keeps the uncompiled
module's weights, so its checkpoints are the same with or without it; compile changes no study's identity.

torch.compile on a CPU takes seconds per block and tens of seconds per model: these tests are marked slow.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from safetensors.torch import load_file

from benchmarks.fold import FOLD_SITES, full_size_buffers, generated_code, residual_block
from conftest import compose_search
from gcnas.arch import Architecture, build_model
from gcnas.backbones import BackboneWeights
from gcnas.blocks import block_preset, block_preset_names
from gcnas.blocks.create import create_block
from gcnas.cli.search import search
from gcnas.data import load_data
from gcnas.export.retrain import default_dir_name
from gcnas.train import fit

ARCH = """
backbone: gcnas_resnet_tiny
backbone_kwargs: {in_chans: 1, num_classes: 4}
placements:
  - {stages: [3], blocks: [0], position: before_add, spec: gc}
"""
FAST = ["data=synthetic", "data.size=256", "data.val_size=64", "trainer.epochs=1", "trainer.batch_size=32",
        "trainer.warmup_epochs=0"]
DESIGNS = [(name, {}) for name in block_preset_names()] + [("gc", {"fused": False}), ("gc", {"fused": True})]


@pytest.mark.slow
@pytest.mark.parametrize("name,extra", DESIGNS, ids=[n + "".join(f"-{k}={v}" for k, v in e.items())
                                                     for n, e in DESIGNS])
def test_a_block_compiles_whole_and_computes_what_eager_does(name, extra):
    """fullgraph=True fails on any graph break; forward and backward match the eager block."""
    torch.manual_seed(0)
    block = create_block(32, **{**block_preset(name), **extra})
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    grad_out = torch.randn(2, 32, 8, 8)
    eager = block(x)
    eager.backward(grad_out)
    eager_grads = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
    x.grad = None
    block.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)(x)
    compiled.backward(grad_out)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for got, want in zip([x.grad] + [p.grad for p in block.parameters()], eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _setup(tmp_path: Path):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        c = OmegaConf.to_container(compose("train", overrides=[f"paths.root={tmp_path}", *FAST]), resolve=True)
    return load_data(c["data"]), Architecture.from_yaml(ARCH), c["trainer"]


class _Stop(Exception):
    pass


def _stop_after_epoch_one(er) -> None:
    if er.epoch == 1:
        raise _Stop


@pytest.mark.slow
def test_a_compiled_run_checkpoints_the_plain_model_and_resumes_without_compile(tmp_path):
    data, arch, trainer = _setup(tmp_path)
    trainer = {**trainer, "epochs": 2}
    model = build_model(arch)
    with pytest.raises(_Stop):  # a compiled run killed after its first epoch
        fit(model, data, {**trainer, "compile": True}, seed=0, ckpt_dir=tmp_path / "ck", on_epoch=_stop_after_epoch_one)
    # the checkpoint and the model handed back are the plain module's: no _orig_mod. prefix
    saved = load_file(str(tmp_path / "ck" / "weights.safetensors"))
    assert set(saved) == set(model.state_dict()) == set(build_model(arch).state_dict())
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())

    resumed = fit(build_model(arch), data, {**trainer, "compile": False}, seed=0, ckpt_dir=tmp_path / "ck")
    assert resumed.resumed_from == 1 and len(resumed.epochs) == 2
    assert all(math.isfinite(r.train_loss) for r in resumed.epochs)


@pytest.mark.slow
def test_a_study_resumed_with_compile_is_not_refused(tmp_path):
    """compile changes how fast a trial runs, not what it computes: the study's identity leaves it out."""
    first = search(compose_search(tmp_path, "study.n_trials=2", "trainer.epochs=1"))
    again = search(compose_search(tmp_path, "study.n_trials=2", "trainer.epochs=1", "trainer.compile=true"))
    assert again.study_name == first.study_name and again.trials_run == 0 and again.n_finished == 2


def test_gcnas_train_resumes_in_the_same_folder_with_or_without_compile(tmp_path):
    data, arch, trainer = _setup(tmp_path)
    names = {default_dir_name(arch, data, {**trainer, "compile": value}, BackboneWeights())
             for value in (False, True, "max-autotune")}
    assert len(names) == 1
    assert default_dir_name(arch, data, {**trainer, "lr": 0.5}, BackboneWeights()) not in names


@pytest.mark.slow
@pytest.mark.parametrize("backbone,module", FOLD_SITES, ids=[b for b, _ in FOLD_SITES])
def test_compiled_the_fusion_folds_into_the_residual_add(backbone, module):
    """At before_add (the paper's place), eager mode writes the block's output x + t (or x * sigmoid(a)) as a tensor
    of its own before timm adds the shortcut; torch.compile folds the fusion into the residual add (and the ReLU that
    follows it), so a compiled residual block with a GC allocates no full-size buffer more than the plain one at
    inference (a graph break between block and sum adds two: tried)."""
    counts = {preset: full_size_buffers(*generated_code(*residual_block(backbone, module, preset)))
              for preset in (None, "gc", "gc_scale")}
    assert counts["gc"] == counts["gc_scale"] == counts[None], counts
