"""Synthetic jet-like point sets with an exact Lorentz symmetry, for AtlasD in >= 3 dimensions.

A *jet* is a set of ``n_particles`` four-momenta ``p_i = (E_i, px_i, py_i, pz_i)`` (more generally
``(E, p_1..p_s)`` with ``s = spatial_dims``): massive particles collimated around a jet axis.
Each chart of the atlas is a region of phase space (its own jet axis, energy scale and angular
spread) with its own observable

    f_c(jet) = a_c sin(w_c s_12) + b_c s_13 + e_c M^2 / n,    s_ij = p_i . p_j,   M^2 = P . P,

where ``.`` is the Minkowski product ``eta = diag(1, -1, ..., -1)`` and ``P = sum_i p_i``. Every
``f_c`` depends on Minkowski products only, so it is invariant under ``O(1, s)`` acting on all
particles at once; its Lie algebra ``so(1, s)`` (dimension ``s (s + 1) / 2``: 6 for ``s = 3``,
3 for ``s = 2``) is what AtlasD should discover, charts sharing the algebra but not the function.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def minkowski_metric(spatial_dims: int = 3) -> np.ndarray:
    if spatial_dims < 1:
        raise ValueError(f"spatial_dims must be >= 1, got {spatial_dims}")
    return np.diag([1.0] + [-1.0] * spatial_dims)


def lorentz_algebra_basis(spatial_dims: int = 3) -> np.ndarray:
    """Basis of ``so(1, s)``: rotations ``E_ij - E_ji`` (1 <= i < j) then boosts ``E_0i + E_i0``."""
    d = spatial_dims + 1
    minkowski_metric(spatial_dims)  # validates
    rotations, boosts = [], []
    for i in range(1, d):
        for j in range(i + 1, d):
            m = np.zeros((d, d))
            m[i, j], m[j, i] = -1.0, 1.0
            rotations.append(m)
        m = np.zeros((d, d))
        m[0, i] = m[i, 0] = 1.0
        boosts.append(m)
    return np.stack(rotations + boosts)


def random_lorentz(rng: np.random.Generator, n: int, spatial_dims: int = 3, max_rapidity: float = 1.0) -> np.ndarray:
    """``n`` proper orthochronous Lorentz matrices: a random rotation times a boost of rapidity <= max."""
    d = spatial_dims + 1
    out = np.empty((n, d, d))
    for k in range(n):
        q, r = np.linalg.qr(rng.normal(size=(spatial_dims, spatial_dims)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] *= -1
        rot = np.eye(d)
        rot[1:, 1:] = q
        axis = rng.normal(size=spatial_dims)
        axis /= np.linalg.norm(axis)
        y = rng.uniform(0, max_rapidity)
        boost = np.eye(d)
        boost[0, 0] = np.cosh(y)
        boost[0, 1:] = boost[1:, 0] = np.sinh(y) * axis
        boost[1:, 1:] += (np.cosh(y) - 1) * np.outer(axis, axis)
        out[k] = rot @ boost
    return out


@dataclass
class JetFamily:
    """Seeded jets per chart and the chart observables (see module docstring)."""

    n_charts: int = 3
    n_particles: int = 3
    spatial_dims: int = 3
    seed: int = 0
    params: np.ndarray = field(init=False)
    axes: np.ndarray = field(init=False)
    energy_scale: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.n_charts < 1:
            raise ValueError(f"n_charts must be >= 1, got {self.n_charts}")
        if self.n_particles < 3:
            raise ValueError(f"n_particles must be >= 3 (the observable uses s_12 and s_13), got {self.n_particles}")
        self.eta = minkowski_metric(self.spatial_dims)
        rng = np.random.default_rng(self.seed)
        self.params = np.stack(
            [rng.uniform(0.6, 1.2, self.n_charts), rng.uniform(1.0, 2.0, self.n_charts),
             rng.uniform(-0.5, 0.5, self.n_charts), rng.uniform(0.2, 0.6, self.n_charts)], axis=1)
        axes = rng.normal(size=(self.n_charts, self.spatial_dims))
        self.axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
        self.energy_scale = rng.uniform(0.5, 0.8, self.n_charts)

    @property
    def dim(self) -> int:
        return self.spatial_dims + 1

    @property
    def true_generators(self) -> np.ndarray:
        return lorentz_algebra_basis(self.spatial_dims)

    def sample(self, chart: int, n: int, rng: np.random.Generator, max_rapidity: float = 0.0) -> np.ndarray:
        """``n`` jets ``(n, n_particles, 1 + s)`` of chart ``chart``, optionally randomly Lorentz-moved.

        ``max_rapidity > 0`` spreads the jets over a neighbourhood of the chart in the group
        direction (for training predictors wider than the region the symmetry is probed on).
        """
        self._check_chart(chart)
        s, m = self.spatial_dims, self.n_particles
        scale = self.energy_scale[chart]
        direction = self.axes[chart] + 0.35 * rng.normal(size=(n, m, s))  # collimated around the axis
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        momentum = scale * rng.uniform(0.4, 1.2, size=(n, m, 1)) * direction
        mass = rng.uniform(0.1, 0.4, size=(n, m, 1))
        energy = np.sqrt(mass**2 + (momentum**2).sum(-1, keepdims=True))
        jets = np.concatenate([energy, momentum], axis=-1)
        if max_rapidity > 0:
            g = random_lorentz(rng, n, s, max_rapidity)
            jets = np.einsum("nij,npj->npi", g, jets)
        return jets

    def observable(self, chart: int, jets: np.ndarray) -> np.ndarray:
        """``f_c`` of jets ``(n, n_particles, 1 + s)`` -> ``(n,)``."""
        self._check_chart(chart)
        jets = np.asarray(jets, dtype=np.float64)
        if jets.ndim != 3 or jets.shape[1:] != (self.n_particles, self.dim):
            raise ValueError(f"jets must have shape (n, {self.n_particles}, {self.dim}), got {jets.shape}")
        a, w, b, e = self.params[chart]
        dot = lambda u, v: np.einsum("ni,ij,nj->n", u, self.eta, v)  # noqa: E731
        total = jets.sum(1)
        return a * np.sin(w * dot(jets[:, 0], jets[:, 1])) + b * dot(jets[:, 0], jets[:, 2]) + e * dot(total, total) / self.n_particles

    def _check_chart(self, chart: int) -> None:
        if not 0 <= chart < self.n_charts:
            raise ValueError(f"chart index {chart} out of range [0, {self.n_charts})")
