"""Transporter agents: equivariance of pick and place, bi-equivariance of the Keyframe Transporter, protocol."""
from __future__ import annotations

import dataclasses
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import symgym.envs  # noqa: F401
from symgym.agents.keyframe_transporter import (TILT_BINS, KeyframeTransporterAgent, refine_roll_pitch, segment_object,
                                         tilt_rotations)
from symgym.agents.transporter import (EquiTransporterAgent, TransporterAgent, TransporterConfig, crop_at, load_demos,
                                obs_to_tensor, rotate_images)
from symgym.agents import CheckpointError, TrainConfig
from symgym.learn.run.training import train
from symgym.envs.tabletop import transform_topdown
from symgym.equivariance.checks import relative_error
from symgym.equivariance.groups import O2Element, SE2Element
from symgym.equivariance.transforms import transform_image

torch.set_num_threads(1)
SMALL = TransporterConfig(n_rotations=8, crop=13, feature_dim=4, width=8, fields=2)


@pytest.fixture(scope="module")
def scene_obs():
    env = gym.make("TabletopStacking-v0")
    obs, _ = env.reset(seed=2)
    red = env.unwrapped.grid.xy_to_pix(env.unwrapped.scene.pose("red")[0][:2])
    env.close()
    return obs, tuple(int(v) for v in red)


@pytest.fixture(scope="module")
def demos_file(tmp_path_factory):
    from symgym.learn.run.demos import collect_demos

    return collect_demos("TabletopBlockInsertion-v0", n=2, out=tmp_path_factory.mktemp("d") / "demos.npz",
                         seed=0, progress=False)


def rot_rc(rc, k, size):
    """Where pixel ``rc`` goes under np.rot90(k) of a size x size image."""
    r, c = rc
    for _ in range(k % 4):
        r, c = size - 1 - c, r
    return r, c


