"""DESIGN.md layering: blocks, backbones and the architecture never import optuna, hydra or wandb.

Two checks: no module of layers 1-3 names them in an import statement, and layers 1-3 (and loading an exported model)
work in a process where they cannot be imported at all. (timm itself imports wandb when it is installed, inside a
``try``, so "not in sys.modules" alone would test timm, not us.)
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("optuna", "hydra", "wandb", "omegaconf")
ROOT = Path(__file__).resolve().parents[1] / "gcnas"
LOWER = [*sorted((ROOT / "blocks").glob("*.py")), *sorted((ROOT / "backbones").glob("*.py")), ROOT / "arch.py",
         *sorted((ROOT / "oneshot").glob("*.py")),
         ROOT / "registry.py", ROOT / "errors.py", ROOT / "machine.py", ROOT / "__init__.py"]

# Makes the forbidden packages unimportable in a child process, as if they were not installed.
BLOCKER = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    f"        if name.split('.')[0] in {FORBIDDEN!r}:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the layering test)')\n"
    "sys.meta_path.insert(0, _Block())\n"
)


def run_without_search_machinery(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=300)


def test_lower_layers_name_no_search_machinery_in_imports():
    bad = []
    for path in LOWER:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.relative_to(ROOT.parent)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not bad, bad


def test_lower_layers_work_where_the_search_machinery_is_missing():
    out = run_without_search_machinery(
        "import gcnas, gcnas.blocks, gcnas.blocks.convert, gcnas.backbones, gcnas.arch, torch\n"
        "arch = gcnas.Architecture.from_dict({'backbone': 'gcnas_resnet_tiny', 'placements': [\n"
        "    {'stages': [2, 3], 'blocks': 'all', 'position': 'before_add', 'spec': 'gc'}]})\n"
        "m = gcnas.build_model(arch)\n"
        "print(tuple(m(torch.randn(1, 3, 32, 32)).shape))\n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(1, 1000)"


def test_blocker_really_blocks():
    out = run_without_search_machinery("import wandb\n")
    assert out.returncode != 0 and "blocked by the layering test" in out.stderr
