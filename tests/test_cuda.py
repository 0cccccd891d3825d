"""The CUDA paths: every block design on the GPU against the CPU, and the training loop with its data on the GPU.

Runs where a CUDA device is present (the tests skip, saying so, on a machine without one; CI has none). Run on a GPU
with ``pytest tests/test_cuda.py``.
"""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from gcnas.blocks import CONTEXTS, TRANSFORMS, GlobalContextBlock, NonLocalBlock
from gcnas.data import DataSplits, TensorSplit
from gcnas.train import NonFiniteLossError, evaluate, fit
from reference import randomize_

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

DESIGNS = [(c, t, f) for c, t, f in itertools.product(sorted(CONTEXTS), sorted(TRANSFORMS),
                                                      ("scale", "add", ("scale", "add")))
           if not (t == "identity" and f != "add")]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("context,transform,fusion", DESIGNS)
def test_block_on_cuda_matches_cpu(context, transform, fusion, fused):
    """float32 forward and gradients on the GPU equal the CPU's (channels_last input)."""
    block = randomize_(GlobalContextBlock(32, context=context, transform=transform, ratio=1 / 4,
                                          fusion=list(fusion) if isinstance(fusion, tuple) else fusion, fused=fused),
                       std=0.2)
    x = torch.randn(3, 32, 7, 9, generator=torch.Generator().manual_seed(0))
    outs = {}
    for device in ("cpu", "cuda"):
        b = block.to(device)
        xi = x.to(device).clone(memory_format=torch.channels_last).requires_grad_()
        b.zero_grad(set_to_none=True)
        y = b(xi)
        (y * torch.linspace(-1, 1, y.numel(), device=device).view_as(y)).sum().backward()
        outs[device] = (y.detach().cpu().clone(), xi.grad.cpu().clone(), [p.grad.cpu().clone() for p in b.parameters()])
    (y0, g0, p0), (y1, g1, p1) = outs["cpu"], outs["cuda"]
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-5)
    for a, b in zip(p1, p0):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # the mask bias: zero up to rounding


def test_default_block_trains_through_plain_autograd_on_cuda():
    block = GlobalContextBlock(32, ratio=1 / 4).cuda()
    y = block(torch.randn(2, 32, 8, 8, device="cuda", requires_grad=True))
    assert type(y.grad_fn).__name__ != "_GlobalContextFunctionBackward"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nonlocal_block_under_autocast_on_cuda(dtype):
    block = randomize_(NonLocalBlock(32), std=0.2).cuda()
    x = torch.randn(2, 32, 8, 8, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=dtype):
        y = block(x)
    y.float().square().mean().backward()
    assert torch.isfinite(x.grad).all() and y.shape == x.shape


def _task(n: int = 1024, size: int = 16):
    """A learnable task: the class is which quadrant holds a bright square."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, size, size, generator=g) * 0.3
    h = size // 2
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, :, r * h:(r + 1) * h, col * h:(col + 1) * h] += 1.0
    return DataSplits("quadrants", TensorSplit(x[:768], y[:768]), TensorSplit(x[768:], y[768:]), None, 4,
                      (3, size, size))


@pytest.mark.parametrize("amp", ["bf16", "fp16", False])
def test_fit_on_gpu_resident_data_with_amp_and_channels_last(amp):
    import timm

    data = _task().to("cuda")
    assert data.train.x.is_cuda and data.val.y.is_cuda  # the fast path: a step copies nothing from the host
    torch.manual_seed(0)
    model = timm.create_model("gcnas_resnet_tiny", num_classes=4)
    res = fit(model, data, {"epochs": 3, "batch_size": 64, "lr": 0.05, "amp": amp, "channels_last": True},
              device="cuda", test=False)
    assert next(model.parameters()).is_cuda
    assert res.epochs[-1].train_loss < res.epochs[0].train_loss
    assert res.final_val_acc > 0.8  # chance is 0.25


def test_evaluate_on_cuda_equals_cpu():
    import timm

    data = _task()
    torch.manual_seed(0)
    model = timm.create_model("gcnas_resnet_tiny", num_classes=4).eval()
    cpu = evaluate(model, data.val, batch_size=100)
    gpu = evaluate(model.cuda(), data.val.to("cuda"), batch_size=100, device="cuda")
    assert gpu[1] == pytest.approx(cpu[1], abs=1 / len(data.val))
    assert gpu[0] == pytest.approx(cpu[0], rel=1e-4)


def test_non_finite_loss_on_cuda_names_its_step():
    """On CUDA the losses are read back every few steps; the error still names the first bad step."""
    import timm

    data = _task()
    poisoned = dataclasses.replace(data, train=TensorSplit(data.train.x * float("nan"), data.train.y)).to("cuda")
    model = timm.create_model("gcnas_resnet_tiny", num_classes=4)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 0"):
        fit(model, poisoned, {"epochs": 1, "batch_size": 64, "lr": 0.05}, device="cuda", test=False)
