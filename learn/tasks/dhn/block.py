"""The Denoising Hamiltonian Network operator (Deng et al., arXiv 2503.07596): model "dhn".

Notation: a trajectory of canonical states ``x_t = (q_t, p_t)`` is cut into *blocks* of
``S = block_size`` consecutive states; a *source* block starts at ``t`` and its *target*
block starts ``s = block_stride`` states later (the two overlap in ``S - s`` states when
``s < S``). Two learned scalar functions of a (q-block, p-block) pair define discrete
Hamiltonian maps between them, the block analogues of the type-2 / type-3 generating
functions (discrete right and left Hamiltonians) of a symplectic one-step map:

    H+(q_src, p_tgt; z):   q_tgt = q_src + dH+/dp_tgt,     p_src = p_tgt + dH+/dq_src
    H-(q_tgt, p_src; z):   q_src = q_tgt - dH-/dp_src,     p_tgt = p_src - dH-/dq_tgt

so H+ predicts the target positions and the source momenta, H- the source positions and the
target momenta. Each of H+ and H- is a small transformer over ``1 + 2S`` tokens (the latent
code ``z`` plus one token per state in the q-block and in the p-block, each with a position
embedding); the scalar is read from the ``z`` token.

Denoising. Every state token also carries a *noise level* ``a`` in ``[0, 1]``: the network
sees ``a x + (1 - a) eps`` (``eps`` standard normal) and an embedding of ``a`` quantised to
``n_levels`` bins; known states have ``a = 1``. Training (:meth:`BlockDHN.training_loss`)
adds to the clean "equations of motion" loss a denoising loss in which the unknown states of
each block get a random level ``a ~ U[0, 1)``. Inference (:meth:`BlockDHN.denoise_pair`) starts
the unknown states from pure noise and runs ``n_denoise + 1`` alternating H+ / H- passes at
levels ``0, 1/n, ..., 1``, each time re-feeding the current estimate.

Tasks. Forward simulation slides the pair along the trajectory: the source block and the
first ``S - s`` target states are known, the last ``s`` target states are generated.
Super-resolution is progressive: to fill a trajectory known every ``stride = 2^k`` steps, each
stage fills the midpoints between known neighbours with pairs of size-2 blocks
``src = (x_a, x_mid), tgt = (x_mid, x_b)`` (stride 1 at that stage's spacing), halving the
spacing until every state is filled. One network serves all of these: a *kind* embedding on
the ``z`` token tells it which pair it scores (forward block, or interpolation at spacing
1, 2, 4, ...). The per-trajectory codes ``z`` are learned auto-decoder style by the task.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from symgym.learn.tasks.dhn.models import _AttentionBlock

N_NOISE_LEVELS = 10


def noise_level_index(level: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Quantise noise levels in ``[0, 1]`` to embedding indices ``0 .. n_levels`` (1 -> n_levels, known)."""
    return (level * n_levels).floor().clamp(0, n_levels).long()


class BlockHamiltonian(nn.Module):
    """One scalar per (q-block, p-block) pair: a transformer over ``[z, q_1..q_S, p_1..p_S]``."""

    def __init__(self, dof: int, latent_dim: int, max_block: int, n_kinds: int, width: int, depth: int,
                 heads: int, ff: int, n_levels: int):
        super().__init__()
        self.n_levels = n_levels
        self.embed_q, self.embed_p = nn.Linear(dof, width), nn.Linear(dof, width)
        self.embed_z = nn.Linear(latent_dim, width)
        self.position_q = nn.Parameter(0.02 * torch.randn(max_block, width))
        self.position_p = nn.Parameter(0.02 * torch.randn(max_block, width))
        self.level = nn.Embedding(n_levels + 1, width)
        self.kind = nn.Embedding(n_kinds, width)
        self.blocks = nn.ModuleList(_AttentionBlock(width, heads, ff) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)

    def forward(self, q, p, level_q, level_p, z, kind):
        """``q, p (B, S, dof)``; ``level_q, level_p (B, S)`` in ``[0, 1]``; ``z (B, Z)``; ``kind (B,)``; -> ``(B,)``."""
        size = q.shape[1]
        tokens_z = self.embed_z(z) + self.kind(kind)
        tokens_q = self.embed_q(q) + self.position_q[:size] + self.level(noise_level_index(level_q, self.n_levels))
        tokens_p = self.embed_p(p) + self.position_p[:size] + self.level(noise_level_index(level_p, self.n_levels))
        h = torch.cat([tokens_z[:, None], tokens_q, tokens_p], dim=1)
        for block in self.blocks[:-1]:
            h = block(h)
        # only the z token is read out: the last block computes its output alone (same numbers, less work)
        out = self.blocks[-1].first_token(h) if len(self.blocks) else h[:, 0]
        return self.head(self.norm(out))[:, 0]


