from __future__ import annotations

import subprocess
import sys


def test_sites_table():
    out = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "resnet50", "--input-size", "3", "64", "64"],
                         capture_output=True, text=True, check=True).stdout
    assert "resnet50: family resnet, 64 sites, input 3x64x64" in out
    assert "| 2 | 0 | before_add |  | layer3.0.bn3 | 1024 | 4x4 |  |" in out
    assert "| 2 | 0 | after_conv2 |  | layer3.0.aa | 256 | 4x4 |  |" in out  # a Bottleneck's are distinct places
    assert "same place" not in out


def test_sites_default_input_size_and_attention_column():
    out = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "seresnet18"], capture_output=True, text=True,
                         check=True).stdout
    assert "input 3x224x224" in out
    assert "| 3 | 1 | before_add |  | layer4.1.se | 512 | 7x7 | layer4.1.se |" in out
    assert "| 3 | 1 | after_conv2 |  | layer4.1.bn2 | 512 | 7x7 |  |" in out  # SE sits between: two places


def test_generic_fallback_is_announced():
    out = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "densenet121", "--input-size", "3", "64", "64"],
                         capture_output=True, text=True, check=True).stdout
    assert "family generic" in out and "note: DenseNet: no gcnas family describes its blocks" in out


def test_unknown_model_exits_2_with_close_names():
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "resnet51"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "unknown timm model 'resnet51'; close matches: resnet51q, resnet50" in res.stderr
    assert "Traceback" not in res.stderr


def test_aliases_are_a_column_and_a_note():
    """resnet18's and the tiny ResNet's BasicBlocks: after_conv2 and before_add are both bn2, one site."""
    for name, first in (("resnet18", "| 0 | 0 | before_add | after_conv2 | layer1.0.bn2 | 64 | 16x16 |  |"),
                        ("gcnas_resnet_tiny", "| 0 | 0 | before_add | after_conv2 | layer1.0.bn2 | 16 | 32x32 |  |")):
        out = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", name, "--input-size", "3", "64", "64"],
                             capture_output=True, text=True, check=True).stdout
        assert f"{name}: family resnet, 24 sites" in out
        assert "| stage | block | position | also named | module | channels | size | attention (replaceable) |" in out
        assert first in out and "| after_conv2 |" not in out.replace("| before_add | after_conv2 |", "")
        assert ("note: in 8 block(s) after_conv2 is the same place as before_add (one anchor): a placement may name "
                "either, architectures and their keys use before_add") in out


def test_a_backbone_without_feature_maps_exits_2_in_one_line():
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.sites", "vit_tiny_patch16_224"], capture_output=True,
                         text=True)
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("gcnas-sites: backbone.name: vit_tiny_patch16_224 (VisionTransformer) has no "
                                 "(B, C, H, W) feature maps")
