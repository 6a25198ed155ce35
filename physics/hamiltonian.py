"""Hamiltonian systems with symplectic integrators and seeded trajectory datasets.

Four systems, all in canonical coordinates ``x = (q, p)`` with shape ``(..., 2 * dof)``
and physical parameters ``params`` with shape ``(..., n_params)``:

* :class:`MassSpring`     ``H = p^2 / 2m + k q^2 / 2``                   params ``(m, k)``
* :class:`SpringChain`    ``N`` equal masses in a row joined by equal springs, both ends tied
  to fixed walls: ``H = sum p_i^2 / 2m + k/2 sum_{i=0}^{N} (q_{i+1} - q_i)^2`` with
  ``q_0 = q_{N+1} = 0``                                                    params ``(m, k)``
* :class:`Pendulum`       ``H = p^2 / 2ml^2 + m g l (1 - cos q)``         params ``(m, l)``
* :class:`DoublePendulum` the planar double pendulum                       params ``(m1, m2, l1, l2)``

Integrators. The first three Hamiltonians are separable (``H = T(p) + V(q)``) and are stepped
with leapfrog / Stormer-Verlet (kick-drift-kick), which is symplectic and second order. The
double pendulum's kinetic energy depends on ``q1 - q2``, so leapfrog does not apply; it is
stepped with the implicit midpoint rule ``x' = x + dt f((x + x') / 2)``, also symplectic and
second order, solved by fixed-point iteration to ``IMPLICIT_TOL`` (max-abs change) in at most
``IMPLICIT_MAX_ITER`` iterations. Both keep the energy error bounded (no secular drift) over
long runs; ``tests/test_hamiltonian.py`` checks this.

Datasets (:func:`make_dataset`) draw parameters uniformly from per-parameter ranges, draw
initial states with a seeded generator, integrate with ``substeps`` fine steps per observed
step, and optionally add Gaussian observation noise (``obs_noise`` is relative to each
coordinate's standard deviation over the clean dataset).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

GRAVITY = 9.81
IMPLICIT_TOL = 1e-12
IMPLICIT_MAX_ITER = 100


def _split(x: np.ndarray, dof: int) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[-1] != 2 * dof:
        raise ValueError(f"state has last dimension {x.shape[-1]}, expected 2 * dof = {2 * dof}")
    return x[..., :dof], x[..., dof:]


@dataclass(frozen=True)
class HamiltonianSystem(ABC):
    """A Hamiltonian system: energy, vector field, a symplectic step and initial states."""

    name: str = ""
    dof: int = 1
    param_names: tuple[str, ...] = ()
    #: default uniform sampling range for each parameter
    param_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    g: float = GRAVITY

    def _params(self, params: np.ndarray) -> list[np.ndarray]:
        params = np.asarray(params, dtype=np.float64)
        if params.shape[-1] != len(self.param_names):
            raise ValueError(
                f"{self.name}: params has last dimension {params.shape[-1]}, "
                f"expected {len(self.param_names)} {self.param_names}"
            )
        if np.any(params <= 0):
            raise ValueError(f"{self.name}: physical parameters must be positive, got min {params.min()}")
        return [params[..., i] for i in range(params.shape[-1])]

    @abstractmethod
    def energy(self, x: np.ndarray, params: np.ndarray) -> np.ndarray:
        """Total energy ``H(x)``, shape ``x.shape[:-1]``."""

    @abstractmethod
    def grad(self, x: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(dH/dq, dH/dp)``."""

    @abstractmethod
    def sample_initial_state(self, rng: np.random.Generator, params: np.ndarray) -> np.ndarray:
        """One initial state per row of ``params`` (shape ``(n, n_params)`` -> ``(n, 2 dof)``)."""

    def vector_field(self, x: np.ndarray, params: np.ndarray) -> np.ndarray:
        """Hamilton's equations ``dx/dt = J grad H = (dH/dp, -dH/dq)``."""
        dq, dp = self.grad(x, params)
        return np.concatenate([dp, -dq], axis=-1)

    def step(self, x: np.ndarray, params: np.ndarray, dt: float) -> np.ndarray:
        """One symplectic step of size ``dt`` (implicit midpoint unless overridden)."""
        return implicit_midpoint_step(self.vector_field, x, params, dt)


