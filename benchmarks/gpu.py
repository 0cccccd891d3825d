"""The CUDA paths of the one training loop, checked and timed on one GPU, side by side in one run.

    python -m benchmarks.gpu [--fmnist DIR] [--quick]

Needs a CUDA device, torch and timm (not Optuna, Hydra or W&B: it calls ``gcnas.train.fit`` directly). Prints:

1. Training images/s of a timm ResNet-50 at 224 px, batch 128, inputs already on the GPU, through ``fit``: float32,
   AMP (bfloat16), AMP + channels_last; plain and with the paper's GC (r16, after the last 1x1 of every c3-c5 block);
   and a bare PyTorch loop (the same model, optimizer and precision) beside ``fit``'s fastest setting.
2. The CPU demo's in-memory fast path on the GPU: Fashion-MNIST (``--fmnist``, the four IDX files) moved to the GPU
   once, the proxy trainer's recipe, one trial; checks the tensors live on the GPU and the model learns.
3. A streamed folder (Fashion-MNIST written as 224 px PNG files) through DataLoader workers and pinned memory:
   ``fit`` images/s and the loader alone, at half the cores and all but two as workers.

Ratios are the claims; the GPU and CPU are named in the output.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def synthetic(n: int, size: int, classes: int, device: str):
    from gcnas.data import DataSplits, TensorSplit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    split = TensorSplit(x, y)
    return DataSplits("synthetic", split, TensorSplit(x[:128], y[:128]), None, classes, (3, size, size)).to(device)


def resnet50(gc: bool):
    from gcnas.arch import Architecture, build_model, paper_default_architecture
    from gcnas.backbones import list_sites

    kw = {"num_classes": 100}
    if not gc:
        return build_model(Architecture("resnet50", kw, ()))
    return build_model(paper_default_architecture("resnet50", list_sites("resnet50", **kw), kw))


def fit_rate(model, data, amp: bool, channels_last: bool, batch: int) -> float:
    """Images/s of the second of two epochs (the first pays for cudnn's kernel search and allocation)."""
    from gcnas.train import fit

    seconds = []
    fit(model, data, {"epochs": 2, "batch_size": batch, "lr": 0.05, "amp": amp, "channels_last": channels_last,
                      "sched": "cosine"}, device="cuda", test=False, on_epoch=lambda e: seconds.append(e.seconds))
    return len(data.train) / seconds[-1]


def bare_rate(model, data, batch: int) -> float:
    """A bare loop: SGD + cross-entropy, bf16 autocast, channels_last, no loss read back; second of two epochs."""
    model = model.cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, y = data.train.x, data.train.y
    rate = 0.0
    for _ in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        order = torch.randperm(len(x), device="cuda")
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            xb = x[idx].contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        rate = len(x) / (time.perf_counter() - t0)
    return rate


def step_table(n: int, batch: int) -> list[tuple[str, str, float]]:
    data = synthetic(n, 224, 100, "cuda")
    rows = []
    for gc in (False, True):
        name = "resnet50 + paper GC" if gc else "resnet50"
        for label, amp, cl in (("float32", False, False), ("AMP bf16", "bf16", False),
                               ("AMP bf16 + channels_last", "bf16", True)):
            torch.manual_seed(0)
            rows.append((name, f"fit, {label}", fit_rate(resnet50(gc), data, amp, cl, batch)))
        torch.manual_seed(0)
        rows.append((name, "bare loop, AMP bf16 + channels_last", bare_rate(resnet50(gc), data, batch)))
        if gc:  # the blocks' hand-derived backward (fused=True), which they use on the CPU only by default
            from gcnas.blocks import GlobalContextBlock

            torch.manual_seed(0)
            model = resnet50(gc)
            for m in model.modules():
                if isinstance(m, GlobalContextBlock):
                    m.fused = True
            rows.append((name, "fit, AMP bf16 + channels_last, fused=True", fit_rate(model, data, "bf16", True, batch)))
    return rows


def fmnist_demo(root: Path) -> dict:
    from gcnas.backbones import create_backbone
    from gcnas.data import load_data
    from gcnas.train import fit

    cfg = {"name": "fashion_mnist", "root": str(root), "val_size": 5000, "train_subset": 6000, "val_subset": 2000,
           "split_seed": 0, "in_memory": "auto", "workers": "auto", "aug": "none", "on_bad_image": "warn"}
    data = load_data(cfg).to("cuda")
    on_gpu = data.train.x.is_cuda and data.val.x.is_cuda
    trainer = {"epochs": 4, "batch_size": 128, "opt": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
               "sched": "cosine", "amp": True, "channels_last": True}
    out = {}
    for run in ("warm-up", "timed"):
        torch.manual_seed(0)
        model = create_backbone("gcnas_resnet_tiny", num_classes=10, in_chans=1)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = fit(model, data, trainer, device="cuda", test=False)
        torch.cuda.synchronize()
        out = {"seconds": time.perf_counter() - t0, "val_acc": res.final_val_acc, "on_gpu": on_gpu,
               "train_loss": [round(e.train_loss, 4) for e in res.epochs]}
    return out


def write_folder(fmnist: Path, folder: Path, n: int, size: int) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from gcnas.data.datasets import read_idx

    x = read_idx(fmnist / "train-images-idx3-ubyte.gz")[:n]
    y = read_idx(fmnist / "train-labels-idx1-ubyte.gz")[:n]
    jobs = [(folder / "train" / f"class{label}" / f"{i:05d}.png", a, size) for i, (a, label) in enumerate(zip(x, y))]
    for p, _, _ in jobs:
        p.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(_save_png, jobs, chunksize=64))


