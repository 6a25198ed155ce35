"""Learned world models in MPPI: matched parameter counts, exact planner equivariance with the equivariant model,
the plain model's error measured, and the fixed-point tie-break of the symmetric planner."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import symgym.envs  # noqa: F401  (registers ids)
from symgym.agents.mppi import MPPIConfig, MPPIPlanner, learn_world_model
from symgym.agents.mppi_models import ModelRolloutBackend, WorldModel
from symgym.equivariance import DihedralGroup, Symmetry, equivariance_error, sample_elements

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models():
    env = gym.make("SymPointMass-v0")
    return {kind: learn_world_model(env, kind, 300, seed=0, rounds=1, episode_len=30, epochs=4,
                                    planner_kwargs={"samples": 16, "horizon": 5})[0]
            for kind in ("equivariant", "plain")}


def obs_symmetry(env) -> Symmetry:
    sym = env.symmetry
    return Symmetry(group=sym.group, obs=sym.obs, action=sym.transform_action)


@pytest.mark.parametrize("env_id", ["SymPointMass-v0", "SymReach-v0"])
def test_plain_nets_match_the_equivariant_parameter_counts(env_id):
    env = gym.make(env_id).unwrapped
    counts = WorldModel(env.symmetry, kind="plain").parameter_counts()
    for net, c in counts.items():
        ratio = max(c["params"], c["equivariant_params"]) / min(c["params"], c["equivariant_params"])
        assert ratio <= 1.25, f"{env_id} {net}: {c}"


def test_equivariant_nets_are_equivariant_on_reach():
    """SymReach's declared obs rep (standard + trivial + 3 sign + 3 standard) drives the nets directly."""
    env = gym.make("SymReach-v0").unwrapped
    model = WorldModel(env.symmetry, kind="equivariant", group_order=4).eval()
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(5, 12)), dtype=torch.float32)
    u = torch.as_tensor(rng.normal(size=(5, 2)), dtype=torch.float32)
    with torch.no_grad():
        for g in DihedralGroup(4).elements():
            gx = torch.as_tensor(env.symmetry.obs(g), dtype=torch.float32)
            gu = torch.as_tensor(env.symmetry.action(g), dtype=torch.float32)
            torch.testing.assert_close(model.step(x @ gx.T, u @ gu.T), model.step(x, u) @ gx.T, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model.cost(x @ gx.T, u @ gu.T), model.cost(x, u), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model.value(x @ gx.T), model.value(x), atol=1e-5, rtol=1e-5)


def _plan_error(model, symmetric: bool, elements) -> float:
    env = gym.make("SymPointMass-v0").unwrapped
    planner = MPPIPlanner(env, MPPIConfig(samples=32, horizon=8, symmetric=symmetric, group="D4", seed=5),
                          rollout=ModelRolloutBackend(model))
    obs = []
    for seed in range(3):
        o, _ = env.reset(seed=seed)
        obs.append(o.astype(np.float64))

    def plan(o):
        planner.reset()
        return planner.plan(o)

    return equivariance_error(plan, obs_symmetry(env), obs, elements)


def test_symmetric_planner_with_equivariant_model_is_equivariant(models):
    elements = sample_elements(DihedralGroup(4), 6, rng=0)
    err = _plan_error(models["equivariant"], True, elements)
    assert err < 1e-4, f"equivariant model + orbit sampling: {err:.2e} (float32 nets)"


def test_plain_model_breaks_planner_equivariance(models):
    """Measured, not asserted zero: the plain model (or naive noise) makes plan(g.o) != g.plan(o)."""
    elements = sample_elements(DihedralGroup(4), 6, rng=0)
    plain = _plan_error(models["plain"], True, elements)
    naive = _plan_error(models["equivariant"], False, elements)
    print(f"planner equivariance error: plain model {plain:.3f}, naive noise with the equivariant model {naive:.3f}")
    assert plain > 1e-3 and naive > 1e-3


def test_bad_model_kind_is_named():
    env = gym.make("SymPointMass-v0").unwrapped
    with pytest.raises(ValueError, match="'mlp'"):
        WorldModel(env.symmetry, kind="mlp")


# -- fixed points --------------------------------------------------------------------------------------
def hanging_rest(env) -> np.ndarray:
    """SymCartPole at x = 0, theta = pi, at rest: the mirror fixes it (theta -> -pi is the same pose)."""
    env.reset(seed=0)
    s = env.get_state()
    s[env.state_layout["QPOS"]] = [0.0, np.pi]
    s[env.state_layout["QVEL"]] = 0.0
    s[env.state_layout["WARMSTART"]] = 0.0
    return s


def test_symmetric_planner_is_stuck_at_a_fixed_state_and_the_tie_break_frees_it():
    env = gym.make("SymCartPole-v0").unwrapped
    s = hanging_rest(env)
    stuck = MPPIPlanner(env, MPPIConfig(samples=16, horizon=20, symmetric=True, seed=1))
    assert stuck.fixing_elements(np.zeros(16)) == [1]  # equal costs: the mirror fixes the samples
    assert abs(stuck.plan(s)[0, 0]) < 1e-9  # the mirror-fixed action of a force on the rail is zero
    assert stuck.fixing_elements(stuck.last_costs) == [1]
    freed = MPPIPlanner(env, MPPIConfig(samples=16, horizon=20, symmetric=True, seed=1, tie_break=True))
    assert abs(freed.plan(s)[0, 0]) > 1e-3 and freed.ties == 1
    env.reset(seed=3)  # an ordinary state: no tie, so the tie-break leaves the plan (and its equivariance) alone
    ordinary = env.get_state()
    stuck.reset()
    freed.reset()
    np.testing.assert_array_equal(stuck.plan(ordinary), freed.plan(ordinary))
    assert freed.ties == 1
    stuck.close()
    freed.close()


@pytest.mark.parametrize("kind", ["equivariant", "plain"])
def test_fused_rollout_matches_the_nets_step_by_step(models, kind):
    model = models[kind]
    rng = np.random.default_rng(2)
    obs = torch.as_tensor(rng.normal(scale=0.3, size=6), dtype=torch.float32)
    u = torch.as_tensor(rng.normal(scale=0.5, size=(7, 9, 2)), dtype=torch.float32)
    with torch.no_grad():
        x, total, w = obs.expand(7, -1), torch.zeros(7), 1.0
        for t in range(9):
            total += w * model.cost(x, u[:, t])
            x = model.step(x, u[:, t])
            w *= model.gamma
        total += w * model.value(x)
        torch.testing.assert_close(model.rollout_costs(obs, u), total, atol=1e-5, rtol=1e-5)
