"""The CUDA paths of the one training loop, checked and timed on one GPU, side by side in one run.

    python -m benchmarks.gpu [--fmnist DIR] [--quick] [--sections step demo streamed cost] [--cpu]

Needs a CUDA device (except ``--cpu``), torch and timm (not Optuna, Hydra or W&B: it calls ``gcnas.train.fit``
directly). Prints:

1. Training images/s of a timm ResNet-50 at 224 px, batch 128, inputs already on the GPU, through ``fit``: float32,
   AMP (bfloat16), AMP + channels_last; plain and with the paper's GC (r16, after the last 1x1 of every c3-c5 block);
   and a bare PyTorch loop (the same model, optimizer and precision) beside ``fit``'s fastest setting.
2. The CPU demo's in-memory fast path on the GPU: Fashion-MNIST (``--fmnist``, the four IDX files) moved to the GPU
   once, the proxy trainer's recipe, one trial; checks the tensors live on the GPU and the model learns.
3. A streamed folder (Fashion-MNIST written as 224 px PNG files) through DataLoader workers and pinned memory:
   ``fit`` images/s and the loader alone, at half the cores and all but two as workers.
4. What the global context block costs: plain vs the paper's GC, eager vs ``torch.compile`` vs the one-read attention
   pooling (``gcnas.blocks.fast_pool``, Triton kernels), training and inference images/s at bfloat16 +
   channels_last, ResNet-50 and ConvNeXt-T at 224 px, batch 128, random init; a bare SGD step on one batch already on
   the GPU. The configurations take turns, ``--repeats`` times, and each row gives the median and the spread.
   ``--cpu``: the same comparison on the CPU without Triton (eager vs compiled, float32), on the project's tiny
   backbone at 32 px, batch 64 (``--backbones resnet18``: ResNet-18 at 64 px, batch 32).

``--sections`` picks among 1-4 (default all; ``--cpu`` runs 4 only). Ratios are the claims; the GPU and CPU are
named in the output.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gcnas.machine import cpu_model


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


def step_section(args) -> list:
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
    return rows


def fmnist_sections(args) -> dict:
    out = {}
    if "demo" in args.sections:
        demo = fmnist_demo(args.fmnist)
        print(f"\n2. The demo's fast path on the GPU: one proxy trial (6,000 images x 4 epochs) "
              f"{demo['seconds']:.2f} s, val acc {demo['val_acc']:.3f}, tensors on the GPU: {demo['on_gpu']}, "
              f"train loss {demo['train_loss']}",
              flush=True)
        out["demo"] = demo
    if "streamed" in args.sections:
        cores = os.cpu_count() or 2
        st = streamed(args.fmnist, 1024 if args.quick else 8192, tuple(sorted({max(1, cores // 2), cores - 2})))
        print(f"\n3. Streamed: {st[0]['images']} PNG at 224 px (written in {st[0]['write_s']:.0f} s), basic "
              "augmentation, batch 128; fit trains ResNet-50 with AMP + channels_last")
        print("| workers | loader alone (images/s) | fit (images/s) | fit / loader |\n| ---: | ---: | ---: | ---: |")
        for r in st:
            print(f"| {r['workers']} | {r['loader_img_s']:,.0f} | {r['fit_img_s']:,.0f} | "
                  f"{r['fit_img_s'] / r['loader_img_s']:.2f}x |")
        print(f"bad images: {sum(r['bad_images'] for r in st)}", flush=True)
        out["streamed"] = st
    return out


# -- 4. what the block costs ----------------------------------------------------------------------------------------
# section 4's image size and batch per backbone, and its default backbones
COST_SIZES = {"resnet50": (224, 128), "convnext_tiny": (224, 128), "gcnas_resnet_tiny": (32, 64), "resnet18": (64, 32)}
COST_GPU = ("resnet50", "convnext_tiny")
COST_CPU = ("gcnas_resnet_tiny",)
MODES = ("eager", "compiled", "fast pool")  # fast pool: GC only, CUDA only (plain has no attention pooling)


def cost_model(backbone: str, gc: bool, size: int, classes: int = 100):
    """``backbone`` at ``size`` px with random weights, plain or with the paper's GC (r16, c3-c5)."""
    from gcnas.arch import Architecture, build_model, paper_default_architecture
    from gcnas.backbones import list_sites

    kw = {"num_classes": classes}
    if not gc:
        return build_model(Architecture(backbone, kw, ()))
    return build_model(paper_default_architecture(backbone, list_sites(backbone, (3, size, size), **kw), kw))


