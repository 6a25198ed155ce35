"""Coherent physical-optics (PO) radar cross-section of a triangle mesh.

A perfectly conducting body is lit by a plane wave from direction ``d`` (unit vector pointing from
the body to the radar) and the radar measures the backscattered field. In the physical-optics
approximation the induced current lives on the lit surface only, and the (scalar, co-polarised)
monostatic RCS is

    sigma(d) = (4 pi / lambda^2) | I(d) |^2,    I(d) = sum_{lit f} (n_f . d) * int_f exp(2 i k d . r) dA

with wavenumber ``k = 2 pi / lambda``: every surface element contributes with the phase of its
two-way path length, so facets interfere. The integral over one flat triangle is computed in closed
form (the triangle's Fourier transform, via stable divided differences of ``exp(i x)``), so a flat
patch gives the same ``I`` however it is cut into triangles; a curved patch is approximated by its
facets, and ``I`` converges as the mesh is refined (chord error O(h^2), so phase error O(k h^2 / R)).

"Lit" means ``n_f . d > 0``; that is exact visibility for convex bodies (boxes, ellipsoids,
cylinders). Composite (non-convex) shapes would need shadowing and are not used with this response.

Closed forms used by the tests: a flat polygon at normal incidence has sigma = 4 pi A^2 / lambda^2;
a sphere of radius ``a`` has, in PO, ``I = 2 pi a^2 e^{-i beta} [e^{i beta}(1/(i beta) + 1/beta^2) - 1/beta^2]``
with ``beta = 2 k a`` (phase referenced to the centre), tending to the optical limit sigma = pi a^2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symgym.physics.mesh import TriMesh

FACE_CHUNK = 8192


def aspect_directions(n: int) -> np.ndarray:
    """``n`` near-uniform unit vectors (Fibonacci sphere), the radar's aspect angles."""
    if n < 1:
        raise ValueError(f"number of aspect directions must be >= 1, got {n}")
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


@dataclass(frozen=True)
class POConfig:
    """Wavelength(s) of the radar. Several wavelengths are averaged (a band-averaged RCS, which keeps
    the interference but fills the deepest single-frequency nulls); ``floor_db`` clips the dB value."""

    wavelength: float = 0.25
    band: float = 0.4  # relative bandwidth: wavelengths spread over wavelength * (1 +- band / 2)
    n_frequencies: int = 5
    floor_db: float = -40.0

    def __post_init__(self) -> None:
        if not self.wavelength > 0:
            raise ValueError(f"wavelength must be > 0, got {self.wavelength}")
        if not 0 <= self.band < 1:
            raise ValueError(f"band must be in [0, 1), got {self.band}")
        if self.n_frequencies < 1:
            raise ValueError(f"n_frequencies must be >= 1, got {self.n_frequencies}")

    def wavelengths(self) -> np.ndarray:
        if self.n_frequencies == 1:
            return np.array([self.wavelength])
        return self.wavelength * (1 + self.band * np.linspace(-0.5, 0.5, self.n_frequencies))


def _sinc_half(gap: np.ndarray) -> np.ndarray:
    """sin(gap / 2) / (gap / 2) for gap >= 0, with its Taylor series near 0."""
    half = 0.5 * gap
    small = half < 1e-4
    return np.where(small, 1 - half * half / 6, np.sin(half) / np.where(small, 1.0, half))


