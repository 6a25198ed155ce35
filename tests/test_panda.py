"""PandaPush-v0 / PandaReach-v0: the Panda model, the Cartesian controller, the gym contract and the declared break."""
from __future__ import annotations

import pickle
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401
import mujoco
from mujoco import rollout

from symgym.envs.mujoco_base import STATE_SPEC
from symgym.envs.panda import PandaPushEnv, UnreachableStateError
from symgym.envs.panda_model import ARM_JOINTS, TIP_HEIGHT, TIP_RADIUS, panda_spec
from symgym.envs.sym_push import PUCK_RADIUS, TABLE_RADIUS
from symgym.equivariance.groups import O2Element

pytest.importorskip("pybullet_data")
PUCK_HALF_HEIGHT = 0.02


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
    # a tip at the table's edge, rotated to the edge next to the base, is out of the arm's reach: transform_state
    # says so (an error naming the tip), or with allow_unreachable returns the closest state and the residual
    push.controller.tip_height = TIP_HEIGHT
    assert push.controller.solve_ik(push.data, np.array([0.0, 0.32])) < 1e-4
    mujoco.mj_forward(push.model, push.data)
    with pytest.raises(UnreachableStateError, match="out of the arm's reach"):
        push.transform_state(O2Element(np.pi / 2, False), push.get_state())
    push.transform_state(O2Element(np.pi / 2, False), push.get_state(), allow_unreachable=True)
    assert push.last_transform_residual > 0.01


def test_every_state_in_the_workspace_transforms_without_leaving_reach(push):
    """The declared workspace (0.25 m) is in reach with the hand down: rotated start states never raise."""
    rng = np.random.default_rng(0)
    for seed in range(12):
        push.reset(seed=seed)
        for _ in range(3):
            push.step(rng.uniform(-1, 1, 2))
        for angle in rng.uniform(0, 2 * np.pi, 3):
            push.transform_state(O2Element(angle, bool(rng.integers(2))), push.get_state())
            assert push.last_transform_residual < 1e-4


def test_observation_reads_the_current_kinematics(push):
    """After a step the observed tip is where a fresh forward pass puts it (not one substep behind)."""
    push.reset(seed=2)
    obs = push.step(np.array([0.8, -0.3]))[0]
    fresh = mujoco.MjData(push.model)
    mujoco.mj_setState(push.model, fresh, push.get_state()[:-2], STATE_SPEC)
    mujoco.mj_forward(push.model, fresh)
    np.testing.assert_array_equal(push.data.site_xpos, fresh.site_xpos)
    tip = fresh.site_xpos[push.controller.site][:2]
    np.testing.assert_array_equal(obs[:2], (tip / TABLE_RADIUS).astype(np.float32))


def test_control_and_mujoco_rollout_reproduce_env_step(push):
    """What a batched rollout needs: control(action, state) held for frame_skip substeps is env.step."""
    push.reset(seed=4)
    rng = np.random.default_rng(1)
    for _ in range(3):
        push.step(rng.uniform(-1, 1, 2))
    state, action = push.get_state(), np.array([-0.7, 0.5])
    ctrl = push.control(action, state)
    np.testing.assert_array_equal(ctrl, push.control(action))   # from the env's own data: the same
    push.step(action)
    warm = state[push.state_layout["WARMSTART"]]
    states, _ = rollout.rollout(push.model, mujoco.MjData(push.model), push.physics_state(state[:-2]),
                                np.tile(ctrl, (push.frame_skip, 1)), initial_warmstart=warm)
    np.testing.assert_array_equal(states[0, -1], push.physics_state())


@pytest.fixture()
def fresh_push():
    return PandaPushEnv()


def _table_contacts(env) -> list[float]:
    table = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, "table_top")
    return [c.dist for c in env.data.contact[:env.data.ncon] if table in (c.geom1, c.geom2)]


