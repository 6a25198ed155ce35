"""AtlasD: group actions, the equivariance loss, Lie-algebra and discrete-component discovery (the task's pieces are
tested in ``test_atlasd_task.py``)."""
import numpy as np
import pytest
import torch

from symgym.equivariance.discovery import (
    DiscoveredGroup,
    DiscreteDiscoveryConfig,
    FieldAction,
    LieDiscoveryConfig,
    VectorAction,
    cosine_similarity_up_to_sign,
    deduplicate_components,
    discover_group,
    distance_to_identity_component,
    equivariance_loss,
    evaluate_group,
    match_components,
    sample_identity_component,
    to_planar_group,
)
from symgym.physics.pde import ChartFunctionFamily

torch.set_num_threads(1)

J = np.array([[0.0, -1.0], [1.0, 0.0]])
FLIP = np.diag([1.0, -1.0])


def _rot(t):
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _random_o2(n, seed):
    rng = np.random.default_rng(seed)
    g = np.stack([_rot(t) for t in rng.uniform(0, 2 * np.pi, n)])
    flips = rng.random(n) < 0.5
    g[flips] = g[flips] @ FLIP
    return torch.tensor(g, dtype=torch.float32)


def test_exp_of_so2_generator_is_rotation():
    gen = torch.Generator().manual_seed(0)
    L = torch.tensor(J, dtype=torch.float64)[None]
    for t in np.random.default_rng(0).uniform(-4, 4, 5):
        np.testing.assert_allclose(torch.linalg.matrix_exp(t * L[0]).numpy(), _rot(t), atol=1e-12)
    g = sample_identity_component(L, 64, 1.0, gen)
    eye = torch.eye(2, dtype=torch.float64)
    assert torch.allclose(g @ g.transpose(1, 2), eye.expand(64, 2, 2), atol=1e-12)
    assert torch.allclose(torch.linalg.det(g), torch.ones(64, dtype=torch.float64), atol=1e-12)
    assert g.std(0).max() > 0.1  # the samples are spread over the group, not all the identity


def test_field_action_matches_grid_symmetries():
    action = FieldAction(9, 4)
    u = torch.randn(2, 1, 9, 9)
    r90 = torch.tensor(J, dtype=torch.float32).expand(2, 2, 2)
    torch.testing.assert_close(action.act_input(r90, u), torch.rot90(u, 3, dims=(-2, -1)), atol=1e-5, rtol=0)
    flip = torch.tensor(FLIP, dtype=torch.float32).expand(2, 2, 2)
    torch.testing.assert_close(action.act_input(flip, u), u.flip(-2), atol=1e-5, rtol=0)


def _equivariant_vector_field(x):
    return torch.sin((x**2).sum(-1, keepdim=True)) * x


def test_loss_zero_for_equivariant_and_large_for_non_equivariant_vector_predictor():
    action = VectorAction(2, output="standard")
    x = [torch.randn(128, 2)]
    g = _random_o2(128, seed=1)
    assert float(equivariance_loss([_equivariant_vector_field], x, action, g)) < 1e-10

    def broken(x):
        return torch.stack([x[:, 0] ** 2, x[:, 1]], dim=-1)

    assert float(equivariance_loss([broken], x, action, g)) > 0.2


def test_loss_zero_for_symmetric_stencil_and_large_for_a_derivative():
    action = FieldAction(15, 5)
    iso = torch.tensor([[1.0, 4.0, 1.0], [4.0, -20.0, 4.0], [1.0, 4.0, 1.0]])[None, None] / 6
    ddx = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])[None, None]
    u = [torch.randn(16, 1, 15, 15)]
    # exact grid symmetries (D4): random 90-degree rotations with random flips
    rng = np.random.default_rng(2)
    g = torch.tensor(
        np.stack([_rot(np.pi / 2 * rng.integers(4)) @ (FLIP if rng.random() < 0.5 else np.eye(2)) for _ in range(16)]),
        dtype=torch.float32,
    )
    lap = lambda v: torch.nn.functional.conv2d(v, iso, padding=1)  # noqa: E731
    grad = lambda v: torch.nn.functional.conv2d(v, ddx, padding=1)  # noqa: E731
    assert float(equivariance_loss([lap], u, action, g)) < 1e-10
    assert float(equivariance_loss([grad], u, action, g)) > 0.5


