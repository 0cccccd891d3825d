"""``gcnas-train``: train an architecture from scratch at full fidelity, optionally beside the plain backbone.

``gcnas-train arch=exports/<study>/trial-N/architecture.yaml trainer=full baseline=true seeds=[0,1,2]`` trains the
architecture and the plain backbone under the same seeds, tracks every run in W&B (``job_type=train``), keeps resumable
checkpoints under ``train.dir`` (default: ``<paths.root>/train/<arch key>-<hash of data, trainer, weights>``) and
prints a comparison table with mean +- std over the seeds. A checkpoint of another run there is refused before
anything trains (:mod:`gcnas.export.retrain`).

``torchrun --nproc_per_node=N --no-python gcnas-train ...`` trains each run with DistributedDataParallel over N
processes (NCCL on CUDA, Gloo on CPU); rank 0 alone writes checkpoints, logs, W&B runs and the table.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from gcnas.cli.common import resolve, user_errors
from gcnas.errors import ConfigError

if TYPE_CHECKING:
    from gcnas.export.retrain import TrainReport

# The command's work (torch, timm, Optuna, W&B) is imported where it runs, so that --help starts in about a second.


def train(cfg: DictConfig) -> TrainReport:
    """Train from a composed ``train`` config (tests call this with ``hydra.compose``); the work is
    :func:`gcnas.export.retrain.retrain`."""
    from gcnas.backbones import BackboneWeights
    from gcnas.export.retrain import load_architecture, retrain
    from gcnas.train.distributed import is_main_process
    from gcnas.train.runtime import set_threads

    c = resolve(cfg)
    arch, arch_path = load_architecture(c.get("arch"))
    seeds = c.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise ConfigError(f"seeds: must be a non-empty list of integers, e.g. seeds=[0,1,2]; got {seeds!r}")
    if not isinstance(c.get("baseline", False), bool):
        raise ConfigError(f"baseline: must be true or false; got {c.get('baseline')!r}")
    set_threads(c.get("threads", "auto"))
    tc = c.get("train") or {}
    if not isinstance(tc.get("resume", True), bool):
        raise ConfigError(f"train.resume: must be true or false; got {tc.get('resume')!r}")
    # no train.dir: a folder named after what decides the run (architecture, data, trainer, weights), so another
    # architecture or other data never lands in this one's checkpoints
    report = retrain(arch, c["data"], c["trainer"], tc.get("dir") or None, root=Path(c["paths"]["root"]) / "train",
                     seeds=seeds, baseline=bool(c.get("baseline")), device=c.get("device", "auto"),
                     resume=tc.get("resume", True), wandb=c.get("wandb"),
                     weights=BackboneWeights.from_config(c.get("backbone")))
    if is_main_process():
        print(f"\nTrained {arch_path} on {report.description}\n")
        print(report.table)
    return report


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="train")
@user_errors("gcnas-train")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    finally:
        from gcnas.train.distributed import shutdown

        shutdown()  # leave torchrun's process group, if any


def main() -> None:
    """The console script. Under torchrun, ranks other than 0 write no Hydra output folder and no log file (rank 0
    writes them); Hydra reads these overrides from the command line, so they are added before it starts."""
    if int(os.environ.get("RANK", "0")) > 0:
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra.run.dir=."]
    _hydra_main()


if __name__ == "__main__":
    main()
