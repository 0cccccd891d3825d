"""Every bad argument of the blocks raises ValueError at construction, naming the argument, value and valid values."""
from __future__ import annotations

import pytest
import torch

from gcnas.blocks import GlobalContextBlock, NonLocalBlock, preset
from gcnas.registry import UnknownNameError

GC_BAD = [
    (dict(channels=0), ["channels", "0", "positive integer"]),
    (dict(channels=-4), ["channels", "-4"]),
    (dict(channels=True), ["channels", "True"]),
    (dict(channels=16.0), ["channels", "16.0"]),
    (dict(context="max"), ["context", "'max'", "'avg'", "'att'"]),
    (dict(context="attn"), ["context", "'attn'", "did you mean 'att'"]),
    (dict(transform="mlp"), ["transform", "'mlp'", "'bottleneck'", "'se'", "'conv'", "'identity'"]),
    (dict(ratio=0), ["ratio", "0", "(0, 1]"]),
    (dict(ratio=1.5), ["ratio", "1.5", "(0, 1]"]),
    (dict(ratio="1/16"), ["ratio", "'1/16'"]),
    (dict(ratio=float("nan")), ["ratio", "nan"]),
    (dict(channels=8, ratio=1 / 16), ["ratio", "channels=8", "[1/8, 1]"]),
    (dict(fusion="mul"), ["fusion", "'mul'", "'add'", "'scale'"]),
    (dict(fusion=[]), ["fusion", "[]"]),
    (dict(fusion=["add", "add"]), ["fusion", "['add', 'add']"]),
    (dict(fusion=None), ["fusion", "None"]),
    (dict(norm="groupnorm"), ["norm", "'groupnorm'", "'layernorm'", "'batchnorm'", "None"]),
    (dict(act="reluu"), ["act", "'reluu'", "'relu'"]),
    (dict(act=42), ["act", "42", "nn.Module"]),
    (dict(gate="tanh"), ["gate", "'tanh'", "'sigmoid'", "'hard_sigmoid'"]),
    (dict(hidden_channels=0), ["hidden_channels", "0"]),
    (dict(hidden_channels=300), ["hidden_channels", "300", "channels=256"]),
    (dict(norm_eps=0), ["norm_eps", "0"]),
]


@pytest.mark.parametrize("kwargs,needles", GC_BAD, ids=[repr(k) for k, _ in GC_BAD])
def test_global_context_bad_arguments(kwargs, needles):
    kwargs = {"channels": 256, **kwargs}
    with pytest.raises(ValueError) as err:
        GlobalContextBlock(**kwargs)
    msg = str(err.value)
    assert msg.startswith("GlobalContextBlock: "), msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


NL_BAD = [
    (dict(channels=0), ["channels", "0"]),
    (dict(ratio=2), ["ratio", "2", "(0, 1]"]),
    (dict(channels=3, ratio=0.2), ["ratio", "channels=3"]),
    (dict(mode="softmax"), ["mode", "'softmax'", "'embedded_gaussian'", "'gaussian'", "'dot'"]),
]


@pytest.mark.parametrize("kwargs,needles", NL_BAD, ids=[repr(k) for k, _ in NL_BAD])
def test_nonlocal_bad_arguments(kwargs, needles):
    kwargs = {"channels": 64, **kwargs}
    with pytest.raises(ValueError) as err:
        NonLocalBlock(**kwargs)
    msg = str(err.value)
    assert msg.startswith("NonLocalBlock: ")
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        preset("gc-scale")
    msg = str(err.value)
    for name in ("'gc'", "'se'", "'snl'", "'gc_scale'", "got 'gc-scale'", "did you mean 'gc_scale'"):
        assert name in msg
    assert isinstance(err.value, KeyError) and isinstance(err.value, UnknownNameError)


def test_wrong_input_shape_is_reported():
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 16, H, W\); got \(2, 8, 4, 4\)"):
        GlobalContextBlock(16, ratio=1 / 4)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match="got \\(2, 16, 4\\)"):
        NonLocalBlock(16)(torch.randn(2, 16, 4))


def test_layernorm_over_one_hidden_channel_is_named_as_degenerate():
    """LayerNorm over a single hidden channel outputs its bias whatever comes in, so such a block adds one constant
    vector: no global context. It warns, naming the ratio that would carry context; two channels do carry it."""
    import warnings

    from gcnas.blocks.global_context import DegenerateBlockWarning

    torch.manual_seed(0)
    x = torch.randn(4, 16, 8, 8)
    with pytest.warns(DegenerateBlockWarning, match=r"ratio=0.0625 leaves 1 hidden channel for channels=16.*ratio >= "
                                                    r"0.125 or norm=None"):
        one = GlobalContextBlock(16, ratio=1 / 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateBlockWarning)  # none of these warn
        two = GlobalContextBlock(16, ratio=2 / 16)
        GlobalContextBlock(16, ratio=1 / 16, norm=None)
        GlobalContextBlock(16, ratio=1 / 16, transform="se", norm=None)
    for block in (one, two):
        for p in block.parameters():
            torch.nn.init.normal_(p)  # trained-like weights: the zero-initialised last layer would hide it
    terms = [b.add_transform(b.context(x)) for b in (one, two)]
    assert torch.allclose(terms[0], terms[0][:1].expand_as(terms[0]))  # the same term for every image
    assert not torch.allclose(terms[1], terms[1][:1].expand_as(terms[1]))
