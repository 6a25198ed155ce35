"""Planar symmetry groups: C_n, D_n, SO(2), O(2), the mirror group {e, x -> -x}, and SE(2) for tabletop scenes.

Every element of the planar groups is an ``O2Element``: a rotation by ``angle`` after an
optional reflection across the x-axis, i.e. ``g = R(angle) @ F**flip`` with
``F = diag(1, -1)``. One element type for all four groups keeps representations and
observation transforms group-agnostic; the group decides which elements exist.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

TWO_PI = 2.0 * math.pi


def _wrap(angle: float) -> float:
    """Angle in [0, 2*pi)."""
    a = math.fmod(angle, TWO_PI)
    if a < 0:
        a += TWO_PI
    return 0.0 if abs(a - TWO_PI) < 1e-12 else a


@dataclass(frozen=True)
class O2Element:
    """``R(angle) F^flip``: reflect across the x-axis if ``flip``, then rotate by ``angle``."""

    angle: float = 0.0
    flip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "angle", _wrap(float(self.angle)))
        object.__setattr__(self, "flip", bool(self.flip))

    def matrix(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, -s], [s, c]])
        return rot @ np.diag([1.0, -1.0]) if self.flip else rot

    @property
    def det(self) -> int:
        return -1 if self.flip else 1

    def act_on_angle(self, theta):
        """How a heading/yaw angle transforms: theta -> angle +/- theta."""
        return self.angle + (-theta if self.flip else theta)

    def isclose(self, other: "O2Element", atol: float = 1e-9) -> bool:
        d = abs(_wrap(self.angle - other.angle))
        return self.flip == other.flip and min(d, TWO_PI - d) < atol


@dataclass(frozen=True)
class SE2Element:
    """Planar rigid motion ``x -> R(angle) x + t`` (no reflection)."""

    angle: float = 0.0
    tx: float = 0.0
    ty: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "angle", _wrap(float(self.angle)))

    @property
    def rotation(self) -> O2Element:
        return O2Element(self.angle, False)

    def matrix(self) -> np.ndarray:
        """3x3 homogeneous matrix."""
        m = np.eye(3)
        m[:2, :2] = self.rotation.matrix()
        m[:2, 2] = (self.tx, self.ty)
        return m

    def apply(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=float)
        return points @ self.rotation.matrix().T + np.array([self.tx, self.ty])

    def isclose(self, other: "SE2Element", atol: float = 1e-9) -> bool:
        return np.allclose(self.matrix(), other.matrix(), atol=atol)


class Group:
    """A symmetry group. Finite groups enumerate ``elements()``; all groups ``sample(rng)``."""

    name: str
    finite: bool

    @property
    def identity(self):
        raise NotImplementedError

    def compose(self, a, b):
        """The element ``a b`` (apply ``b`` first, then ``a``)."""
        raise NotImplementedError

    def inverse(self, a):
        raise NotImplementedError

    def elements(self) -> list:
        raise TypeError(f"{self.name} is a continuous group: it has no finite element list; use sample()")

    def sample(self, rng: np.random.Generator | int | None = None):
        raise NotImplementedError

    def contains(self, g) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name

    def __eq__(self, other) -> bool:
        return isinstance(other, Group) and self.name == other.name

    def __hash__(self) -> int:
        return hash(self.name)


class PlanarGroup(Group):
    """Subgroups of O(2): C_n, D_n (n >= 1), SO(2), O(2)."""

    def __init__(self, n: int | None, reflections: bool):
        if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"rotation order n must be a positive integer, got {n!r}")
        self.n = None if n is None else int(n)
        self.reflections = reflections
        self.finite = n is not None
        if n is None:
            self.name = "O(2)" if reflections else "SO(2)"
        else:
            self.name = f"D{n}" if reflections else f"C{n}"

    @property
    def order(self) -> int | None:
        if self.n is None:
            return None
        return self.n * (2 if self.reflections else 1)

    @property
    def identity(self) -> O2Element:
        return O2Element(0.0, False)

    def compose(self, a: O2Element, b: O2Element) -> O2Element:
        # F R(b) = R(-b) F, so R(a) F^fa R(b) F^fb = R(a +/- b) F^(fa xor fb).
        return O2Element(a.angle + (-b.angle if a.flip else b.angle), a.flip != b.flip)

    def inverse(self, a: O2Element) -> O2Element:
        # Reflections are involutions; rotations invert by negating the angle.
        return a if a.flip else O2Element(-a.angle, False)

    def rotation(self, k: int) -> O2Element:
        if self.n is None:
            raise TypeError("rotation(k) indexes finite groups; use O2Element(angle) for SO(2)/O(2)")
        return O2Element(TWO_PI * k / self.n, False)

    def elements(self) -> list[O2Element]:
        if self.n is None:
            return super().elements()
        flips = (False, True) if self.reflections else (False,)
        return [O2Element(TWO_PI * k / self.n, f) for f in flips for k in range(self.n)]

    def index(self, g: O2Element) -> int:
        """Position of ``g`` in ``elements()`` (finite groups only)."""
        if self.n is None:
            raise TypeError(f"{self.name} is continuous: elements have no index")
        k = g.angle * self.n / TWO_PI
        kr = int(round(k)) % self.n
        if abs(k - round(k)) > 1e-6 or (g.flip and not self.reflections):
            raise ValueError(f"{g} is not an element of {self.name}")
        return kr + (self.n if g.flip else 0)

    def sample(self, rng=None) -> O2Element:
        rng = np.random.default_rng(rng)
        flip = bool(self.reflections and rng.integers(2))
        if self.n is None:
            return O2Element(rng.uniform(0.0, TWO_PI), flip)
        return O2Element(TWO_PI * int(rng.integers(self.n)) / self.n, flip)

    def contains(self, g) -> bool:
        if not isinstance(g, O2Element) or (g.flip and not self.reflections):
            return False
        if self.n is None:
            return True
        k = g.angle * self.n / TWO_PI
        return abs(k - round(k)) < 1e-6


def CyclicGroup(n: int) -> PlanarGroup:
    """C_n: rotations by multiples of 2*pi/n."""
    return PlanarGroup(n, reflections=False)


def DihedralGroup(n: int) -> PlanarGroup:
    """D_n: C_n plus reflections (order 2n)."""
    return PlanarGroup(n, reflections=True)


def SO2() -> PlanarGroup:
    return PlanarGroup(None, reflections=False)


def O2() -> PlanarGroup:
    return PlanarGroup(None, reflections=True)


#: the mirror x -> -x: rotation by pi after the flip y -> -y, i.e. the matrix ``diag(-1, 1)``
MIRROR_X = O2Element(math.pi, True)


class ReflectionGroup(PlanarGroup):
    """{identity, mirror x -> -x}: a two-element subgroup of O(2) (conjugate to D_1).

    ``DihedralGroup(1)`` is the same abstract group, but its reflection is y -> -y. Scenes mirrored left-right
    along an x axis (a cart on a rail, written in the rail's x-z plane) need this one; its elements are ordinary
    ``O2Element`` s, so ``sign``/``standard`` representations and ``equivariance_error`` work unchanged.
    """

    def __init__(self):
        super().__init__(1, reflections=True)
        self.name = "Z2(x->-x)"

    def elements(self) -> list[O2Element]:
        return [O2Element(0.0, False), MIRROR_X]

    def contains(self, g) -> bool:
        return isinstance(g, O2Element) and (g.isclose(self.identity) or g.isclose(MIRROR_X))

    def index(self, g: O2Element) -> int:
        if not self.contains(g):
            raise ValueError(f"{g} is not an element of {self.name}")
        return int(g.flip)

    def sample(self, rng=None) -> O2Element:
        return self.elements()[int(np.random.default_rng(rng).integers(2))]


class SE2Group(Group):
    """Planar rigid motions; ``rotations`` may restrict to C_n (e.g. a discretised yaw grid)."""

    finite = False

    def __init__(self, rotations: PlanarGroup | None = None, translation_scale: float = 0.1):
        self.rotations = rotations or SO2()
        if self.rotations.reflections:
            raise ValueError("SE2Group rotations must not contain reflections")
        self.translation_scale = float(translation_scale)
        self.name = "SE(2)" if self.rotations.n is None else f"SE(2)[{self.rotations.name}]"

    @property
    def identity(self) -> SE2Element:
        return SE2Element()

    def compose(self, a: SE2Element, b: SE2Element) -> SE2Element:
        t = a.rotation.matrix() @ np.array([b.tx, b.ty]) + np.array([a.tx, a.ty])
        return SE2Element(a.angle + b.angle, t[0], t[1])

    def inverse(self, a: SE2Element) -> SE2Element:
        t = -(a.rotation.matrix().T @ np.array([a.tx, a.ty]))
        return SE2Element(-a.angle, t[0], t[1])

    def sample(self, rng=None) -> SE2Element:
        rng = np.random.default_rng(rng)
        r = self.rotations.sample(rng)
        tx, ty = rng.normal(0.0, self.translation_scale, size=2)
        return SE2Element(r.angle, tx, ty)

    def contains(self, g) -> bool:
        return isinstance(g, SE2Element) and self.rotations.contains(g.rotation)


def as_se2(g) -> SE2Element:
    """``g`` as an ``SE2Element``: SE(2) elements as they are, a rotation-only ``O2Element`` as the rotation
    about the origin; anything else (a reflection, a foreign object) is a ValueError naming it."""
    if isinstance(g, SE2Element):
        return g
    if isinstance(g, O2Element) and not g.flip:
        return SE2Element(g.angle, 0.0, 0.0)
    raise ValueError(f"expected an SE(2) element or a rotation-only O2Element, got {g!r}")


_BY_NAME = {"SO(2)": SO2, "SO2": SO2, "O(2)": O2, "O2": O2}


def group_from_name(name: str) -> Group:
    """Parse ``C4``, ``D8``, ``SO(2)``, ``O(2)``, ``SE(2)``."""
    key = name.strip()
    if key in _BY_NAME:
        return _BY_NAME[key]()
    if key in ("SE(2)", "SE2"):
        return SE2Group()
    if len(key) >= 2 and key[0] in "CD" and key[1:].isdigit() and int(key[1:]) >= 1:
        return (CyclicGroup if key[0] == "C" else DihedralGroup)(int(key[1:]))
    raise ValueError(f"unknown group name {name!r}; expected Cn, Dn, SO(2), O(2) or SE(2)")


def sample_elements(group: Group, k: int, rng=None, include_identity: bool = False) -> Sequence:
    rng = np.random.default_rng(rng)
    out = [group.sample(rng) for _ in range(k)]
    return ([group.identity] + out) if include_identity else out
