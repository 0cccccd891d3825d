"""DESIGN.md layering: blocks, backbones and the architecture never import optuna, hydra or wandb."""
from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("optuna", "hydra", "wandb", "omegaconf")


def test_lower_layers_import_no_search_machinery():
    code = (
        "import sys, gcnas, gcnas.blocks, gcnas.blocks.convert, gcnas.backbones, gcnas.arch\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"layers 1-3 imported {out.stdout.strip()}"
