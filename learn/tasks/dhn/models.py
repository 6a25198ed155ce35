"""Models for the DHN task: the midpoint-DHN ablation and the two baselines.

The paper's operator (block-wise H+ / H- with a stride, model "dhn") lives in
``dhn_block.py``; this file holds the earlier single-H variant, kept as the ablation
"dhn-midpoint" (:class:`MidpointDHN`), and the baselines HNN and plain MLP.

All these models work on normalised canonical states ``x = (q, p)`` (shape ``(..., D)``,
``D = 2 dof``), take a per-trajectory latent code ``z`` (learned auto-decoder style by the
task, see ``learn/tasks/dhn/task.py``) and measure time in observation steps, so one model step
is one observed step.

Midpoint DHN (:class:`MidpointDHN`, the ablation "dhn-midpoint")
    A block of ``L`` consecutive states ``x_0 .. x_{L-1}`` is scored by one scalar
    ``H_theta(xbar_0, .., xbar_{L-2}; known, z)`` of the block's midpoints
    ``xbar_j = (x_j + x_{j+1}) / 2``: a small transformer over one token per midpoint plus
    one token for ``z``, plus a per-midpoint MLP term ``sum_j h(xbar_j, z)``. Its gradients
    define every update inside the block:

        x_{j+1} - x_j = J dH/dxbar_j,          J = [[0, I], [-I, 0]]

    With only the per-midpoint term this is exactly the implicit midpoint rule for ``h`` (a
    symplectic integrator); the transformer part of ``H`` lets the step between
    ``j`` and ``j+1`` depend on the other states of the block (non-local in time). The
    relation is implicit (``xbar`` contains the unknowns), so it is solved the way a
    denoiser is used: unknown states enter as a corrupted guess, the increments are
    summed from the nearest *known* states on either side, and the result is fed back a few
    times. Training asks for the clean block from masked/noised inputs and from the
    model's own previous pass (see :meth:`MidpointDHN.training_loss`).

HNN (:class:`HNN`)
    ``H_phi(x, z)`` an MLP; the symplectic gradient ``J grad H`` is integrated with RK4 over
    one observation step.

Plain (:class:`PlainMLP`)
    A residual MLP step ``x' = x + f(x, z)``: no physics, a size-matched baseline.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def symplectic(grad: torch.Tensor) -> torch.Tensor:
    """``J grad`` for ``grad = (dH/dq, dH/dp)``: returns ``(dH/dp, -dH/dq)``."""
    dof = grad.shape[-1] // 2
    return torch.cat([grad[..., dof:], -grad[..., :dof]], dim=-1)


def mlp(n_in: int, n_out: int, hidden: int, depth: int) -> nn.Sequential:
    """MLP with smooth (SiLU) activations: Hamiltonians are differentiated twice in training."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def anchored_cumsum(states: torch.Tensor, increments: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Rebuild a block from its increments, anchored at the nearest known states.

    ``states (B, L, D)``, ``increments (B, L-1, D)``, ``known (B, L)`` bool with ``known[:, 0]``
    true. Known states are returned unchanged. Unknown state ``k`` with known neighbours
    ``a < k < b`` is the distance-weighted blend of ``x_a + sum_{j=a}^{k-1} u_j`` (forward
    from ``a``) and ``x_b - sum_{j=k}^{b-1} u_j`` (backward from ``b``), so both ends of a
    gap constrain it; after the last known state only the forward sum exists.
    """
    if not bool(known[:, 0].all()):
        raise ValueError("the first state of every block must be known (it anchors the block)")
    batch, length, _ = states.shape
    csum = torch.cat([torch.zeros_like(increments[:, :1]), increments.cumsum(1)], dim=1)  # C_k = sum_{j<k} u_j
    index = torch.arange(length, device=states.device).expand(batch, length)
    left = torch.where(known, index, torch.zeros_like(index)).cummax(dim=1).values
    right = torch.where(known, index, torch.full_like(index, length)).flip(1).cummin(dim=1).values.flip(1)
    has_right = right < length
    right = torch.where(has_right, right, left)

    def at(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return values.gather(1, where[..., None].expand_as(values))

    forward = at(states, left) + csum - at(csum, left)
    backward = at(states, right) - (at(csum, right) - csum)
    weight = ((index - left).to(states.dtype) / (right - left).clamp_min(1).to(states.dtype))[..., None]
    return (1 - weight) * forward + weight * backward


class _Softmax(torch.autograd.Function):
    """``torch.softmax(x, -1)`` for short rows, written out (twice differentiable).

    Over the attention rows here (5 to 9 tokens) torch's CPU softmax kernel and its backward are several times
    slower than these few elementwise operations; the numbers agree to rounding. The backward
    ``y (g - sum(g y))`` is made of differentiable operations on the saved output, so the double backward of
    training goes through it.
    """

    @staticmethod
    def forward(ctx, x):
        e = (x - x.amax(-1, keepdim=True)).exp_()
        y = e.div_(e.sum(-1, keepdim=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(-1, keepdim=True))


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension (:class:`_Softmax`)."""
    return _Softmax.apply(x)


