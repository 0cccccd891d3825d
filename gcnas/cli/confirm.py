"""``gcnas-confirm``: retrain a study's top trials and the plain backbone with fresh, paired seeds (see
:mod:`gcnas.search.confirm`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from gcnas.cli.common import check_writable, require_study, resolve, user_errors
from gcnas.cli.search import worker_threads
from gcnas.schema import read
from gcnas.cli.args import ConfirmConfig

if TYPE_CHECKING:
    from gcnas.search import SearchResult

# The command's work (torch, timm, Optuna, W&B) is imported where it runs, so that --help starts in about a second.


def confirm(cfg: DictConfig) -> SearchResult:
    """Run one confirmation worker from a composed ``confirm`` config (tests call this with ``hydra.compose``)."""
    from gcnas.search.confirm import confirm_study, confirmation, confirmation_study_name, confirmation_table
    from gcnas.search.study import open_study
    from gcnas.search.worker import public_config
    from gcnas.track import WandbTracker

    c = resolve(cfg)
    check_writable(c["paths"]["root"])
    name, url = require_study(c)
    conf = read(ConfirmConfig, c.get("confirm"), "confirm")
    run = {key: c[key] for key in ("worker", "threads", "device", "progress", "paths", "wandb") if key in c}
    run["threads"] = worker_threads(c.get("threads"))
    tracker = WandbTracker(c.get("wandb") or {"mode": "disabled"}, confirmation_study_name(name),
                           public_config(c))
    try:
        result = confirm_study(url, name, k=conf.k, seeds=conf.seeds, first_seed=conf.first_seed,
                               trainer=conf.trainer, data=conf.data, run=run, callbacks=[tracker])
    finally:
        tracker.close()
    found = confirmation(open_study(url, name), url) or []
    print(f"\nConfirmation of {name} ({result.n_finished} of the confirmation's trials finished):\n")
    print(confirmation_table(found))
    return result


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="confirm")
@user_errors("gcnas-confirm")
def main(cfg: DictConfig) -> None:
    confirm(cfg)


if __name__ == "__main__":
    main()
