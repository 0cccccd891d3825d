"""gcnas-export on real studies: the folder, ONNX checked by onnxruntime, loading without the search machinery."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import optuna
import pytest
import torch
from optuna.trial import TrialState

from conftest import compose_search
from test_layering import run_without_search_machinery
from gcnas.arch import Architecture, build_model
from gcnas.export import export_trial
from gcnas.export import export as export_module
from gcnas.search.summary import ranked_trials


def _url(root: Path) -> str:
    return f"sqlite:///{root}/studies.db"


def test_search_keeps_the_weights_of_the_top_trials_only(searched):
    root, result, study = searched
    top = [t.number for t in ranked_trials(study)[:2]]
    kept = sorted(int(p.parent.name.split("-")[1]) for p in (root / result.study_name).glob("trials/*/model.safetensors"))
    assert kept == sorted(top)


def test_export_best_writes_a_loadable_folder(searched, tmp_path):
    root, result, study = searched
    out = export_trial(_url(root), result.study_name, out_dir=tmp_path / "best")
    assert out.trial == result.best_number and out.weights_source == "kept"
    assert sorted(out.files) == ["MODEL_CARD.md", "architecture.yaml", "model.onnx", "model.safetensors"]
    assert out.onnx_max_abs_diff <= 1e-4
    t = study.trials[out.trial]
    assert (tmp_path / "best" / "architecture.yaml").read_text() == Architecture.from_yaml(
        t.user_attrs["architecture"]).to_yaml()
    card = (tmp_path / "best" / "MODEL_CARD.md").read_text()
    for text in (f"trial {t.number} of `{result.study_name}`", "delta vs plain", f"{t.values[0]:.4f}",
                 "gcnas.load_model", "search space `gc_full`", f"{t.user_attrs['params']:,}",
                 f"- measured on: {t.user_attrs['machine']};"):
        assert text in card, text

    # torch + timm + gcnas alone: optuna, hydra and wandb are never imported; the output matches onnxruntime's
    x = np.random.default_rng(0).standard_normal((3, *study.user_attrs["input_size"])).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import numpy as np, torch, gcnas\n"
            f"m = gcnas.load_model({str(tmp_path / 'best')!r})\n"
            f"y = m(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).detach().numpy()\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
            "print('loaded')\n")
    res = run_without_search_machinery(code)  # optuna, hydra, wandb and omegaconf cannot even be imported there
    assert res.returncode == 0 and res.stdout.strip() == "loaded", res.stderr[-2000:]
    y = np.load(tmp_path / "y.npy")
    sess = onnxruntime.InferenceSession(str(tmp_path / "best" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"input": x})[0] - y).max() <= 1e-4
    # ... and equals the trial's kept weights
    from safetensors.torch import load_model

    ref = build_model(Architecture.from_yaml(t.user_attrs["architecture"]))
    load_model(ref, t.user_attrs["weights"])
    with torch.no_grad():
        assert torch.equal(ref.eval()(torch.from_numpy(x)), torch.from_numpy(y))


def test_existing_export_is_kept_unless_overwrite(searched, tmp_path):
    root, result, _ = searched
    export_trial(_url(root), result.study_name, out_dir=tmp_path / "e")
    stamp = (tmp_path / "e" / "MODEL_CARD.md").stat().st_mtime_ns
    with pytest.raises(ValueError, match=r"export.dir: .* already exists; pass overwrite=true"):
        export_trial(_url(root), result.study_name, out_dir=tmp_path / "e")
    assert (tmp_path / "e" / "MODEL_CARD.md").stat().st_mtime_ns == stamp
    export_trial(_url(root), result.study_name, out_dir=tmp_path / "e", overwrite=True)
    assert (tmp_path / "e" / "MODEL_CARD.md").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no temporary or old folders left


def test_a_failed_export_leaves_nothing_that_looks_valid(searched, tmp_path, monkeypatch):
    root, result, _ = searched
    monkeypatch.setattr(export_module, "ONNX_TOLERANCE", -1.0)  # every ONNX check now fails, after files were written
    with pytest.raises(ValueError, match="model.onnx: onnxruntime differs from torch"):
        export_trial(_url(root), result.study_name, out_dir=tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_missing_study_lists_the_studies_and_missing_storage_is_named(searched, tmp_path):
    root, result, _ = searched
    with pytest.raises(ValueError, match=f"study.name: no study 'nope' in .*; it holds: {result.study_name}"):
        export_trial(_url(root), "nope", out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="study.storage: sqlite:///.*/missing.db does not exist"):
        export_trial(f"sqlite:///{tmp_path}/missing.db", "nope", out_dir=tmp_path / "x")
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "x").exists()


def test_trial_that_is_not_complete_says_so(searched, tmp_path):
    root, result, _ = searched
    shutil.copy(root / "studies.db", tmp_path / "copy.db")
    url = f"sqlite:///{tmp_path}/copy.db"
    study = optuna.load_study(study_name=result.study_name, storage=url)
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.1},
                                              user_attrs={"epochs": 1}))
    n = len(study.trials) - 1
    with pytest.raises(ValueError, match=f"trial: trial {n} is not complete \\(pruned after epoch 1\\); complete "
                                         "trials: "):
        export_trial(url, result.study_name, trial=n, out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match=f"trial: study '{result.study_name}' has trials 0..{n}; got 99"):
        export_trial(url, result.study_name, trial=99, out_dir=tmp_path / "x")


def test_a_trial_without_kept_weights_is_retrained_to_its_recorded_accuracy(searched, tmp_path):
    root, result, study = searched
    unkept = [t for t in ranked_trials(study) if not Path(t.user_attrs.get("weights", "/none")).exists()]
    assert unkept, "the fixture keeps 2 of 5 trials"
    t = unkept[0]
    out = export_trial(_url(root), result.study_name, trial=t.number, out_dir=tmp_path / "r")
    assert out.weights_source == "retrained"
    card = (tmp_path / "r" / "MODEL_CARD.md").read_text()
    line = next(x for x in card.splitlines() if x.startswith("| validation accuracy of the exported"))
    retrained = float(line.split("|")[2])
    assert abs(retrained - t.values[0]) <= 2 / 64  # same data, seed and recipe; at most a sample or two of noise
    with pytest.raises(ValueError, match="kept no weights"):
        export_trial(_url(root), result.study_name, trial=t.number, out_dir=tmp_path / "r2", retrain=False)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    from gcnas.cli.search import search

    root = tmp_path_factory.mktemp("multi")
    result = search(compose_search(root, "study.n_trials=5", "objective=accuracy_params", "sampler=random",
                                   "wandb.mode=disabled"))
    return root, result, optuna.load_study(study_name=result.study_name, storage=_url(root))


def test_multi_objective_pick_from_the_pareto_front(multi, tmp_path):
    root, result, study = multi
    front = sorted(study.best_trials, key=lambda t: -t.values[0])
    out = export_trial(_url(root), result.study_name, pick=0, out_dir=tmp_path / "p0")
    assert out.trial == front[0].number and "entry 0 of the Pareto front" in out.picked
    bound = min(t.user_attrs["params"] for t in study.trials if t.state == TrialState.COMPLETE)
    out = export_trial(_url(root), result.study_name, pick=f"max_params={bound}", out_dir=tmp_path / "pb")
    chosen = study.trials[out.trial]
    assert chosen.user_attrs["params"] <= bound
    assert f"Chosen: best accuracy with params <= {bound:g}" in (tmp_path / "pb" / "MODEL_CARD.md").read_text()
    with pytest.raises(ValueError, match=f"pick: the Pareto front has {len(front)} trials"):
        export_trial(_url(root), result.study_name, pick=len(front), out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="pick: must be an index into the Pareto front or one of max_params=<value>"):
        export_trial(_url(root), result.study_name, pick="params<3", out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="pick: no complete trial has params <= 1"):
        export_trial(_url(root), result.study_name, pick="max_params=1", out_dir=tmp_path / "x")


def test_cli_export_user_errors_exit_2_without_traceback(searched, tmp_path):
    root, result, _ = searched
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.export", f"paths.root={root}"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"study.name: required (study.name=NAME); the storage holds: {result.study_name}" in res.stderr
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.export", f"paths.root={root}",
                          f"study.name={result.study_name}", "trial=-3"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "trial: must be 'best' or a trial number >= 0; got -3" in res.stderr
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.export", f"paths.root={root}",
                          f"study.name={result.study_name}"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "exports" / result.study_name / f"trial-{result.best_number}" / "model.onnx").is_file()
