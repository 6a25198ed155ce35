"""Cross-check of :mod:`physics.galaxies` against halotools (optional extra ``symgym[halotools]``).

The same halos are handed to halotools as a ``UserSuppliedHaloCatalog``; halotools' own HOD
components (``Zheng07Cens``, ``Zheng07Sats`` modulated by the central occupation, ``TrivialPhaseSpace``,
``NFWPhaseSpace`` with the catalogue's concentrations and radii, ``CentralAlignment``,
``RadialSatelliteAlignment``) populate them, and halotools' estimators (``tpcf`` with analytic
randoms, ``ed_3d``, ``ee_3d``) measure xi, omega and eta. Nothing in the default install imports
this module; it is used by the tests (skipped without halotools) and by whoever wants the check.
"""
from __future__ import annotations

import numpy as np

from symgym.physics.galaxies import GalaxyCatalogue, HaloCatalogue, HODParams

INSTALL_HINT = "halotools is not installed: pip install 'symgym[halotools]'"


def _halotools():
    try:
        import halotools  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    import halotools.empirical_models as em
    from halotools.empirical_models.ia_models.ia_model_components import CentralAlignment, RadialSatelliteAlignment
    from halotools.sim_manager import UserSuppliedHaloCatalog

    return em, CentralAlignment, RadialSatelliteAlignment, UserSuppliedHaloCatalog


def to_user_supplied_catalog(halos: HaloCatalogue):
    """Our halos as a halotools ``UserSuppliedHaloCatalog`` (all hosts, ``halo_upid = -1``)."""
    _, _, _, UserSuppliedHaloCatalog = _halotools()
    n = len(halos)
    ids = np.arange(n, dtype=np.int64)
    return UserSuppliedHaloCatalog(
        redshift=0.0, Lbox=halos.box_size, particle_mass=1e8,
        halo_x=halos.positions[:, 0], halo_y=halos.positions[:, 1], halo_z=halos.positions[:, 2],
        halo_id=ids, halo_hostid=ids, halo_upid=np.full(n, -1, dtype=np.int64),
        halo_mvir=10.0**halos.log_mass, halo_rvir=halos.radius, halo_nfw_conc=halos.concentration,
        halo_vx=np.zeros(n), halo_vy=np.zeros(n), halo_vz=np.zeros(n),
        halo_axisA_x=halos.axes[:, 0], halo_axisA_y=halos.axes[:, 1], halo_axisA_z=halos.axes[:, 2],
    )


def halotools_param_dict(params: HODParams) -> dict[str, float]:
    return {"logMmin": params.log_m_min, "sigma_logM": params.sigma_log_m, "logM0": params.log_m0,
            "logM1": params.log_m1, "alpha": params.alpha,
            "central_alignment_strength": params.mu_cen, "satellite_alignment_strength": params.mu_sat}


def halotools_mean_occupation(log_mass: np.ndarray, params: HODParams) -> tuple[np.ndarray, np.ndarray]:
    """halotools' Zheng07 mean central and (central-modulated) satellite numbers."""
    em = _halotools()[0]
    cens, sats = em.Zheng07Cens(), em.Zheng07Sats(modulate_with_cenocc=True)
    d = halotools_param_dict(params)
    for model in (cens, sats):
        for key in model.param_dict:
            if key in d:
                model.param_dict[key] = d[key]
    mass = 10.0 ** np.asarray(log_mass, dtype=float)
    return np.asarray(cens.mean_occupation(prim_haloprop=mass)), np.asarray(sats.mean_occupation(prim_haloprop=mass))


def halotools_model(params: HODParams):
    """A halotools HOD + alignment model with our parameters (Zheng07 + NFW satellites + IA components)."""
    em, CentralAlignment, RadialSatelliteAlignment, _ = _halotools()
    model = em.HodModelFactory(
        centrals_occupation=em.Zheng07Cens(),
        centrals_profile=em.TrivialPhaseSpace(),
        satellites_occupation=em.Zheng07Sats(modulate_with_cenocc=True),
        satellites_profile=em.NFWPhaseSpace(conc_mass_model="direct_from_halo_catalog"),
        centrals_orientation=CentralAlignment(central_alignment_strength=params.mu_cen),
        satellites_orientation=RadialSatelliteAlignment(satellite_alignment_strength=params.mu_sat),
        model_feature_calling_sequence=("centrals_occupation", "centrals_profile", "satellites_occupation",
                                        "satellites_profile", "centrals_orientation", "satellites_orientation"),
    )
    d = halotools_param_dict(params)
    for key in model.param_dict:
        if key in d:
            model.param_dict[key] = d[key]
    return model


def halotools_populate(halos: HaloCatalogue, params: HODParams, seed: int, catalog=None) -> GalaxyCatalogue:
    """One halotools realisation on our halos, returned in our :class:`GalaxyCatalogue` format."""
    model = halotools_model(params)
    model.populate_mock(catalog if catalog is not None else to_user_supplied_catalog(halos), seed=seed)
    g = model.mock.galaxy_table
    pos = np.mod(np.stack([np.asarray(g[k], dtype=float) for k in ("x", "y", "z")], 1), halos.box_size)
    axes = np.stack([np.asarray(g[f"galaxy_axisA_{k}"], dtype=float) for k in ("x", "y", "z")], 1)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return GalaxyCatalogue(positions=pos, orientations=axes, is_central=np.asarray(g["gal_type"]) == "centrals",
                           host=np.asarray(g["halo_id"], dtype=np.int64), box_size=halos.box_size)


def xi_in_our_normalisation(xi_halotools: np.ndarray, n_galaxies: int) -> np.ndarray:
    """halotools' analytic randoms count N^2 rho dV pairs (its ``tpcf`` docstring), we count the
    N (N - 1) / 2 distinct pairs a Poisson sample has: 1 + xi differs by N / (N - 1)."""
    return (1.0 + np.asarray(xi_halotools)) * n_galaxies / (n_galaxies - 1.0) - 1.0


def halotools_statistics(galaxies: GalaxyCatalogue, bin_edges: np.ndarray) -> dict[str, np.ndarray]:
    """xi (natural estimator, analytic randoms), omega (``ed_3d``) and eta (``ee_3d``) by halotools.

    xi is in halotools' own normalisation; :func:`xi_in_our_normalisation` converts it to ours."""
    _halotools()
    from halotools.mock_observables import tpcf
    from halotools.mock_observables.ia_correlations import ed_3d, ee_3d

    pos, e, box = galaxies.positions, galaxies.orientations, galaxies.box_size
    xi = tpcf(pos, np.asarray(bin_edges), period=box, estimator="Natural")
    omega = ed_3d(pos, e, pos, np.asarray(bin_edges), period=box)
    eta = ee_3d(pos, e, pos, e, np.asarray(bin_edges), period=box)
    return {"xi": np.asarray(xi), "omega": np.asarray(omega), "eta": np.asarray(eta)}
