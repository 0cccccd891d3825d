"""Making a backbone's pretrained weights when no hub is reachable: train the plain backbone once, write safetensors.

A ``pretrain`` config section (``data``: overrides of the study's data section, e.g. other classes; ``trainer``: the
recipe; ``seed``) says how to make the file that ``backbone.pretrained_file`` names. :func:`ensure_pretrained` trains
it only when the file does not exist yet; concurrent workers take a lock beside the file, so it is trained once and
reused by every later study and run. A JSON file beside it records what it was trained on.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from gcnas.errors import ConfigError
from gcnas.files import atomic_write, file_lock

__all__ = ["ensure_pretrained"]

log = logging.getLogger("gcnas.train")


def ensure_pretrained(backbone: Mapping[str, Any], data_cfg: Mapping[str, Any], pretrain: Optional[Mapping[str, Any]],
                      device: str = "cpu") -> Optional[Path]:
    """Train and write ``backbone.pretrained_file`` from the ``pretrain`` section if the file is missing; returns the
    file written (None when there was nothing to do)."""
    if not pretrain or not backbone.get("pretrained_file"):
        return None
    path = Path(str(backbone["pretrained_file"]))
    if path.is_file():
        return None
    if not isinstance(pretrain.get("trainer"), Mapping):
        raise ConfigError("pretrain.trainer: the recipe that makes backbone.pretrained_file (a trainer section, "
                          "e.g. {epochs: 8, batch_size: 128, lr: 0.1}) is required when pretrain is set")
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".lock")):  # a second worker waits here, then finds the file
        if path.is_file():
            return None
        return _train(path, backbone, data_cfg, pretrain, device)


def _train(path: Path, backbone: Mapping[str, Any], data_cfg: Mapping[str, Any], pretrain: Mapping[str, Any],
           device: str) -> Path:
    from safetensors.torch import save_model

    from gcnas.backbones import create_backbone
    from gcnas.train.one import load_data_for
    from gcnas.train.loop import fit

    name, kwargs = backbone["name"], dict(backbone.get("kwargs") or {})
    data_over = dict(pretrain.get("data") or {})
    data = load_data_for({**dict(data_cfg), **data_over}, name, kwargs).to(device)
    seed = int(pretrain.get("seed", 0))
    torch.manual_seed(seed)
    model = create_backbone(name, **{**kwargs, "num_classes": data.num_classes, "in_chans": data.in_chans})
    log.info("backbone.pretrained_file %s is missing: pretraining plain %s on %s (%s epochs), once", path, name,
             data.describe(), pretrain["trainer"].get("epochs"))
    t0 = time.perf_counter()
    result = fit(model, data, dict(pretrain["trainer"]), seed=seed, device=device)
    record = {"backbone": name, "kwargs": kwargs, "data": {**dict(data_cfg), **data_over},
              "classes": list(data.classes), "trainer": dict(pretrain["trainer"]), "seed": seed,
              "val_acc": result.final_val_acc, "test_acc": result.test_acc, "seconds": time.perf_counter() - t0}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str))
    atomic_write(path, lambda tmp: save_model(model, str(tmp)))  # last: the file's presence says it is complete
    log.info("wrote %s: val acc %.4f, test acc %s, %.0f s", path, result.final_val_acc,
             "n/a" if result.test_acc is None else f"{result.test_acc:.4f}", record["seconds"])
    return path
