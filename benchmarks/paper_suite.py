"""The paper's findings, reproduced at a documented fidelity in one run: gcnas-analyze, then the five ablation recipes.

Prints every table (Markdown) with the fidelity, the machine and the wall time of each part; docs/results.md quotes
this output. The default fidelity (Fashion-MNIST, the tiny ResNet, 6,000 training images, 4 epochs, 3 seeds) fits in
60 minutes on 2 CPU cores; --fidelity large trains on every image for 15 epochs (hours on CPU, minutes on a GPU).

Usage: python -m benchmarks.paper_suite [--out outputs/paper] [--fidelity default|large] [--only analyze design ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import optuna

from gcnas.machine import describe_machine

PARTS = ["analyze", "design", "position", "stages", "bottleneck", "fusion"]
REFERENCE = {"design": "preset=none", "position": "position=before_add", "stages": "stages=1,2,3",
             "bottleneck": "act=relu, norm=layernorm, ratio=0.0625", "fusion": "context=att, fusion=add"}
FIDELITY = {"default": [], "large": ["data.train_subset=null", "data.val_subset=null", "trainer.epochs=15"]}


def run(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    from gcnas.analysis import recipe_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/paper")
    ap.add_argument("--fidelity", choices=list(FIDELITY), default="default")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=PARTS)
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra = FIDELITY[args.fidelity]
    common = [f"paths.root={out}", *extra]
    walls: dict[str, float] = {}
    t_all = time.perf_counter()
    if "analyze" in args.only:
        walls["analyze"] = run([sys.executable, "-m", "gcnas.cli.analyze", *common], out)
    for part in [p for p in args.only if p != "analyze"]:
        walls[part] = run([sys.executable, "-m", "gcnas.cli.search", f"+experiment=paper_{part}", "progress=none",
                           "wandb.mode=disabled", *common], out)
    total = time.perf_counter() - t_all

    described = " ".join(extra) or ("data/trainer defaults: Fashion-MNIST, 6,000 train / 2,000 val images, 4 epochs, "
                                     "SGD lr 0.1 cosine, batch 128")
    print(f"Fidelity `{args.fidelity}` ({described}), gcnas_resnet_tiny, seeds 0-2; {describe_machine()}; total wall "
          f"{total / 60:.1f} min\n")
    if "analyze" in walls:
        print(f"### gcnas-analyze ({walls['analyze'] / 60:.1f} min)\n")
        print((out / "analysis" / "analysis.md").read_text())
    for part in [p for p in args.only if p != "analyze"]:
        study = optuna.load_study(study_name=f"paper_{part}-gcnas_resnet_tiny-fashion_mnist",
                                  storage=f"sqlite:///{out}/studies.db")
        print(f"### paper_{part} ({walls[part] / 60:.1f} min)\n")
        print(recipe_table(study, reference=REFERENCE[part]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