def _torch_chart_functions(fam):
    eta = torch.tensor(fam.eta, dtype=torch.float32)

    def make(c):
        a, w, b = (float(v) for v in fam.params[c])

        def f(x):
            q = torch.einsum("ni,ij,nj->n", x, eta, x)
            return a * torch.sin(w * q) + b * q

        return f

    return [make(c) for c in range(fam.n_charts)]


def test_discovers_so2_and_the_reflection_for_rotation_invariant_charts():
    fam = ChartFunctionFamily("euclidean", n_charts=2, seed=3)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.rand(256, 2, generator=gen) * 2 - 1 for _ in range(2)]
    group, lie, disc = discover_group(
        _torch_chart_functions(fam),
        inputs,
        VectorAction(2),
        LieDiscoveryConfig(steps=120, restarts=3, batch=32, seed=0),
        DiscreteDiscoveryConfig(n_candidates=4, steps=80, batch=32, seed=0),
    )
    assert cosine_similarity_up_to_sign(group.generators[0], J) > 0.99
    assert group.lie_loss < 1e-3
    match = match_components(group.components, fam.true_components, J[None])
    assert match["hits"] == [True, True] and match["spurious"] == 0
    assert len(group.components) == 2
    assert np.linalg.det(group.components[1]) < 0
    assert to_planar_group(group).name == "D4"


def test_discovers_boost_and_four_components_of_o11():
    fam = ChartFunctionFamily("minkowski", n_charts=2, seed=4)
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.rand(256, 2, generator=gen) * 2 - 1 for _ in range(2)]
    group, _, _ = discover_group(
        _torch_chart_functions(fam),
        inputs,
        VectorAction(2),
        LieDiscoveryConfig(steps=120, restarts=2, batch=32, coef_std=0.5, seed=1),
        DiscreteDiscoveryConfig(n_candidates=10, steps=80, batch=32, coef_std=0.5, seed=1),
    )
    assert cosine_similarity_up_to_sign(group.generators[0], fam.true_generator) > 0.99
    match = match_components(group.components, fam.true_components, fam.true_generator[None])
    assert match["true_components_found"] == 4 and match["spurious"] == 0
    assert to_planar_group(group) is None  # a boost is no rotation


def test_rejects_generator_of_a_function_without_continuous_symmetry():
    def f(x):  # discrete symmetries only: sign flips, and the swap x0 <-> x1 rescaled by 2.5/3
        return torch.cos(3 * x[:, 0]) + torch.cos(2.5 * x[:, 1])

    gen = torch.Generator().manual_seed(2)
    inputs = [torch.rand(256, 2, generator=gen) * 2 - 1]
    group, lie, disc = discover_group(
        [f],
        inputs,
        VectorAction(2),
        LieDiscoveryConfig(steps=80, restarts=2, batch=32, seed=2),
        DiscreteDiscoveryConfig(n_candidates=8, steps=200, batch=32, seed=2),
    )
    assert lie.loss > 0.1 and len(group.generators) == 0
    assert len(group.components) >= 4
    for comp in group.components:  # every representative is a symmetry of f
        assert evaluate_group([f], inputs, VectorAction(2), np.zeros((0, 2, 2)), comp) < 0.02
    # and at least one axis flip diag(+-1, +-1) other than the identity was found
    assert any(np.allclose(np.abs(c), np.eye(2), atol=0.05) and not np.allclose(c, np.eye(2), atol=0.05) for c in group.components)


