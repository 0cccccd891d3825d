"""W&B runs that resume, checked in the real offline runs W&B writes: a gcnas-train run stopped after an epoch and
started again continues the same W&B run at the next step, train.resume=false starts a new one, a retried search
trial closes the run of the trial it retried, and a run id of another training is refused in one line."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_module

from gcnas.cli.search import search
from gcnas.cli.train import train
from gcnas.errors import ConfigError, Interrupted
from gcnas.track import WandbTracker
from gcnas.track.runs import RUN_FILE, record_run_id, recorded_run_id
from conftest import compose_search
from wandb_offline import OfflineRun, offline_runs

ARCH = """
backbone: gcnas_resnet_tiny
backbone_kwargs: {in_chans: 1, num_classes: 4}
placements:
  - {stages: [3], blocks: all, position: after_add, spec: gc_r4}
"""
FAST = ["data=synthetic", "data.size=256", "data.val_size=64", "trainer.epochs=2", "trainer.batch_size=32",
        "trainer.warmup_epochs=0", "device=cpu", "threads=1", "wandb.mode=offline"]


def _cfg(root: Path, *overrides: str):
    arch = root / "architecture.yaml"
    root.mkdir(parents=True, exist_ok=True)
    arch.write_text(ARCH)
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("train", overrides=[f"paths.root={root}", f"arch={arch}", *FAST, *overrides])


def _runs(root: Path) -> list[OfflineRun]:
    """The offline runs under ``root``, once W&B's service has written each one whole (its exit record): the run's
    ``finish`` returns before the service has flushed the file."""
    deadline = time.monotonic() + 60
    while True:
        runs = offline_runs(root)
        if all(r.exit_code is not None for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def _run_id(run: OfflineRun) -> str:
    """The id W&B gave the offline run (its file is ``run-<id>.wandb``)."""
    return next(run.path.glob("run-*.wandb")).stem[len("run-"):]


def _steps(run: OfflineRun) -> list[int]:
    return [row["_step"] for row in run.history if "epoch" in row]


class _CtrlC(logging.Handler):
    """Ctrl-C right after the log line that contains ``after`` (what a user's interrupt at that moment does)."""

    def __init__(self, after: str) -> None:
        super().__init__(logging.INFO)
        self.after = after

    def emit(self, record: logging.LogRecord) -> None:
        if self.after in record.getMessage():
            raise Interrupted()


@contextmanager
def _interrupt_after(logger: str, after: str):
    lg, handler = logging.getLogger(logger), _CtrlC(after)
    level = lg.level
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        lg.removeHandler(handler)
        lg.setLevel(level)


def test_a_resumed_training_continues_its_wandb_run_and_a_start_over_opens_a_new_one(tmp_path):
    with _interrupt_after("gcnas.train", "epoch 1/2"), pytest.raises(Interrupted):
        train(_cfg(tmp_path))
    resumed = train(_cfg(tmp_path))
    assert resumed.rows[0]["resumed_from"] == 1
    first, second = _runs(tmp_path)
    assert _run_id(first) == _run_id(second) == recorded_run_id(resumed.rows[0]["dir"])
    assert _steps(first) == [1] and _steps(second) == [2]  # the resumed half starts at the step after the first's
    assert first.exit_code == 1 and second.exit_code == 0  # interrupted, then finished
    assert second.name == first.name == "gcnas-seed0" and second.summary["val_acc"] == resumed.rows[0]["val_acc"]

    train(_cfg(tmp_path, "train.resume=false"))
    (anew,) = [r for r in _runs(tmp_path) if _run_id(r) != _run_id(first)]
    assert _steps(anew) == [1, 2]
    assert recorded_run_id(resumed.rows[0]["dir"]) == _run_id(anew)  # the next resume continues the new run


def test_a_retried_trial_closes_the_run_of_the_trial_it_retried(tmp_path):
    """A trial interrupted after its first epoch is retried by the next run under a new number; the retry closes the
    first trial's W&B run as retried instead of leaving it beside its own."""
    overrides = ("study.n_trials=1", "study.enqueue_baselines=false", "trainer.epochs=1", "data.size=256",
                 "sampler=random", "pruner=none", "wandb.mode=offline", "progress=plain", "threads=1")
    with _interrupt_after("gcnas.search", "epoch 1:"), pytest.raises(Interrupted):
        search(compose_search(tmp_path, *overrides))
    result = search(compose_search(tmp_path, *overrides))
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path}/studies.db")
    (retry,) = [t for t in study.trials if "retry_of" in t.user_attrs]
    first = retry.user_attrs["retry_of"]
    assert retry.state == optuna.trial.TrialState.COMPLETE and study.trials[first].user_attrs["interrupted"]

    runs = [r for r in _runs(tmp_path) if r.job_type == "trial"]
    closed = [r for r in runs if r.name == f"trial-{first}"]
    assert len(closed) == 2  # its own run, failed by the interrupt, and the same run reopened to close it
    assert _run_id(closed[0]) == _run_id(closed[1]) == recorded_run_id(
        tmp_path / result.study_name / "trials" / f"trial-{first}")
    assert closed[0].summary["state"] == "fail" and closed[0].exit_code == 1
    assert closed[1].summary["state"] == "retried" and closed[1].summary["retried_by"] == retry.number
    (own,) = [r for r in runs if r.name == f"trial-{retry.number}"]
    assert _run_id(own) != _run_id(closed[0]) and own.summary["retry_of"] == first and own.exit_code == 0
    assert [row["epoch"] for row in own.history if "epoch" in row] == [1]  # its own curve, from epoch 1
    assert len(runs) == 3  # nothing else: no stray run


