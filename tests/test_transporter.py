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
from symgym.agents.keyframe_se3 import TiltHead, compose_place, place_rotation, rotate_vectors, swing_twist
from symgym.agents.keyframe_transporter import KeyframeTransporterAgent, segment_object
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


def test_swing_twist_splits_a_place_orientation_and_composes_back():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = np.zeros(9)
        a[6:9] = rng.uniform(-math.pi, math.pi), *rng.uniform(-0.6, 0.6, 2)
        psi, w = swing_twist(place_rotation(a))
        roll, pitch, yaw = compose_place(psi, w)
        np.testing.assert_allclose(place_rotation([0, 0, 0, 0, 0, 0, yaw, roll, pitch]), place_rotation(a), atol=1e-9)
        # the swing rotates as a planar vector when the twist turns: Rz(g) G has twist psi + g and the same w
        g = rng.uniform(-math.pi, math.pi)
        turned = np.array([[math.cos(g), -math.sin(g), 0], [math.sin(g), math.cos(g), 0], [0, 0, 1]])
        psi_g, w_g = swing_twist(turned @ place_rotation(a))
        assert (psi_g - psi - g) % (2 * math.pi) == pytest.approx(0, abs=1e-9) or \
            (psi_g - psi - g) % (2 * math.pi) == pytest.approx(2 * math.pi, abs=1e-9)
        np.testing.assert_allclose(w_g, w, atol=1e-9)


def test_tilt_head_turns_its_output_with_its_inputs():
    torch.manual_seed(0)
    head = TiltHead(8)
    for _ in range(3):
        scene, obj = torch.randn(4, 13, 13), torch.randn(4, 13, 13)
        w = head(scene, obj)
        assert w.abs().max() > 1e-3
        for k in (1, 2, 3):
            got = head(torch.rot90(scene, k, (1, 2)), torch.rot90(obj, k, (1, 2)))
            assert relative_error(got, rotate_vectors(w, k)) < 1e-5
    # a plain (unaveraged) CNN would not: the check can fail
    x = torch.cat([scene, obj])[None]
    raw, raw_k = head.net(x)[0], head.net(torch.rot90(x, 1, (2, 3)))[0]
    assert relative_error(raw_k, rotate_vectors(raw, 1)) > 0.05


@pytest.fixture(scope="module")
def tilted_obs():
    env = gym.make("TabletopTiltedInsertion-v0")
    obs, _ = env.reset(seed=4)
    u = env.unwrapped
    pick = u.grid.xy_to_pix(u.scene.pose("object")[0][:2])
    action = u.oracle_action()
    env.close()
    return obs, tuple(int(v) for v in pick), action


def _se3_place(agent, obs, obj):
    """(place pixel, 3x3 gripper rotation at place) the way ``plan`` decides them, for a given object image."""
    x = obs_to_tensor(obs)
    with torch.no_grad():
        base = agent.place_for_object(obs, obj)
        yaw = agent.refine_yaw(x, obj, base["rotation_bin"], base["place_rc"])
        w = agent.tilt(x, base["place_rc"], obj, yaw).numpy()
    roll, pitch, yaw_e = compose_place(yaw, w)
    return base["place_rc"], place_rotation([0, 0, 0, 0, 0, 0, yaw_e, roll, pitch]), w


