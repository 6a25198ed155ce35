"""AtlasD: group actions, the equivariance loss, Lie-algebra and discrete-component discovery."""
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


# --------------------------------------------------------------------------- task pieces


def test_exact_heat_predictor_is_the_simulator_step():
    from symgym.learn.tasks.atlasd.models import ExactHeatTendency
    from symgym.physics.pde import HeatObstacleConfig, HeatObstacleSim

    sim = HeatObstacleSim(HeatObstacleConfig(size=24, obstacle=(4, 9, 14, 20)))
    u = sim.random_initial(np.random.default_rng(0), 3)
    pred = ExactHeatTendency(sim, torch.from_numpy(sim.obstacle_mask))
    out = pred(torch.from_numpy(u).float()[:, None])[:, 0].double().numpy()
    np.testing.assert_allclose(out, sim.step(u) - u, atol=1e-5)


def test_plain_cnn_width_matches_steerable_parameter_count():
    from symgym.equivariance.groups import PlanarGroup
    from symgym.learn.tasks.atlasd.models import MaskedCNN, SteerableTendencyCNN, count_parameters, matched_cnn_hidden

    mask = torch.zeros(16, 16)
    target = count_parameters(SteerableTendencyCNN(mask, PlanarGroup(4, reflections=True), fields=6))
    plain = count_parameters(MaskedCNN(mask, hidden=matched_cnn_hidden(target, mask)))
    assert abs(plain - target) / target < 0.05


def test_steerable_model_is_equivariant_on_random_group_elements():
    """Random elements of D4 (the grid-exact part of the discovered O(2)), with several widths."""
    from symgym.equivariance.groups import PlanarGroup
    from symgym.learn.tasks.atlasd.models import SteerableTendencyCNN

    rng = np.random.default_rng(5)
    for fields in (1, 3):
        mask = torch.from_numpy((rng.random((15, 15)) < 0.1).astype(np.float32))
        model = SteerableTendencyCNN(mask, PlanarGroup(4, reflections=True), fields=fields).eval()
        u, m = torch.randn(2, 1, 15, 15), mask[None, None].expand(2, 1, 15, 15)
        with torch.no_grad():
            y = model.forward_with_mask(u, m)
            for _ in range(4):
                k, flip = int(rng.integers(4)), bool(rng.integers(2))
                act = lambda t: torch.rot90(t.flip(-1) if flip else t, k, dims=(-2, -1))  # noqa: E731
                torch.testing.assert_close(model.forward_with_mask(act(u), act(m)), act(y), atol=1e-4, rtol=1e-4)


def test_downstream_claims_compare_matched_models_per_size():
    from symgym.learn.tasks.atlasd.downstream import downstream_claims

    steerable = [[0.1, 0.01], [0.12, 0.011], [0.11, 0.012], [0.1, 0.013], [0.13, 0.01]]
    cnn = [[0.3, 0.01], [0.32, 0.012], [0.31, 0.011], [0.29, 0.01], [0.33, 0.012]]

    def result(n_seeds):
        return {"n_train": [1, 4], "seeds": list(range(n_seeds)),
                "models": {"steerable_D4": {"parameters": 100, "test_relative_mse": steerable[:n_seeds]},
                           "cnn": {"parameters": 104, "test_relative_mse": cnn[:n_seeds]}}}

    claims = downstream_claims(result(5))
    assert [c["n_train"] for c in claims] == [1, 4]
    assert claims[0]["holds"] is True and claims[0]["n_seeds"] == 5
    assert claims[1]["holds"] == "inconclusive"
    # the ledger gives no verdict from fewer than 5 seeds a side
    assert downstream_claims(result(3))[0]["holds"] == "underpowered"


def test_merge_downstream_stacks_seed_and_model_parts():
    from symgym.learn.tasks.atlasd.task import merge_downstream

    def part(seed, name, v):
        return {"group": "D4", "n_train": [1, 4], "seeds": [seed], "models": {name: {"parameters": 10, "test_relative_mse": [[v, v / 2]],
                "test_relative_mse_bulk": [[v, v]], "test_relative_mse_mean": [v, v / 2]}}}

    merged = merge_downstream([part(1, "cnn", 0.4), part(0, "steerable_D4", 0.1), part(0, "cnn", 0.2), part(1, "steerable_D4", 0.3)])
    assert merged["seeds"] == [0, 1]
    assert merged["models"]["cnn"]["test_relative_mse"] == [[0.2, 0.1], [0.4, 0.2]]  # seed order, not arrival order
    np.testing.assert_allclose(merged["models"]["steerable_D4"]["test_relative_mse_mean"], [0.2, 0.1])


