"""SymPointMass-v0: Gymnasium API, exact O(2) equivariance of the dynamics by simulation, disk projection."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401  (registers ids)
from symgym.envs.point_mass import project_to_disk
from symgym.equivariance import O2, O2Element, sample_elements


def make():
    return gym.make("SymPointMass-v0").unwrapped


def test_check_env_passes():
    check_env(gym.make("SymPointMass-v0").unwrapped, skip_render_check=True)


def test_declared_symmetry_moves_actions_off_the_box():
    env = make()
    g = O2Element(angle=np.pi / 4)
    moved = env.symmetry.transform_action(g, np.array([1.0, 0.0]))
    np.testing.assert_allclose(moved, [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    corner = env.symmetry.transform_action(g, np.array([1.0, 1.0]))
    assert np.abs(corner).max() > 1.0  # the group acts beyond +-1: why the feasible set is the disk


def test_disk_projection_commutes_with_the_group():
    rng = np.random.default_rng(0)
    a = rng.normal(scale=1.5, size=(50, 2))
    for g in sample_elements(O2(), 6, rng=1):
        R = g.matrix()
        np.testing.assert_allclose(project_to_disk(a @ R.T), project_to_disk(a) @ R.T, atol=1e-12)
    assert np.linalg.norm(project_to_disk(a), axis=-1).max() <= 1.0 + 1e-12


@pytest.mark.parametrize("seed", [0, 1])
def test_dynamics_are_equivariant_by_simulation(seed):
    """Roll out s with actions a and g.s with g.a for 40 steps at random rotations and mirrors: g.traj == traj'."""
    env, other = make(), make()
    env.reset(seed=seed)
    s0 = env.get_state()
    actions = np.random.default_rng(seed).normal(scale=0.8, size=(40, 2))
    for g in sample_elements(O2(), 4, rng=seed):
        env.set_state(s0)
        other.set_state(env.transform_state(g, s0))
        for a in actions:
            obs, r, *_ = env.step(a)
            obs_g, r_g, *_ = other.step(env.symmetry.transform_action(g, a))
            np.testing.assert_allclose(obs_g, env.symmetry.transform_obs(g, obs), atol=1e-6)
            assert abs(r - r_g) < 1e-9
        np.testing.assert_allclose(other.get_state(), env.transform_state(g, env.get_state()), atol=1e-9)


def test_reset_is_seeded_and_obs_matches_state():
    env = make()
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(env.obs_from_states(env.get_state()), a, atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros(3), np.array([np.nan, 0.0])])
def test_bad_action_is_named(bad):
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="SymPointMass action"):
        env.step(bad)


def test_bad_argument_is_named():
    with pytest.raises(ValueError, match="max_force"):
        gym.make("SymPointMass-v0", max_force=0.0)
