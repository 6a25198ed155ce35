"""MPPI: rollout backends, orbit-symmetrised sampling, exact planner equivariance, control quality, agent I/O."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import symgym.envs  # noqa: F401  (registers ids)
from symgym.agents import CheckpointError, EnvInfo, TrainConfig, agent_class
from symgym.learn.run.training import train
from symgym.agents.mppi import (MPPIConfig, MPPIPlanner, MujocoRolloutBackend, TorchRolloutBackend, action_orbit_matrices,
                         orbit_noise)
from symgym.agents.mppi_models import fit_dynamics
from symgym.equivariance import ReflectionGroup
from symgym.equivariance import O2, DihedralGroup, Symmetry, equivariance_error, sample_elements

torch.set_num_threads(1)

#: env id -> (planning group name or None for the env's own, elements the symmetric planner must commute with)
CASES = {
    "SymReach-v0": (None, lambda: DihedralGroup(8).elements() + sample_elements(O2(), 4, rng=1)),
    "SymPush-v0": ("D4", lambda: DihedralGroup(4).elements()),
    "SymCartPole-v0": (None, lambda: ReflectionGroup().elements()),
    "SymPointMass-v0": ("D4", lambda: DihedralGroup(4).elements()),
}


def make(env_id: str):
    return gym.make(env_id).unwrapped


def state_symmetry(env) -> Symmetry:
    """The env's symmetry acting on full simulator states (inputs) and on (H, na) plans (outputs)."""
    sym = env.symmetry
    return Symmetry(group=sym.group, obs=env.transform_state, action=sym.transform_action)


def plan_fn(planner: MPPIPlanner):
    def f(state):
        planner.reset()  # same noise seed for every call
        return planner.plan(state)

    return f


def test_rollout_backend_matches_env_steps():
    env = make("SymPush-v0")
    env.reset(seed=2)
    state = env.get_state()
    actions = np.random.default_rng(0).uniform(-1, 1, size=(3, 12, 2))
    backend = MujocoRolloutBackend(env, nthread=2)
    out = backend(state, env.actions_to_ctrl(actions))
    for k in range(3):
        env.set_state(state)
        for t in range(12):
            env.step(actions[k, t])
            np.testing.assert_allclose(out[k, t, env.state_layout["QPOS"]], env.data.qpos, atol=1e-9)
            np.testing.assert_allclose(out[k, t, env.state_layout["MOCAP_POS"]], env.data.mocap_pos.ravel())
    backend.close()


@pytest.mark.parametrize("env_id, group, size", [("SymPush-v0", "D4", 8), ("SymReach-v0", None, 2),
                                                 ("SymCartPole-v0", None, 2), ("SymPointMass-v0", "D8", 16)])
def test_orbit_matrices_are_distinct_action_matrices(env_id, group, size):
    env = make(env_id)
    planner = MPPIPlanner(env, MPPIConfig(samples=16, symmetric=True, group=group))
    mats = action_orbit_matrices(env.symmetry, planner.planning_group())
    assert mats.shape[0] == size  # the arm's torques ignore rotations: only +-identity survive
    planner.close()


def test_orbit_noise_is_a_group_invariant_set():
    env = make("SymPush-v0")
    group = DihedralGroup(4)
    mats = action_orbit_matrices(env.symmetry, group)
    noise = orbit_noise(np.random.default_rng(0).normal(size=(3, 5, 2)), mats)
    assert noise.shape == (24, 5, 2)
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=1e-12)  # orbits are exactly zero-mean
    key = lambda x: np.round(x.reshape(len(x), -1), 9).tolist()  # noqa: E731
    for g in group.elements():
        moved = env.symmetry.transform_action(g, noise)
        assert sorted(key(moved)) == sorted(key(noise)), f"noise set not invariant under {g}"


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_symmetric_planner_is_exactly_equivariant(env_id):
    """plan(g.s) == g.plan(s) with the same noise seed, for every element of the env's finite group."""
    group, elements = CASES[env_id]
    env = make(env_id)
    planner = MPPIPlanner(env, MPPIConfig(samples=32, horizon=10, symmetric=True, group=group, seed=3))
    states = []
    for seed in range(2):
        env.reset(seed=seed)
        states.append(env.get_state())
    err = equivariance_error(plan_fn(planner), state_symmetry(env), states, elements())
    planner.close()
    assert err < 1e-8, f"symmetric MPPI on {env_id}: equivariance error {err:.2e}"


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_naive_planner_breaks_the_symmetry(env_id):
    """Reported, not asserted zero: with i.i.d. Gaussian noise the plan for g.s is not g.plan(s)."""
    group, elements = CASES[env_id]
    env = make(env_id)
    env.reset(seed=0)
    planner = MPPIPlanner(env, MPPIConfig(samples=32, horizon=10, symmetric=False, seed=3))
    err = equivariance_error(plan_fn(planner), state_symmetry(env), [env.get_state()], elements())
    planner.close()
    print(f"naive MPPI equivariance error on {env_id}: {err:.3f}")
    assert err > 1e-3


