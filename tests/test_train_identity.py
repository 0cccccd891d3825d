"""gcnas-train's checkpoints know what they were made from: the default folder is keyed by architecture, data, trainer
and starting weights, and a resume of another run is refused before anything trains, on real image folders."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from gcnas.arch import Architecture, build_model
from gcnas.backbones import BackboneWeights, backbone_data_config
from gcnas.cli.train import train
from gcnas.data import load_data
from gcnas.errors import ConfigError
from gcnas.export.retrain import default_dir_name, run_identity
from gcnas.train import fit
from conftest import stop_after_epoch_one
from imagefolders import write_folder

ARCH = """
backbone: gcnas_resnet_tiny
backbone_kwargs: {in_chans: 1, num_classes: 3}
placements:
  - {stages: [2, 3], blocks: all, position: before_add, spec: gc_r4}
"""
OTHER_ARCH = """
backbone: gcnas_resnet_tiny
backbone_kwargs: {in_chans: 1, num_classes: 3}
placements:
  - {stages: [3], blocks: all, position: after_add, spec: gc_r4}
"""
FAST = ["data=imagefolder", "data.image_size=28", "data.in_chans=1", "data.val_size=12", "data.workers=0",
        "trainer.epochs=2", "trainer.batch_size=32", "trainer.warmup_epochs=0", "wandb.mode=disabled", "device=cpu",
        "threads=1"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """Two image folders of other classes and sizes: 3 x 40 and 3 x 30 Fashion-MNIST images."""
    base = tmp_path_factory.mktemp("images")
    return (write_folder(base / "a", classes=(0, 1, 2), per_class=40),
            write_folder(base / "b", classes=(3, 4, 5), per_class=30))


def _arch(path: Path, text: str = ARCH) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "architecture.yaml").write_text(text)
    return path / "architecture.yaml"


def _cfg(root: Path, arch: Path, images: Path, *overrides: str):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("train", overrides=[f"paths.root={root}", f"arch={arch}", *FAST, f"data.root={images}",
                                           *overrides])


def _data(tmp_path: Path, arch_file: Path, images: Path):
    """The data and trainer sections, and the data as gcnas-train loads it for this architecture."""
    c = OmegaConf.to_container(_cfg(tmp_path, arch_file, images), resolve=True)
    a = Architecture.from_yaml(arch_file.read_text())
    return c, load_data(c["data"], backbone_data=backbone_data_config(a.backbone, **dict(a.backbone_kwargs)))


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _state(run_dir: Path) -> dict:
    return torch.load(Path(run_dir) / "state.pt", weights_only=True)


def test_other_data_gets_its_own_default_folder(tmp_path, folders):
    a, b = folders
    arch = _arch(tmp_path / "exports" / "trial-1")
    first = train(_cfg(tmp_path, arch, a))
    second = train(_cfg(tmp_path, arch, b))
    key = Architecture.from_yaml(ARCH).key()
    assert first.out_dir.parent == second.out_dir.parent == tmp_path / "train"
    assert first.out_dir != second.out_dir and first.out_dir.name.startswith(key[:8] + "-")
    assert second.out_dir.name.startswith(key[:8] + "-")
    assert second.rows[0]["resumed_from"] == 0  # trained, not the first folder's result
    # the table's data is its own: 90 images less 12 for validation, not the first folder's 120
    assert "78 train / 12 val" in second.description and "108 train / 12 val" in first.description
    recorded = json.loads(_state(second.rows[0]["dir"])["identity"])
    assert recorded["data"] == json.loads(json.dumps(_data(tmp_path, arch, b)[1].identity))
    assert recorded["data"]["root"] == str(b) and recorded["data"]["fingerprint"]
    assert recorded["seed"] == 0 and recorded["arch"] == key and recorded["weights"] == BackboneWeights().identity()
    again = train(_cfg(tmp_path, arch, a))  # the same run finds its own folder again: finished, not retrained
    assert again.out_dir == first.out_dir and again.rows[0]["resumed_from"] == 2
    assert again.rows[0]["val_acc"] == first.rows[0]["val_acc"]


def test_a_shared_train_dir_refuses_other_data_and_touches_nothing(tmp_path, folders):
    a, b = folders
    arch = _arch(tmp_path / "exports" / "trial-1")
    ck = tmp_path / "ck"
    train(_cfg(tmp_path, arch, a, f"train.dir={ck}"))
    before = _files(ck)
    fp_a, fp_b = (_data(tmp_path, arch, f)[1].identity["fingerprint"] for f in (a, b))
    with pytest.raises(ConfigError) as e:
        train(_cfg(tmp_path, arch, b, f"train.dir={ck}"))
    msg = str(e.value)
    assert msg.startswith(f"train.dir: the checkpoint in {ck / 'gcnas' / 'seed0'} is of another run")
    assert f"data.fingerprint: '{fp_a}' -> '{fp_b}'" in msg and f"data.root: '{a}' -> '{b}'" in msg
    assert "new train.dir" in msg and "train.resume=false" in msg and "\n" not in msg
    assert _files(ck) == before  # not a byte, not a timestamp changed; no file added


def test_architectures_in_folders_of_the_same_name_do_not_collide(tmp_path, folders):
    a, _ = folders
    one = _arch(tmp_path / "a" / "trial-1")
    two = _arch(tmp_path / "b" / "trial-1", OTHER_ARCH)
    first = train(_cfg(tmp_path, one, a))
    second = train(_cfg(tmp_path, two, a))
    assert first.out_dir != second.out_dir and second.rows[0]["resumed_from"] == 0
    assert second.out_dir.name.startswith(Architecture.from_yaml(OTHER_ARCH).key()[:8] + "-")

    # into the first one's folder, the other architecture is refused by its key, before its weights are read
    with pytest.raises(ConfigError, match=r"is of another run \(checkpoint -> this run: arch: '[0-9a-f]{16}' -> "
                                         r"'[0-9a-f]{16}'\)"):
        train(_cfg(tmp_path, two, a, f"train.dir={first.out_dir}"))
    # a checkpoint without a recorded identity (fit called without one) is still told apart by its weights: the
    # names of what is missing and unexpected, not a TypeError
    c, data = _data(tmp_path, two, a)
    with pytest.raises(ConfigError, match=r"belongs to another model \(missing \[.*\], unexpected \[.*\]\)"):
        fit(build_model(Architecture.from_yaml(OTHER_ARCH)), data, c["trainer"], ckpt_dir=Path(first.rows[0]["dir"]))


def _interrupted(tmp_path: Path, arch_file: Path, images: Path, ckpt: Path, identity: bool) -> None:
    """Epoch 1 of gcnas-train's run (seed 0) into ``ckpt``, then a stop: what a killed gcnas-train leaves, with the
    identity gcnas-train records (or none, as checkpoints written before identities were)."""
    c, data = _data(tmp_path, arch_file, images)
    a = Architecture.from_yaml(arch_file.read_text())
    trained = Architecture(a.backbone, {**dict(a.backbone_kwargs), "in_chans": data.in_chans,
                                        "num_classes": data.num_classes}, a.placements)
    stop_after_epoch_one(lambda: build_model(trained), data, c["trainer"], ckpt,
                         identity=run_identity(trained, data, BackboneWeights()) if identity else None)
    assert _state(ckpt)["epoch"] == 1


def test_an_interrupted_run_resumes_in_its_default_folder(tmp_path, folders):
    a, _ = folders
    arch = _arch(tmp_path / "exports" / "trial-1")
    c, data = _data(tmp_path, arch, a)
    name = default_dir_name(Architecture.from_yaml(ARCH), data, c["trainer"], BackboneWeights())
    _interrupted(tmp_path, arch, a, tmp_path / "train" / name / "gcnas" / "seed0", identity=True)
    resumed = train(_cfg(tmp_path, arch, a))
    assert resumed.out_dir == tmp_path / "train" / name and resumed.rows[0]["resumed_from"] == 1
    whole = train(_cfg(tmp_path / "whole", arch, a))  # the same run in one go
    assert whole.rows[0]["resumed_from"] == 0 and resumed.rows[0]["val_acc"] == whole.rows[0]["val_acc"]
    assert len(_state(resumed.rows[0]["dir"])["history"]) == 2


def test_a_checkpoint_from_before_identities_resumes_with_a_warning(tmp_path, folders, caplog):
    a, _ = folders
    arch = _arch(tmp_path / "exports" / "trial-1")
    ck = tmp_path / "old"
    _interrupted(tmp_path, arch, a, ck / "gcnas" / "seed0", identity=False)
    assert "identity" not in _state(ck / "gcnas" / "seed0")
    with caplog.at_level(logging.WARNING, logger="gcnas.train"):
        resumed = train(_cfg(tmp_path, arch, a, f"train.dir={ck}"))
    assert resumed.rows[0]["resumed_from"] == 1
    assert any("predates recorded identities" in r.getMessage() for r in caplog.records)
    assert json.loads(_state(ck / "gcnas" / "seed0")["identity"])["data"]["root"] == str(a)  # recorded from now on


def test_every_seed_is_checked_before_the_first_trains(tmp_path, folders):
    a, b = folders
    arch = _arch(tmp_path / "exports" / "trial-1")
    ck = tmp_path / "ck"
    train(_cfg(tmp_path, arch, b, f"train.dir={ck}", "seeds=[1]"))  # seed 1's folder holds a run on other data
    with pytest.raises(ConfigError, match=f"the checkpoint in {ck / 'gcnas' / 'seed1'} is of another run .*"
                                         "data.fingerprint: "):
        train(_cfg(tmp_path, arch, a, f"train.dir={ck}", "seeds=[0,1]"))
    assert not (ck / "gcnas" / "seed0").exists()  # seed 0 was not trained first
