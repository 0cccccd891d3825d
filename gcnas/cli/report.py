"""``gcnas-report``: a study's pictures (Optuna's plots and where the blocks go) and a Markdown summary."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from gcnas.cli.common import require_study, resolve, user_errors
from gcnas.cli.args import ReportArgs
from gcnas.schema import read

if TYPE_CHECKING:
    from gcnas.report import Report

# The command's work (torch, timm, Optuna, W&B) is imported where it runs, so that --help starts in about a second.


def report(cfg: DictConfig) -> Report:
    """Write the report from a composed ``report`` config (tests call this with ``hydra.compose``)."""
    from gcnas.report import write_report
    from gcnas.search.study import open_study

    c = resolve(cfg)
    name, url = require_study(c)
    rc = read(ReportArgs, c.get("report"), "report")
    study = open_study(url, name)
    out = Path(rc.dir or Path(c["paths"]["root"]) / name / "report")
    rep = write_report(study, out, top_k=rc.top_k, html=None if rc.html == "auto" else rc.html, storage=url)
    print(f"Report of {name} in {rep.dir}/: {rep.summary.name}, "
          + ", ".join(p.name for p in rep.pictures + rep.html))
    for what, why in rep.skipped.items():
        print(f"  not drawn: {what} ({why})")
    return rep


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="report")
@user_errors("gcnas-report")
def main(cfg: DictConfig) -> None:
    report(cfg)


if __name__ == "__main__":
    main()
