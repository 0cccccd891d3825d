"""The paper's global context framework: context modeling -> transform -> fusion.

Paper: Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019
(arXiv:1904.11492).

This layer imports torch only: no optuna, hydra or wandb, so exported models load without the search machinery.
"""
from gcnas.blocks.context import CONTEXTS, AttentionContext, AvgContext
from gcnas.blocks.design import OPTIONAL_FIELDS, design_fields
from gcnas.blocks.fusion import FUSIONS, parse_fusion
from gcnas.blocks.global_context import GlobalContextBlock
from gcnas.blocks.layers import ACTIVATIONS, GATES, NORMS
from gcnas.blocks.nonlocal_ import NL_DEFAULTS, NL_MODES, NonLocalBlock
from gcnas.blocks.presets import PRESETS, block_preset, block_preset_names, preset, preset_names
from gcnas.blocks.transform import TRANSFORMS, TRANSFORMS_WITH_NORM, TRANSFORMS_WITH_RATIO
from gcnas.blocks.create import block_arguments, create_block
from gcnas.blocks import convert  # noqa: E402  (after GlobalContextBlock, which it builds)

__all__ = [
    "GlobalContextBlock", "NonLocalBlock", "preset", "preset_names", "block_preset", "block_preset_names", "convert",
    "CONTEXTS", "TRANSFORMS", "FUSIONS", "NORMS", "ACTIVATIONS", "GATES", "PRESETS", "NL_MODES", "NL_DEFAULTS",
    "TRANSFORMS_WITH_RATIO", "TRANSFORMS_WITH_NORM", "AttentionContext", "AvgContext", "parse_fusion", "design_fields",
    "OPTIONAL_FIELDS", "block_arguments", "create_block",
]
