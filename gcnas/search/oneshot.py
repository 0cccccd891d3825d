"""``search.method=oneshot`` in the worker: the study's supernet, trained once and shared by every worker.

The supernet of a study lives in ``<paths.root>/<study>/supernet.pt`` (its weights and :meth:`Supernet.identity` plus
the recipe that trained it). The first worker to take the file lock ``supernet.lock`` trains it (the study's data and
trainer recipe, ``search.supernet_epochs`` epochs, a fresh path of the space per batch, drawn as
``search.supernet_sampling`` says; its weights shared per site or per stage as ``search.supernet_share`` says) and
writes it under a temporary name, renamed when complete; every other worker waits on the lock and loads it.
Training is checkpointed every epoch in ``supernet-training/`` beside it (:func:`gcnas.train.fit`'s checkpoint, with
``identity.json``): a worker killed mid-training releases the lock, and the next one resumes after the last finished
epoch, drawing the paths the killed one would have (the folder is removed once ``supernet.pt`` is written). A
checkpoint, finished or not, of another space, backbone, starting weights, sharing or recipe is refused, naming what
differs. Each trial then scores its architecture on the supernet instead of training it, BatchNorm recalibrated on
``search.calib_images`` training images first: ``search.supernet_score=accuracy`` (:func:`gcnas.oneshot.score`, the
validation accuracy), ``gradient`` (:func:`gcnas.oneshot.gradient_score`, the squared gradient of the training loss
on those images with respect to the architecture's block weights) or ``gradient_and_loss``
(:func:`gcnas.oneshot.gradient_and_loss_score`: the gradient's and the validation loss's standings among a fixed
reference sample of the space, measured once on the supernet by the first worker that needs it and kept beside it in
``supernet-reference.json``, :func:`study_reference`). Only the first is an accuracy, so a study keeps one score, see
:func:`check_study_score`.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from gcnas.arch import Architecture
from gcnas.data import DataSplits
from gcnas.errors import ConfigError
from gcnas.files import atomic_write, atomic_write_text, file_lock
from gcnas.oneshot import (PathSampler, ScoreReference, Supernet, gradient_and_loss_score, gradient_score,
                           reference_architectures, score, train_supernet)
from gcnas.schema import read
from gcnas.search.config import SearchConfig
from gcnas.space import SearchSpace
from gcnas.train import TrainerConfig
from gcnas.search import record

__all__ = ["study_supernet", "study_reference", "oneshot_scorer", "check_study_score"]

log = logging.getLogger("gcnas.search")

CHECKPOINT = "supernet.pt"
TRAINING_DIR = "supernet-training"  # the unfinished training's per-epoch checkpoint
REFERENCE = "supernet-reference.json"  # search.supernet_score=gradient_and_loss: the reference sample's readings
LOCK = "supernet.lock"  # held while a worker trains the supernet or measures its reference; the others wait
REFERENCE_DRAWS = 32  # architectures in the reference sample (gcnas.oneshot.reference_architectures, seed 0)


def _search(search: Union[SearchConfig, Mapping[str, Any]]) -> SearchConfig:
    return search if isinstance(search, SearchConfig) else read(SearchConfig, search, "search")


def _recipe(trainer: Mapping[str, Any], search: Union[SearchConfig, Mapping[str, Any]], seed: int,
            data: DataSplits) -> dict[str, Any]:
    search = _search(search)
    recipe = TrainerConfig.from_mapping({**trainer, "epochs": search.supernet_epochs}).to_dict()
    out = {**recipe, "seed": seed, "data": data.name, "train_images": len(data.train)}
    sampling = search.supernet_sampling
    if sampling != "uniform":  # absent means uniform, so supernets trained before the key existed still load
        out["sampling"] = sampling
    return out


def _check_identity(path: Path, saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    differ = [k for k in [*wanted, *(k for k in saved if k not in wanted)] if saved.get(k) != wanted.get(k)]
    if differ:
        k = differ[0]
        raise ConfigError(f"search.method=oneshot: {path} holds a supernet of another {k} ({saved.get(k)!r}, this "
                          f"study needs {wanted.get(k)!r}); search into a new study.name, or delete it to train "
                          "the supernet again")


def study_supernet(net: Supernet, space: SearchSpace, data: DataSplits, trainer: Mapping[str, Any],
                   search: Union[SearchConfig, Mapping[str, Any]], seed: int, study_dir: Path,
                   device: str) -> Supernet:
    """``net`` (:func:`gcnas.oneshot.supernet_for_space` of ``space``, untrained) as the study's trained supernet:
    loaded if a worker trained it already, else trained here (once, under a lock)."""
    search = _search(search)
    wanted = {**net.identity(), "recipe": _recipe(trainer, search, seed, data)}
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / CHECKPOINT
    with file_lock(study_dir / LOCK):  # one worker trains; the others wait here, then load
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            _check_identity(path, saved["identity"], wanted)
            net.load_state_dict(saved["state_dict"])
            log.info("supernet loaded from %s", path)
            return net.to(device)
        t0 = time.perf_counter()
        recipe = {k: v for k, v in wanted["recipe"].items()
                  if k not in ("seed", "data", "train_images", "sampling")}
        ckpt_dir = study_dir / TRAINING_DIR
        started = ckpt_dir / "identity.json"
        if started.is_file():  # a worker died mid-training: resume it, if it is this study's supernet
            _check_identity(ckpt_dir, json.loads(started.read_text()), json.loads(json.dumps(wanted)))
        else:
            ckpt_dir.mkdir(exist_ok=True)
            started.write_text(json.dumps(wanted, indent=1))
        log.info("training the study's supernet: %d designs at %d sites, %d epochs", len(net.specs),
                 len(net.choices), recipe["epochs"])
        sampler = PathSampler(space, seed=seed, sampling=search.supernet_sampling)
        result, paths = train_supernet(net, sampler, data, recipe, seed=seed, device=device, ckpt_dir=ckpt_dir)
        if result.resumed_from:
            log.info("supernet training resumed after epoch %d of %d", result.resumed_from, recipe["epochs"])
        (study_dir / REFERENCE).unlink(missing_ok=True)  # measured on the supernet this one replaces
        saved = {"identity": wanted, "state_dict": net.state_dict(), "paths": paths,
                 "seconds": time.perf_counter() - t0}
        atomic_write(path, lambda tmp: torch.save(saved, tmp))
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        log.info("supernet trained in %.0f s (%d paths) and saved to %s", time.perf_counter() - t0, paths, path)
        return net


def study_reference(net: Supernet, space: SearchSpace, data: DataSplits,
                    search: Union[SearchConfig, Mapping[str, Any]], study_dir: Path, batch_size: int,
                    device: str) -> Optional[ScoreReference]:
    """The reference ``search.supernet_score=gradient_and_loss`` places each trial against (``None`` for the other
    scores): read from ``supernet-reference.json`` beside the study's trained supernet ``net``, or measured there once
    (under the supernet's lock: :data:`REFERENCE_DRAWS` draws of the space, each scored for its gradient and its
    validation loss; about as long as that many trials). A reference measured with another ``search.calib_images``
    is refused: the study's scores would not compare."""
    search = _search(search)
    if search.supernet_score != "gradient_and_loss":
        return None
    path = study_dir / REFERENCE
    with file_lock(study_dir / LOCK):
        if path.is_file():
            reference = ScoreReference.from_dict(json.loads(path.read_text()))
            if reference.calib_images != search.calib_images:
                raise ConfigError(f"search.calib_images: the study's score reference ({path}) was measured with "
                                  f"{reference.calib_images} calibration images and this run asks "
                                  f"{search.calib_images}; the scores would not compare. Use "
                                  f"search.calib_images={reference.calib_images}, or a new study.name")
            return reference
        t0 = time.perf_counter()
        archs = reference_architectures(space, REFERENCE_DRAWS)
        calib_x, calib_y = data.train.head(search.calib_images)
        reference = ScoreReference.measure(net, archs, calib_x, calib_y, data.val, batch_size, device)
        atomic_write_text(path, json.dumps(reference.to_dict(), indent=1))
        log.info("score reference: %d architectures measured on the supernet in %.0f s, saved to %s", len(archs),
                 time.perf_counter() - t0, path)
        return reference


