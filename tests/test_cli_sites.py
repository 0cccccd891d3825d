from __future__ import annotations

import subprocess
import sys


def test_sites_table():
    out = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "resnet50", "--input-size", "3", "64", "64"],
                         capture_output=True, text=True, check=True).stdout
    assert "resnet50: family resnet, 64 sites, input 3x64x64" in out
    assert "| 2 | 0 | before_add | layer3.0.bn3 | 1024 | 4x4 |  |" in out


def test_sites_default_input_size_and_attention_column():
    out = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "seresnet18"], capture_output=True, text=True,
                         check=True).stdout
    assert "input 3x224x224" in out
    assert "| 3 | 1 | before_add | layer4.1.se | 512 | 7x7 | layer4.1.se |" in out


def test_generic_fallback_is_announced():
    out = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "densenet121", "--input-size", "3", "64", "64"],
                         capture_output=True, text=True, check=True).stdout
    assert "family generic" in out and "note: DenseNet: no gcnas family describes its blocks" in out


def test_unknown_model_exits_2_with_close_names():
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "resnet51"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "unknown timm model 'resnet51'; close matches: resnet51q, resnet50" in res.stderr
    assert "Traceback" not in res.stderr
