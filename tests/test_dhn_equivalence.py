"""The DHN task's fast paths compute what the straightforward code computed: losses and gradients agree.

``BlockHamiltonian`` reads out the last transformer block at the z token only (``_AttentionBlock.first_token``), the
attention uses a written-out softmax. The references below are the code these replaced, verbatim up to names: the
test runs a small model both ways from the same
weights, batch and random stream and compares the loss and every parameter's and code's gradient (relative
error of each tensor, in norm), in float64 to rounding and in float32 to 1e-5.
"""
import math

import pytest
import torch

from symgym.learn.tasks.dhn.block import BlockDHN, BlockHamiltonian, noise_level_index
from symgym.learn.tasks.dhn.models import _AttentionBlock, softmax

torch.set_num_threads(1)

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


# ----------------------------------------------------------------------------- the replaced code


def _reference_attention_block(block: _AttentionBlock, h: torch.Tensor) -> torch.Tensor:
    batch, tokens, width = h.shape
    q, k, v = block.qkv(block.norm1(h)).view(batch, tokens, 3, block.heads, -1).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    h = h + block.proj((attention @ v).transpose(1, 2).reshape(batch, tokens, width))
    return h + block.ff(block.norm2(h))


def _reference_block_hamiltonian(self: BlockHamiltonian, q, p, level_q, level_p, z, kind):
    size = q.shape[1]
    tokens_z = self.embed_z(z) + self.kind(kind)
    tokens_q = self.embed_q(q) + self.position_q[:size] + self.level(noise_level_index(level_q, self.n_levels))
    tokens_p = self.embed_p(p) + self.position_p[:size] + self.level(noise_level_index(level_p, self.n_levels))
    h = torch.cat([tokens_z[:, None], tokens_q, tokens_p], dim=1)
    for block in self.blocks:
        h = _reference_attention_block(block, h)
    return self.head(self.norm(h[:, 0]))[:, 0]


@pytest.fixture
def reference(monkeypatch):
    """A context switch: inside ``with reference():`` the models run the replaced code."""
    from contextlib import contextmanager

    @contextmanager
    def use():
        with monkeypatch.context() as patch:
            patch.setattr(BlockHamiltonian, "forward", _reference_block_hamiltonian)
            yield

    return use


# ----------------------------------------------------------------------------- comparisons


def _loss_and_gradients(model, blocks, codes, seed):
    model.zero_grad(set_to_none=True)
    z = codes.clone().requires_grad_(True)
    loss = model.training_loss(blocks, z, torch.Generator().manual_seed(seed))
    (loss + 1e-3 * (z**2).sum(-1).mean()).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return loss.detach(), z.grad, grads


def _assert_close(new, old, tolerance, what):
    assert (new is None) == (old is None), what
    if old is not None:
        error = float((new - old).norm() / old.norm().clamp_min(torch.finfo(old.dtype).tiny))
        assert error < tolerance, f"{what}: relative error {error:.2e} >= {tolerance:g}"


def _compare(model, blocks, codes, reference, tolerance):
    new = _loss_and_gradients(model, blocks, codes, seed=3)
    with reference():
        old = _loss_and_gradients(model, blocks, codes, seed=3)
    _assert_close(new[0], old[0], tolerance, "loss")
    _assert_close(new[1], old[1], tolerance, "code gradient")
    assert new[2].keys() == old[2].keys()
    for name in old[2]:
        _assert_close(new[2][name], old[2][name], tolerance, name)
    assert sum(g is not None for g in new[2].values()) > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dof, depth", [(1, 2), (2, 1), (1, 3)])
def test_block_dhn_loss_and_gradients_match_the_full_token_transformer(reference, dtype, dof, depth):
    torch.manual_seed(0)
    model = BlockDHN(2 * dof, 5, block_size=4, block_stride=2, width=16, depth=depth, heads=2, ff=24).to(dtype)
    blocks = torch.randn(12, 9, 2 * dof, dtype=dtype)
    codes = torch.randn(12, 5, dtype=dtype)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the loss draws its noise levels in the default dtype
    try:
        _compare(model, blocks, codes, reference, TOLERANCE[dtype])
    finally:
        torch.set_default_dtype(default)


def test_first_token_is_the_blocks_output_at_token_zero_and_softmax_matches_torch():
    torch.manual_seed(0)
    attention = _AttentionBlock(16, 4, 24).double()
    h = torch.randn(3, 7, 16, dtype=torch.float64)
    torch.testing.assert_close(attention.first_token(h), attention(h)[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(attention(h), _reference_attention_block(attention, h), rtol=1e-12, atol=1e-12)
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(softmax(x), torch.softmax(x, -1), rtol=1e-14, atol=1e-14)
    assert torch.autograd.gradgradcheck(softmax, (x,))