def test_keyframe_se3_place_is_bi_equivariant(tilted_obs):
    """Rotate the scene by g: the place pixel and the full place rotation turn by g. Turn the object in the
    gripper by h: the place pixel stays and the place rotation changes by h^-1 (G -> G Rz(-h)), roll and pitch
    included. Quarter turns (exact on the pixel grid; the 8 yaw bins contain them)."""
    obs, pick, _ = tilted_obs
    agent = KeyframeTransporterAgent(dataclasses.replace(SMALL, yaw_refine=3), seed=5)
    agent.tilt_head.active.fill_(True)
    with torch.no_grad():  # untrained, the C4-averaged head says ~0; scaled up, its tilts are tens of degrees
        agent.tilt_head.net[-1].weight.mul_(300.0)
    agent._eval_mode()
    x = obs_to_tensor(obs)
    obj = agent.object_crop(x, pick, 0.0)
    rc, rot, w = _se3_place(agent, obs, obj)
    assert np.linalg.norm(w) > math.radians(3)  # a non-trivial tilt, so the check sees roll and pitch
    size = x.shape[-1]
    for k in (1, 2, 3):
        rz = np.round(np.array([[math.cos(k * math.pi / 2), -math.sin(k * math.pi / 2), 0],
                                [math.sin(k * math.pi / 2), math.cos(k * math.pi / 2), 0], [0, 0, 1]]))
        g_obs = {key: transform_topdown(SE2Element(k * math.pi / 2), v) for key, v in obs.items()}
        gx = obs_to_tensor(g_obs)
        g_rc, g_rot, _ = _se3_place(agent, g_obs, agent.object_crop(gx, rot_rc(pick, k, size), k * math.pi / 2))
        assert g_rc == rot_rc(rc, k, size)
        np.testing.assert_allclose(g_rot, rz @ rot, atol=1e-4)
        h_rc, h_rot, _ = _se3_place(agent, obs, torch.rot90(obj, k, (1, 2)))
        assert h_rc == rc
        np.testing.assert_allclose(h_rot, rot @ rz.T, atol=1e-4)
    plan = agent.plan(obs, step=0)  # the executed action carries the twist and the learned swing
    assert plan["action"].shape == (9,)
    psi, w = swing_twist(place_rotation(plan["action"]))
    assert (psi - plan["yaw"]) % (2 * math.pi) == pytest.approx(0, abs=1e-5) or \
        (psi - plan["yaw"]) % (2 * math.pi) == pytest.approx(2 * math.pi, abs=1e-5)
    np.testing.assert_allclose(w, plan["swing"], atol=1e-5)


def test_keyframe_learns_the_place_tilt_from_se3_demos(tmp_path, tilted_obs):
    from symgym.learn.run.demos import collect_demos

    demos = load_demos(collect_demos("TabletopTiltedInsertion-v0", n=2, out=tmp_path / "d.npz", seed=0,
                                     progress=False))
    assert all(len(t["action"]) == 9 for t in demos)
    agent = KeyframeTransporterAgent(dataclasses.replace(SMALL, lr=5e-3), seed=0)
    assert not bool(agent.tilt_head.active) and agent.act(tilted_obs[0]).shape == (7,)

    def tilt_error():
        errs = []
        with torch.no_grad():
            for t in demos:
                x, a = obs_to_tensor(t), t["action"]
                psi, w = swing_twist(place_rotation(a))
                pred = agent.tilt(x, agent.grid.xy_to_pix(a[3:5]), agent.object_crop(x, agent.grid.xy_to_pix(a[0:2]),
                                                                                      float(a[2])), psi)
                errs.append(float(np.linalg.norm(pred.numpy() - w)) / float(np.linalg.norm(w)))
        return max(errs)

    before = tilt_error()
    agent.learn(demos, steps=80, progress=False)
    assert tilt_error() < min(0.3, 0.5 * before)
    action = agent.act(tilted_obs[0])
    assert action.shape == (9,) and np.hypot(action[7], action[8]) > math.radians(5)
    agent.save(tmp_path / "run")
    again = KeyframeTransporterAgent.load(tmp_path / "run")
    np.testing.assert_array_equal(again.act(tilted_obs[0]), action)


def test_the_pick_is_conditioned_on_the_step_of_the_episode(tmp_path):
    """Stacking: demos carry each transition's step; trained on them, the agent picks the cube of its own step
    (red, green, blue in turn) -- one heatmap per step, chosen by the agent's own count of primitives."""
    from symgym.learn.run.demos import collect_demos

    path = collect_demos("TabletopStacking-v0", n=2, out=tmp_path / "d.npz", seed=0, progress=False)
    demos = load_demos(path)
    assert [t["step"] for t in demos] == [0, 1, 2, 0, 1, 2]
    agent = EquiTransporterAgent(dataclasses.replace(SMALL, lr=5e-3), seed=0)
    agent.learn(demos, steps=150, progress=False)
    for t in demos:   # each step's pick on its own image: the cube of that step's colour
        got = np.unravel_index(int(agent.pick_logits(obs_to_tensor(t), t["step"]).detach().argmax()), (64, 64))
        want = agent.grid.xy_to_pix(t["action"][0:2])
        assert max(abs(got[0] - want[0]), abs(got[1] - want[1])) <= 2, (t["step"], got, want)
    first = demos[0]
    x = obs_to_tensor(first)
    with torch.no_grad():
        maps = [agent.pick_logits(x, k) for k in range(3)]
    assert relative_error(maps[1], maps[0]) > 0.05 and relative_error(maps[2], maps[1]) > 0.05  # one map a step
    agent.reset()
    a0 = agent.act(first)
    agent.act(first)
    assert agent.episode_step == 2
    np.testing.assert_array_equal(agent.act(demos[2]), agent.plan(demos[2], step=2)["action"])  # its own count
    agent.reset()
    np.testing.assert_array_equal(agent.act(first), a0)