class _AttentionBlock(nn.Module):
    """Pre-norm transformer block written out (smooth, twice differentiable on any backend)."""

    def __init__(self, width: int, heads: int, ff: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.ff = nn.Sequential(nn.Linear(width, ff), nn.SiLU(), nn.Linear(ff, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(batch, tokens, 3, self.heads, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, T, width / heads)
        attention = softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]))
        h = h + self.proj((attention @ v).transpose(1, 2).reshape(batch, tokens, width))
        return h + self.ff(self.norm2(h))

    def first_token(self, h: torch.Tensor) -> torch.Tensor:
        """``forward(h)[:, 0]``, shape ``(B, width)``, without computing the other tokens' outputs.

        The same arithmetic restricted to what token 0's output depends on: its query, every token's key and
        value, and token 0's projection and feed-forward. A network read out at one token uses it for its last
        block: about a third of the work (and of its first and second derivatives) is saved at 9 tokens.
        """
        batch, tokens, width = h.shape
        normed = self.norm1(h)
        weight, bias = self.qkv.weight, self.qkv.bias
        q = nn.functional.linear(normed[:, 0], weight[:width], bias[:width]).view(batch, self.heads, 1, -1)
        kv = nn.functional.linear(normed, weight[width:], bias[width:])
        k, v = kv.view(batch, tokens, 2, self.heads, -1).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, width / heads)
        # one query per head: broadcast products and sums (batched 1-row matmuls, and their derivatives, are slow)
        attention = softmax((q * k).sum(-1) / math.sqrt(q.shape[-1]))  # (B, heads, T)
        first = h[:, 0] + self.proj((attention[..., None] * v).sum(-2).reshape(batch, width))
        return first + self.ff(self.norm2(first))


