"""Datasets (real Fashion-MNIST where installed, generated files for the others) and proxy training."""
from __future__ import annotations

import dataclasses
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import gcnas  # noqa: F401  (registers gcnas_resnet_tiny)
from gcnas.data import DataUnavailableError, load_data
from gcnas.data.datasets import FASHION_MNIST_DEFAULT_ROOT, read_idx
from gcnas.data import TensorSplit
from gcnas.train import NonFiniteLossError, evaluate, fit
from conftest import skip_or_fail


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_reader_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, size=(7, 5, 3))
    _write_idx(tmp_path / "a-idx3-ubyte.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad")


def test_fashion_mnist_from_generated_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, size=(n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, size=(n,)))
    d = load_data({"name": "fashion_mnist", "root": str(tmp_path), "val_size": 10, "train_subset": 30})
    assert d.train.x.shape == (30, 1, 28, 28) and d.val.x.shape == (10, 1, 28, 28) and d.test.x.shape[0] == 20
    assert d.num_classes == 10 and d.input_size == (1, 28, 28)
    assert abs(float(d.train.x.mean())) < 0.2  # normalised with the training subset's statistics


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataUnavailableError) as e:
        load_data({"name": "fashion_mnist", "root": str(tmp_path / "nowhere")})
    msg = str(e.value)
    assert "data.root" in msg and "apt-get install -y dataset-fashion-mnist" in msg and "data.download=true" in msg


def test_real_fashion_mnist():
    if not Path(FASHION_MNIST_DEFAULT_ROOT, "train-images-idx3-ubyte.gz").is_file():
        skip_or_fail("Debian's dataset-fashion-mnist is not installed (make test installs it)")
    d = load_data({"name": "fashion_mnist", "val_size": 5000, "train_subset": 1000, "val_subset": 500})
    assert d.train.x.shape == (1000, 1, 28, 28) and d.val.x.shape == (500, 1, 28, 28)
    assert d.test.x.shape == (10000, 1, 28, 28)
    assert d.classes[0] == "T-shirt/top" and d.num_classes == 10
    # Validation comes out of the training images, never the test split, and never overlaps the training subset.
    flat_train = {bytes(x.numpy().tobytes()) for x in d.train.x[:200]}
    assert not any(bytes(x.numpy().tobytes()) in flat_train for x in d.val.x[:200])


def test_cifar10_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 255, size=(8, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, size=8))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    d = load_data({"name": "cifar10", "root": str(tmp_path), "val_size": 8})
    assert d.train.x.shape == (32, 3, 32, 32) and d.test.x.shape == (8, 3, 32, 32)
    assert d.classes[3] == "c3" and d.num_classes == 10
    # augmented, the same batches stream through timm's transforms in a worker process, and train
    streamed = load_data({"name": "cifar10", "root": str(tmp_path), "val_size": 8, "aug": "basic", "workers": 1})
    assert streamed.streamed and streamed.input_size == (3, 32, 32) and streamed.mean == d.mean
    model = timm.create_model("gcnas_resnet_tiny", num_classes=10, in_chans=3)
    result = fit(model, streamed, {"epochs": 1, "batch_size": 8, "lr": 0.05})
    assert len(result.epochs) == 1 and result.test_acc is not None and result.bad_images == 0
    with pytest.raises(DataUnavailableError, match="CIFAR-10"):
        load_data({"name": "cifar10", "root": str(tmp_path / "empty")})


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog", "fox"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, size=(20, 24, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png")
    d = load_data({"name": "imagefolder", "root": str(tmp_path), "image_size": 16, "in_chans": 3, "val_size": 3})
    assert d.train.x.shape == (9, 3, 16, 16) and d.test.x.shape == (12, 3, 16, 16)
    assert d.classes == ("cat", "dog", "fox") and d.num_classes == 3
    with pytest.raises(DataUnavailableError, match="does not exist"):
        load_data({"name": "imagefolder", "root": str(tmp_path / "missing")})


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="data.name must be one of 'fashion_mnist', 'cifar10', 'imagefolder', "
                                         "'timm', 'synthetic', 'context'; got 'mnist'"):
        load_data({"name": "mnist"})


def test_synthetic_task_is_learnable():
    d = load_data({"name": "synthetic", "size": 1024, "num_classes": 4, "in_chans": 1, "image_size": 16,
                   "noise": 0.5, "signal": 1.5, "seed": 0, "val_size": 128})
    torch.manual_seed(0)
    model = timm.create_model("gcnas_resnet_tiny", num_classes=4, in_chans=1)
    seen = []
    result = fit(model, d, {"epochs": 3, "batch_size": 32, "lr": 0.05}, on_epoch=seen.append)
    assert [e.epoch for e in seen] == [1, 2, 3] == [e.epoch for e in result.epochs]
    assert result.final_val_acc > 0.5  # chance is 0.25


