"""The one-read attention pooling (gcnas.blocks.fast_pool) against the reference composition.

On the CPU the Triton kernels run under Triton's interpreter, which a process chooses once, when it imports Triton
with ``TRITON_INTERPRET=1``: :func:`test_the_kernels_under_the_interpreter` runs this file again in such a process,
where the tests marked ``interpreted`` run (and skip in this one). They use tiny tensors: odd channel counts,
positions that are not a multiple of the tile, one and several samples, several programs per sample. The reference is
float64 autograd of :func:`gcnas.blocks.context.pool_context`; the kernels accumulate in float32, hence float32
tolerances. The tests marked ``cuda`` compile the kernels for a GPU and skip, saying so, on a machine without one.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gcnas.blocks import GlobalContextBlock
from gcnas.blocks.context import AttentionContext, pool_context
from reference import randomize_

triton = pytest.importorskip("triton", reason="Triton ships with the CUDA builds of torch; this install has none")
from gcnas.blocks.fast_pool import _interpreted, attention_pool, fast_pool_available, set_fast_pool  # noqa: E402

INTERPRETED = _interpreted()
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in test_the_kernels_under_the_interpreter's process")
cuda = pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(),
                          reason="no CUDA device on this machine" if not torch.cuda.is_available()
                          else "the compiled kernels, not the interpreter's")


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="this is the interpreter's process")
def test_the_kernels_under_the_interpreter():
    """This file's ``interpreted`` tests, in a process that imports Triton with TRITON_INTERPRET=1."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__], cwd=root,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="the interpreter's process has no compiler front end for these kernels")
def test_the_kernels_compile_for_a_gpu_without_one():
    """Triton compiles both kernels to machine code for an H100 (sm_90) here, with no GPU: the type and layout checks
    the interpreter does not make, for bfloat16 input and each backward variant."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from gcnas.blocks.fast_pool import _kernels

    fwd, bwd = _kernels()
    ints = {name: "i32" for name in ("C", "N", "span", "S", "stride_b", "stride_c", "stride_n")}
    f32 = "*fp32"
    sig = {"x_ptr": "*bf16", "w_ptr": f32, "logit_ptr": f32, "acc_ptr": f32, "m_ptr": f32, "l_ptr": f32, **ints,
           "BLOCK_C": "constexpr", "BLOCK_N": "constexpr"}
    tiles = {"BLOCK_C": 64, "BLOCK_N": 64}
    compiled = [triton.compile(ASTSource(fwd, sig, constexprs=tiles), target=GPUTarget("cuda", 90, 32))]
    sig = {"x_ptr": "*bf16", "w_ptr": f32, "logit_ptr": f32, "mx_ptr": f32, "den_ptr": f32, "gc_ptr": f32,
           "k_ptr": f32, "dx_ptr": "*bf16", "dw_ptr": f32, **ints,
           **{f"d{name}": "i32" for name in ("stride_b", "stride_c", "stride_n")},
           "NEED_X": "constexpr", "NEED_W": "constexpr", "BLOCK_C": "constexpr", "BLOCK_N": "constexpr"}
    for need_x, need_w in ((True, True), (False, True)):
        compiled.append(triton.compile(ASTSource(bwd, sig, constexprs={"NEED_X": need_x, "NEED_W": need_w, **tiles}),
                                       target=GPUTarget("cuda", 90, 32)))
    for kernel in compiled:
        assert kernel.asm["cubin"] and ".target sm_90" in kernel.asm["ptx"]


def test_on_the_cpu_without_the_interpreter_the_block_keeps_the_reference():
    """fast on a CPU input of a process not interpreting Triton: the reference path, bit for bit."""
    torch.manual_seed(0)
    block = randomize_(GlobalContextBlock(16, ratio=1 / 4, fused=False), std=0.2)
    x = torch.randn(2, 16, 4, 5)
    want = block(x)
    set_fast_pool(block)
    assert fast_pool_available(x) == INTERPRETED
    if not INTERPRETED:
        torch.testing.assert_close(block(x), want, rtol=0, atol=0)
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            attention_pool(x, block.context.conv_mask.weight)


def _reference(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor):
    """Pooled context and gradients of x and the weight, in float64 through plain autograd."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    out = pool_context(x64, w64, None)[0]
    gx, gw = torch.autograd.grad(out, [x64, w64], grad.double())
    return out, gx, gw


def _fast(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, **kw):
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    out = attention_pool(x, weight, **kw)
    gx, gw = torch.autograd.grad(out, [x, weight], grad.to(out.dtype))
    return out, gx, gw


def _inputs(b, c, h, w, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, h, w, generator=g), spread * torch.randn(1, c, 1, 1, generator=g),
            torch.randn(b, c, generator=g))


@interpreted
@pytest.mark.parametrize("shape,splits", [((1, 5, 3, 7), 1), ((3, 37, 5, 9), 2), ((2, 16, 6, 6), None)],
                         ids=["batch1-C5-N21", "batch3-C37-N45-2splits", "C16-N36-default"])
