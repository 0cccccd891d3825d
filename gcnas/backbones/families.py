"""Where each timm family's residual blocks offer insertion sites.

Positions mean the same thing in every family (paper, section 5.1 and Table 2's "after add", "after 1x1"):

* ``after_conv1``: after the first conv + norm + act of the residual branch;
* ``after_conv2``: after the second (for a ResNet bottleneck, the 3x3);
* ``before_add``: the end of the residual branch, just before the shortcut is added (the paper's "after 1x1");
* ``after_add``: the block's output, after the merge (and the activation that follows it, if any).

A position sits after any attention module the backbone already has there (SE in seresnet, regnety, efficientnet);
a placement with ``replace: true`` takes that module's place instead, so GC vs SE is one switch.

Each block class maps a position to an *anchor*: the submodule whose output (``post``) or input (``pre``) is the
feature map at that position, or the block itself (``self``: its output). Families whose blocks are not listed fall
back to ``after_block`` / ``after_stage`` sites found from the model's ``feature_info`` (see
:mod:`gcnas.backbones.sites`).

Two positions of one block with the same anchor are one place (a BasicBlock's ``after_conv2`` and ``before_add`` are
both the output of ``bn2``): :mod:`gcnas.backbones.sites` lists them as one site under the latest name, the others as
its aliases. So a rule must give one place one anchor: where two anchors would see the same tensor (the output of a
module that feeds the next one directly), it names the same one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from gcnas.compat import TIMM_EFFICIENTNET_BLOCKS

__all__ = ["POSITIONS", "GENERIC_POSITIONS", "Anchor", "BlockRule", "Family", "FAMILIES"]

POSITIONS = ("after_conv1", "after_conv2", "before_add", "after_add")
GENERIC_POSITIONS = ("after_block", "after_stage")


@dataclass(frozen=True)
class Anchor:
    """The feature map at a position: the output (``post``) or input (``pre``) of submodule ``attr``, or ``self``."""

    kind: str  # "post" | "pre" | "self"
    attr: str = ""
    attention: Optional[str] = None  # the block's attention submodule sitting at this position, if any


def _present(block: nn.Module, attr: str) -> bool:
    return getattr(block, attr, None) is not None


def _real_attention(block: nn.Module, attr: str) -> Optional[str]:
    m = getattr(block, attr, None)
    return attr if m is not None and not isinstance(m, nn.Identity) else None


def _first(block: nn.Module, *attrs: str) -> str:
    for a in attrs:
        if _present(block, a):
            return a
    raise LookupError(f"{type(block).__name__} has none of {attrs}")


def _has_skip(block: nn.Module) -> bool:
    return bool(getattr(block, "has_skip", True))


@dataclass(frozen=True)
class BlockRule:
    """Positions of one timm block class: ``anchors(block) -> {position: Anchor}``."""

    cls: str  # "<python module>.<class name>"
    anchors: Callable[[nn.Module], dict[str, Anchor]]


@dataclass(frozen=True)
class Family:
    """A timm family: how its block modules are named, and its block classes' rules. ``examples`` are timm models
    that together hold every rule's block (with and without a shortcut where the class has both): the tests walk
    them."""

    name: str
    pattern: re.Pattern  # module name of a block -> (stage, block) groups
    stage_offset: int  # subtract from the captured stage number (resnet layer1 -> 0)
    block_offset: int
    rules: tuple[BlockRule, ...]
    examples: tuple[str, ...]

    def rule_for(self, module: nn.Module) -> Optional[BlockRule]:
        key = f"{type(module).__module__}.{type(module).__name__}"
        return next((r for r in self.rules if r.cls == key), None)


# -- resnet (timm.models.resnet): BasicBlock, Bottleneck ---------------------------------------------------------------
def _resnet(conv1_out: str, conv2_out: str, last_bn: str):
    """The anchors of a timm ResNet block: BasicBlock (bn2 last) and Bottleneck (bn3 last) differ only in names."""
    def anchors(b):
        return {
            "after_conv1": Anchor("post", conv1_out),
            "after_conv2": Anchor("post", conv2_out),
            "before_add": Anchor("post", _first(b, "se", last_bn), attention=_real_attention(b, "se")),
            "after_add": Anchor("self"),
        }
    return anchors


_resnet_basic = _resnet("aa", "bn2", "bn2")
_resnet_bottleneck = _resnet("act1", "aa", "bn3")


# -- regnet (timm.models.regnet.Bottleneck) ----------------------------------------------------------------------------
def _regnet(b):
    out = {
        "after_conv1": Anchor("post", "conv1"),
        "after_conv2": Anchor("post", "se", attention=_real_attention(b, "se")),
    }
    if b.downsample is not None:  # None means no shortcut at all
        out["before_add"] = Anchor("post", "conv3")
        out["after_add"] = Anchor("self")
    return out


# -- efficientnet / mobilenet (timm.models._efficientnet_blocks) -------------------------------------------------------
def _skip_positions(b, end: str) -> dict[str, Anchor]:
    return {"before_add": Anchor("post", end), "after_add": Anchor("self")} if _has_skip(b) else {}


def _ds_conv(b):
    return {
        "after_conv1": Anchor("post", "se", attention=_real_attention(b, "se")),
        "after_conv2": Anchor("post", "bn2"),
        **_skip_positions(b, "bn2"),
    }


def _inverted_residual(b):
    return {
        "after_conv1": Anchor("post", "bn1"),
        "after_conv2": Anchor("post", "se", attention=_real_attention(b, "se")),
        **_skip_positions(b, "bn3"),
    }


def _edge_residual(b):
    return {
        "after_conv1": Anchor("post", "se", attention=_real_attention(b, "se")),
        "after_conv2": Anchor("post", "bn2"),
        **_skip_positions(b, "bn2"),
    }


def _conv_bn_act(b):
    return {"after_conv1": Anchor("post", "aa"), **_skip_positions(b, "aa")}


# -- convnext (timm.models.convnext.ConvNeXtBlock): the MLP runs channels-last, so no after_conv2 ----------------------
def _convnext(b):
    return {
        "after_conv1": Anchor("post", "conv_dw"),
        "before_add": Anchor("pre", "drop_path"),
        "after_add": Anchor("self"),
    }


# -- byobnet (timm.models.byobnet): BottleneckBlock, BasicBlock --------------------------------------------------------
def _byob_bottleneck(b):
    out = {
        "after_conv1": Anchor("post", "conv1_1x1"),
        "after_conv2": Anchor("post", "attn", attention=_real_attention(b, "attn")),
        "before_add": Anchor("post", "attn_last", attention=_real_attention(b, "attn_last")),
    }
    if b.shortcut is not None:
        out["after_add"] = Anchor("self")
    else:
        del out["before_add"]
    return out


def _byob_basic(b):
    # attn_last feeds drop_path directly, so the end of the branch is attn_last's output, the same place as after_conv2
    last = Anchor("post", "attn_last", attention=_real_attention(b, "attn_last"))
    out = {
        "after_conv1": Anchor("post", "attn", attention=_real_attention(b, "attn")),
        "after_conv2": last,
    }
    if b.shortcut is not None:
        out["before_add"] = last
        out["after_add"] = Anchor("self")
    return out


# -- cspnet (timm.models.cspnet.BottleneckBlock) -----------------------------------------------------------------------
def _csp_bottleneck(b):
    return {
        "after_conv1": Anchor("post", "conv1"),
        "after_conv2": Anchor("post", "attn2", attention=_real_attention(b, "attn2")),
        "before_add": Anchor("post", "attn3", attention=_real_attention(b, "attn3")),
        "after_add": Anchor("self"),
    }


# -- resnetv2 (timm.models.resnetv2): PreActBottleneck, Bottleneck -----------------------------------------------------
def _preact_bottleneck(b):
    # Pre-activation: the norm+act that follows conv1 is the next conv's norm2.
    return {
        "after_conv1": Anchor("post", "norm2"),
        "after_conv2": Anchor("post", "norm3"),
        "before_add": Anchor("pre", "drop_path"),
        "after_add": Anchor("self"),
    }


def _resnetv2_bottleneck(b):
    return {
        "after_conv1": Anchor("post", "norm1"),
        "after_conv2": Anchor("post", "norm2"),
        "before_add": Anchor("pre", "drop_path"),
        "after_add": Anchor("self"),
    }


_EFF = TIMM_EFFICIENTNET_BLOCKS
FAMILIES: tuple[Family, ...] = (
    Family("resnet", re.compile(r"^layer(\d+)\.(\d+)$"), 1, 0,
           (BlockRule("timm.models.resnet.BasicBlock", _resnet_basic),
            BlockRule("timm.models.resnet.Bottleneck", _resnet_bottleneck)),
           ("resnet18", "resnet50", "resnext50_32x4d", "seresnet18", "seresnet50", "gcnas_resnet_tiny")),
    Family("regnet", re.compile(r"^s(\d+)\.b(\d+)$"), 1, 1,
           (BlockRule("timm.models.regnet.Bottleneck", _regnet),),
           ("regnetx_002", "regnety_002")),
    Family("efficientnet", re.compile(r"^blocks\.(\d+)\.(\d+)$"), 0, 0,
           (BlockRule(f"{_EFF}.DepthwiseSeparableConv", _ds_conv),
            BlockRule(f"{_EFF}.InvertedResidual", _inverted_residual),
            BlockRule(f"{_EFF}.EdgeResidual", _edge_residual),
            BlockRule(f"{_EFF}.ConvBnAct", _conv_bn_act)),
           ("efficientnet_b0", "mobilenetv2_100", "mobilenetv3_small_100", "mobilenetv3_large_100",
            "efficientnetv2_rw_t")),
    Family("convnext", re.compile(r"^stages[._](\d+)\.blocks\.(\d+)$"), 0, 0,
           (BlockRule("timm.models.convnext.ConvNeXtBlock", _convnext),),
           ("convnext_atto",)),
    Family("byobnet", re.compile(r"^stages[._](\d+)\.(\d+)$"), 0, 0,
           (BlockRule("timm.models.byobnet.BottleneckBlock", _byob_bottleneck),
            BlockRule("timm.models.byobnet.BasicBlock", _byob_basic)),
           ("resnet33ts", "gernet_s")),
    Family("cspnet", re.compile(r"^stages[._](\d+)\.blocks\.(\d+)$"), 0, 0,
           (BlockRule("timm.models.cspnet.BottleneckBlock", _csp_bottleneck),),
           ("cspresnet50",)),
    Family("resnetv2", re.compile(r"^stages[._](\d+)\.blocks\.(\d+)$"), 0, 0,
           (BlockRule("timm.models.resnetv2.PreActBottleneck", _preact_bottleneck),
            BlockRule("timm.models.resnetv2.Bottleneck", _resnetv2_bottleneck)),
           ("resnetv2_50",)),
)
