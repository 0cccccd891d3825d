"""The vocabulary of a search space: the keys each section takes, the values a design key may have, and the default a
design key takes where the space leaves it out."""
from __future__ import annotations

from dataclasses import fields

from gcnas.arch import BlockSpec
from gcnas.blocks import CONTEXTS, NL_DEFAULTS, NL_MODES, NORMS, TRANSFORMS, block_preset_names
from gcnas.blocks.fusion import FUSION_SPELLINGS, fusion_spelling
from gcnas.blocks.layers import ACTIVATIONS

DESIGN_KEYS = ("preset", "kind", "context", "transform", "ratio", "fusion", "norm", "act", "mode")
TRAINING_KEYS = ("lr", "weight_decay", "momentum", "batch_size", "opt", "label_smoothing", "seed")
SECTIONS = {"name", "description", "design", "positions", "limits", "training"}
DESIGN_EXTRA = {"share", "conditions"}
POSITION_KEYS = {"stages", "stage_sets", "stage_on", "blocks", "position", "per_stage", "replace"}
LIMIT_KEYS = {"max_blocks", "min_blocks"}
# design.preset: a named block (gcnas.blocks.block_preset_names: the framework's members and nl), or "none" (no block)
PRESET_CHOICES = tuple(block_preset_names()) + ("none",)
VALID: dict[str, tuple] = {
    "preset": PRESET_CHOICES + (None,),
    "kind": ("gc", "nl"),
    "context": tuple(CONTEXTS.names()),
    "transform": tuple(TRANSFORMS.names()),
    "fusion": FUSION_SPELLINGS,
    "norm": tuple(NORMS.names()) + (None,),
    "act": tuple(ACTIVATIONS.names()) + (None,),
    "mode": NL_MODES,
}
# A design key the space leaves out takes BlockSpec's default (the paper's GC), or the NL block's for mode.
_SPEC_DEFAULTS = {f.name: f.default for f in fields(BlockSpec)}
DEFAULTS = {"preset": None, **{k: _SPEC_DEFAULTS[k] for k in ("kind", "context", "transform", "ratio", "norm", "act")},
            "fusion": fusion_spelling(_SPEC_DEFAULTS["fusion"]), "mode": NL_DEFAULTS["mode"]}
