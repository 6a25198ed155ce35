"""Tabletop pick-and-place envs: Gymnasium contract, fused observations, oracles, rewards, symmetry."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401  (registers ids)
from symgym.envs.tabletop import TABLETOP_IDS, Grid, transform_action, transform_topdown
from symgym.envs.tabletop.scene import quat_yaw, yaw_error, yaw_quat
from symgym.equivariance.groups import SE2Element, SE2Group

torch.set_num_threads(1)
IDS = sorted(TABLETOP_IDS)


@pytest.fixture(scope="module")
def made():
    out = {i: gym.make(i) for i in IDS}
    yield out
    for env in out.values():
        env.close()


def run_oracle(env, seed):
    obs, info = env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        obs, r, term, trunc, info = env.step(env.unwrapped.oracle_action())
        rewards.append(r)
        done = term or trunc
    return rewards, info


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    env = gym.make(env_id).unwrapped
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_oracle_solves_a_handful_of_seeds_and_rewards_sum_to_one(made, env_id):
    for seed in (3, 17, 42):
        rewards, info = run_oracle(made[env_id], seed)
        assert info["is_success"], (env_id, seed, info)
        assert sum(rewards) == pytest.approx(1.0)
        assert len(rewards) <= made[env_id].unwrapped.oracle_steps


def test_stacking_gives_partial_credit_per_block(made):
    env = made["TabletopStacking-v0"]
    env.reset(seed=5)
    _, r, term, _, info = env.step(env.unwrapped.oracle_action())
    assert r == pytest.approx(1 / 3) and not term and info["credit"] == pytest.approx(1 / 3)


def _clear_point(scene, rng, clearance=0.03):
    """A table point whose rays within ``clearance`` (beyond the tip's radius) hit no object."""
    for xy in rng.uniform(-0.2, 0.2, size=(200, 2)):
        ring = [xy + clearance * np.array([math.cos(a), math.sin(a)]) for a in np.linspace(0, 2 * math.pi, 9)]
        if all(scene.ray_down(*q)[0] is None for q in [xy, *ring]):
            return xy
    raise AssertionError("no clear table point")


def test_a_missed_pick_fails_the_episode_and_moves_nothing(made):
    env = made["TabletopBlockInsertion-v0"]
    env.reset(seed=0)
    before = env.unwrapped.get_state()["objects"]
    xy = _clear_point(env.unwrapped.scene, np.random.default_rng(0))
    _, r, term, _, info = env.step(np.array([xy[0], xy[1], 0, 0, 0, 0.1, 0], np.float32))
    after = env.unwrapped.get_state()["objects"]
    assert info["picked"] is None and info["failure"] == "grasp" and term and not info["is_success"] and r == 0.0
    assert all(np.allclose(before[k][:3], after[k][:3], atol=1e-3) for k in before)
    assert env.unwrapped.scene.arm.constraint is None


def test_suction_holds_only_movable_bodies_it_touches(made):
    """A pick on the static pad touches it but attaches nothing: the grasp fails."""
    env = made["TabletopStacking-v0"]
    env.reset(seed=2)
    pad, _, _ = env.unwrapped.scene.pose("pad")
    _, _, term, _, info = env.step(np.array([pad[0], pad[1], 0, 0, 0, 0.1, 0], np.float32))
    assert info["failure"] == "grasp" and term and info["picked"] is None


def test_the_arm_carries_the_object_by_physics(made):
    """Released 10 cm up, the block falls to the table: the place is the arm's release, not a teleport."""
    env = made["TabletopStacking-v0"]
    env.reset(seed=4)
    scene = env.unwrapped.scene
    pos, yaw, _ = scene.pose("red")
    target = _clear_point(scene, np.random.default_rng(1), clearance=0.05)
    _, _, _, _, info = env.step(np.array([pos[0], pos[1], yaw, target[0], target[1], 0.14, yaw + 0.5], np.float32))
    after, after_yaw, _ = scene.pose("red")
    assert info["picked"] == "red" and info["failure"] is None
    assert np.linalg.norm(after[:2] - target) < 0.02 and after[2] == pytest.approx(0.02, abs=3e-3)
    assert yaw_error(after_yaw, yaw + 0.5, 4) < math.radians(4)  # turned by place yaw - pick yaw
    assert scene.arm.constraint is None and scene.arm.steps > 200


@pytest.mark.parametrize("tilt", [(0.35, 0.0), (0.0, -0.3), (0.2, 0.25)])
def test_the_arm_reaches_tilted_tip_poses_for_non_planar_places(made, tilt):
    """Roll and pitch about the tip's own x and y axes are executed (the groundwork for SE(3) places)."""
    from symgym.envs.tabletop.arm import YAW_CENTRE

    env = made["TabletopStacking-v0"]
    env.reset(seed=4)
    arm = env.unwrapped.scene.arm
    assert arm.move((0.05, 0.05, 0.15), YAW_CENTRE, tilt=tilt) is None
    rot = np.array(env.unwrapped.scene.p.getMatrixFromQuaternion(
        env.unwrapped.scene.p.getLinkState(arm.body, arm.tip, computeForwardKinematics=True)[5])).reshape(3, 3)
    # the tip's axes after roll r about x then pitch q about y, starting from pointing straight down
    r, q = tilt
    expected = np.array(arm.p.getMatrixFromQuaternion(arm.down(YAW_CENTRE, tilt))).reshape(3, 3)
    assert np.allclose(rot, expected, atol=0.02)
    down_angle = math.acos(np.clip(-rot[2, 2], -1, 1))
    assert down_angle == pytest.approx(math.acos(math.cos(r) * math.cos(q)), abs=0.02)
    _, _, _, _, info = env.step(env.unwrapped.oracle_action())  # the next primitive starts from anywhere
    assert info["failure"] is None


def test_an_arm_link_hitting_something_fails_the_episode(made):
    env = made["TabletopStacking-v0"]
    env.reset(seed=4)
    scene = env.unwrapped.scene
    pos, yaw, _ = scene.pose("red")
    # four 20 cm pillars 7 cm around the cube: the tip fits between them, the 20 cm wide hand does not
    for k, (dx, dy) in enumerate(((0.07, 0), (-0.07, 0), (0, 0.07), (0, -0.07))):
        scene._multibody(f"pillar{k}", [((0.01, 0.01, 0.1), (0, 0, 0))], "grey", 0.0,
                         (pos[0] + dx, pos[1] + dy, 0.1), 0.0, "pad", (0.01, 0.01, 0.1), 4)
    _, _, term, _, info = env.step(np.array([pos[0], pos[1], yaw, 0, 0, 0.1, yaw], np.float32))
    assert info["failure"] == "collision" and term and not info["is_success"]


def test_heightmap_is_fused_from_cameras_and_sees_the_objects(made):
    env = made["TabletopStacking-v0"]
    obs, _ = env.reset(seed=1)
    grid = env.unwrapped.grid
    pos, _, _ = env.unwrapped.scene.pose("red")
    r, c = grid.xy_to_pix(pos[:2])
    assert obs["height"][r, c, 0] == pytest.approx(0.04, abs=0.004)
    red = obs["color"][r, c].astype(int)
    assert red[0] > 150 and red[1] < 90 and red[2] < 90
    assert np.median(obs["height"]) < 0.002  # mostly bare table
    assert (obs["color"].sum(-1) == 0).mean() < 0.02  # the cameras cover the workspace
    cloud = env.unwrapped.point_cloud(voxel=None)
    small = env.unwrapped.point_cloud(voxel=0.01)
    assert cloud.shape[1] == 6 and 0 < len(small) < len(cloud)


def test_success_tolerances_respect_object_symmetry(made):
    env = made["TabletopStacking-v0"]
    run_oracle(env, 7)
    scene = env.unwrapped.scene
    assert env.unwrapped._credit() == 1.0
    # a cube turned by 90 degrees is the same cube; by 45 degrees it is misaligned
    for turn, expected in ((math.pi / 2, 1.0), (math.pi / 4, 2 / 3)):
        pos, yaw, quat = scene.pose("blue")
        scene.p.resetBasePositionAndOrientation(scene.objects["blue"].body, pos, yaw_quat(yaw + turn))
        assert env.unwrapped._credit() == pytest.approx(expected)
        scene.p.resetBasePositionAndOrientation(scene.objects["blue"].body, pos, quat)
    ins = made["TabletopBlockInsertion-v0"]
    run_oracle(ins, 7)
    scene = ins.unwrapped.scene
    pos, yaw, _ = scene.pose("block")
    scene.p.resetBasePositionAndOrientation(scene.objects["block"].body, pos, yaw_quat(yaw + math.pi / 2))
    assert ins.unwrapped._credit() == 0.0  # an L block has no rotational symmetry


def test_declared_symmetry_and_group_action_on_images():
    env = gym.make("TabletopPlaceRedInGreen-v0")
    sym = env.unwrapped.symmetry
    assert isinstance(sym.group, SE2Group) and sym.exact
    grid = Grid()
    img = np.random.default_rng(0).random((64, 64, 2)).astype(np.float32)
    img[:8], img[-8:], img[:, :8], img[:, -8:] = 0, 0, 0, 0  # keep content inside so shifts lose nothing
    g, h = SE2Element(math.pi / 2, 2 * grid.pixel, -3 * grid.pixel), SE2Element(math.pi, -grid.pixel, 0.0)
    gh = sym.group.compose(g, h)
    np.testing.assert_array_equal(transform_topdown(gh, img), transform_topdown(g, transform_topdown(h, img)))
    a = np.array([0.1, -0.05, 0.3, -0.1, 0.2, 0.05, -2.0])
    np.testing.assert_allclose(transform_action(gh, a), transform_action(g, transform_action(h, a)), atol=1e-9)
    assert transform_action(g, a)[5] == a[5]  # place height is invariant
    env.close()


def _rotate_state(state, k):
    g = SE2Element(k * math.pi / 2)
    out = {}
    for name, v in state["objects"].items():
        xy = g.apply(np.array(v[:2]))
        out[name] = [xy[0], xy[1], v[2], *yaw_quat(quat_yaw(v[3:7]) + g.angle)]
    return {"objects": out, "credit": state["credit"]}


def test_dynamics_and_observation_commute_with_quarter_turns(made):
    """step(g.s, g.a) == g.step(s, a), and the fused observation of g.s is g.(observation of s)."""
    env = made["TabletopStacking-v0"]
    env.reset(seed=11)
    action = env.unwrapped.oracle_action()
    s0 = env.unwrapped.get_state()
    obs1, r1, *_ = env.step(action)
    s1 = env.unwrapped.get_state()
    for k in (1, 2, 3):
        g = SE2Element(k * math.pi / 2)
        env.reset(seed=11)
        env.unwrapped.set_state(_rotate_state(s0, k))
        obs_g, r_g, *_ = env.step(transform_action(g, action))
        assert r_g == pytest.approx(r1)
        expected = _rotate_state(s1, k)["objects"]
        for name, v in env.unwrapped.get_state()["objects"].items():
            assert np.allclose(v[:3], expected[name][:3], atol=2e-3), (k, name)
        moved = transform_topdown(g, obs1["height"])
        assert np.mean(np.abs(obs_g["height"] - moved)) < 2e-3
        assert np.mean(np.any(obs_g["color"] != transform_topdown(g, obs1["color"]), -1)) < 0.05


def test_bad_inputs_raise_clear_errors(made):
    env = made["TabletopBlockInsertion-v0"]
    env.reset(seed=0)
    with pytest.raises(ValueError, match="7 finite floats.*9"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="image_size"):
        gym.make("TabletopStacking-v0", image_size=4)
    with pytest.raises(ValueError, match="SE\\(2\\)"):
        transform_action("not a group element", np.zeros(7))


def test_collect_demos_writes_successful_episodes(tmp_path):
    from symgym.learn.run.demos import collect_demos

    path = collect_demos("TabletopBlockInsertion-v0", n=2, out=tmp_path / "d", seed=0, progress=False)
    data = np.load(path)
    assert path.suffix == ".npz" and list(data["seeds"]) == [0, 1]
    assert data["color"].shape == (2, 64, 64, 3) and data["action"].shape == (2, 7)
    assert data["reward"].sum() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="n must be"):
        collect_demos("TabletopBlockInsertion-v0", n=0, out=tmp_path / "e")
    with pytest.raises(ValueError, match="oracle"):
        collect_demos("SymPush-v0", n=1, out=tmp_path / "f")


