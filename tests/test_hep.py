"""HEP agent: equivariance of the full hierarchical policy on random group elements, ablations break it,
training and persistence work, and the CLI trains it from a demos file."""
import numpy as np
import pytest
import torch

import symgym.envs  # noqa: F401
from symgym.agents.hep import (ChunkNet, FlatBCAgent, HEPAgent, chunk_targets, heatmap_target, keypose_from_heatmap,
                        plan_vector, rasterize, transform_plan)
from symgym.learn.run.demos import collect_demos, demonstrations
from symgym.equivariance import SE2Element, SO2, Symmetry, equivariance_error
from symgym.learn.run.runs import make_env

torch.set_num_threads(1)
PIX = 0.02
EXACT_TOL = 1e-4   # float32 CNN; measured ~1e-7


@pytest.fixture(scope="module")
def demos():
    return demonstrations("HepPickPlace-v0", 3, seed=0)


@pytest.fixture(scope="module")
def scenes():
    """Mid-task observations (grasped and not) from the pick-place env."""
    env = make_env("HepPickPlace-v0")
    out = []
    for seed, steps in ((1, 2), (2, 9), (3, 14)):
        obs, _ = env.reset(seed=seed)
        for _ in range(steps):
            obs, *_ = env.step(env.unwrapped.oracle_action())
        out.append(obs)
    return env, out


def c4_pixel_elements(rng, k=5):
    """Random elements of C4 x (pixel lattice): the group the whole policy is exactly equivariant to."""
    return [SE2Element(np.pi / 2 * rng.integers(0, 4), PIX * rng.integers(-3, 4), PIX * rng.integers(-3, 4))
            for _ in range(k)]


def plan_error(agent, env, scenes, elements):
    sym = env.unwrapped.symmetry
    out_sym = Symmetry(group=sym.group, obs=sym.obs, action=transform_plan)
    return equivariance_error(lambda o: plan_vector(agent, o), out_sym, scenes, elements)


@pytest.fixture(scope="module")
def trained(demos):
    agent = HEPAgent.build(None, dict(high_steps=80, low_steps=150), seed=1)
    metrics = agent.learn(demos)
    return agent, metrics


def test_full_hierarchical_policy_is_equivariant(trained, scenes):
    """Transforming the scene by g moves the keypose by g and rotates every low-level action by g."""
    agent, _ = trained
    env, obs = scenes
    err = plan_error(agent, env, obs, c4_pixel_elements(np.random.default_rng(0)))
    assert err < EXACT_TOL, err
    # The check is not vacuous: the plan has a non-trivial keypose and actions.
    kp, actions = agent.plan(obs[0])
    assert np.linalg.norm(kp) > 0.02 and np.abs(actions[:, :2]).max() > 1e-3


def test_untrained_policy_is_equivariant_too(scenes):
    env, obs = scenes
    agent = HEPAgent.build(None, dict(), seed=5)
    assert plan_error(agent, env, obs, c4_pixel_elements(np.random.default_rng(1))) < EXACT_TOL


@pytest.mark.parametrize("kwargs, elements", [
    ({"equivariant": False}, [SE2Element(np.pi / 2), SE2Element(np.pi, 0.04, -0.02)]),
    ({"frame_transfer": False}, [SE2Element(0.0, 0.06, -0.04), SE2Element(np.pi / 2, -0.04, 0.02)]),
])
def test_ablations_lose_their_symmetry(kwargs, elements, demos, scenes):
    env, obs = scenes
    agent = HEPAgent.build(None, dict(high_steps=10, low_steps=100, **kwargs), seed=2)
    agent.learn(demos)
    assert plan_error(agent, env, obs, elements) > 1e-2


