"""Every command's --help starts with what it does, what it needs and three examples, then the config groups that apply
to it (conf/hydra/help/<command>.yaml for the Hydra commands, argparse's page for gcnas-blocks and gcnas-sites)."""
import functools
import re
import subprocess
import sys

import pytest

# command: (its primary config, the start of its one-line purpose, what its "Required:" line names, its groups)
HYDRA_COMMANDS = {
    "search": ("config", "search where global-context blocks", ["Required: nothing"],
               {"backbone", "data", "search_space", "sampler", "pruner", "storage", "objective", "trainer",
                "+experiment", "hydra/launcher"}),
    "train": ("train", "train an architecture from scratch", ["Required: arch=PATH"], {"data", "trainer"}),
    "confirm": ("confirm", "retrain a study's top", ["Required: study.name=NAME"], {"storage", "hydra/launcher"}),
    "export": ("export", "write a study's best", ["Required: study.name=NAME"], {"storage"}),
    "report": ("report", "draw a study's pictures", ["Required: study.name=NAME"], {"storage"}),
    "analyze": ("analyze", "the paper's NL observation", ["Required: nothing", "model=EXPORT_DIR"],
                {"data", "trainer"}),
}
ARGPARSE_COMMANDS = {"blocks": "the paper's members of the global context framework",
                     "sites": "a backbone's insertion sites"}
# the torch half of gcnas, which no --help needs (it took 8-13 s of every page)
HEAVY = ("torch", "timm", "optuna", "wandb", "matplotlib")


@functools.lru_cache(maxsize=None)
def _help(command: str) -> str:
    """``python -m gcnas.cli.COMMAND --help``'s page (how the console script runs it), checking that it loads none of
    gcnas's heavy modules."""
    code = (f"import sys; sys.argv = ['gcnas-{command}', '--help']\n"
            f"from gcnas.cli.{command} import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            f"print('loaded:', sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    page, loaded = res.stdout.rsplit("loaded: ", 1)
    assert loaded.strip() == "[]", f"gcnas-{command} --help loaded {loaded.strip()}"
    return page


def _examples(page: str, command: str) -> list[str]:
    block = re.search(r"^examples:\n((?:  .*\n)+)", page, re.M | re.I)
    assert block, page
    lines = [ln.strip() for ln in block.group(1).splitlines()]
    assert all(f"gcnas-{command}" in ln for ln in lines), lines
    return lines


def _groups(page: str) -> set[str]:
    section = page.split("== Config groups: group=option ==\n", 1)[1].split("\n\n", 1)[0]
    return {ln.split()[0] for ln in section.splitlines() if not ln.startswith(" ")}


@pytest.mark.parametrize("command", sorted(HYDRA_COMMANDS))
def test_hydra_command_help(command):
    config, purpose, required, groups = HYDRA_COMMANDS[command]
    page = _help(command)
    assert page.startswith(f"gcnas-{command}: {purpose}"), page[:200]
    required_line = page[page.index("Required: "):].split("\n\n", 1)[0]
    assert all(r in required_line for r in required), required_line
    assert page.index("Required: ") < page.index("Examples:") < page.index("== Config groups")
    assert len(_examples(page, command)) == 3
    assert _groups(page) == groups
    # every group the command's defaults list selects is on its page, each with its current choice and options
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        choices = compose(config, return_hydra_config=True).hydra.runtime.choices
    selected = {g for g in choices if not g.startswith("hydra/")}
    assert selected <= {g.lstrip("+") for g in groups}
    for group in selected:
        assert re.search(rf"now: {choices[group]}; options: [^=]*\b{choices[group]}\b", page), group


def test_each_command_lists_only_its_own_groups():
    search, train = _help("search"), _help("train")
    assert {"sampler", "pruner", "search_space"} <= _groups(search)
    assert not {"sampler", "pruner", "search_space", "backbone"} & _groups(train)
    assert not re.search(r"^(sampler|pruner)\b", train, re.M)
    assert "gcnas: " not in search and "gcnas: " not in train  # Hydra's internal group of registered defaults
    # a choice on the command line is what the page shows as the current one
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.search", "sampler=random", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "now: random; options: gp, grid, nsga2, random, tpe" in res.stdout


@pytest.mark.parametrize("command", sorted(ARGPARSE_COMMANDS))
def test_argparse_command_help(command):
    page = _help(command)
    assert f"gcnas-{command}: {ARGPARSE_COMMANDS[command]}" in page.split("\n\n")[1]  # after the usage line
    assert len(_examples(page, command)) == 3