# -- non-planar places (TabletopTiltedInsertion-v0, TabletopRampLean-v0) ----------------------------------------
SE3_IDS = ["TabletopTiltedInsertion-v0", "TabletopRampLean-v0"]


@pytest.mark.parametrize("env_id", SE3_IDS)
def test_se3_tasks_need_the_place_roll_and_pitch(made, env_id):
    """The oracle's tilted place seats the object; the same place made level (roll = pitch = 0) does not."""
    env = made[env_id]
    assert env.action_space.shape == (9,)
    for seed in (0, 2):
        env.reset(seed=seed)
        level = env.unwrapped.oracle_action(level=True)
        _, _, _, _, info = env.step(level)
        assert info["picked"] == "object" and not info["is_success"], (seed, env.unwrapped.seat_errors())
        env.reset(seed=seed)
        action = env.unwrapped.oracle_action()
        assert np.hypot(action[7], action[8]) > math.radians(10)
        _, r, _, _, info = env.step(action)
        pos_err, tilt, yaw = env.unwrapped.seat_errors()
        assert info["is_success"] and r == 1.0 and pos_err < 0.01 and tilt < math.radians(3), (seed, pos_err, tilt)


def test_seat_check_tests_orientation_and_position(made):
    env = made["TabletopTiltedInsertion-v0"]
    run_oracle(env, 3)
    u, scene = env.unwrapped, env.unwrapped.scene
    body = scene.objects["object"].body
    pos, quat = scene.p.getBasePositionAndOrientation(body)
    assert u._credit() == 1.0
    spin = scene.p.multiplyTransforms((0, 0, 0), quat, (0, 0, 0), yaw_quat(math.pi / 2))[1]
    for new_pos, new_quat, expected in ((pos, spin, 1.0),                                      # C4: same seat
                                        (pos, scene.p.multiplyTransforms((0, 0, 0), quat, (0, 0, 0),
                                                                         yaw_quat(0.5))[1], 0.0),  # misaligned
                                        (pos, yaw_quat(0.0), 0.0),                             # level: tilt wrong
                                        (np.add(pos, (0.0, 0.0, 0.03)), quat, 0.0)):            # not seated
        scene.p.resetBasePositionAndOrientation(body, new_pos, new_quat)
        assert u._credit() == expected
    scene.p.resetBasePositionAndOrientation(body, pos, quat)


