"""Images read through timm's data pipeline and streamed from disk by DataLoader worker processes.

* Sources: a folder (one sub-folder per class, optional ``train/`` and ``val/`` splits) or a ``.tar`` of one, opened
  with ``timm.data.create_dataset``; torchvision datasets by timm's names (``torch/cifar10``, ...); Hugging Face
  data sets (``hfds/<name>``, with the datasets package installed); and the array
  datasets (Fashion-MNIST, CIFAR-10, the generated ones) when they are streamed for augmentation.
* Transforms: ``timm.data.create_transform`` at ``data.image_size`` with the backbone's interpolation and crop
  fraction (from ``timm.data.resolve_data_config``), normalised with the training images' own mean and std;
  ``data.aug``: ``none``, ``basic`` (random-resized crop and flip) or a timm auto-augment string such as
  ``rand-m9-mstd0.5``. Evaluation resizes and centre-crops as timm does.
* Unreadable images (truncated, not an image): a worker hands back the file's name instead of raising, and the
  training process skips it with one warning per file (counted in the result), or stops with one line naming the
  file under ``data.on_bad_image=error``. Grey, RGBA, CMYK and palette images are converted to the model's channels.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from gcnas.data.identity import spread_indices, array_fingerprint, files_fingerprint, sampled_sizes
from gcnas.errors import ConfigError
from gcnas.machine import usable_cpus
from gcnas.schema import key, read_known

__all__ = ["DataUnavailableError", "BadImageError", "SourceImages", "StreamOptions", "StreamSplit", "ImageSource",
           "ArraySource", "timm_sources", "make_transforms", "eval_config", "measure_mean_std", "decode_all",
           "worker_start_method", "collate_readable", "IN_MEMORY_LIMIT_BYTES", "TORCH_DATASETS"]

log = logging.getLogger("gcnas.data")

IN_MEMORY_LIMIT_BYTES = 1 << 30  # data.in_memory=auto decodes into memory below this many bytes of float32 pixels
AUGMENTATIONS = ("none", "basic")  # or a timm auto-augment string (rand-..., augmix-..., original, v0, ...)
TORCH_DATASETS = ("cifar10", "cifar100", "mnist", "kmnist", "fashion_mnist", "qmnist")  # timm's torch/<name>
_HELD_OUT = ("val", "valid", "validation", "test")  # a folder's held-out split, in the order looked for


class DataUnavailableError(ConfigError, FileNotFoundError):
    """The dataset's files are not where the config says; the message says how to get them."""


class BadImageError(ConfigError):
    """An unreadable image under ``data.on_bad_image=error``."""