def test_deduplicate_modulo_identity_component():
    mats = [_rot(0.3), FLIP @ _rot(1.0), _rot(2.0), _rot(0.5) @ FLIP]
    reps = deduplicate_components(mats, J[None] / np.sqrt(2))
    assert len(reps) == 2 and np.linalg.det(reps[1]) < 0
    # with a trivial identity component every distinct matrix is its own component
    assert len(deduplicate_components(mats, np.zeros((0, 2, 2)))) == 5
    assert distance_to_identity_component(_rot(2.5), J[None]) < 2e-3
    assert distance_to_identity_component(FLIP, J[None]) > 0.5


def test_cosine_similarity_ignores_sign_and_scale():
    assert cosine_similarity_up_to_sign(-3 * J, J) == pytest.approx(1.0)
    assert cosine_similarity_up_to_sign(FLIP, J) == pytest.approx(0.0)


def test_to_planar_group_without_reflection_is_cyclic():
    g = DiscoveredGroup(J[None] / np.sqrt(2), np.eye(2)[None], 0.0, [0.0])
    assert to_planar_group(g).name == "C4"


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="'vector'"):
        VectorAction(2, output="vector")
    with pytest.raises(ValueError, match="compare_radius"):
        FieldAction(9, 7)
    with pytest.raises(ValueError, match="one input batch per predictor"):
        equivariance_loss([_equivariant_vector_field], [], VectorAction(2), torch.eye(2)[None])
    with pytest.raises(ValueError, match="3 group elements"):
        equivariance_loss([_equivariant_vector_field], [torch.randn(4, 2)], VectorAction(2), torch.eye(2).expand(3, 2, 2))


def test_steerable_downstream_model_is_d4_equivariant():
    from symgym.equivariance.groups import PlanarGroup
    from symgym.learn.tasks.atlasd.task import SteerableTendencyCNN

    mask = torch.zeros(17, 17)
    mask[2:6, 9:14] = 1
    model = SteerableTendencyCNN(mask, PlanarGroup(4, reflections=True), fields=2).eval()
    u, m = torch.randn(2, 1, 17, 17), mask[None, None].expand(2, 1, 17, 17)
    with torch.no_grad():
        y = model.forward_with_mask(u, m)
        for k in range(1, 4):
            rot = lambda t: torch.rot90(t, k, dims=(-2, -1))  # noqa: E731
            torch.testing.assert_close(model.forward_with_mask(rot(u), rot(m)), rot(y), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.forward_with_mask(u.flip(-1), m.flip(-1)), y.flip(-1), atol=1e-4, rtol=1e-4)
        # with the mask held fixed (the obstacle does not move) the symmetry is broken
        assert (model(torch.rot90(u, 1, dims=(-2, -1))) - torch.rot90(y, 1, dims=(-2, -1))).abs().max() > 1e-3


# --------------------------------------------------------------------------- generator count, >= 3-D algebras

from symgym.equivariance.discovery import (  # noqa: E402
    PointSetAction,
    compare_algebras,
    discover_lie_algebra,
    linearised_symmetry_form,
)
from symgym.equivariance.discovery_count import GeneratorCountConfig, discover_generator_count  # noqa: E402
from symgym.physics.jets import JetFamily, lorentz_algebra_basis  # noqa: E402


def _torch_jet_observables(fam):
    eta = torch.tensor(fam.eta, dtype=torch.float32)

    def make(c):
        a, w, b, e = (float(v) for v in fam.params[c])

        def f(x):
            dot = lambda u, v: torch.einsum("ni,ij,nj->n", u, eta, v)  # noqa: E731
            total = x.sum(1)
            return a * torch.sin(w * dot(x[:, 0], x[:, 1])) + b * dot(x[:, 0], x[:, 2]) + e * dot(total, total) / x.shape[1]

        return f

    return [make(c) for c in range(fam.n_charts)]


def _jet_toy(spatial_dims, seed=0):
    fam = JetFamily(n_charts=2, spatial_dims=spatial_dims, seed=seed)
    rng = np.random.default_rng(seed)
    inputs = [torch.tensor(fam.sample(c, 128, rng), dtype=torch.float32) for c in range(2)]
    return fam, _torch_jet_observables(fam), inputs, PointSetAction(spatial_dims + 1, fam.n_particles)


