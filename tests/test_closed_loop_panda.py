"""The HEP tasks on a Franka Panda (envs/closed_loop_panda.py): the registered ids pass Gymnasium's checker, the
rendered frame and depth cloud see the scene, the scripted oracles solve seeded episodes in both workspaces,
suction grabs only on contact with a cylinder's top, the two-stage task's observation follows its stage, the
arm's SE(2) break is real and vanishes for the identity, and hep3d trains and evaluates end to end through the CLI."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401  (registers the ids)
from symgym.envs.closed_loop import keypose_label
from symgym.envs.closed_loop_panda import (HOVER_Z, OBJ_HEIGHT, PandaPickPlaceEnv, PandaPushToTargetEnv,
                                           PandaTwoStagePlaceEnv, oracle, symmetry_break)
from symgym.equivariance.groups import SE2Element

pytest.importorskip("pybullet_data", reason="the Panda model comes from pybullet_data")
IDS = ("HepPandaPickPlace-v0", "HepPandaPushToTarget-v0", "HepPandaTwoStagePlace-v0")
CLASSES = (PandaPickPlaceEnv, PandaPushToTargetEnv, PandaTwoStagePlaceEnv)


def _run_oracle(env, seed: int, max_steps: int) -> bool:
    env.reset(seed=seed)
    for _ in range(max_steps):
        _, _, terminated, _, info = env.step(oracle(env))
        if terminated:
            return bool(info["is_success"])
    return False


def test_check_env_and_observation_layout():
    env = gym.make("HepPandaPickPlace-v0", disable_env_checker=True)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        obs, _ = env.reset(seed=0)
        assert set(obs) == {"vector", "points"}
        assert obs["vector"].shape == (16,) and obs["points"].shape == (256, 6)
        u = env.unwrapped
        # the vector is HepPickPlace's layout, the end effector being the cup's face
        np.testing.assert_allclose(obs["vector"][0:3], u.ee_pos, atol=1e-6)
        np.testing.assert_allclose(obs["vector"][7:10], u.obj_pos, atol=1e-6)
        assert obs["vector"][2] == pytest.approx(HOVER_Z, abs=1e-3)
        # the unlabelled cloud sees the cylinder: points on its top
        top = u.obj_pos + [0, 0, OBJ_HEIGHT]
        assert np.linalg.norm(obs["points"][:, :3] - top, axis=1).min() < 0.01
    finally:
        env.close()


def test_depth_cloud_filters_the_robot_out_and_the_frame_still_shows_it():
    on, off = PandaPushToTargetEnv(), PandaPushToTargetEnv(self_filter=False)
    try:
        obs_on, _ = on.reset(seed=3)
        obs_off, _ = off.reset(seed=3)
        ee = on.ee_pos

        def rod(points):   # points on the cup and rod: above the face, within 2 cm of its axis
            p = points[:, :3]
            return int(((np.linalg.norm(p[:, :2] - ee[:2], axis=1) < 0.02) & (p[:, 2] > ee[2] - 0.002)).sum())

        assert rod(obs_on["points"]) == 0 and rod(obs_off["points"]) > 5
        assert (obs_on["points"][:, 2] > 0.1).mean() < 0.05 < (obs_off["points"][:, 2] > 0.1).mean()
        # the puck is in both clouds; the groups are restored after the cameras render
        top = on.obj_pos + [0, 0, OBJ_HEIGHT]
        assert np.linalg.norm(obs_on["points"][:, :3] - top, axis=1).min() < 0.01
        assert not on.model.geom_group[on._robot_geoms].any()
    finally:
        on.close()
        off.close()
    with pytest.raises(ValueError, match="self_filter"):
        PandaPickPlaceEnv(obs_mode="vector", self_filter="yes")


def test_rendered_frame_is_not_blank():
    env = PandaPickPlaceEnv(render_mode="rgb_array", obs_mode="vector")
    try:
        env.reset(seed=0)
        frame = env.render()
        assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
        assert frame.std() > 10 and len(np.unique(frame.reshape(-1, 3), axis=0)) > 100
    finally:
        env.close()


@pytest.mark.parametrize("cls,max_steps", [(PandaPickPlaceEnv, 80), (PandaPushToTargetEnv, 80),
                                           (PandaTwoStagePlaceEnv, 160)])
@pytest.mark.parametrize("workspace", ["demo", "transformed"])
def test_oracle_solves_two_seeds(cls, max_steps, workspace):
    env = cls(obs_mode="vector", workspace=workspace)
    assert all(_run_oracle(env, seed, max_steps) for seed in (0, 1))


def test_suction_grabs_only_on_contact_with_the_top():
    env = PandaPickPlaceEnv(obs_mode="vector")
    env.reset(seed=2)
    obj = env.obj_pos

    def go(goal, suction, n):
        for _ in range(n):
            env.step(np.r_[env._move_toward(goal, speed=0.5), suction])

    # suction on while hovering 1.5 cm above the top: no contact, nothing attached
    go(np.r_[obj[:2], obj[2] + OBJ_HEIGHT + 0.015], 1.0, 40)
    assert env.touching_top() is None and not env.attached
    assert np.linalg.norm(env.obj_pos - obj) < 1e-3
    # pressing on the top with suction on: attached, and the cylinder lifts with the cup
    go(np.r_[obj[:2], obj[2] + OBJ_HEIGHT - 0.003], 1.0, 15)
    assert env.attached
    go(np.r_[obj[:2], HOVER_Z], 1.0, 20)
    assert env.obj_pos[2] > 0.04
    # suction off: released, it falls back to the floor
    go(env.ee_pos, -1.0, 20)
    assert not env.attached and env.obj_pos[2] < 0.005


def test_suction_does_not_grab_from_the_side():
    env = PandaPickPlaceEnv(obs_mode="vector")
    env.reset(seed=3)
    obj = env.obj_pos
    side = obj[:2] + np.array([0.05, 0.0])
    for goal in (np.r_[side, HOVER_Z], np.r_[side, 0.015], np.r_[obj[:2] + [0.03, 0.0], 0.015]):
        for _ in range(25):
            env.step(np.r_[env._move_toward(goal, speed=0.5), 1.0])
    # the cup pressed against the side (the cylinder was pushed), suction on all along: nothing attached
    assert np.linalg.norm(env.obj_pos[:2] - obj[:2]) > 0.002
    assert not env.attached


def test_push_task_never_attaches():
    env = PandaPushToTargetEnv(obs_mode="vector")
    env.reset(seed=0)
    obj = env.obj_pos
    for _ in range(40):
        env.step(np.r_[env._move_toward(np.r_[obj[:2], obj[2] + OBJ_HEIGHT - 0.003], speed=0.5), 1.0])
    assert not env.attached


def test_two_stage_observation_follows_the_stage():
    env = PandaTwoStagePlaceEnv(obs_mode="vector", stage_bonus=0.5, time_penalty=0.0)
    obs, _ = env.reset(seed=4)
    a0, b0, target = env.object_pos(0), env.object_pos(1), env.target_marker(0)
    assert env.stage == 1
    np.testing.assert_allclose(obs["vector"][7:10], a0, atol=1e-6)
    np.testing.assert_allclose(obs["vector"][13:16], target, atol=1e-6)
    rewards = []
    for _ in range(160):
        obs, reward, terminated, _, _ = env.step(oracle(env))
        rewards.append(reward)
        if env.stage == 2 and not env.attached and np.linalg.norm(env.ee_pos[:2] - env.object_pos(1)[:2]) > 0.05:
            break
    assert env.stage == 2 and not terminated
    assert rewards.count(0.5) == 1          # the stage bonus, once
    a = env.object_pos(0)
    np.testing.assert_allclose(obs["vector"][7:10], env.object_pos(1), atol=1e-6)   # B is now the object
    np.testing.assert_allclose(obs["vector"][13:16], a + [0, 0, OBJ_HEIGHT], atol=1e-6)   # ...going onto A
    assert np.linalg.norm(env.object_pos(1)[:2] - b0[:2]) < 0.01
    # the keypose label of a held B is the top of B set down on A
    held = obs["vector"].copy()
    held[6] = 1.0
    assert keypose_label(held)[2] == pytest.approx(a[2] + 2 * OBJ_HEIGHT, abs=1e-5)


def test_transformed_layouts_stay_inside_the_workspace():
    env = PandaTwoStagePlaceEnv(obs_mode="vector", workspace="transformed", max_shift=0.1)
    for seed in range(20):
        env.reset(seed=seed)
        for p in (env.object_pos(0), env.object_pos(1), env.target_marker(0), env.ee_pos):
            assert np.linalg.norm(p[:2]) <= env.workspace_radius - 0.05 + 1e-9 or p is env.ee_pos


def test_arm_breaks_se2_and_the_identity_does_not():
    env = PandaPickPlaceEnv(obs_mode="vector")
    assert not env.symmetry.exact and env.symmetry.breaking["arm_base_xy"] == [-0.55, 0.0]
    env.reset(seed=0)
    state = env.get_state()
    np.testing.assert_allclose(env.transform_state(SE2Element(0.0, 0.0, 0.0), state), state, atol=1e-5)
    moved = env.transform_state(SE2Element(np.pi / 2, 0.02, 0.0), state)
    env.set_state(moved)
    cup = env.ee_pos
    env.set_state(state)
    np.testing.assert_allclose(cup[:2], SE2Element(np.pi / 2, 0.02, 0.0).apply(env.ee_pos[:2]), atol=1e-3)
    brk = symmetry_break(env, n_elements=2, steps=10, seed=0)
    # the arm's tracking depends on its posture: moved starts drift apart by millimetres, not metres
    assert 1e-3 < brk["ee_after_1_step_m"] < 0.02 and brk["ee_max_m"] < 0.05


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="base_x"):
        PandaPickPlaceEnv(base_x=-0.3)
    with pytest.raises(ValueError, match="obs_mode"):
        PandaPickPlaceEnv(obs_mode="points")
    env = PandaPickPlaceEnv(obs_mode="vector")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="4 finite floats"):
        env.step(np.zeros(3))


def test_hep3d_trains_and_evaluates_end_to_end(tmp_path):
    from symgym.learn.cli import main

    run = tmp_path / "run"
    kwargs = {"n_demos": 1, "high_steps": 3, "n_points": 32, "batch": 8, "high_batch": 4, "hidden": 32,
              "width": 16, "high_hidden": 16, "sample_steps": 2, "train_timesteps": 10}
    assert main(["train", "--agent", "hep3d", "--env", "HepPandaPickPlace-v0", "--steps", "5", "--out", str(run),
                 "--agent-kwargs", json.dumps(kwargs), "--no-progress"]) == 0
    demos = np.load(run / "demos.npz")
    assert demos["points"].shape[1:] == (256, 6) and demos["vector"].shape[1] == 16
    assert str(demos["env_id"]) == "HepPandaPickPlace-v0"
    assert main(["eval", "--run", str(run), "--episodes", "1", "--env", "HepPandaPickPlace-v0"]) == 0
