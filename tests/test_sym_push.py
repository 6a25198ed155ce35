"""SymPush-v0: the env contract, and that its declared O(2) symmetry holds for the simulated dynamics."""
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401
from symgym.equivariance import O2, DihedralGroup, O2Element, SO2
from symgym.equivariance.dynamics import contact_rich_actions, dynamics_equivariance_errors, rollout_states

DYNAMICS_TOL = 1e-9   # measured ~1e-14: MuJoCo is deterministic and every force in the scene is isotropic


def dynamics_errors(elements, seed=3, steps=40):
    env = gym.make("SymPush-v0").unwrapped
    env.reset(seed=seed)
    actions = contact_rich_actions(env, steps, np.random.default_rng(seed), aim=env.puck_pos - env.pusher_pos)
    s0 = env.get_state()
    errors = dynamics_equivariance_errors(env, s0, actions, elements)
    return env, s0, rollout_states(env, s0, actions), errors


def test_rollout_actually_pushes_the_puck():
    env, s0, base, _ = dynamics_errors([])
    env.set_state(s0)
    start = env.puck_pos
    env.set_state(base)
    assert np.linalg.norm(env.puck_pos - start) > 0.02, "the equivariance rollout must include contact"


def test_dynamics_equivariant_for_every_element_of_d4():
    _, _, _, errors = dynamics_errors(DihedralGroup(4).elements())
    assert max(errors) < DYNAMICS_TOL, errors


def test_dynamics_equivariant_for_random_o2_elements():
    rng = np.random.default_rng(7)
    elements = [O2().sample(rng) for _ in range(6)] + [SO2().sample(rng) for _ in range(6)]
    _, _, _, errors = dynamics_errors(elements)
    assert max(errors) < DYNAMICS_TOL, errors


def test_observation_and_reward_transform_with_the_state():
    env = gym.make("SymPush-v0").unwrapped
    env.reset(seed=1)
    s = env.get_state()
    obs, reward = env.vector_obs(), env._reward()[0]
    for g in [O2Element(0.7), O2Element(2.0, True)]:
        env.set_state(env.transform_state(g, s))
        assert np.allclose(env.vector_obs(), env.symmetry.transform_obs(g, obs), atol=1e-6)
        assert env._reward()[0] == pytest.approx(reward, abs=1e-9)


def test_image_observation_rotates_with_the_scene():
    env = gym.make("SymPushImage-v0").unwrapped
    env.reset(seed=2)
    s, img = env.get_state(), env._obs()
    for g in DihedralGroup(4).elements():
        env.set_state(env.transform_state(g, s))
        diff = np.abs(env._obs().astype(int) - env.symmetry.transform_obs(g, img).astype(int))
        assert diff.max() <= 1   # anti-aliasing rounds at most one grey level differently


@pytest.mark.parametrize("env_id", ["SymPush-v0", "SymPushImage-v0"])
def test_check_env(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8


def test_time_limit_success_and_state_round_trip():
    env = gym.make("SymPush-v0")
    obs, info = env.reset(seed=0)
    assert env.spec.max_episode_steps == 50 and "is_success" in info
    s = env.unwrapped.get_state()
    a = np.array([0.4, -0.2], dtype=np.float32)
    o1 = env.step(a)[0]
    env.unwrapped.set_state(s)
    assert np.array_equal(env.step(a)[0], o1)
    # Put the puck on the goal: success, bonus and termination.
    u = env.unwrapped
    u.data.qpos[u._pair_qpos[1]] = u.goal_pos
    u.set_state(u.get_state())
    _, r, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert terminated and info["is_success"] and r > 0
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="bad"):
        gym.make("SymPush-v0", obs_mode="bad")


def test_make_with_module_prefix_needs_no_prior_import(tmp_path):
    # the installed name, from a directory where the repository's top-level envs/ folder is not importable
    code = "import gymnasium as g; e = g.make('symgym.envs:SymPush-v0'); print(e.unwrapped.symmetry.group.name)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "O(2)"


def test_public_velocities_are_what_the_observation_scales():
    env = gym.make("SymPush-v0").unwrapped
    env.reset(seed=4)
    for _ in range(3):
        obs, *_ = env.step(np.array([0.6, -0.8], np.float32))
    assert np.linalg.norm(env.pusher_velocity) > 0.05
    np.testing.assert_allclose(obs[2:4] * env.max_speed, env.pusher_velocity, rtol=1e-5)
    np.testing.assert_allclose(obs[6:8] * env.max_speed, env.puck_velocity, rtol=1e-5, atol=1e-7)
