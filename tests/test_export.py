"""The blocks trace: ONNX export checked with onnxruntime, torch.compile forward and backward."""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime  # a core dependency (gcnas-export checks its ONNX files with it): missing fails, never skips
import pytest
import torch

from gcnas.blocks import GlobalContextBlock, NonLocalBlock
from reference import randomize_

EXPORT_CASES = [
    ("gc", lambda: GlobalContextBlock(32, ratio=1 / 4)),
    ("se", lambda: GlobalContextBlock.from_preset("se", 32, ratio=1 / 4)),
    ("scale_add_bn", lambda: GlobalContextBlock(32, ratio=1 / 4, fusion=["scale", "add"], norm="batchnorm")),
    ("nl", lambda: NonLocalBlock(32)),
]


def _export(module, x, path, dynamo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=dynamo, input_names=["x"], output_names=["y"],
                          dynamic_axes=None if dynamo else {"x": {0: "batch"}, "y": {0: "batch"}})


@pytest.mark.parametrize("name,make", EXPORT_CASES, ids=[c[0] for c in EXPORT_CASES])
def test_onnx_export_matches_torch(name, make, tmp_path):
    module = randomize_(make()).eval()
    x = torch.randn(2, 32, 7, 6)
    _export(module, x, tmp_path / "m.onnx", dynamo=False)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (2, 5):
        xb = torch.randn(batch, 32, 7, 6)
        (got,) = session.run(None, {"x": xb.numpy()})
        with torch.no_grad():
            want = module(xb).numpy()
        assert np.abs(got - want).max() <= 1e-4


@pytest.mark.slow
def test_onnx_dynamo_export(tmp_path):
    module = randomize_(GlobalContextBlock(32, ratio=1 / 4, fusion=["scale", "add"])).eval()
    x = torch.randn(2, 32, 7, 6)
    _export(module, x, tmp_path / "m.onnx", dynamo=True)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        assert np.abs(got - module(x).numpy()).max() <= 1e-4


@pytest.mark.slow
def test_torch_compile_forward_and_backward():
    torch._dynamo.reset()
    block = randomize_(GlobalContextBlock(16, ratio=1 / 4, fusion=["scale", "add"]))
    compiled = torch.compile(block)
    x = torch.randn(2, 16, 5, 5)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_c, out_e = compiled(a), block(b)
    torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out_e)
    grads_c = torch.autograd.grad(out_c, [a, *block.parameters()], g)
    grads_e = torch.autograd.grad(out_e, [b, *block.parameters()], g)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-5)