@pytest.mark.parametrize("env_id", SE3_IDS)
def test_se3_state_round_trips_and_a_7_float_action_is_a_level_place(made, env_id):
    env = made[env_id]
    obs, _ = env.reset(seed=5)
    state = env.unwrapped.get_state()
    env.step(env.unwrapped.oracle_action())
    env.unwrapped.set_state(state)
    again = env.unwrapped.get_state()
    for name, v in state["objects"].items():
        assert np.allclose(v, again["objects"][name], atol=1e-9), name
    assert np.array_equal(env.unwrapped._obs()["height"], obs["height"])
    level = env.unwrapped.oracle_action(level=True)
    env.reset(seed=5)
    _, _, _, _, info7 = env.step(level[:7])
    s7 = env.unwrapped.get_state()["objects"]["object"]
    env.reset(seed=5)
    env.step(level)
    assert np.allclose(s7, env.unwrapped.get_state()["objects"]["object"], atol=1e-9) and info7["picked"] == "object"


def test_place_roll_and_pitch_are_invariant_under_the_planar_symmetry():
    g = SE2Element(0.7, 0.03, -0.02)
    a = np.array([0.1, -0.05, 0.3, -0.1, 0.2, 0.05, -2.0, 0.3, -0.2])
    b = transform_action(g, a)
    assert b[7] == a[7] and b[8] == a[8] and b[6] == pytest.approx(a[6] + 0.7)
    np.testing.assert_allclose(b[:7], transform_action(g, a[:7]), atol=1e-12)