def implicit_midpoint_step(vector_field, x: np.ndarray, params: np.ndarray, dt: float) -> np.ndarray:
    """Implicit midpoint ``x' = x + dt f((x + x')/2)`` by fixed-point iteration.

    Converges when ``dt * Lip(f) < 2``; raises if the tolerance is not met, rather than
    silently returning a non-symplectic step.
    """
    x_next = x + dt * vector_field(x, params)  # explicit Euler predictor
    for _ in range(IMPLICIT_MAX_ITER):
        candidate = x + dt * vector_field(0.5 * (x + x_next), params)
        change = np.max(np.abs(candidate - x_next))
        x_next = candidate
        if change < IMPLICIT_TOL:
            return x_next
    raise RuntimeError(f"implicit midpoint did not converge (last change {change:.2e}); reduce dt={dt}")


@dataclass(frozen=True)
class SeparableSystem(HamiltonianSystem):
    """``H = T(p) + V(q)`` with ``T = p^2 / (2 * inertia)``; stepped with leapfrog."""

    @abstractmethod
    def inertia(self, params: np.ndarray) -> np.ndarray:
        """The scalar ``I`` in ``T = p^2 / 2I``, shape ``params.shape[:-1]``."""

    @abstractmethod
    def potential(self, q: np.ndarray, params: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def potential_grad(self, q: np.ndarray, params: np.ndarray) -> np.ndarray: ...

    def energy(self, x, params):
        q, p = _split(np.asarray(x, dtype=np.float64), self.dof)
        inertia = self.inertia(params)[..., None]
        return (p**2 / (2 * inertia)).sum(-1) + self.potential(q, params)

    def grad(self, x, params):
        q, p = _split(np.asarray(x, dtype=np.float64), self.dof)
        return self.potential_grad(q, params), p / self.inertia(params)[..., None]

    def step(self, x, params, dt):
        """Leapfrog (kick-drift-kick)."""
        q, p = _split(np.asarray(x, dtype=np.float64), self.dof)
        inertia = self.inertia(params)[..., None]
        p = p - 0.5 * dt * self.potential_grad(q, params)
        q = q + dt * p / inertia
        p = p - 0.5 * dt * self.potential_grad(q, params)
        return np.concatenate([q, p], axis=-1)

    def _sample_1dof(self, rng: np.random.Generator, params: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
        """A point on the orbit of turning angle ``amplitude``: random position, momentum from energy."""
        q0 = rng.uniform(-1.0, 1.0, size=amplitude.shape) * amplitude
        energy = self.potential(amplitude[:, None], params)
        kinetic = np.maximum(energy - self.potential(q0[:, None], params), 0.0)
        p0 = rng.choice([-1.0, 1.0], size=amplitude.shape) * np.sqrt(2 * self.inertia(params) * kinetic)
        return np.stack([q0, p0], axis=-1)


@dataclass(frozen=True)
class MassSpring(SeparableSystem):
    name: str = "mass_spring"
    dof: int = 1
    param_names: tuple[str, ...] = ("m", "k")
    param_ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: {"m": (0.5, 2.0), "k": (0.5, 2.0)})

    def inertia(self, params):
        return self._params(params)[0]

    def potential(self, q, params):
        k = self._params(params)[1]
        return 0.5 * k * (q**2).sum(-1)

    def potential_grad(self, q, params):
        return self._params(params)[1][..., None] * q

    def sample_initial_state(self, rng, params):
        return self._sample_1dof(rng, params, rng.uniform(0.3, 1.0, size=len(params)))


@dataclass(frozen=True)
class SpringChain(SeparableSystem):
    """``dof`` masses between two walls, neighbours joined by springs (a discretised string).

    Linear, so its normal modes are known in closed form: mode ``n = 1..N`` has angular
    frequency ``2 sqrt(k/m) sin(n pi / (2 (N + 1)))`` (see :meth:`mode_frequencies`).
    """

    name: str = "spring_chain"
    dof: int = 3
    param_names: tuple[str, ...] = ("m", "k")
    param_ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: {"m": (0.5, 2.0), "k": (0.5, 2.0)})

    def inertia(self, params):
        return self._params(params)[0]

    def _stretches(self, q: np.ndarray) -> np.ndarray:
        """Spring extensions ``q_{i+1} - q_i`` for the ``dof + 1`` springs, walls at 0."""
        wall = np.zeros(q.shape[:-1] + (1,))
        return np.diff(np.concatenate([wall, q, wall], axis=-1), axis=-1)

    def potential(self, q, params):
        k = self._params(params)[1]
        return 0.5 * k * (self._stretches(q) ** 2).sum(-1)

    def potential_grad(self, q, params):
        stretch = self._stretches(q)
        # dV/dq_i = k (s_{i-1} - s_i): the spring on the left pulls back, the one on the right pulls on
        return self._params(params)[1][..., None] * (stretch[..., :-1] - stretch[..., 1:])

    def mode_frequencies(self, params: np.ndarray) -> np.ndarray:
        """Angular frequencies of the ``dof`` normal modes, shape ``params.shape[:-1] + (dof,)``."""
        m, k = self._params(params)
        n = np.arange(1, self.dof + 1)
        return 2 * np.sqrt(k / m)[..., None] * np.sin(n * np.pi / (2 * (self.dof + 1)))

    def sample_initial_state(self, rng, params):
        n = len(params)
        m, k = self._params(params)
        q0 = rng.uniform(-1.0, 1.0, size=(n, self.dof))
        # momenta on the same energy scale as the displacements: p ~ sqrt(m k) q
        p0 = rng.uniform(-1.0, 1.0, size=(n, self.dof)) * np.sqrt(m * k)[:, None]
        return np.concatenate([q0, p0], -1)


