"""Speed and memory of the data pipeline and the training loop, measured side by side in one run.

    python -m benchmarks.data [--images 20000] [--size 224] [--subset 2000]

Writes an ImageFolder of ``--images`` Fashion-MNIST images upscaled to ``--size`` px PNG files (once, under
``benchmarks/.data``), read as RGB as photos are, then prints one table:

1. Peak memory of a one-epoch proxy trial (``--subset`` training images, the tiny ResNet) on that folder, streamed
   (``data.in_memory=false``) vs the load-everything path (``data.in_memory=true`` with every image of the folder
   decoded, then the subset sliced, as the former loader did), each in a fresh process: peak RSS of the process
   (and, apart, of its worker), and the peak PSS of the process and its workers together, sampled every 0.2 s (RSS
   counts the pages a forked worker shares with its parent in both).
2. Training images/s of ``gcnas.train.fit`` vs a bare PyTorch loop (momentum SGD, cross-entropy) over the same
   streamed batches (``--speed-subset`` images), model and threads: one epoch and its validation each, alternating,
   the median of ``--rounds``.
3. Loader images/s: gcnas's streamed split vs torchvision's ``ImageFolder`` + ``DataLoader`` with the same transform
   and workers; the median of ``--rounds``.
4. The CPU demo's fast path (Fashion-MNIST in memory, the proxy trainer, one trial): ``fit`` vs the former
   ``train_proxy``, read from git at the commit before the loops were merged; after a warm-up, 3 runs each in
   alternating order, the fastest of each.

Ratios are the claims; wall-clock numbers vary by machine (the CPU is named in the output).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OLD_LOOP = "c4ca962"  # the last commit with gcnas/train/proxy.py (train_proxy), before one loop replaced it


def write_folder(root: Path, n: int, size: int) -> Path:
    from PIL import Image

    from gcnas.data.datasets import FASHION_MNIST_DEFAULT_ROOT, read_idx

    folder = root / f"fashion{n}-{size}"
    done = folder / "done.json"
    if done.exists():
        return folder
    x = read_idx(Path(FASHION_MNIST_DEFAULT_ROOT) / "train-images-idx3-ubyte.gz")[:n]
    y = read_idx(Path(FASHION_MNIST_DEFAULT_ROOT) / "train-labels-idx1-ubyte.gz")[:n]
    t0 = time.perf_counter()
    for i, (a, label) in enumerate(zip(x, y)):
        d = folder / "train" / f"class{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).resize((size, size), Image.BILINEAR).save(d / f"{i:05d}.png")
        if i % 2000 == 0:
            print(f"  writing PNG {i}/{n} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    done.write_text(json.dumps({"images": n, "size": size}))
    return folder


def data_cfg(folder: Path, size: int, subset: int, in_memory, workers, channels: int = 3) -> dict:
    return {"name": "imagefolder", "root": str(folder), "image_size": size, "in_chans": channels, "val_size": 256,
            "train_subset": subset, "val_subset": 256, "in_memory": in_memory, "workers": workers,
            "aug": "none", "on_bad_image": "warn"}


def model(seed: int = 0):
    from gcnas.backbones import create_backbone  # importing gcnas.backbones registers gcnas_resnet_tiny

    torch.manual_seed(seed)
    return create_backbone("gcnas_resnet_tiny", num_classes=10, in_chans=3)


def _pss_mb(pid: int) -> float:
    """Proportional set size of a process (shared pages divided among the processes sharing them), MB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    except OSError:
        pass
    return kids


