"""Physics sanity of the HOD + intrinsic-alignment mock pipeline (physics/galaxies.py)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from symgym.physics.galaxies import (
    GalaxyCatalogue,
    HaloCatalogueConfig,
    HODParams,
    alignment_kappa,
    correlation_functions,
    make_halo_catalogue,
    mean_occupation,
    periodic_pairs,
    populate,
    radial_bins,
    sample_watson,
    simulate,
)

SMALL = HaloCatalogueConfig(n_halos=4000, box_size=60.0, n_clusters=150)
EDGES = radial_bins(12, 0.1, 10.0)


@pytest.fixture(scope="module")
def halos():
    return make_halo_catalogue(SMALL, seed=3)


def _brute_pairs(pos, box, r_max):
    pairs = {}
    for i, j in itertools.combinations(range(len(pos)), 2):
        d = pos[j] - pos[i]
        d -= box * np.round(d / box)
        if np.linalg.norm(d) < r_max:
            pairs[(i, j)] = d
    return pairs


def test_periodic_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    box = 10.0
    # crowd points near the faces so that many pairs only exist through the periodic wrap
    pos = np.mod(rng.normal(0.0, 1.5, size=(150, 3)), box)
    pairs, sep = periodic_pairs(pos, box, 2.5)
    brute = _brute_pairs(pos, box, 2.5)
    got = {(int(i), int(j)): s for (i, j), s in zip(pairs, sep)}
    assert set(got) == set(brute)
    assert len(brute) > 100
    wrapped = [k for k, s in brute.items() if np.any(np.abs(pos[k[1]] - pos[k[0]]) > box / 2)]
    assert len(wrapped) > 20, "test catalogue must exercise the periodic boundary"
    for k in brute:
        np.testing.assert_allclose(got[k], brute[k], atol=1e-12)


def test_pair_histogram_and_alignment_sums_match_brute_force():
    rng = np.random.default_rng(1)
    box, n = 8.0, 120
    pos = rng.uniform(0, box, size=(n, 3))
    e = sample_watson(rng.normal(size=(n, 3)), 0.0, rng)
    cat = GalaxyCatalogue(pos, e, np.ones(n, bool), np.arange(n), box)
    edges = radial_bins(6, 0.3, 3.0)
    stats = correlation_functions(cat, edges)
    dd, po, oo = np.zeros(6), np.zeros(6), np.zeros(6)
    for (i, j), d in _brute_pairs(pos, box, edges[-1]).items():
        r = np.linalg.norm(d)
        b = np.searchsorted(edges, r, side="right") - 1
        if 0 <= b < 6:
            dd[b] += 1
            po[b] += (e[i] @ d / r) ** 2 + (e[j] @ d / r) ** 2
            oo[b] += (e[i] @ e[j]) ** 2
    np.testing.assert_array_equal(stats["dd"], dd)
    ok = dd > 0
    np.testing.assert_allclose(stats["omega"][ok], po[ok] / (2 * dd[ok]) - 1 / 3, atol=1e-12)
    np.testing.assert_allclose(stats["eta"][ok], oo[ok] / dd[ok] - 1 / 3, atol=1e-12)


def test_watson_sampling_moments():
    rng = np.random.default_rng(2)
    ref = np.tile([0.0, 0.6, 0.8], (20000, 1))
    mean_t2 = []
    for mu in (-1.0, -0.5, 0.0, 0.5, 1.0):
        e = sample_watson(ref, mu, rng)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-12)
        mean_t2.append(np.mean((e @ ref[0]) ** 2))
    assert mean_t2[0] < 1e-12 and mean_t2[-1] > 1 - 1e-12  # perpendicular / parallel limits
    assert abs(mean_t2[2] - 1 / 3) < 0.01  # isotropic
    assert np.all(np.diff(mean_t2) > 0.05)  # monotone in mu


def test_mean_occupation_zheng07():
    p = HODParams(log_m_min=12.0, sigma_log_m=0.3, log_m0=11.8, log_m1=13.0, alpha=1.0)
    n_cen, n_sat = mean_occupation(np.array([11.0, 11.8, 12.0, 13.0 + np.log10(1 + 10**-1.2)]), p)
    assert n_cen[2] == pytest.approx(0.5)
    assert n_sat[0] == 0.0 and n_sat[1] == 0.0  # no satellites at or below M0
    assert n_sat[3] == pytest.approx(n_cen[3] * 1.0)  # (M - M0) = M1 gives one satellite per central


def test_populate_counts_and_satellites_inside_host(halos):
    p = HODParams()
    n_cen, n_sat = mean_occupation(halos.log_mass, p)
    counts = [populate(halos, p, np.random.default_rng(s)) for s in range(5)]
    mean_cen = np.mean([g.is_central.sum() for g in counts])
    mean_sat = np.mean([(~g.is_central).sum() for g in counts])
    assert mean_cen == pytest.approx(n_cen.sum(), rel=0.05)
    assert mean_sat == pytest.approx(n_sat.sum(), rel=0.1)
    g = counts[0]
    d = g.positions - halos.positions[g.host]
    d -= halos.box_size * np.round(d / halos.box_size)
    assert np.all(np.linalg.norm(d, axis=1) <= halos.radius[g.host] + 1e-9)
    assert np.all(np.linalg.norm(d[g.is_central], axis=1) == 0.0)


def test_no_alignment_gives_zero_omega_and_eta(halos):
    stats = simulate(halos, HODParams(mu_cen=0.0, mu_sat=0.0), EDGES, n_realisations=12, seed=4)
    mean, sem = stats.mean(0), stats.std(0, ddof=1) / np.sqrt(len(stats))
    for s in (1, 2):
        z = mean[s] / np.maximum(sem[s], 1e-12)
        assert np.all(np.abs(z) < 4.5), z
        assert np.mean(z**2) < 3.0  # chi^2 per bin ~ 1 for pure noise


def test_satellite_alignment_sign_sets_small_scale_omega(halos):
    radial = simulate(halos, HODParams(mu_cen=0.0, mu_sat=0.8), EDGES, n_realisations=3, seed=5).mean(0)
    tangential = simulate(halos, HODParams(mu_cen=0.0, mu_sat=-0.8), EDGES, n_realisations=3, seed=5).mean(0)
    small = slice(0, 5)  # r < ~0.7 Mpc/h: dominated by pairs inside one halo
    assert np.all(radial[1, small] > 0.03)
    assert np.all(tangential[1, small] < -0.03)


def test_central_alignment_gives_large_scale_omega(halos):
    # halo axes point towards cluster centres, so aligned centrals carry omega > 0 on cluster scales
    # (kappa = tan(pi mu / 2) as in halotools: mu_cen = 0.95 is kappa ~ 12.7)
    aligned = simulate(halos, HODParams(mu_cen=0.95, mu_sat=0.0, log_m1=14.5), EDGES, 3, seed=6).mean(0)
    random = simulate(halos, HODParams(mu_cen=0.0, mu_sat=0.0, log_m1=14.5), EDGES, 3, seed=6).mean(0)
    assert np.mean(aligned[1, -4:]) > 0.008
    assert np.mean(aligned[1, -4:]) > np.mean(random[1, -4:]) + 0.006


def test_xi_positive_for_clustered_and_zero_for_poisson():
    clustered = make_halo_catalogue(SMALL, seed=7)
    xi = simulate(clustered, HODParams(), EDGES, 2, seed=0).mean(0)[0]
    assert np.all(xi[:6] > 1.0)
    # uniform halos, no satellites: a Poisson sample, so xi must vanish within counting noise
    poisson = make_halo_catalogue(HaloCatalogueConfig(n_halos=4000, box_size=60.0, cluster_fraction=0.0), seed=7)
    p = HODParams(log_m_min=10.0, sigma_log_m=0.1, log_m0=15.0, log_m1=16.0)
    stats = correlation_functions(populate(poisson, p, np.random.default_rng(0)), EDGES)
    sigma = 1.0 / np.sqrt(np.maximum(stats["rr"], 1.0))
    big = stats["rr"] > 50
    assert np.all(np.abs(stats["xi"][big]) < 5 * sigma[big])


def test_statistics_invariant_under_cube_symmetries(halos):
    """Signed axis permutations map the periodic box onto itself; xi, omega and eta must not change."""
    g = populate(halos, HODParams(), np.random.default_rng(8))
    base = correlation_functions(g, EDGES)
    rng = np.random.default_rng(9)
    for _ in range(3):
        perm, signs = rng.permutation(3), rng.choice([-1.0, 1.0], 3)
        rot = np.eye(3)[perm] * signs[:, None]
        moved = GalaxyCatalogue(np.mod(g.positions @ rot.T, g.box_size), g.orientations @ rot.T,
                                g.is_central, g.host, g.box_size)
        out = correlation_functions(moved, EDGES)
        for k in ("dd", "omega", "eta"):
            np.testing.assert_allclose(out[k], base[k], atol=1e-9)


def test_seeded_reproducibility(halos):
    a = simulate(halos, HODParams(), EDGES, 2, seed=11)
    b = simulate(halos, HODParams(), EDGES, 2, seed=11)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])  # realisations differ: the statistics are stochastic
    np.testing.assert_array_equal(make_halo_catalogue(SMALL, 3).positions, halos.positions)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: HODParams(mu_cen=1.5), "1.5"),
        (lambda: HODParams(sigma_log_m=-0.1), "-0.1"),
        (lambda: HODParams.from_array([1.0, 2.0]), "7 parameters"),
        (lambda: alignment_kappa(-2.0), "-2.0"),
        (lambda: HaloCatalogueConfig(cluster_fraction=1.2), "1.2"),
        (lambda: radial_bins(5, 1.0, 0.5), "0.5"),
        (lambda: periodic_pairs(np.zeros((3, 3)), 10.0, 6.0), "r_max=6.0"),
    ],
)
def test_bad_input_names_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------- halotools cross-check (optional extra)
def test_kappa_is_halotools_mapping_without_halotools():
    for mu in (-0.7, -0.2, 0.0, 0.3, 0.9):
        assert alignment_kappa(mu) == pytest.approx(np.tan(0.5 * np.pi * mu))


def test_halotools_kappa_and_watson_sampling_agree_with_ours():
    pytest.importorskip("halotools")
    from halotools.empirical_models.ia_models.ia_model_components import axes_correlated_with_input_vector
    from halotools.empirical_models.ia_models.ia_strength_models import alignment_strength
    from scipy.stats import ks_2samp

    mus = np.array([-0.8, -0.3, 0.0, 0.4, 0.9])
    # halotools' density is exp(-k cos^2) with k = alignment_strength(mu); ours exp(kappa cos^2)
    np.testing.assert_allclose(alignment_strength(mus), [-alignment_kappa(m) for m in mus], rtol=1e-12, atol=1e-12)
    ref = np.tile([0.0, 0.6, 0.8], (20000, 1))
    for mu in (-0.6, 0.4, 0.8):
        theirs = np.abs(axes_correlated_with_input_vector(ref, p=np.full(len(ref), mu), seed=1) @ ref[0])
        ours = np.abs(sample_watson(ref, mu, np.random.default_rng(1)) @ ref[0])
        assert ks_2samp(theirs, ours).pvalue > 1e-3, mu


def test_halotools_mean_occupation_matches_ours():
    pytest.importorskip("halotools")
    from symgym.physics.galaxies_halotools import halotools_mean_occupation

    log_mass = np.linspace(11.0, 15.0, 81)
    for p in (HODParams(), HODParams(log_m_min=11.6, sigma_log_m=0.15, log_m0=11.2, log_m1=13.6, alpha=1.15)):
        ours, theirs = mean_occupation(log_mass, p), halotools_mean_occupation(log_mass, p)
        np.testing.assert_allclose(theirs[0], ours[0], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(theirs[1], ours[1], rtol=1e-6, atol=1e-12)


def test_halotools_estimators_match_ours_on_the_same_galaxies(halos):
    pytest.importorskip("halotools")
    from symgym.physics.galaxies_halotools import halotools_statistics, xi_in_our_normalisation

    g = populate(halos, HODParams(mu_cen=0.6, mu_sat=0.7), np.random.default_rng(12))
    ours, theirs = correlation_functions(g, EDGES), halotools_statistics(g, EDGES)
    ok = ours["dd"] > 0
    # halotools normalises by N^2, we by N (N - 1): raw 1 + xi differ by exactly N / (N - 1)
    ratio = (1.0 + ours["xi"][ok]) / (1.0 + theirs["xi"][ok])
    np.testing.assert_allclose(ratio, len(g) / (len(g) - 1.0), rtol=1e-9)
    np.testing.assert_allclose(xi_in_our_normalisation(theirs["xi"], len(g))[ok], ours["xi"][ok], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(theirs["omega"][ok], ours["omega"][ok], atol=1e-5)
    np.testing.assert_allclose(theirs["eta"][ok], ours["eta"][ok], atol=1e-5)


def test_halotools_populate_on_our_halos_matches_ours_statistically(halos):
    pytest.importorskip("halotools")
    from symgym.physics.galaxies_halotools import halotools_populate, to_user_supplied_catalog

    p = HODParams(mu_cen=0.7, mu_sat=0.6)
    catalog = to_user_supplied_catalog(halos)
    theirs = [halotools_populate(halos, p, seed=s, catalog=catalog) for s in range(4)]
    ours = [populate(halos, p, np.random.default_rng(s)) for s in range(4)]
    for kind in (True, False):  # centrals, satellites
        n_t = np.mean([(g.is_central == kind).sum() for g in theirs])
        n_o = np.mean([(g.is_central == kind).sum() for g in ours])
        assert n_t == pytest.approx(n_o, rel=0.06)
    stats_t = np.array([[correlation_functions(g, EDGES)[k] for k in ("xi", "omega", "eta")] for g in theirs])
    stats_o = np.array([[correlation_functions(g, EDGES)[k] for k in ("xi", "omega", "eta")] for g in ours])
    se = np.sqrt(stats_t.var(0, ddof=1) / 4 + stats_o.var(0, ddof=1) / 4) + 1e-4
    z = np.abs(stats_t.mean(0) - stats_o.mean(0)) / se
    assert np.mean(z < 4) > 0.9, z  # same model, same halos: differences are realisation noise
