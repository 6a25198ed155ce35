"""Rendered depth clouds of the closed-loop envs (obs_mode="depth_cloud"): geometry, crop, normals, symmetry,
seeding, bad input; and the two-mode push-around task."""
import gymnasium as gym
import numpy as np
import pytest
import torch

import symgym.envs  # noqa: F401
from symgym.envs.closed_loop import EE_RADIUS, OBJ_HEIGHT, OBJ_RADIUS, TARGET_RADIUS, keypose_label
from symgym.envs.closed_loop_perception import transform_cloud_obs
from symgym.equivariance import SE2Element

torch.set_num_threads(1)


def surface_distance(env, pts):
    """Distance of each point to the nearest true surface (ee sphere, object cylinder, raised target disc)."""
    u = env.unwrapped
    d_ee = np.abs(np.linalg.norm(pts - u.ee_pos, axis=1) - EE_RADIUS)

    def cylinder(centre_xy, r, z0, z1):
        rad = np.linalg.norm(pts[:, :2] - centre_xy, axis=1)
        out_r, out_z = np.maximum(rad - r, 0), np.maximum(np.maximum(z0 - pts[:, 2], pts[:, 2] - z1), 0)
        inside = np.minimum(np.minimum(r - rad, pts[:, 2] - z0), z1 - pts[:, 2]).clip(min=0)
        return np.hypot(out_r, out_z) + inside

    o = u.obj_pos
    return np.minimum.reduce([d_ee, cylinder(o[:2], OBJ_RADIUS, o[2], o[2] + OBJ_HEIGHT),
                              cylinder(u.target_pos[:2], TARGET_RADIUS, -0.004, 0.004)])


def chamfer(a, b):
    d = np.linalg.norm(a[:, None, :3] - b[None, :, :3], axis=-1)
    return 0.5 * (d.min(1).mean() + d.min(0).mean())


@pytest.fixture(scope="module")
def env():
    e = gym.make("HepPickPlaceDepth-v0")
    yield e
    e.close()


def test_cloud_lies_on_the_rendered_surfaces(env):
    obs, _ = env.reset(seed=3)
    pts = obs["points"]
    assert pts.shape == (256, 6) and env.observation_space.contains(obs)
    # unprojection with the camera intrinsics: every point within a few mm of a true surface (voxels are 6 mm)
    dist = surface_distance(env, pts[:, :3].astype(np.float64))
    assert np.percentile(dist, 95) < 0.004 and dist.max() < 0.01, (np.percentile(dist, 95), dist.max())
    # the crop keeps the workspace above the floor, and every body is seen
    assert pts[:, 2].min() > 0.0015 and np.hypot(pts[:, 0], pts[:, 1]).max() < 0.32
    u = env.unwrapped
    for centre in (u.ee_pos, u.obj_pos, u.target_pos):
        assert (np.linalg.norm(pts[:, :2] - centre[:2], axis=1) < 0.03).sum() >= 10
    # unit normals; on the object's flat top they point up
    assert np.allclose(np.linalg.norm(pts[:, 3:], axis=1), 1.0, atol=1e-4)
    top = (np.linalg.norm(pts[:, :2] - u.obj_pos[:2], axis=1) < OBJ_RADIUS - 0.008) & \
          (np.abs(pts[:, 2] - OBJ_HEIGHT) < 0.002)
    assert top.sum() >= 3 and np.median(pts[top, 5]) > 0.9


def test_cloud_is_seeded_and_default_mode_unchanged(env):
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=5)
    np.testing.assert_array_equal(a["points"], b["points"])
    plain = gym.make("HepPickPlace-v0")
    assert plain.reset(seed=5)[0]["points"].shape == (96, 4)


def test_rendered_cloud_is_approximately_equivariant(env):
    """cloud(g.s) ~ g.cloud(s) up to sampling (Chamfer distance of a few mm), far from cloud(s) itself."""
    env.reset(seed=7)
    u = env.unwrapped
    s = u.get_state()
    cloud = u._obs()["points"]
    for g in (SE2Element(0.9, 0.05, -0.03), SE2Element(2.5, -0.04, 0.06)):
        u.set_state(u.transform_state(g, s))
        moved = u._obs()["points"]
        assert chamfer(transform_cloud_obs(g, cloud), moved) < 0.004
        assert chamfer(cloud, moved) > 0.03
    u.set_state(s)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="obs_mode"):
        gym.make("HepPickPlace-v0", obs_mode="rgbd")
    with pytest.raises(ValueError, match="6 columns"):
        transform_cloud_obs(SE2Element(0.1), np.zeros((5, 4)))


def test_keypose_label_is_se2_equivariant():
    env = gym.make("HepPickPlace-v0")
    obs, _ = env.reset(seed=1)
    sym = env.unwrapped.symmetry
    g = SE2Element(1.1, 0.03, -0.02)
    kp, kp_g = keypose_label(obs["vector"]), keypose_label(sym.transform_obs(g, obs)["vector"])
    np.testing.assert_allclose(kp_g[:2], g.apply(kp[:2]), atol=1e-6)
    np.testing.assert_allclose(kp_g[2], kp[2], atol=1e-6)
    assert abs(np.angle(np.exp(1j * (kp_g[3] - kp[3] - 1.1)))) < 1e-5


def test_push_around_oracle_has_two_modes_and_solves_it():
    env = gym.make("HepPushAround-v0")
    sides, solved = [], 0
    for seed in range(12):
        obs, _ = env.reset(seed=seed)
        u = env.unwrapped
        puck, tgt = u.obj_pos[:2], u.target_pos[:2]
        n = (tgt - puck) / np.linalg.norm(tgt - puck)
        lateral = []
        for _ in range(80):
            obs, _, term, trunc, info = env.step(u.oracle_action())
            lateral.append((u.ee_pos[:2] - puck) @ np.array([-n[1], n[0]]))
            if term or trunc:
                break
        solved += info["is_success"]
        sides.append(np.sign(lateral[np.argmax(np.abs(lateral))]))
        assert np.abs(lateral).max() > 0.05   # it went around, not through
    assert solved == 12 and {-1.0, 1.0} <= set(sides)
