"""SymReach-v0 and SymCartPole-v0: Gymnasium API, declared symmetry, and dynamics equivariance by simulation."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401  (registers ids)
from symgym.equivariance import MIRROR_X, O2, DihedralGroup, O2Element, ReflectionGroup, relative_error, sample_elements

torch.set_num_threads(1)

ENV_GROUPS = {
    "SymReach-v0": lambda: DihedralGroup(8).elements() + sample_elements(O2(), 6, rng=0),
    "SymCartPole-v0": lambda: ReflectionGroup().elements(),
}


def make(env_id: str):
    return gym.make(env_id).unwrapped


def simulate(env, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    env.set_state(state)
    for a in actions:
        env.step(a)
    return env.get_state()


def physical(env, state: np.ndarray) -> np.ndarray:
    """qpos and qvel: the part of the state that the dynamics evolve."""
    return np.concatenate([state[..., env._layout["QPOS"]], state[..., env._layout["QVEL"]]], axis=-1)


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_check_env_passes(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_declared_symmetry_is_exact(env_id):
    sym = make(env_id).symmetry
    assert sym.exact


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_dynamics_are_equivariant_by_simulation(env_id):
    """step(g.s, g.a) == g.step(s, a) over 60 steps of random actions, for every listed group element."""
    env = make(env_id)
    env.reset(seed=3)
    state = env.get_state()
    actions = np.random.default_rng(0).uniform(-1, 1, size=(60, *env.action_space.shape))
    reference = simulate(env, state, actions)
    for g in ENV_GROUPS[env_id]():
        moved = simulate(env, env.transform_state(g, state), env.symmetry.transform_action(g, actions))
        err = relative_error(physical(env, moved), physical(env, env.transform_state(g, reference)))
        assert err < 1e-8, f"{env_id}: dynamics not equivariant under {g}: relative error {err:.2e}"


def test_equivariance_check_detects_a_wrong_state_transform():
    """The simulation test can fail: forgetting that the elbow angle flips under reflections is caught."""
    env = make("SymReach-v0")
    env.reset(seed=4)
    state = env.get_state()
    actions = np.random.default_rng(1).uniform(-1, 1, size=(30, 2))
    reference = simulate(env, state, actions)
    g = O2Element(0.3, True)
    wrong = super(type(env), env).transform_state(g, state)  # the base class treats only the shoulder
    moved = simulate(env, wrong, env.symmetry.transform_action(g, actions))
    assert relative_error(physical(env, moved), physical(env, env.transform_state(g, reference))) > 1e-2


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_observation_transforms_by_declared_representation(env_id):
    """obs(g.s) == rho_obs(g) obs(s): the declared obs representation matches the state action."""
    env = make(env_id)
    for seed in range(3):
        env.reset(seed=seed)
        state = env.get_state()
        obs = env._obs()
        for g in ENV_GROUPS[env_id]():
            env.set_state(env.transform_state(g, state))
            np.testing.assert_allclose(env._obs(), env.symmetry.transform_obs(g, obs), atol=1e-5)


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_cost_is_invariant(env_id):
    env = make(env_id)
    env.reset(seed=5)
    rng = np.random.default_rng(2)
    states = env.transform_state(O2Element(), np.tile(env.get_state(), (4, 3, 1)))
    states[..., env._layout["QVEL"]] += rng.normal(size=states[..., env._layout["QVEL"]].shape)
    actions = rng.uniform(-1, 1, size=(4, 3, *env.action_space.shape))
    base = env.cost(states, actions)
    for g in ENV_GROUPS[env_id]():
        moved = env.cost(env.transform_state(g, states), env.symmetry.transform_action(g, actions))
        np.testing.assert_allclose(moved, base, rtol=1e-10)


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_reward_is_minus_stage_cost_and_reset_is_seeded(env_id):
    env = make(env_id)
    obs_a, _ = env.reset(seed=7)
    obs_b, _ = env.reset(seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    action = np.full(env.action_space.shape, 0.5, dtype=np.float32)
    _, reward, _, _, _ = env.step(action)
    assert reward == pytest.approx(-float(env.stage_cost(env.get_state(), action)))


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_bad_action_shape_is_rejected(env_id):
    env = make(env_id)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))


def test_reflection_group_is_a_group_of_two_mirrors():
    G = ReflectionGroup()
    e, m = G.elements()
    assert np.allclose(m.matrix(), np.diag([-1.0, 1.0]))  # x -> -x
    assert G.compose(m, m).isclose(e) and G.inverse(m).isclose(m)
    assert G.contains(G.compose(e, m)) and not G.contains(O2Element(0.0, True))
    with pytest.raises(ValueError, match="not an element"):
        G.index(O2Element(math.pi / 2))
    env = make("SymCartPole-v0")
    with pytest.raises(ValueError, match="not an element"):
        env.transform_state(O2Element(math.pi / 2), env.get_state())


def test_cartpole_mirror_negates_cart_and_pole():
    env = make("SymCartPole-v0")
    env.reset(seed=0)
    s = env.get_state()
    m = env.transform_state(MIRROR_X, s)
    np.testing.assert_allclose(m[env._layout["QPOS"]], -s[env._layout["QPOS"]])
    np.testing.assert_allclose(m[env._layout["TIME"]], s[env._layout["TIME"]])


def test_reach_arm_starts_away_from_goal_and_renders():
    env = gym.make("SymReach-v0", render_mode="rgb_array")
    _, info = env.reset(seed=0)
    assert info["goal_distance"] > 0.0
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8 and frame.std() > 0
