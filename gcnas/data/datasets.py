"""Dataset readers: each returns uint8 arrays; :func:`load_data` makes them :class:`~gcnas.data.splits.DataSplits`."""
from __future__ import annotations

import gzip
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from gcnas.data.context import make_context_task
from gcnas.data.identity import array_fingerprint, data_identity
from gcnas.data.splits import DataSplits, TensorSplit
from gcnas.data.stream import (IN_MEMORY_LIMIT_BYTES, ArraySource, DataUnavailableError, ImageSource, SourceImages,
                               StreamOptions, StreamSplit, decode_all, eval_config, make_transforms,
                               measure_mean_std, timm_sources)
from gcnas.errors import ConfigError
from gcnas.registry import Registry
from gcnas.schema import key, read_known

__all__ = ["DataUnavailableError", "DATASETS", "load_data", "read_idx"]

log = logging.getLogger("gcnas.data")

FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not), as used by MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ConfigError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ConfigError(f"{path}: expected {dims} values, found {arr.size}")
    return arr.reshape(dims)


def _find(root: Path, stem: str) -> Optional[Path]:
    for sub in ("", "FashionMNIST/raw", "raw"):
        for suffix in (".gz", ""):
            p = root / sub / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _fashion_mnist(cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    root = Path(cfg.get("root") or FASHION_MNIST_DEFAULT_ROOT)
    found = {k: _find(root, stem) for k, stem in FASHION_MNIST_FILES.items()}
    if any(v is None for v in found.values()) and cfg.get("download"):
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
        found = {k: _find(root, stem) for k, stem in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[k] + ".gz" for k, v in found.items() if v is None]
    if missing:
        raise DataUnavailableError(
            f"data.root: Fashion-MNIST is not at {root} (missing {', '.join(missing)}). Install it with "
            f"`apt-get install -y dataset-fashion-mnist` (puts it at {FASHION_MNIST_DEFAULT_ROOT}), point data.root "
            "at a folder holding these files, or set data.download=true to fetch it with torchvision.")
    out = {k: read_idx(p) for k, p in found.items()}
    out["train_x"] = out["train_x"][:, None]
    out["test_x"] = out["test_x"][:, None]
    out["classes"] = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot")
    return out


def _cifar10(cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    root = Path(cfg.get("root") or "data/cifar10")
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).is_file() for n in names) and cfg.get("download"):
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)
        folder = root / "cifar-10-batches-py"
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataUnavailableError(
            f"data.root: CIFAR-10 (python version) is not at {root} (missing {', '.join(missing)} in "
            f"{folder}). Point data.root at the folder that holds cifar-10-batches-py/, or set data.download=true.")

    def load(name):
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(d[b"labels"], dtype=np.int64)

    parts = [load(n) for n in names[:5]]
    test_x, test_y = load("test_batch")
    classes: tuple[str, ...] = ()
    if (folder / "batches.meta").is_file():
        with open(folder / "batches.meta", "rb") as f:
            classes = tuple(c.decode() for c in pickle.load(f, encoding="bytes").get(b"label_names", []))
    return {"train_x": np.concatenate([p[0] for p in parts]), "train_y": np.concatenate([p[1] for p in parts]),
            "test_x": test_x, "test_y": test_y, "classes": classes}


