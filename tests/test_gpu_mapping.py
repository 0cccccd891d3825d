"""Search workers on a node's GPUs: which GPU each worker takes, for given GPU counts (a plain function, so it is
tested here without a GPU), and the bad devices refused in one line before any trial."""
from __future__ import annotations

import pytest

from conftest import compose_search
from gcnas.cli.common import user_errors
from gcnas.cli.search import search
from gcnas.errors import ConfigError
from gcnas.sections import check_device
from gcnas.train.runtime import gpu_for_worker, resolve_device


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_k_workers_on_k_gpus_use_k_distinct_gpus(k):
    assert sorted(gpu_for_worker(w, k) for w in range(k)) == list(range(k))
    assert [resolve_device("cuda", k, worker=w) for w in range(k)] == [f"cuda:{i}" for i in range(k)]
    assert [resolve_device("auto", k, worker=w) for w in range(k)] == [f"cuda:{i}" for i in range(k)]


def test_more_workers_than_gpus_wrap_around_evenly():
    assert [gpu_for_worker(w, 4) for w in range(10)] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_workers_per_gpu_puts_neighbouring_workers_on_one_gpu():
    assert [gpu_for_worker(w, 4, workers_per_gpu=2) for w in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [gpu_for_worker(w, 2, workers_per_gpu=3) for w in range(8)] == [0, 0, 0, 1, 1, 1, 0, 0]
    with pytest.raises(ConfigError, match=r"search\.workers_per_gpu: must be an integer >= 1; got 0"):
        gpu_for_worker(0, 2, workers_per_gpu=0)


def test_a_pinned_gpu_and_the_cpu_are_what_they_say_and_cuda_outside_a_search_is_torchs_current_gpu():
    assert resolve_device("cuda:1", 2, worker=0) == "cuda:1"  # pinned: every worker on GPU 1
    assert resolve_device("cpu", 4, worker=3) == "cpu"
    assert resolve_device("auto", 0, worker=3) == "cpu"
    assert resolve_device("cuda", 4) == "cuda"  # gcnas-train, export: no worker index (torchrun maps its ranks)


@pytest.mark.parametrize("device,n_gpus,words", [
    ("cuda:7", 2, ["device: cuda:7 names GPU 7, but torch sees 2", "cuda:0 to cuda:1"]),
    ("cuda", 0, ["device: cuda was asked for but torch sees no CUDA device", "device=cpu or auto"]),
    ("cuda:0", 0, ["device: cuda:0 was asked for but torch sees no CUDA device"]),
    ("cuda:x", 2, ["device: must be cpu, cuda", "cuda:N (GPU N) or auto; got 'cuda:x'"]),
    ("gpu", 2, ["device: must be cpu, cuda", "got 'gpu'"]),
])
def test_a_device_that_is_not_there_is_one_line_naming_the_key(device, n_gpus, words):
    with pytest.raises(ConfigError) as e:
        resolve_device(device, n_gpus, worker=0)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_the_config_takes_a_gpu_index_and_refuses_other_words_where_it_is_read():
    check_device("cuda:3")
    with pytest.raises(ConfigError, match="export.device: must be cpu, cuda"):
        check_device("cuda:", "export.device")


@pytest.mark.parametrize("overrides,words", [
    (["device=cuda:7"], ["device: cuda:7 was asked for but torch sees no CUDA device"]),  # this machine has none
    (["device=tpu"], ["device: must be cpu, cuda", "cuda:N (GPU N) or auto; got 'tpu'"]),
    (["search.workers_per_gpu=0"], ["search.workers_per_gpu", "integer >= 1", "got 0"]),
])
def test_gcnas_search_refuses_a_bad_device_before_any_trial(overrides, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        user_errors("gcnas-search")(search)(compose_search(tmp_path, "wandb.mode=disabled", *overrides))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "studies.db").exists() and not list(tmp_path.rglob("trial-*"))


def test_every_trial_records_the_device_it_trained_on(searched):
    from gcnas.search import record

    root, _, study = searched
    trained = [t for t in study.trials if record.EPOCHS.get(t)]
    assert trained and {record.DEVICE.get(t) for t in trained} == {"cpu"}
