"""The streaming data pipeline on real files: Fashion-MNIST written as PNG/JPEG class folders (grey, RGBA and CMYK
images, one truncated file), a .tar of the folder, torchvision's reader on Debian's files, augmentation through
timm's transforms, DataLoader worker processes, and training on what they stream."""
from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gcnas.data import TensorSplit, load_data
from gcnas.data.datasets import FASHION_MNIST_DEFAULT_ROOT, read_idx
from gcnas.data.stream import BadImageError, StreamSplit
from gcnas.arch import Architecture
from gcnas.errors import ConfigError
from gcnas.train import fit
from conftest import skip_or_fail

CLASSES = ("c0", "c1", "c2", "c3")


def _fashion(n: int):
    root = Path(FASHION_MNIST_DEFAULT_ROOT)
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        skip_or_fail("Debian's dataset-fashion-mnist is not installed (make test installs it)")
    x = read_idx(root / "train-images-idx3-ubyte.gz")
    y = read_idx(root / "train-labels-idx1-ubyte.gz")
    keep = np.flatnonzero(y < len(CLASSES))[:n]
    return x[keep], y[keep]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """train/ (160 images, one truncated) and val/ (40) folders of four Fashion-MNIST classes, in mixed modes."""
    root = tmp_path_factory.mktemp("photos")
    x, y = _fashion(200)
    for i, (a, label) in enumerate(zip(x, y)):
        d = root / ("val" if i % 5 == 0 else "train") / CLASSES[label]
        d.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(a)
        if i % 4 == 1:
            img.convert("RGBA").save(d / f"{i}.png")
        elif i % 4 == 2:
            img.convert("CMYK").save(d / f"{i}.jpg")
        else:
            img.save(d / f"{i}.png")
    good = next((root / "train" / "c1").glob("*.png")).read_bytes()
    (root / "train" / "c0" / "truncated.png").write_bytes(good[: len(good) // 3])
    return root


def _cfg(root: Path, **kw) -> dict:
    return {"name": "imagefolder", "root": str(root), "image_size": 32, "in_chans": 1, "val_size": 20,
            "workers": 1, **kw}


def test_a_folder_streams_through_worker_processes_and_skips_the_truncated_file_once(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="gcnas.data"):
        d = load_data(_cfg(folder, in_memory=False))
    assert d.streamed and isinstance(d.train, StreamSplit) and d.train.workers == 1
    assert d.classes == CLASSES and d.num_classes == 4 and d.input_size == (1, 32, 32)
    assert len(d.train) + len(d.val) == 161 and len(d.val) == 20 and len(d.test) == 40
    seen = [y for _, y in d.train.batches(32, torch.randperm(len(d.train)))]
    labels = torch.cat(seen)
    assert len(labels) == len(d.train) - 1 or len(labels) == len(d.train)  # the truncated one, if it is in train
    bad = d.train.take_bad_count() + sum(0 for _ in d.val.batches(32)) + d.val.take_bad_count()
    assert bad == 1 and d.train.take_bad_count() == 0  # counted once, then reset
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and "truncated.png" in warnings[0]  # one warning, naming the file
    x, _ = d.val.head(8)
    assert x.shape == (8, 1, 32, 32) and abs(float(d.train.head(64)[0].mean())) < 0.5  # normalised


def test_the_same_folder_decoded_into_memory_gives_the_same_images(folder):
    streamed = load_data(_cfg(folder, in_memory=False))
    memory = load_data(_cfg(folder))  # auto: 201 images of 1x32x32 fit in memory, no augmentation
    assert isinstance(memory.train, TensorSplit) and not memory.streamed
    assert memory.mean == streamed.mean
    torch.testing.assert_close(memory.test.x, torch.cat([x for x, _ in streamed.test.batches(16)]))


def test_train_and_held_out_labels_follow_one_class_map(tmp_path, folder, caplog):
    root = tmp_path / "photos"
    shutil.copytree(folder, root)
    shutil.rmtree(root / "val" / "c0")  # val lacks the first class: its labels must not shift
    with caplog.at_level(logging.WARNING, logger="gcnas.data"):
        d = load_data(_cfg(root, in_memory=False))
    assert any("has no images of class c0" in r.getMessage() for r in caplog.records)
    test_labels = torch.cat([y for _, y in d.test.batches(64)])
    assert set(test_labels.tolist()) == {1, 2, 3}
    (root / "val" / "zebra").mkdir()
    Image.new("L", (28, 28)).save(root / "val" / "zebra" / "z.png")
    with pytest.raises(ConfigError, match="class 'zebra' is in val/ but not in train/"):
        load_data(_cfg(root))
    shutil.rmtree(root / "val" / "zebra")
    (root / "train" / "empty").mkdir()
    with pytest.raises(ConfigError, match="class folder 'empty' in .* holds no images"):
        load_data(_cfg(root))


def test_an_unreadable_image_is_one_line_naming_it_under_on_bad_image_error(folder):
    d = load_data(_cfg(folder, in_memory=False, on_bad_image="error", val_size=1, train_subset=None))
    with pytest.raises(BadImageError, match=r"data.on_bad_image=error: unreadable image .*truncated.png: OSError"):
        for _ in d.train.batches(64):
            pass


def test_a_tar_of_the_folder_reads_the_same_classes(tmp_path, folder):
    tar = tmp_path / "photos.tar"
    with tarfile.open(tar, "w") as t:
        t.add(folder / "train", arcname="train")
    d = load_data(_cfg(tar, in_memory=False))
    assert d.classes == CLASSES and len(d.train) + len(d.val) == 161 and d.test is None


def test_a_hugging_face_data_set_of_the_folder_through_timms_reader(tmp_path, folder):
    """hfds/<local folder>: the datasets package's imagefolder builder, offline; train/ and val/ become its splits."""
    d = load_data({**_cfg(tmp_path / "cache", in_memory=False, workers=0), "name": "timm",
                   "dataset": f"hfds/{folder}"})  # data.root: the data set's cache folder
    assert d.classes == CLASSES and len(d.train) + len(d.val) == 161 and len(d.test) == 40
    labels = torch.cat([y for _, y in d.test.batches(64)])
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3]


def test_torchvisions_fashion_mnist_by_timms_name(tmp_path):
    src = Path(FASHION_MNIST_DEFAULT_ROOT)
    if not (src / "train-images-idx3-ubyte.gz").is_file():
        skip_or_fail("Debian's dataset-fashion-mnist is not installed (make test installs it)")
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    import gzip

    for f in src.glob("*-ubyte.gz"):  # torchvision reads the files uncompressed, under FashionMNIST/raw/
        (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    d = load_data({"name": "timm", "dataset": "torch/fashion_mnist", "root": str(tmp_path), "train_subset": 64,
                   "val_size": 32, "in_memory": False, "workers": 0}, backbone_data={"input_size": (3, 32, 32)})
    assert d.classes[:2] == ("T-shirt/top", "Trouser") and d.input_size == (1, 32, 32) and len(d.test) == 10000
    with pytest.raises(ConfigError, match="data.root: torch/fashion_mnist is not in"):
        load_data({"name": "timm", "dataset": "torch/fashion_mnist", "root": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="torch/imagenette is not one timm opens by name; valid are torch/cifar10"):
        load_data({"name": "timm", "dataset": "torch/imagenette", "root": str(tmp_path)})


def test_augmentation_streams_the_array_datasets_and_changes_each_epoch():
    d = load_data({"name": "synthetic", "size": 256, "val_size": 32, "aug": "basic", "workers": 0})
    assert d.streamed and d.input_size == (1, 16, 16)
    order = torch.arange(8)
    a, b = (next(d.train.batches(8, order))[0] for _ in range(2))
    assert not torch.equal(a, b)  # random-resized crops and flips differ from one pass to the next
    v1, v2 = (next(d.val.batches(8, order))[0] for _ in range(2))
    assert torch.equal(v1, v2)  # evaluation is deterministic
    plain = load_data({"name": "synthetic", "size": 256, "val_size": 32})
    assert isinstance(plain.train, TensorSplit)  # no augmentation: the in-memory fast path
    torch.testing.assert_close(v1, plain.val.x[:8], atol=1e-5, rtol=0)  # the same pixels, normalised the same way


def test_a_model_trains_on_streamed_images_and_the_result_counts_the_skipped_one(folder):
    import timm

    d = load_data(_cfg(folder, in_memory=False, aug="rand-m9-mstd0.5", val_size=1))
    torch.manual_seed(0)
    model = timm.create_model("gcnas_resnet_tiny", num_classes=4, in_chans=1)
    result = fit(model, d, {"epochs": 2, "batch_size": 32, "lr": 0.05})
    assert len(result.epochs) == 2 and result.bad_images == 2  # the truncated file, skipped in both epochs
    assert result.test_acc is not None and result.test_acc > 0.25  # four classes: better than chance


@pytest.mark.parametrize("overrides,message", [
    ({"in_memory": True, "aug": "basic"}, "data.in_memory: true decodes every image once, so it cannot augment"),
    ({"in_memory": "sometimes"}, "data.in_memory: must be auto, true or false; got 'sometimes'"),
    ({"workers": -1}, "data.workers: must be auto or an integer >= 0; got -1"),
    ({"on_bad_image": "skip"}, "data.on_bad_image: must be one of warn, error; got 'skip'"),
    ({"aug": "sharpen"}, "data.aug: 'sharpen' is not none, basic or a timm auto-augment string"),
    ({"image_size": 4}, "data.image_size: must be an integer >= 8 or null"),
])
def test_bad_pipeline_options_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_data({"name": "synthetic", "size": 64, "val_size": 8, **overrides})


def test_a_missing_folder_or_a_non_tar_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="data.root: '.*nowhere' does not exist"):
        load_data({"name": "imagefolder", "root": str(tmp_path / "nowhere")})
    (tmp_path / "photos.zip").write_bytes(b"PK")
    with pytest.raises(ConfigError, match="is a file but not a .tar"):
        load_data({"name": "imagefolder", "root": str(tmp_path / "photos.zip")})
    with pytest.raises(ConfigError, match="data.dataset: 'hub/x' is not a dataset gcnas reads"):
        load_data({"name": "timm", "dataset": "hub/x", "root": str(tmp_path)})


def test_search_export_and_retraining_run_on_a_streamed_folder(tmp_path, folder):
    """End to end through the streaming path: a search's trials, export's retraining of a trial that kept no weights,
    and gcnas-train's full-fidelity retraining with a checkpoint."""
    from hydra import compose, initialize_config_module
    import optuna

    from gcnas.cli.search import search
    from gcnas.export import export_trial, retrain
    from gcnas.search import record

    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            f"paths.root={tmp_path}", "data=imagefolder", f"data.root={folder}", "data.in_memory=false",
            "data.image_size=32", "data.in_chans=1", "data.workers=1", "data.aug=basic", "data.val_size=20",
            "study.n_trials=2", "study.noise_seeds=1", "study.keep_weights=0", "trainer.epochs=1",
            "trainer.batch_size=32",
            "wandb.mode=disabled", "progress=none", "threads=1"])
    result = search(cfg)
    assert result.n_finished == 2
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    assert all(len(record.history_of(t)) == 1 for t in study.trials)
    assert study.user_attrs["input_size"] == [1, 32, 32]
    exported = export_trial(f"sqlite:///{tmp_path}/studies.db", result.study_name, out_dir=tmp_path / "export")
    assert exported.weights_source.startswith("retrained") and (tmp_path / "export" / "model.safetensors").is_file()
    arch = Architecture.from_yaml((tmp_path / "export" / "architecture.yaml").read_text())
    data_cfg = _cfg(folder, in_memory=False, val_size=20)
    report = retrain(arch, data_cfg, {"epochs": 2, "batch_size": 32, "lr": 0.05}, tmp_path / "train", seeds=[0],
                     device="cpu")
    row = report.rows[0]
    assert "streamed from disk" in report.description and row["test_acc"] is not None
    assert torch.load(Path(row["dir"]) / "state.pt", weights_only=True)["epoch"] == 2
