"""Galaxy intrinsic-alignment mocks: halos -> HOD galaxies -> correlation functions.

A cheap, seeded stand-in for the simulation pipeline that IAEmu emulates:

1. :func:`make_halo_catalogue` draws a clustered halo catalogue in a periodic box
   (a Thomas cluster process, so halos are clustered on a few-Mpc scale) with a
   power-law mass function, NFW concentrations and halo major axes that point
   preferentially towards their cluster centre (tidal alignment).
2. :func:`populate` places galaxies with a Zheng et al. (2007) HOD: Bernoulli
   centrals at the halo centre, Poisson satellites on an NFW profile. Each galaxy
   gets a 3D orientation (an axis, sign-free) drawn from a Dimroth-Watson
   distribution around its halo's major axis (centrals, strength ``mu_cen``) or the
   radial direction from the halo centre (satellites, strength ``mu_sat``).
3. :func:`correlation_functions` measures, in log-spaced radial bins with periodic
   KD-tree pair finding,

   - ``xi(r)``    position-position (natural estimator DD/RR - 1, RR analytic),
   - ``omega(r)`` position-orientation ``<|e_i . r_hat_ij|^2> - 1/3``,
   - ``eta(r)``   orientation-orientation ``<|e_i . e_j|^2> - 1/3``.

The halo catalogue is fixed by its seed; repeated HOD realisations on it expose the
stochasticity of the statistics, which an emulator must model as aleatoric noise.
Units are Mpc/h and M_sun/h throughout.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import erf

#: order of the HOD + alignment parameters in every parameter array
PARAM_NAMES: tuple[str, ...] = ("log_m_min", "sigma_log_m", "log_m0", "log_m1", "alpha", "mu_cen", "mu_sat")
STAT_NAMES: tuple[str, ...] = ("xi", "omega", "eta")

#: Dimroth-Watson concentration kappa = tan(pi * mu / 2), density ∝ exp(kappa cos^2 theta): mu=0 isotropic,
#: mu=+1 perfectly aligned, mu=-1 perfectly perpendicular to the reference axis. This is halotools'
#: mapping (``ia_strength_models.alignment_strength`` returns k = -tan(pi mu / 2) for a density
#: ∝ exp(-k cos^2 theta)), used by IAEmu's training mocks.
KAPPA_SCALE = 1.0

#: a catalogue at the scale of an HOD mock on a Bolshoi-Planck-like box: (250 Mpc/h)^3, 156,250 halos
#: (the default halo density), ~46,000 galaxies at the default HOD; used to time the simulator
REALISTIC_HALOS_KWARGS = {"n_halos": 156_250, "box_size": 250.0, "n_clusters": 6250}


# --------------------------------------------------------------------------- halos
@dataclass(frozen=True)
class HaloCatalogueConfig:
    """Parameters of the toy halo catalogue (defaults: 10^4 halos in (100 Mpc/h)^3)."""

    n_halos: int = 10000
    box_size: float = 100.0
    n_clusters: int = 400
    cluster_fraction: float = 0.75  # fraction of halos that belong to a cluster
    cluster_scale: float = 2.0  # Gaussian spread of a cluster, Mpc/h
    log_mass_min: float = 11.0
    log_mass_max: float = 14.5
    mass_slope: float = 0.8  # dn/dlogM ∝ M^-mass_slope
    axis_alignment: float = 0.6  # Watson strength of halo axes towards their cluster centre

    def __post_init__(self) -> None:
        if self.n_halos < 2:
            raise ValueError(f"n_halos must be >= 2, got {self.n_halos}")
        if self.box_size <= 0:
            raise ValueError(f"box_size must be positive, got {self.box_size}")
        if not 0.0 <= self.cluster_fraction <= 1.0:
            raise ValueError(f"cluster_fraction must be in [0, 1], got {self.cluster_fraction}")
        if self.log_mass_max <= self.log_mass_min:
            raise ValueError(f"log_mass_max ({self.log_mass_max}) must exceed log_mass_min ({self.log_mass_min})")
        if not -1.0 <= self.axis_alignment <= 1.0:
            raise ValueError(f"axis_alignment must be in [-1, 1], got {self.axis_alignment}")

    def resized(self, n_halos: int, box_size: float) -> "HaloCatalogueConfig":
        """The same catalogue with ``n_halos`` halos in a box of ``box_size``; the cluster count scales with the halos."""
        clusters = max(1, int(round(self.n_clusters * n_halos / self.n_halos)))
        return replace(self, n_halos=n_halos, box_size=box_size, n_clusters=clusters)


@dataclass
class HaloCatalogue:
    positions: np.ndarray  # (N, 3) in [0, box_size)
    log_mass: np.ndarray  # (N,)
    axes: np.ndarray  # (N, 3) unit major axes
    radius: np.ndarray  # (N,) virial radius, Mpc/h
    concentration: np.ndarray  # (N,) NFW concentration
    box_size: float

    def __len__(self) -> int:
        return len(self.log_mass)


def wrap(positions: np.ndarray, box_size: float) -> np.ndarray:
    """Map positions into [0, box_size) (cKDTree rejects a coordinate equal to box_size)."""
    p = np.mod(positions, box_size)
    return np.where(p >= box_size, p - box_size, p)


def make_halo_catalogue(config: HaloCatalogueConfig = HaloCatalogueConfig(), seed: int = 0) -> HaloCatalogue:
    """Draw a clustered halo catalogue; the same ``(config, seed)`` always gives the same halos."""
    rng = np.random.default_rng(seed)
    n, box = config.n_halos, config.box_size
    centres = rng.uniform(0.0, box, size=(config.n_clusters, 3))
    in_cluster = rng.random(n) < config.cluster_fraction
    parent = rng.integers(0, config.n_clusters, size=n)
    offsets = rng.normal(0.0, config.cluster_scale, size=(n, 3))
    positions = np.where(in_cluster[:, None], centres[parent] + offsets, rng.uniform(0.0, box, size=(n, 3)))
    positions = wrap(positions, box)

    # truncated power law in M: inverse CDF of p(logM) ∝ 10^(-s logM)
    s = config.mass_slope * np.log(10.0)
    lo, hi = config.log_mass_min, config.log_mass_max
    u = rng.random(n)
    log_mass = lo - np.log1p(-u * (1.0 - np.exp(-s * (hi - lo)))) / s

    # halo axes lean towards the cluster centre, so central orientations correlate on cluster scales
    to_centre = offsets / np.maximum(np.linalg.norm(offsets, axis=1, keepdims=True), 1e-12)
    reference = np.where(in_cluster[:, None], to_centre, random_unit_vectors(n, rng))
    axes = sample_watson(reference, config.axis_alignment, rng)

    mass = 10.0**log_mass
    radius = 0.16 * (mass / 1e12) ** (1.0 / 3.0)  # R_200 of a 1e12 M_sun/h halo is ~0.16 Mpc/h
    concentration = 10.0 * (mass / 1e12) ** -0.1
    return HaloCatalogue(positions, log_mass, axes, radius, concentration, float(box))


# --------------------------------------------------------------------------- orientations
def random_unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def alignment_kappa(mu: float) -> float:
    """Dimroth-Watson concentration for alignment strength ``mu`` in [-1, 1]."""
    if not -1.0 <= mu <= 1.0:
        raise ValueError(f"alignment strength must be in [-1, 1], got {mu}")
    return float(KAPPA_SCALE * np.tan(0.5 * np.pi * mu)) if abs(mu) < 1.0 else float(np.sign(mu) * np.inf)


def _sample_watson_cos(n: int, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """|cos(theta)| in [0, 1] with density ∝ exp(kappa t^2), by inverse CDF on a fine grid."""
    if np.isinf(kappa):
        return np.ones(n) if kappa > 0 else np.zeros(n)
    if abs(kappa) < 1e-9:
        return rng.random(n)
    # a grid denser near the mode keeps large |kappa| accurate; shift the exponent to avoid overflow
    g = np.linspace(0.0, 1.0, 4097)
    t = 1.0 - (1.0 - g) ** 3 if kappa > 0 else g**3
    density = np.exp(kappa * (t**2 - (1.0 if kappa > 0 else 0.0)))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(t))])
    return np.interp(rng.random(n), cdf / cdf[-1], t)


def sample_watson(reference: np.ndarray, mu: float, rng: np.random.Generator) -> np.ndarray:
    """Unit axes drawn from a Dimroth-Watson distribution about each row of ``reference``.

    ``mu > 0`` concentrates the axes along the reference direction, ``mu < 0`` in the plane
    perpendicular to it, ``mu = 0`` is isotropic. Signs are random (orientations are axial).
    """
    reference = np.asarray(reference, dtype=float)
    if reference.ndim != 2 or reference.shape[1] != 3:
        raise ValueError(f"reference must have shape (N, 3), got {reference.shape}")
    n = len(reference)
    t = _sample_watson_cos(n, alignment_kappa(mu), rng) * rng.choice([-1.0, 1.0], size=n)
    a = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    # orthonormal frame (a, u, v): seed u with the coordinate axis least parallel to a
    helper = np.eye(3)[np.argmin(np.abs(a), axis=1)]
    u = np.cross(a, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(a, u)
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
    s = np.sqrt(np.clip(1.0 - t**2, 0.0, None))
    return t[:, None] * a + s[:, None] * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v)


# --------------------------------------------------------------------------- HOD
@dataclass(frozen=True)
class HODParams:
    """Zheng07 occupation parameters plus central/satellite alignment strengths."""

    log_m_min: float = 12.0
    sigma_log_m: float = 0.3
    log_m0: float = 11.8
    log_m1: float = 13.0
    alpha: float = 1.0
    mu_cen: float = 0.5
    mu_sat: float = 0.5

    def __post_init__(self) -> None:
        if self.sigma_log_m <= 0:
            raise ValueError(f"sigma_log_m must be positive, got {self.sigma_log_m}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        for name in ("mu_cen", "mu_sat"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [-1, 1], got {value}")

    def to_array(self) -> np.ndarray:
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=float)

    @classmethod
    def from_array(cls, values) -> "HODParams":
        values = np.asarray(values, dtype=float).ravel()
        if values.shape != (len(PARAM_NAMES),):
            raise ValueError(f"expected {len(PARAM_NAMES)} parameters {PARAM_NAMES}, got shape {values.shape}")
        return cls(**dict(zip(PARAM_NAMES, map(float, values))))

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def mean_occupation(log_mass: np.ndarray, params: HODParams) -> tuple[np.ndarray, np.ndarray]:
    """Zheng07 mean central and satellite numbers per halo."""
    n_cen = 0.5 * (1.0 + erf((log_mass - params.log_m_min) / params.sigma_log_m))
    excess = np.clip(10.0**log_mass - 10.0**params.log_m0, 0.0, None)
    n_sat = n_cen * (excess / 10.0**params.log_m1) ** params.alpha
    return n_cen, n_sat


def _nfw_radii(concentration: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """r / R_vir drawn from an NFW profile truncated at R_vir (vectorised bisection on the CDF)."""

    def m(x: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.log1p(c * x) - c * x / (1.0 + c * x)

    target = rng.random(len(concentration)) * m(np.ones_like(concentration), concentration)
    lo, hi = np.zeros_like(target), np.ones_like(target)
    for _ in range(30):  # 2^-30 precision in r/R
        mid = 0.5 * (lo + hi)
        below = m(mid, concentration) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


@dataclass
class GalaxyCatalogue:
    positions: np.ndarray  # (G, 3)
    orientations: np.ndarray  # (G, 3) unit axes
    is_central: np.ndarray  # (G,) bool
    host: np.ndarray  # (G,) index of the host halo
    box_size: float

    def __len__(self) -> int:
        return len(self.host)


def populate(halos: HaloCatalogue, params: HODParams, rng: np.random.Generator) -> GalaxyCatalogue:
    """One HOD realisation of galaxies (positions and orientations) on ``halos``."""
    n_cen_mean, n_sat_mean = mean_occupation(halos.log_mass, params)
    cen_host = np.flatnonzero(rng.random(len(halos)) < n_cen_mean)
    sat_host = np.repeat(np.arange(len(halos)), rng.poisson(n_sat_mean))

    radial = random_unit_vectors(len(sat_host), rng)
    r = _nfw_radii(halos.concentration[sat_host], rng) * halos.radius[sat_host]
    sat_pos = wrap(halos.positions[sat_host] + r[:, None] * radial, halos.box_size)

    cen_axes = sample_watson(halos.axes[cen_host], params.mu_cen, rng)
    sat_axes = sample_watson(radial, params.mu_sat, rng)
    return GalaxyCatalogue(
        positions=np.concatenate([halos.positions[cen_host], sat_pos]),
        orientations=np.concatenate([cen_axes, sat_axes]),
        is_central=np.concatenate([np.ones(len(cen_host), bool), np.zeros(len(sat_host), bool)]),
        host=np.concatenate([cen_host, sat_host]),
        box_size=halos.box_size,
    )


# --------------------------------------------------------------------------- statistics
def radial_bins(n_bins: int = 20, r_min: float = 0.1, r_max: float = 16.0) -> np.ndarray:
    """``n_bins + 1`` log-spaced bin edges in Mpc/h."""
    if n_bins < 1 or not 0 < r_min < r_max:
        raise ValueError(f"need n_bins >= 1 and 0 < r_min < r_max, got {n_bins}, {r_min}, {r_max}")
    return np.geomspace(r_min, r_max, n_bins + 1)


def periodic_pairs(positions: np.ndarray, box_size: float, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs i < j closer than ``r_max`` under periodic boundaries, and their separation vectors j - i."""
    if r_max >= 0.5 * box_size:
        raise ValueError(f"r_max={r_max} must be below half the box size {box_size} for minimum-image pairs")
    tree = cKDTree(positions, boxsize=box_size)
    pairs = tree.query_pairs(r_max, output_type="ndarray")
    sep = positions[pairs[:, 1]] - positions[pairs[:, 0]]
    sep -= box_size * np.rint(sep / box_size)
    return pairs, sep


