"""``gcnas-blocks``: the paper's members of the global context framework, side by side.

Builds every named preset and the query-dependent NL block for one feature-map shape and prints a Markdown table:
what each member is in the framework's terms (context modeling, transform, fusion), its parameters, FLOPs
(``torch.utils.flop_counter``), forward and forward+backward time on this machine, whether it is the identity at
initialisation, and how many attention maps it computes per image (NL: one per query position; the
query-independent members: one).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch and the blocks are imported where they are used, so that --help answers without loading them.

EXAMPLES = """examples:
  gcnas-blocks                                   # the defaults: 8 maps of 256 channels, 14x14
  gcnas-blocks --channels 64 --size 56           # an early stage's shape
  gcnas-blocks --channels 512 --size 7 --batch 1 --repeats 20   # one image, the median of 20 timings"""


def _members(channels: int):
    from gcnas.blocks import GlobalContextBlock, NonLocalBlock, preset_names

    for name in preset_names():
        yield name, GlobalContextBlock.from_preset(name, channels)
    yield "nl", NonLocalBlock(channels)


def _describe(block: torch.nn.Module) -> tuple[str, str, str]:
    from gcnas.blocks import NonLocalBlock

    if isinstance(block, NonLocalBlock):
        return f"query-dependent ({block.mode})", f"W_v, W_z (r={block.ratio:g})", "add"
    fusion = "+".join(block.fusion)
    transform = block.transform_name
    if block.hidden_channels is not None:
        transform += f" r=1/{round(1 / block.ratio)}"
        if block.norm_name:
            transform += f" {block.norm_name}"
    return block.context_name, transform, fusion


def _time(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def run(channels: int = 256, size: int = 14, batch: int = 8, repeats: int = 5, seed: int = 0) -> list[dict]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from gcnas.blocks import NonLocalBlock

    """Measure every member; returns one row per member (also used by the tests)."""
    torch.manual_seed(seed)
    x = torch.randn(batch, channels, size, size)
    rows = []
    for name, block in _members(channels):
        with torch.no_grad():
            identity = bool(torch.equal(block(x), x))
            counter = FlopCounterMode(display=False)
            with counter:
                block(x[:1])
        xg = x.clone().requires_grad_()
        context, transform, fusion = _describe(block)
        rows.append({
            "member": name,
            "context": context,
            "transform": transform,
            "fusion": fusion,
            "params": sum(p.numel() for p in block.parameters()),
            "mflops": counter.get_total_flops() / 1e6,
            "fwd_ms": _time(lambda: _no_grad(block, x), repeats),
            "fwd_bwd_ms": _time(lambda: block(xg).sum().backward(), repeats),
            "identity_at_init": identity,
            "maps_per_image": size * size if isinstance(block, NonLocalBlock) else 1,
        })
    return rows


def _no_grad(block, x):
    import torch

    with torch.no_grad():
        return block(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gcnas-blocks", description=__doc__.split("\n\n")[0].replace("``", ""),
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=256, help="channels of the feature map, >= 16 (default: 256)")
    ap.add_argument("--size", type=int, default=14, help="height and width of the feature map (default: 14)")
    ap.add_argument("--batch", type=int, default=8, help="feature maps per timed call (default: 8)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls; the table shows their median (default: 5)")
    args = ap.parse_args(argv)
    if args.channels < 16 or args.size < 1 or args.batch < 1 or args.repeats < 1:
        ap.error("--channels must be >= 16 (ratio 1/16 needs a hidden channel); --size, --batch, --repeats >= 1")
    import torch

    rows = run(args.channels, args.size, args.batch, args.repeats)
    print(f"Members of the global context framework on a ({args.batch}, {args.channels}, {args.size}, {args.size}) "
          f"feature map, float32, {torch.get_num_threads()} CPU threads, median of {args.repeats}\n")
    print("| member | context modeling | transform | fusion | params | MFLOPs/img | fwd ms | fwd+bwd ms "
          "| identity at init | attention maps/img |")
    print("|---|---|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['member']} | {r['context']} | {r['transform']} | {r['fusion']} | {r['params']:,} | "
              f"{r['mflops']:.2f} | {r['fwd_ms']:.2f} | {r['fwd_bwd_ms']:.2f} | "
              f"{'yes' if r['identity_at_init'] else 'no'} | {r['maps_per_image']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
