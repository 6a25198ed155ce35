"""Seeded 2-D simulators with *local* symmetry, for AtlasD symmetry discovery.

Two data sources live here:

* :class:`HeatObstacleSim`, heat diffusion on a square grid with a fixed heated obstacle
  (a Dirichlet block held at ``obstacle_value``) and a cold outer boundary. The diffusion
  operator is the isotropic 9-point Laplacian, so away from the obstacle and the border the
  one-step map commutes with rotations and reflections (O(2), exactly so for the D4 subgroup
  on the grid, to the stencil's O(h^4) anisotropy otherwise). The off-centre obstacle breaks
  every global symmetry of the domain.
* :class:`ChartFunctionFamily`, scalar functions on charts, ``f_c(x) = phi_c(x^T eta x)``.
  With ``eta = diag(1, -1)`` every chart function is invariant under O(1, 1), a group with
  four connected components (identity, -I, and the two reflections ``diag(1, -1)``,
  ``diag(-1, 1)``, each up to a boost); with ``eta = I`` the group is O(2) (two components).
  The symmetry holds about each chart's own centre, not about the origin of the domain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------- heat + obstacle

#: Isotropic 9-point Laplacian (Oono-Puri / Patra-Karttunen weights), spacing h = 1.
_LAPLACIAN_9PT = np.array([[1.0, 4.0, 1.0], [4.0, -20.0, 4.0], [1.0, 4.0, 1.0]]) / 6.0


@dataclass
class HeatObstacleConfig:
    """Heat equation ``u_t = alpha * Laplacian(u)`` on a ``size x size`` grid.

    ``obstacle`` is ``(row0, row1, col0, col1)`` (half-open) of a block held at
    ``obstacle_value``; the border outside the grid is held at 0. One call of
    :meth:`HeatObstacleSim.step` is ``substeps`` explicit-Euler steps of ``alpha_dt``.
    """

    size: int = 64
    obstacle: tuple[int, int, int, int] = (14, 24, 38, 48)
    obstacle_value: float = 1.0
    alpha_dt: float = 0.2
    substeps: int = 4
    n_bumps: tuple[int, int] = (6, 14)
    bump_width: tuple[float, float] = (2.0, 5.0)


class HeatObstacleSim:
    """Seeded heat-diffusion simulator with a heated obstacle (see module docstring)."""

    def __init__(self, config: HeatObstacleConfig | None = None):
        self.config = config or HeatObstacleConfig()
        c = self.config
        if c.size < 8:
            raise ValueError(f"grid size must be >= 8, got {c.size}")
        r0, r1, c0, c1 = c.obstacle
        if not (0 <= r0 < r1 <= c.size and 0 <= c0 < c1 <= c.size):
            raise ValueError(f"obstacle {c.obstacle} is not a non-empty block inside a {c.size}x{c.size} grid")
        # The 9-point stencil's most negative eigenvalue is -16/3; explicit Euler needs alpha_dt * 16/3 < 2.
        if not 0.0 < c.alpha_dt < 0.375:
            raise ValueError(f"alpha_dt must be in (0, 0.375) for a stable explicit step, got {c.alpha_dt}")
        if c.substeps < 1:
            raise ValueError(f"substeps must be >= 1, got {c.substeps}")
        self.obstacle_mask = np.zeros((c.size, c.size), dtype=bool)
        self.obstacle_mask[r0:r1, c0:c1] = True

    @property
    def size(self) -> int:
        return self.config.size

    @property
    def stencil_radius(self) -> int:
        """How far (in cells, Chebyshev) information travels in one :meth:`step`."""
        return self.config.substeps

    def _laplacian(self, u: np.ndarray) -> np.ndarray:
        padded = np.pad(u, [(0, 0)] * (u.ndim - 2) + [(1, 1), (1, 1)])  # cold (0) outer boundary
        n = u.shape[-1]
        out = np.zeros_like(u)
        for di in range(3):
            for dj in range(3):
                out += _LAPLACIAN_9PT[di, dj] * padded[..., di : di + n, dj : dj + n]
        return out

    def apply_obstacle(self, u: np.ndarray) -> np.ndarray:
        u = u.copy()
        u[..., self.obstacle_mask] = self.config.obstacle_value
        return u

    def step(self, u: np.ndarray) -> np.ndarray:
        """Advance fields ``u`` of shape ``(..., size, size)`` by one macro step."""
        if u.shape[-2:] != (self.size, self.size):
            raise ValueError(f"field shape {u.shape} does not end in ({self.size}, {self.size})")
        u = self.apply_obstacle(np.asarray(u, dtype=np.float64))
        for _ in range(self.config.substeps):
            u = self.apply_obstacle(u + self.config.alpha_dt * self._laplacian(u))
        return u

    def random_initial(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """Smooth random fields: sums of Gaussian bumps of random sign, width and position."""
        c = self.config
        yy, xx = np.mgrid[0 : c.size, 0 : c.size].astype(np.float64)
        fields = np.zeros((batch, c.size, c.size))
        for b in range(batch):
            for _ in range(rng.integers(c.n_bumps[0], c.n_bumps[1] + 1)):
                cy, cx = rng.uniform(0, c.size, size=2)
                width = rng.uniform(*c.bump_width)
                fields[b] += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
        return self.apply_obstacle(fields)

    def generate_pairs(self, n: int, rng: np.random.Generator, max_warmup: int = 6) -> tuple[np.ndarray, np.ndarray]:
        """``n`` pairs ``(u_t, u_{t+1})`` (float32, shape ``(n, size, size)``) after a random warm-up."""
        if n < 1:
            raise ValueError(f"number of pairs must be >= 1, got {n}")
        u = self.random_initial(rng, n)
        warmup = rng.integers(0, max_warmup + 1, size=n)
        for k in range(int(warmup.max())):
            active = warmup > k
            u[active] = self.step(u[active])
        return u.astype(np.float32), self.step(u).astype(np.float32)

    def free_chart_centres(self, patch: int, stride: int | None = None) -> list[tuple[int, int]]:
        """Centres of ``patch x patch`` charts that touch neither the obstacle nor the border.

        A chart that is free in this sense sees only the symmetric bulk dynamics (plus the
        stencil's reach, which callers keep inside the patch by comparing only its interior).
        """
        if patch < 3 or patch % 2 == 0:
            raise ValueError(f"patch size must be odd and >= 3, got {patch}")
        half = patch // 2
        stride = stride or half
        margin = self.stencil_radius  # the obstacle must be out of the patch's reach too
        blocked = np.pad(self.obstacle_mask, margin)
        centres = []
        for r in range(half + 1, self.size - half - 1, stride):
            for c in range(half + 1, self.size - half - 1, stride):
                window = blocked[r - half : r + half + 1 + 2 * margin, c - half : c + half + 1 + 2 * margin]
                if not window.any():
                    centres.append((r, c))
        return centres

    def obstacle_chart_centre(self) -> tuple[int, int]:
        """A chart centre next to (not on) the obstacle: its neighbourhood breaks the symmetry."""
        r0, r1, c0, c1 = self.config.obstacle
        return (r1 + 2, (c0 + c1) // 2)


def extract_patches(fields: np.ndarray, centres: list[tuple[int, int]], patch: int) -> np.ndarray:
    """Patches of shape ``(len(centres), n, patch, patch)`` cut from fields ``(n, H, W)``."""
    half = patch // 2
    out = []
    for r, c in centres:
        if r - half < 0 or c - half < 0 or r + half >= fields.shape[-2] or c + half >= fields.shape[-1]:
            raise ValueError(f"chart centre {(r, c)} with patch {patch} leaves the {fields.shape[-2:]} grid")
        out.append(fields[..., r - half : r + half + 1, c - half : c + half + 1])
    return np.stack(out)


# --------------------------------------------------------------------------- synthetic chart functions

#: Metric of each known invariance group, its Lie-algebra generator and coset representatives.
QUADRATIC_FORMS: dict[str, dict[str, np.ndarray | list[np.ndarray]]] = {
    "euclidean": {
        "eta": np.eye(2),
        "generator": np.array([[0.0, -1.0], [1.0, 0.0]]),  # so(2)
        "components": [np.eye(2), np.diag([1.0, -1.0])],  # SO(2), reflections
    },
    "minkowski": {
        "eta": np.diag([1.0, -1.0]),
        "generator": np.array([[0.0, 1.0], [1.0, 0.0]]),  # so(1, 1): boosts
        "components": [np.eye(2), -np.eye(2), np.diag([1.0, -1.0]), np.diag([-1.0, 1.0])],
    },
}


@dataclass
class ChartFunctionFamily:
    """Per-chart scalar functions ``f_c(x) = a_c sin(w_c q) + b_c q``, ``q = x^T eta x``.

    ``x`` are chart coordinates (the chart centre is 0). Each chart draws its own
    ``(a_c, w_c, b_c)``, so the charts share a symmetry group but not a function.
    """

    form: str = "minkowski"
    n_charts: int = 4
    seed: int = 0
    params: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.form not in QUADRATIC_FORMS:
            raise ValueError(f"unknown quadratic form {self.form!r}; known: {sorted(QUADRATIC_FORMS)}")
        if self.n_charts < 1:
            raise ValueError(f"n_charts must be >= 1, got {self.n_charts}")
        rng = np.random.default_rng(self.seed)
        self.params = np.stack(
            [rng.uniform(0.6, 1.2, self.n_charts), rng.uniform(0.8, 1.8, self.n_charts), rng.uniform(-0.5, 0.5, self.n_charts)],
            axis=1,
        )

    @property
    def eta(self) -> np.ndarray:
        return QUADRATIC_FORMS[self.form]["eta"]  # type: ignore[return-value]

    @property
    def true_generator(self) -> np.ndarray:
        return QUADRATIC_FORMS[self.form]["generator"]  # type: ignore[return-value]

    @property
    def true_components(self) -> list[np.ndarray]:
        return QUADRATIC_FORMS[self.form]["components"]  # type: ignore[return-value]

    def __call__(self, chart: int, x: np.ndarray) -> np.ndarray:
        """Evaluate chart ``chart``'s function at points ``x`` of shape ``(n, 2)``."""
        if not 0 <= chart < self.n_charts:
            raise ValueError(f"chart index {chart} out of range [0, {self.n_charts})")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {x.shape}")
        a, w, b = self.params[chart]
        q = np.einsum("ni,ij,nj->n", x, self.eta, x)
        return a * np.sin(w * q) + b * q

    def global_function(self, p: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """The field on the whole domain: each point uses its nearest chart's function.

        Symmetric about every chart centre locally, but not about the domain origin.
        """
        p = np.asarray(p, dtype=np.float64)
        if centres.shape != (self.n_charts, 2):
            raise ValueError(f"centres must have shape ({self.n_charts}, 2), got {centres.shape}")
        nearest = np.argmin(((p[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        out = np.empty(len(p))
        for c in range(self.n_charts):
            sel = nearest == c
            out[sel] = self(c, p[sel] - centres[c])
        return out
