"""GlobalContextBlock: every context x transform x fusion x norm against the paper's formulas."""
from __future__ import annotations

import itertools

import pytest
import torch

from gcnas.blocks import CONTEXTS, NORMS, TRANSFORMS, GlobalContextBlock
from reference import randomize_, reference_global_context

FUSION_CHOICES = ["add", "scale", ["scale", "add"]]
COMBOS = [
    pytest.param(c, t, f, n, id=f"{c}-{t}-{'+'.join(f) if isinstance(f, list) else f}-{n}")
    for c, t, f, n in itertools.product(CONTEXTS.names(), TRANSFORMS.names(), FUSION_CHOICES, NORMS.names() + [None])
]


def make(context, transform, fusion, norm, channels=16, **kw):
    return GlobalContextBlock(channels, context=context, transform=transform, ratio=1 / 4, fusion=fusion, norm=norm,
                              **kw)


def test_combos_cover_every_registered_choice():
    assert len(COMBOS) == len(CONTEXTS) * len(TRANSFORMS) * 3 * (len(NORMS) + 1) == 72


@pytest.mark.parametrize("context,transform,fusion,norm", COMBOS)
def test_forward_and_gradients_match_reference(context, transform, fusion, norm):
    # float64, so that the tolerances below test the maths rather than float32 summation order.
    torch.manual_seed(0)
    block = randomize_(make(context, transform, fusion, norm)).double()
    x = torch.randn(3, 16, 5, 7, dtype=torch.float64)

    ref_x = x.clone().requires_grad_()
    ref = reference_global_context(block, ref_x)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [ref_x, *block.parameters()], g, allow_unused=True)

    for fused in (True, False):
        block.fused = fused
        xx = x.clone().requires_grad_()
        out = block(xx)
        assert out.shape == x.shape
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
        grads = torch.autograd.grad(out, [xx, *block.parameters()], g, allow_unused=True)
        for (name, _), got, want in zip([("x", None), *block.named_parameters()], grads, ref_grads):
            if want is None:  # parameter outside the graph (none expected, but keep the comparison honest)
                assert got is None or torch.count_nonzero(got) == 0, name
                continue
            assert got is not None, f"no gradient for {name} (fused={fused})"
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10,
                                       msg=lambda m, name=name, fused=fused: f"{name} fused={fused}: {m}")
        if fused:
            assert type(out.grad_fn).__name__ == "_GlobalContextFunctionBackward"

    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_global_context(block, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("context,transform,fusion,norm", COMBOS)
def test_float32_paths_agree_with_float64_reference(context, transform, fusion, norm):
    block = randomize_(make(context, transform, fusion, norm))
    x = torch.randn(3, 16, 5, 7)
    with torch.no_grad():
        want = reference_global_context(block.double(), x.double())
        block.float()
    out = block(x.requires_grad_())
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("context,transform,fusion,norm", COMBOS)
def test_identity_at_init_for_add(context, transform, fusion, norm):
    block = make(context, transform, fusion, norm)
    x = torch.randn(2, 16, 6, 6)
    out = block(x)
    if fusion == "add" and transform != "identity":
        assert torch.equal(out, x), "an add block must be the identity function at initialisation"
    elif "scale" in fusion and transform != "identity":
        # The last layer of every transform is zero: the gate starts at sigmoid(0) = 1/2, the add term at 0.
        torch.testing.assert_close(out, x * 0.5)
    else:
        assert not torch.equal(out, x)


@pytest.mark.parametrize("context,transform,fusion,norm", COMBOS[:: 7])
def test_gradcheck_fused_float64(context, transform, fusion, norm):
    block = randomize_(make(context, transform, fusion, norm, channels=6)).double()
    if norm == "batchnorm":
        block.eval()  # finite differences need a deterministic function; train-mode BN is checked above
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    params = list(block.parameters())
    assert block._use_fused(x)
    assert torch.autograd.gradcheck(lambda inp: block(inp), (x,), eps=1e-6, atol=1e-6)
    # Parameter gradients by finite differences on each parameter in turn.
    for p in params:
        def f(v, p=p):
            saved = p.detach().clone()
            with torch.no_grad():
                p.copy_(v)
            try:
                return block(x.detach())
            finally:
                with torch.no_grad():
                    p.copy_(saved)

        out = block(x.detach())
        g = torch.randn_like(out)
        analytic = torch.autograd.grad(out, p, g, allow_unused=True)[0]
        analytic = torch.zeros_like(p) if analytic is None else analytic
        numeric = torch.zeros_like(p).reshape(-1)
        flat = p.detach().clone().reshape(-1)
        for i in range(flat.numel()):
            hi, lo = flat.clone(), flat.clone()
            hi[i] += 1e-6
            lo[i] -= 1e-6
            numeric[i] = ((f(hi.reshape(p.shape)) - f(lo.reshape(p.shape))) * g).sum() / 2e-6
        torch.testing.assert_close(analytic.reshape(-1), numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fusion", FUSION_CHOICES, ids=str)
@pytest.mark.parametrize("context", CONTEXTS.names())
def test_channels_last(context, fusion):
    block = randomize_(GlobalContextBlock(16, context=context, fusion=fusion, ratio=1 / 4))
    x = torch.randn(2, 16, 6, 5)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = block(xc)
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, block(x))
    a, b = x.clone().requires_grad_(), xc.clone().requires_grad_()
    g = torch.randn_like(x)
    block(a).backward(g)
    block(b).backward(g.contiguous(memory_format=torch.channels_last))
    # float32 sums in another order (channels_last kernels, a thread count an earlier test in the process set): 1.5e-6
    # apart was seen on one element of 960
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fusion", FUSION_CHOICES, ids=str)
@pytest.mark.parametrize("context", CONTEXTS.names())
def test_low_precision(context, fusion, dtype):
    block32 = randomize_(GlobalContextBlock(16, context=context, fusion=fusion, ratio=1 / 4), std=0.2)
    block = randomize_(GlobalContextBlock(16, context=context, fusion=fusion, ratio=1 / 4), std=0.2).to(dtype)
    x = torch.randn(2, 16, 6, 6)
    xl = x.to(dtype).requires_grad_()
    out = block(xl)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert xl.grad.dtype == dtype and torch.isfinite(xl.grad.float()).all()
    assert all(p.grad is not None and p.grad.dtype == dtype for p in block.parameters())
    tol = 2e-2 if dtype == torch.float16 else 8e-2
    torch.testing.assert_close(out.float(), block32(x), rtol=tol, atol=tol)


def test_non_square_and_single_position():
    for h, w in [(1, 1), (1, 9), (4, 3)]:
        block = randomize_(GlobalContextBlock(8, fusion=["scale", "add"], ratio=1 / 2))
        x = torch.randn(2, 8, h, w, requires_grad=True)
        out = block(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out, reference_global_context(block, x))
        out.sum().backward()
        assert x.grad.shape == x.shape


def test_attention_map_is_query_independent_distribution():
    block = randomize_(GlobalContextBlock(8, ratio=1 / 2))
    x = torch.randn(3, 8, 4, 5)
    p = block.attention(x)
    assert p.shape == (3, 20)
    torch.testing.assert_close(p.sum(-1), torch.ones(3))
    avg = GlobalContextBlock(8, context="avg", ratio=1 / 2).attention(x)
    torch.testing.assert_close(avg, torch.full((3, 20), 1 / 20))


def test_reset_parameters_restores_official_init():
    block = randomize_(GlobalContextBlock(32, fusion=["scale", "add"]))
    block.reset_parameters()
    for t in (block.scale_transform, block.add_transform):
        assert torch.count_nonzero(t.fc2.weight) == 0 and torch.count_nonzero(t.fc2.bias) == 0
    w = block.context.conv_mask.weight
    assert torch.count_nonzero(block.context.conv_mask.bias) == 0
    # Kaiming normal, fan_in = 32, gain sqrt(2): std = sqrt(2 / 32) = 0.25 (loose bound for 32 samples).
    assert 0.12 < w.std().item() < 0.4


def test_spec_rebuilds_the_same_block():
    for kwargs in [dict(), dict(context="avg", transform="se", fusion="scale", norm=None, act="gelu"),
                   dict(transform="conv", fusion=["add", "scale"]), dict(hidden_channels=3)]:
        block = GlobalContextBlock(48, **kwargs)
        again = GlobalContextBlock(48, **block.spec())
        assert again.spec() == block.spec()
        assert again.state_dict().keys() == block.state_dict().keys()
        assert [v.shape for v in again.state_dict().values()] == [v.shape for v in block.state_dict().values()]


def test_fusion_order_is_canonical():
    a = GlobalContextBlock(8, fusion=["add", "scale"], ratio=1 / 2)
    assert a.fusion == ("scale", "add")


def test_hidden_width_follows_official_floor():
    assert GlobalContextBlock(256).hidden_channels == 16
    assert GlobalContextBlock(24, ratio=1 / 16).hidden_channels == 1
    assert GlobalContextBlock(100, ratio=1 / 3).hidden_channels == 33
    assert GlobalContextBlock(64, hidden_channels=5).ratio == 5 / 64


def test_activation_by_class_and_instance():
    for act in (torch.nn.GELU, torch.nn.GELU(approximate="tanh"), "silu", None):
        block = randomize_(GlobalContextBlock(16, ratio=1 / 4, act=act))
        x = torch.randn(2, 16, 3, 3)
        torch.testing.assert_close(block(x), reference_global_context(block, x))


def test_plain_path_in_inference_and_tracing():
    block = GlobalContextBlock(8, ratio=1 / 2)
    x = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        assert not block._use_fused(x)
    assert block._use_fused(x)  # parameters require grad
    block.requires_grad_(False)
    assert not block._use_fused(x)
    assert block._use_fused(x.requires_grad_())


def test_fused_false_supports_double_backward():
    block = randomize_(GlobalContextBlock(8, ratio=1 / 2, fused=False))
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    (gx,) = torch.autograd.grad(block(x).pow(2).sum(), x, create_graph=True)
    gx.pow(2).sum().backward()
    assert block.context.conv_mask.weight.grad is not None

    fused = randomize_(GlobalContextBlock(8, ratio=1 / 2))
    (gx,) = torch.autograd.grad(fused(x).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.pow(2).sum().backward()


def test_frozen_parameters_get_no_gradient():
    block = randomize_(GlobalContextBlock(16, ratio=1 / 4, fusion=["scale", "add"]))
    block.add_transform.requires_grad_(False)
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    block(x).sum().backward()
    assert all(p.grad is None for p in block.add_transform.parameters())
    assert all(p.grad is not None for p in block.scale_transform.parameters())
    assert x.grad is not None


def test_batchnorm_running_stats_update_once_per_forward():
    block = GlobalContextBlock(16, ratio=1 / 4, norm="batchnorm")
    x = torch.randn(4, 16, 3, 3, requires_grad=True)
    block(x).sum().backward()
    assert block.add_transform.norm.num_batches_tracked.item() == 1


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_training_step(device):
    """A mixed-precision training step (bfloat16 autocast on CPU, float16 on CUDA) through the fused path."""
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    block = randomize_(GlobalContextBlock(32, ratio=1 / 4, fusion=["scale", "add"], fused=True), std=0.2).to(device)
    x = torch.randn(4, 32, 8, 8, device=device).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast(device_type=device, dtype=dtype):
        out = block(x)
    assert type(out.grad_fn).__name__ == "_GlobalContextFunctionBackward"
    out.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in block.parameters())
    with torch.no_grad():
        ref = reference_global_context(block, x.detach())
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("context,fusion", [("att", "add"), ("att", "scale"), ("att", "scale+add"), ("avg", "add"),
                                            ("avg", "scale+add")])
def test_channels_last_input_keeps_its_layout_and_values(context, fusion, fused):
    """A channels_last feature map is pooled and fused in its own layout: the same output and gradients as the
    contiguous one, and output and input gradient stay channels_last (flattening to (B, C, N) would copy it, and
    the network's next convolution would convert the gradient back: the block ran at half speed on a GPU)."""
    block = randomize_(GlobalContextBlock(24, context=context, ratio=1 / 4, fusion=fusion, fused=fused), std=0.2)
    x = torch.randn(3, 24, 5, 7, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(3, 24, 5, 7, generator=torch.Generator().manual_seed(2))
    results = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        xi = x.clone(memory_format=fmt).requires_grad_()
        block.zero_grad(set_to_none=True)
        y = block(xi)
        (y * weights.contiguous(memory_format=fmt)).sum().backward()
        results.append((y.detach(), xi.grad, {n: p.grad.clone() for n, p in block.named_parameters()}))
        if fmt is torch.channels_last:
            assert y.is_contiguous(memory_format=torch.channels_last)
            assert xi.grad.is_contiguous(memory_format=torch.channels_last)
    (y0, g0, p0), (y1, g1, p1) = results
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)
    for name in p0:
        if name.endswith("conv_mask.bias"):
            # softmax ignores a shift of every logit, so this gradient is 0 in exact arithmetic: what is left is the
            # rounding of a sum over every position, whose order differs between the layouts (seen: 4e-7 vs 1.0e-6)
            assert p0[name].abs().max() < 1e-5 and p1[name].abs().max() < 1e-5
        else:
            torch.testing.assert_close(p1[name], p0[name], rtol=1e-4, atol=1e-6)


def test_fused_by_default_on_the_cpu_only():
    """fused=None: the hand-derived backward on the CPU (faster and smaller there), plain autograd on other devices
    (faster on a GPU); an explicit True or False is kept on every device."""
    cpu = torch.randn(2, 16, 4, 4, requires_grad=True)
    meta = torch.empty(2, 16, 4, 4, device="meta", requires_grad=True)
    auto, on, off = (GlobalContextBlock(16, ratio=1 / 4, fused=f) for f in (None, True, False))
    assert auto.fused is None and auto._use_fused(cpu) and not auto._use_fused(meta)
    assert on._use_fused(cpu) and on._use_fused(meta)
    assert not off._use_fused(cpu) and not off._use_fused(meta)
    assert type(auto(cpu).grad_fn).__name__ == "_GlobalContextFunctionBackward"