@pytest.mark.slow
def test_equivariant_transporter_generalises_from_one_demo(tmp_path):
    """Training-length: one oracle demo of place-red-in-green, held-out seeds (the bench measures this fully)."""
    from symgym.learn.bench.transporter import evaluate_agent
    from symgym.learn.run.demos import collect_demos

    demos = load_demos(collect_demos("TabletopPlaceRedInGreen-v0", n=1, out=tmp_path / "d.npz", progress=False))
    agent = EquiTransporterAgent(seed=0)
    agent.learn(demos, steps=250, progress=False)
    assert evaluate_agent(agent, "TabletopPlaceRedInGreen-v0", episodes=10)["success_rate"] >= 0.3


def test_the_se3_sweep_spec_quick_mode_runs_in_process(tmp_path):
    """``transporter-se3.yaml``'s quick grid, trial by trial without Ray: both agents train and evaluate on the
    tilted socket; the Keyframe Transporter acts with 9 floats (roll and pitch), the planar baseline with 7."""
    from symgym.learn.evidence.sweep import expand, load_spec
    from symgym.learn.evidence.trials import run_trial
    from symgym.learn.run.runs import load_run

    full = load_spec("transporter-se3")
    assert {c["claim"].split(" succeeds")[0] for c in full.claims} == {"keyframe-transporter"}
    assert len(expand(full, tmp_path)) == 2 * 2 * 5 * 2   # tasks x demo counts x seeds x methods
    trials = expand(load_spec("transporter-se3", quick=True), tmp_path)
    assert [t.labels["method"] for t in trials] == ["equi-transporter", "keyframe-transporter"]
    shapes = {}
    for t in trials:
        summary = run_trial(t.as_dict())
        assert 0.0 <= summary["metrics"]["success_rate"] <= 1.0 and summary["metrics"]["train_seconds"] > 0
        agent, _ = load_run(t.run_dir)
        env = gym.make(t.params["env"])
        obs, _ = env.reset(seed=0)
        shapes[t.labels["method"]] = agent.act(obs).shape
        env.close()
    assert shapes == {"equi-transporter": (7,), "keyframe-transporter": (9,)}


def test_stacking_per_step_success_is_read_from_the_committed_trials():
    """Per-step stacking success (issue #34 item 4): each step's success bounds the next, the last step is the
    episode's success, and the bench's per-cell numbers are the means over the finished seeds."""
    from pathlib import Path

    from symgym.learn.bench.transporter import STACKING, STEP_METRICS, stacking_per_step
    from symgym.learn.evidence.report import load_summaries
    from symgym.learn.evidence.sweep import load_spec

    results = Path(__file__).resolve().parents[1] / "results"
    summaries, _ = load_summaries(load_spec("transporter"), results)
    stacking = [s for s in summaries if s["labels"]["env"] == STACKING]
    assert stacking, "no finished stacking trials"
    for s in stacking:
        steps = [s["metrics"].get(m) or 0.0 for m in STEP_METRICS]  # a step no episode completed is not recorded
        assert steps[0] >= steps[1] >= steps[2] == s["metrics"]["success_rate"], s["key"]
    per_step = stacking_per_step(results)
    for cell in per_step.values():
        members = [s for s in stacking if (s["labels"]["method"], s["labels"]["demos"]) == (cell["method"], cell["demos"])]
        assert sorted(cell["seeds"]) == sorted(s["labels"]["seed"] for s in members)
        for m in STEP_METRICS:
            assert cell[m] == pytest.approx(np.mean([s["metrics"].get(m) or 0.0 for s in members]))
    json.dumps(per_step)  # goes into transporter.json as it is
