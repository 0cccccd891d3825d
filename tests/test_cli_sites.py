"""gcnas-sites: its tables and errors. The tables and the unknown name run the command's ``main`` in this process;
the backbone without feature maps runs as a user runs it, a process of its own (torch and timm imported anew, about
5 s), since what it must show is the whole of that process's stderr: one line, no warning, no traceback."""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest

from processes import finish, start
from gcnas.cli.sites import main

ALIASED = {"resnet18": "| 0 | 0 | before_add | after_conv2 | layer1.0.bn2 | 64 | 16x16 |  |",
           "gcnas_resnet_tiny": "| 0 | 0 | before_add | after_conv2 | layer1.0.bn2 | 16 | 32x32 |  |"}
CASES = {
    "resnet50": ["resnet50", "--input-size", "3", "64", "64"],
    "seresnet18": ["seresnet18"],
    "densenet121": ["densenet121", "--input-size", "3", "64", "64"],
    "resnet51": ["resnet51"],
    **{name: [name, "--input-size", "3", "64", "64"] for name in ALIASED},
}


@pytest.fixture(scope="module")
def sites():
    """Every case's result (its return code, stdout and stderr); the process without feature maps is started first and
    runs beside the others."""
    vit = start({"vit": [sys.executable, "-m", "gcnas.cli.sites", "vit_tiny_patch16_224"]})
    done = {}
    try:
        for key, args in CASES.items():
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(args)
            done[key] = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    finally:
        done.update(finish(vit))
    return done


def _stdout(sites, key: str) -> str:
    res = sites[key]
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_sites_table(sites):
    out = _stdout(sites, "resnet50")
    assert "resnet50: family resnet, 64 sites, input 3x64x64" in out
    assert "| 2 | 0 | before_add |  | layer3.0.bn3 | 1024 | 4x4 |  |" in out
    assert "| 2 | 0 | after_conv2 |  | layer3.0.aa | 256 | 4x4 |  |" in out  # a Bottleneck's are distinct places
    assert "same place" not in out


def test_sites_default_input_size_and_attention_column(sites):
    out = _stdout(sites, "seresnet18")
    assert "input 3x224x224" in out
    assert "| 3 | 1 | before_add |  | layer4.1.se | 512 | 7x7 | layer4.1.se |" in out
    assert "| 3 | 1 | after_conv2 |  | layer4.1.bn2 | 512 | 7x7 |  |" in out  # SE sits between: two places


def test_generic_fallback_is_announced(sites):
    out = _stdout(sites, "densenet121")
    assert "family generic" in out and "note: DenseNet: no gcnas family describes its blocks" in out


def test_unknown_model_exits_2_with_close_names(sites):
    res = sites["resnet51"]
    assert res.returncode == 2
    assert "unknown timm model 'resnet51'; close matches: resnet51q, resnet50" in res.stderr
    assert "Traceback" not in res.stderr


def test_aliases_are_a_column_and_a_note(sites):
    """resnet18's and the tiny ResNet's BasicBlocks: after_conv2 and before_add are both bn2, one site."""
    for name, first in ALIASED.items():
        out = _stdout(sites, name)
        assert f"{name}: family resnet, 24 sites" in out
        assert "| stage | block | position | also named | module | channels | size | attention (replaceable) |" in out
        assert first in out and "| after_conv2 |" not in out.replace("| before_add | after_conv2 |", "")
        assert ("note: in 8 block(s) after_conv2 is the same place as before_add (one anchor): a placement may name "
                "either, architectures and their keys use before_add") in out


def test_a_backbone_without_feature_maps_exits_2_in_one_line(sites):
    res = sites["vit"]
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("gcnas-sites: backbone.name: vit_tiny_patch16_224 (VisionTransformer) has no "
                                 "(B, C, H, W) feature maps")