def test_count_criterion_finds_one_generator_for_rotation_invariant_charts():
    fam = ChartFunctionFamily("euclidean", n_charts=2, seed=3)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.rand(128, 2, generator=gen) * 2 - 1 for _ in range(2)]
    res = discover_generator_count(
        _torch_chart_functions(fam), inputs, VectorAction(2), LieDiscoveryConfig(steps=40, restarts=1, batch=32), GeneratorCountConfig(max_generators=3)
    )
    assert res.n_generators == 1
    assert len(res.losses) == 2 and res.losses[1] > res.thresholds[1] > res.losses[0]  # the second one jumps
    assert cosine_similarity_up_to_sign(res.generators[0], J) > 0.999


def test_count_criterion_finds_three_generators_of_so12_and_they_match_the_truth():
    fam, preds, inputs, action = _jet_toy(spatial_dims=2)
    res = discover_generator_count(
        preds, inputs, action, LieDiscoveryConfig(steps=30, restarts=1, batch=32, coef_std=0.5), GeneratorCountConfig(max_generators=5)
    )
    assert res.n_generators == 3
    assert len(res.losses) == 4 and res.losses[3] > res.thresholds[3]
    cmp = compare_algebras(res.generators, fam.true_generators)
    assert cmp["max_principal_angle_deg"] < 1.0
    assert cmp["structure_constant_rel_error"] < 1e-2 and cmp["closure_residual"] < 1e-2
    assert cmp["trace_form_signature"] == [2, 1]  # two boosts (+), one rotation (-)


def test_linearised_form_null_space_is_so13_for_jet_observables():
    fam, preds, inputs, action = _jet_toy(spatial_dims=3, seed=1)
    q = linearised_symmetry_form(preds, inputs, action, n=128)
    evals, evecs = np.linalg.eigh(q)
    assert evals[5] < 1e-6 * evals[-1] and evals[6] > 1e-4 * evals[-1]  # a 6-dim null space, then a gap
    cmp = compare_algebras(evecs[:, :6].T.reshape(6, 4, 4), lorentz_algebra_basis(3))
    assert cmp["max_principal_angle_deg"] < 0.5 and cmp["trace_form_signature"] == [3, 3]


def test_discovered_basis_is_orthonormal():
    fam, preds, inputs, action = _jet_toy(spatial_dims=2)
    res = discover_lie_algebra(preds, inputs, action, LieDiscoveryConfig(n_generators=2, steps=10, restarts=1, batch=16))
    flat = res.generators.reshape(2, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(2), atol=1e-5)


def test_compare_algebras_is_basis_free_and_tells_so13_from_so4():
    truth = lorentz_algebra_basis(3)
    mix = np.random.default_rng(0).normal(size=(6, 6))  # any invertible change of basis
    same = compare_algebras(np.einsum("ab,bij->aij", mix, truth), truth)
    assert same["max_principal_angle_deg"] < 1e-3 and same["structure_constant_rel_error"] < 1e-8
    assert same["closure_residual"] < 1e-8 and same["trace_form_signature"] == [3, 3]
    so4 = np.stack([m - m.T for m in np.eye(16).reshape(16, 4, 4)[[1, 2, 3, 6, 7, 11]]])
    other = compare_algebras(so4, truth)
    assert other["max_principal_angle_deg"] > 45 and other["trace_form_signature"] == [0, 6]
    assert other["structure_constant_rel_error"] > 0.3


def test_point_set_action_moves_every_point_and_checks_shape():
    action = PointSetAction(3, 2)
    g = torch.randn(5, 3, 3)
    x = torch.randn(5, 2, 3)
    moved = action.act_input(g, x)
    torch.testing.assert_close(moved[:, 1], torch.einsum("bij,bj->bi", g, x[:, 1]))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        action.act_input(g, torch.randn(5, 3, 3))
    with pytest.raises(ValueError, match="max_generators"):
        discover_generator_count([lambda v: v.sum((1, 2))], [x], action, count=GeneratorCountConfig(max_generators=0))