def test_low_level_is_exactly_so2_equivariant_for_any_angle():
    torch.manual_seed(0)
    net = ChunkNet(3, 4, 32, equivariant=True).double()
    v, s = torch.randn(6, 3, 2, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    for g in [SO2().sample(np.random.default_rng(i)) for i in range(4)]:
        R = torch.as_tensor(g.matrix())
        p, dz, grip = net(v, s)
        p2, dz2, grip2 = net(v @ R.T, s)
        assert torch.allclose(p2, p @ R.T, atol=1e-10) and torch.allclose(dz, dz2) and torch.allclose(grip, grip2)


def test_rasterize_rotates_with_the_points():
    rng = np.random.default_rng(0)
    pts = torch.as_tensor(np.c_[rng.uniform(-0.2, 0.2, (50, 2)), rng.uniform(0, 0.1, 50), rng.integers(0, 3, 50)])
    img = rasterize(pts[None], torch.zeros(1), 32, PIX)[0]
    rot = pts.clone()
    rot[:, 0], rot[:, 1] = -pts[:, 1], pts[:, 0]
    img_rot = rasterize(rot[None], torch.zeros(1), 32, PIX)[0]
    assert torch.allclose(img_rot, torch.rot90(img, 1, (1, 2)), atol=1e-9)
    # Mass is conserved (points inside the grid): every point splats 0.25 in total.
    assert img[:3].sum().item() == pytest.approx(0.25 * 50)


def test_keypose_argmax_recovers_a_sub_pixel_peak():
    kp = torch.tensor([[0.053, -0.117]], dtype=torch.float64)
    target = heatmap_target(kp, 32, PIX).view(1, 32, 32)
    est = keypose_from_heatmap(torch.log(target + 1e-9) * 5, PIX)
    assert torch.linalg.norm(est - kp) < PIX / 2


def test_training_reduces_keypose_error(demos):
    untrained = HEPAgent.build(None, dict(high_steps=0, low_steps=0), seed=3).learn(demos)
    agent = HEPAgent.build(None, dict(high_steps=100, low_steps=0), seed=3)
    m = agent.learn(demos)
    assert m["train_keypose_error_m"] < 0.5 * untrained["train_keypose_error_m"]
    assert m["train_keypose_error_m"] < 0.02  # one pixel


def test_chunk_targets_accumulate_commands_within_episodes():
    actions = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, -1], [1, 1, 1, 1]], np.float32)
    offs, grips = chunk_targets(actions, np.array([0, 0, 0, 1]), chunk=3, max_step=0.5)
    assert np.allclose(offs[0], [[0.5, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0.5]])
    assert np.allclose(offs[2], [[0, 0, 0.5]] * 3)       # the episode ends: hold position
    assert np.allclose(grips[0], [1, 1, 0])


def test_save_load_roundtrip(trained, scenes, tmp_path):
    agent, _ = trained
    agent.save(tmp_path)
    loaded = HEPAgent.load(tmp_path)
    _, obs = scenes
    assert np.allclose(plan_vector(agent, obs[1]), plan_vector(loaded, obs[1]))
    (tmp_path / "hep.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt checkpoint file"):
        HEPAgent.load(tmp_path)


def test_bad_kwargs_raise(demos):
    with pytest.raises(ValueError, match="unknown hep agent kwarg"):
        HEPAgent.build(None, dict(frame_tranfer=False), seed=0)
    with pytest.raises(ValueError, match="execute"):
        HEPAgent.build(None, dict(execute=9), seed=0)
    with pytest.raises(ValueError, match="unknown flat-bc agent kwarg"):
        FlatBCAgent.build(None, dict(equivariant=True), seed=0)


def test_flat_bc_fits_and_acts(demos, scenes):
    agent = FlatBCAgent.build(None, dict(low_steps=300), seed=0)
    m = agent.learn(demos)
    assert m["loss"] < 0.05
    _, obs = scenes
    a = agent.act(obs[0])
    assert a.shape == (4,) and np.all(np.isfinite(a))


def test_cli_trains_hep_from_a_demos_file(tmp_path):
    from symgym.learn.cli import main

    demos = tmp_path / "demos.npz"
    collect_demos("HepPushToTarget-v0", 2, out=demos, seed=0, progress=False)
    run = tmp_path / "run"
    rc = main(["train", "--agent", "hep", "--env", "HepPushToTarget-v0", "--demos", str(demos), "--steps", "50",
               "--out", str(run), "--agent-kwargs", '{"high_steps": 5}'])
    assert rc == 0 and (run / "hep.pt").is_file()
    agent = HEPAgent.load(run)
    env = make_env("HepPushToTarget-v0")
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(np.clip(agent.act(obs), -1, 1))