class MidpointDHN(nn.Module):
    """Ablation: one Hamiltonian over block midpoints (implicit-midpoint steps) plus a transformer term."""

    def __init__(
        self,
        state_dim: int,
        latent_dim: int,
        block_size: int = 9,
        width: int = 48,
        depth: int = 2,
        heads: int = 4,
        ff: int = 64,
        local_hidden: int = 64,
    ):
        super().__init__()
        if state_dim % 2 or block_size < 2:
            raise ValueError(f"need an even state_dim and block_size >= 2, got {state_dim}, {block_size}")
        self.state_dim, self.block_size = state_dim, block_size
        # a midpoint token sees its state and whether each of its two endpoints is observed
        self.embed = nn.Linear(state_dim + 2, width)
        self.position = nn.Parameter(0.02 * torch.randn(block_size - 1, width))
        self.embed_latent = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(_AttentionBlock(width, heads, ff) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)
        # the block-wide term starts at zero, so training begins from the implicit midpoint rule of
        # the local term (which fits a one-step map quickly) and adds non-local corrections only
        # where they lower the loss; a randomly initialised transformer made the increments noisy
        # and slowed the fit (measured: 0.7% vs 0.4% relative increment error after 1000 steps)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # a per-midpoint term: alone it would make the update the implicit midpoint rule of a
        # learned H(x, z); the transformer adds the block-wide (non-local) part on top
        self.local = mlp(state_dim + latent_dim, 1, local_hidden, 2)

    def energy_terms(self, midpoints: torch.Tensor, known: torch.Tensor, z: torch.Tensor):
        """The block-wide (transformer) and the per-midpoint (local) parts of ``H``, each ``(B,)``."""
        flags = torch.stack([known[:, :-1], known[:, 1:]], dim=-1).to(midpoints.dtype)
        tokens = self.embed(torch.cat([midpoints, flags], -1)) + self.position
        h = torch.cat([self.embed_latent(z)[:, None], tokens], dim=1)
        for block in self.blocks:
            h = block(h)
        local = self.local(torch.cat([midpoints, z[:, None].expand(-1, midpoints.shape[1], -1)], -1))
        return self.head(self.norm(h[:, 1:])).sum(dim=(1, 2)), local.sum(dim=(1, 2))

    def hamiltonian(self, midpoints: torch.Tensor, known: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Block Hamiltonian, shape ``(B,)``; ``midpoints (B, L-1, D)``, ``known (B, L)``, ``z (B, Z)``."""
        block, local = self.energy_terms(midpoints, known, z)
        return block + local

    def increments(
        self, states: torch.Tensor, known: torch.Tensor, z: torch.Tensor, create_graph: bool = False, split: bool = False
    ):
        """``J dH/dxbar_j`` for every pair of neighbours in the block, shape ``(B, L-1, D)``.

        With ``create_graph`` the result stays differentiable in the parameters *and* in
        ``states``, so several passes can be unrolled and trained end to end. With ``split``
        it also returns the block-wide (non-local) term's share of the increments.
        """
        if states.shape[1:] != (self.block_size, self.state_dim):
            raise ValueError(f"block has shape {tuple(states.shape[1:])}, expected {(self.block_size, self.state_dim)}")
        with torch.enable_grad():
            midpoints = 0.5 * (states[:, 1:] + states[:, :-1])
            if not (create_graph and midpoints.requires_grad):
                midpoints = midpoints.detach().requires_grad_(True)
            block, local = self.energy_terms(midpoints, known, z)
            (grad,) = torch.autograd.grad((block + local).sum(), midpoints, create_graph=create_graph or split)
            if not split:
                return symplectic(grad)
            (grad_block,) = torch.autograd.grad(block.sum(), midpoints, create_graph=create_graph)
        return symplectic(grad), symplectic(grad_block)

    def denoise(self, states: torch.Tensor, known: torch.Tensor, z: torch.Tensor, create_graph: bool = False):
        """One denoising pass: the block implied by the Hamiltonian gradients at ``states``."""
        return anchored_cumsum(states, self.increments(states, known, z, create_graph), known)

    def solve(self, states: torch.Tensor, known: torch.Tensor, z: torch.Tensor, n_iter: int = 8) -> torch.Tensor:
        """Fill the unknown states of a block by ``n_iter`` denoising passes from the guess in ``states``.

        The passes are a fixed-point (Picard) iteration of the implicit relation; each pass
        shrinks the error by roughly ``gap * |df/dx|`` (gap = unknown run length in steps),
        so long gaps need more passes than short ones.
        """
        for _ in range(n_iter):
            states = self.denoise(states, known, z).detach()
        return states

    def training_loss(
        self,
        blocks: torch.Tensor,
        z: torch.Tensor,
        generator: torch.Generator,
        denoising_weight: float = 0.25,
        block_weight: float = 1.0,
    ) -> torch.Tensor:
        """Denoising loss on clean ``blocks (B, L, D)``, in the same units as the baselines' loss.

        Two terms, both needed:

        * *consistency*: the clean block must be a fixed point, i.e. at the true midpoints the
          symplectic gradients reproduce every observed increment ``x_{j+1} - x_j``. This is what
          the inference-time iteration converges to, so it decides rollout accuracy and energy
          behaviour; it is a plain regression and trains fast. It is measured as the error of
          states rebuilt forward from ``x_0`` so that its scale matches a rollout loss.
        * *denoising*: from a masked block whose unknown states are the inference guess or the
          truth plus noise, two unrolled passes (gradients through both) must recover the
          clean block (small noise levels: large ones, or the crude inference guess, pulled the
          gradient field away from the consistent one and left the fit at ~3% increment error).

        Plus ``block_weight`` times the mean square of the block-wide term's increments, which
        keeps the dynamics in the local, symplectic part (see the comment below).
        """
        known = random_masks(blocks.shape[0], self.block_size, generator, blocks.device)
        target = blocks[:, 1:] - blocks[:, :-1]
        increments, block_part = self.increments(blocks, known, z, create_graph=True, split=True)
        # errors of the rebuilt states x_0 + sum_{j<k} u_j, like the baselines' rollout loss
        consistency = ((increments - target).cumsum(1) ** 2).mean()
        # keep the dynamics in the local (symplectic) term: left free, the transformer carried
        # almost all of the increments, and as its gradients depend on the mask and on the
        # other states, the rollout step was no longer symplectic and energy drifted
        block_penalty = (block_part**2).mean()

        level = torch.exp(torch.empty(blocks.shape[0], 1, 1).uniform_(math.log(0.003), math.log(0.05), generator=generator))
        corrupted = torch.where(known[..., None], blocks, blocks + level * torch.randn(blocks.shape, generator=generator))
        unknown = ~known
        first = self.denoise(corrupted, known, z, create_graph=True)
        second = self.denoise(first, known, z, create_graph=True)
        denoising = 0.5 * (_masked_mse(first, blocks, unknown) + _masked_mse(second, blocks, unknown))
        return consistency + denoising_weight * denoising + block_weight * block_penalty


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weight = mask[..., None].to(pred.dtype)
    return ((pred - target) ** 2 * weight).sum() / (weight.sum() * pred.shape[-1]).clamp_min(1.0)


def random_masks(batch: int, length: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """Known-state masks ``(batch, length)``: a third each forward-prefix, sub-sampled and random."""
    kind = torch.randint(0, 3, (batch, 1), generator=generator)
    index = torch.arange(length).expand(batch, length)
    prefix = index < torch.randint(1, length, (batch, 1), generator=generator)
    # sub-sampling strides that divide length - 1, so both ends are known
    strides = torch.tensor([s for s in range(2, length) if (length - 1) % s == 0] or [length - 1])
    stride = strides[torch.randint(0, len(strides), (batch, 1), generator=generator)]
    subsampled = index % stride == 0
    random = torch.rand(batch, length, generator=generator) < 0.5
    known = torch.where(kind == 0, prefix, torch.where(kind == 1, subsampled, random))
    known[:, 0] = True
    return known.to(device)


def initial_guess(states: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Linear interpolation between known states; the last known state held after it."""
    batch, length, _ = states.shape
    index = torch.arange(length).expand(batch, length)
    left = torch.where(known, index, torch.zeros_like(index)).cummax(1).values
    big = torch.full_like(index, length)
    right = torch.where(known, index, big).flip(1).cummin(1).values.flip(1)
    has_right = right < length
    right = torch.where(has_right, right, left)
    span = (right - left).clamp_min(1).to(states.dtype)
    weight = ((index - left).to(states.dtype) / span)[..., None]
    x_left = states.gather(1, left[..., None].expand_as(states))
    x_right = states.gather(1, right[..., None].expand_as(states))
    return (1 - weight) * x_left + weight * x_right


class HNN(nn.Module):
    """Hamiltonian Neural Network ``H(x, z)``; one step = RK4 over one observation step."""

    def __init__(self, state_dim: int, latent_dim: int, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.state_dim = state_dim
        self.net = mlp(state_dim + latent_dim, 1, hidden, depth)

    def vector_field(self, x: torch.Tensor, z: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            energy = self.net(torch.cat([x, z], -1)).sum()
            (grad,) = torch.autograd.grad(energy, x, create_graph=create_graph)
        return symplectic(grad)

    def step(self, x: torch.Tensor, z: torch.Tensor, h: float = 1.0, create_graph: bool = False) -> torch.Tensor:
        f = lambda y: self.vector_field(y, z, create_graph)  # noqa: E731
        k1 = f(x)
        k2 = f(x + 0.5 * h * k1)
        k3 = f(x + 0.5 * h * k2)
        k4 = f(x + h * k3)
        out = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return out if create_graph else out.detach()

    def training_loss(self, blocks, z, generator=None):
        return _rollout_loss(self, blocks, z)


class PlainMLP(nn.Module):
    """Non-physical baseline: a residual MLP step ``x' = x + f(x, z)``."""

    def __init__(self, state_dim: int, latent_dim: int, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.state_dim = state_dim
        self.net = mlp(state_dim + latent_dim, state_dim, hidden, depth)

    def step(self, x: torch.Tensor, z: torch.Tensor, h: float = 1.0, create_graph: bool = False) -> torch.Tensor:
        if h != 1.0:
            raise ValueError(f"the plain network only steps forward by one observation step, got h={h}")
        return x + self.net(torch.cat([x, z], -1))

    def training_loss(self, blocks, z, generator=None):
        return _rollout_loss(self, blocks, z)


def _rollout_loss(model: nn.Module, blocks: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Baselines see the same blocks as DHN: roll out from the first state, match all the others."""
    x, loss = blocks[:, 0], 0.0
    for k in range(1, blocks.shape[1]):
        x = model.step(x, z, create_graph=True)
        loss = loss + ((x - blocks[:, k]) ** 2).mean()
    return loss / (blocks.shape[1] - 1)


@torch.no_grad()
def rollout(model: nn.Module, context: torch.Tensor, z: torch.Tensor, horizon: int, n_iter: int = 8) -> torch.Tensor:
    """Predict ``horizon`` steps after the last context state; returns ``(n, horizon + 1, D)``.

    HNN and the plain network step from the last context state. DHN slides a block whose
    first ``context.shape[1]`` states are known and fills the rest, then repeats from the
    newest states. Models with their own ``rollout`` method (the block DHN) use it.
    """
    if hasattr(model, "rollout"):
        return model.rollout(context, z, horizon)
    if isinstance(model, MidpointDHN):
        c, length = context.shape[1], model.block_size
        if not 1 <= c < length:
            raise ValueError(f"DHN rollout needs 1 <= context ({c}) < block_size ({length})")
        known = torch.zeros(context.shape[0], length, dtype=torch.bool)
        known[:, :c] = True
        states = [context[:, k] for k in range(c)]
        while len(states) < horizon + c:
            block = torch.stack(states[-c:] + [states[-1]] * (length - c), dim=1)
            block = model.solve(block, known, z, n_iter)
            states += list(block[:, c:].unbind(1))
        return torch.stack(states[c - 1 : c + horizon], dim=1)
    x, out = context[:, -1], [context[:, -1]]
    for _ in range(horizon):
        x = model.step(x, z)
        out.append(x)
    return torch.stack(out, dim=1)


@torch.no_grad()
def interpolate(model: nn.Module, sparse: torch.Tensor, z: torch.Tensor, stride: int, n_iter: int = 8) -> torch.Tensor:
    """Fill ``stride - 1`` states between consecutive rows of ``sparse (n, S, D)``.

    Returns ``(n, (S - 1) * stride + 1, D)``. DHN solves blocks whose every ``stride``-th
    state is known. HNN blends a forward run from the left state with a backward run
    (time-reversed RK4) from the right one; the plain network can only run forward.
    """
    if hasattr(model, "interpolate"):
        return model.interpolate(sparse, z, stride)
    n, segments, dim = sparse.shape[0], sparse.shape[1] - 1, sparse.shape[2]
    if isinstance(model, MidpointDHN):
        per_block = (model.block_size - 1) // stride
        if per_block < 1 or (model.block_size - 1) % stride:
            raise ValueError(f"stride {stride} must divide block_size - 1 = {model.block_size - 1}")
        known = torch.zeros(n, model.block_size, dtype=torch.bool)
        known[:, ::stride] = True
        pieces, start = [sparse[:, :1]], 0
        while start < segments:
            # the last block may overhang the data: pad with copies of the final known state
            rows = [sparse[:, min(start + i, segments)] for i in range(per_block + 1)]
            block = torch.zeros(n, model.block_size, dim)
            block[:, ::stride] = torch.stack(rows, 1)
            block = model.solve(initial_guess(block, known), known, z, n_iter)
            take = min(per_block, segments - start) * stride
            pieces.append(block[:, 1 : take + 1])
            start += per_block
        return torch.cat(pieces, 1)
    out = [sparse[:, :1]]
    weight = torch.arange(1, stride + 1, dtype=sparse.dtype) / stride
    for s in range(segments):
        forward, x = [], sparse[:, s]
        for _ in range(stride):
            x = model.step(x, z)
            forward.append(x)
        forward = torch.stack(forward, 1)
        if isinstance(model, HNN):
            backward, x = [sparse[:, s + 1]], sparse[:, s + 1]
            for _ in range(stride - 1):
                x = model.step(x, z, h=-1.0)
                backward.append(x)
            backward = torch.stack(backward[::-1], 1)
            forward = (1 - weight[:, None]) * forward + weight[:, None] * backward
        # the right end is observed: keep it as observed whatever the model predicted for it
        out.append(torch.cat([forward[:, :-1], sparse[:, s + 1 : s + 2]], 1))
    return torch.cat(out, 1)
