"""gcnas.compat: each private name of torch and timm gcnas relies on still exists and behaves as relied upon, and no
other module of gcnas names a private name of torch, timm or Optuna (Optuna's live in gcnas.search.optuna_compat)."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from gcnas.compat import TIMM_EFFICIENTNET_BLOCKS, BatchNormBase, TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1] / "gcnas"
LIBRARIES = ("torch", "timm", "optuna")
# The one module allowed to name each library's private names.
ALLOWED = {"torch": {"gcnas/compat.py"}, "timm": {"gcnas/compat.py"}, "optuna": {"gcnas/search/optuna_compat.py"}}


def test_a_dispatch_mode_sees_every_aten_operator_of_a_forward():
    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    conv = nn.Conv2d(2, 3, 1)
    x = torch.randn(1, 2, 4, 4)
    with Recorder() as rec, torch.no_grad():
        y = torch.relu(conv(x))
    assert torch.equal(y, torch.relu(conv(x)))  # the mode passes results through unchanged
    names = {str(op.overloadpacket) for op in rec.ops}
    assert {"aten.convolution", "aten.relu"} <= names, names


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(3), nn.BatchNorm2d(3), nn.BatchNorm3d(3), nn.SyncBatchNorm(3),
                                  nn.LazyBatchNorm2d()], ids=lambda m: type(m).__name__)
def test_every_batchnorm_with_running_statistics_has_the_base(norm):
    assert isinstance(norm, BatchNormBase)


def test_timms_batchnorm_has_the_base_and_other_norms_do_not():
    from timm.layers import BatchNormAct2d

    assert isinstance(BatchNormAct2d(3), BatchNormBase)
    assert not any(isinstance(m, BatchNormBase) for m in (nn.LayerNorm(3), nn.GroupNorm(1, 3), nn.InstanceNorm2d(3)))


def test_the_base_resets_and_with_momentum_none_averages_batches_cumulatively():
    """What recalibrate_batchnorm relies on: reset_running_stats() then momentum=None gives the plain average of the
    batches' means."""
    bn = nn.BatchNorm1d(2)
    bn.running_mean.fill_(5.0)
    bn.reset_running_stats()
    assert torch.equal(bn.running_mean, torch.zeros(2))
    bn.momentum = None
    bn.train()
    batches = [torch.randn(8, 2) + k for k in range(3)]
    for b in batches:
        bn(b)
    expected = torch.stack([b.mean(0) for b in batches]).mean(0)
    assert torch.allclose(bn.running_mean, expected, atol=1e-6)


def test_timm_defines_the_efficientnet_blocks_in_the_module_named():
    from timm import create_model

    module = importlib.import_module(TIMM_EFFICIENTNET_BLOCKS)
    names = ("DepthwiseSeparableConv", "InvertedResidual", "EdgeResidual", "ConvBnAct")
    assert all(isinstance(getattr(module, n, None), type) for n in names)
    model = create_model("mobilenetv3_small_050", pretrained=False)
    found = {f"{type(m).__module__}.{type(m).__name__}" for m in model.modules() if type(m).__name__ in names}
    assert found and {k.rsplit(".", 1)[0] for k in found} == {TIMM_EFFICIENTNET_BLOCKS}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def private_names(path: Path) -> list[tuple[str, str]]:
    """(library, what) for each private name of a library in ``path``'s code: a module or name imported with a leading
    underscore, an attribute reached through a name bound to the library (``nn.modules.batchnorm._BatchNorm``), or a
    dotted name in a string (``"timm.models._efficientnet_blocks"``). Docstrings and comments are prose, not uses."""
    tree = ast.parse(path.read_text())
    bound: dict[str, str] = {}  # local name -> library
    found = []

    def private(parts):
        return any(p.startswith("_") and not p.startswith("__") for p in parts)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                lib = a.name.split(".")[0]
                if lib in LIBRARIES:
                    bound[(a.asname or a.name).split(".")[0]] = lib
                    if private(a.name.split(".")):
                        found.append((lib, a.name))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            lib = node.module.split(".")[0]
            if lib in LIBRARIES:
                for a in node.names:
                    bound[a.asname or a.name] = lib
                    if private([*node.module.split("."), a.name]):
                        found.append((lib, f"{node.module}.{a.name}"))
    docs = _docstrings(tree)
    pattern = re.compile(rf"\b({'|'.join(LIBRARIES)})(\.\w+)*\._[A-Za-z]\w*")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound and private(chain):
                found.append((bound[base.id], ".".join([base.id, *reversed(chain)])))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found += [(m.group(1), m.group(0)) for m in pattern.finditer(node.value)]
    return found


def test_no_private_name_of_torch_timm_or_optuna_outside_its_compatibility_module():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).as_posix()
        bad += [f"{rel}: {what}" for lib, what in private_names(path) if rel not in ALLOWED[lib]]
    assert not bad, "\n".join(bad)


def test_the_scan_finds_each_kind_of_private_name(tmp_path):
    code = ("import torch.utils._python_dispatch\n"
            "from torch import nn\n"
            "from timm.models._efficientnet_blocks import InvertedResidual\n"
            "import optuna as o\n"
            "X = nn.modules.batchnorm._BatchNorm\n"
            "Y = o.trial._trial\n"
            "Z = 'timm.models._efficientnet_blocks'\n"
            "def f():\n"
            "    'mentions torch._C in prose'\n"
            "    return nn.Module, torch.__version__\n")
    (tmp_path / "m.py").write_text(code)
    assert sorted(private_names(tmp_path / "m.py")) == [
        ("optuna", "o.trial._trial"), ("timm", "timm.models._efficientnet_blocks"),
        ("timm", "timm.models._efficientnet_blocks.InvertedResidual"), ("torch", "nn.modules.batchnorm._BatchNorm"),
        ("torch", "torch.utils._python_dispatch")]
