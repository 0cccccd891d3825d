"""Pretrained backbone weights, loaded the timm way.

``pretrained=True`` is ``timm.create_model(name, pretrained=True)``: timm's published weights from its hub cache (works
offline once cached). ``pretrained_file=PATH`` is ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=PATH))``: timm reads the file (``torch.load(weights_only=True)`` or safetensors),
resets the classifier when ``num_classes`` differs and adapts the first convolution when ``in_chans`` differs. Both
are timm's behaviour, not ours.

What gcnas adds is checking the file before timm reads it, so a wrong file fails with one line naming the config key
and what did not match (missing and unexpected keys, shapes) instead of a traceback from ``load_state_dict`` or a
silent partial load (timm loads non-strictly once it resets a classifier). The file's own classifier and input
channels are given to timm as the source's ``num_classes`` / ``input_size``, so timm resets or adapts only what
really differs from the model being built.

This layer imports torch and timm only.
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from gcnas.errors import ConfigError

__all__ = ["BackboneWeights", "create_pretrained", "check_weights", "read_state_dict"]

_NESTED = ("state_dict_ema", "model_ema", "state_dict", "model")  # the keys timm's load_state_dict looks under


@dataclass(frozen=True)
class BackboneWeights:
    """Where a backbone's weights come from: random init (default), timm's pretrained weights, or a local file."""

    pretrained: bool = False
    file: Optional[str] = None

    @classmethod
    def from_config(cls, backbone: Optional[Mapping[str, Any]]) -> "BackboneWeights":
        """From a ``backbone`` config section (``pretrained``, ``pretrained_file``); bad values name the key."""
        backbone = backbone or {}
        pretrained = backbone.get("pretrained", False)
        file = backbone.get("pretrained_file")
        if not isinstance(pretrained, bool):
            raise ConfigError(f"backbone.pretrained must be true or false; got {pretrained!r}")
        if file is not None and not isinstance(file, (str, Path)):
            raise ConfigError(f"backbone.pretrained_file must be a path or null; got {file!r}")
        return cls(pretrained, None if file in (None, "") else str(file))

    @property
    def loaded(self) -> bool:
        return self.pretrained or self.file is not None

    def describe(self) -> str:
        """One line for logs and model cards."""
        if self.file is not None:
            try:
                return f"local file {self.file} (sha256 {file_sha256(self.file)[:12]})"
            except OSError:
                return f"local file {self.file} (no longer readable there)"
        if self.pretrained:
            return "timm's pretrained weights"
        return "random initialisation (no pretrained weights)"

    def to_dict(self) -> dict:
        return {"pretrained": self.pretrained, "pretrained_file": self.file}

    def identity(self) -> str:
        """What the weights are, for the records of what a result was made from: a file by its content (a moved or
        renamed file is the same start), timm's weights by name, or random."""
        if self.file is not None:
            try:
                return f"file sha256 {file_sha256(self.file)[:16]}"
            except OSError:
                return f"file {self.file} (unreadable)"
        return "timm pretrained" if self.pretrained else "random"