def test_the_teleport_executes_the_full_place_orientation():
    """Without the arm the held object is moved by exactly the gripper's change of frame (roll/pitch included)."""
    env = gym.make("TabletopTiltedInsertion-v0", arm=False)
    env.reset(seed=1)
    u = env.unwrapped
    action = u.oracle_action()
    env.step(action)
    pos_err, tilt, _ = u.seat_errors()
    assert u._credit() == 1.0 and tilt < math.radians(2)
    env.close()


def test_stacking_reports_how_many_cubes_stand_in_order(made):
    env = made["TabletopStacking-v0"]
    env.reset(seed=5)
    seen = []
    for _ in range(3):
        _, _, term, _, info = env.step(env.unwrapped.oracle_action())
        seen.append(info["stacked"])
    assert seen == [1, 2, 3] and info["is_success"]


def test_evaluation_reports_per_step_success_of_stacking():
    from symgym.learn.run.evaluate import EvalResult, evaluate, stage_success

    assert stage_success([0, 1, 3, 3]) == {"step1_success": 0.75, "step2_success": 0.5, "step3_success": 0.5}
    assert stage_success([0, 0]) == {}
    row = EvalResult(4, 0.5, 0.0, 0.0, 3.0, [0, 1, 3, 3]).as_dict()
    assert row["stages"] == [0, 1, 3, 3] and row["step2_success"] == 0.5
    assert "stages" not in EvalResult(4, 0.5, 0.0, 0.0, 3.0).as_dict()
    res = evaluate(None, "TabletopStacking-v0", episodes=2, seed=0, progress=False)  # random picks stack nothing
    assert res.stages is not None and len(res.stages) == 2 and all(s >= 0 for s in res.stages)
    assert evaluate(None, "SymReach-v0", episodes=2, seed=0, progress=False).stages is None
