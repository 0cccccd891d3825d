"""NonLocalBlock against the NL paper's formulas; attention maps for the GCNet analysis."""
from __future__ import annotations

import pytest
import torch

from gcnas.blocks import NL_MODES, NonLocalBlock
from reference import randomize_, reference_nonlocal


@pytest.mark.parametrize("mode", NL_MODES)
def test_matches_reference_and_gradients(mode):
    torch.manual_seed(0)
    block = randomize_(NonLocalBlock(12, mode=mode))
    x = torch.randn(2, 12, 4, 5, requires_grad=True)
    out, attn = block(x, return_attention=True)
    ref, ref_attn = reference_nonlocal(block, x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(attn, ref_attn)
    assert attn.shape == (2, 20, 20)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, *block.parameters()], g)
    want = torch.autograd.grad(ref, [x, *block.parameters()], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", NL_MODES)
def test_identity_at_init_and_attention_rows(mode):
    block = NonLocalBlock(8, mode=mode)
    x = torch.randn(2, 8, 3, 3)
    out, attn = block(x, return_attention=True)
    assert torch.equal(out, x)
    if mode != "dot":
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 9))
    torch.testing.assert_close(block.attention(x), attn)


def test_gaussian_has_no_embeddings_and_ratio_sets_width():
    assert NonLocalBlock(16, mode="gaussian").theta is None
    assert NonLocalBlock(16, ratio=1 / 4).inner_channels == 4
    assert NonLocalBlock(16).inner_channels == 8


def test_attention_depends_on_query_at_random_weights():
    # The GCNet observation is about *trained* networks; an untrained NL block's maps do differ between queries,
    # which is what makes the analysis meaningful (gcnas.analysis compares both).
    block = randomize_(NonLocalBlock(8), std=1.0)
    attn = block.attention(torch.randn(1, 8, 4, 4))
    assert (attn[0, 0] - attn[0, 5]).abs().max() > 1e-3