def test_the_tip_cannot_be_driven_through_the_table_or_the_puck(fresh_push):
    env = fresh_push
    env.reset(seed=0)
    ctrl = env.controller
    # the table: the controller asked to hold the tip 5 cm below the table top
    ctrl.solve_ik(env.data, np.array([0.0, -0.15]))
    mujoco.mj_forward(env.model, env.data)
    ctrl.tip_height = -0.05
    for _ in range(10):
        env.step_velocity(np.zeros(2))
        assert ctrl.tip(env.data)[2] - TIP_RADIUS > -0.003
    assert _table_contacts(env), "the tip is pressed onto the table, so there is a contact"
    # the puck: the tip lowered at 0.1 m/s onto the puck's top and on, aiming 1.5 cm into it (the puck slides on
    # joints and cannot sink; heavy damping keeps it from sliding away from under the tip)
    env.model.dof_damping[env._pair_dof[0]] = 1e4
    env.data.qpos[env._pair_qpos[0]] = [0.1, 0.1]
    ctrl.tip_height = 0.08
    ctrl.solve_ik(env.data, np.array([0.1, 0.1]))
    mujoco.mj_forward(env.model, env.data)
    pusher = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, "pusher")
    touched = False
    for height in (0.07, 0.06, 0.05, 0.045, 0.045, 0.045):
        ctrl.tip_height = height
        env.step_velocity(np.zeros(2))
        assert np.linalg.norm(ctrl.tip(env.data)[:2] - env.puck_pos) < PUCK_RADIUS   # still above the puck
        assert ctrl.tip(env.data)[2] - TIP_RADIUS > 2 * PUCK_HALF_HEIGHT - 0.004
        touched |= any(pusher in (c.geom1, c.geom2) for c in env.data.contact[:env.data.ncon])
    assert touched


def test_the_arm_links_collide_with_the_table(fresh_push):
    """Joint velocity targets that swing the whole arm down: the links stop on the table (a few mm at most)."""
    env = fresh_push
    env.reset(seed=0)
    deepest = 0.0
    env.data.ctrl[:] = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]   # shoulder and elbow forward and down
    for _ in range(100):
        mujoco.mj_step(env.model, env.data)
        deepest = min([deepest] + _table_contacts(env))
    assert deepest < 0.0, "the arm reached the table"
    assert deepest > -0.005
    arm = [g for g in range(env.model.ngeom) if env.model.body(env.model.geom_bodyid[g]).name.startswith("panda_")]
    assert all(env.data.geom_xpos[g][2] > -0.005 for g in arm)


def test_the_tip_tracks_a_fast_command_across_the_workspace():
    """0.4 m/s from points across the 0.25 m workspace (near the base, at the far side, sideways): once moving,
    every 0.1 s period's mean tip velocity is within 10% of the command (the controller solved per substep
    before reached 14% here; the bench maps the whole workspace: results/panda-ik)."""
    env = gym.make("PandaReach-v0").unwrapped
    T, speed = env.control_period, 0.4
    worst = 0.0
    for start in ([0.0, 0.0], [-0.2, 0.0], [0.2, 0.0], [0.0, 0.2], [0.14, -0.14], [-0.14, 0.14]):
        for angle in np.arange(4) * np.pi / 2 + np.pi / 4:
            d = np.array([np.cos(angle), np.sin(angle)])
            if np.linalg.norm(start + 3 * speed * T * d) > 0.24:   # inside the workspace: its edge rule plays no part
                continue
            env.reset(seed=0)
            assert env.controller.solve_ik(env.data, np.array(start)) < 1e-4
            mujoco.mj_forward(env.model, env.data)
            prev = env.tip_pos
            for period in range(3):
                env.step_velocity(speed * d)
                if period:   # the first period accelerates the arm from rest
                    worst = max(worst, np.linalg.norm((env.tip_pos - prev) / T - speed * d) / speed)
                prev = env.tip_pos
    assert worst < 0.10


def test_the_arm_links_collide_with_each_other(fresh_push):
    """Folding the elbow fully in a twisted posture drives the forearm into the upper arm: it stops there."""
    env = fresh_push
    env.reset(seed=0)
    ctrl = env.controller
    target = np.array([-0.17, 0.4, 1.7, -3.07, -1.72, 1.5, -0.42])
    env.data.qpos[ctrl.qpos_idx] = target + np.array([0, 0, 0, 1.57, 0, 0, 0])   # elbow open
    mujoco.mj_forward(env.model, env.data)
    deepest, pairs = 0.0, set()
    for _ in range(300):
        env.data.ctrl[:] = np.clip(3.0 * (target - env.data.qpos[ctrl.qpos_idx]), -1, 1)
        mujoco.mj_step(env.model, env.data)
        for c in env.data.contact[:env.data.ncon]:
            b1, b2 = (env.model.body(env.model.geom_bodyid[g]).name for g in (c.geom1, c.geom2))
            if b1.startswith("panda_") and b2.startswith("panda_"):
                deepest, pairs = min(deepest, c.dist), pairs | {(b1, b2)}
    assert ("panda_link2", "panda_link5") in pairs
    assert deepest > -0.005
    assert env.data.qpos[ctrl.qpos_idx[3]] > target[3] + 0.1   # the elbow stopped short of its target