def test_rotate_images_matches_the_world_rotation_convention():
    x = torch.rand(1, 2, 9, 9)
    for k in (1, 2, 3):
        expected = transform_image(O2Element(k * math.pi / 2), x[0].permute(1, 2, 0).numpy())
        got = rotate_images(x, torch.tensor([k * math.pi / 2]))[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("cls", [EquiTransporterAgent, KeyframeTransporterAgent])
def test_rotating_the_scene_rotates_pick_heatmap_and_place_distribution(cls, scene_obs):
    """Transporter predicts the object's yaw *change* (invariant: object and target turn together); the
    Keyframe Transporter predicts the gripper's yaw with the object in the gripper frame, so when the gripper
    turns with the scene at pick, its place-yaw bins shift by the same quarter turn."""
    obs, red = scene_obs
    agent = cls(SMALL, seed=1)
    for m in agent.modules().values():
        m.eval()
    x = obs_to_tensor(obs)
    n, size = SMALL.n_rotations, x.shape[-1]
    keyframe = cls is KeyframeTransporterAgent
    with torch.no_grad():
        pick = agent.pick_logits(x)
        place = agent.place_logits(x, agent.object_crop(x, red, 0.0))
        for k in (1, 2, 3):
            gx = obs_to_tensor({key: transform_topdown(SE2Element(k * math.pi / 2), v) for key, v in obs.items()})
            assert relative_error(agent.pick_logits(gx), torch.rot90(pick, k, (0, 1))) < 1e-4
            pick_yaw = k * math.pi / 2 if keyframe else 0.0
            g_place = agent.place_logits(gx, agent.object_crop(gx, rot_rc(red, k, size), pick_yaw))
            shift = k * n // 4 if keyframe else 0
            expected = torch.rot90(torch.roll(place, shift, dims=0), k, (1, 2))
            assert relative_error(g_place, expected) < 1e-4


def test_the_plain_transporter_is_not_equivariant(scene_obs):
    """The check above can fail: a plain CNN's pick heatmap does not rotate with the scene."""
    obs, _ = scene_obs
    agent = TransporterAgent(SMALL, seed=1)
    x = obs_to_tensor(obs)
    gx = torch.rot90(x, 1, (1, 2))
    with torch.no_grad():
        a, b = agent.pick_logits(gx), torch.rot90(agent.pick_logits(x), 1, (0, 1))
        assert relative_error(a - a.mean(), b - b.mean()) > 0.05


@pytest.mark.parametrize("cls", [TransporterAgent, EquiTransporterAgent])
def test_translating_the_scene_translates_pick_and_place(cls, scene_obs):
    """Embed the scene in a large empty canvas so zero padding is far away, then shift it by whole pixels."""
    obs, red = scene_obs
    agent = cls(SMALL, seed=2)
    for m in agent.modules().values():
        m.eval()
    x = obs_to_tensor(obs)
    pad, (dr, dc) = 70, (5, -7)

    def embed(shift):
        canvas = torch.zeros(4, 64 + 2 * pad, 64 + 2 * pad)
        canvas[:, pad + shift[0]:pad + shift[0] + 64, pad + shift[1]:pad + shift[1] + 64] = x
        return canvas

    a, b = embed((0, 0)), embed((dr, dc))
    win = (slice(pad, pad + 64), slice(pad, pad + 64))
    win_b = (slice(pad + dr, pad + dr + 64), slice(pad + dc, pad + dc + 64))
    with torch.no_grad():
        assert relative_error(agent.pick_logits(b)[win_b], agent.pick_logits(a)[win]) < 1e-4
        obj = crop_at(a, (red[0] + pad, red[1] + pad), SMALL.crop)
        assert relative_error(agent.place_logits(b, obj)[:, win_b[0], win_b[1]],
                              agent.place_logits(a, obj)[:, win[0], win[1]]) < 1e-4


def test_keyframe_place_is_bi_equivariant_in_the_grasped_object(scene_obs):
    """Turning the object in the gripper by g turns the predicted gripper yaw by g^-1; position unchanged."""
    obs, red = scene_obs
    agent = KeyframeTransporterAgent(SMALL, seed=3)
    x = obs_to_tensor(obs)
    obj = agent.object_crop(x, red, 0.0)
    base = agent.place_for_object(obs, obj)
    n = SMALL.n_rotations
    for k in (1, 2, 3):
        turned = agent.place_for_object(obs, torch.rot90(obj, k, (1, 2)))
        assert relative_error(turned["place_logits"], torch.roll(base["place_logits"], -k * n // 4, dims=0)) < 1e-4
        assert turned["place_rc"] == base["place_rc"]
        diff = (turned["yaw"] - base["yaw"]) % (2 * math.pi)
        assert diff == pytest.approx((-k * math.pi / 2) % (2 * math.pi), abs=1e-5)


def test_refined_yaw_is_bi_equivariant_and_consistent_with_the_coarse_scores(scene_obs):
    """The sub-bin yaw search scores the coarse bin exactly as the correlation does, and turning the object in
    the gripper by a quarter turn turns the refined gripper yaw back by a quarter turn."""
    obs, red = scene_obs
    agent = KeyframeTransporterAgent(dataclasses.replace(SMALL, yaw_refine=5), seed=4)
    agent._eval_mode()
    x = obs_to_tensor(obs)
    obj = agent.object_crop(x, red, 0.0)
    with torch.no_grad():
        base = agent.place_for_object(obs, obj)
        rot, rc = base["rotation_bin"], base["place_rc"]
        scores = agent.refine_yaw_scores(x, obj, rot, rc)
        assert scores[2] == pytest.approx(float(base["place_logits"][rot, rc[0], rc[1]]), rel=1e-4, abs=1e-5)
        assert len(set(np.round(scores.numpy(), 6))) > 1  # the sub-bin angles are told apart
        yaw = agent.refine_yaw(x, obj, rot, rc)
        for k in (1, 3):
            turned = torch.rot90(obj, k, (1, 2))
            b = agent.place_for_object(obs, turned)
            diff = (agent.refine_yaw(x, turned, b["rotation_bin"], b["place_rc"]) - yaw) % (2 * math.pi)
            assert min(abs(diff - (-k * math.pi / 2) % (2 * math.pi)), 2 * math.pi - diff) < 1e-5


def tilted_block(roll: float, pitch: float, size: int = 13, side: int = 5) -> torch.Tensor:
    """A (4, size, size) grasped-object image: a square block whose top face is tilted by R_y(pitch) R_x(roll)."""
    pixel = 0.5 / 64
    n = tilt_rotations(torch.tensor(roll), torch.tensor(pitch)) @ torch.tensor([0.0, 0.0, 1.0])
    c, r = size // 2, side // 2
    obj = torch.zeros(4, size, size)
    for row in range(c - r, c + r + 1):
        for col in range(c - r, c + r + 1):
            x, y = (col - c) * pixel, (c - row) * pixel
            obj[:3, row, col] = 0.3
            obj[3, row, col] = (0.04 - (n[0] * x + n[1] * y) / n[2]) / 0.1  # HEIGHT_SCALE
    return obj


@pytest.mark.parametrize("roll,pitch", [(10.0, 0.0), (0.0, -7.5), (12.5, 5.0), (-15.0, -10.0)])
def test_a_tilted_grasp_gets_the_compensating_roll_and_pitch(roll, pitch):
    flat_scene = torch.zeros(4, 13, 13)
    flat_scene[3] = 0.02 / 0.1
    got = refine_roll_pitch(tilted_block(math.radians(roll), math.radians(pitch)), flat_scene, 0.5 / 64)
    step = float(TILT_BINS[1] - TILT_BINS[0])
    assert got[0] == pytest.approx(-math.radians(roll), abs=step * 0.51)
    assert got[1] == pytest.approx(-math.radians(pitch), abs=step * 0.51)


def test_a_level_grasp_over_a_sloped_surface_tilts_to_match_it():
    """The refinement aligns the object with the scene, not with the table: a slope under the place tilts it."""
    slope = math.radians(10.0)
    scene = torch.zeros(4, 13, 13)
    rows = torch.arange(13, dtype=torch.float32)[:, None].expand(13, 13)
    scene[3] = (0.05 + math.tan(slope) * (6 - rows) * (0.5 / 64)) / 0.1  # rises towards +y (up the image)
    roll, pitch = refine_roll_pitch(tilted_block(0.0, 0.0), scene, 0.5 / 64)
    assert roll == pytest.approx(slope, abs=math.radians(1.3)) and pitch == pytest.approx(0.0, abs=1e-6)


def test_keyframe_plan_reports_level_placements_in_the_planar_tasks(scene_obs):
    obs, _ = scene_obs
    plan = KeyframeTransporterAgent(SMALL, seed=0).plan(obs)
    assert abs(plan["roll"]) <= math.radians(5.0) and abs(plan["pitch"]) <= math.radians(5.0)
    assert plan["action"].shape == (7,)


def test_segment_object_keeps_only_the_grasped_object():
    crop = torch.zeros(4, 9, 9)
    crop[3, 3:6, 3:6] = 0.4   # the picked block (4 cm) at the centre
    crop[3, 0:2, 7:9] = 0.4   # a separate block in the corner
    crop[:3] = 0.2
    out = segment_object(crop)
    assert out[3, 4, 4] == pytest.approx(0.4) and out[3, 0, 8] == 0 and out[0, 0, 0] == 0
    empty = torch.zeros(4, 9, 9)
    assert torch.equal(segment_object(empty), empty)


@pytest.mark.parametrize("cls", [TransporterAgent, EquiTransporterAgent, KeyframeTransporterAgent])
def test_learns_from_demos_saves_and_loads(cls, demos_file, tmp_path, scene_obs):
    demos = load_demos(demos_file)
    agent = cls(dataclasses.replace(SMALL, lr=5e-3), seed=0)
    before = float(agent.loss(demos).detach())
    losses = agent.learn(demos, steps=40, progress=False)["losses"]
    after = float(agent.loss(demos).detach())
    assert after < 0.7 * before, (before, after, losses[-5:])
    action = agent.act(scene_obs[0])
    assert action.shape == (7,) and np.all(np.abs(action[[0, 1, 3, 4]]) <= 0.25)
    agent.save(tmp_path)
    again = cls.load(tmp_path)
    np.testing.assert_array_equal(again.act(scene_obs[0]), action)


def test_train_and_bad_inputs(demos_file, tmp_path):
    env = "TabletopBlockInsertion-v0"
    cfg = TrainConfig(agent="transporter", env=env, steps=2, demos=str(demos_file), out=str(tmp_path),
                      agent_kwargs={"n_rotations": 4, "crop": 9, "width": 4, "feature_dim": 2})
    train(cfg, progress=False)
    assert (tmp_path / "transporter.pt").is_file() and (tmp_path / "train.json").is_file()
    assert json.loads((tmp_path / "checkpoint.json").read_text())["files"] == {"weights": "transporter.pt"}
    with pytest.raises(FileNotFoundError, match="demos"):
        train(TrainConfig(agent="transporter", env=env, steps=1, demos=str(tmp_path / "nope.npz"),
                          out=str(tmp_path / "b")), progress=False)
    with pytest.raises(ValueError, match="unknown transporter agent kwarg"):
        train(TrainConfig(agent="transporter", env=env, demos=str(demos_file), agent_kwargs={"bogus": 1},
                          out=str(tmp_path / "c")), progress=False)
    assert not (tmp_path / "c").exists()  # rejected before the run directory is made
    with pytest.raises(CheckpointError, match="for agent 'transporter', not 'equi-transporter'"):
        EquiTransporterAgent.load(tmp_path)
    (tmp_path / "transporter.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt checkpoint file"):
        TransporterAgent.load(tmp_path)
    with pytest.raises(ValueError, match="odd"):
        TransporterAgent(TransporterConfig(crop=10))
    with pytest.raises(FileNotFoundError):
        load_demos(tmp_path / "missing.npz")


def test_se2_augmentation_moves_images_and_actions_together(scene_obs):
    """Ravens-style augmentation: the augmented pick pixel still lands on the (moved) red cube."""
    obs, red = scene_obs
    grid = TransporterAgent().grid
    x = obs_to_tensor(obs)
    action = np.array([*grid.pix_to_xy(red), 0.0, 0.0, 0.0, 0.05, 0.5])
    agent = TransporterAgent(dataclasses.replace(SMALL, augment=True), seed=3)
    angles = set()
    for _ in range(10):
        y, moved = agent._augment(x, action)
        r, c = grid.xy_to_pix(moved[0:2])
        assert y[0, r, c] > 0.2 and y[1, r, c] < -0.1, (moved, y[:3, r, c])  # red: high R, low G (centred)
        assert y[3, r, c] * 0.1 == pytest.approx(0.04, abs=0.008)          # on top of a 4 cm cube
        assert moved[5] == action[5] and np.all(np.abs(moved[[0, 1, 3, 4]]) < grid.half)
        angles.add(round(float(moved[6] - action[6]), 3))
    assert len(angles) > 5  # continuous rotations, not only quarter turns


def test_the_training_curve_is_kept_and_reported(demos_file, tmp_path):
    agent = TransporterAgent(dataclasses.replace(SMALL, lr=5e-3, augment=True), seed=0)
    agent.learn(load_demos(demos_file), steps=30, progress=False)
    assert len(agent.loss_curve) == 10 and agent.loss_curve[-1] < agent.loss_curve[0]
    agent.save(tmp_path)
    metrics = TransporterAgent.load(tmp_path).extra_metrics()
    assert metrics["loss_t9"] == pytest.approx(agent.loss_curve[-1]) and "loss_final_over_mid" in metrics


@pytest.mark.slow
def test_equivariant_transporter_generalises_from_one_demo(tmp_path):
    """Training-length: one oracle demo of place-red-in-green, held-out seeds (the bench measures this fully)."""
    from symgym.learn.bench.transporter import evaluate_agent
    from symgym.learn.run.demos import collect_demos

    demos = load_demos(collect_demos("TabletopPlaceRedInGreen-v0", n=1, out=tmp_path / "d.npz", progress=False))
    agent = EquiTransporterAgent(seed=0)
    agent.learn(demos, steps=250, progress=False)
    assert evaluate_agent(agent, "TabletopPlaceRedInGreen-v0", episodes=10)["success_rate"] >= 0.3