def run_episode(env, policy, seed: int, steps: int) -> float:
    env.reset(seed=seed)
    total = 0.0
    for _ in range(steps):
        _, reward, terminated, truncated, _ = env.step(policy())
        total -= reward
    return total


@pytest.mark.parametrize("symmetric", [False, True])
def test_mppi_beats_zero_action_on_reach(symmetric):
    env = make("SymReach-v0")
    planner = MPPIPlanner(env, MPPIConfig(samples=32, horizon=20, symmetric=symmetric, seed=0))
    zero = np.zeros(2, dtype=np.float32)
    for seed in range(2):
        planner.reset()
        mppi_cost = run_episode(env, planner.act, seed, steps=40)
        zero_cost = run_episode(env, lambda: zero, seed, steps=40)
        assert mppi_cost < 0.8 * zero_cost, f"seed {seed}: MPPI {mppi_cost:.2f} vs zero action {zero_cost:.2f}"
    planner.close()


def test_warm_start_shifts_the_plan():
    env = make("SymCartPole-v0")
    env.reset(seed=0)
    planner = MPPIPlanner(env, MPPIConfig(samples=8, horizon=6))
    plan = planner.plan(env.get_state())
    np.testing.assert_array_equal(planner.nominal[:-1], plan[1:])
    np.testing.assert_array_equal(planner.nominal[-1], plan[-1])
    planner.close()


@pytest.mark.parametrize("kwargs, match", [({"samples": 0}, "samples"), ({"temperature": -1.0}, "temperature"),
                                           ({"dynamics": "gpu"}, "dynamics")])
def test_bad_config_names_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MPPIConfig(**kwargs)


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="horizn"):
        MPPIConfig.from_kwargs({"horizn": 3})


@pytest.mark.parametrize("agent_id", ["mppi", "sym-mppi"])
def test_agent_from_config_save_load_and_act(tmp_path, agent_id):
    cls = agent_class(agent_id)
    config = TrainConfig(agent=agent_id, env="SymReach-v0", steps=0, seed=4, out=str(tmp_path),
                         agent_kwargs={"samples": 16, "horizon": 5})
    train(config, progress=False)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["agent"] == agent_id and saved["files"] == {}
    assert saved["config"]["symmetric"] == (agent_id == "sym-mppi") and saved["seed"] == 4
    assert "seed" not in saved["config"]  # one seed, stored once
    agent = cls.load(tmp_path)
    with pytest.raises(RuntimeError, match="attach"):
        agent.act(None)
    env = gym.make("SymReach-v0")
    obs, _ = env.reset(seed=0)
    agent.attach(env)
    agent.reset()
    action = agent.act(obs)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
    agent.planner.close()


