"""Relaxed (approximately equivariant) layers: group-element-dependent weights that start equivariant.

For a finite group G with representations ``rho_in``/``rho_out``, an exactly equivariant weight is the
group average (Reynolds projection) of a free kernel ``K``: ``W = 1/|G| sum_g rho_out(g) K rho_in(g)^T``.
A *relaxed* layer gives every group element its own coefficient per kernel, as in relaxed group
convolutions (Wang, Walters & Yu, 2022):

    W = 1/|G| sum_l sum_g alpha_l(g) rho_out(g) K_l rho_in(g)^T

With ``alpha_l(g)`` constant in ``g`` (the initialisation) W is exactly equivariant; when the
coefficients drift apart W can represent a broken symmetry (with |G| kernels, any matrix). The
regulariser :meth:`RelaxedLinear.equivariance_penalty` is ``sum_l sum_g (alpha_l(g) - mean_g alpha_l)^2``;
with ``penalty > 0`` its gradient (times ``penalty``) is added to every backward pass through the layer,
which is the same as adding ``penalty / 2 * equivariance_penalty()`` to the loss, and works inside
training loops we do not own (SB3's SAC).

:class:`RelaxedGroupConv2d` is the same construction for planar convolutions, where ``g`` also
rotates/reflects the kernel's spatial grid (exact for subgroups of D4).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from symgym.equivariance.escnn_nets import ExpansionCache
from symgym.equivariance.groups import PlanarGroup
from symgym.equivariance.representations import Representation, regular


class _PenaltyGradient(torch.autograd.Function):
    """Identity forward; backward adds ``strength * (alpha - mean over group elements)``."""

    @staticmethod
    def forward(ctx, alpha: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.save_for_backward(alpha)
        ctx.strength = strength
        return alpha.view_as(alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (alpha,) = ctx.saved_tensors
        return grad + ctx.strength * (alpha - alpha.mean(dim=-1, keepdim=True)), None


def _signed_permutation(m: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(index, sign) with ``m @ x == sign * x[index]``, or None if ``m`` is not a signed permutation."""
    nz = np.abs(m) > 1e-9
    if not (nz.sum(axis=1) == 1).all() or not (nz.sum(axis=0) == 1).all():
        return None
    index = nz.argmax(axis=1)
    values = m[np.arange(len(m)), index]
    if not np.allclose(np.abs(values), 1.0, atol=1e-9):
        return None
    return index, np.sign(values)


