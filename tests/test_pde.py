"""physics/pde.py: the heat-with-obstacle simulator and the synthetic chart functions."""
import numpy as np
import pytest

from symgym.physics.pde import (
    ChartFunctionFamily,
    HeatObstacleConfig,
    HeatObstacleSim,
    extract_patches,
)


def _d4_images(u):
    """All 8 images of a (..., n, n) field under the square's symmetries."""
    out = []
    for k in range(4):
        r = np.rot90(u, k, axes=(-2, -1))
        out += [r, np.swapaxes(r, -1, -2)]
    return out


def test_step_is_d4_equivariant_when_obstacle_is_centred():
    # a centred obstacle keeps the D4 symmetry of the square: the stencil and boundary are exact
    sim = HeatObstacleSim(HeatObstacleConfig(size=32, obstacle=(13, 19, 13, 19)))
    u = sim.random_initial(np.random.default_rng(1), 2)
    for gu, g_step in zip(_d4_images(u), _d4_images(sim.step(u))):
        np.testing.assert_allclose(sim.step(gu), g_step, atol=1e-12)


def test_off_centre_obstacle_breaks_global_symmetry():
    sim = HeatObstacleSim(HeatObstacleConfig(size=32, obstacle=(4, 10, 20, 28)))
    u = sim.random_initial(np.random.default_rng(2), 1)
    err = np.abs(sim.step(np.rot90(u, 1, axes=(-2, -1))) - np.rot90(sim.step(u), 1, axes=(-2, -1))).max()
    assert err > 0.1


def test_local_patch_away_from_obstacle_commutes_with_rotation():
    sim = HeatObstacleSim()
    u = sim.random_initial(np.random.default_rng(3), 1)[0]
    (r, c) = sim.free_chart_centres(21)[0]
    # rotate only a window around a free chart centre inside the field; the interior reacts the same way
    half, reach = 10, sim.stencil_radius
    rotated = u.copy()
    rotated[r - half : r + half + 1, c - half : c + half + 1] = np.rot90(u[r - half : r + half + 1, c - half : c + half + 1])
    inner = slice(reach, 2 * half + 1 - reach)
    a = extract_patches(sim.step(rotated)[None], [(r, c)], 21)[0, 0][inner, inner]
    b = np.rot90(extract_patches(sim.step(u)[None], [(r, c)], 21)[0, 0])[inner, inner]
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_laplacian_is_isotropic_on_smooth_fields():
    sim = HeatObstacleSim(HeatObstacleConfig(size=48, obstacle=(0, 1, 0, 1)))
    yy, xx = np.mgrid[0:48, 0:48] - 23.5
    s = 5.0
    r2 = xx**2 + yy**2
    u = np.exp(-r2 / (2 * s**2))
    exact = u * (r2 - 2 * s**2) / s**4
    num = sim._laplacian(u)
    assert np.abs(num - exact)[8:-8, 8:-8].max() < 0.02 * np.abs(exact).max()


