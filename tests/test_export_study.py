"""gcnas-export on real studies: the folder, ONNX checked by onnxruntime, loading without the search machinery,
damaged or mismatched folders, and a study folder moved elsewhere."""
from __future__ import annotations

import json
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from hydra import compose, initialize_config_module

from conftest import compose_search
from processes import run_together
from test_layering import run_blocked
import gcnas
from gcnas.arch import Architecture, build_model
from gcnas.cli.export import export as export_cli
from gcnas.errors import ConfigError
from gcnas.export import export_trial
from gcnas.export import export as export_module
from gcnas.search import record
from gcnas.search.paths import resolve_stored, study_folder
from gcnas.search.summary import ranked_trials


def _url(root: Path) -> str:
    return f"sqlite:///{root}/studies.db"


def _kept(root: Path, study: optuna.Study, t) -> Path:
    """Where trial ``t``'s kept weights lie (a study records them relative to its folder)."""
    return resolve_stored(study_folder(root, study.study_name), t.user_attrs.get("weights", "none"))


def test_search_keeps_the_weights_of_the_top_trials_only(searched):
    root, result, study = searched
    top = [t.number for t in ranked_trials(study)[:2]]
    kept = sorted(int(p.parent.name.split("-")[1])
                  for p in (root / result.study_name).glob("trials/*/model.safetensors"))
    assert kept == sorted(top)


def test_export_best_writes_a_loadable_folder(searched, tmp_path):
    root, result, study = searched
    out = export_trial(_url(root), result.study_name, out_dir=tmp_path / "best")
    assert out.trial == result.best_number and out.weights_source == "kept"
    assert sorted(out.files) == ["MODEL_CARD.md", "architecture.yaml", "config.json", "model.onnx", "model.pt2",
                                 "model.safetensors"]
    assert out.onnx_max_abs_diff <= 1e-4 and out.program_max_abs_diff <= 1e-4
    t = study.trials[out.trial]
    assert (tmp_path / "best" / "architecture.yaml").read_text() == Architecture.from_yaml(
        record.architecture_of(study, t)).to_yaml()
    # config.json in timm's hub form, from the preprocessing the study recorded
    hub = json.loads((tmp_path / "best" / "config.json").read_text())
    recorded = study.user_attrs["pretrained_cfg"]
    assert hub["architecture"] == "gcnas_resnet_tiny" and hub["num_classes"] == recorded["num_classes"] == 4
    assert hub["label_names"] == recorded["label_names"] and hub["model_args"]["in_chans"] == 1
    assert {k: v for k, v in hub["pretrained_cfg"].items() if k in recorded} == \
        {k: v for k, v in recorded.items() if k != "label_names"}
    card = (tmp_path / "best" / "MODEL_CARD.md").read_text()
    for text in (f"trial {t.number} of `{result.study_name}`", "delta vs plain", f"{t.values[0]:.4f}",
                 "gcnas.load_model", "search space `gc_full`", f"{t.user_attrs['params']:,}",
                 f"- measured on: {record.machine_of(study, t)};", "resolve_data_config(model=model)",
                 f"| mean | {recorded['mean']} |", f"| input_size | {recorded['input_size']} |",
                 f"| crop_pct | {recorded['crop_pct']} |", f"| interpolation | {recorded['interpolation']} |"):
        assert text in card, text

    # torch + timm + gcnas alone: optuna, hydra and wandb are never imported; the output matches onnxruntime's
    x = np.random.default_rng(0).standard_normal((3, *study.user_attrs["input_size"])).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import json, numpy as np, torch, gcnas\n"
            "from timm.data import resolve_data_config\n"
            f"m = gcnas.load_model({str(tmp_path / 'best')!r})\n"
            f"y = m(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).detach().numpy()\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
            "print(json.dumps(resolve_data_config(model=m)))\n")
    res = run_blocked(code)  # optuna, hydra, wandb and omegaconf cannot even be imported there
    assert res.returncode == 0, res.stderr[-2000:]
    timm_cfg = json.loads(res.stdout.strip().splitlines()[-1])  # timm's data config, read from config.json
    assert timm_cfg == {k: recorded[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct",
                                                 "crop_mode")}
    y = np.load(tmp_path / "y.npy")
    sess = onnxruntime.InferenceSession(str(tmp_path / "best" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"input": x})[0] - y).max() <= 1e-4
    # model.pt2 with torch alone (neither timm nor any of gcnas importable), at batch sizes it was not traced with,
    # carrying the same config.json; and torch.compile captures it whole (fullgraph: no graph break; the eager backend
    # skips Inductor's code generation, which tests/test_compile.py covers and which costs half a minute here)
    code = ("import json, numpy as np, torch\n"
            f"files = {{'config.json': ''}}\n"
            f"m = torch.export.load({str(tmp_path / 'best' / 'model.pt2')!r}, extra_files=files).module()\n"
            f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
            "with torch.no_grad():\n"
            "    np.save(" + repr(str(tmp_path / "y_pt2.npy")) + ", m(x).numpy())\n"
            "    one = m(x[:1])\n"
            "    compiled = torch.compile(m, fullgraph=True, backend='eager')(x[:1])\n"
            "print(json.dumps({'one': one.tolist(), 'compiled': compiled.tolist(), 'config': files['config.json']}))\n")
    res = run_blocked(code, libraries=("timm", "gcnas", "optuna", "hydra", "wandb", "omegaconf"))
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert np.abs(np.load(tmp_path / "y_pt2.npy") - y).max() <= 1e-4
    for key in ("one", "compiled"):
        assert np.abs(np.array(got[key]) - y[:1]).max() <= 1e-4, key
    assert json.loads(got["config"]) == hub
    assert "`model.pt2` checked as loaded back" in card
    assert '\n- torch alone: `torch.export.load("model.pt2").module()`' in card  # a list item, not a run-on paragraph
    # ... and equals the trial's kept weights
    from safetensors.torch import load_model

    ref = build_model(Architecture.from_yaml(record.architecture_of(study, t)))
    load_model(ref, _kept(root, study, t))
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


