"""GlobalContextBlock against timm's GlobalContext, side by side in one run, on CPU in float32.

Prints Markdown tables: forward+backward time, forward time (inference, no autograd) and peak memory of one
forward+backward, for the paper's GC configuration (attention pooling, bottleneck 1/16 + LayerNorm, add) at the
shapes of ResNet-50's stages 2-4 with batch 32, and the other context x fusion combinations that both implement.

Both implementations compute the same function with the same weights: the gcnas block is converted from the timm
module with ``gcnas.blocks.convert.from_timm``. "gcnas (autograd)" is the same block with ``fused=False``, plain
autograd through the same forward, to show what the hand-derived backward buys.

Method: implementations run interleaved in every repetition (so drift and noise hit them alike), median of the
repetitions. Peak memory: resident memory above the baseline during one forward+backward, in a fresh process whose
glibc mmap threshold is pinned low so that freed tensors leave resident memory at once (``/proc/self/clear_refs``
resets the high-water mark between measurements); minimum over 3 tries.

Usage: python -m benchmarks.blocks [--repeats 15] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
from timm.layers import GlobalContext

from gcnas.blocks.convert import from_timm
from gcnas.machine import describe_machine

SHAPES = [(32, 256, 28, 28), (32, 512, 14, 14), (32, 1024, 7, 7)]
PAPER = ("att", "add")
COMBOS = [("att", "add"), ("att", "scale"), ("att", "scale+add"), ("avg", "add"), ("avg", "scale"),
          ("avg", "scale+add")]
IMPLS = ["timm", "gcnas", "gcnas (autograd)"]
TARGETS = {"fwd+bwd": 0.6, "fwd": 0.5, "peak memory": 1.0}


def build(impl: str, channels: int, context: str, fusion: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    ref = GlobalContext(channels, use_attn=context == "att", fuse_add="add" in fusion, fuse_scale="scale" in fusion,
                        rd_ratio=1 / 16)
    with torch.no_grad():  # a trained-looking block: non-zero last layers, so every gradient path does work
        for mlp in (ref.mlp_add, ref.mlp_scale):
            if mlp is not None:
                mlp.fc2.weight.normal_(0, 0.02)
    if impl == "timm":
        return ref
    block = from_timm(ref)
    block.fused = impl == "gcnas"
    return block


def _fwd_bwd(module, x, g):
    x.grad = None
    module(x).backward(g)


def _fwd(module, x):
    with torch.no_grad():
        module(x)


def time_all(shape, context, fusion, repeats):
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    modules = {impl: build(impl, shape[1], context, fusion) for impl in IMPLS}
    times = {(impl, kind): [] for impl in IMPLS for kind in ("fwd+bwd", "fwd")}
    for impl, m in modules.items():  # warm-up
        for _ in range(2):
            _fwd_bwd(m, x, g)
            _fwd(m, x)
    for _ in range(repeats):
        for impl, m in modules.items():
            t0 = time.perf_counter()
            _fwd_bwd(m, x, g)
            t1 = time.perf_counter()
            _fwd(m, x)
            t2 = time.perf_counter()
            times[(impl, "fwd+bwd")].append(t1 - t0)
            times[(impl, "fwd")].append(t2 - t1)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure_memory_here(shape, combos):
    """Runs in the child process: peak resident MiB above baseline for each (impl, combo)."""
    out = {}
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    for context, fusion in combos:
        for impl in IMPLS:
            m = build(impl, shape[1], context, fusion)
            _fwd_bwd(m, x, g)
            best = math.inf
            for _ in range(3):
                x.grad = None
                gc.collect()
                base = _status_kib("VmRSS")
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                _fwd_bwd(m, x, g)
                best = min(best, _status_kib("VmHWM") - base)
            out[f"{impl}|{context}|{fusion}"] = best / 1024
    return out


def measure_memory(shape, combos):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    arg = json.dumps({"shape": shape, "combos": combos})
    res = subprocess.run([sys.executable, "-m", "benchmarks.blocks", "--memory-child", arg], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="paper configuration only, 5 repeats")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        spec = json.loads(args.memory_child)
        print(json.dumps(_measure_memory_here(tuple(spec["shape"]), [tuple(c) for c in spec["combos"]])))
        return 0
    repeats = 5 if args.quick else args.repeats
    combos = [PAPER] if args.quick else COMBOS

    print(f"{describe_machine()}; float32, CPU; median of {repeats} interleaved repetitions\n")
    results = {}
    for shape in SHAPES:
        mem = measure_memory(shape, combos)
        for context, fusion in combos:
            t = time_all(shape, context, fusion, repeats)
            for impl in IMPLS:
                results[(shape, context, fusion, impl)] = {
                    "fwd+bwd": t[(impl, "fwd+bwd")], "fwd": t[(impl, "fwd")],
                    "peak memory": mem[f"{impl}|{context}|{fusion}"]}

    print("### Paper configuration (att, bottleneck 1/16 + LayerNorm, add)\n")
    print("| shape | impl | fwd+bwd ms | fwd ms | peak MiB | fwd+bwd vs timm | fwd vs timm | memory vs timm |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ratios = {k: [] for k in TARGETS}
    for shape in SHAPES:
        base = results[(shape, *PAPER, "timm")]
        for impl in IMPLS:
            r = results[(shape, *PAPER, impl)]
            rel = {k: r[k] / base[k] for k in TARGETS}
            if impl == "gcnas":
                for k in TARGETS:
                    ratios[k].append(rel[k])
            print(f"| {tuple(shape)} | {impl} | {r['fwd+bwd']:.2f} | {r['fwd']:.2f} | {r['peak memory']:.1f} | "
                  f"{rel['fwd+bwd']:.2f}x | {rel['fwd']:.2f}x | {rel['peak memory']:.2f}x |")
    print("\n| gcnas vs timm, geometric mean over shapes | ratio | target | met |")
    print("|---|---:|---:|---|")
    for k, target in TARGETS.items():
        gm = geomean(ratios[k])
        print(f"| {k} | {gm:.2f}x | <= {target}x | {'yes' if gm <= target else 'no'} |")

    if len(combos) > 1:
        print("\n### Every context x fusion (bottleneck 1/16 + LayerNorm), gcnas vs timm, geometric mean over shapes\n")
        print("| context | fusion | fwd+bwd | fwd | peak memory | autograd fwd+bwd |")
        print("|---|---|---:|---:|---:|---:|")
        for context, fusion in combos:
            rel = {k: geomean([results[(s, context, fusion, "gcnas")][k] / results[(s, context, fusion, "timm")][k]
                               for s in SHAPES]) for k in TARGETS}
            auto = geomean([results[(s, context, fusion, "gcnas (autograd)")]["fwd+bwd"]
                            / results[(s, context, fusion, "timm")]["fwd+bwd"] for s in SHAPES])
            print(f"| {context} | {fusion} | {rel['fwd+bwd']:.2f}x | {rel['fwd']:.2f}x | {rel['peak memory']:.2f}x | "
                  f"{auto:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