@dataclass(frozen=True)
class StreamOptions:
    """The ``data`` keys of the streaming pipeline, their types and defaults (:mod:`gcnas.schema`)."""

    in_memory: Union[bool, str] = key("auto", words=("auto",), expect="auto, true or false")
    workers: Union[int, str] = key("auto", ge=0, words=("auto",))  # DataLoader processes; auto: half the cores
    aug: str = "none"            # none | basic | a timm auto-augment string
    on_bad_image: str = key("warn", words=("warn", "error"))
    image_size: Optional[int] = key(None, ge=8)  # null: the backbone's input size

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "StreamOptions":
        opts = read_known(cls, {k: v for k, v in cfg.items() if v is not None}, "data")
        if not opts.aug:
            raise ConfigError("data.aug: must be none, basic or a timm auto-augment string (e.g. rand-m9-mstd0.5); "
                              "got ''")
        if opts.aug not in AUGMENTATIONS:
            _check_auto_augment(opts.aug)
        if opts.in_memory is True and opts.aug != "none":
            raise ConfigError(f"data.in_memory: true decodes every image once, so it cannot augment; with "
                              f"data.aug={opts.aug} use data.in_memory=false or auto")
        return opts

    def worker_count(self) -> int:
        if self.workers != "auto":
            return int(self.workers)
        return min(8, usable_cpus() // 2)


def _check_auto_augment(aug: str) -> None:
    from PIL import Image
    from timm.data import create_transform

    try:
        create_transform(32, is_training=True, auto_augment=aug)(Image.new("RGB", (32, 32)))
    except Exception as e:  # timm raises assorted errors for a malformed string
        raise ConfigError(f"data.aug: {aug!r} is not none, basic or a timm auto-augment string (rand-m9-mstd0.5, "
                          f"augmix-m5-w4-d2, original, v0, ...): {type(e).__name__}: {e}") from None


class ImageSource:
    """Random access to (PIL image, label) by index, and a name for each index (shown when an image is unreadable)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int):
        raise NotImplementedError

    def name(self, index: int) -> str:
        return f"image {index}"

    def fingerprint(self) -> str:
        """A cheap hash of the images and labels (:mod:`gcnas.data.identity`); this base knows only their count."""
        return files_fingerprint([], None, [("images", len(self))])


class ArraySource(ImageSource):
    """uint8 arrays (N, C, H, W) as PIL images: the array datasets, streamed when they are augmented."""

    def __init__(self, x: np.ndarray, y: np.ndarray, what: str) -> None:
        self.x, self.y, self.what = x, y, what

    def __len__(self) -> int:
        return len(self.x)

    def load(self, index: int):
        from PIL import Image

        a = self.x[index]
        return Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)), int(self.y[index])

    def name(self, index: int) -> str:
        return f"{self.what}[{index}]"

    def fingerprint(self) -> str:
        return array_fingerprint(self.x, self.y)


class _TimmFolderSource(ImageSource):
    """A timm ``ImageDataset`` (folder or tar reader), read through its reader so a bad file can be named."""

    def __init__(self, ds) -> None:
        self.reader = ds.reader

    def __len__(self) -> int:
        return len(self.reader)

    def load(self, index: int):
        from PIL import Image

        f, target = self.reader[index][:2]
        try:
            img = Image.open(f)
            img.load()
        finally:
            if hasattr(f, "close"):
                f.close()
        return img, int(target)

    def name(self, index: int) -> str:
        return str(self.reader.filename(index, absolute=True))

    def fingerprint(self) -> str:
        """Every file's name relative to the root and its label, and a sample of the files' sizes (a folder's from
        the file system, a tar's from its index)."""
        names = [str(n) for n in self.reader.filenames(absolute=False)]
        samples = getattr(self.reader, "samples", None)  # (file or tar member, ...) in timm's file readers
        labels = getattr(self.reader, "targets", None)  # timm's tar-in-tar and HF readers keep them apart
        if labels is None and samples is not None:
            labels = [s[1] for s in samples]
        labels = None if labels is None else [-1 if t is None else int(t) for t in labels]
        if samples is not None and len(samples) and hasattr(samples[0][0], "size"):  # tar members know their size
            sizes = [(names[i], int(samples[i][0].size)) for i in spread_indices(len(samples))]
        else:
            paths = [str(n) for n in self.reader.filenames(absolute=True)] if samples is not None else []
            sizes = [(names[i], size) for i, size in sampled_sizes(paths)]
        return files_fingerprint(names, labels, sizes)


class _TorchSource(ImageSource):
    """A torchvision dataset as timm's ``torch/<name>`` creates it (its own transform unset: ours is applied)."""

    def __init__(self, ds, what: str) -> None:
        ds.transform = None
        self.ds, self.what = ds, what

    def __len__(self) -> int:
        return len(self.ds)

    def load(self, index: int):
        img, target = self.ds[index]
        return img, int(target)

    def fingerprint(self) -> str:
        data, targets = getattr(self.ds, "data", None), getattr(self.ds, "targets", None)
        if data is None or targets is None:
            return super().fingerprint()
        return array_fingerprint(np.asarray(data), np.asarray(targets))

    def name(self, index: int) -> str:
        return f"{self.what}[{index}]"


def _has_images(folder: Path, exts: Sequence[str]) -> bool:
    return any(p.suffix.lower() in exts for p in folder.rglob("*") if p.is_file())


def timm_sources(dataset: str, root: str, download: bool = False) -> tuple[ImageSource, Optional[ImageSource],
                                                                          tuple[str, ...]]:
    """(training source, held-out source or None, class names) for a timm dataset name and root."""
    from timm.data import create_dataset

    prefix = dataset.partition("/")[0].lower() if "/" in dataset else ""
    if prefix == "torch":
        return _torch_sources(dataset, root, download)
    if prefix == "hfds":
        return _hfds_sources(dataset, root or None, download)
    if prefix:
        raise ConfigError(f"data.dataset: {dataset!r} is not a dataset gcnas reads; valid are \"\" (a folder of "
                          f"class sub-folders, or a .tar of one), torch/<name> ({', '.join(TORCH_DATASETS)}) and "
                          "hfds/<name> (a Hugging Face data set, with the datasets package)")
    path = Path(root)
    if not path.exists():
        raise DataUnavailableError(f"data.root: {root!r} does not exist; it must be a folder holding one sub-folder "
                                   "per class (optionally under train/ and val/), or a .tar of such a folder")
    if path.is_file():
        if path.suffix != ".tar":
            raise ConfigError(f"data.root: {root!r} is a file but not a .tar; give a folder or a .tar of one")
        # no cached tar handle: one opened before DataLoader forks its workers would be shared by all of them
        ds = create_dataset("", root=str(path), split="train", cache_tarfiles=False)
        index = ds.reader.class_name_to_idx
        classes = tuple(sorted(index, key=index.get))
        return _TimmFolderSource(ds), None, classes
    return _folder_sources(path)


def _torch_sources(dataset: str, root: str, download: bool) -> tuple[ImageSource, ImageSource, tuple[str, ...]]:
    """``torch/<name>``: a torchvision data set timm opens by name; its test split is the held-out source."""
    from timm.data import create_dataset

    name = dataset.split("/", 1)[1].lower()
    if name not in TORCH_DATASETS:
        raise ConfigError(f"data.dataset: torch/{name} is not one timm opens by name; valid are "
                          f"{', '.join('torch/' + n for n in TORCH_DATASETS)}")
    try:
        train = create_dataset(dataset, root=root, split="train", download=download)
        test = create_dataset(dataset, root=root, split="validation", download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        raise DataUnavailableError(f"data.root: {dataset} is not in {root!r} ({e}); point data.root at its "
                                   "folder or set data.download=true") from None
    classes = tuple(str(c) for c in getattr(train, "classes", ()))
    return _TorchSource(train, f"{dataset} train"), _TorchSource(test, f"{dataset} test"), classes


def _folder_sources(path: Path) -> tuple[ImageSource, Optional[ImageSource], tuple[str, ...]]:
    """A folder of class sub-folders, optionally under ``train/`` beside a held-out ``val/`` (:data:`_HELD_OUT`)."""
    from timm.data import create_dataset, get_img_extensions

    exts = get_img_extensions()
    train_dir = path / "train" if (path / "train").is_dir() else path
    held_dir = next((path / h for h in _HELD_OUT if (path / h).is_dir()), None) if train_dir != path else None
    class_dirs = sorted(d for d in train_dir.iterdir() if d.is_dir() and d.name not in _HELD_OUT)
    if not class_dirs:
        raise ConfigError(f"data.root: {train_dir} has no class sub-folders; put each class's images in a folder "
                          "named after it")
    empty = [d.name for d in class_dirs if not _has_images(d, exts)]
    if empty:
        raise ConfigError(f"data.root: class folder {empty[0]!r} in {train_dir} holds no images (timm reads "
                          f"{', '.join(exts)}); remove it or add its images")
    classes = tuple(d.name for d in class_dirs)
    class_map = {c: i for i, c in enumerate(classes)}
    train = create_dataset("", root=str(train_dir), split="train", search_split=False, class_map=class_map)
    held = None
    if held_dir is not None:
        held_classes = {d.name for d in held_dir.iterdir() if d.is_dir() and _has_images(d, exts)}
        unknown = sorted(held_classes - set(classes))
        if unknown:
            raise ConfigError(f"data.root: class {unknown[0]!r} is in {held_dir.name}/ but not in "
                              f"{train_dir.name}/; a model cannot learn a class it never trains on (train classes: "
                              f"{', '.join(classes)})")
        absent = [c for c in classes if c not in held_classes]
        if absent:
            log.warning("data.root: %s/ has no images of class%s %s: its test accuracy does not cover %s",
                        held_dir.name, "es" if len(absent) > 1 else "", ", ".join(absent),
                        "them" if len(absent) > 1 else "it")
        held = _TimmFolderSource(create_dataset("", root=str(held_dir), split="validation", search_split=False,
                                                class_map=class_map))
    return _TimmFolderSource(train), held, classes


def _hfds_sources(dataset: str, root: Optional[str], download: bool) -> tuple[ImageSource, Optional[ImageSource],
                                                                             tuple[str, ...]]:
    """``hfds/<name>``: a Hugging Face data set through timm's reader (``data.root``: its cache folder). ``<name>``
    may be a local folder of class sub-folders (the datasets package's imagefolder builder, no network)."""
    from timm.data import create_dataset

    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        raise ConfigError(f"data.dataset: {dataset} needs the datasets package (pip install 'datasets>=5,<6', or "
                          "gcnas's [hf] extra)")
    try:
        train = create_dataset(dataset, root=root, split="train", download=download)
    except FileNotFoundError as e:
        raise DataUnavailableError(f"data.dataset: {dataset}: {e}") from None
    held = None
    for split in ("validation", "test"):
        try:
            held = _TimmFolderSource(create_dataset(dataset, root=root, split=split, download=download))
            break
        except (ValueError, KeyError):  # the data set has no such split
            continue
    index = train.reader.class_to_idx
    return _TimmFolderSource(train), held, tuple(sorted(index, key=index.get))


class SourceImages(Dataset):
    """Indices of a source through a transform; an unreadable image comes back as its name, not an exception."""

    def __init__(self, source: ImageSource, indices: np.ndarray, transform: Callable, mode: str) -> None:
        self.source, self.indices, self.transform, self.mode = source, indices, transform, mode

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        try:
            img, label = self.source.load(index)
            if img.mode != self.mode:
                img = img.convert("RGBA").convert(self.mode) if img.mode == "P" else img.convert(self.mode)
            return self.transform(img), label, None
        except (OSError, ValueError, SyntaxError) as e:  # PIL: truncated, not an image, broken header
            return None, -1, f"{self.source.name(index)}: {type(e).__name__}: {e}"


def worker_start_method() -> Optional[str]:
    """How DataLoader starts its worker processes: None (DataLoader's default, the process's start method) where that
    is one of Python's own, else ``fork``.

    A child process inherits its parent's start method (``BaseProcess._bootstrap`` forces it), so in a worker of
    joblib's loky backend, which Hydra's joblib launcher always uses, the start method is ``loky``. loky's context
    starts only loky's own process class, so DataLoader's plain ``multiprocessing.Process`` fails there (``'Process'
    object has no attribute 'env'``; joblib issue 1104, open), and ``spawn`` and ``forkserver`` children fail too: the
    start method they are handed to set up is ``loky``, which a fresh interpreter does not know. ``fork`` alone needs
    nothing from the parent's start method, and it is also the cheap one: DataLoader starts its workers again for
    every epoch and evaluation, and a forked worker starts in milliseconds, as in a single run on Linux, where a spawned
    one imports torch and timm and unpickles the data set each time (seconds per epoch; docs/scale-out.md measures
    both). A start method set with ``multiprocessing.set_start_method`` is kept."""
    import multiprocessing

    current = multiprocessing.get_start_method(allow_none=True)  # allow_none: reading it must not fix it
    standard = multiprocessing.get_all_start_methods()
    if current is None or current in standard:
        return None
    return "fork" if "fork" in standard else standard[0]


def collate_readable(items):
    """The readable images batched by torch's ``default_collate`` (in a worker it stacks straight into shared memory,
    so the batch is not copied again to reach the training process), and the unreadable ones' messages."""
    good = [(x, y) for x, y, bad in items if bad is None]
    bad = [b for _, _, b in items if b is not None]
    if not good:
        return None, None, bad
    x, y = default_collate(good)
    return x, y, bad


class StreamSplit:
    """A split read from its source as it is batched, by ``workers`` DataLoader processes (pinned memory on CUDA)."""

    streamed = True

    def __init__(self, images: SourceImages, workers: int, on_bad_image: str = "warn",
                 warned: Optional[set[str]] = None) -> None:
        self.images, self.workers, self.on_bad_image = images, workers, on_bad_image
        self._warned: set[str] = set() if warned is None else warned  # shared by a dataset's splits: one warning
        self._bad = 0

    def __len__(self) -> int:
        return len(self.images)

    def take_bad_count(self) -> int:
        """Unreadable images skipped since the last call."""
        n, self._bad = self._bad, 0
        return n

    def _skip(self, message: str) -> None:
        if self.on_bad_image == "error":
            raise BadImageError(f"data.on_bad_image=error: unreadable image {message} (data.on_bad_image=warn skips "
                                "such images with a warning)")
        self._bad += 1
        file = message.split(": ", 1)[0]
        if file not in self._warned:
            self._warned.add(file)
            log.warning("skipped an unreadable image: %s", message)

    def batches(self, batch_size: int, order: Optional[torch.Tensor] = None,
                device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = torch.device(device)
        sampler = order.tolist() if order is not None else range(len(self))
        loader = DataLoader(self.images, batch_size=batch_size, sampler=sampler, num_workers=self.workers,
                            collate_fn=collate_readable, pin_memory=device.type == "cuda",
                            multiprocessing_context=worker_start_method() if self.workers else None)
        for x, y, bad in loader:
            for message in bad:
                self._skip(message)
            if y is not None:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for x, y in self.batches(min(n, 256), torch.arange(min(n, len(self)))):
            xs.append(x)
            ys.append(y)
        return torch.cat(xs)[:n], torch.cat(ys)[:n]


def make_transforms(size: int, channels: int, mean: Sequence[float], std: Sequence[float], aug: str,
                    backbone_data: Optional[Mapping[str, Any]] = None, native: bool = False) -> tuple[Callable,
                                                                                                    Callable]:
    """(training transform, evaluation transform) from timm's factory. ``backbone_data`` is the backbone's
    ``timm.data.resolve_data_config`` (interpolation, crop fraction); ``native``: the images already have ``size``
    (no crop margin at evaluation)."""
    from timm.data import create_transform

    cfg = eval_config(size, channels, mean, std, backbone_data, native)
    evaluate = create_transform(is_training=False, **cfg)
    if aug == "none":
        return evaluate, evaluate
    train = create_transform(is_training=True, color_jitter=0.0, auto_augment=None if aug == "basic" else aug,
                             input_size=cfg["input_size"], interpolation=cfg["interpolation"], mean=cfg["mean"],
                             std=cfg["std"])
    return train, evaluate


def eval_config(size: int, channels: int, mean: Sequence[float], std: Sequence[float],
                backbone_data: Optional[Mapping[str, Any]] = None, native: bool = False) -> dict[str, Any]:
    """The evaluation transform's settings, as timm's data config names them (``input_size``, ``interpolation``,
    ``crop_pct``, ``crop_mode``, ``mean``, ``std``): ``create_transform(is_training=False, **eval_config(...))`` is
    the transform gcnas validates with, and a model whose ``pretrained_cfg`` holds them is fed the same way by
    ``timm.data.resolve_data_config`` (see :attr:`gcnas.data.DataSplits.preprocessing`). ``native``: the images
    already have ``size`` (no crop margin)."""
    from timm.data import DEFAULT_CROP_PCT

    bd = dict(backbone_data or {})
    crop_pct = 1.0 if native else bd.get("crop_pct")
    return {"input_size": (int(channels), int(size), int(size)),
            "interpolation": bd.get("interpolation") or "bilinear",
            "crop_pct": float(DEFAULT_CROP_PCT if crop_pct is None else crop_pct),
            "crop_mode": bd.get("crop_mode") or "center",
            "mean": tuple(float(v) for v in mean), "std": tuple(float(v) for v in std)}


def measure_mean_std(source: ImageSource, indices: np.ndarray, size: int, mode: str, workers: int,
                     limit: int = 256, warned: Optional[set[str]] = None) -> tuple[tuple[float, ...],
                                                                                    tuple[float, ...]]:
    """Per-channel mean and std of pixel values in [0, 1] over up to ``limit`` training images (evaluation resize)."""
    from timm.data import create_transform

    plain = create_transform(input_size=size, is_training=False, crop_pct=1.0, normalize=False)
    split = StreamSplit(SourceImages(source, indices[:limit], plain, mode), workers, warned=warned)
    x, _ = split.head(limit)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()  # timm's un-normalised transform gives bytes
    return (tuple(float(v) for v in x.mean(dim=(0, 2, 3))),
            tuple(max(1e-3, float(v)) for v in x.std(dim=(0, 2, 3))))


def decode_all(split: StreamSplit, batch_size: int = 256):
    """A streamed split decoded once into tensors (the in-memory path for small image folders), written into one
    preallocated tensor so the peak is the data's size, not twice it."""
    from gcnas.data.splits import TensorSplit

    x = y = None
    n = 0
    for xb, yb in split.batches(batch_size):
        if x is None:
            x = torch.empty((len(split), *xb.shape[1:]), dtype=xb.dtype)
            y = torch.empty(len(split), dtype=torch.long)
        x[n:n + len(xb)], y[n:n + len(yb)] = xb, yb
        n += len(xb)
    if x is None:
        raise ConfigError("data.root: no readable images in this split")
    return TensorSplit(x[:n], y[:n])  # a view: images skipped as unreadable leave the end unused