class PeakPss:
    """Samples the PSS of this process plus its DataLoader workers every 0.2 s; ``peak`` is the largest sum seen.
    RSS would count the pages a forked worker shares with its parent twice; PSS counts every page once."""

    def __init__(self) -> None:
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _pss_mb(me) + sum(_pss_mb(k) for k in _children(me)))

    def __enter__(self) -> "PeakPss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def child_trial(args) -> None:
    """One fresh process: load the folder and train one proxy epoch; print peak RSS (this process, its workers) and
    the peak PSS of the process and its workers together."""
    from gcnas.data import TensorSplit, load_data
    from gcnas.train import fit

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    with PeakPss() as pss:
        if args.in_memory == "true":  # the load-everything path: every image decoded, then the subset sliced
            data = load_data(data_cfg(Path(args.folder), args.size, None, True, args.workers))
            data = dataclasses.replace(data, train=TensorSplit(data.train.x[:args.subset],
                                                               data.train.y[:args.subset]))
        else:
            data = load_data(data_cfg(Path(args.folder), args.size, args.subset, False, args.workers))
        loaded = time.perf_counter() - t0
        fit(model(), data, {"epochs": 1, "batch_size": 64, "lr": 0.05}, test=False)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"rss_mb": own, "worker_rss_mb": workers, "pss_mb": pss.peak, "load_s": loaded,
                      "total_s": time.perf_counter() - t0}))


def peak_rss(args, folder: Path, in_memory: bool) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.data", "--child", "--folder", str(folder), "--size", str(args.size),
           "--subset", str(args.subset), "--in-memory", str(in_memory).lower(), "--workers", str(args.workers),
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def loop_speed(args, folder: Path) -> tuple[float, float]:
    """(fit images/s, bare loop images/s) over the same streamed batches of ``--speed-subset`` images: one epoch and
    its validation each (fit validates every epoch, so the bare loop does too), alternating which goes first, the
    median of ``--rounds``."""
    import torch.nn.functional as F

    from gcnas.data import load_data
    from gcnas.train import fit

    cfg = data_cfg(folder, args.size, args.speed_subset, False, args.workers)
    cfg["val_subset"] = 64
    data = load_data(cfg)
    recipe = {"epochs": 1, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4, "opt": "momentum"}

    def run_fit() -> float:
        t0 = time.perf_counter()
        fit(model(), data, recipe, test=False)
        return len(data.train) / (time.perf_counter() - t0)

    def run_bare() -> float:
        m = model()
        t0 = time.perf_counter()
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        for x, y in data.train.batches(64, torch.randperm(len(data.train))):
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            for x, y in data.val.batches(512):
                (m(x).argmax(1) == y).sum().item()
        return len(data.train) / (time.perf_counter() - t0)

    rates: dict = {run_fit: [], run_bare: []}
    for i in range(args.rounds):  # alternate, so drift hits both
        for f in ((run_fit, run_bare) if i % 2 == 0 else (run_bare, run_fit)):
            rates[f].append(f())
    return statistics.median(rates[run_fit]), statistics.median(rates[run_bare])


def loader_speed(args, folder: Path) -> tuple[float, float]:
    """(gcnas streamed split images/s, torchvision ImageFolder + DataLoader images/s), same transform and workers."""
    from torch.utils.data import DataLoader, Subset
    from torchvision.datasets import ImageFolder

    from gcnas.data import load_data

    data = load_data(data_cfg(folder, args.size, args.speed_subset, False, args.workers))
    tf = data.train.images.transform
    tv = ImageFolder(str(folder / "train"), transform=tf)  # torchvision's loader: PIL, converted to RGB
    idx = list(range(len(data.train)))
    ours, theirs = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        n = sum(len(y) for _, y in data.train.batches(64, torch.randperm(len(data.train))))
        ours.append(n / (time.perf_counter() - t0))
        loader = DataLoader(Subset(tv, idx), batch_size=64, shuffle=True, num_workers=data.train.workers)
        t0 = time.perf_counter()
        n = sum(len(y) for _, y in loader)
        theirs.append(n / (time.perf_counter() - t0))
    return statistics.median(ours), statistics.median(theirs)


