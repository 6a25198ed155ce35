"""PandaPush-v0 / PandaReach-v0: the Panda model, the Cartesian controller, the gym contract and the declared break."""
from __future__ import annotations

import pickle
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401
from symgym.envs.panda import PandaPushEnv
from symgym.envs.panda_model import ARM_JOINTS, TIP_HEIGHT, panda_spec
from symgym.equivariance.groups import O2Element

pytest.importorskip("pybullet_data")


@pytest.fixture(scope="module")
def push():
    return PandaPushEnv()


def test_model_is_the_pybullet_panda_with_nine_dof():
    model = panda_spec().compile()
    names = [model.joint(i).name for i in range(model.njnt)]
    assert names[:7] == list(ARM_JOINTS) and model.nq == 9
    assert model.jnt_range[3].tolist() == pytest.approx([-3.1416, 0.0])   # the URDF's elbow limits


def test_missing_pybullet_data_is_a_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pybullet_data", None)
    with pytest.raises(ImportError, match=r"pip install 'symgym\[arm\]'"):
        PandaPushEnv()


@pytest.mark.parametrize("env_id", ["PandaPush-v0", "PandaReach-v0"])
def test_gym_contract_seeding_pickling_and_async_vector_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    a, _ = env.reset(seed=7)
    b, _ = gym.make(env_id).reset(seed=7)
    np.testing.assert_array_equal(a, b)
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    action = np.array([0.3, -0.5], dtype=np.float32)
    np.testing.assert_array_equal(env.unwrapped.step(action)[0], clone.step(action)[0])
    vec = gym.vector.AsyncVectorEnv([lambda: gym.make(env_id)] * 2)
    try:
        obs, _ = vec.reset(seed=0)
        obs, reward, *_ = vec.step(np.zeros((2, 2), dtype=np.float32))
        assert obs.shape == (2, env.observation_space.shape[0]) and np.all(np.isfinite(reward))
    finally:
        vec.close()


def test_bad_input_is_rejected(push):
    push.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        push.step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        push.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="base_x"):
        PandaPushEnv(base_x=0.0)


def test_scenes_are_sympush_scenes(push):
    """Puck, goal (and, where the arm reaches it, the pusher) start where SymPush puts them for the same seed."""
    sym = gym.make("SymPush-v0").unwrapped
    same_pusher = 0
    for seed in range(5):
        obs, _ = push.reset(seed=seed)
        ref, _ = sym.reset(seed=seed)
        np.testing.assert_allclose(obs[4:6], ref[4:6], atol=1e-6)     # puck
        np.testing.assert_allclose(obs[8:10], ref[8:10], atol=1e-6)   # goal
        same_pusher += bool(np.allclose(obs[:2], ref[:2], atol=1e-4))
        assert abs(push.data.site_xpos[push.controller.site][2] - TIP_HEIGHT) < 1e-4
    assert same_pusher >= 3


def test_controller_realises_the_commanded_planar_velocity(push):
    push.reset(seed=0)
    push.controller.solve_ik(push.data, np.array([-0.1, 0.0]))
    import mujoco

    mujoco.mj_forward(push.model, push.data)
    push._prev_tip = push.tip_pos
    for direction in (np.array([0.0, 1.0]), np.array([-0.6, -0.8])):
        for _ in range(3):
            obs, _, _, _, info = push.step(direction)
        np.testing.assert_allclose(obs[2:4], direction, atol=0.1)   # tip velocity in units of max_speed
        assert abs(info["tip_height_error"]) < 0.01


def test_reach_is_solved_by_a_proportional_controller():
    env = gym.make("PandaReach-v0")
    wins = 0
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(np.clip(3.0 * obs[6:8], -1, 1))
            done = term or trunc
        wins += info["is_success"]
    assert wins == 3


def test_symmetry_is_declared_approximate_and_the_break_is_measurable(push):
    sym = push.symmetry
    assert not sym.exact and sym.breaking["arm_base_xy"] == [-0.55, 0.0]
    push.reset(seed=1)
    state = push.get_state()
    obs = push._obs()
    small = O2Element(0.3, False)
    moved = push.transform_state(small, state)
    assert push.last_transform_residual < 1e-4
    push.set_state(moved)
    np.testing.assert_allclose(push._obs(), sym.transform_obs(small, obs), atol=1e-5)
    # a tip at the table's edge, rotated to the edge next to the base, is out of the arm's reach
    assert push.controller.solve_ik(push.data, np.array([0.0, 0.32])) < 1e-4
    import mujoco

    mujoco.mj_forward(push.model, push.data)
    push.transform_state(O2Element(np.pi / 2, False), push.get_state())
    assert push.last_transform_residual > 0.01
