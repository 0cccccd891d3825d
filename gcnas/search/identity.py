"""A study's identity: what its trials were made from, recorded once and checked by every worker that opens it.

Trials of one study are compared with each other (the ranking, every delta to the plain backbone, the noise floor), so
they must all come from the same backbone and starting weights, the same data, the same search space, the same
training recipe (fidelity) and the same objective. Worker 0 records :func:`study_identity` in the study's user
attribute ``identity`` when it creates the study; every later worker, rerun, or worker of a multirun compares its own
and refuses, before any training and without touching the study, a run made from other inputs
(:func:`check_study_identity`): one line naming the keys that differ and the way on (another ``study.name``, or the
study's own values).

A study made by a gcnas that did not record identities gets this run's recorded (with a warning: what it was made from
before cannot be checked).
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Mapping, Sequence

import optuna

from gcnas.backbones import BackboneWeights
from gcnas.data import DataSplits
from gcnas.data.identity import identity_differences
from gcnas.errors import ConfigError
from gcnas.space import SearchSpace
from gcnas.train import TrainerConfig
from gcnas.train.config import RUNTIME_KEYS
from gcnas.search import record

__all__ = ["IDENTITY_ATTR", "study_identity", "check_study_identity", "RUNTIME_TRAINER_KEYS"]

log = logging.getLogger("gcnas.search")

IDENTITY_ATTR = record.IDENTITY.name  # study user attribute
# trainer keys that change how fast a trial runs, not what it computes (channels_last, compile; the recipe's name is
# only a label)
RUNTIME_TRAINER_KEYS = ("name", *RUNTIME_KEYS)
_SHOWN = 4  # differences named in the refusal; the rest are counted


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def study_identity(cfg: Mapping[str, Any], data: DataSplits, space: SearchSpace, weights: BackboneWeights,
                   metrics: Sequence[str]) -> dict[str, Any]:
    """What a study's trials are made from (see the module docstring), as plain data for its storage."""
    trainer = TrainerConfig.from_mapping(cfg["trainer"]).to_dict()
    search = dict(cfg.get("search") or {})
    method = {"method": search.get("method", "standalone")}
    if method["method"] == "oneshot":  # a one-shot study's values come from one supernet: how it is made and read
        method.update({k: v for k, v in sorted(search.items()) if k.startswith("supernet_") or k == "calib_images"})
    return {
        "backbone": {"name": space.backbone, "weights": weights.identity(),
                     "kwargs": {k: space.backbone_kwargs[k] for k in sorted(space.backbone_kwargs)}},
        "data": dict(data.identity),
        "search_space": {"name": space.name, "digest": _digest(cfg["search_space"])},
        "trainer": {k: v for k, v in sorted(trainer.items()) if k not in RUNTIME_TRAINER_KEYS},
        "objective": {"metrics": list(metrics), "directions": list(cfg["objective"]["directions"])},
        "search": method,
    }


# the differences a user recognises first: where the data is and what it holds, then the rest section by section
_FIRST = ("data.root", "data.name", "data.num_classes", "data.fingerprint", "backbone.name", "backbone.weights",
          "search.method")
_SECTIONS = ("data.", "backbone.", "search_space.", "trainer.", "objective.", "search.")


def _telling(diff: str) -> tuple:
    key = diff.partition(":")[0]
    if key in _FIRST:
        return (0, _FIRST.index(key), key)
    return (1, next((i for i, p in enumerate(_SECTIONS) if key.startswith(p)), len(_SECTIONS)), key)


def check_study_identity(study: optuna.Study, identity: Mapping[str, Any], where: str) -> None:
    """Refuse ``identity`` if the study recorded another one; record it if the study has none yet.

    ``where`` names the study in the message (its name and redacted storage URL).
    """
    recorded = record.IDENTITY.get(study)
    if recorded is None:
        if study.get_trials(deepcopy=False):
            log.warning("study %s predates recorded identities: what its %d trials were made from cannot be checked; "
                        "this run's backbone, data, space, trainer and objective are recorded from now on", where,
                        len(study.get_trials(deepcopy=False)))
        record.IDENTITY.set(study, json.loads(json.dumps(identity, default=str)))
        return
    diffs = sorted(identity_differences(recorded, json.loads(json.dumps(identity, default=str))), key=_telling)
    if not diffs:
        return
    shown = "; ".join(diffs[:_SHOWN])
    if len(diffs) > _SHOWN:
        shown += "; also " + ", ".join(d.partition(":")[0] for d in diffs[_SHOWN:])
    raise ConfigError(f"study.name: study {where} was made from other inputs than this run's ({shown}); its trials "
                      f"would be compared with this run's as if alike. Give this run its own study.name, or run it "
                      f"with the study's values")
