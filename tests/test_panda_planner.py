"""The Panda's planner side: a PlannerEnv view whose action projection and observation cost match the env."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import symgym.envs  # noqa: F401  (registers ids)
from symgym.envs.panda_planner import PandaPlannerView, planner_env, project_to_disc
from symgym.envs.protocols import PlannerEnv
from symgym.equivariance import O2, sample_elements


@pytest.fixture(scope="module")
def reach():
    return gym.make("PandaReach-v0")


def test_view_is_a_planner_env_and_others_pass_through(reach):
    view = planner_env(reach)
    assert isinstance(view, PandaPlannerView) and isinstance(view, PlannerEnv)
    point = gym.make("SymPointMass-v0")
    assert planner_env(point) is point.unwrapped
    with pytest.raises(ValueError, match="PickPlaceEnv cannot be planned in"):
        planner_env(gym.make("HepPickPlace-v0"))


def test_projection_is_the_envs_and_commutes_with_o2():
    from symgym.envs.panda import clip_to_disc

    a = np.random.default_rng(0).normal(scale=1.5, size=(40, 2))
    np.testing.assert_allclose(project_to_disc(a), np.stack([clip_to_disc(x) for x in a]), atol=1e-12)
    for g in sample_elements(O2(), 4, rng=0):
        R = g.matrix()
        np.testing.assert_allclose(project_to_disc(a @ R.T), project_to_disc(a) @ R.T, atol=1e-12)


def test_obs_cost_is_minus_the_reward(reach):
    view = planner_env(reach)
    obs, _ = reach.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(15):
        a = rng.uniform(-1, 1, 2)
        obs, reward, terminated, _, _ = reach.step(a)
        assert abs(view.obs_cost(obs, a) + reward) < 1e-4  # float32 observations
        if terminated:
            break


def test_simulator_rollouts_name_the_gap(reach):
    view = planner_env(reach)
    with pytest.raises(NotImplementedError, match="IK solve per state and step"):
        view.cost(np.zeros((1, 1, 3)), np.zeros((1, 1, 2)))
    with pytest.raises(NotImplementedError, match="learned model"):
        view.actions_to_ctrl(np.zeros(2))