def test_seeded_and_bounded():
    sim = HeatObstacleSim()
    a = sim.generate_pairs(4, np.random.default_rng(7))
    b = sim.generate_pairs(4, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    bound = max(np.abs(a[0]).max(), sim.config.obstacle_value)
    assert np.abs(a[1]).max() <= bound + 1e-6  # maximum principle of the stable scheme
    assert np.all(a[1][:, sim.obstacle_mask] == sim.config.obstacle_value)


def test_free_charts_avoid_obstacle():
    sim = HeatObstacleSim()
    centres = sim.free_chart_centres(21)
    assert len(centres) >= 4
    masks = extract_patches(sim.obstacle_mask[None].astype(float), centres, 21)
    assert masks.sum() == 0
    near = extract_patches(sim.obstacle_mask[None].astype(float), [sim.obstacle_chart_centre()], 21)
    assert near.sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha_dt": 0.5}, "alpha_dt"),
        ({"obstacle": (10, 5, 0, 3)}, "obstacle"),
        ({"size": 4}, "grid size"),
        ({"substeps": 0}, "substeps"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HeatObstacleSim(HeatObstacleConfig(**kwargs))


def test_bad_field_shape_raises():
    with pytest.raises(ValueError, match="field shape"):
        HeatObstacleSim().step(np.zeros((3, 10, 10)))
    with pytest.raises(ValueError, match="chart centre"):
        extract_patches(np.zeros((1, 16, 16)), [(2, 2)], 9)


def _boost(t):
    return np.array([[np.cosh(t), np.sinh(t)], [np.sinh(t), np.cosh(t)]])


def test_minkowski_chart_functions_have_o11_symmetry():
    fam = ChartFunctionFamily("minkowski", n_charts=3, seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, (200, 2))
    for c in range(3):
        fx = fam(c, x)
        for comp in fam.true_components:
            g = comp @ _boost(0.37)
            np.testing.assert_allclose(fam(c, x @ g.T), fx, atol=1e-10)
        rot = np.array([[0.0, -1.0], [1.0, 0.0]])
        assert np.abs(fam(c, x @ rot.T) - fx).max() > 0.1  # not rotation invariant


def test_euclidean_chart_functions_are_rotation_invariant_and_charts_differ():
    fam = ChartFunctionFamily("euclidean", n_charts=2, seed=1)
    x = np.random.default_rng(1).uniform(-1, 1, (100, 2))
    th = 0.9
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    np.testing.assert_allclose(fam(0, x @ rot.T), fam(0, x), atol=1e-10)
    assert np.abs(fam(0, x) - fam(1, x)).max() > 1e-3
    with pytest.raises(ValueError, match="quadratic form"):
        ChartFunctionFamily("hyperbolic")
    with pytest.raises(ValueError, match="chart index"):
        fam(5, x)


# --------------------------------------------------------------------------- jets (physics/jets.py)

from symgym.physics.jets import JetFamily, lorentz_algebra_basis, minkowski_metric, random_lorentz  # noqa: E402


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_lorentz_basis_preserves_the_metric_and_has_the_right_dimension(spatial_dims):
    eta = minkowski_metric(spatial_dims)
    basis = lorentz_algebra_basis(spatial_dims)
    assert len(basis) == spatial_dims * (spatial_dims + 1) // 2
    for x in basis:
        np.testing.assert_allclose(x.T @ eta + eta @ x, 0, atol=1e-12)
    assert np.linalg.matrix_rank(basis.reshape(len(basis), -1)) == len(basis)
    g = random_lorentz(np.random.default_rng(0), 5, spatial_dims, max_rapidity=1.5)
    for m in g:
        np.testing.assert_allclose(m.T @ eta @ m, eta, atol=1e-10)
        assert np.linalg.det(m) > 0 and m[0, 0] >= 1  # proper, orthochronous


def test_jet_observables_are_lorentz_invariant_and_nothing_more():
    fam = JetFamily(n_charts=2, seed=1)
    rng = np.random.default_rng(1)
    jets = fam.sample(0, 64, rng)
    assert np.all(jets[..., 0] > np.linalg.norm(jets[..., 1:], axis=-1))  # massive, physical momenta
    g = random_lorentz(rng, 64, 3, max_rapidity=1.0)
    moved = np.einsum("nij,npj->npi", g, jets)
    for c in range(2):
        np.testing.assert_allclose(fam.observable(c, moved), fam.observable(c, jets), atol=1e-9)
    # a generic linear map (here a pure spatial shear) changes the observable
    shear = np.eye(4)
    shear[1, 2] = 0.5
    assert np.abs(fam.observable(0, jets @ shear.T) - fam.observable(0, jets)).max() > 1e-2
    assert np.abs(fam.observable(0, jets) - fam.observable(1, jets)).max() > 1e-2  # charts differ


def test_jets_are_seeded_and_spread_by_rapidity():
    fam = JetFamily(seed=2)
    a = fam.sample(1, 32, np.random.default_rng(3))
    np.testing.assert_array_equal(a, fam.sample(1, 32, np.random.default_rng(3)))
    wide = fam.sample(1, 256, np.random.default_rng(4), max_rapidity=1.5)
    assert wide[..., 0].max() > 2 * a[..., 0].max()  # boosts raise energies


def test_jet_family_bad_inputs_raise():
    with pytest.raises(ValueError, match="n_particles"):
        JetFamily(n_particles=2)
    with pytest.raises(ValueError, match="chart index"):
        JetFamily(n_charts=2).observable(2, np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match=r"\(n, 3, 4\)"):
        JetFamily().observable(0, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="spatial_dims"):
        minkowski_metric(0)