def _save_png(job) -> None:
    from PIL import Image

    path, a, size = job
    Image.fromarray(a).resize((size, size), Image.BILINEAR).save(path)


def streamed(fmnist: Path, n: int, workers: tuple[int, ...]) -> list[dict]:
    """Per number of DataLoader workers: the loader alone and ``fit`` (ResNet-50, AMP + channels_last), images/s."""
    from gcnas.backbones import create_backbone
    from gcnas.data import load_data
    from gcnas.train import fit

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fmnist-png"
        t0 = time.perf_counter()
        write_folder(fmnist, folder, n, 224)
        written = time.perf_counter() - t0
        for w in workers:
            cfg = {"name": "imagefolder", "root": str(folder), "image_size": 224, "in_chans": 3, "val_size": 256,
                   "train_subset": None, "val_subset": 256, "in_memory": False, "workers": w, "aug": "basic",
                   "on_bad_image": "warn"}
            data = load_data(cfg)
            rates = []
            for _ in range(2):
                t0 = time.perf_counter()
                seen = sum(len(y) for _, y in data.train.batches(128, torch.randperm(len(data.train)), "cuda"))
                torch.cuda.synchronize()
                rates.append(seen / (time.perf_counter() - t0))
            seconds = []
            torch.manual_seed(0)
            res = fit(create_backbone("resnet50", num_classes=10), data,
                      {"epochs": 2, "batch_size": 128, "lr": 0.05, "amp": True, "channels_last": True},
                      device="cuda", test=False, on_epoch=lambda e: seconds.append(e.seconds))
            rows.append({"images": len(data.train), "workers": w, "write_s": written, "loader_img_s": max(rates),
                         "fit_img_s": len(data.train) / seconds[-1], "val_acc": res.final_val_acc,
                         "bad_images": res.bad_images})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fmnist", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    import timm

    torch.backends.cudnn.benchmark = True
    print(f"GPU: {torch.cuda.get_device_name()}; CPU: {cpu_name()} ({os.cpu_count()} cores); torch {torch.__version__}"
          f", timm {timm.__version__}", flush=True)
    sections = {}
    t0 = time.perf_counter()
    rows = step_table(512 if args.quick else 128 * 24, 128)
    print("\n1. ResNet-50, 224 px, batch 128, inputs on the GPU (images/s, second epoch)")
    print("| model | loop | images/s | vs fit float32 |\n| --- | --- | ---: | ---: |")
    for model_name, loop, rate in rows:
        base = next(r for m, lp, r in rows if m == model_name and lp == "fit, float32")
        print(f"| {model_name} | {loop} | {rate:,.0f} | {rate / base:.2f}x |")
    fast = {m: r for m, lp, r in rows if lp == "fit, AMP bf16 + channels_last"}
    bare = {m: r for m, lp, r in rows if lp.startswith("bare")}
    for m in fast:
        print(f"fit / bare loop ({m}, AMP bf16 + channels_last): {fast[m] / bare[m]:.2f}x")
    print(f"paper GC / plain (fit, AMP bf16 + channels_last): {fast['resnet50 + paper GC'] / fast['resnet50']:.2f}x "
          f"throughput", flush=True)
    sections["step_table"] = rows
    if args.fmnist.is_dir():
        demo = fmnist_demo(args.fmnist)
        print(f"\n2. The demo's fast path on the GPU: one proxy trial (6,000 images x 4 epochs) "
              f"{demo['seconds']:.2f} s, val acc {demo['val_acc']:.3f}, tensors on the GPU: {demo['on_gpu']}, "
              f"train loss {demo['train_loss']}",
              flush=True)
        cores = os.cpu_count() or 2
        st = streamed(args.fmnist, 1024 if args.quick else 8192, tuple(sorted({max(1, cores // 2), cores - 2})))
        print(f"\n3. Streamed: {st[0]['images']} PNG at 224 px (written in {st[0]['write_s']:.0f} s), basic "
              "augmentation, batch 128; fit trains ResNet-50 with AMP + channels_last")
        print("| workers | loader alone (images/s) | fit (images/s) | fit / loader |\n| ---: | ---: | ---: | ---: |")
        for r in st:
            print(f"| {r['workers']} | {r['loader_img_s']:,.0f} | {r['fit_img_s']:,.0f} | "
                  f"{r['fit_img_s'] / r['loader_img_s']:.2f}x |")
        print(f"bad images: {sum(r['bad_images'] for r in st)}", flush=True)
        sections.update(demo=demo, streamed=st)
    else:
        print(f"\n2-3 skipped: no Fashion-MNIST at {args.fmnist}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu.json").write_text(json.dumps(sections, indent=1, default=str))


if __name__ == "__main__":
    main()
