"""Linear representations of the planar groups: rho(g) is a real matrix.

Representations compose by direct sum (``rep_a + rep_b`` or :func:`direct_sum`) and
repetition (``3 * rep``), so an observation vector declares its layout as e.g.
``7 * standard(group)`` (seven 2-D vectors) or ``standard(group) + trivial(group)``.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy.linalg import block_diag

from symgym.equivariance.groups import O2Element, PlanarGroup


class Representation:
    """``rho: G -> GL(size)``; ``name`` records its building blocks for the escnn bridge."""

    def __init__(self, group: PlanarGroup, size: int, fn: Callable[[O2Element], np.ndarray], name: str,
                 parts: Sequence["Representation"] | None = None):
        self.group = group
        self.size = int(size)
        self._fn = fn
        self.name = name
        self.parts: tuple[Representation, ...] = tuple(parts) if parts else (self,)

    def __call__(self, g: O2Element) -> np.ndarray:
        if not self.group.contains(g):
            raise ValueError(f"{g} is not an element of {self.group.name}")
        return self._fn(g)

    def act(self, g: O2Element, x: np.ndarray) -> np.ndarray:
        """Apply rho(g) to the last axis of ``x`` (batched vectors allowed)."""
        x = np.asarray(x)
        if x.shape[-1] != self.size:
            raise ValueError(f"representation {self.name} acts on vectors of size {self.size}, got shape {x.shape}")
        return (x @ self(g).T).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else float, copy=False)

    def __add__(self, other: "Representation") -> "Representation":
        return direct_sum(self, other)

    def __rmul__(self, k: int) -> "Representation":
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"repetition count must be a positive int, got {k!r}")
        return direct_sum(*([self] * k))

    def is_permutation(self) -> bool:
        return all(p.name.startswith("regular") for p in self.parts)

    def __repr__(self) -> str:
        return f"Representation({self.name}, size={self.size}, group={self.group.name})"


def trivial(group: PlanarGroup) -> Representation:
    return Representation(group, 1, lambda g: np.ones((1, 1)), "trivial")


def sign(group: PlanarGroup) -> Representation:
    """det(g): +1 for rotations, -1 for reflections (pseudo-scalars, e.g. angular velocity)."""
    return Representation(group, 1, lambda g: np.array([[float(g.det)]]), "sign")


def standard(group: PlanarGroup) -> Representation:
    """The defining 2-D action on the plane (positions, velocities, forces)."""
    return Representation(group, 2, lambda g: g.matrix(), "standard")


def irrep(group: PlanarGroup, frequency: int) -> Representation:
    """Frequency-k rotation irrep: R(k*angle), with reflections acting as diag(1, -1)."""
    if frequency < 1:
        raise ValueError(f"irrep frequency must be >= 1 (use trivial/sign for 0), got {frequency}")
    if group.n is not None and 2 * frequency >= group.n and group.n > 2:
        # For C_n/D_n frequencies are defined modulo n; k >= n/2 aliases a lower one.
        raise ValueError(f"frequency {frequency} aliases for {group.name}; use k < n/2")

    def fn(g: O2Element) -> np.ndarray:
        return O2Element(frequency * g.angle, g.flip).matrix()

    return Representation(group, 2, fn, f"irrep{frequency}")


def regular(group: PlanarGroup) -> Representation:
    """Permutation representation on functions over the finite group: rho(g) e_h = e_{gh}."""
    if not group.finite:
        raise ValueError(f"the regular representation needs a finite group, got {group.name}")
    elements = group.elements()
    size = len(elements)

    def fn(g: O2Element) -> np.ndarray:
        m = np.zeros((size, size))
        for j, h in enumerate(elements):
            m[group.index(group.compose(g, h)), j] = 1.0
        return m

    return Representation(group, size, fn, "regular")


def direct_sum(*reps: Representation) -> Representation:
    if not reps:
        raise ValueError("direct_sum needs at least one representation")
    group = reps[0].group
    for r in reps[1:]:
        if r.group != group:
            raise ValueError(f"cannot sum representations of {group.name} and {r.group.name}")
    parts = tuple(p for r in reps for p in r.parts)
    size = sum(r.size for r in reps)
    name = "+".join(p.name for p in parts)
    return Representation(group, size, lambda g: block_diag(*[p(g) for p in parts]), name, parts)



def rotation_matrix(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])