def test_a_model_torch_export_cannot_capture_is_exported_without_model_pt2(searched, tmp_path, monkeypatch, caplog):
    """torch.export failing (as it does on data-dependent control flow) costs model.pt2 only, said in the log and on
    the card; the other files are written and checked as always."""
    root, result, _ = searched

    def cannot(*args, **kwargs):
        raise RuntimeError("Could not guard on data-dependent expression u0 > 0\n(more lines)")

    monkeypatch.setattr(torch.export, "export", cannot)
    with caplog.at_level("WARNING", logger="gcnas.export"):
        out = export_trial(_url(root), result.study_name, out_dir=tmp_path / "e")
    assert "model.pt2" not in out.files and "model.onnx" in out.files and out.program_max_abs_diff is None
    assert out.program_error == "RuntimeError: Could not guard on data-dependent expression u0 > 0"
    assert "model.pt2 not written: torch.export failed on the model (RuntimeError" in caplog.text
    card = (tmp_path / "e" / "MODEL_CARD.md").read_text()
    assert "- no `model.pt2`: torch.export failed on the model (RuntimeError: Could not guard" in card
    assert "torch.export.load" not in card


def test_a_model_pt2_that_computes_something_else_fails_the_export(searched, tmp_path, monkeypatch):
    """The program is checked as loaded back: one whose outputs differ is never shipped."""
    root, result, _ = searched
    real_load = torch.export.load

    def shifted(*args, **kwargs):
        program = real_load(*args, **kwargs)
        program.module = lambda: (lambda x: program.__class__.module(program)(x) + 1e-3)
        return program

    monkeypatch.setattr(torch.export, "load", shifted)
    with pytest.raises(ValueError, match=r"model.pt2: the torch.export program differs from the model by 0.001 "
                                         r"\(> 0.0001\); the export was not written"):
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


def test_a_study_from_before_pretrained_cfg_gets_it_from_its_recorded_data(searched, tmp_path):
    root, result, study = searched
    shutil.copy(root / "studies.db", tmp_path / "old.db")
    url = f"sqlite:///{tmp_path}/old.db"
    optuna.load_study(study_name=result.study_name, storage=url).set_user_attr("pretrained_cfg", None)
    out = export_trial(url, result.study_name, out_dir=tmp_path / "e", root=root)
    assert out.weights_source == "kept"
    recorded = study.user_attrs["pretrained_cfg"]
    hub = json.loads((tmp_path / "e" / "config.json").read_text())
    assert hub["label_names"] == recorded["label_names"]
    assert {k: hub["pretrained_cfg"][k] for k in recorded if k != "label_names"} == \
        {k: v for k, v in recorded.items() if k != "label_names"}