class _ExactJetObservable(torch.nn.Module):
    """The chart's true observable as a predictor (Minkowski products only: O(1,3)-invariant everywhere),
    except that it is only trusted on positive-energy jets, as a predictor trained on real jets would be."""

    def __init__(self, fam: JetFamily, chart: int):
        super().__init__()
        self.fam, self.chart = fam, chart

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, w, b, e = (float(v) for v in self.fam.params[self.chart])
        eta = torch.tensor(self.fam.eta, dtype=x.dtype)
        dot = lambda u, v: torch.einsum("ni,ij,nj->n", u, eta, v)  # noqa: E731
        total = x.sum(1)
        y = a * torch.sin(w * dot(x[:, 0], x[:, 1])) + b * dot(x[:, 0], x[:, 2]) + e * dot(total, total) / x.shape[1]
        return torch.where(x[:, :, 0].min(1).values > 0, y, y + 10.0)  # off the domain: nothing like f


def test_coset_search_finds_parity_and_not_time_reversal_on_positive_energy_jets():
    from symgym.learn.tasks.atlasd.cosets import COSETS, CosetConfig, invariance_loss, search_coset

    fam = JetFamily(1, 3, 3, seed=0)
    probe = torch.tensor(fam.sample(0, 128, np.random.default_rng(0)), dtype=torch.float32)
    f = _ExactJetObservable(fam, 0)
    cfg = CosetConfig(restarts=1, steps=1)
    losses = {name: search_coset(f, probe, torch.diag(torch.tensor(d, dtype=torch.float32)), cfg, 0)["loss"]
              for name, d in COSETS.items()}
    assert losses["I"] < 1e-10 and losses["P"] < 1e-8  # parity keeps every Minkowski product and E > 0
    assert losses["T"] > 1.0 and losses["PT"] > 1.0  # time reversal leaves the positive-energy domain
    assert invariance_loss([f], [probe], torch.eye(4)) == 0.0
    exact = torch.tensor(fam.observable(0, probe.double().numpy()), dtype=torch.float32)
    assert torch.allclose(f(probe), exact, atol=1e-4)  # the torch observable is the simulator's


# -- training to convergence, several PDE seeds, merging the pieces --------------------------------------------------
def _tiny_regression(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=gen)
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    vx = torch.randn(32, 3, generator=gen)
    # shaped like fields (batch, 1, ...) as the downstream models' outputs are
    return x[:, None], (x @ w)[:, None], vx[:, None], (vx @ w)[:, None]


def test_fit_to_convergence_stops_on_a_plateau_and_keeps_the_best_checkpoint():
    from symgym.learn.tasks.atlasd.downstream import ConvergenceRule, fit_to_convergence, relative_mse

    x, y, vx, vy = _tiny_regression()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    rule = ConvergenceRule(lr=0.05, eval_every=10, patience=3, lr_patience=1, max_steps=5000)
    fit = fit_to_convergence(model, x, y, vx, vy, rule, batch=8, seed=0)
    assert fit["stopped_by"] == "patience" and fit["last_step"] < rule.max_steps  # an exact fit plateaus
    assert fit["steps"][0] == 0 and np.all(np.diff(fit["steps"]) == rule.eval_every)
    assert len(fit["steps"]) == len(fit["val_relative_mse"])
    best = min(fit["val_relative_mse"])
    assert fit["val_relative_mse"][fit["steps"].index(fit["best_step"])] == best < 1e-3
    sq, ref = relative_mse(model, vx, vy)
    assert float(sq.mean() / ref.mean()) == pytest.approx(best, rel=1e-3, abs=1e-6)  # the best checkpoint is loaded
    # a budget too short to plateau: the cap is what stops it, and is reported as such
    capped = fit_to_convergence(torch.nn.Linear(3, 1), x, y, vx, vy, ConvergenceRule(lr=1e-3, eval_every=10, max_steps=30), 8, 0)
    assert capped["stopped_by"] == "max_steps" and capped["last_step"] == 30


def _seed_run(seed, local_loss, global_loss, local_k=1, global_k=0):
    def side(loss, k, comps, cos):
        return {"n_generators": k, "count_losses_by_k": [loss], "cosine_to_truth": cos, "equivariance_loss": loss,
                "equivariance_loss_true_generator": loss, "n_components": comps, "true_components_found": comps,
                "n_true_components": 2, "spurious": 0}
    loc = side(local_loss, local_k, 2, 0.99 + 0.001 * seed)
    loc["predictor_relative_mse"] = [0.01, 0.03, 0.5]  # the last is the obstacle chart: not in the mean
    glo = side(global_loss, global_k, 1, 0.7 + 0.01 * seed)
    glo["predictor_relative_mse_chart_windows"] = 0.01
    return {"seed": seed, "local": loc, "global": glo}


def test_pde_seed_table_and_claims_pair_local_and_global_by_seed():
    from symgym.learn.tasks.atlasd.pde import pde_seed_claims, pde_seed_table, recovers_group

    runs = [_seed_run(s, 0.001 * (1 + s % 2), 1.0 + 0.1 * s) for s in (3, 0, 4, 1, 2)]
    table = pde_seed_table(runs)
    assert table["seeds"] == [0, 1, 2, 3, 4]
    assert table["global"]["best_one_generator_loss"] == [1.0, 1.1, 1.2, 1.3, 1.4]
    assert table["local"]["predictor_relative_mse"] == [0.02] * 5
    assert table["local"]["recovers_group"] == [True] * 5 and table["global"]["recovers_group"] == [False] * 5
    claims = pde_seed_claims(table)
    assert all(c["paired"] and c["n_seeds"] == 5 for c in claims)
    assert [c["holds"] for c in claims] == [True, True]   # group recovery stays a count, not a claim
    assert not recovers_group({**runs[0]["local"], "spurious": 1})
    assert not recovers_group({**runs[0]["local"], "n_generators": 2})
    # three seeds: values recorded, no verdict
    assert {c["holds"] for c in pde_seed_claims(pde_seed_table(runs[:3]))} == {"underpowered"}