def file_sha256(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: Union[str, Path], key: str = "backbone.pretrained_file") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file as timm reads it (safetensors, or ``torch.load(weights_only=True)`` with
    timm's nesting keys); every failure is a :class:`ConfigError` naming ``key``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln or "GLOBAL" in ln]
        raise ConfigError(f"{key}: {path} holds objects that torch.load(weights_only=True) refuses to unpickle "
                          f"({(lines[0] if lines else 'not only tensors')[:200]}); save the weights alone, e.g. "
                          f"torch.save(model.state_dict(), path) or safetensors' save_file") from None
    except Exception as e:  # safetensors' and torch's errors for a truncated or foreign file
        raise ConfigError(f"{key}: {path} is not a readable checkpoint ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'}); give a .safetensors file or "
                          f"a torch.save'd state_dict") from None
    if isinstance(sd, Mapping):
        for nested in _NESTED:
            if isinstance(sd.get(nested), Mapping):
                sd = sd[nested]
                break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(f"{key}: {path} is not a state_dict (a mapping of names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in sd.items()}


def _prefixed(name: Optional[Union[str, tuple, list]]) -> tuple[str, ...]:
    if not name:
        return ()
    return tuple(name) if isinstance(name, (tuple, list)) else (name,)


def _check_file(name: str, path: str, kwargs: Mapping[str, Any]) -> dict:
    """Compare ``path``'s tensors with the model timm would build; return the overlay that tells timm the file's own
    ``num_classes`` and input channels. Raises :class:`ConfigError` naming what does not match."""
    import timm

    sd = read_state_dict(path)
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **kwargs)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    classifiers, first_convs = _prefixed(cfg.get("classifier")), _prefixed(cfg.get("first_conv"))
    overlay: dict = {"file": str(path)}
    for c in classifiers:  # the file's own head: timm resets it only if the model's num_classes differs
        w = sd.get(f"{c}.weight")
        if w is not None and w.dim() >= 1:
            overlay["num_classes"] = int(w.shape[0])
            break
    for c in first_convs:  # the file's input channels: timm adapts the stem only if in_chans differs
        w = sd.get(f"{c}.weight")
        if w is not None and w.dim() == 4:
            overlay["input_size"] = (int(w.shape[1]), *tuple(cfg.get("input_size", (3, 224, 224)))[1:])
            break
    own = model.state_dict()
    timm_adapts = tuple(f"{c}." for c in classifiers + first_convs)
    missing = [k for k in own if k not in sd and not k.startswith(timm_adapts)]
    unexpected = [k for k in sd if k not in own and not k.startswith(timm_adapts)]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape) and not k.startswith(timm_adapts)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}" + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}"
                         + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""))
        if shapes:
            parts.append(f"other shapes {shapes[:3]}" + (f" (+{len(shapes) - 3} more)" if len(shapes) > 3 else ""))
        raise ConfigError(f"backbone.pretrained_file: {path} holds weights of another architecture than {name} "
                          f"({'; '.join(parts)}); give a checkpoint of the plain {name}")
    return overlay


def check_weights(name: str, weights: BackboneWeights, **kwargs) -> None:
    """Fail now, not in the first trial: the file is read and compared with the model, or timm is asked whether
    it has weights for ``name`` (their download or cache is not tried here)."""
    if weights.file is not None:
        _check_file(name, weights.file, kwargs)
    elif weights.pretrained:
        cfg = _pretrained_cfg(name)
        if not (cfg.get("url") or cfg.get("hf_hub_id") or cfg.get("file")):
            raise ConfigError(f"backbone.pretrained=true: timm has no pretrained weights for {name}; use "
                              f"backbone.pretrained_file=PATH with a checkpoint you trained, or "
                              f"backbone.pretrained=false")


def create_pretrained(name: str, weights: BackboneWeights, **kwargs) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` with ``weights`` loaded by timm (see the module's docstring)."""
    import timm

    if weights.file is not None:
        overlay = _check_file(name, weights.file, kwargs)
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except RuntimeError as e:  # timm's strict load_state_dict, or its stem-adaptation check
            raise ConfigError(f"backbone.pretrained_file: timm could not load {weights.file} into {name}: "
                              f"{str(e).splitlines()[0][:300]}") from None
    if weights.pretrained:
        check_weights(name, weights, **kwargs)
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:  # no cached weights and no network: hub / download errors of many kinds
            raise ConfigError(f"backbone.pretrained=true: timm could not get the weights of {name} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else 'no detail'}). "
                              f"On a machine without network, download them once where there is one (timm keeps "
                              f"them in its Hugging Face hub cache, e.g. ~/.cache/huggingface) and copy the cache, "
                              f"or save them and set backbone.pretrained_file=PATH; HF_HUB_OFFLINE=1 skips the network's retries") from None
    return timm.create_model(name, pretrained=False, **kwargs)


def _pretrained_cfg(name: str) -> dict:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}
