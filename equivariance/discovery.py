"""AtlasD: discover the (local) symmetry group shared by a set of chart predictors.

Given trained predictors ``f_c`` (one per chart of an atlas) and samples ``x_c`` from each
chart, we look for a linear group ``G`` acting on chart coordinates such that every
predictor is equivariant, ``f_c(g . x) = g . f_c(x)``:

* the identity component is ``exp(span{L_i})``; the Lie-algebra basis ``{L_i}`` is learned by
  minimising the equivariance loss for ``g = exp(sum_i c_i L_i)``, ``c_i ~ N(0, coef_std^2)``.
  The basis is kept Frobenius-orthonormal (QR of the raw parameters): no generator can shrink to
  zero, which would make the loss vanish trivially, none can collapse onto another, and with
  isotropic ``c`` the loss depends only on the subspace ``span{L_i}``, not on the basis inside it;
* the number of generators is found by adding one at a time (``discovery_count.discover_generator_count``)
  until the loss of the best basis jumps (the new direction cannot be made a symmetry);
* discrete components are matrices ``D`` (normalised to ``|det D| = 1``) trained with the same
  loss on ``g = D exp(sum_i c_i L_i)`` from many random starts; those with a low loss are
  kept and de-duplicated modulo the identity component (``D_1 ~ D_2`` iff
  ``D_1^{-1} D_2 in exp(span{L_i})``).

"Global" discovery is the same procedure with a single chart covering the whole domain;
it is the baseline that misses symmetries which hold only locally.

How ``g`` acts on inputs and outputs is a :class:`GroupAction`: :class:`VectorAction` for
points/vectors, :class:`PointSetAction` for sets of points (e.g. the four-momenta of a jet), :class:`FieldAction` for scalar fields on a square patch (resampled with
``grid_sample``, compared only inside a central disk that ``g`` maps into the patch).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from symgym.equivariance.lie_algebra import compare_algebras, principal_angles, structure_constants  # noqa: F401  (re-export)

Predictor = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- actions

class GroupAction:
    """How a batch of matrices ``g`` of shape ``(B, d, d)`` acts on predictor inputs and outputs."""

    dim: int = 2

    def act_input(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def act_output(self, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output_weight(self, y: torch.Tensor) -> torch.Tensor:
        """Per-entry weight of the comparison (e.g. a disk mask); broadcastable to ``y``."""
        return torch.ones(1, dtype=y.dtype, device=y.device)


class VectorAction(GroupAction):
    """Inputs are points ``x in R^d`` (``x -> g x``); outputs are invariant or transform like ``x``."""

    def __init__(self, dim: int = 2, output: str = "trivial"):
        if output not in ("trivial", "standard"):
            raise ValueError(f"output representation must be 'trivial' or 'standard', got {output!r}")
        self.dim, self.output = dim, output

    def act_input(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"inputs must end in dimension {self.dim}, got shape {tuple(x.shape)}")
        return torch.einsum("bij,bj->bi", g, x)

    def act_output(self, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y if self.output == "trivial" else torch.einsum("bij,bj->bi", g, y)


class PointSetAction(GroupAction):
    """Inputs are sets of ``n`` points ``(B, n, d)``, every point moved by the same ``g``; outputs invariant."""

    def __init__(self, dim: int, n_points: int):
        if dim < 1 or n_points < 1:
            raise ValueError(f"dim and n_points must be >= 1, got dim={dim}, n_points={n_points}")
        self.dim, self.n_points = dim, n_points

    def act_input(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.n_points, self.dim):
            raise ValueError(f"inputs must end in ({self.n_points}, {self.dim}), got shape {tuple(x.shape)}")
        return torch.einsum("bij,bnj->bni", g, x)

    def act_output(self, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y


class FieldAction(GroupAction):
    """Scalar fields on a ``(C, P, P)`` patch: ``(g . u)(p) = u(g^{-1} p)``, ``p`` in ``[-1, 1]^2``.

    ``compare_radius`` (in pixels) is the disk where ``f(g . x)`` and ``g . f(x)`` are compared;
    keep it at most ``P // 2 - reach`` where ``reach`` is the predictor's receptive radius,
    so that neither side depends on values resampled from outside the patch.
    Matrices are in (x = column, y = row) image coordinates.
    """

    def __init__(self, patch: int, compare_radius: float):
        if patch < 3:
            raise ValueError(f"patch size must be >= 3, got {patch}")
        if not 0 < compare_radius <= patch / 2:
            raise ValueError(f"compare_radius must be in (0, {patch / 2}], got {compare_radius}")
        self.patch, self.compare_radius = patch, compare_radius
        coords = torch.arange(patch, dtype=torch.float32) - (patch - 1) / 2
        rr = coords[:, None] ** 2 + coords[None, :] ** 2
        self._mask = (rr <= compare_radius**2).float()

    def _resample(self, g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if u.shape[-2:] != (self.patch, self.patch):
            raise ValueError(f"fields must end in ({self.patch}, {self.patch}), got shape {tuple(u.shape)}")
        theta = torch.zeros(g.shape[0], 2, 3, dtype=u.dtype, device=u.device)
        theta[:, :, :2] = torch.linalg.inv(g)  # output pixel p samples the input at g^{-1} p
        grid = F.affine_grid(theta, list(u.shape), align_corners=True)
        return F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def act_input(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._resample(g, x)

    def act_output(self, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._resample(g, y)

    def output_weight(self, y: torch.Tensor) -> torch.Tensor:
        return self._mask.to(y)


# --------------------------------------------------------------------------- loss

def equivariance_loss(
    predictors: Sequence[Predictor],
    inputs: Sequence[torch.Tensor],
    action: GroupAction,
    g: torch.Tensor | Sequence[torch.Tensor],
) -> torch.Tensor:
    """Mean over charts and samples of ``log(1 + |f_c(g x) - g f_c(x)|^2 / Var f_c)`` (weighted by the action's mask).

    ``g`` is one batch of matrices ``(B, d, d)`` shared by all charts or one batch per chart;
    ``B`` must equal each chart's batch size. The loss is 0 for an equivariant predictor, about
    the relative squared error when that is small, and about ``log 3 = 1.1`` when ``f(g x)`` and
    ``g f(x)`` are unrelated, whatever the scale of the outputs. The logarithm keeps samples that
    ``g`` throws far out of the chart (large coefficients, expanding generators) from dominating
    the gradient, which otherwise traps the generator search in poor local minima.
    """
    if len(predictors) != len(inputs) or not predictors:
        raise ValueError(f"need one input batch per predictor, got {len(predictors)} predictors and {len(inputs)} batches")
    total = 0.0
    for c, (f, x) in enumerate(zip(predictors, inputs)):
        gc = g[c] if isinstance(g, (list, tuple)) else g
        if gc.shape[0] != x.shape[0]:
            raise ValueError(f"chart {c}: {gc.shape[0]} group elements for a batch of {x.shape[0]} inputs")
        y = f(x)
        lhs = f(action.act_input(gc, x))
        rhs = action.act_output(gc, y)
        w = action.output_weight(y)
        scale = (((y - y.mean(0, keepdim=True)) ** 2) * w).mean().detach().clamp_min(1e-12)
        per_sample = ((lhs - rhs) ** 2 * w).reshape(x.shape[0], -1).mean(1) / scale
        total = total + torch.log1p(per_sample).mean()
    return total / len(predictors)


def _orthonormal(generators: torch.Tensor) -> torch.Tensor:
    """Frobenius-orthonormal basis of ``span(generators)`` (QR; the first direction is kept first)."""
    k, d = generators.shape[0], generators.shape[-1]
    q, r = torch.linalg.qr(generators.reshape(k, d * d).T)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(())).unsqueeze(0)
    return q.T.reshape(k, d, d)


def sample_identity_component(generators: torch.Tensor, n: int, coef_std: float, gen: torch.Generator) -> torch.Tensor:
    """``exp(sum_i c_i L_i)`` for ``n`` draws of ``c ~ N(0, coef_std^2)``; identity if there are no generators."""
    k, d = generators.shape[0], generators.shape[-1]
    if k == 0:
        return torch.eye(d, dtype=generators.dtype).expand(n, d, d)
    coefs = torch.randn(n, k, generator=gen, dtype=generators.dtype) * coef_std
    return torch.linalg.matrix_exp(torch.einsum("nk,kij->nij", coefs, generators))


def _sample_batches(inputs: Sequence[torch.Tensor], batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    return [x[torch.randint(0, x.shape[0], (batch,), generator=gen)] for x in inputs]


# --------------------------------------------------------------------------- Lie algebra

@dataclass
class LieDiscoveryConfig:
    n_generators: int = 1
    steps: int = 300
    lr: float = 0.06
    batch: int = 32
    coef_std: float = 1.0
    restarts: int = 3
    #: the learned basis counts as a symmetry only if its equivariance loss is at most this
    accept_max: float = 0.1
    seed: int = 0


@dataclass
class LieDiscoveryResult:
    generators: np.ndarray  # (k, d, d), Frobenius-orthonormal
    loss: float  # equivariance loss of the final basis on fresh samples
    restart_losses: list[float]
    history: list[float] = field(default_factory=list)  # training loss of the best restart


def discover_lie_algebra(
    predictors: Sequence[Predictor],
    inputs: Sequence[torch.Tensor],
    action: GroupAction,
    config: LieDiscoveryConfig | None = None,
    on_step: Callable[[int, np.ndarray], None] | None = None,
    init: np.ndarray | None = None,
    linear_start: bool = False,
) -> LieDiscoveryResult:
    """Learn ``config.n_generators`` orthonormal generators that make every predictor equivariant.

    Each restart starts from random generators (the first ``len(init)`` replaced by ``init``, a
    warm start); with ``linear_start`` the first restart fills the rest from the linearised
    condition (:func:`linearised_symmetry_form`). The restart with the lowest held-out loss wins. ``on_step(step, generators)`` is
    called after every optimiser step (e.g. to log cosine similarity).
    """
    config = config or LieDiscoveryConfig()
    if config.n_generators < 1:
        raise ValueError(f"n_generators must be >= 1, got {config.n_generators}")
    gen = torch.Generator().manual_seed(config.seed)
    d, k = action.dim, config.n_generators
    best: LieDiscoveryResult | None = None
    losses = []
    if init is not None and (np.ndim(init) != 3 or len(init) > k or np.shape(init)[1:] != (d, d)):
        raise ValueError(f"init must hold at most {k} generators of shape ({d}, {d}), got shape {np.shape(init)}")
    for restart in range(config.restarts):
        start = torch.randn(k, d, d, generator=gen)
        if init is not None and len(init):
            start[: len(init)] = torch.as_tensor(np.asarray(init), dtype=torch.float32)
        if linear_start and restart == 0:
            q = linearised_symmetry_form(predictors, inputs, action, n=4 * config.batch, seed=config.seed)
            start = torch.as_tensor(_linearised_start(q, np.zeros((0, d, d)) if init is None else init, k, d), dtype=torch.float32)
        raw = _orthonormal(start).requires_grad_(True)
        start_basis = raw.detach().clone()
        refine = linear_start and restart == 0  # already near the answer: small steps
        opt = torch.optim.Adam([raw], lr=config.lr * (0.1 if refine else 1.0))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)  # settle at the end
        history = []
        for step in range(config.steps):
            L = _orthonormal(raw)
            g = sample_identity_component(L, config.batch, config.coef_std, gen)
            loss = equivariance_loss(predictors, _sample_batches(inputs, config.batch, gen), action, g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # stay orthonormal so that lr is an angle per step
                raw.copy_(_orthonormal(raw))
            sched.step()
            history.append(loss.item())
            if on_step is not None:
                on_step(step, raw.detach().numpy().copy())
        L = _orthonormal(raw.detach())
        final = evaluate_group(predictors, inputs, action, L, None, config.coef_std, n=4 * config.batch, seed=config.seed + 1)
        if init is not None or refine:  # a warm start is kept if the optimiser did not improve on it
            at_start = evaluate_group(predictors, inputs, action, start_basis, None, config.coef_std, n=4 * config.batch, seed=config.seed + 1)
            if at_start < final:
                L, final = start_basis, at_start
        losses.append(final)
        if best is None or final < best.loss:
            best = LieDiscoveryResult(L.numpy(), final, [], history)
    assert best is not None
    best.restart_losses = losses
    return best


@torch.no_grad()
def evaluate_group(
    predictors: Sequence[Predictor],
    inputs: Sequence[torch.Tensor],
    action: GroupAction,
    generators: torch.Tensor | np.ndarray,
    discrete: torch.Tensor | np.ndarray | None = None,
    coef_std: float = 1.0,
    n: int = 128,
    seed: int = 0,
) -> float:
    """Equivariance loss of ``g = D exp(sum c_i L_i)`` (``D = I`` if ``discrete`` is None) on fresh samples."""
    gen = torch.Generator().manual_seed(seed)
    L = torch.as_tensor(np.asarray(generators), dtype=torch.float32).reshape(-1, action.dim, action.dim)
    g = sample_identity_component(L, n, coef_std, gen)
    if discrete is not None:
        g = torch.as_tensor(np.asarray(discrete), dtype=torch.float32) @ g
    return float(equivariance_loss(predictors, _sample_batches(inputs, n, gen), action, g))


@torch.no_grad()
def linearised_symmetry_form(
    predictors: Sequence[Predictor], inputs: Sequence[torch.Tensor], action: GroupAction, n: int = 256, eps: float = 1e-2, seed: int = 0
) -> np.ndarray:
    """The quadratic form ``Q`` on ``gl(d)`` of the infinitesimal equivariance residual.

    ``X^T Q X = mean |d/dt [f(e^{tX} x) - e^{tX} f(x)]_{t=0}|^2 / Var f`` (central differences of
    step ``eps``); its null space is the Lie algebra of the predictors' symmetry, its small
    eigenvectors warm-start the generator search.
    """
    gen = torch.Generator().manual_seed(seed)
    d = action.dim
    q = np.zeros((d * d, d * d))
    for f, x in zip(predictors, _sample_batches(inputs, n, gen)):
        y = f(x)
        w = action.output_weight(y)
        scale = float((((y - y.mean(0, keepdim=True)) ** 2) * w).mean().clamp_min(1e-12))
        cols = []
        for a in range(d * d):
            e = torch.zeros(d * d)
            e[a] = eps
            g = torch.linalg.matrix_exp(e.reshape(d, d)).expand(n, d, d)
            gi = torch.linalg.matrix_exp(-e.reshape(d, d)).expand(n, d, d)
            diff = (f(action.act_input(g, x)) - action.act_output(g, y)) - (f(action.act_input(gi, x)) - action.act_output(gi, y))
            cols.append((diff * w.sqrt() / (2 * eps)).reshape(-1).double().numpy())
        jac = np.stack(cols, axis=1)
        q += jac.T @ jac / (jac.shape[0] * scale)
    return q / len(predictors)


def _linearised_start(q: np.ndarray, basis: np.ndarray, k: int, d: int) -> np.ndarray:
    """``basis`` extended to ``k`` directions by the smallest eigenvectors of ``Q`` orthogonal to it."""
    b = np.asarray(basis, dtype=np.float64).reshape(-1, d * d)
    proj = np.eye(d * d) - (b.T @ np.linalg.pinv(b.T) if len(b) else 0.0)
    evals, evecs = np.linalg.eigh(proj @ q @ proj + 1e6 * (np.eye(d * d) - proj))
    return np.concatenate([b, evecs[:, : k - len(b)].T]).reshape(k, d, d)


# --------------------------------------------------------------------------- discrete components

@dataclass
class DiscreteDiscoveryConfig:
    n_candidates: int = 12
    steps: int = 200
    lr: float = 0.03
    batch: int = 32
    coef_std: float = 1.0
    #: a candidate is a symmetry if its loss is at most this multiple of the identity component's loss (+ floor)
    accept_ratio: float = 3.0
    accept_floor: float = 0.02
    #: ... and never above this absolute loss (about 1.1 is the loss of unrelated outputs)
    accept_max: float = 0.1
    #: relative distance below which two candidates are in the same coset of the identity component
    coset_tol: float = 0.15
    seed: int = 0


@dataclass
class DiscreteDiscoveryResult:
    candidates: np.ndarray  # (m, d, d), |det| = 1
    losses: list[float]
    accepted: list[bool]
    threshold: float
    components: np.ndarray  # (n_components, d, d) coset representatives; the first is the identity


def _normalise_det(m: torch.Tensor) -> torch.Tensor:
    d = m.shape[-1]
    return m / torch.linalg.det(m).abs().clamp_min(1e-8)[..., None, None] ** (1.0 / d)


def distance_to_identity_component(m: np.ndarray, generators: np.ndarray, starts: int = 25, steps: int = 150) -> float:
    """``min_c |m - exp(sum c_i L_i)|_F / |m|_F``: 0 iff ``m`` lies in the identity component.

    Non-convex in ``c`` (rotations wrap around), so a handful of starts on a grid are refined with Adam.
    """
    M = torch.as_tensor(np.asarray(m), dtype=torch.float64)
    L = torch.as_tensor(np.asarray(generators), dtype=torch.float64).reshape(-1, *M.shape)
    if L.shape[0] == 0:
        return float((M - torch.eye(M.shape[0], dtype=M.dtype)).norm() / M.norm())
    gen = torch.Generator().manual_seed(0)
    c = (torch.rand(starts, L.shape[0], generator=gen, dtype=M.dtype) * 2 - 1) * 2 * np.pi
    c[0] = 0.0
    c.requires_grad_(True)
    opt = torch.optim.Adam([c], lr=0.05)
    for _ in range(steps):
        dist = (M - torch.linalg.matrix_exp(torch.einsum("sk,kij->sij", c, L))).flatten(1).norm(dim=1)
        opt.zero_grad()
        dist.sum().backward()
        opt.step()
    with torch.no_grad():
        dist = (M - torch.linalg.matrix_exp(torch.einsum("sk,kij->sij", c, L))).flatten(1).norm(dim=1)
    return float(dist.min() / M.norm())


def deduplicate_components(matrices: Sequence[np.ndarray], generators: np.ndarray, tol: float = 0.15) -> np.ndarray:
    """Coset representatives of ``matrices`` modulo ``exp(span generators)``, identity coset first."""
    if len(matrices) == 0:
        raise ValueError("deduplicate_components needs at least one matrix")
    reps = [np.eye(np.asarray(matrices[0]).shape[-1])]
    for m in matrices:
        if all(distance_to_identity_component(np.linalg.inv(r) @ m, generators) > tol for r in reps):
            reps.append(np.asarray(m, dtype=np.float64))
    return np.stack(reps)


def discover_discrete(
    predictors: Sequence[Predictor],
    inputs: Sequence[torch.Tensor],
    action: GroupAction,
    generators: np.ndarray,
    config: DiscreteDiscoveryConfig | None = None,
) -> DiscreteDiscoveryResult:
    """Learn discrete group elements from random starts, keep the symmetric ones, de-duplicate.

    Half the starts have negative determinant: ``|det D| = 1`` is enforced by normalisation, so a
    candidate cannot cross ``det = 0`` and orientation-reversing components need their own starts.
    """
    config = config or DiscreteDiscoveryConfig()
    if config.n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {config.n_candidates}")
    gen = torch.Generator().manual_seed(config.seed)
    L = torch.as_tensor(np.asarray(generators), dtype=torch.float32).reshape(-1, action.dim, action.dim)
    raw = torch.randn(config.n_candidates, action.dim, action.dim, generator=gen)
    flip = torch.arange(config.n_candidates) % 2 == 1
    sign = torch.sign(torch.linalg.det(raw))
    raw[(sign > 0) & flip, 0] *= -1  # odd starts: det < 0, even starts: det > 0
    raw[(sign < 0) & ~flip, 0] *= -1
    raw.requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    m = config.n_candidates
    for _ in range(config.steps):
        D = _normalise_det(raw)
        h = sample_identity_component(L, m * config.batch, config.coef_std, gen).reshape(m, config.batch, action.dim, action.dim)
        g = D[:, None] @ h
        # every candidate sees its own group elements; the sum keeps their gradients independent
        loss = sum(equivariance_loss(predictors, _sample_batches(inputs, config.batch, gen), action, g[j]) for j in range(m))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    D = _normalise_det(raw.detach())
    losses = [evaluate_group(predictors, inputs, action, L, D[j], config.coef_std, n=4 * config.batch, seed=config.seed + 7) for j in range(m)]
    identity_loss = evaluate_group(predictors, inputs, action, L, None, config.coef_std, n=4 * config.batch, seed=config.seed + 7)
    threshold = min(config.accept_ratio * identity_loss + config.accept_floor, config.accept_max)
    accepted = [loss <= threshold for loss in losses]
    order = np.argsort(losses)
    kept = [D[j].numpy().astype(np.float64) for j in order if accepted[j]]
    components = deduplicate_components(kept, L.numpy(), config.coset_tol) if kept else np.eye(action.dim)[None]
    return DiscreteDiscoveryResult(D.numpy(), losses, accepted, threshold, components)


# --------------------------------------------------------------------------- comparison with ground truth

def cosine_similarity_up_to_sign(a: np.ndarray, b: np.ndarray) -> float:
    """``|<a, b>_F| / (|a| |b|)``: 1 when the generators span the same line."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(abs(a @ b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def match_components(found: np.ndarray, true_components: Sequence[np.ndarray], true_generators: np.ndarray, tol: float = 0.15) -> dict:
    """Which true cosets (modulo the *true* identity component) the found representatives hit."""
    hits = []
    for t in true_components:
        hits.append(any(distance_to_identity_component(np.linalg.inv(t) @ f, true_generators) <= tol for f in found))
    spurious = sum(
        all(distance_to_identity_component(np.linalg.inv(t) @ f, true_generators) > tol for t in true_components) for f in found
    )
    return {"true_components_found": int(sum(hits)), "n_true_components": len(true_components), "hits": hits, "spurious": int(spurious)}


@dataclass
class DiscoveredGroup:
    """A discovered matrix group: Lie-algebra basis plus coset representatives."""

    generators: np.ndarray
    components: np.ndarray
    lie_loss: float
    component_losses: list[float]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["generators"] = np.round(self.generators, 4).tolist()
        out["components"] = np.round(self.components, 4).tolist()
        return out


def discover_group(
    predictors: Sequence[Predictor],
    inputs: Sequence[torch.Tensor],
    action: GroupAction,
    lie: LieDiscoveryConfig | None = None,
    discrete: DiscreteDiscoveryConfig | None = None,
) -> tuple[DiscoveredGroup, LieDiscoveryResult, DiscreteDiscoveryResult]:
    """Lie algebra first, then discrete components modulo it (local mode: many charts; global: one).

    A learned basis whose loss exceeds ``lie.accept_max`` is rejected: the identity component is
    then trivial, and discrete candidates are trained and de-duplicated without it.
    """
    lie = lie or LieDiscoveryConfig()
    lie_res = discover_lie_algebra(predictors, inputs, action, lie)
    accepted = lie_res.generators if lie_res.loss <= lie.accept_max else np.zeros((0, action.dim, action.dim))
    disc_res = discover_discrete(predictors, inputs, action, accepted, discrete)
    comp_losses = [evaluate_group(predictors, inputs, action, accepted, c, lie.coef_std) for c in disc_res.components]
    return DiscoveredGroup(accepted, disc_res.components, lie_res.loss, comp_losses), lie_res, disc_res


def to_planar_group(group: DiscoveredGroup, grid_order: int = 4, min_antisymmetry: float = 0.9):
    """Name the discovered group as a subgroup of O(2), discretised to ``grid_order`` rotations.

    The identity component counts as SO(2) when a generator is (to ``min_antisymmetry``) an
    antisymmetric matrix, i.e. a rotation generator; a component counts as a reflection when its
    representative is orthogonal with determinant -1. Steerable CNNs on a square grid are exact
    only for C4/D4, hence the discretisation. Returns ``None`` when no rotation symmetry was found
    (the downstream model is then the unconstrained one).
    """
    from symgym.equivariance.groups import PlanarGroup

    rotation = any(
        np.linalg.norm(L - L.T) / max(np.linalg.norm(2 * L), 1e-12) >= min_antisymmetry for L in group.generators
    )
    reflection = any(
        np.linalg.det(c) < 0 and np.linalg.norm(c.T @ c - np.eye(len(c))) < 0.2 for c in group.components
    )
    if not rotation:
        return None
    return PlanarGroup(grid_order, reflections=reflection)
