import os
import sys

# The tests import their formula references (tests/reference.py) as a plain module.
sys.path.insert(0, os.path.dirname(__file__))

# One thread per test process and per process a test starts (set before torch is imported): the tests train tiny
# models, which gain little from a second thread, and torch's OpenMP threads collapse when the cores are shared with
# anything else (a 4-trial search took 9 s with one thread and 105-112 s with two on this 2-core machine at load 6).
# A test of thread sizing (tests/test_runtime.py) sets its threads itself.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# CI sets this: where the set-up should have installed a system package (PostgreSQL, Debian's Fashion-MNIST), a
# missing one fails the tests instead of skipping them, so a broken install step cannot hide behind a green run.
REQUIRE_SYSTEM_PACKAGES = os.environ.get("GCNAS_REQUIRE_SYSTEM_PACKAGES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip, saying why; under GCNAS_REQUIRE_SYSTEM_PACKAGES=1 (CI) fail instead."""
    if REQUIRE_SYSTEM_PACKAGES:
        pytest.fail(f"{reason} (GCNAS_REQUIRE_SYSTEM_PACKAGES=1: required here)", pytrace=False)
    pytest.skip(reason)


# A fast search on the generated task: the study that the tracking, export and report tests read. One seed per
# reference (no noise-floor replicates), so a few trials include searched ones; tests/test_noise.py covers the floor.
FAST_SEARCH = ["data=synthetic", "trainer.epochs=2", "trainer.batch_size=32", "progress=none", "data.size=512",
               "data.val_size=64", "study.noise_seeds=1", "threads=1", "wandb.mode=disabled"]


def compose_search(root: Path, *overrides: str):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("config", overrides=[f"paths.root={root}", *FAST_SEARCH, *overrides])


@pytest.fixture(scope="session")
def searched(tmp_path_factory):
    """A finished 5-trial study with W&B offline tracking and the top 2 trials' weights kept."""
    from gcnas.cli.search import search

    root = tmp_path_factory.mktemp("searched")
    result = search(compose_search(root, "study.n_trials=5", "study.keep_weights=2", "sampler=random",
                                   "pruner=none", "wandb.mode=offline"))
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{root}/studies.db")
    return root, result, study


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for this test session; skipped, saying why, only where none can be started."""
    from postgres import PostgresServer

    server = PostgresServer()
    why = server.start()
    if why:
        server.stop()
        skip_or_fail(why)
    yield server
    server.stop()


def stop_after_epoch_one(make_model, data, trainer, ckpt_dir, **fit_kwargs) -> None:
    """``fit`` of the model ``make_model()`` builds (under seed 0, as gcnas builds its models) into ``ckpt_dir``,
    stopped after its first epoch: what a killed training leaves behind."""
    import torch

    from gcnas.train import fit

    class Stop(Exception):
        pass

    def stop(er):
        if er.epoch == 1:
            raise Stop

    torch.manual_seed(0)
    model = make_model()
    with pytest.raises(Stop):
        fit(model, data, trainer, seed=0, ckpt_dir=ckpt_dir, on_epoch=stop, **fit_kwargs)


@pytest.fixture(autouse=True)
def _torch_threads_unchanged(request):
    """Each test leaves torch at no more threads than it found (one, set above), and torch is put back to those. A
    command run in the test's process with ``threads=auto`` sets torch to every core and leaves it there, so every
    later test in that process trained on two threads of a shared 2-core machine, many times slower (docs/results.md,
    "The test suite"). Such a test fails, saying to pass ``threads=1``; a test of thread sizing puts back what it
    changed itself. (Where OMP_NUM_THREADS asks for more threads, a test's ``threads=1`` leaves fewer: no failure.)"""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if before is None:  # the test imported torch: it started at what OMP_NUM_THREADS says, where that is a number
        omp = os.environ.get("OMP_NUM_THREADS", "")
        before = max(1, int(omp)) if omp.isdigit() else torch.get_num_threads()
    n = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(before)
    if n > before:
        pytest.fail(f"{request.node.nodeid} left torch at {n} threads, not {before}: give the commands it runs "
                    "threads=1", pytrace=False)