def correlation_functions(galaxies: GalaxyCatalogue, bin_edges: np.ndarray) -> dict[str, np.ndarray]:
    """xi, omega, eta and pair counts in the given radial bins.

    One periodic KD-tree pair search up to the last edge; every per-pair quantity is then a
    vectorised numpy reduction (binning on squared distances, no square roots or norms per pair
    beyond one division).
    """
    bin_edges = np.asarray(bin_edges, dtype=float)
    n_bins = len(bin_edges) - 1
    pos, e, box = galaxies.positions, galaxies.orientations, galaxies.box_size
    n = len(pos)
    pairs, sep = periodic_pairs(pos, box, bin_edges[-1])
    dist2 = np.einsum("ij,ij->i", sep, sep)
    idx = np.searchsorted(bin_edges**2, dist2, side="right") - 1
    idx[idx < 0] = n_bins  # pairs closer than the first edge go to a discarded overflow bin (no copies)

    def bin_sum(weights=None):
        return np.bincount(idx, weights=weights, minlength=n_bins + 1)[:n_bins]

    dd = bin_sum().astype(float)
    shell = 4.0 / 3.0 * np.pi * np.diff(bin_edges**3)
    rr = 0.5 * n * (n - 1) * shell / box**3
    xi = dd / rr - 1.0

    ei, ej = e[pairs[:, 0]], e[pairs[:, 1]]
    oo = np.einsum("ij,ij->i", ei, ej) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):  # a coincident pair (dist2 = 0) lands in the overflow bin
        # each unordered pair gives two position-orientation terms: i's axis and j's axis against r_hat
        po = (np.einsum("ij,ij->i", ei, sep) ** 2 + np.einsum("ij,ij->i", ej, sep) ** 2) / dist2
        omega = bin_sum(po) / (2.0 * dd) - 1.0 / 3.0
        eta = bin_sum(oo) / dd - 1.0 / 3.0
    # an empty bin carries no alignment signal; report zero rather than NaN
    omega = np.where(dd > 0, omega, 0.0)
    eta = np.where(dd > 0, eta, 0.0)
    return {"xi": xi, "omega": omega, "eta": eta, "dd": dd, "rr": rr}


def simulate(
    halos: HaloCatalogue,
    params: HODParams,
    bin_edges: np.ndarray,
    n_realisations: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """Statistics of ``n_realisations`` independent HOD realisations: array (R, 3, n_bins) in STAT_NAMES order."""
    if n_realisations < 1:
        raise ValueError(f"n_realisations must be >= 1, got {n_realisations}")
    rng = np.random.default_rng(seed)
    out = np.empty((n_realisations, len(STAT_NAMES), len(bin_edges) - 1))
    for k in range(n_realisations):
        stats = correlation_functions(populate(halos, params, rng), bin_edges)
        out[k] = [stats[name] for name in STAT_NAMES]
    return out
