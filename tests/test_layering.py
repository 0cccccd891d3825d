"""DESIGN.md layering, checked through every module and every import it makes, direct or not.

Imports point down only: blocks (1) < backbones (2) < architecture (3) < space (4) < data (5) < train (5; it reads
data, never the reverse) < one-shot (5b) < search (6) < track, export, report, analysis (7) < cli (8). Below the
search nothing imports optuna, hydra, omegaconf or wandb (an exported model loads with torch + timm + gcnas alone;
:mod:`gcnas.schema` imports OmegaConf only when it reads a config). Beside the layers, ``gcnas`` itself, the modules
every layer may use and ``gcnas.conf`` (composing a config) import no layer, and no torch or timm where they need none.

Two checks per rule. Every module of a package is imported in a process where whatever that package must not reach
cannot be imported at all, so an import three modules down fails as surely as a direct one (timm itself imports wandb
inside a ``try``, so "not in sys.modules" alone would test timm, not us); the layers that keep the same libraries out
share one process, imported bottom up with the layers above each still blocked. And no module names such a package in
any import statement, a function's deferred import included, which the first check cannot see.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gcnas"

SEARCH_MACHINERY = ("optuna", "hydra", "omegaconf", "wandb")
HEAVY = ("torch", "timm", "optuna", "hydra", "omegaconf", "wandb")
# gcnas's layers, bottom up; equal ranks may import each other
RANK = {"gcnas.blocks": 1, "gcnas.backbones": 2, "gcnas.arch": 3, "gcnas.space": 4, "gcnas.data": 5,
        "gcnas.train": 5.5, "gcnas.oneshot": 5.7, "gcnas.search": 6, "gcnas.track": 7, "gcnas.export": 7,
        "gcnas.report": 7, "gcnas.analysis": 7, "gcnas.cli": 8, "gcnas.conf": 9}
LAYERS = tuple(RANK)


def above(package: str) -> tuple[str, ...]:
    """The layers ``package`` must not import: its own rank's others excepted, every one not below it."""
    return tuple(p for p in LAYERS if RANK[p] > RANK[package])


@dataclass(frozen=True)
class Rule:
    name: str
    modules: tuple[str, ...]
    libraries: tuple[str, ...]  # third-party packages none of the modules may import
    layers: tuple[str, ...]     # gcnas packages none of the modules may import
    deferred: bool = False      # its import statements name them, to run on first use only (gcnas's PEP 562 names)


def modules_of(package: str) -> tuple[str, ...]:
    """``package`` and every module in it (a module file is its own list)."""
    path = ROOT / "conf" if package == "gcnas.conf" else PACKAGE.joinpath(*package.split(".")[1:])
    if not path.is_dir():
        return (package,)
    return (package, *sorted(f"{package}.{f.stem}" for f in path.glob("*.py") if f.stem != "__init__"))


def layer(package: str, libraries: tuple[str, ...]) -> Rule:
    return Rule(package, modules_of(package), libraries, above(package))


RULES = (
    Rule("gcnas", ("gcnas",), HEAVY, LAYERS, deferred=True),  # its public names load on first use
    # beside the layers: what every layer may use
    Rule("torch-free", ("gcnas.errors", "gcnas.registry", "gcnas.files", "gcnas.stats", "gcnas.sections"), HEAVY,
         LAYERS),
    Rule("gcnas.schema", ("gcnas.schema",), HEAVY, LAYERS, deferred=True),  # OmegaConf when it reads
    Rule("torch-only", ("gcnas.machine", "gcnas.compat"), HEAVY[1:], LAYERS),
    Rule("gcnas.conf", ("gcnas.conf",), ("torch", "timm", "optuna", "wandb"), LAYERS[:-1]),  # composing a config
    *(layer(p, SEARCH_MACHINERY) for p in ("gcnas.blocks", "gcnas.backbones", "gcnas.arch", "gcnas.space",
                                          "gcnas.data", "gcnas.train", "gcnas.oneshot")),
    layer("gcnas.search", ("hydra", "wandb")),
    *(layer(p, ("hydra",)) for p in ("gcnas.track", "gcnas.export", "gcnas.report", "gcnas.analysis")),
)


