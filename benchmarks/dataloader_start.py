"""What a DataLoader worker start costs, by the process it starts from and its start method, side by side in one run.

    python -m benchmarks.dataloader_start [--images 256] [--passes 7]

gcnas's streamed splits start their DataLoader workers again for every epoch and evaluation, so a start method's
cost is paid 8 times by a 4-epoch proxy trial. Under Hydra's joblib launcher a search worker is a process of joblib's
loky backend, where only ``fork`` can start DataLoader's workers (``gcnas.data.stream.worker_start_method``). This
times one pass over ``--images`` Fashion-MNIST PNGs (28x28, written once under ``benchmarks/.data``) with one
DataLoader worker: in a plain process with its default start method, ``spawn`` and ``forkserver``, and in a loky
worker with gcnas's choice. Prints a Markdown table (median, min and max of ``--passes`` passes) and the machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def folder(images: int) -> Path:
    """``images`` Fashion-MNIST training images as PNG class folders (written once)."""
    from PIL import Image

    from gcnas.data.datasets import FASHION_MNIST_DEFAULT_ROOT, read_idx

    root = HERE / ".data" / f"fashion-png-{images}"
    if not root.is_dir():
        x = read_idx(Path(FASHION_MNIST_DEFAULT_ROOT) / "train-images-idx3-ubyte.gz")
        y = read_idx(Path(FASHION_MNIST_DEFAULT_ROOT) / "train-labels-idx1-ubyte.gz")
        tmp = root.with_name(root.name + ".partial")
        for i in range(images):
            (tmp / str(y[i])).mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(tmp / str(y[i]) / f"{i}.png")
        tmp.rename(root)
    return root


def passes(root: str, method: str | None, reps: int) -> tuple[str, int, float, float, float]:
    """(start method used, images per pass, median, min, max seconds per pass); ``method`` None: gcnas's choice."""
    import multiprocessing

    import torch
    from torch.utils.data import DataLoader

    from gcnas.data.stream import SourceImages, collate_readable, make_transforms, timm_sources, worker_start_method

    torch.set_num_threads(1)
    source, _, _ = timm_sources("", root)
    transform, _ = make_transforms(28, 1, (0.5,), (0.5,), "none", native=True)
    images = SourceImages(source, np.arange(len(source)), transform, "L")
    context = method or worker_start_method()
    used = context or f"default ({multiprocessing.get_start_method()})"
    times, n = [], 0
    for _ in range(reps):
        t = time.perf_counter()
        loader = DataLoader(images, batch_size=64, num_workers=1, collate_fn=collate_readable,
                            multiprocessing_context=context)
        n = sum(len(y) for _, y, _ in loader)
        times.append(time.perf_counter() - t)
    return used, n, statistics.median(times), min(times), max(times)


def in_loky(root: str, reps: int):
    from joblib import Parallel, delayed

    return Parallel(n_jobs=2, backend="loky")([delayed(passes)(root, None, reps), delayed(time.sleep)(0)])[0]


def main(argv=None) -> None:
    from gcnas.machine import describe_machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--passes", type=int, default=7)
    args = ap.parse_args(argv)
    root = str(folder(args.images))
    print(describe_machine(), "\n")
    print("| process | start method | images | s per pass (median) | min | max |\n|---|---|---:|---:|---:|---:|")
    rows = [("single run", passes(root, None, args.passes)), ("single run", passes(root, "spawn", args.passes)),
            ("single run", passes(root, "forkserver", args.passes)),
            ("joblib (loky) worker", in_loky(root, args.passes))]
    for where, (used, n, med, lo, hi) in rows:
        print(f"| {where} | {used} | {n} | {med:.2f} | {lo:.2f} | {hi:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