def _controller_test_states(env, seed: int) -> list[np.ndarray]:
    """States along a random-action episode, and states with one joint 6 cm inside its limit (just outside the
    controller's 5 cm margin), where the joint-limit bounds bind and the saturating solve runs."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    states = []
    for _ in range(12):
        env.step(rng.uniform(-1, 1, 2))
        states.append(env.get_state())
    ctrl = env.controller
    for j in (0, 2, 3, 5):
        env.reset(seed=seed + j)
        env.data.qpos[ctrl.qpos_idx[j]] = ctrl.lower[j] + 0.06
        mujoco.mj_forward(env.model, env.data)
        states.append(env.get_state())
    return states


def test_batched_controller_rows_equal_single_arm_calls(monkeypatch):
    """The vector env runs the controller on N rows at once; each row must be what one env computes alone, bit for
    bit, including rows whose joints saturate (solved row by row) and both kinematics sources."""
    from symgym.envs.panda_model import BatchKinematics, CartesianVelocityController

    env = PandaPushEnv()
    ctrl = env.controller
    states = _controller_test_states(env, 0) + _controller_test_states(env, 1)
    saturated = []
    real = CartesianVelocityController._solve_saturated
    monkeypatch.setattr(CartesianVelocityController, "_solve_saturated",
                        staticmethod(lambda *a: saturated.append(1) or real(*a)))
    rng = np.random.default_rng(2)
    velocities = rng.uniform(-0.5, 0.5, (len(states), 2))
    single, datas = [], []
    for s, v in zip(states, velocities):
        env.set_state(s)
        ctrl.forward_kinematics(env.data)
        single.append(ctrl.joint_velocities(env.data, v))
        datas.append(mujoco.MjData(env.model))
    n_single, saturated[:] = len(saturated), []
    qpos = np.stack([s[env.state_layout["QPOS"]] for s in states])
    rows = np.arange(len(states))
    for kinematics in (lambda q=None: ctrl.kinematics_at(datas, qpos[:, ctrl.qpos_idx] if q is None else q, qpos),
                       lambda q=None, b=BatchKinematics(ctrl, len(states)): b(rows, qpos, q)):
        batched = ctrl.joint_velocities_batch(kinematics(), velocities, kinematics)
        assert np.array_equal(batched, np.stack(single))
    assert n_single > 0 and len(saturated) == 2 * n_single    # saturating rows were part of the comparison


def test_batched_ik_rows_equal_single_solves():
    """solve_ik_batch (the vector env's resets) puts each arm where solve_ik alone does, bit for bit, reachable or
    not; a reachable target is met to within 1e-5 m (the damped fixed point), in far fewer than 200 iterations."""
    env = PandaPushEnv()
    ctrl = env.controller
    targets = np.array([[0.0, 0.0], [0.2, 0.1], [-0.2, -0.1], [0.05, -0.24], [0.3, 0.1], [0.33, 0.0]])
    datas = [mujoco.MjData(env.model) for _ in targets]
    errors = ctrl.solve_ik_batch(datas, targets)
    for target, d, err in zip(targets, datas, errors):
        alone = mujoco.MjData(env.model)
        assert ctrl.solve_ik(alone, target) == err
        assert np.array_equal(alone.qpos, d.qpos)
    assert np.all(errors[:4] < 1e-5) and np.all(errors[4:] > 1e-4)
    calls = []
    fk = ctrl.kinematics_at
    ctrl.kinematics_at = lambda *a: calls.append(1) or fk(*a)
    ctrl.solve_ik(mujoco.MjData(env.model), targets[1])
    assert len(calls) < 40


def test_orientation_error_is_mujocos_rotation_vector():
    """The batched orientation error equals mju_mat2Quat + mju_quat2Vel (the short way round) for any rotation,
    including those past 120 degrees that take MuJoCo's routines."""
    from symgym.envs.panda_model import HAND_DOWN, CartesianVelocityController

    rng = np.random.default_rng(0)
    hands, expected = [], []
    for k in range(400):
        axis = rng.normal(size=3)
        angle = rng.uniform(0, np.pi) if k % 2 else rng.uniform(0, 0.3)
        quat = np.r_[np.cos(angle / 2), np.sin(angle / 2) * axis / np.linalg.norm(axis)]
        err = np.empty(9)
        mujoco.mju_quat2Mat(err, quat)
        hands.append(err.reshape(3, 3).T @ HAND_DOWN)       # HAND_DOWN hand^T = err
        q2 = np.empty(4)
        mujoco.mju_mat2Quat(q2, err)
        q2 = -q2 if q2[0] < 0 else q2
        vel = np.empty(3)
        mujoco.mju_quat2Vel(vel, q2, 1.0)
        expected.append(vel)
    got = CartesianVelocityController.orientation_error(np.stack(hands))
    assert np.abs(got - np.stack(expected)).max() < 1e-14