def test_load_reports_missing_and_corrupt_configs(tmp_path):
    cls = agent_class("mppi")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        cls.load(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        cls.load(tmp_path)
    cls(MPPIConfig(samples=8)).save(tmp_path)
    with pytest.raises(CheckpointError, match="for agent 'mppi', not 'sym-mppi'"):
        agent_class("sym-mppi").load(tmp_path)
    with pytest.raises(ValueError, match="symmetric"):
        cls.build(EnvInfo.of(gym.make("SymReach-v0")), {"symmetric": True})
    with pytest.raises(ValueError, match=r"seed=3 in agent kwargs.*--seed"):  # the run's seed is the only seed
        cls.build(EnvInfo.of(gym.make("SymReach-v0")), {"seed": 3})


def test_learned_dynamics_backend_predicts_the_simulator():
    """A model fit on random transitions predicts one step far better than 'nothing moves'."""
    env = gym.make("SymReach-v0")
    model = fit_dynamics(env, transitions=3000, epochs=15, seed=0)
    u = env.unwrapped
    backend = TorchRolloutBackend(model, u.state_layout)
    true = MujocoRolloutBackend(u, nthread=0)
    env.reset(seed=99)
    state = u.get_state()
    ctrl = u.actions_to_ctrl(np.random.default_rng(1).uniform(-1, 1, size=(16, 1, 2)))
    learned, exact = backend(state, ctrl), true(state, ctrl)
    qvel = u.state_layout["QVEL"]
    model_err = np.abs(learned[:, 0, qvel] - exact[:, 0, qvel]).mean()
    still_err = np.abs(state[qvel] - exact[:, 0, qvel]).mean()
    assert model_err < 0.3 * still_err, f"learned model error {model_err:.4f} vs constant-state {still_err:.4f}"
    true.close()


def test_coordinate_regression_toy_symmetric_estimator_is_equivariant():
    from symgym.learn.bench.mppi import regress_point

    target = np.array([0.4, -0.7])
    for symmetric, equivariant in ((True, True), (False, False)):
        est = regress_point(target, 16, np.random.default_rng(0), symmetric, temperature=0.3)
        errs = [np.linalg.norm(regress_point(g.matrix() @ target, 16, np.random.default_rng(0), symmetric,
                                             temperature=0.3) - g.matrix() @ est)
                for g in DihedralGroup(4).elements()]
        assert (max(errs) < 1e-12) == equivariant, f"symmetric={symmetric}: max error {max(errs):.2e}"


WORLD = {"model": "equivariant", "data": 60, "model_rounds": 1, "model_epochs": 2, "samples": 8, "horizon": 4}


@pytest.mark.parametrize("agent_id", ["mppi", "sym-mppi"])
def test_world_model_agent_learns_saves_loads_and_acts(tmp_path, agent_id):
    """``--agent mppi`` with ``{"model": ..., "data": N}``: learn fits the world model on N transitions, save
    writes its weights into the run dir, load + attach plans with the same weights (the same action)."""
    config = TrainConfig(agent=agent_id, env="SymPointMass-v0", steps=1, seed=3, out=str(tmp_path),
                         agent_kwargs=WORLD)
    train(config, progress=False)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["files"] == {"world_model": "world_model.pt"} and saved["config"]["model"] == "equivariant"
    env = gym.make("SymPointMass-v0")
    obs, _ = env.reset(seed=1)
    agent = agent_class(agent_id).load(tmp_path, env=env)
    assert agent.planner.rollout.model is agent.world_model  # plans with the learned model, not the simulator
    first = agent.act(obs)
    again = agent_class(agent_id).load(tmp_path, env=env)
    for (name, a), b in zip(agent.world_model.state_dict().items(), again.world_model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    np.testing.assert_array_equal(again.act(obs), first)
    assert first.shape == (2,) and np.all(np.isfinite(first))
    # a model that fits another env's symmetry is refused by name
    with pytest.raises(ValueError, match="does not fit"):
        agent_class(agent_id).load(tmp_path, env=gym.make("PandaPush-v0"))


def test_world_model_agent_needs_a_fit_and_good_kwargs():
    with pytest.raises(ValueError, match="needs a learned world model"):
        agent_class("mppi")(MPPIConfig(model="plain")).attach(gym.make("SymPointMass-v0"))
    for kwargs, match in (({"model": "mlp"}, "'mlp'"), ({"model": "plain", "data": 0}, "data"),
                          ({"model": "plain", "dynamics": "torch"}, "pick one")):
        with pytest.raises(ValueError, match=match):
            MPPIConfig(**kwargs)