def _timm_dataset(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A folder, a .tar of one, or torch/<name>, read through timm (``data.dataset``: timm's dataset name)."""
    source, held, classes = timm_sources(str(cfg.get("dataset") or ""), str(cfg.get("root") or ""),
                                         bool(cfg.get("download")))
    return {"source": source, "held": held, "classes": classes}


def _synthetic(cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A learnable task: each class is a fixed random pattern placed at a random offset, under noise."""
    rng = np.random.default_rng(int(cfg.get("seed", 0)))
    n, k = int(cfg.get("size", 2048)), int(cfg.get("num_classes", 4))
    c, s = int(cfg.get("in_chans", 1)), int(cfg.get("image_size", 16))
    p = max(2, s // 2)
    # Coarse +-1 checkerboards (4x4 cells) per class: low-frequency, so a small CNN learns them in a few epochs.
    cells = rng.choice([-1.0, 1.0], size=(k, c, 4, 4))
    protos = (np.kron(cells, np.ones((1, 1, -(-p // 4), -(-p // 4))))[:, :, :p, :p]
              * float(cfg.get("signal", 1.5))).astype(np.float32)
    y = rng.integers(0, k, size=n)
    x = rng.normal(scale=float(cfg.get("noise", 0.5)), size=(n, c, s, s)).astype(np.float32)
    offs = rng.integers(0, s - p + 1, size=(n, 2))
    for i in range(n):
        r, q = offs[i]
        x[i, :, r:r + p, q:q + p] += protos[y[i]]
    x = np.clip((x + 3) / 6 * 255, 0, 255).astype(np.uint8)
    n_test = n // 8
    return {"train_x": x[n_test:], "train_y": y[n_test:].astype(np.int64), "test_x": x[:n_test],
            "test_y": y[:n_test].astype(np.int64), "classes": tuple(f"class_{i}" for i in range(k))}


DATASETS: Registry[Callable[[Mapping[str, Any]], dict]] = Registry("data.name")
DATASETS.register("fashion_mnist", _fashion_mnist)
DATASETS.register("cifar10", _cifar10)
DATASETS.register("imagefolder", _timm_dataset)
DATASETS.register("timm", _timm_dataset)
DATASETS.register("synthetic", _synthetic)
DATASETS.register("context", make_context_task)


def _to_float(x: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    t = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True)).float().div_(255.0)
    return t.sub_(mean[:, None, None]).div_(std[:, None, None])


@dataclass(frozen=True)
class SplitOptions:
    """The ``data`` keys every dataset shares for its splits, their types and defaults (:mod:`gcnas.schema`)."""

    val_size: Optional[int] = key(None, ge=1)      # held out of the training images for validation; null: a tenth
    train_subset: Optional[int] = key(None, ge=1)  # proxy fidelity: training images a trial uses; null: all
    val_subset: Optional[int] = key(None, ge=1)    # validation images a trial uses; null: all
    split_seed: int = key(0, ge=0)


def _split_indices(n: int, cfg: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices): validation held out of the training images by ``data.split_seed``,
    then the proxy subsets; the same lists for every trial and worker."""
    split = read_known(SplitOptions, cfg, "data")
    order = np.random.default_rng(split.split_seed).permutation(n)
    val_size = split.val_size or max(1, n // 10)
    if not val_size < n:
        raise ConfigError(f"data.val_size: must be between 1 and {n - 1} for {name}; got {val_size}")
    val_idx, train_idx = order[:val_size], order[val_size:]
    if split.train_subset:
        train_idx = train_idx[: split.train_subset]
    if split.val_subset:
        val_idx = val_idx[: split.val_subset]
    return train_idx, val_idx


def _fits_in_memory(opts: StreamOptions, images: int, input_size: tuple[int, int, int]) -> bool:
    if opts.in_memory != "auto":
        return bool(opts.in_memory)
    return opts.aug == "none" and images * int(np.prod(input_size)) * 4 <= IN_MEMORY_LIMIT_BYTES


def load_data(cfg: Mapping[str, Any], *, backbone_data: Optional[Mapping[str, Any]] = None) -> DataSplits:
    """Load the dataset a ``data`` config names, with subsets for proxy fidelity.

    Keys: ``name``; ``root``; ``download``; ``val_size`` (images held out of the training data for validation);
    ``train_subset`` / ``val_subset`` (null: all); ``split_seed``; the pipeline's ``in_memory``, ``workers``,
    ``aug``, ``on_bad_image``, ``image_size`` (:class:`~gcnas.data.stream.StreamOptions`); dataset-specific keys (see
    ``conf/data``). ``backbone_data`` is the backbone's ``timm.data.resolve_data_config``: images read from files are
    resized to its input size unless ``data.image_size`` says otherwise, with its interpolation and crop fraction.
    """
    name = cfg.get("name")
    reader = DATASETS.get(name)
    opts = StreamOptions.from_mapping(cfg)
    raw = reader(cfg)
    if "source" in raw:
        if cfg.get("classes") is not None:
            raise ConfigError(f"data.classes: keeping a subset of classes works for the array data sets "
                              f"(fashion_mnist, cifar10, synthetic), not data={name}; give a folder of those classes")
        return _load_files(name, cfg, opts, raw, backbone_data or {})
    fingerprint = array_fingerprint(raw["train_x"], raw["train_y"])  # the data set itself, before class subsets
    raw = _keep_classes(raw, cfg.get("classes"))
    train_x, train_y = raw["train_x"], np.asarray(raw["train_y"], dtype=np.int64)
    train_idx, val_idx = _split_indices(len(train_x), cfg, name)
    sample = train_x[train_idx[: min(len(train_idx), 10000)]].astype(np.float32) / 255.0
    mean = torch.tensor(sample.mean(axis=(0, 2, 3)), dtype=torch.float32)
    std = torch.tensor(sample.std(axis=(0, 2, 3)), dtype=torch.float32).clamp_min(1e-3)
    test_x = raw.get("test_x")
    test_y = None if raw.get("test_y") is None else np.asarray(raw["test_y"], dtype=np.int64)
    num_classes = max(int(max(train_y.max(), test_y.max() if test_y is not None else 0)) + 1,
                      len(raw.get("classes") or ()))
    input_size = tuple(int(v) for v in train_x.shape[1:])
    classes = tuple(raw.get("classes") or ())
    images = len(train_idx) + len(val_idx) + (0 if test_x is None else len(test_x))
    mean_t, std_t = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    c, size = input_size[0], input_size[-1]
    # the arrays are the images at their own size: evaluation neither resizes nor crops (native)
    preprocessing = eval_config(size, c, mean_t, std_t, backbone_data, native=True)
    described = dict(num_classes=num_classes, input_size=input_size, classes=classes, mean=mean_t, std=std_t,
                     identity=data_identity(cfg, fingerprint=fingerprint, classes=classes, num_classes=num_classes,
                                            input_size=input_size, train=len(train_idx), val=len(val_idx),
                                            test=None if test_x is None else len(test_x)),
                     preprocessing=preprocessing)
    if _fits_in_memory(opts, images, input_size):
        test = None if test_x is None else TensorSplit(_to_float(test_x, mean, std), torch.from_numpy(test_y))
        return DataSplits(
            name=name,
            train=TensorSplit(_to_float(train_x[train_idx], mean, std), torch.from_numpy(train_y[train_idx])),
            val=TensorSplit(_to_float(train_x[val_idx], mean, std), torch.from_numpy(train_y[val_idx])),
            test=test, **described)
    # streamed (augmented): the arrays as PIL images through timm's transforms, at their own size
    train_tf, eval_tf = make_transforms(size, c, mean_t, std_t, opts.aug, backbone_data, native=True)
    source = ArraySource(train_x, train_y, f"{name} train")
    split = _streamer("L" if c == 1 else "RGB", opts, set())
    test = None if test_x is None else split(ArraySource(test_x, test_y, f"{name} test"), np.arange(len(test_x)),
                                             eval_tf)
    return DataSplits(name=name, train=split(source, train_idx, train_tf), val=split(source, val_idx, eval_tf),
                      test=test, **described)


def _keep_classes(raw: Mapping[str, Any], keep) -> Mapping[str, Any]:
    """``data.classes``: only these classes' images, labelled 0..k-1 in the order given (a transfer task's half)."""
    if keep is None:
        return raw
    n = max(int(np.max(raw["train_y"])) + 1, len(raw.get("classes") or ()))
    if (not isinstance(keep, (list, tuple)) or len(keep) < 2 or len(set(keep)) != len(keep)
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < n for c in keep)):
        raise ConfigError(f"data.classes: must be a list of at least 2 distinct class indices in [0, {n - 1}] or "
                          f"null (every class); got {keep!r}")
    remap = np.full(n, -1, dtype=np.int64)
    remap[list(keep)] = np.arange(len(keep))
    out = dict(raw)
    for xs, ys in (("train_x", "train_y"), ("test_x", "test_y")):
        if out.get(ys) is None:
            continue
        y = remap[np.asarray(out[ys], dtype=np.int64)]
        mask = y >= 0
        out[xs], out[ys] = out[xs][mask], y[mask]
    names = tuple(raw.get("classes") or ())
    out["classes"] = tuple(names[c] for c in keep) if names else ()
    return out


def _streamer(mode: str, opts: StreamOptions, warned: set) -> Callable[[ImageSource, np.ndarray, Callable],
                                                                         StreamSplit]:
    """Builds a data set's streamed splits: one worker count, one bad-image policy, one set of files warned about."""
    workers = opts.worker_count()

    def split(src: ImageSource, idx: np.ndarray, tf: Callable) -> StreamSplit:
        return StreamSplit(SourceImages(src, idx, tf, mode), workers, opts.on_bad_image, warned)

    return split


def _load_files(name: str, cfg: Mapping[str, Any], opts: StreamOptions, raw: Mapping[str, Any],
                backbone_data: Mapping[str, Any]) -> DataSplits:
    """A timm-read source: streamed from disk, or decoded once into memory when small (``data.in_memory``)."""
    source, held, classes = raw["source"], raw["held"], tuple(raw["classes"])
    if len(source) < 2:
        raise ConfigError(f"data.root: {len(source)} training image(s) found; need at least 2")
    size = opts.image_size or int((backbone_data.get("input_size") or (3, 224, 224))[-1])
    channels = cfg.get("in_chans")
    if channels is None:
        channels = 1 if source.load(0)[0].mode in ("L", "1", "I", "I;16", "F") else 3
    if channels not in (1, 3):
        raise ConfigError(f"data.in_chans: must be 1 (grey) or 3 (RGB); got {channels!r}")
    mode = "L" if channels == 1 else "RGB"
    train_idx, val_idx = _split_indices(len(source), cfg, name)
    warned: set[str] = set()
    mean, std = measure_mean_std(source, train_idx, size, mode, opts.worker_count(), warned=warned)
    train_tf, eval_tf = make_transforms(size, channels, mean, std, opts.aug, backbone_data)
    split = _streamer(mode, opts, warned)
    train, val = split(source, train_idx, train_tf), split(source, val_idx, eval_tf)
    test = None if held is None else split(held, np.arange(len(held)), eval_tf)
    input_size = (channels, size, size)
    images = len(train_idx) + len(val_idx) + (0 if held is None else len(held))
    if _fits_in_memory(opts, images, input_size):
        log.info("decoding %d images of %s into memory (%s; data.in_memory=%s)", images, name,
                 "x".join(map(str, input_size)), opts.in_memory)
        train, val = decode_all(train), decode_all(val)
        test = None if test is None else decode_all(test)
    num_classes = len(classes) or 1 + int(max(source.load(i)[1] for i in range(min(len(source), 64))))
    identity = data_identity(cfg, fingerprint=source.fingerprint(), classes=classes, num_classes=num_classes,
                             input_size=input_size, train=len(train_idx), val=len(val_idx),
                             test=None if held is None else len(held))
    return DataSplits(name=name, train=train, val=val, test=test, num_classes=num_classes, input_size=input_size,
                      classes=classes, mean=mean, std=std, identity=identity,
                      preprocessing=eval_config(size, channels, mean, std, backbone_data))