def corrupt(x: torch.Tensor, level: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``level x + (1 - level) eps`` per state; ``x (B, S, dof)``, ``level (B, S)``."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return level[..., None] * x + (1 - level[..., None]) * noise


class BlockDHN(nn.Module):
    """Block-wise discrete Hamiltonians H+ and H- with masked denoising (the paper's operator)."""

    def __init__(self, state_dim: int, latent_dim: int, block_size: int = 4, block_stride: int = 2,
                 width: int = 32, depth: int = 2, heads: int = 4, ff: int = 64, n_levels: int = N_NOISE_LEVELS,
                 max_interp_stride: int = 4, denoise_weight: float = 0.1, n_denoise: int = N_NOISE_LEVELS):
        super().__init__()
        if state_dim % 2:
            raise ValueError(f"state_dim must be even (q and p), got {state_dim}")
        if not 1 <= block_stride <= block_size:
            raise ValueError(f"block_stride must be in [1, block_size={block_size}], got {block_stride}")
        if max_interp_stride < 2 or max_interp_stride & (max_interp_stride - 1):
            raise ValueError(f"max_interp_stride must be a power of two >= 2, got {max_interp_stride}")
        self.state_dim, self.dof = state_dim, state_dim // 2
        self.block_size, self.block_stride = block_size, block_stride
        self.max_interp_stride, self.denoise_weight, self.n_denoise = max_interp_stride, denoise_weight, n_denoise
        self.interp_spacings = [2**k for k in range(int(math.log2(max_interp_stride)))]
        n_kinds = 1 + len(self.interp_spacings)  # kind 0: forward block; kind 1 + k: interpolation at spacing 2^k
        args = (self.dof, latent_dim, max(block_size, 2), n_kinds, width, depth, heads, ff, n_levels)
        self.h_plus, self.h_minus = BlockHamiltonian(*args), BlockHamiltonian(*args)

    @property
    def context_length(self) -> int:
        """Known states a forward rollout needs: one full source block."""
        return self.block_size

    @property
    def min_window(self) -> int:
        """Shortest training window: one forward pair and one interpolation pair at the largest spacing."""
        return max(self.block_size + self.block_stride, self.max_interp_stride + 1)

    # ------------------------------------------------------------------ the two discrete Hamiltonian maps

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., : self.dof], x[..., self.dof :]

    @staticmethod
    def _gradients(network, a, b, level_a, level_b, z, kind, create_graph):
        with torch.enable_grad():
            if not (create_graph and a.requires_grad):
                a = a.detach().requires_grad_(True)
            if not (create_graph and b.requires_grad):
                b = b.detach().requires_grad_(True)
            energy = network(a, b, level_a, level_b, z, kind)
            grad_a, grad_b = torch.autograd.grad(energy.sum(), (a, b), create_graph=create_graph)
        return grad_a, grad_b

    def plus(self, q_src, p_tgt, level_src, level_tgt, z, kind, create_graph=False):
        """H+ map: ``(q_src, p_tgt) -> (q_tgt, p_src)``."""
        d_q, d_p = self._gradients(self.h_plus, q_src, p_tgt, level_src, level_tgt, z, kind, create_graph)
        return q_src + d_p, p_tgt + d_q

    def minus(self, q_tgt, p_src, level_tgt, level_src, z, kind, create_graph=False):
        """H- map: ``(q_tgt, p_src) -> (q_src, p_tgt)``."""
        d_q, d_p = self._gradients(self.h_minus, q_tgt, p_src, level_tgt, level_src, z, kind, create_graph)
        return q_tgt - d_p, p_src - d_q

    # ------------------------------------------------------------------ training

    def pair_loss(self, src, tgt, known_src, known_tgt, z, kind, generator):
        """Equations-of-motion loss on the clean pair plus ``denoise_weight`` x the loss on a noised copy.

        ``src, tgt (B, S, D)``; ``known_* (B, S)`` bool (unknown states get a level ``U[0, 1)``);
        ``kind (B,)``. Both terms ask H+ and H- to reproduce every state of the pair.
        """
        batch = src.shape[0]
        ones = torch.ones(known_src.shape)
        level_src = torch.where(known_src, ones, torch.rand(known_src.shape, generator=generator))
        level_tgt = torch.where(known_tgt, ones, torch.rand(known_tgt.shape, generator=generator))
        src_in = torch.cat([src, corrupt(src, level_src, generator)])
        tgt_in = torch.cat([tgt, corrupt(tgt, level_tgt, generator)])
        level_src, level_tgt = torch.cat([ones, level_src]), torch.cat([ones, level_tgt])
        z2, kind2 = torch.cat([z, z]), torch.cat([kind, kind])
        (q_src_in, p_src_in), (q_tgt_in, p_tgt_in) = self._split(src_in), self._split(tgt_in)
        q_tgt, p_src = self.plus(q_src_in, p_tgt_in, level_src, level_tgt, z2, kind2, create_graph=True)
        q_src, p_tgt = self.minus(q_tgt_in, p_src_in, level_tgt, level_src, z2, kind2, create_graph=True)
        src2, tgt2 = torch.cat([src, src]), torch.cat([tgt, tgt])
        (q_src_true, p_src_true), (q_tgt_true, p_tgt_true) = self._split(src2), self._split(tgt2)
        error = sum(((a - b) ** 2).mean(dim=(1, 2)) for a, b in
                    [(q_tgt, q_tgt_true), (p_src, p_src_true), (q_src, q_src_true), (p_tgt, p_tgt_true)])
        return error[:batch].mean() + self.denoise_weight * error[batch:].mean()

    def training_loss(self, blocks: torch.Tensor, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Forward pairs (first ``S + s`` states of each window) plus interpolation pairs.

        Interpolation pairs ``(x_0, x_g), (x_g, x_2g)`` with the middle unknown; the spacing
        ``g`` cycles over ``interp_spacings`` across the batch, so every stage is trained.
        """
        batch, length, _ = blocks.shape
        if length < self.min_window:
            raise ValueError(f"training windows have {length} states; BlockDHN needs >= {self.min_window}")
        size, stride = self.block_size, self.block_stride
        known_src = torch.ones(batch, size, dtype=torch.bool)
        known_tgt = torch.arange(size).expand(batch, size) < size - stride
        forward = self.pair_loss(blocks[:, :size], blocks[:, stride : stride + size], known_src, known_tgt, z,
                                 torch.zeros(batch, dtype=torch.long), generator)
        which = torch.arange(batch) % len(self.interp_spacings)
        spacing = torch.tensor(self.interp_spacings)[which]
        rows = torch.arange(batch)
        first, middle, last = blocks[rows, 0], blocks[rows, spacing], blocks[rows, 2 * spacing]
        src, tgt = torch.stack([first, middle], 1), torch.stack([middle, last], 1)
        edge = torch.tensor([[True, False]]).expand(batch, 2)
        interp = self.pair_loss(src, tgt, edge, edge.flip(1), z, 1 + which, generator)
        return forward + interp

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def denoise_pair(self, src, tgt, known_src, known_tgt, z, kind, n_denoise=None, generator=None):
        """Fill the unknown states of a pair from pure noise by ``n_denoise + 1`` H+/H- passes.

        Levels rise ``0, 1/n, .., 1``; known states pass through unchanged. States shared by
        the two blocks (``src[s + j] == tgt[j]``) and unknown in both are averaged after every pass.
        """
        n = self.n_denoise if n_denoise is None else n_denoise
        stride, size = self.block_stride if kind_is_forward(kind) else 1, src.shape[1]
        src, tgt = src.clone(), tgt.clone()
        unknown_src, unknown_tgt = ~known_src[..., None], ~known_tgt[..., None]
        for i in range(n + 1):
            level = i / max(n, 1)
            level_src = torch.where(known_src, 1.0, level)
            level_tgt = torch.where(known_tgt, 1.0, level)
            q_src_in, p_src_in = self._split(corrupt(src, level_src, generator))
            q_tgt_in, p_tgt_in = self._split(corrupt(tgt, level_tgt, generator))
            q_tgt, p_src = self.plus(q_src_in, p_tgt_in, level_src, level_tgt, z, kind)
            src = torch.where(unknown_src, torch.cat([self._split(src)[0], p_src], -1), src)
            tgt = torch.where(unknown_tgt, torch.cat([q_tgt, self._split(tgt)[1]], -1), tgt)
            q_tgt_in, _ = self._split(corrupt(tgt, level_tgt, generator))
            _, p_src_in = self._split(corrupt(src, level_src, generator))
            q_src, p_tgt = self.minus(q_tgt_in, p_src_in, level_tgt, level_src, z, kind)
            src = torch.where(unknown_src, torch.cat([q_src, self._split(src)[1]], -1), src)
            tgt = torch.where(unknown_tgt, torch.cat([self._split(tgt)[0], p_tgt], -1), tgt)
            overlap = size - stride
            if overlap > 0:  # a shared state keeps its known value, else the mean of its two estimates
                a, b = src[:, stride:], tgt[:, :overlap]
                shared = torch.where(known_src[:, stride:, None], a,
                                     torch.where(known_tgt[:, :overlap, None], b, 0.5 * (a + b)))
                src = torch.cat([src[:, :stride], shared], 1)
                tgt = torch.cat([shared, tgt[:, overlap:]], 1)
        return src, tgt

    @torch.no_grad()
    def rollout(self, context: torch.Tensor, z: torch.Tensor, horizon: int, generator=None) -> torch.Tensor:
        """``horizon`` states after the last of ``context (n, c >= S, D)``; returns ``(n, horizon + 1, D)``."""
        size, stride = self.block_size, self.block_stride
        if context.shape[1] < size:
            raise ValueError(f"DHN rollout needs a context of >= block_size={size} states, got {context.shape[1]}")
        n = context.shape[0]
        states = list(context[:, -size:].unbind(1))
        known_src = torch.ones(n, size, dtype=torch.bool)
        known_tgt = torch.arange(size).expand(n, size) < size - stride
        kind = torch.zeros(n, dtype=torch.long)
        while len(states) < size + horizon:
            src = torch.stack(states[-size:], 1)
            tgt = torch.cat([src[:, stride:], torch.zeros(n, stride, self.state_dim)], 1)
            _, tgt = self.denoise_pair(src, tgt, known_src, known_tgt, z, kind, generator=generator)
            states += list(tgt[:, size - stride :].unbind(1))
        return torch.stack(states[size - 1 : size + horizon], 1)

    @torch.no_grad()
    def interpolate(self, sparse: torch.Tensor, z: torch.Tensor, stride: int, generator=None) -> torch.Tensor:
        """Progressive super-resolution of ``sparse (n, m, D)`` by ``stride``: ``(n, (m - 1) stride + 1, D)``."""
        if stride not in [2 * g for g in self.interp_spacings]:
            raise ValueError(f"interpolation stride {stride} must be a power of two in [2, {self.max_interp_stride}]")
        n, m, dim = sparse.shape
        dense = torch.zeros(n, (m - 1) * stride + 1, dim)
        dense[:, ::stride] = sparse
        gap = stride
        while gap > 1:
            half = gap // 2
            left, right = dense[:, 0:-1:gap], dense[:, gap::gap]
            k = left.shape[1]
            mid = torch.zeros_like(left)
            src = torch.stack([left, mid], 2).reshape(n * k, 2, dim)
            tgt = torch.stack([mid, right], 2).reshape(n * k, 2, dim)
            edge = torch.tensor([[True, False]]).expand(n * k, 2)
            kind = torch.full((n * k,), 1 + self.interp_spacings.index(half), dtype=torch.long)
            src, _ = self.denoise_pair(src, tgt, edge, edge.flip(1), z.repeat_interleave(k, 0), kind, generator=generator)
            dense[:, half::gap] = src[:, 1].reshape(n, k, dim)
            gap = half
        return dense


def kind_is_forward(kind: torch.Tensor) -> bool:
    """Whether a batch of pair kinds is the forward-simulation kind (all rows share one kind)."""
    return bool((kind == 0).all())
