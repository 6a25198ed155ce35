"""Closed-loop manipulation envs (HEP): the env contract, the oracles, and the declared SE(2) symmetry."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401
from symgym.learn.run.demos import demo_episode, demonstrations, write_demos
from symgym.envs.closed_loop import (ATTACHED, OBJ_POS, ClosedLoopEnv, oracle,
                              transform_action)
from symgym.equivariance import O2Element, SE2Element, SE2Group
from symgym.equivariance.dynamics import dynamics_equivariance_errors, rollout_states

IDS = ["HepPickPlace-v0", "HepPushToTarget-v0"]
DYNAMICS_TOL = 1e-8  # rotations and translations of every body; MuJoCo is deterministic, forces isotropic


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", IDS)
def test_observation_layout(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    pts = obs["points"]
    assert set(np.unique(pts[:, 3])) == {0.0, 1.0, 2.0}
    u = env.unwrapped
    # The object points surround the object's position (label 1), the target points lie flat on the floor.
    assert np.linalg.norm(pts[pts[:, 3] == 1, :2].mean(0) - u.obj_pos[:2]) < 0.01
    assert np.allclose(pts[pts[:, 3] == 2, 2], 0.0, atol=1e-6)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("workspace", ["demo", "transformed"])
def test_oracle_solves_the_task(env_id, workspace):
    env = gym.make(env_id, workspace=workspace)
    solved = sum(demo_episode(env, seed).success for seed in range(10))
    assert solved >= 9, f"{env_id} oracle solved only {solved}/10"


def test_random_policy_rarely_solves_pick_place():
    env = gym.make("HepPickPlace-v0")
    wins = 0
    for seed in range(5):
        env.reset(seed=seed)
        env.action_space.seed(seed)
        done, info = False, {}
        while not done:
            _, _, term, trunc, info = env.step(env.action_space.sample())
            done = term or trunc
        wins += info["is_success"]
    assert wins == 0


def test_pick_place_is_multi_stage():
    """The oracle grasps (attached flag goes on), carries the object off the floor, then releases it."""
    env = gym.make("HepPickPlace-v0")
    ep = demo_episode(env, 3).stacked()
    attached = ep["vector"][:, ATTACHED.start]
    assert attached[0] == 0 and attached.max() == 1
    assert ep["vector"][:, OBJ_POS.start + 2].max() > 0.03  # lifted
    kp = ep["keypose"]
    assert np.linalg.norm(kp[0] - ep["vector"][0, OBJ_POS][:2]) < 1e-6        # stage 1 keypose: the object
    assert np.linalg.norm(kp[-1] - ep["vector"][0, 13:15]) < 1e-6              # stage 2 keypose: the target


def test_suction_only_grabs_when_touching():
    env = gym.make("HepPickPlace-v0").unwrapped
    env.reset(seed=0)
    env.step(np.array([0, 0, 0, 1.0]))  # cup on at hover height: too far above the object
    assert not env.attached


def _contact_rollout(env_id, seed=2, steps=35):
    env = gym.make(env_id).unwrapped
    env.reset(seed=seed)
    s0 = env.get_state()
    actions = []
    for _ in range(steps):  # oracle actions + noise: grasping/pushing contact is part of the check
        a = oracle(env) + np.r_[np.random.default_rng(len(actions)).normal(0, 0.1, 3), 0.0]
        actions.append(a)
        env.step(a)
    return env, s0, actions


@pytest.mark.parametrize("env_id", IDS)
def test_dynamics_equivariant_under_random_se2_elements(env_id):
    env, s0, actions = _contact_rollout(env_id)
    rng = np.random.default_rng(4)
    elements = [SE2Group(translation_scale=0.1).sample(rng) for _ in range(4)] + [O2Element(np.pi / 2)]
    errors = dynamics_equivariance_errors(env, s0, actions, elements)
    assert max(errors) < DYNAMICS_TOL, errors
    # The check is not vacuous: the object moved (pushed or carried) during the rollout.
    env.set_state(s0)
    start = env.obj_pos
    env.set_state(rollout_states(env, s0, actions))
    assert np.linalg.norm(env.obj_pos - start) > 0.02


def test_observation_transforms_with_the_state():
    env = gym.make("HepPickPlace-v0").unwrapped
    env.reset(seed=1)
    env.step(np.array([0.3, -0.2, 0.0, 0.0]))
    s, obs = env.get_state(), env._obs()
    for g in [SE2Element(0.7, 0.05, -0.03), O2Element(2.0)]:
        env.set_state(env.transform_state(g, s))
        moved = env.symmetry.transform_obs(g, obs)
        assert np.allclose(env.vector_obs(), moved["vector"], atol=1e-6)
        # Sampled points move as a set: each transformed object point lies on the moved object's surface.
        obj_pts = moved["points"][moved["points"][:, 3] == 1]
        r = np.linalg.norm(obj_pts[:, :2] - env.obj_pos[:2], axis=1)
        assert r.max() < 0.0251


def test_action_transform_ignores_translation():
    a = np.array([0.5, 0.1, -0.3, 1.0])
    assert np.allclose(transform_action(SE2Element(0.0, 0.3, 0.2), a), a)
    assert np.allclose(transform_action(SE2Element(np.pi / 2), a), [-0.1, 0.5, -0.3, 1.0])


def test_bad_inputs_raise_clear_errors():
    env = gym.make("HepPushToTarget-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="4 finite floats"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="workspace"):
        gym.make("HepPushToTarget-v0", workspace="mirror")
    with pytest.raises(ValueError, match="SE\\(2\\)"):
        env.transform_state(O2Element(0.3, flip=True), env.get_state())


def test_collect_demos_writes_npz(tmp_path):
    data = demonstrations("HepPushToTarget-v0", 2, seed=5)
    write_demos(data, tmp_path / "d.npz", "HepPushToTarget-v0")
    saved = np.load(tmp_path / "d.npz")
    assert set(saved["episode"]) == {0, 1}
    assert saved["points"].shape[1:] == (96, 4) and len(saved["action"]) == len(data["vector"])
    assert str(saved["env_id"]) == "HepPushToTarget-v0"
    assert isinstance(gym.make("HepPushToTarget-v0").unwrapped, ClosedLoopEnv)
