"""A weight-sharing supernet over global-context designs: every candidate block at every site, one set of weights.

One-shot search (``search.method=oneshot``) trains this network once and then scores architectures with the weights it
inherits. Which candidates share what (``docs/oneshot.md`` gives the reasons):

* **One attention-pooling conv per site** for every ``att`` design: what the conv learns is *where* to look, a property
  of the site's features, not of the transform that reads the pooled vector. ``avg`` has no weights.
* **One transform per fusion slot and family.** ``scale`` and ``add`` keep separate transforms, as a standalone block
  with both does (one's output is squashed by a gate, the other's added), so a ``scale+add`` candidate uses both. Per
  slot: one C -> C layer for ``conv``, and one MLP for each norm (``bottleneck`` + LayerNorm; ``se`` and
  ``bottleneck`` without a norm are the same function and share one).
* **Sites, or a stage** (``share``). With ``site`` every site keeps its own weights. With ``stage`` the sites of
  one stage with the same channels use one set of weights: single-path training spreads a supernet's updates over
  every (site, weight set) pair, and over ``gc_full``'s 32 sites of the tiny ResNet a 6-epoch supernet gave each
  pair a median of 5 updates (a block trained alone gets 184), so its blocks stayed near their identity start: 9 of
  15 sampled architectures changed the plain backbone's logits by less than 0.01 on average. Per stage, each weight
  set is trained by every path that places a block in the stage (there: a median of 36 updates, 16-76, in the same
  6 epochs). Measured, it does not rank better yet (``docs/oneshot.md``).
* **Bottleneck widths are slices** of the widest ratio any candidate uses: a candidate of hidden width h uses the first
  h rows of fc1 and the first h columns of fc2, and (with LayerNorm) the first h affine parameters, normalising over
  its h channels. Narrow candidates thus train the most shared, most important channels (slimmable networks).

:meth:`ChoiceBlock.extract` copies the weights a candidate uses into a standalone
:class:`~gcnas.blocks.GlobalContextBlock` that computes exactly what the candidate computes inside the supernet
(tested), so an architecture's inherited weights are real block weights.

Layer: imports blocks, backbones and the architecture; never optuna, hydra or wandb.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gcnas.arch import Architecture, BlockSpec
from gcnas.backbones import create_backbone, insert
from gcnas.backbones.sites import Site
from gcnas.backbones.weights import BackboneWeights, file_sha256
from gcnas.blocks import CONTEXTS, NORMS, TRANSFORMS, GlobalContextBlock, design_fields
from gcnas.blocks.context import pool_context
from gcnas.blocks.global_context import global_context_forward
from gcnas.blocks.layers import create_act, create_gate, init_official_
from gcnas.blocks.transform import hidden_channels_for
from gcnas.errors import ConfigError
from gcnas.sections import SHARES

__all__ = ["SHARES", "ChoiceBlock", "Supernet", "check_supernet_designs"]


def _shared(registry, name: str) -> Optional[str]:
    """How the supernet shares the weights of a registry entry (its ``supernet`` declaration), None if it cannot."""
    return registry.traits(name).get("supernet")


def _check_shared(spec: BlockSpec, key_prefix: str) -> None:
    """A ConfigError naming the first field of ``spec`` whose registry entry declares no way to share its weights."""
    fields = design_fields(spec.transform, spec.fusion)
    checks = [("context", CONTEXTS, spec.context), ("transform", TRANSFORMS, spec.transform)]
    if "norm" in fields:
        checks.append(("norm", NORMS, spec.norm))
    for key, registry, value in checks:
        valid = registry.declaring("supernet") + ([None] if key == "norm" else [])
        if value not in valid:
            raise ConfigError(f"{key_prefix}.{key}: the one-shot supernet cannot share weights for {value!r}; "
                              f"valid values are {', '.join(str(v) for v in valid)}")
    if "act" in fields and any(True for _ in create_act(spec.act).parameters()):
        raise ConfigError(f"{key_prefix}.act: {spec.act!r} has weights of its own, which the supernet does not "
                          "share; use an activation without weights (relu, gelu, silu, ...)")


def check_supernet_designs(specs: Iterable[BlockSpec], key_prefix: str = "design") -> list[BlockSpec]:
    """The distinct designs, or a ConfigError naming the design key a supernet cannot hold and what it can (the
    registries' ``supernet`` declarations say what it can)."""
    out: list[BlockSpec] = []
    for spec in specs:
        if spec.kind != "gc":
            raise ConfigError(f"{key_prefix}.kind: the one-shot supernet holds global context blocks (kind gc) only; "
                              f"got {spec.kind!r} (search NL designs with search.method=standalone)")
        _check_shared(spec, key_prefix)
        if spec not in out:
            out.append(spec)
    if not out:
        raise ConfigError(f"{key_prefix}: the space places no block design; a supernet needs at least one")
    return out


def _mlp_family(spec: BlockSpec) -> Optional[str]:
    """Which shared MLP a transform shared as "mlp" uses: its norm's family ("ln" for LayerNorm), or "plain" (no
    norm: se, or bottleneck without one)."""
    if _shared(TRANSFORMS, spec.transform) != "mlp":
        return None
    return "plain" if spec.norm is None else _shared(NORMS, spec.norm)  # a BlockSpec's unused norm is None


class _SharedMLP(nn.Module):
    """fc1 (C -> widest), optional LayerNorm affine (widest), fc2 (widest -> C); candidates use leading slices."""

    def __init__(self, channels: int, widest: int, norm: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, widest)
        self.fc2 = nn.Linear(widest, channels)
        self.norm_weight = nn.Parameter(torch.ones(widest)) if norm else None
        self.norm_bias = nn.Parameter(torch.zeros(widest)) if norm else None
        self.eps = eps
        init_official_(zero=[self.fc2])  # every candidate starts as the identity (add) / x/2 (scale)

    def forward(self, c: torch.Tensor, hidden: int, act: nn.Module) -> torch.Tensor:
        z = F.linear(c, self.fc1.weight[:hidden], self.fc1.bias[:hidden])
        if self.norm_weight is not None:
            z = F.layer_norm(z, (hidden,), self.norm_weight[:hidden], self.norm_bias[:hidden], self.eps)
        return F.linear(act(z), self.fc2.weight[:, :hidden], self.fc2.bias)


class ChoiceBlock(nn.Module):
    """Every candidate design of one site, with shared weights; :meth:`choose` picks the one that runs (None: none).

    Args:
        channels: the site's channels.
        specs: the candidate designs (``BlockSpec`` of kind ``gc``; see :func:`check_supernet_designs`).
    """

    def __init__(self, channels: int, specs: Sequence[BlockSpec]) -> None:
        super().__init__()
        self.channels = channels
        self.specs = tuple(check_supernet_designs(specs))
        self.mask = nn.Conv2d(channels, 1, 1) if any(self._masked(s) for s in self.specs) else None
        if self.mask is not None:
            init_official_(kaiming=[self.mask])
        self.mlps = nn.ModuleDict()
        self.convs = nn.ModuleDict()
        for spec in self.specs:
            family = _mlp_family(spec)
            for slot in spec.fusion:
                if family is not None:
                    key = f"{slot}_{family}"
                    width = self._hidden(spec)
                    if key not in self.mlps or self.mlps[key].fc1.out_features < width:
                        self.mlps[key] = _SharedMLP(channels, width, family != "plain")
                elif _shared(TRANSFORMS, spec.transform) == "linear" and slot not in self.convs:
                    self.convs[slot] = nn.Linear(channels, channels)
                    init_official_(zero=[self.convs[slot]])
        self._acts = {spec: create_act(spec.act) for spec in self.specs if _mlp_family(spec)}
        self._gates = {spec: create_gate(spec.gate) for spec in self.specs if "scale" in spec.fusion}
        self.active: Optional[BlockSpec] = None

    @staticmethod
    def _masked(spec: BlockSpec) -> bool:
        """Whether the candidate's context reads the site's shared attention conv."""
        return _shared(CONTEXTS, spec.context) == "mask"

    def _hidden(self, spec: BlockSpec) -> int:
        hidden = hidden_channels_for(self.channels, spec.ratio)
        if hidden < 1:
            raise ConfigError(f"design.ratio: {spec.ratio:g} leaves no hidden channel at a site with {self.channels} "
                              f"channels; the smallest ratio a supernet over this backbone can hold is "
                              f"1/{self.channels}")
        return hidden

    def share_weights_with(self, other: "ChoiceBlock") -> None:
        """Use ``other``'s weights from now on (the same modules, so one update trains both sites); both must hold
        the same channels and candidates."""
        if other.channels != self.channels or other.specs != self.specs:
            raise ValueError(f"ChoiceBlock: cannot share weights between {self.channels} and {other.channels} "
                             "channels or different candidates")
        self.mask, self.mlps, self.convs = other.mask, other.mlps, other.convs

    def choose(self, spec: Optional[BlockSpec]) -> None:
        if spec is not None and spec not in self.specs:
            raise ConfigError(f"design: {spec} is not a candidate of this supernet site; its candidates are "
                              f"{', '.join(map(str, self.specs))}")
        self.active = spec

    def _term(self, spec: BlockSpec, slot: str, c: torch.Tensor) -> torch.Tensor:
        family = _mlp_family(spec)
        if family is not None:
            return self.mlps[f"{slot}_{family}"](c, self._hidden(spec), self._acts[spec])
        if _shared(TRANSFORMS, spec.transform) == "linear":
            return self.convs[slot](c)
        return c  # weightless: the identity

    def _context(self, spec: BlockSpec, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask if self._masked(spec) else None
        return pool_context(x, *((mask.weight, mask.bias) if mask is not None else ()))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.active
        if spec is None:
            return x
        slots = {slot: partial(self._term, spec, slot) for slot in spec.fusion}
        return global_context_forward(x, partial(self._context, spec), slots.get("scale"), slots.get("add"),
                                      self._gates.get(spec))

    @torch.no_grad()
    def extract(self, spec: BlockSpec) -> GlobalContextBlock:
        """A standalone block of design ``spec`` holding the weights the candidate uses here (same outputs)."""
        if spec not in self.specs:
            raise ConfigError(f"design: {spec} is not a candidate of this supernet site")
        block = spec.build(self.channels)
        if self._masked(spec):
            block.context.conv_mask.weight.copy_(self.mask.weight)
            block.context.conv_mask.bias.copy_(self.mask.bias)
        for slot in spec.fusion:
            target = block.scale_transform if slot == "scale" else block.add_transform
            family = _mlp_family(spec)
            if family is not None:
                shared, h = self.mlps[f"{slot}_{family}"], self._hidden(spec)
                target.fc1.weight.copy_(shared.fc1.weight[:h])
                target.fc1.bias.copy_(shared.fc1.bias[:h])
                target.fc2.weight.copy_(shared.fc2.weight[:, :h])
                target.fc2.bias.copy_(shared.fc2.bias)
                if shared.norm_weight is not None:
                    target.norm.weight.copy_(shared.norm_weight[:h].reshape(target.norm.weight.shape))
                    target.norm.bias.copy_(shared.norm_bias[:h].reshape(target.norm.bias.shape))
            elif _shared(TRANSFORMS, spec.transform) == "linear":
                target.fc.weight.copy_(self.convs[slot].weight)
                target.fc.bias.copy_(self.convs[slot].bias)
        return block

    def extra_repr(self) -> str:
        return f"{self.channels}, {len(self.specs)} candidates, active={self.active}"


class _SupernetSpec:
    """What :func:`gcnas.backbones.insert` builds at a supernet site (anything with ``build(channels)``); keeps the
    blocks in the order insert() builds them, which is the order of the sites it returns."""

    def __init__(self, specs: Sequence[BlockSpec]) -> None:
        self.specs = specs
        self.built: list[ChoiceBlock] = []

    def build(self, channels: int) -> ChoiceBlock:
        self.built.append(ChoiceBlock(channels, self.specs))
        return self.built[-1]


class Supernet(nn.Module):
    """A timm backbone with a :class:`ChoiceBlock` at every given site; :meth:`set_architecture` picks one network.

    Args:
        backbone: timm model name; ``backbone_kwargs`` as for :class:`~gcnas.arch.Architecture`.
        sites: the backbone's sites (``gcnas.backbones.list_sites``); ``site_keys`` the (stage, block, position) keys
            that hold a choice (default: every site).
        specs: the candidate designs, the same at every site.
        share: ``site`` (every site its own weights) or ``stage`` (the sites of one stage with the same channels use
            one site's weights: each weight is trained whenever any of them holds a block; see the module docstring).
        weights: the backbone's starting weights (:class:`~gcnas.backbones.weights.BackboneWeights`: timm's
            pretrained ones or a local file, loaded by timm as for a standalone model); default random init. The
            candidates start as they do in a standalone model: ``add`` at the identity.
    """

    def __init__(self, backbone: str, backbone_kwargs: Mapping[str, Any], sites: Sequence[Site],
                 specs: Sequence[BlockSpec], site_keys: Optional[Iterable[tuple[int, int, str]]] = None,
                 share: str = "site", weights: Optional[BackboneWeights] = None) -> None:
        super().__init__()
        if share not in SHARES:
            raise ConfigError(f"search.supernet_share: must be one of {', '.join(SHARES)}; got {share!r}")
        self.backbone_name = backbone
        self.backbone_kwargs = dict(backbone_kwargs)
        self.share = share
        self.weights = weights if weights is not None else BackboneWeights()
        self.specs = tuple(check_supernet_designs(specs))
        keys = set(site_keys) if site_keys is not None else {s.key for s in sites}
        unknown = keys - {s.key for s in sites}
        if unknown:
            raise ConfigError(f"positions: {backbone} has no site {sorted(unknown)[0]}")
        self.model = create_backbone(backbone, weights=self.weights, **self.backbone_kwargs)
        spec = _SupernetSpec(self.specs)
        used = insert(self.model, [{"stage": k[0], "block": k[1], "position": k[2], "spec": spec} for k in keys],
                      sites=list(sites))
        self.choices: dict[tuple[int, int, str], ChoiceBlock] = dict(zip((s.key for s in used), spec.built))
        if share == "stage":
            owners: dict[tuple[int, int], ChoiceBlock] = {}
            for key in sorted(self.choices):
                block = self.choices[key]
                owner = owners.setdefault((key[0], block.channels), block)
                if owner is not block:
                    block.share_weights_with(owner)
        names = {id(m): n for n, m in self.model.named_modules()}
        # build_model names an architecture's block at a site as insert() named the choice here
        self.module_names = {key: names[id(block)] for key, block in self.choices.items()}

    def identity(self) -> dict[str, Any]:
        """What a checkpoint of this supernet must match to be loaded into it: backbone, its kwargs, its starting
        weights (a file by its content), the candidate designs and the sites that hold a choice."""
        return {"backbone": self.backbone_name, "backbone_kwargs": {k: self.backbone_kwargs[k]
                                                                    for k in sorted(self.backbone_kwargs)},
                "designs": [str(s) for s in self.specs], "sites": [list(k) for k in sorted(self.choices)],
                # absent: the defaults, as supernets saved before the keys were
                **({"share": self.share} if self.share != "site" else {}),
                **({"weights": self._weights_identity()} if self.weights.loaded else {})}

    def _weights_identity(self) -> str:
        if self.weights.file is not None:
            return f"file sha256 {file_sha256(self.weights.file)}"
        return "timm pretrained"

    def get_classifier(self) -> nn.Module:
        """The backbone's classifier (timm's ``get_classifier``): a fine-tuning recipe trains it as a new part."""
        return self.model.get_classifier()

    def set_architecture(self, arch: Architecture) -> None:
        """Run ``arch``: its blocks where it places them, nothing at every other site."""
        if arch.backbone != self.backbone_name:
            raise ConfigError(f"architecture: backbone {arch.backbone!r} is not the supernet's {self.backbone_name!r}")
        wanted = {}
        for p in arch.placements:
            key = (p.stage, p.block, p.position)
            if key not in self.choices:
                raise ConfigError(f"architecture: the supernet holds no choice at stage {p.stage}, block {p.block}, "
                                  f"position {p.position!r}")
            if p.replace:
                raise ConfigError("architecture: replace=true placements are not held by the supernet")
            wanted[key] = p.spec
        for key, block in self.choices.items():
            block.choose(wanted.get(key))

    def extract(self, arch: Architecture) -> nn.Module:
        """``arch`` as a standalone model (``gcnas.build_model``) with every weight inherited from the supernet."""
        from gcnas.arch import build_model

        self.set_architecture(arch)
        model = build_model(arch)
        backbone_state = {k: v for k, v in self.model.state_dict().items()
                          if not any(k.startswith(n + ".") for n in self.module_names.values())}
        result = model.load_state_dict(backbone_state, strict=False)
        modules = dict(model.named_modules())
        for p in arch.placements:
            key = (p.stage, p.block, p.position)
            modules[self.module_names[key]].load_state_dict(self.choices[key].extract(p.spec).state_dict())
        blocks = {self.module_names[(p.stage, p.block, p.position)] for p in arch.placements}
        left = [k for k in result.missing_keys if not any(k.startswith(n + ".") for n in blocks)]
        if left or result.unexpected_keys:
            raise RuntimeError(f"supernet and {arch.backbone} disagree on keys: missing {left[:5]}, unexpected "
                               f"{result.unexpected_keys[:5]}")
        self.set_architecture(arch)  # extract() of a block chose it alone; the whole architecture runs again
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