def test_a_trial_without_kept_weights_is_retrained_to_its_recorded_accuracy(searched, tmp_path):
    root, result, study = searched
    unkept = [t for t in ranked_trials(study) if not _kept(root, study, t).exists()]
    assert unkept, "the fixture keeps 2 of 5 trials"
    t = unkept[0]
    out = export_trial(_url(root), result.study_name, trial=t.number, out_dir=tmp_path / "r")
    assert out.weights_source == "retrained"
    card = (tmp_path / "r" / "MODEL_CARD.md").read_text()
    line = next(x for x in card.splitlines() if x.startswith("| validation accuracy of the exported"))
    retrained = float(line.split("|")[2])
    assert abs(retrained - t.values[0]) <= 2 / 64  # same data, seed and recipe; at most a sample or two of noise
    with pytest.raises(ValueError, match=f"trial: trial {t.number}: its kept weights are not at .*; allow "
                                         "retraining"):
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
    # three processes, started together (each imports torch anew): two user errors and one export that succeeds
    cases = {"no name": [], "bad trial": [f"study.name={result.study_name}", "trial=-3"],
             "ok": [f"study.name={result.study_name}"]}
    res = run_together({key: [sys.executable, "-m", "gcnas.cli.export", f"paths.root={root}", *args]
                        for key, args in cases.items()}, timeout=300, cwd=tmp_path)
    assert res["no name"].returncode == 2 and "Traceback" not in res["no name"].stderr
    assert f"study.name: required (study.name=NAME); the storage holds: {result.study_name}" in res["no name"].stderr
    assert res["bad trial"].returncode == 2
    assert "trial: must be 'best' or a trial number >= 0; got -3" in res["bad trial"].stderr
    assert res["ok"].returncode == 0, res["ok"].stderr[-2000:]
    assert (tmp_path / "exports" / result.study_name / f"trial-{result.best_number}" / "model.onnx").is_file()
    printed = re.search(r"max abs diff to torch: ONNX (\S+), model.pt2 (\S+)\) to ", res["ok"].stdout)
    assert printed and float(printed[1]) <= 1e-4 and float(printed[2]) <= 1e-4, res["ok"].stdout


@pytest.fixture(scope="module")
def plain_and_gc(searched, tmp_path_factory):
    """Exports of the study's plain backbone (trial 0) and paper GC (trial 1): two architectures of one study."""
    root, result, study = searched
    out = tmp_path_factory.mktemp("two")
    for n in (0, 1):
        export_trial(_url(root), result.study_name, trial=n, out_dir=out / f"trial-{n}")
    assert study.trials[0].user_attrs["role"] == "baseline" and study.trials[1].user_attrs["role"] == "paper_gc"
    return out / "trial-0", out / "trial-1"


