"""A tiny timm ResNet for CPU demos and tests, registered with timm as ``gcnas_resnet_tiny``.

timm's ResNet with BasicBlocks [2, 2, 2, 2], widths (16, 32, 64, 128), a 16-channel stem and no stem max-pool, so a
28x28 image keeps 14x14, 7x7, 4x4 and 2x2 maps in its four stages (a standard ResNet would leave 7x7 down to 1x1).
It belongs to the resnet family: every site and position of resnet18 exists here.
"""
from __future__ import annotations

from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from gcnas.errors import ConfigError

__all__ = ["gcnas_resnet_tiny"]


@register_model
def gcnas_resnet_tiny(pretrained: bool = False, **kwargs) -> ResNet:
    if pretrained:
        raise ConfigError("gcnas_resnet_tiny has no pretrained weights; pass pretrained_backbone= a local checkpoint")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's factory options, not ResNet's
        kwargs.pop(key, None)
    kwargs.setdefault("stem_width", 16)
    model = ResNet(BasicBlock, [2, 2, 2, 2], channels=(16, 32, 64, 128), **kwargs)
    model.maxpool = nn.Identity()
    for info in model.feature_info:  # without the max-pool every stage is at half the usual reduction
        if info["module"].startswith("layer"):
            info["reduction"] //= 2
    model.pretrained_cfg = {"architecture": "gcnas_resnet_tiny", "input_size": (3, 32, 32), "num_classes": 1000,
                            "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    return model