def blocker(libraries, layers) -> str:
    """Code that makes ``libraries`` and gcnas's ``layers`` unimportable in this process, as if not installed; the
    layers are ``_Block.layers``, which the code after it may narrow."""
    return (
        "import sys\n"
        "class _Block:\n"
        f"    layers = {tuple(layers)!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        top, sub = name.split('.')[0], '.'.join(name.split('.')[:2])\n"
        f"        if top in {tuple(libraries)!r} or sub in _Block.layers:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the layering test)', name=name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )


def run_blocked(code: str, libraries=SEARCH_MACHINERY, layers=()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", blocker(libraries, layers) + code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def import_failures(modules, libraries, layers) -> dict[str, str]:
    return stage_failures([(modules, layers)], libraries)[0]


def stage_failures(stages, libraries) -> list[dict[str, str]]:
    """In one process where ``libraries`` are missing, for each ``(modules, layers)`` of ``stages`` in turn: which of
    ``modules`` fail to import where ``layers`` are missing too, as ``{module: error}``. Each stage's layers must lie
    within the stage before's, so what an earlier stage imported is allowed in every later one: importing the layers
    bottom up in one process checks what a fresh process per layer would, without importing torch once per layer."""
    for (_, wider), (_, narrower) in zip(stages, stages[1:]):
        assert set(narrower) <= set(wider), (wider, narrower)
    code = ("import importlib, json\n"
            "results = []\n"
            f"for modules, layers in {[(tuple(m), tuple(la)) for m, la in stages]!r}:\n"
            "    _Block.layers = layers\n"
            "    failed = {}\n"
            "    for m in modules:\n"
            "        try:\n"
            "            importlib.import_module(m)\n"
            "        except Exception as e:\n"
            "            failed[m] = f'{type(e).__name__}: {e}'\n"
            "    results.append(failed)\n"
            "print(json.dumps(results))\n")
    out = run_blocked(code, libraries, stages[0][1])
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def import_results() -> dict[str, dict[str, str]]:
    """Each rule's import failures. Rules that keep the same libraries out share one process, their layers imported
    bottom up (:func:`stage_failures`)."""
    groups: dict[tuple[str, ...], list[Rule]] = {}
    for rule in RULES:
        groups.setdefault(rule.libraries, []).append(rule)
    results = {}
    for libraries, rules in groups.items():
        rules.sort(key=lambda r: -len(r.layers))
        for rule, failed in zip(rules, stage_failures([(r.modules, r.layers) for r in rules], libraries)):
            results[rule.name] = failed
    return results


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_every_module_imports_where_what_lies_above_it_is_missing(rule, import_results):
    failed = import_results[rule.name]
    assert not failed, "\n".join(f"{m}: {e}" for m, e in failed.items())


def source_of(module: str) -> Path:
    if module == "gcnas.conf":
        return ROOT / "conf" / "__init__.py"
    path = PACKAGE.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def named_imports(path: Path) -> list[str]:
    """Every module an import statement in ``path`` names, deferred ones (inside a function) included."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "gcnas"]
    return names


@pytest.mark.parametrize("rule", [r for r in RULES if not r.deferred], ids=lambda r: r.name)
def test_no_module_names_what_lies_above_it_even_in_a_deferred_import(rule):
    bad = []
    for module in rule.modules:
        path = source_of(module)
        for name in named_imports(path):
            if name.split(".")[0] in rule.libraries or ".".join(name.split(".")[:2]) in rule.layers:
                bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, bad


def test_the_rules_cover_every_module_of_gcnas():
    covered = {m for r in RULES for m in r.modules}
    everything = {"gcnas", "gcnas.conf"} | {
        ".".join(("gcnas", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")}
    assert everything - covered <= set(modules_of("gcnas.cli")), sorted(everything - covered)


def test_composing_every_commands_config_loads_no_torch_timm_optuna_or_wandb():
    """``gcnas.conf`` and Hydra's compose API need the config sections (gcnas.sections), not the code that runs them."""
    code = ("import sys\n"
            "import gcnas.conf\n"
            "from hydra import compose, initialize_config_module\n"
            "with initialize_config_module(config_module='gcnas.conf', version_base='1.3'):\n"
            "    cfg = compose('config', overrides=['paths.root=/tmp/gcnas-layering'])\n"
            "    for name in ('train', 'confirm', 'export', 'report', 'analyze'):\n"
            "        compose(name)\n"
            "print(cfg.study.n_trials, cfg.search.method, cfg.wandb.mode)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'timm', 'optuna', 'wandb'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    composed, loaded = out.stdout.strip().splitlines()[-2:]
    assert composed.split()[:2] == ["20", "standalone"]
    assert loaded == "[]"


def test_lower_layers_work_where_the_search_machinery_is_missing():
    out = run_blocked(
        "import gcnas, gcnas.blocks, gcnas.blocks.convert, gcnas.backbones, gcnas.arch, torch\n"
        "arch = gcnas.Architecture.from_dict({'backbone': 'gcnas_resnet_tiny', 'placements': [\n"
        "    {'stages': [2, 3], 'blocks': 'all', 'position': 'before_add', 'spec': 'gc'}]})\n"
        "m = gcnas.build_model(arch)\n"
        "print(tuple(m(torch.randn(1, 3, 32, 32)).shape))\n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(1, 1000)"


def test_the_blocker_blocks_libraries_and_layers_and_nothing_else():
    out = run_blocked("import wandb\n")
    assert out.returncode != 0 and "blocked by the layering test" in out.stderr
    failed = import_failures(("gcnas.errors", "gcnas.data", "gcnas.train"), (), ("gcnas.data",))
    assert set(failed) == {"gcnas.data", "gcnas.train"}, failed  # train imports data, so it fails too
    assert "blocked by the layering test" in failed["gcnas.train"]
