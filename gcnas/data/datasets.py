"""Dataset readers. Each returns :class:`DataSplits` (train / validation / test tensors in memory)."""
from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from gcnas.data.context import make_context_task
from gcnas.errors import ConfigError
from gcnas.registry import Registry

__all__ = ["DataSplits", "DataUnavailableError", "DATASETS", "load_data", "read_idx"]

FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


class DataUnavailableError(ConfigError, FileNotFoundError):
    """The dataset's files are not where the config says; the message says how to get them."""


@dataclass
class DataSplits:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: Optional[torch.Tensor]
    test_y: Optional[torch.Tensor]
    num_classes: int
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()  # per channel, of pixel values scaled to [0, 1]; the inputs are (x - mean) / std
    std: tuple[float, ...] = ()

    @property
    def in_chans(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.train_x.shape[1:])  # type: ignore[return-value]


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


def _imagefolder(cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from PIL import Image

    root = Path(cfg.get("root") or "")
    if not root.is_dir():
        raise DataUnavailableError(f"data.root: image folder {str(root)!r} does not exist; it must hold one "
                                   "sub-folder per class (optionally under train/ and val/)")
    size = int(cfg.get("image_size") or 64)
    channels = int(cfg.get("in_chans") or 3)
    mode = "L" if channels == 1 else "RGB"
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff"}

    def scan(folder: Path, classes: Optional[list[str]] = None):
        classes = classes or sorted(d.name for d in folder.iterdir() if d.is_dir())
        xs, ys = [], []
        for label, cls in enumerate(classes):
            for f in sorted((folder / cls).iterdir() if (folder / cls).is_dir() else []):
                if f.suffix.lower() in exts:
                    with Image.open(f) as im:
                        im = im.convert(mode).resize((size, size), Image.BILINEAR)
                        a = np.asarray(im, dtype=np.uint8)
                    xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
                    ys.append(label)
        if not xs:
            raise DataUnavailableError(f"data.root: no images found under {folder} (classes {classes})")
        return np.stack(xs), np.asarray(ys, dtype=np.int64), classes

    if (root / "train").is_dir():
        train_x, train_y, classes = scan(root / "train")
        out = {"train_x": train_x, "train_y": train_y, "classes": tuple(classes)}
        held = root / "val" if (root / "val").is_dir() else root / "test" if (root / "test").is_dir() else None
        if held is not None:
            out["test_x"], out["test_y"], _ = scan(held, classes)
        return out
    train_x, train_y, classes = scan(root)
    return {"train_x": train_x, "train_y": train_y, "classes": tuple(classes)}


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
DATASETS.register("imagefolder", _imagefolder)
DATASETS.register("synthetic", _synthetic)
DATASETS.register("context", make_context_task)


def _to_float(x: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    t = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True)).float().div_(255.0)
    return t.sub_(mean[:, None, None]).div_(std[:, None, None])


def load_data(cfg: Mapping[str, Any]) -> DataSplits:
    """Load the dataset a ``data`` config names, with subsets for proxy fidelity.

    Keys: ``name``; ``root``; ``download``; ``val_size`` (images held out of the training data for validation);
    ``train_subset`` / ``val_subset`` (null: all); ``split_seed``; dataset-specific keys (see ``conf/data``).
    """
    name = cfg.get("name")
    reader = DATASETS.get(name)
    raw = reader(cfg)
    train_x, train_y = raw["train_x"], np.asarray(raw["train_y"], dtype=np.int64)
    rng = np.random.default_rng(int(cfg.get("split_seed", 0)))
    order = rng.permutation(len(train_x))
    val_size = int(cfg.get("val_size") or max(1, len(train_x) // 10))
    if not 0 < val_size < len(train_x):
        raise ConfigError(f"data.val_size: must be between 1 and {len(train_x) - 1} for {name}; got {val_size}")
    val_idx, train_idx = order[:val_size], order[val_size:]
    if cfg.get("train_subset"):
        train_idx = train_idx[: int(cfg["train_subset"])]
    if cfg.get("val_subset"):
        val_idx = val_idx[: int(cfg["val_subset"])]

    sample = train_x[train_idx[: min(len(train_idx), 10000)]].astype(np.float32) / 255.0
    mean = torch.tensor(sample.mean(axis=(0, 2, 3)), dtype=torch.float32)
    std = torch.tensor(sample.std(axis=(0, 2, 3)), dtype=torch.float32).clamp_min(1e-3)
    test_x = raw.get("test_x")
    test_y = raw.get("test_y")
    num_classes = int(max(train_y.max(), test_y.max() if test_y is not None else 0)) + 1
    return DataSplits(
        name=name,
        train_x=_to_float(train_x[train_idx], mean, std), train_y=torch.from_numpy(train_y[train_idx]),
        val_x=_to_float(train_x[val_idx], mean, std), val_y=torch.from_numpy(train_y[val_idx]),
        test_x=None if test_x is None else _to_float(test_x, mean, std),
        test_y=None if test_y is None else torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
        num_classes=max(num_classes, len(raw.get("classes") or ())),
        classes=tuple(raw.get("classes") or ()),
        mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
    )
