"""data=context: the generated task where global context decides (gcnas/data/context.py)."""
from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from gcnas.arch import Architecture, BlockSpec, Placement, build_model
from gcnas.cli.common import resolve
from gcnas.data import load_data
from gcnas.data.context import make_context_task
from gcnas.errors import ConfigError
from gcnas.train import fit


def _config(*overrides: str) -> dict:
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return resolve(compose("config", overrides=["data=context", "paths.root=.", *overrides]))


def test_the_task_is_deterministic_and_its_label_is_an_xor():
    small = {"size": 400, "seed": 3}
    a, b = make_context_task(small), make_context_task(small)
    assert all(np.array_equal(a[k], b[k]) for k in ("train_x", "train_y", "test_x", "test_y"))
    assert a["train_x"].dtype == np.uint8 and a["train_x"].shape == (350, 3, 28, 28)
    assert not np.array_equal(make_context_task({"size": 400, "seed": 4})["train_x"], a["train_x"])
    # the tint sits away from the target: averaged over the image, magenta-tinted images are redder and bluer than
    # greener, cyan-tinted ones greener; the label alone does not say which (every class occurs under both tints)
    x = a["train_x"].astype(np.float64).mean(axis=(2, 3))
    magenta = (x[:, 0] + x[:, 2]) / 2 - x[:, 1]
    tints = magenta > np.median(magenta)
    for label in range(4):
        under = tints[a["train_y"] == label]
        assert 0 < under.mean() < 1, label


@pytest.mark.parametrize("key,value,words", [
    ("num_colours", 7, "data.num_colours: must be an integer from 2 to 4; got 7"),
    ("tint", 0, "data.tint: must be a number in (0, 1]"),
    ("margin", 50, "data.margin: must be an integer from 0 to"),
    ("size", "many", "data.size: must be an integer from 16"),
])
def test_bad_task_keys_name_themselves(key, value, words):
    with pytest.raises(ConfigError) as e:
        make_context_task({key: value})
    assert words in str(e.value)


@pytest.mark.slow
def test_global_context_beats_the_plain_backbone_by_far_more_than_the_noise():
    """Two GC blocks after the residual sums of stage 0 (avg pooling, bottleneck r1/4, add: what the searches on this
    task find, docs/search-quality.md) against the plain backbone, seeds 0 and 1, at half the search's epochs: GC's
    mean at least 15 pp above plain's. Measured on an AMD EPYC (AVX2) at this budget: GC 0.75-1.00 over seeds 0-3,
    plain 0.50-0.54; with the blocks' pooled context zeroed (global context broken, the blocks still there) 0.46 and
    0.25, so a regression in the blocks, their insertion or training that kills global context fails here. Four
    trainings of about 12 s (the paper's GC, r1/16, learns the task too slowly to be told from plain this cheaply)."""
    cfg = _config("trainer.epochs=2")
    data = load_data(cfg["data"])
    kwargs = {"num_classes": data.num_classes, "in_chans": data.in_chans}
    spec = BlockSpec(context="avg", transform="bottleneck", ratio=0.25, fusion=("add",))
    designs = {"plain": Architecture("gcnas_resnet_tiny", kwargs, ()),
               "gc": Architecture("gcnas_resnet_tiny", kwargs, tuple(Placement(0, b, "after_add", spec)
                                                                     for b in (0, 1)))}
    accs: dict[str, list[float]] = {}
    for name, arch in designs.items():
        for seed in (0, 1):
            torch.manual_seed(seed)
            result = fit(build_model(arch), data, cfg["trainer"], seed=seed, test=False)
            accs.setdefault(name, []).append(result.final_val_acc)
    assert statistics.fmean(accs["gc"]) - statistics.fmean(accs["plain"]) >= 0.15, accs