class Contender:
    """One model in one mode on one batch: a bare training step (SGD, cross-entropy) and an inference pass, both
    under autocast at ``dtype`` (float32: none), nothing read back to the host."""

    def __init__(self, backbone: str, gc: bool, mode: str, size: int, batch: int, device: str, dtype: torch.dtype,
                 channels_last: bool) -> None:
        from gcnas.blocks.fast_pool import set_fast_pool

        torch.manual_seed(0)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.model = cost_model(backbone, gc, size).to(device, memory_format=layout)
        if mode == "fast pool" and set_fast_pool(self.model) == 0:
            raise ValueError(f"{backbone} has no attention pooling to switch")
        self.run = torch.compile(self.model) if mode == "compiled" else self.model
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, 3, size, size, generator=g).to(device).contiguous(memory_format=layout)
        self.y = torch.randint(0, 100, (batch,), generator=g).to(device)
        self.device, self.dtype = device, dtype

    def _autocast(self):
        return torch.autocast(self.device, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def train(self, steps: int) -> None:
        self.model.train()
        for _ in range(steps):
            with self._autocast():
                loss = F.cross_entropy(self.run(self.x), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def infer(self, steps: int) -> None:
        self.model.eval()
        with torch.inference_mode(), self._autocast():
            for _ in range(steps):
                self.run(self.x)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def cost_rows(backbones, device: str, dtype: torch.dtype, channels_last: bool, steps: int, warmup: int,
              repeats: int) -> list[dict]:
    """Per backbone, every (model, mode) pair's images/s for training and inference: ``warmup`` steps (compilation
    included), then ``repeats`` rounds in which each pair in turn runs ``steps`` timed steps."""
    rows = []
    for backbone, size, batch in backbones:
        pairs = [(gc, mode) for gc in (False, True) for mode in MODES
                 if mode != "fast pool" or (gc and device == "cuda")]
        for phase in ("train", "infer"):
            contenders = {}
            for gc, mode in pairs:
                c = Contender(backbone, gc, mode, size, batch, device, dtype, channels_last)
                t0 = time.perf_counter()
                getattr(c, phase)(warmup)
                _sync(device)
                contenders[gc, mode] = (c, time.perf_counter() - t0)
                print(f"  {backbone} {'paper GC' if gc else 'plain'} {mode} {phase}: warm-up "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
            rates: dict = {k: [] for k in contenders}
            for _ in range(repeats):
                for key, (c, _) in contenders.items():
                    _sync(device)
                    t0 = time.perf_counter()
                    getattr(c, phase)(steps)
                    _sync(device)
                    rates[key].append(steps * batch / (time.perf_counter() - t0))
            for (gc, mode), r in rates.items():
                rows.append({"backbone": backbone, "size": size, "batch": batch, "gc": gc, "mode": mode,
                             "phase": phase, "rates": r, "warmup_s": contenders[gc, mode][1]})
            del contenders
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def cost_table(rows: list[dict]) -> str:
    """Markdown: images/s (median over the rounds, and (max - min) / median), GC / plain in the same mode (the fast
    pool against plain eager: plain has no pooling to speed up), and each mode against eager."""
    med = {(r["backbone"], r["gc"], r["mode"], r["phase"]): _median(r["rates"]) for r in rows}
    out = ["| backbone | model | mode | train img/s (spread) | GC / plain | vs eager | infer img/s (spread) | "
           "GC / plain | vs eager |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    keys = sorted({(r["backbone"], r["gc"], r["mode"]) for r in rows},
                  key=lambda k: ([r["backbone"] for r in rows].index(k[0]), k[1], MODES.index(k[2])))
    for backbone, gc, mode in keys:
        cells = []
        for phase in ("train", "infer"):
            r = next(r for r in rows if (r["backbone"], r["gc"], r["mode"], r["phase"]) == (backbone, gc, mode, phase))
            m = med[backbone, gc, mode, phase]
            plain = med.get((backbone, False, "eager" if mode == "fast pool" else mode, phase))
            eager = med[backbone, gc, "eager", phase]
            cells += [f"{m:,.0f} ({(max(r['rates']) - min(r['rates'])) / m:.0%})",
                      f"{m / plain:.2f}x" if gc and plain else "", f"{m / eager:.2f}x"]
        out.append(f"| {backbone} | {'paper GC' if gc else 'plain'} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def cost_section(args, device: str) -> list[dict]:
    if device == "cuda":
        names, dtype, cl, label = COST_GPU, torch.bfloat16, True, "bfloat16 autocast + channels_last"
    else:
        names, dtype, cl, label = COST_CPU, torch.float32, False, "float32, contiguous"
    other = (224, 128) if device == "cuda" else (64, 32)
    backbones = [(name, *COST_SIZES.get(name, other)) for name in args.backbones or names]
    steps = args.steps or (10 if device == "cuda" else 3)
    warmup = 3 if device == "cuda" else 2
    print(f"\n4. What the GC block costs ({device}, {label}; {args.repeats} rounds of {steps} steps after {warmup} "
          f"warm-up steps per configuration, in turn)", flush=True)
    rows = cost_rows(backbones, device, dtype, cl, steps, warmup, args.repeats)
    print(cost_table(rows), flush=True)
    return rows


SECTIONS = ("step", "demo", "streamed", "cost")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fmnist", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="which sections to run (default all)")
    p.add_argument("--cpu", action="store_true", help="section 4's rows on the CPU (eager vs compiled), no GPU needed")
    p.add_argument("--backbones", nargs="+", help="section 4's backbones (timm names; default resnet50 and "
                   "convnext_tiny on a GPU, gcnas_resnet_tiny with --cpu)")
    p.add_argument("--repeats", type=int, default=3, help="section 4's rounds (default 3)")
    p.add_argument("--steps", type=int, help="section 4's timed steps per round (default 10 on a GPU, 3 on the CPU)")
    args = p.parse_args()
    if args.cpu:
        print(f"CPU: {cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads); torch "
              f"{torch.__version__}", flush=True)
        t0 = time.perf_counter()
        rows = cost_section(args, "cpu")
        print(f"\ntotal {time.perf_counter() - t0:.0f} s")
        out = os.environ.get("OUT")
        if out:
            Path(out, "gpu-cpu.json").write_text(json.dumps({"cost": rows}, indent=1, default=str))
        return
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device (--cpu runs section 4 on the CPU)")
    import timm

    torch.backends.cudnn.benchmark = True
    print(f"GPU: {torch.cuda.get_device_name()}; CPU: {cpu_model()} ({os.cpu_count()} cores); torch {torch.__version__}"
          f", timm {timm.__version__}", flush=True)
    sections = {}
    t0 = time.perf_counter()
    if "step" in args.sections:
        sections["step_table"] = step_section(args)
    if {"demo", "streamed"} & set(args.sections):
        if args.fmnist.is_dir():
            sections.update(fmnist_sections(args))
        else:
            print(f"\n2-3 skipped: no Fashion-MNIST at {args.fmnist}")
    if "cost" in args.sections:
        sections["cost"] = cost_section(args, "cuda")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu.json").write_text(json.dumps(sections, indent=1, default=str))


if __name__ == "__main__":
    main()