def _write_cache(cache, n_seeds, pde=True):
    from symgym.learn.io import write_json

    cache.mkdir()
    for s in range(n_seeds):
        if pde:
            write_json(cache / f"pde_seed{s}.json", _seed_run(s, 0.001, 1.0 + 0.1 * s))
        for name, v in (("steerable_D4", 0.1), ("cnn", 0.3)):
            model = {"parameters": 10, "test_relative_mse": [[v + 0.01 * s]], "test_relative_mse_mean": [v],
                     "best_step": [[50]], "last_step": [[100]], "stopped_by": [["patience"]],
                     "curves": [[{"steps": [0, 50, 100], "val_relative_mse": [1.0, v, v]}]]}
            write_json(cache / f"downstream_{s}_{name[:3]}.json",
                       {"group": "D4", "n_train": [4], "seeds": [s], "rule": {"max_steps": 100}, "models": {name: model}})
    write_json(cache / f"downstream_{n_seeds}_ste.json", {"group": "D4", "n_train": [4], "seeds": [n_seeds], "models": {}})


def _stored_results(path):
    from symgym.learn.io import write_json

    old = {"group": "D4", "n_train": [4], "seeds": [0, 1, 2], "steps": 200,
           "models": {"steerable_D4": {"parameters": 10, "test_relative_mse": [[0.2], [0.2], [0.3]]},
                      "cnn": {"parameters": 10, "test_relative_mse": [[0.3], [0.4], [0.5]]}}}
    write_json(path, {
        "pde_exact_simulator": {"seeds": [0, 1, 2], "local_loss_best": [0.001] * 3, "global_loss_best": [2.0, 1.5, 2.1]},
        "lorentz": {"runs": [{"seed": 0, "true_n_generators": 6, "group": "so(1,3)", "losses_by_k": [0.01] * 6,
                              "comparison_at_true_size": {"max_principal_angle_deg": 1.0},
                              "random_subspace_max_angle_deg": {"mean": 80.0}}]},
        "downstream": old, "atlasd_config": {"downstream_steps": 200}})
    return old


def test_merge_attaches_seeds_and_downstream_and_remakes_the_ledger(tmp_path):
    import json

    from symgym.learn.tasks.atlasd import seeds as seeds_mod

    _write_cache(tmp_path / "cache", 5)  # plus a seed with one model only: left out
    _write_cache(tmp_path / "other", 2, pde=False)  # another convergence rule's runs: attached for comparison
    path = tmp_path / "atlasd.json"
    _stored_results(path)
    out = seeds_mod.merge(path, tmp_path / "cache", tmp_path / "other")
    assert out["downstream_other_rule"]["seeds"] == [0, 1]
    assert out["pde_seeds"]["seeds"] == [0, 1, 2, 3, 4] and len(out["pde_seeds"]["runs"]) == 5
    assert out["downstream"]["seeds"] == [0, 1, 2, 3, 4]
    assert out["downstream"]["models"]["cnn"]["stopped_by"] == [["patience"]] * 5
    assert out["downstream_previous"]["steps"] == 200  # the short-trained result is kept, out of the ledger
    assert "downstream_steps" not in out["atlasd_config"] and "downstream_rule" in out["atlasd_config"]
    assert out["atlasd_config"]["pde_seeds"] == [0, 1, 2, 3, 4]
    ev = {e["claim"]: e for e in out["evidence"]}
    assert all(e["adjustment"] == f"Holm over {len(ev)} claims" for e in ev.values())
    assert sum("trained CNN predictors" in c for c in ev) == 2
    assert sum(c.startswith("AtlasD downstream") and e["n_seeds"] == 5 for c, e in ev.items()) == 1
    assert (tmp_path / "atlasd_downstream_curves.png").exists()
    assert out == json.loads(path.read_text())


def test_merge_keeps_the_stored_downstream_when_too_few_seeds_converged(tmp_path):
    from symgym.learn.tasks.atlasd import seeds as seeds_mod

    _write_cache(tmp_path / "cache", 2, pde=False)
    path = tmp_path / "atlasd.json"
    old = _stored_results(path)
    out = seeds_mod.merge(path, tmp_path / "cache")
    assert out["downstream"] == old and "pde_seeds" not in out
    assert out["downstream_converged_partial"]["seeds"] == [0, 1]
    assert out["atlasd_config"] == {"downstream_steps": 200}
    claims = [e for e in out["evidence"] if e["claim"].startswith("AtlasD downstream")]
    assert len(claims) == 1 and claims[0]["n_seeds"] == 3