@dataclass(frozen=True)
class Pendulum(SeparableSystem):
    name: str = "pendulum"
    dof: int = 1
    param_names: tuple[str, ...] = ("m", "l")
    param_ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: {"m": (0.5, 1.5), "l": (0.5, 1.5)})

    def inertia(self, params):
        m, length = self._params(params)
        return m * length**2

    def potential(self, q, params):
        m, length = self._params(params)
        return m * self.g * length * (1.0 - np.cos(q)).sum(-1)

    def potential_grad(self, q, params):
        m, length = self._params(params)
        return (m * self.g * length)[..., None] * np.sin(q)

    def sample_initial_state(self, rng, params):
        # amplitudes below ~115 degrees: always librating, never over the top
        return self._sample_1dof(rng, params, rng.uniform(0.3, 2.0, size=len(params)))


@dataclass(frozen=True)
class DoublePendulum(HamiltonianSystem):
    """Planar double pendulum; ``q = (theta1, theta2)`` from the downward vertical."""

    name: str = "double_pendulum"
    dof: int = 2
    param_names: tuple[str, ...] = ("m1", "m2", "l1", "l2")
    param_ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"m1": (0.5, 1.5), "m2": (0.5, 1.5), "l1": (0.5, 1.5), "l2": (0.5, 1.5)}
    )

    def _terms(self, x, params):
        m1, m2, l1, l2 = self._params(params)
        (q, p) = _split(np.asarray(x, dtype=np.float64), self.dof)
        q1, q2, p1, p2 = q[..., 0], q[..., 1], p[..., 0], p[..., 1]
        c, s = np.cos(q1 - q2), np.sin(q1 - q2)
        d = m1 + m2 * s**2
        a = m2 * l2**2 * p1**2 + (m1 + m2) * l1**2 * p2**2 - 2 * m2 * l1 * l2 * p1 * p2 * c
        return m1, m2, l1, l2, q1, q2, p1, p2, c, s, d, a

    def energy(self, x, params):
        m1, m2, l1, l2, q1, q2, p1, p2, c, s, d, a = self._terms(x, params)
        kinetic = a / (2 * m2 * l1**2 * l2**2 * d)
        # potential shifted so the hanging rest state has zero energy
        potential = (m1 + m2) * self.g * l1 * (1 - np.cos(q1)) + m2 * self.g * l2 * (1 - np.cos(q2))
        return kinetic + potential

    def grad(self, x, params):
        m1, m2, l1, l2, q1, q2, p1, p2, c, s, d, a = self._terms(x, params)
        dh_dp1 = (l2 * p1 - l1 * p2 * c) / (l1**2 * l2 * d)
        dh_dp2 = ((m1 + m2) * l1 * p2 - m2 * l2 * p1 * c) / (m2 * l1 * l2**2 * d)
        # derivative of the kinetic term with respect to the angle difference q1 - q2
        dt_ddelta = p1 * p2 * s / (l1 * l2 * d) - a * s * c / (l1**2 * l2**2 * d**2)
        dh_dq1 = dt_ddelta + (m1 + m2) * self.g * l1 * np.sin(q1)
        dh_dq2 = -dt_ddelta + m2 * self.g * l2 * np.sin(q2)
        return np.stack([dh_dq1, dh_dq2], -1), np.stack([dh_dp1, dh_dp2], -1)

    def sample_initial_state(self, rng, params):
        m1, m2, l1, l2 = self._params(params)
        n = len(params)
        q1, q2 = rng.uniform(-1.0, 1.0, size=n), rng.uniform(-1.0, 1.0, size=n)
        w1, w2 = rng.normal(0.0, 0.5, size=n), rng.normal(0.0, 0.5, size=n)
        c = np.cos(q1 - q2)
        # p = M(q) qdot with the double pendulum's mass matrix
        p1 = (m1 + m2) * l1**2 * w1 + m2 * l1 * l2 * w2 * c
        p2 = m2 * l2**2 * w2 + m2 * l1 * l2 * w1 * c
        return np.stack([q1, q2, p1, p2], -1)