def test_load_model_names_the_file_of_damaged_or_foreign_weights(plain_and_gc, tmp_path):
    plain, gc = plain_and_gc
    truncated = shutil.copytree(gc, tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[:len(data) // 2])  # a copy cut short
    with pytest.raises(ConfigError, match=f"load_model: {truncated / 'model.safetensors'} is not a readable "
                                          "safetensors file .*incomplete"):
        gcnas.load_model(truncated)

    foreign = shutil.copytree(gc, tmp_path / "foreign")
    shutil.copy(plain / "model.safetensors", foreign / "model.safetensors")  # another export's weights
    gc_keys = [k for k in build_model(Architecture.from_yaml((gc / "architecture.yaml").read_text())).state_dict()
               if k not in build_model(Architecture.from_yaml((plain / "architecture.yaml").read_text())).state_dict()]
    with pytest.raises(ConfigError, match=f"load_model: {foreign / 'model.safetensors'} does not match "
                                          f".*: {gc_keys[0]} is in the architecture but not in the weights "
                                          f"\\({len(gc_keys)} missing, 0 unexpected keys\\)"):
        gcnas.load_model(foreign)

    resized = shutil.copytree(gc, tmp_path / "resized")  # the same keys, other shapes: GC at ratio 1/4, not 1/16
    arch = yaml.safe_load((resized / "architecture.yaml").read_text())
    for p in arch["placements"]:
        p["spec"]["ratio"] = 0.25
    (resized / "architecture.yaml").write_text(yaml.safe_dump(arch))
    other = build_model(Architecture.from_dict(arch)).state_dict()
    own = build_model(Architecture.from_yaml((gc / "architecture.yaml").read_text())).state_dict()
    first = next(k for k in other if other[k].shape != own[k].shape)
    with pytest.raises(ConfigError, match="does not match .*: " + re.escape(
            f"{first} has shape {list(own[first].shape)} in the weights and {list(other[first].shape)} in the "
            "architecture")):
        gcnas.load_model(resized)


def test_damaged_kept_weights_are_named_not_exported(searched, tmp_path):
    root, result, study = searched
    copy = shutil.copytree(root, tmp_path / "copy")  # the SQLite file and the study folder
    kept = _kept(copy, study, study.trials[result.best_number])
    kept.write_bytes(kept.read_bytes()[:100])
    with pytest.raises(ConfigError, match=f"trial: {kept} is not a readable safetensors file .*; it may be truncated "
                                          "or damaged: delete the file to retrain the trial instead"):
        export_trial(_url(copy), result.study_name, out_dir=tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_an_export_without_config_json_loads_with_timm_defaults_and_a_warning(plain_and_gc, tmp_path):
    old = shutil.copytree(plain_and_gc[1], tmp_path / "old")
    (old / "config.json").unlink()  # an export from before gcnas wrote it
    with pytest.warns(UserWarning, match="has no config.json .* timm's default for gcnas_resnet_tiny"):
        m = gcnas.load_model(old)
    assert m.pretrained_cfg["input_size"] == (3, 32, 32)  # timm's default: not what the study trained on
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a current export loads without one
        new = gcnas.load_model(plain_and_gc[1])
    assert new.pretrained_cfg["input_size"] == (1, 16, 16) and new.default_cfg is new.pretrained_cfg
    torch.testing.assert_close(dict(new.state_dict()), dict(m.state_dict()), rtol=0, atol=0)


def _export_cfg(*overrides: str):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("export", overrides=list(overrides))


def test_a_moved_study_exports_its_kept_weights(searched, tmp_path):
    root, result, study = searched
    first = shutil.copytree(root, tmp_path / "first")  # an output root of its own to move (the fixture's stays)
    best = study.trials[result.best_number]
    assert _kept(first, study, best).is_file()
    moved = tmp_path / "elsewhere" / "outputs"
    shutil.move(first, moved)  # the whole output root: the SQLite file and the study folder
    assert not first.exists()

    threads = torch.get_num_threads()
    try:
        out = export_cli(_export_cfg(f"paths.root={moved}", f"study.name={result.study_name}",
                                     f"export.dir={tmp_path / 'e'}", "threads=1", "device=cpu", "retrain=false"))
        assert torch.get_num_threads() == 1  # threads= reaches torch before any training could start
    finally:
        torch.set_num_threads(threads)
    assert out.trial == result.best_number and out.weights_source == "kept"
    from safetensors.torch import load_file

    kept = load_file(resolve_stored(study_folder(moved, result.study_name), best.user_attrs["weights"]))
    exported = gcnas.load_model(tmp_path / "e").state_dict()
    assert kept.keys() == exported.keys() and all(torch.equal(kept[k], exported[k]) for k in kept)

    # the storage found but paths.root left at the old place: the error says which folder is missing and what to give
    with pytest.raises(ConfigError, match=f"trial: trial {result.best_number}: its kept weights are not at .*: there "
                                          f"is no study folder {first / result.study_name} \\(if the study was moved, "
                                          "give paths.root="):
        export_cli(_export_cfg(f"paths.root={first}", f"study.storage={_url(moved)}",
                               f"study.name={result.study_name}", f"export.dir={tmp_path / 'x'}", "retrain=false",
                               "threads=1"))


@pytest.mark.parametrize("override,message", [
    ("threads=0", "threads: must be auto or an integer >= 1; got 0"),
    ("device=tpu", "device: must be cpu, cuda (a search worker: GPU worker mod visible GPUs), cuda:N (GPU N) or "
                   "auto; got 'tpu'"),
])
def test_export_threads_and_device_are_checked(searched, override, message):
    root, result, _ = searched
    with pytest.raises(ConfigError, match=re.escape(message)):
        export_cli(_export_cfg(f"paths.root={root}", f"study.name={result.study_name}", override))
