"""The benchmarks: they run as modules of the package ``benchmarks`` (``python -m benchmarks.<name>`` from the
repository root) on gcnas's public API, and the helpers they share, where a mistake would silently change a
published number."""
from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks
from benchmarks.common import Fidelity, config, spread
from benchmarks.fidelity import sample
from benchmarks.oneshot import pooled_sample, tau_gap
from gcnas.stats import kendall_tau

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name != "common")


def test_every_benchmark_is_found():
    assert {"blocks", "search", "fidelity", "oneshot", "transfer", "gpu"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_is_a_module_its_usage_names(name):
    """Each benchmark imports as ``benchmarks.<name>``, has a ``main``, and its docstring's usage line is the module
    command; none puts a folder on ``sys.path``, imports the CLI's internals or a private name of gcnas, or names a
    trial attribute by a bare string (they read them through gcnas.search.record)."""
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(module.main)
    assert f"python -m benchmarks.{name} " in module.__doc__
    source = Path(module.__file__).read_text()
    assert "sys.path" not in source
    assert not re.search(r"(from|import)\s+gcnas\.cli\b", source)  # running `-m gcnas.cli.search` is the CLI itself
    assert "user_attrs" not in source
    private = [f"{node.module}.{a.name}" for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
               and (node.module or "").split(".")[0] == "gcnas" for a in node.names if a.name.startswith("_")]
    assert not private, private


def test_a_benchmark_runs_as_a_module_from_the_repository_root():
    # the benchmark with the fewest imports (its --help still imports torch): this costs the start of a process
    res = subprocess.run([sys.executable, "-m", "benchmarks.dataloader_start", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "--images" in res.stdout and "--passes" in res.stdout


@pytest.mark.slow
def test_the_gpu_check_script_runs_where_the_search_machinery_is_missing(tmp_path):
    """benchmarks/gpu_check.sh is for a GPU machine whose Python has torch, timm and Triton only: its test files
    must run there without conftest.py, optuna, hydra, omegaconf or wandb. Here, without a GPU, the CUDA cases skip and
    the two benchmarks say in one line that they need one."""
    from test_layering import SEARCH_MACHINERY, blocker

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(blocker(SEARCH_MACHINERY, ()))
    # PYTEST_ADDOPTS: the script's test files run in full in the suite itself; here their slow Triton cases (a process
    # of their own under the interpreter, compiling for sm_90) would only repeat that
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path / "site"), "OUT": str(tmp_path / "out"),
           "PYTEST_ADDOPTS": "-m 'not slow'"}
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "== tests.txt: exit 0 after" in res.stdout, res.stdout[-3000:]
    tests = (tmp_path / "out" / "tests.txt").read_text()
    assert re.match(r"\d+ passed(, \d+ skipped)?(, \d+ deselected)? in ", tests.strip().splitlines()[-1]), tests[-2000:]
    import torch

    if not torch.cuda.is_available():
        assert "needs a CUDA device" in (tmp_path / "out" / "cost.md").read_text()
        assert "--device cuda needs a CUDA device" in (tmp_path / "out" / "fold.md").read_text()


def test_spread_is_mean_and_sample_std_scaled():
    assert spread([0.5, 0.7], 100) == "60.00 ± 14.14"
    assert spread([0.25, 0.5, 0.75], digits=3) == "0.500 ± 0.250"
    assert spread([0.3]) == "0.30 ± 0.00"  # one value: no spread, not an error


def test_pooled_sample_is_each_seeds_sample_once_plain_first():
    cfg = config("data=context")
    fid = Fidelity(cfg)
    first, second = sample(cfg, fid, 6, 0), sample(cfg, fid, 6, 1)
    pooled = pooled_sample(cfg, fid, [6, 6], [0, 1])
    keys = [a.key() for a in pooled]
    assert len(keys) == len(set(keys))
    assert not pooled[0].placements  # the plain backbone, which every sample holds, comes first and once
    assert keys[:6] == [a.key() for a in first]  # the first seed's sample in its own order
    assert set(keys) == {a.key() for a in first} | {a.key() for a in second}
    assert len(pooled) < len(first) + len(second)
    assert [a.key() for a in pooled_sample(cfg, fid, [6], [0])] == keys[:6]
    assert len(pooled_sample(cfg, fid, [6, 3], [0, 1])) < len(pooled)  # each seed its own size


def test_tau_gap_is_the_one_shot_tau_minus_one_seeds():
    alone = {0: [1.0, 2.0, 3.0, 4.0], 1: [1.0, 3.0, 2.0, 4.0]}
    left_out = {0: alone[1], 1: alone[0]}  # two seeds: each one's target is the other
    one = kendall_tau(alone[0], alone[1])  # the same either way round
    every = list(range(4))
    # [1, 2, 3, 4] is seed 0's ranking: tau `one` against seed 1 (seed 0's target), 1 against seed 0 (seed 1's)
    assert tau_gap([[1, 2, 3, 4]], alone, left_out)(every) == pytest.approx((one + 1) / 2 - one)
    assert tau_gap([[4, 3, 2, 1]], alone, left_out)(every) == pytest.approx((-one - 1) / 2 - one)
    # several supernets: their taus averaged
    assert tau_gap([[1, 2, 3, 4], [4, 3, 2, 1]], alone, left_out)(every) == pytest.approx(-one)
    # only the items drawn: over the first three, one seed's tau is 1/3 and the ranking's (1/3 + 1) / 2
    assert tau_gap([alone[0]], alone, left_out)([0, 1, 2]) == pytest.approx((1 / 3 + 1) / 2 - 1 / 3)


@pytest.mark.parametrize("share", ["site", "stage"])
def test_the_score_bench_reads_the_gradient_a_study_scores(share):
    """benchmarks/oneshot_scores.py's readings: its ``gradient`` candidate is gradient_score's value, the other
    readings say something (a backbone gradient; SNIP within Cauchy-Schwarz), a tensor two sites share is read once
    (under its owner), the plain backbone has no block readings."""
    import torch

    from gcnas.arch import Architecture, BlockSpec, Placement
    from gcnas.backbones import list_sites
    from gcnas.data.splits import TensorSplit
    from gcnas.oneshot import Supernet, gradient_score
    from benchmarks.oneshot_scores import CANDIDATES, readings

    kwargs = {"num_classes": 4, "in_chans": 3}
    sites = list_sites("gcnas_resnet_tiny", input_size=(3, 16, 16), **kwargs)
    specs = [BlockSpec(), BlockSpec(context="avg", transform="se", ratio=1 / 4, fusion=("scale", "add"), norm=None)]
    torch.manual_seed(0)
    net = Supernet("gcnas_resnet_tiny", kwargs, sites, specs, share=share)
    after = [s for s in sites if s.position == "after_add"][:2]
    arch = Architecture("gcnas_resnet_tiny", kwargs, tuple(Placement(s.stage, s.block, s.position, spec)
                                                           for s, spec in zip(after, specs)))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 3, 16, 16, generator=g), torch.randint(0, 4, (32,), generator=g)
    val = TensorSplit(torch.randn(16, 3, 16, 16, generator=g), torch.randint(0, 4, (16,), generator=g))
    r = readings(net, arch, x, y, val, batch_size=16)
    assert CANDIDATES["gradient"](r) == pytest.approx(gradient_score(net, arch, x, y, batch_size=16), rel=1e-9)
    assert CANDIDATES["gradient"](r) > 0 and r["backbone_g2"] > 0 and 0 <= r["acc"] <= 1
    assert len(r["sites"]) == (2 if share == "site" else 1)  # both sites are in stage 0
    for s in r["sites"].values():
        assert 0 <= s["gw"] <= (s["g2"] * s["w2"]) ** 0.5 * (1 + 1e-9) and s["g2"] > 0
    plain = readings(net, Architecture("gcnas_resnet_tiny", kwargs, ()), x, y, val, batch_size=16)
    assert plain["sites"] == {} and CANDIDATES["gradient"](plain) == 0 and plain["backbone_g2"] > 0
