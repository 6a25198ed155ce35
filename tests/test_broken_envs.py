"""Approximately symmetric SymPush variants: the declared break is real, tunable, and lives in the model."""
import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401
from symgym.equivariance import DihedralGroup, O2Element

D4 = DihedralGroup(4)
ELEMENTS = [O2Element(np.pi / 2), O2Element(np.pi), O2Element(0.0, True), O2Element(0.7)]


def _dynamics_error(env_id, steps=30, **kwargs):
    """max over g of |step(g.s, g.a) - g.step(s, a)| (planar positions, metres) after ``steps`` steps."""
    env = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    toward = env.puck_pos - env.pusher_pos
    actions = [toward / np.linalg.norm(toward) + 0.3 * rng.normal(size=2) for _ in range(steps)]
    s0 = env.get_state()

    def rollout(state, acts):
        env.set_state(state)
        for a in acts:
            env.step(a)
        return env.get_state()

    def planar(state):  # pusher and puck positions: what the wind pushes (yaw and solver warm start aside)
        return state[env.state_layout["QPOS"]][env._pair_qpos]

    base = rollout(s0, actions)
    errors = []
    for g in ELEMENTS:
        moved = rollout(env.transform_state(g, s0), [env.symmetry.transform_action(g, a) for a in actions])
        errors.append(float(np.abs(planar(moved) - planar(env.transform_state(g, base))).max()))
    return max(errors)


def test_wind_break_grows_with_strength_and_vanishes_at_zero():
    errors = [_dynamics_error("SymPushWind-v0", wind=w) for w in (0.0, 0.05, 0.2, 0.8)]
    assert errors[0] < 1e-9, errors
    assert errors[1] > 1e-4, errors
    assert errors[1] < errors[2] < errors[3], errors


def test_wind_is_declared_and_exposed():
    exact = gym.make("SymPushWind-v0", wind=0.0).unwrapped
    assert exact.symmetry.exact and exact.symmetry.breaking == {}
    env = gym.make("SymPushWind-v0", wind=0.2, wind_direction=np.pi / 2).unwrapped
    assert not env.symmetry.exact
    assert np.allclose(env.symmetry.breaking["wind"], [0.0, 0.2], atol=1e-12)
    assert np.allclose(env.wind_vector, [0.0, 0.2], atol=1e-12)


def test_wind_lives_in_the_model_so_batched_rollouts_see_it():
    from mujoco import rollout

    env = gym.make("SymPushWind-v0", wind=0.5).unwrapped
    env.reset(seed=0)
    assert np.allclose(env.model.opt.gravity[:2], [0.5, 0.0])
    state = env.physics_state()[None]
    ctrl = np.zeros((1, 50, env.model.nu))
    states, _ = rollout.rollout(env.model, mujoco.MjData(env.model), state, ctrl)
    puck0 = env.physics_state()[1 + env._pair_qpos[1]]  # the physics state starts with time
    drift = states[0, -1, 1 + env._pair_qpos[1]] - puck0
    assert drift[0] > 0.02 and abs(drift[1]) < 0.5 * drift[0], drift  # ~a t^2 / 2 = 0.06 less damping


def test_obstacle_breaks_symmetry_only_when_present():
    assert _dynamics_error("SymPushObstacle-v0", obstacle_radius=0.0) < 1e-9
    env = gym.make("SymPushObstacle-v0").unwrapped
    assert not env.symmetry.exact and env.symmetry.breaking["obstacle"]["radius"] == pytest.approx(0.04)
    assert mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, "obstacle") >= 0
    # push the puck straight at the post: the post stops it; in the mirrored scene nothing does
    env.reset(seed=0)
    state = env.get_state()
    post = np.array(env.obstacle["pos"])
    qpos = env.state_layout["QPOS"]
    s = state.copy()
    s[qpos.start + env._pair_qpos[1]] = post - np.array([0.09, 0.0])
    s[qpos.start + env._pair_qpos[0]] = post - np.array([0.14, 0.0])
    assert _push_error(env, s) > 1e-2


def _push_error(env, state):
    g = O2Element(np.pi)
    env.set_state(state)
    for _ in range(25):
        env.step(np.array([1.0, 0.0]))
    direct = env.transform_state(g, env.get_state())
    env.set_state(env.transform_state(g, state))
    for _ in range(25):
        env.step(np.array([-1.0, 0.0]))
    return float(np.abs(env.get_state() - direct).max())


def test_obstacle_resets_are_seeded_and_clear_of_the_post():
    env = gym.make("SymPushObstacle-v0").unwrapped
    for seed in range(10):
        o1, _ = env.reset(seed=seed)
        assert not env._overlaps()
        o2, _ = env.reset(seed=seed)
        assert np.array_equal(o1, o2)


@pytest.mark.parametrize("env_id", ["SymPushWind-v0", "SymPushObstacle-v0"])
def test_gym_contract(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="wind must be"):
        gym.make("SymPushWind-v0", wind=-1.0)
    with pytest.raises(ValueError, match="obstacle_radius must be"):
        gym.make("SymPushObstacle-v0", obstacle_radius=float("nan"))
    with pytest.raises(ValueError, match="obstacle_pos"):
        gym.make("SymPushObstacle-v0", obstacle_pos=(0.5, 0.0))