def _divided_difference_exp(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Second divided difference f[0, alpha, beta] of f(x) = exp(i x), stable for (nearly) coincident nodes.

    With the nodes sorted lo <= mid <= hi, first differences are f[a, b] = i exp(i (a + b) / 2) sinc((b - a) / 2),
    exact for any a, b; the second difference divides by the widest gap hi - lo. Below 1e-3 it is
    f''(mean) / 2 = -exp(i mean) / 2, whose error is O(gap^2 / 24) (the first-order term vanishes at the mean).
    """
    lo = np.minimum(np.minimum(alpha, beta), 0.0)
    hi = np.maximum(np.maximum(alpha, beta), 0.0)
    mid = alpha + beta - lo - hi
    gap = hi - lo
    safe = gap > 1e-3
    upper = 1j * np.exp(0.5j * (mid + hi)) * _sinc_half(hi - mid)
    lower = 1j * np.exp(0.5j * (lo + mid)) * _sinc_half(mid - lo)
    dd = (upper - lower) / np.where(safe, gap, 1.0)
    if not safe.all():
        dd = np.where(safe, dd, -0.5 * np.exp(1j * (lo + mid + hi) / 3))
    return dd


def triangle_phase_integrals(vertices: np.ndarray, faces: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``int_f exp(i q . r) dA`` for every face f and every wave vector q: (F, 3) faces, (K, 3) q -> (F, K).

    With r = a + s (b - a) + t (c - a) over the unit triangle, the integral is
    2 A exp(i q.a) F(alpha, beta), alpha = q.(b - a), beta = q.(c - a), and F = -f[0, alpha, beta]
    for f(x) = exp(i x); F -> 1/2 as q -> 0 (the integral -> A).
    """
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    phase_a = a @ q.T
    alpha, beta = (b - a) @ q.T, (c - a) @ q.T
    shape_factor = -_divided_difference_exp(alpha, beta)
    return 2 * area[:, None] * np.exp(1j * phase_a) * shape_factor


def po_amplitude(mesh: TriMesh, directions: np.ndarray, wavelength: float) -> np.ndarray:
    """The PO integral I(d) (complex, phase referenced to the origin) for each direction: (K,)."""
    directions = np.asarray(directions, dtype=float)
    if directions.ndim != 2 or directions.shape[1] != 3:
        raise ValueError(f"directions must have shape (K, 3), got {directions.shape}")
    if not wavelength > 0:
        raise ValueError(f"wavelength must be > 0, got {wavelength}")
    normals, _ = mesh.face_normals_areas()
    k = 2 * np.pi / wavelength
    cos = normals @ directions.T  # (F, K)
    integrals = triangle_phase_integrals(mesh.vertices, mesh.faces, 2 * k * directions)
    return (np.where(cos > 0, cos, 0.0) * integrals).sum(0)


def po_rcs(mesh: TriMesh, directions: np.ndarray, wavelength: float) -> np.ndarray:
    """Monostatic PO radar cross-section sigma(d) = 4 pi |I(d)|^2 / lambda^2 (area units)."""
    return 4 * np.pi * np.abs(po_amplitude(mesh, directions, wavelength)) ** 2 / wavelength**2


def po_response(mesh: TriMesh, directions: np.ndarray, cfg: POConfig = POConfig()) -> np.ndarray:
    """Band-averaged RCS in dB (10 log10 sigma, clipped at ``cfg.floor_db``): what the simulators learn."""
    directions = np.asarray(directions, dtype=float)
    if directions.ndim != 2 or directions.shape[1] != 3:
        raise ValueError(f"directions must have shape (K, 3), got {directions.shape}")
    lams = cfg.wavelengths()
    normals, _ = mesh.face_normals_areas()
    cos = np.clip(normals @ directions.T, 0.0, None)  # (F, K)
    q = (4 * np.pi / lams)[:, None, None] * directions[None]  # (W, K, 3): all wavelengths in one call
    amplitude = np.zeros((len(lams), len(directions)), dtype=complex)
    for lo in range(0, len(mesh.faces), FACE_CHUNK):  # bounded memory on very fine meshes
        part = triangle_phase_integrals(mesh.vertices, mesh.faces[lo:lo + FACE_CHUNK], q.reshape(-1, 3))
        amplitude += (cos[lo:lo + FACE_CHUNK, None, :] * part.reshape(len(part), len(lams), -1)).sum(0)  # (W, K)
    sigma = (4 * np.pi * np.abs(amplitude) ** 2 / lams[:, None] ** 2).mean(0)
    return np.maximum(10 * np.log10(np.maximum(sigma, 1e-30)), cfg.floor_db)


def sphere_po_rcs(radius: float, wavelength: float) -> float:
    """Closed-form PO backscatter of a sphere (any direction), see the module docstring."""
    beta = 2 * (2 * np.pi / wavelength) * radius
    integral = 2 * np.pi * radius**2 * (np.exp(1j * beta) * (1 / (1j * beta) + 1 / beta**2) - 1 / beta**2)
    return float(4 * np.pi * abs(integral) ** 2 / wavelength**2)


def plate_po_rcs(side_u: float, side_v: float, normal_cos: float, q_u: float, q_v: float, wavelength: float) -> float:
    """Closed-form PO RCS of a flat rectangular plate: (4 pi / lambda^2) |A cos sinc(q_u a/2) sinc(q_v b/2)|^2,
    with (q_u, q_v) the in-plane components of 2 k d and sinc(x) = sin(x)/x."""
    area = side_u * side_v
    amp = area * normal_cos * np.sinc(q_u * side_u / (2 * np.pi)) * np.sinc(q_v * side_v / (2 * np.pi))
    return float(4 * np.pi * amp**2 / wavelength**2)