SYSTEMS: dict[str, type[HamiltonianSystem]] = {
    "mass_spring": MassSpring,
    "spring_chain": SpringChain,
    "pendulum": Pendulum,
    "double_pendulum": DoublePendulum,
}


def get_system(name: str) -> HamiltonianSystem:
    """The system called ``name`` (one of :data:`SYSTEMS`)."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown Hamiltonian system {name!r}; known: {', '.join(SYSTEMS)}")
    return SYSTEMS[name]()


def simulate(
    system: HamiltonianSystem, x0: np.ndarray, params: np.ndarray, dt: float, n_steps: int, substeps: int = 1
) -> np.ndarray:
    """Integrate from ``x0`` (shape ``(n, 2 dof)``); returns ``(n, n_steps + 1, 2 dof)`` sampled every ``dt``.

    Each observed step is ``substeps`` symplectic steps of ``dt / substeps``.
    """
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    if n_steps < 0 or substeps < 1:
        raise ValueError(f"need n_steps >= 0 and substeps >= 1, got n_steps={n_steps}, substeps={substeps}")
    x = np.asarray(x0, dtype=np.float64)
    _split(x, system.dof)
    out = np.empty((x.shape[0], n_steps + 1, x.shape[-1]))
    out[:, 0] = x
    h = dt / substeps
    for t in range(n_steps):
        for _ in range(substeps):
            x = system.step(x, params, h)
        out[:, t + 1] = x
    return out


@dataclass
class TrajectoryDataset:
    """Trajectories of one system with per-trajectory physical parameters."""

    system: str
    states: np.ndarray  # (n_traj, n_steps + 1, 2 dof), clean
    observations: np.ndarray  # states plus observation noise (equal to states when obs_noise == 0)
    params: np.ndarray  # (n_traj, n_params)
    param_names: tuple[str, ...]
    dt: float

    def __len__(self) -> int:
        return len(self.states)

    def energies(self) -> np.ndarray:
        """True energy of the clean states, ``(n_traj, n_steps + 1)``."""
        return get_system(self.system).energy(self.states, self.params[:, None, :])


def make_dataset(
    system: str | HamiltonianSystem,
    n_traj: int,
    n_steps: int,
    dt: float = 0.1,
    substeps: int = 10,
    seed: int = 0,
    obs_noise: float = 0.0,
    param_ranges: dict[str, tuple[float, float]] | None = None,
) -> TrajectoryDataset:
    """Seeded trajectories with parameters drawn uniformly from ``param_ranges``.

    ``obs_noise`` is the observation-noise standard deviation as a fraction of each
    coordinate's standard deviation over the clean dataset.
    """
    system = get_system(system) if isinstance(system, str) else system
    if n_traj < 1:
        raise ValueError(f"n_traj must be >= 1, got {n_traj}")
    if obs_noise < 0:
        raise ValueError(f"obs_noise must be >= 0, got {obs_noise}")
    ranges = dict(system.param_ranges)
    for name, bounds in (param_ranges or {}).items():
        if name not in system.param_names:
            raise ValueError(f"{system.name} has no parameter {name!r}; parameters: {system.param_names}")
        if not 0 < bounds[0] <= bounds[1]:
            raise ValueError(f"range for {name!r} must satisfy 0 < low <= high, got {bounds}")
        ranges[name] = tuple(bounds)
    rng = np.random.default_rng(seed)
    params = np.stack([rng.uniform(*ranges[name], size=n_traj) for name in system.param_names], -1)
    x0 = system.sample_initial_state(rng, params)
    states = simulate(system, x0, params, dt, n_steps, substeps)
    observations = states.copy()
    if obs_noise > 0:
        scale = states.reshape(-1, states.shape[-1]).std(0)
        observations += obs_noise * scale * rng.standard_normal(states.shape)
    return TrajectoryDataset(system.name, states, observations, params, system.param_names, dt)