class OneShotScorer:
    """A trial's one-shot score of an architecture (``kind``: ``search.supernet_score``; ``reference``: the study's
    :func:`study_reference`, needed by ``gradient_and_loss``)."""

    def __init__(self, net: Supernet, data: DataSplits, kind: str, calib_images: int, batch_size: int,
                 device: str, reference: Optional[ScoreReference] = None) -> None:
        if kind == "gradient_and_loss" and reference is None:
            raise ValueError("search.supernet_score=gradient_and_loss needs the study's reference (study_reference)")
        self.net, self.data, self.kind, self.batch_size, self.device = net, data, kind, batch_size, device
        self.reference = reference
        self.calib_x, self.calib_y = data.train.head(calib_images)

    def __call__(self, arch: Architecture) -> float:
        if self.kind == "gradient":
            return gradient_score(self.net, arch, self.calib_x, self.calib_y, self.batch_size, self.device)
        if self.kind == "gradient_and_loss":
            return gradient_and_loss_score(self.net, arch, self.calib_x, self.calib_y, self.data.val, self.reference,
                                           self.batch_size, self.device)
        return score(self.net, arch, self.calib_x, self.data.val, batch_size=self.batch_size, device=self.device)


def oneshot_scorer(net: Supernet, data: DataSplits, search: Union[SearchConfig, Mapping[str, Any]], batch_size: int,
                   device: str, reference: Optional[ScoreReference] = None) -> OneShotScorer:
    """The study's scorer: ``search.supernet_score`` of each architecture on the trained supernet ``net``
    (``reference``: :func:`study_reference`'s, for ``gradient_and_loss``)."""
    search = _search(search)
    return OneShotScorer(net, data, search.supernet_score, search.calib_images, batch_size, device, reference)


def check_study_score(study: Any, search: Union[SearchConfig, Mapping[str, Any]], study_name: str) -> None:
    """Refuse a one-shot run whose ``search.supernet_score`` differs from the one the study's values already are
    (a study created before the key, or by a standalone run, holds accuracies; a standalone run on a study of
    gradient scores is refused too)."""
    search = _search(search)
    have = record.ONESHOT_SCORE.get(study, "accuracy")
    wanted = search.supernet_score if search.method == "oneshot" else "accuracy"
    if have != wanted:
        asks = (f"search.supernet_score={wanted!r}" if search.method == "oneshot"
                else "search.method=standalone (accuracies)")
        raise ConfigError(f"search.supernet_score: study {study_name!r} holds {have} scores and this run asks "
                          f"{asks}; the two do not compare, so a study keeps one. Use search.method=oneshot "
                          f"search.supernet_score={have}, or a new study.name")