def test_forward_and_gradients_equal_the_reference(shape, splits):
    """Several 16-wide tiles over C and positions, the last one partial; the splits' partial sums merged."""
    x, weight, grad = _inputs(*shape)
    got = _fast(x, weight, grad, block_c=16, block_n=16, splits=splits)
    want = _reference(x, weight, grad)
    assert got[0].shape == (shape[0], shape[1]) and got[0].dtype == torch.float32
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-6)


@interpreted
def test_a_peaked_softmax_whose_max_arrives_late_is_rescaled_exactly():
    """Logits spanning hundreds: the running max grows chunk after chunk, and the later split holds the largest."""
    x, weight, grad = _inputs(2, 8, 4, 10, seed=1, spread=30.0)
    x = x + torch.linspace(0, 3, 40).reshape(1, 1, 4, 10) * weight.sign()
    got = _fast(x, weight, grad, block_c=8, block_n=8, splits=2)
    want = _reference(x, weight, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-5)


@interpreted
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_channels_last(dtype):
    """A channels_last half-precision input: its gradient keeps the layout and the dtype; bfloat16 tolerances."""
    x, weight, grad = _inputs(2, 24, 5, 6, seed=2)
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    out, gx, gw = _fast(x, weight, grad, block_c=16, block_n=16, splits=3)
    want = _reference(x, weight, grad)
    assert out.dtype == gx.dtype == dtype and gw.dtype == torch.float32
    assert gx.stride() == x.stride()
    for g, w in zip((out, gx, gw), want):
        torch.testing.assert_close(g.double(), w, rtol=2e-2, atol=2e-2)


@interpreted
@pytest.mark.parametrize("needs", ["x", "weight"])
def test_only_the_gradients_asked_for(needs):
    x, weight, grad = _inputs(2, 12, 3, 5, seed=3)
    x.requires_grad_(needs == "x")
    weight.requires_grad_(needs == "weight")
    out = attention_pool(x, weight, block_c=8, block_n=8)
    (got,) = torch.autograd.grad(out, [x if needs == "x" else weight], grad)
    want = _reference(x, weight, grad)[1 if needs == "x" else 2]
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


@interpreted
def test_the_block_dispatches_to_the_kernels_and_keeps_its_outputs_and_state():
    """set_fast_pool switches the block's attention context: the block's output and every gradient equal the
    reference block's, the kernels' node is in the graph, and the state_dict keys are the same."""
    torch.manual_seed(0)
    block = randomize_(GlobalContextBlock(20, ratio=1 / 4, fused=False), std=0.2)
    x = torch.randn(2, 20, 5, 7, requires_grad=True)
    grad = torch.randn(2, 20, 5, 7)

    def run():
        block.zero_grad(set_to_none=True)
        x.grad = None
        y = block(x)
        y.backward(grad)
        nodes, stack = [], [y.grad_fn]
        while stack:
            node = stack.pop()
            if node is not None:
                nodes.append(type(node).__name__)
                stack.extend(n for n, _ in node.next_functions)
        return y.detach(), nodes, [x.grad] + [p.grad for p in block.parameters()]

    y0, nodes0, g0 = run()
    keys = list(block.state_dict())
    assert set_fast_pool(block) == 1 and block.context.fast
    assert list(block.state_dict()) == keys
    y1, nodes1, g1 = run()
    assert "_AttentionPoolBackward" in nodes1 and "_AttentionPoolBackward" not in nodes0
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert set_fast_pool(block, False) == 1 and not block.context.fast
    # float64 (the kernels accumulate in float32) and empty inputs keep the reference
    assert fast_pool_available(x) and not fast_pool_available(x.double()) and not fast_pool_available(x[:0])


def test_avg_context_has_nothing_to_switch():
    assert set_fast_pool(GlobalContextBlock(16, context="avg", ratio=1 / 4)) == 0
    assert set_fast_pool(torch.nn.Sequential(AttentionContext(8), AttentionContext(8, fast=True))) == 2


@cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", [(1, 37, 7, 9), (16, 256, 14, 14), (4, 2048, 7, 7)])
def test_compiled_kernels_on_cuda_equal_the_reference(shape, layout, dtype, tol):
    """The kernels compiled for the GPU, the default tiles and splits, ResNet-50 stage sizes among them."""
    x, weight, grad = _inputs(*shape, seed=4)
    x = x.to(dtype).contiguous(memory_format=layout)
    out, gx, gw = _fast(x.cuda(), weight.cuda(), grad.cuda())
    want = _reference(x, weight, grad)
    assert gx.stride() == x.stride()
    for g, w in zip((out, gx, gw), want):
        torch.testing.assert_close(g.double().cpu(), w, rtol=tol, atol=tol)


@cuda
def test_the_block_on_cuda_trains_through_the_kernels_as_the_reference_does():
    torch.manual_seed(0)
    block = randomize_(GlobalContextBlock(64, ratio=1 / 4), std=0.2).cuda()
    x = torch.randn(4, 64, 14, 14, device="cuda").contiguous(memory_format=torch.channels_last).requires_grad_()
    grads = []
    for fast in (False, True):
        set_fast_pool(block, fast)
        block.zero_grad(set_to_none=True)
        x.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = block(x)
        y.float().square().mean().backward()
        grads.append([y.float()] + [x.grad] + [p.grad for p in block.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2)
