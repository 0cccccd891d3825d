"""``gcnas-export``: write a study's best (or chosen) trial as a folder that loads without gcnas's search machinery."""
from __future__ import annotations

from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from gcnas.cli.common import require_study, resolve, user_errors
from gcnas.cli.args import ExportArgs, ExportDirArgs
from gcnas.schema import read, read_known

if TYPE_CHECKING:
    from gcnas.export import ExportResult

# The command's work (torch, timm, Optuna, W&B) is imported where it runs, so that --help starts in about a second.


def export(cfg: DictConfig) -> ExportResult:
    """Run an export from a composed ``export`` config (tests call this with ``hydra.compose``)."""
    c = resolve(cfg)
    args, out = read_known(ExportArgs, c), read(ExportDirArgs, c.get("export"), "export")
    name, url = require_study(c)
    from gcnas.export import export_trial  # torch and timm: after the input is checked, so a refusal comes at once
    from gcnas.train.runtime import set_threads

    set_threads(args.threads)
    result = export_trial(url, name, trial=args.trial, pick=args.pick, out_dir=out.dir, overwrite=args.overwrite,
                          retrain=args.retrain, root=c["paths"]["root"], device=args.device)
    program = ("no model.pt2, see above" if result.program_max_abs_diff is None else
               f"model.pt2 {result.program_max_abs_diff:.1e}")
    print(f"Exported trial {result.trial} of {name} ({result.picked}; weights {result.weights_source}; max abs diff "
          f"to torch: ONNX {result.onnx_max_abs_diff:.1e}, {program}) to {result.dir}/: {', '.join(result.files)}")
    print(f"Load it with: python -c \"import gcnas; print(gcnas.load_model('{result.dir}'))\"")
    return result


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="export")
@user_errors("gcnas-export")
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
