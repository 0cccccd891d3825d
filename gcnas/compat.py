"""The private names of torch and timm that gcnas relies on: each one here, once, with what it is relied upon for.

Everywhere else gcnas uses the libraries' public API (``tests/test_compat.py`` scans the package for private names
outside this module). Each name below has no public equivalent in the versions ``pyproject.toml`` allows;
``tests/test_compat.py`` checks that it still exists and still behaves as relied upon, so an upgrade that changes one
fails there, naming it, instead of miscounting FLOPs or missing insertion sites deep inside a search. Optuna's
behaviours that the search works around are in :mod:`gcnas.search.optuna_compat` (the search layer alone imports
Optuna). This module imports torch only, so every layer, blocks included, may use it.
"""
from __future__ import annotations

from torch import nn
# torch's base class of dispatch modes (``torch.utils.flop_counter.FlopCounterMode`` is one): inside ``with mode:``
# its ``__torch_dispatch__(func, types, args, kwargs)`` sees every aten operator a forward runs, which
# :func:`gcnas.backbones.cost.count_flops` records to warn about operators without a FLOP formula.
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["TorchDispatchMode", "BatchNormBase", "TIMM_EFFICIENTNET_BLOCKS"]

# The base class of every BatchNorm that keeps running statistics (BatchNorm1d/2d/3d, SyncBatchNorm, the lazy ones,
# and timm's BatchNormAct2d through BatchNorm2d): :func:`gcnas.oneshot.recalibrate_batchnorm` resets them all
# (``reset_running_stats()``, ``momentum = None`` for a cumulative average). torch exports no public base class.
BatchNormBase = nn.modules.batchnorm._BatchNorm

# The module timm defines its EfficientNet / MobileNet blocks in (DepthwiseSeparableConv, InvertedResidual,
# EdgeResidual, ConvBnAct): :mod:`gcnas.backbones.families` recognises a block by its class's qualified name.
TIMM_EFFICIENTNET_BLOCKS = "timm.models._efficientnet_blocks"