def test_training_stops_on_non_finite_loss_and_callback_can_stop():
    d = load_data({"name": "synthetic", "size": 256, "val_size": 32})
    model = timm.create_model("gcnas_resnet_tiny", num_classes=4, in_chans=1)
    recipe = {"epochs": 3, "batch_size": 32, "lr": 0.05}
    poisoned = dataclasses.replace(d, train=TensorSplit(d.train.x * float("nan"), d.train.y))
    with pytest.raises(NonFiniteLossError, match="epoch 1, step"):
        fit(model, poisoned, recipe)

    class Stop(Exception):
        pass

    def stop(er):
        raise Stop(er.epoch)

    with pytest.raises(Stop):
        fit(model, d, recipe, on_epoch=stop)
    with pytest.raises(ValueError, match="trainer.epochs: must be an integer >= 1; got 0"):
        fit(model, d, {**recipe, "epochs": 0})


def test_mixup_and_cutmix_train_on_soft_targets_and_ema_keeps_the_average():
    d = load_data({"name": "synthetic", "size": 512, "val_size": 64})
    recipe = {"epochs": 3, "batch_size": 31, "lr": 0.05}  # an odd batch: Mixup pairs images, one is left out
    results = {}
    for name, extra in (("plain", {}), ("mix", {"mixup": 0.2, "cutmix": 1.0}), ("ema", {"ema_decay": 0.5})):
        torch.manual_seed(0)
        model = timm.create_model("gcnas_resnet_tiny", num_classes=4, in_chans=1)
        results[name] = (fit(model, d, {**recipe, **extra}), model)
    plain, mix = results["plain"][0], results["mix"][0]
    assert mix.final_val_acc > 0.4  # chance is 0.25: it learns from mixed images
    assert [e.train_loss for e in mix.epochs] != [e.train_loss for e in plain.epochs]  # the targets were mixed
    ema_result, ema_model = results["ema"]
    # the model handed back is the average that was validated
    assert evaluate(ema_model, d.val)[1] == ema_result.final_val_acc


def test_validation_batches_are_capped_by_input_bytes():
    """Small images validate 512 at a time; 224 px RGB ones no more than 64 MB of input per batch (a batch of 512
    at 224 px made validation the peak of a streamed trial's memory), never fewer than a training batch."""
    from gcnas.train.loop import EVAL_BATCH_BYTES, eval_batch_size

    assert eval_batch_size(128, (1, 28, 28)) == 512
    big = eval_batch_size(64, (3, 224, 224))
    assert 64 <= big < 512 and big * 4 * 3 * 224 * 224 <= EVAL_BATCH_BYTES
    assert eval_batch_size(256, (3, 224, 224)) == 256


def test_one_architecture_is_seeded_built_costed_and_trained_as_by_hand():
    """train_architecture is seed, build, cost, fit: the same weights, accuracy and cost as those steps by hand, and
    a row with the caller's columns first."""
    from gcnas.arch import Architecture, build_model
    from gcnas.backbones import measure_cost
    from gcnas.train.one import ArchitectureRun, train_architecture

    d = load_data({"name": "synthetic", "size": 128, "val_size": 32})
    arch = Architecture.from_dict({"backbone": "gcnas_resnet_tiny",
                                   "backbone_kwargs": {"num_classes": 4, "in_chans": 1},
                                   "placements": [{"stages": [2], "blocks": "all", "position": "before_add",
                                                   "spec": "gc"}]})
    recipe = {"epochs": 1, "batch_size": 32, "lr": 0.05}
    run = train_architecture(arch, d, recipe, seed=5)
    torch.manual_seed(5)
    model = build_model(arch)
    cost = measure_cost(model, d.input_size, latency=False)
    by_hand = fit(model, d, recipe, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(), model.state_dict().values()))
    assert run.result.final_val_acc == by_hand.final_val_acc and run.cost.latency_ms is None
    assert run.row(model="gc") == {"model": "gc", "seed": 5, "val_acc": by_hand.final_val_acc,
                                   "test_acc": by_hand.test_acc, "params": cost.params, "flops": cost.flops}
    assert list(run.row(model="gc"))[:2] == ["model", "seed"] and run.seconds > 0
    with pytest.raises(RuntimeError, match="has not been trained"):
        ArchitectureRun.build(arch, d.input_size, cost=False).row()