def demo_speed(workdir: Path) -> tuple[float, float]:
    """(seconds of one demo trial with fit, with the former train_proxy): the CPU demo's in-memory fast path."""
    from benchmarks.common import config
    from gcnas.arch import Architecture, build_model
    from gcnas.data import load_data
    from gcnas.train import fit

    src = subprocess.run(["git", "-C", str(HERE.parent), "show", f"{OLD_LOOP}:gcnas/train/proxy.py"], check=True,
                         capture_output=True, text=True).stdout
    path = workdir / "old_proxy.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_proxy", path)
    old = importlib.util.module_from_spec(spec)
    sys.modules["old_proxy"] = old  # its dataclasses look their module up
    spec.loader.exec_module(old)
    cfg = config()
    data = load_data(cfg["data"])
    arch = Architecture("gcnas_resnet_tiny", {"num_classes": 10, "in_chans": 1}, ())
    tr = cfg["trainer"]
    def run_new() -> float:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        fit(build_model(arch), data, tr, seed=0, test=False)
        return time.perf_counter() - t0

    def run_old() -> float:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        old.train_proxy(build_model(arch), data.train.x, data.train.y, data.val.x, data.val.y,
                        epochs=tr["epochs"], batch_size=tr["batch_size"], lr=tr["lr"],
                        weight_decay=tr["weight_decay"], momentum=tr["momentum"], optimizer=tr["opt"], seed=0)
        return time.perf_counter() - t0

    run_old()  # warm-up: the first training of a process pays for kernel selection and allocation
    new_s, old_s = [], []
    for i in range(3):  # alternating which goes first
        pair = (run_new, run_old) if i % 2 == 0 else (run_old, run_new)
        for f in pair:
            (new_s if f is run_new else old_s).append(f())
    return min(new_s), min(old_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--subset", type=int, default=2000, help="training images of the one-epoch trial")
    p.add_argument("--speed-subset", type=int, default=512, help="images of the loop and loader comparisons")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="alternating runs of each speed comparison (median kept)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=HERE / ".data")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--in-memory", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child_trial(args)
        return
    from gcnas.machine import cpu_model

    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    folder = write_folder(args.workdir, args.images, args.size)
    print(f"CPU: {cpu_model()}, {args.threads} torch threads, {args.workers} DataLoader worker(s); "
          f"{args.images} PNG files at {args.size} px (grey, read as RGB), one-epoch trials on {args.subset} of them, "
          f"speeds on {args.speed_subset}", flush=True)
    stream, memory = peak_rss(args, folder, False), peak_rss(args, folder, True)
    fit_rate, bare_rate = loop_speed(args, folder)
    ours, theirs = loader_speed(args, folder)
    new_s, old_s = demo_speed(args.workdir)
    rows = [
        ("peak RSS of a one-epoch trial (MB): streamed vs load-everything",
         f"{stream['rss_mb']:.0f} (+{stream['worker_rss_mb']:.0f} worker)", f"{memory['rss_mb']:.0f}",
         f"{stream['rss_mb'] / memory['rss_mb']:.2f}x", "<= 0.2x, < 3 GB"),
        ("peak PSS of the same trial, process + workers (MB): streamed vs load-everything",
         f"{stream['pss_mb']:.0f}", f"{memory['pss_mb']:.0f}", f"{stream['pss_mb'] / memory['pss_mb']:.2f}x",
         "<= 0.2x, < 3 GB"),
        ("training images/s: gcnas fit vs a bare PyTorch loop", f"{fit_rate:.0f}", f"{bare_rate:.0f}",
         f"{fit_rate / bare_rate:.2f}x", ">= 0.95x"),
        ("loader images/s: gcnas streamed split vs torchvision ImageFolder", f"{ours:.0f}", f"{theirs:.0f}",
         f"{ours / theirs:.2f}x", ">= 1.0x"),
        ("CPU demo trial (s, in memory): fit vs the former train_proxy", f"{new_s:.1f}", f"{old_s:.1f}",
         f"{old_s / new_s:.2f}x speed", ">= 1.0x (no slower)"),
    ]
    print("\n| measure | gcnas | reference | ratio | goal |\n|---|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\n(load time: streamed {stream['load_s']:.0f} s, load-everything {memory['load_s']:.0f} s; "
          f"trial total {stream['total_s']:.0f} s vs {memory['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