class _RelaxedBase(nn.Module):
    """Shared machinery: per-element coefficients and the rho_out(g) . K . rho_in(g)^T action."""

    def __init__(self, in_rep: Representation, out_rep: Representation, num_kernels: int, penalty: float):
        super().__init__()
        group = in_rep.group
        if group != out_rep.group:
            raise ValueError(f"in_rep is over {group.name} but out_rep is over {out_rep.group.name}")
        if not isinstance(group, PlanarGroup) or not group.finite:
            raise ValueError(f"relaxed layers need a finite planar group (Cn or Dn), got {group!r}")
        if num_kernels < 1:
            raise ValueError(f"num_kernels must be >= 1, got {num_kernels}")
        if penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {penalty}")
        self.group, self.in_rep, self.out_rep = group, in_rep, out_rep
        self.elements = group.elements()
        self.num_kernels, self.penalty = int(num_kernels), float(penalty)
        rho_out = np.stack([out_rep(g) for g in self.elements])
        rho_in = np.stack([in_rep(g) for g in self.elements])
        self.register_buffer("rho_out", torch.tensor(rho_out, dtype=torch.float32), persistent=False)
        self.register_buffer("rho_in", torch.tensor(rho_in, dtype=torch.float32), persistent=False)
        perms_out = [_signed_permutation(m) for m in rho_out]
        perms_in = [_signed_permutation(m) for m in rho_in]
        # Signed permutations (regular, standard, trivial and sign reps of C4/D4) let us replace |G| dense
        # matrix products by an index gather, which keeps relaxed layers about as fast as plain ones.
        self.fast = all(p is not None for p in perms_out + perms_in)
        if self.fast:
            self.register_buffer("idx_out", torch.tensor(np.stack([p[0] for p in perms_out])), persistent=False)
            self.register_buffer("idx_in", torch.tensor(np.stack([p[0] for p in perms_in])), persistent=False)
            signs = np.einsum("go,gi->goi", np.stack([p[1] for p in perms_out]), np.stack([p[1] for p in perms_in]))
            self.register_buffer("signs", torch.tensor(signs, dtype=torch.float32), persistent=False)
        # Constant over group elements = exactly equivariant at initialisation.
        self.alpha = nn.Parameter(torch.ones(self.num_kernels, len(self.elements)))
        self._flat: torch.Tensor | None = None
        # (weight, bias) mixed once per parameter update, shared by the forwards of one gradient step
        self._expansions = ExpansionCache()

    def expanded(self) -> list:
        """``[weight, bias]`` for the current parameters, through the layer's :class:`ExpansionCache`."""
        params = [self.kernels, self.alpha, self.bias_kernel, self.bias_alpha]
        return self._expansions.get(params, lambda: [self.weight(), self.bias()])

    # -- the group action on a stack of kernels (L, out, in, *spatial) -> (L, G, out, in, *spatial) --
    def _spatial(self, k: torch.Tensor) -> torch.Tensor:
        """Stack the kernel transformed spatially by each element: (..., *spatial) -> (G, ..., *spatial)."""
        return k.unsqueeze(0).expand(len(self.elements), *k.shape)

    def _orbit(self, kernels: torch.Tensor) -> torch.Tensor:
        k = self._spatial(kernels).transpose(0, 1)            # (L, G, out, in, *spatial)
        extra = k.shape[4:]
        if self.fast:
            L, G, o, i = k.shape[:4]
            rows = self.idx_out.view(1, G, o, 1, *([1] * len(extra))).expand(L, G, o, i, *extra)
            k = torch.gather(k, 2, rows)
            cols = self.idx_in.view(1, G, 1, i, *([1] * len(extra))).expand(L, G, o, i, *extra)
            k = torch.gather(k, 3, cols)
            return k * self.signs.view(1, G, o, i, *([1] * len(extra))).to(k.dtype)
        rho_out, rho_in = self.rho_out.to(k.dtype), self.rho_in.to(k.dtype)
        return torch.einsum("goa,lgab...,gib->lgoi...", rho_out, k, rho_in)

    def _coefficients(self) -> torch.Tensor:
        if self.penalty > 0 and self.alpha.requires_grad and torch.is_grad_enabled():
            return _PenaltyGradient.apply(self.alpha, self.penalty)
        return self.alpha

    def _combine(self, kernels: torch.Tensor) -> torch.Tensor:
        alpha = self._coefficients().to(kernels.dtype)
        if self.fast and kernels.ndim == 3:
            # Linear layers: the orbit of every kernel by one index_select through a precomputed flat index
            # (the |G| signed permutations), then the coefficients contract it in one matmul: 3 ops, not |G|.
            L, o, i = kernels.shape
            G = len(self.elements)
            orbit = kernels.reshape(L, o * i).index_select(1, self._flat_index(o, i).reshape(-1))
            orbit = orbit * (self.signs.reshape(1, G * o * i) / G).to(kernels.dtype)
            return (alpha.reshape(1, L * G) @ orbit.reshape(L * G, o * i)).view(o, i)
        # Mix the kernels per element first (cheap), then act with each element once: (G, out, in, ...).
        mixed = torch.einsum("lg,l...->g...", alpha, kernels)
        orbit = self._orbit_per_element(mixed)
        return orbit.sum(dim=0) / len(self.elements)

    def _flat_index(self, o: int, i: int) -> torch.Tensor:
        if getattr(self, "_flat", None) is None or self._flat.device != self.idx_out.device:
            self._flat = (self.idx_out[:, :, None] * i + self.idx_in[:, None, :]).reshape(len(self.elements), o * i)
        return self._flat

    def _orbit_per_element(self, mixed: torch.Tensor) -> torch.Tensor:
        """Element g applied to the g-th kernel of ``mixed`` (G, out, in, *spatial)."""
        spatial = torch.stack([self._spatial(mixed[gi].unsqueeze(0))[gi, 0] for gi in range(len(self.elements))])
        return torch.einsum("goa,gab...,gib->goi...", self.rho_out.to(mixed.dtype), spatial,
                            self.rho_in.to(mixed.dtype))

    def _rescale_at_init(self, kernels: nn.Parameter, fan_in: int) -> None:
        # Averaging over the group shrinks a random kernel; rescale so the initial weight has the usual
        # 1/sqrt(fan_in) scale whatever the representations are.
        with torch.no_grad():
            w = self._combine(kernels)
            std = float(w.std()) if w.numel() > 1 else float(w.abs().mean())
            if std > 1e-12:
                kernels.mul_(1.0 / (std * np.sqrt(fan_in)))

    def _init_bias(self, bias: bool) -> None:
        # A bias is relaxed like a weight: b = 1/|G| sum_g beta(g) rho_out(g) b0, invariant while beta is constant.
        if bias:
            self.bias_kernel = nn.Parameter(torch.zeros(self.out_rep.size))
            self.bias_alpha = nn.Parameter(torch.ones(len(self.elements)))
        else:
            self.bias_kernel, self.bias_alpha = None, None

    def bias(self) -> torch.Tensor | None:
        if self.bias_kernel is None:
            return None
        beta = self.bias_alpha
        if self.penalty > 0 and beta.requires_grad and torch.is_grad_enabled():
            beta = _PenaltyGradient.apply(beta, self.penalty)
        orbit = torch.einsum("goa,a->go", self.rho_out.to(self.bias_kernel.dtype), self.bias_kernel)
        return (beta.to(orbit.dtype)[:, None] * orbit).mean(dim=0)

    def equivariance_penalty(self) -> torch.Tensor:
        """``sum_l sum_g (alpha_l(g) - mean_g alpha_l)^2`` (+ the same for the bias): zero exactly when the
        layer is equivariant."""
        p = ((self.alpha - self.alpha.mean(dim=-1, keepdim=True)) ** 2).sum()
        if self.bias_alpha is not None:
            p = p + ((self.bias_alpha - self.bias_alpha.mean()) ** 2).sum()
        return p

    def transform_weight(self, g_index: int, w: torch.Tensor) -> torch.Tensor:
        """``rho_out(g) W(g^-1 .) rho_in(g)^T`` for one element: equals ``W`` iff W commutes with g."""
        stacked = self._orbit(w.unsqueeze(0))[0]
        return stacked[g_index]

    @torch.no_grad()
    def weight_equivariance_error(self) -> float:
        """max over g of ``|g.W - W| / |W|`` for the current weight (0 for an equivariant layer)."""
        w = self.weight()
        norm = float(w.norm()) + 1e-12
        return max(float((self.transform_weight(i, w) - w).norm()) / norm for i in range(len(self.elements)))

    @torch.no_grad()
    def drift_parts(self) -> tuple[float, float]:
        """(squared norm of the weight's non-equivariant part, squared norm of the weight).

        The equivariant part is the Reynolds projection ``1/|G| sum_g g.W`` (the orthogonal projection onto
        equivariant maps, since every ``g.`` here is orthogonal); the rest is what the relaxation learned.
        """
        w = self.weight()
        projected = self._orbit(w.unsqueeze(0))[0].mean(dim=0)
        return float(((w - projected) ** 2).sum()), float((w ** 2).sum())

    def freeze_relaxation(self) -> None:
        """Fix the per-element coefficients where they are (constant at initialisation: exactly equivariant
        for good); the kernels stay trainable. Optimisers skip parameters without gradients."""
        self.alpha.requires_grad_(False)
        if self.bias_alpha is not None:
            self.bias_alpha.requires_grad_(False)

    def weight(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class RelaxedLinear(_RelaxedBase):
    """Linear map ``in_rep -> out_rep`` with group-element-dependent weights, initialised equivariant.

    Args:
        in_rep, out_rep: representations of a finite planar group (C_n or D_n).
        num_kernels: number of kernels ``K_l``, each with its own coefficient per group element.
        bias: learn a bias (relaxed the same way, so at initialisation it lies in the invariant subspace).
        penalty: strength of the gradient pulling coefficients towards their group mean (0 = unregularised).
    """

    def __init__(self, in_rep: Representation, out_rep: Representation, num_kernels: int = 2, bias: bool = True,
                 penalty: float = 0.0):
        super().__init__(in_rep, out_rep, num_kernels, penalty)
        self.kernels = nn.Parameter(torch.randn(self.num_kernels, out_rep.size, in_rep.size))
        self._rescale_at_init(self.kernels, in_rep.size)
        self._init_bias(bias)

    def weight(self) -> torch.Tensor:
        return self._combine(self.kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_rep.size:
            raise ValueError(f"expected inputs with {self.in_rep.size} features ({self.in_rep.name}), got {tuple(x.shape)}")
        w, b = self.expanded()
        return nn.functional.linear(x, w.to(x.dtype), None if b is None else b.to(x.dtype))

    @torch.no_grad()
    def export(self) -> nn.Linear:
        w, b = self.weight(), self.bias()
        lin = nn.Linear(self.in_rep.size, self.out_rep.size, bias=b is not None)
        lin.weight.copy_(w)
        if b is not None:
            lin.bias.copy_(b)
        return lin


class RelaxedGroupConv2d(_RelaxedBase):
    """Relaxed group convolution on (B, C, H, W) feature maps whose channels carry ``in_rep``.

    ``g`` acts on a kernel by rotating/reflecting its spatial grid the way
    :func:`equivariance.transforms.transform_image` acts on images (so use subgroups of D4) and on its
    channels by ``rho_out(g) . rho_in(g)^T``. Lifting convolutions are ``in_rep = c * trivial``.
    """

    def __init__(self, in_rep: Representation, out_rep: Representation, kernel_size: int = 3, num_kernels: int = 2,
                 bias: bool = True, penalty: float = 0.0):
        super().__init__(in_rep, out_rep, num_kernels, penalty)
        if self.group.n not in (1, 2, 4):
            raise ValueError(f"convolutions on a pixel grid are exactly symmetric only for subgroups of D4, "
                             f"got {self.group.name}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = int(kernel_size)
        self.kernels = nn.Parameter(torch.randn(self.num_kernels, out_rep.size, in_rep.size, kernel_size, kernel_size))
        self._rescale_at_init(self.kernels, in_rep.size * kernel_size ** 2)
        # The bias of a convolution is spatially constant, so it relaxes exactly like a linear layer's.
        self._init_bias(bias)

    def _spatial(self, k: torch.Tensor) -> torch.Tensor:
        out = []
        for g in self.elements:
            kg = torch.flip(k, dims=(-2,)) if g.flip else k
            out.append(torch.rot90(kg, int(round(g.angle / (np.pi / 2))) % 4, dims=(-2, -1)))
        return torch.stack(out)

    def weight(self) -> torch.Tensor:
        return self._combine(self.kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_rep.size:
            raise ValueError(f"expected (B, {self.in_rep.size}, H, W) feature maps, got {tuple(x.shape)}")
        w, b = self.expanded()
        b = None if b is None else b.to(x.dtype)
        return nn.functional.conv2d(x, w.to(x.dtype), b, padding=self.kernel_size // 2)

    @torch.no_grad()
    def export(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_rep.size, self.out_rep.size, self.kernel_size, padding=self.kernel_size // 2,
                         bias=self.bias_kernel is not None)
        conv.weight.copy_(self.weight())
        if self.bias_kernel is not None:
            conv.bias.copy_(self.bias())
        return conv


class RelaxedMLP(nn.Module):
    """MLP of :class:`RelaxedLinear` layers with regular-representation hidden fields and ReLUs.

    Exactly equivariant at initialisation (same function class as :class:`equivariance.layers.EquivariantMLP`);
    training may move it away from equivariance, at a cost of ``penalty`` per unit of drift.
    """

    def __init__(self, in_rep: Representation, out_rep: Representation, hidden: Sequence[int] = (16, 16),
                 num_kernels: int = 2, penalty: float = 0.0):
        super().__init__()
        reps = [in_rep] + [int(h) * regular(in_rep.group) for h in hidden] + [out_rep]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(reps[:-1], reps[1:])):
            layers.append(RelaxedLinear(a, b, num_kernels=num_kernels, penalty=penalty))
            if i < len(reps) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.in_rep, self.out_rep = in_rep, out_rep

    def relaxed_layers(self) -> list[_RelaxedBase]:
        return [m for m in self.modules() if isinstance(m, _RelaxedBase)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def equivariance_penalty(self) -> torch.Tensor:
        return sum(layer.equivariance_penalty() for layer in self.relaxed_layers())

    def weight_equivariance_error(self) -> float:
        """Largest relative weight equivariance error over the layers."""
        return max(layer.weight_equivariance_error() for layer in self.relaxed_layers())

    @torch.no_grad()
    def export(self) -> nn.Sequential:
        return nn.Sequential(*[m.export() if isinstance(m, RelaxedLinear) else nn.ReLU() for m in self.net]).eval()


def relaxed_modules(module: nn.Module) -> list[_RelaxedBase]:
    """All relaxed layers inside ``module``."""
    return [m for m in module.modules() if isinstance(m, _RelaxedBase)]


def relaxation_drift(module: nn.Module) -> float:
    """How far the relaxed layers inside ``module`` are from equivariance: the norm of the weights'
    non-equivariant part relative to the norm of the weights, over all relaxed layers together
    (0 = exactly equivariant; 0 when there are none)."""
    parts = [layer.drift_parts() for layer in relaxed_modules(module)]
    total = sum(t for _, t in parts)
    return float(np.sqrt(sum(d for d, _ in parts) / total)) if total > 0 else 0.0
