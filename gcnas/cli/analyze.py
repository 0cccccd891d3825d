"""``gcnas-analyze``: the paper's NL query-position statistics, attention figures, and NL/SNL/GC/SE/none compared."""
from __future__ import annotations
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from gcnas.cli.common import resolve, user_errors

if TYPE_CHECKING:
    from gcnas.analysis import AnalysisResult

# The command's work (torch, timm, Optuna, W&B) is imported where it runs, so that --help starts in about a second.


def analyze(cfg: DictConfig) -> AnalysisResult:
    """Run from a composed ``analyze`` config (tests call this with ``hydra.compose``)."""
    from gcnas.analysis import run_analysis
    from gcnas.train.runtime import set_threads

    c = resolve(cfg)
    set_threads(c.get("threads", "auto"))
    result = run_analysis(c)
    if result.stats_table:
        print("\nNL statistics: mean cosine distance between query positions (mean ± std over seeds)\n")
        print(result.stats_table)
    if result.comparison_table:
        print(f"\nNL vs SNL vs GC vs SE vs none ({c['data']['name']}, {c['backbone']['name']}, "
              f"{c['trainer']['epochs']} epochs, seeds {c['seeds']})\n")
        print(result.comparison_table)
    print(f"\nWritten to {result.dir}/: analysis.md, nl_statistics.csv, comparison.csv"
          + (", attention.png" if result.figure else "") + f" ({result.seconds / 60:.1f} min)")
    return result


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="analyze")
@user_errors("gcnas-analyze")
def main(cfg: DictConfig) -> None:
    analyze(cfg)


if __name__ == "__main__":
    main()
