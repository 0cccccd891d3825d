"""A tiny timm ResNet for CPU demos and tests, registered with timm as ``gcnas_resnet_tiny``.

timm's ResNet with BasicBlocks [2, 2, 2, 2], widths (16, 32, 64, 128), a 16-channel stem and no stem max-pool, so a
28x28 image keeps 14x14, 7x7, 4x4 and 2x2 maps in its four stages (a standard ResNet would leave 7x7 down to 1x1).
It belongs to the resnet family: every site and position of resnet18 exists here.

It is built by timm's ``build_model_with_cfg`` like timm's own models, so timm loads weights into it the same way:
``pretrained=True, pretrained_cfg_overlay=dict(file=PATH)`` (a checkpoint it was trained into; it has no published
weights), with timm's classifier reset and first-conv adaptation.
"""
from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

__all__ = ["gcnas_resnet_tiny"]


class TinyResNet(ResNet):
    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("stem_width", 16)
        super().__init__(BasicBlock, [2, 2, 2, 2], channels=(16, 32, 64, 128), **kwargs)
        self.maxpool = nn.Identity()
        for info in self.feature_info:  # without the max-pool every stage is at half the usual reduction
            if info["module"].startswith("layer"):
                info["reduction"] //= 2


# No url or hub id: the only weights are a local file (timm says "No pretrained weights exist" otherwise).
default_cfgs = generate_default_cfgs({
    "gcnas_resnet_tiny": {"input_size": (3, 32, 32), "num_classes": 1000, "mean": (0.5, 0.5, 0.5),
                          "std": (0.5, 0.5, 0.5), "first_conv": "conv1", "classifier": "fc", "pool_size": (2, 2),
                          "interpolation": "bilinear", "crop_pct": 1.0},
})


@register_model
def gcnas_resnet_tiny(pretrained: bool = False, **kwargs) -> ResNet:
    return build_model_with_cfg(TinyResNet, "gcnas_resnet_tiny", pretrained, **kwargs)