def test_a_run_id_of_another_training_is_refused_before_anything_trains(tmp_path):
    a = tmp_path / "a"
    done = train(_cfg(a, "trainer.epochs=1"))
    theirs = recorded_run_id(done.rows[0]["dir"])
    before = sorted(str(p) for p in a.rglob("*"))

    # another training (two epochs: another default folder under the same paths.root) given the first one's run id
    with pytest.raises(ConfigError) as e:
        train(_cfg(a, f"wandb.run_id={theirs}"))
    msg = str(e.value)
    assert msg.startswith(f"wandb.run_id: '{theirs}' is the W&B run of another training") and "\n" not in msg
    assert sorted(str(p) for p in a.rglob("*")) == before  # nothing trained, nothing written
    # a search trial's run, recorded in its folder under the same paths.root as the tracker records it
    record_run_id(a / "some-study" / "trials" / "trial-3", "trial3id", trial=3, study="some-study")
    with pytest.raises(ConfigError, match=r"^wandb\.run_id: 'trial3id' is the W&B run of another training or search "
                                          r"trial \(.*trial-3\)"):
        train(_cfg(a, "wandb.run_id=trial3id"))
    before = sorted(str(p) for p in a.rglob("*"))

    with pytest.raises(ConfigError, match=r"^wandb\.run_id: 'mine1234' is not the W&B run of the checkpoint in"):
        train(_cfg(a, "trainer.epochs=1", "wandb.run_id=mine1234"))
    with pytest.raises(ConfigError, match=r"^wandb\.run_id: .* holds the curves of the run that train.resume=false"):
        train(_cfg(a, "trainer.epochs=1", f"wandb.run_id={theirs}", "train.resume=false"))
    assert sorted(str(p) for p in a.rglob("*")) == before
    with pytest.raises(ConfigError, match=r"^wandb\.run_id: names one W&B run, but this training has 2"):
        train(_cfg(tmp_path / "b", "wandb.run_id=mine1234", "seeds=[0,1]"))
    with pytest.raises(ConfigError, match=r"^wandb\.run_id: must be a W&B run id .*; got 'a#b'$"):
        train(_cfg(tmp_path / "b", "wandb.run_id='a#b'"))
    with pytest.raises(ConfigError, match=r"^wandb\.run_id: a search opens one W&B run per trial"):
        WandbTracker({"mode": "offline", "run_id": "mine1234"}, "study")
    assert not (tmp_path / "b" / "train").exists() and not (tmp_path / "b" / "wandb").exists()


def test_a_given_run_id_names_the_run_of_a_new_training(tmp_path):
    rep = train(_cfg(tmp_path, "wandb.run_id=mine1234", "trainer.epochs=1"))
    (run,) = _runs(tmp_path)
    assert _run_id(run) == "mine1234" == recorded_run_id(rep.rows[0]["dir"])
    assert (Path(rep.rows[0]["dir"]) / RUN_FILE).is_file()
