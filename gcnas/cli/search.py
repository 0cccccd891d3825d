"""``gcnas-search``: one search worker per Hydra job (``-m worker=0,1 hydra/launcher=joblib`` for several)."""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from gcnas.cli.common import check_writable, resolve, user_errors
from gcnas.search import SearchResult, run_search
from gcnas.search.worker import public_config
from gcnas.track import WandbTracker
from gcnas.train.runtime import usable_cpus



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
    return max(1, usable_cpus() // concurrent)


def search(cfg: DictConfig) -> SearchResult:
    """Resolve the composed config and run one worker (tests call this with ``hydra.compose``)."""
    choice, concurrent = _hydra_context()
    config = resolve(cfg)
    config["threads"] = worker_threads(config.get("threads"), concurrent)
    check_writable(config["paths"]["root"])  # before the study or its W&B run is created
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
    if result.best_architecture:
        print(f"\nBest architecture (trial {result.best_number}): {result.best_architecture}\n")
        print(Path(result.best_architecture).read_text().rstrip())
        print()
    print(f"Open the study: optuna-dashboard {result.storage}")  # the storage URL, password redacted
    print(f"            or: optuna trials --study-name {result.study_name} --storage {result.storage}")


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="config")
@user_errors("gcnas-search")
def main(cfg: DictConfig) -> None:
    search(cfg)


if __name__ == "__main__":
    main()
