"""``gcnas-search``: one search worker per Hydra job (``-m worker=0,1 hydra/launcher=joblib`` for several)."""
from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from gcnas.cli.common import check_writable, resolve, user_errors

if TYPE_CHECKING:
    from gcnas.search import SearchResult

# The search's modules (torch, Optuna, W&B) are imported where they are used, so that ``gcnas-search --help`` starts in
# about a second instead of nine.


def _hydra_context() -> tuple[str | None, int]:
    """(chosen search-space option, concurrent jobs) when running under Hydra; (None, 1) otherwise."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except ValueError:
        return None, 1
    choice = hc.runtime.choices.get("search_space")
    concurrent = 1
    if str(hc.mode) == "RunMode.MULTIRUN":
        from gcnas.machine import usable_cpus

        target = str(OmegaConf.select(hc, "launcher._target_", default=""))
        cpus = usable_cpus()
        if "joblib" in target:
            n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=None)
            concurrent = cpus if n_jobs in (None, -1) else max(1, min(int(n_jobs), cpus))
        elif "LocalLauncher" in target and "submitit" in target:  # submitit's local executor: jobs side by side
            concurrent = max(1, min(int(OmegaConf.select(hc, "launcher.array_parallelism", default=cpus)), cpus))
        # the basic launcher runs jobs one after another; a SLURM task has its own allocation
    return choice, concurrent


def worker_threads(threads, concurrent: int | None = None):
    """``threads=auto`` (or null): this worker's share of the cores among the jobs Hydra runs side by side."""
    if threads not in (None, "auto"):
        return threads
    if concurrent is None:
        concurrent = _hydra_context()[1]
    from gcnas.machine import usable_cpus

    return max(1, usable_cpus() // concurrent)


def search(cfg: DictConfig) -> SearchResult:
    """Resolve the composed config and run one worker (tests call this with ``hydra.compose``)."""
    from gcnas.search.config import read_job

    choice, concurrent = _hydra_context()
    config = resolve(cfg)
    config["threads"] = worker_threads(config.get("threads"), concurrent)
    # the study, search and constraints keys (the worker reads them again) and a writable root: checked before torch
    # is imported, and before the study or its W&B run is created
    read_job(config)
    check_writable(config["paths"]["root"])
    from gcnas.search import run_search
    from gcnas.search.worker import public_config
    from gcnas.track import WandbTracker
    tracker = WandbTracker(config.get("wandb") or {"mode": "disabled"}, config["study"]["name"],
                           public_config(config))
    try:
        result = run_search(config, callbacks=[tracker],
                            space_source=f"search_spaces/{choice}.yaml" if choice else None)
    finally:
        tracker.close()  # also when the worker stops on an error: W&B calls still queued are run, runs finished
    print_summary(result)
    return result


def print_summary(result: SearchResult) -> None:
    """The worker's closing lines: the top trials (or the Pareto front), the best architecture, how to open the
    study."""
    title = "Pareto front" if len(result.best_values or [0]) > 1 else "Top trials"
    print(f"\n{title} of study {result.study_name} ({result.n_finished} finished trials, {result.trials_run} run "
          f"by this worker):\n")
    print(result.table)
    if result.duplicates:
        print(f"\n{result.duplicates} of the {result.trials_run} trials this worker ran drew an architecture already "
              "trained: each took that trial's result and a trial of the budget, and trained nothing. TPE does so "
              "once it keeps returning to the best trials' choices; sampler=random draws anywhere in the space "
              "(docs/searching.md, \"Trials and their records\").")
    if result.best_architecture:
        print(f"\nBest architecture (trial {result.best_number}): {result.best_architecture}\n")
        print(Path(result.best_architecture).read_text().rstrip())
        print()
    print(open_study_hint(result.study_name, result.storage))


DASHBOARD_EXTRA = "pip install 'gcnas[dashboard]'"


def optuna_tools_storage(url: str) -> str:
    """The storage argument Optuna's own tools take for a gcnas storage URL (redacted): the URL itself, except for a
    journal, which they open from its file's path (a ``journal:///`` URL would be read as a database URL by
    SQLAlchemy), and a URL whose password was redacted from ``GCNAS_STORAGE_URL`` (storage=postgres), which is that
    variable: a command to copy that works and shows no password."""
    if "***@" in url:
        from gcnas.search.study import redact_url

        if redact_url(os.environ.get("GCNAS_STORAGE_URL", "")) == url:
            return '"$GCNAS_STORAGE_URL"'
    if not url.startswith("journal://"):
        return url
    path = url[len("journal://"):]  # what gcnas.search.study.make_storage opens
    return "/" + path.lstrip("/") if path.startswith("/") else path


def tool_command(name: str) -> str:
    """How a shell runs the console script ``name`` installed beside this Python (optuna, optuna-dashboard): its bare
    name where the shell's PATH finds that one (an activated environment), else its path, as the README runs
    ``.venv/bin/gcnas-search``; so a copied command runs, with the Optuna that wrote the study. A script not
    installed here keeps its bare name."""
    beside = Path(sys.executable).parent / name
    if not beside.is_file():
        return name
    found = shutil.which(name)
    if found and Path(found).resolve() == beside.resolve():
        return name
    return shlex.quote(str(beside))


def open_study_hint(study_name: str, storage: str) -> str:
    """Two lines: how to open the study with optuna-dashboard (and how to install it where it is not) and with
    Optuna's CLI. ``storage`` is the redacted URL the summary prints. The CLI prints YAML, an attribute per line: its
    default table puts every trial's parameters in one column, about 700 characters wide for gc_full's choices
    (docs/results.md, "Trial records in Optuna's tools")."""
    where = optuna_tools_storage(storage)
    missing = importlib.util.find_spec("optuna_dashboard") is None
    dashboard = "optuna-dashboard" if missing else tool_command("optuna-dashboard")
    return (f"Open the study: {dashboard} {where}" + (f"   ({DASHBOARD_EXTRA} first)" if missing else "")
            + f"\n            or: {tool_command('optuna')} trials --study-name {study_name} --storage {where} -f yaml")


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="config")
@user_errors("gcnas-search")
def main(cfg: DictConfig) -> None:
    search(cfg)


if __name__ == "__main__":
    main()
