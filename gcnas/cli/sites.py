"""``gcnas-sites NAME [--input-size 3 224 224]``: a backbone's insertion sites, for writing a search space."""
from __future__ import annotations

import argparse
import sys
import warnings

from gcnas.errors import ConfigError

# The backbones (torch, timm) are imported where they are used, so that --help answers without loading them.

EXAMPLES = """examples:
  gcnas-sites resnet50                           # at the model's own input size (its pretrained_cfg)
  gcnas-sites mobilenetv3_small_100 --input-size 3 64 64
  gcnas-sites gcnas_resnet_tiny --input-size 1 28 28   # the demo's backbone on Fashion-MNIST"""


def format_sites(name: str, input_size: tuple[int, int, int]) -> str:
    from gcnas.backbones import GenericFallbackWarning, list_sites
    from gcnas.backbones.sites import position_order

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GenericFallbackWarning)
        sites = list_sites(name, input_size=input_size)
    lines = []
    family = sites[0].family
    lines.append(f"{name}: family {family}, {len(sites)} sites, input {input_size[0]}x{input_size[1]}x{input_size[2]}")
    for w in caught:
        if issubclass(w.category, GenericFallbackWarning):
            lines.append(f"note: {w.message}")
    lines.append("")
    lines.append("| stage | block | position | also named | module | channels | size | attention (replaceable) |")
    lines.append("|---:|---:|---|---|---|---:|---|---|")
    for s in sites:
        size = f"{s.size[0]}x{s.size[1]}" if s.size else "-"
        lines.append(f"| {s.stage} | {s.block} | {s.position} | {', '.join(s.aliases)} | {s.module} | {s.channels} "
                     f"| {size} | {s.attention or ''} |")
    pairs: dict[tuple[str, str], int] = {}
    for s in sites:
        for a in s.aliases:
            pairs[(a, s.position)] = pairs.get((a, s.position), 0) + 1
    for (alias, position), n in sorted(pairs.items(), key=lambda kv: (position_order(kv[0][0]), kv[0][1])):
        lines.append(f"note: in {n} block(s) {alias} is the same place as {position} (one anchor): a placement may "
                     f"name either, architectures and their keys use {position}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gcnas-sites", description="gcnas-sites:" + __doc__.split(":", 1)[1].rstrip(),
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="a timm model name, e.g. resnet50")
    ap.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), default=None,
                    help="input size used for the spatial sizes (default: the model's pretrained_cfg input size)")
    args = ap.parse_args(argv)
    try:
        size = tuple(args.input_size) if args.input_size else None
        if size is None:
            from gcnas.backbones.sites import _default_input_size, create_backbone

            size = _default_input_size(create_backbone(args.name, device="meta"))
        print(format_sites(args.name, size))
    except ConfigError as e:
        print(f"gcnas-sites: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
