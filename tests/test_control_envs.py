"""SymReach-v0 and SymCartPole-v0: Gymnasium API, declared symmetry, and dynamics equivariance by simulation."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import symgym.envs  # noqa: F401  (registers ids)
from symgym.equivariance import MIRROR_X, O2, DihedralGroup, O2Element, ReflectionGroup, relative_error, sample_elements

torch.set_num_threads(1)

ENV_GROUPS = {
    "SymReach-v0": lambda: DihedralGroup(8).elements() + sample_elements(O2(), 6, rng=0),
    "SymCartPole-v0": lambda: ReflectionGroup().elements(),
}


def make(env_id: str):
    return gym.make(env_id).unwrapped


def simulate(env, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    env.set_state(state)
    for a in actions:
        env.step(a)
    return env.get_state()


def physical(env, state: np.ndarray) -> np.ndarray:
    """qpos and qvel: the part of the state that the dynamics evolve."""
    return np.concatenate([state[..., env.state_layout["QPOS"]], state[..., env.state_layout["QVEL"]]], axis=-1)


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_check_env_passes(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_declared_symmetry_is_exact(env_id):
    sym = make(env_id).symmetry
    assert sym.exact


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_dynamics_are_equivariant_by_simulation(env_id):
    """step(g.s, g.a) == g.step(s, a) over 60 steps of random actions, for every listed group element."""
    env = make(env_id)
    env.reset(seed=3)
    state = env.get_state()
    actions = np.random.default_rng(0).uniform(-1, 1, size=(60, *env.action_space.shape))
    reference = simulate(env, state, actions)
    for g in ENV_GROUPS[env_id]():
        moved = simulate(env, env.transform_state(g, state), env.symmetry.transform_action(g, actions))
        err = relative_error(physical(env, moved), physical(env, env.transform_state(g, reference)))
        assert err < 1e-8, f"{env_id}: dynamics not equivariant under {g}: relative error {err:.2e}"


def test_equivariance_check_detects_a_wrong_state_transform():
    """The simulation test can fail: forgetting that the elbow angle flips under reflections is caught."""
    env = make("SymReach-v0")
    env.reset(seed=4)
    state = env.get_state()
    actions = np.random.default_rng(1).uniform(-1, 1, size=(30, 2))
    reference = simulate(env, state, actions)
    g = O2Element(0.3, True)
    wrong = super(type(env), env).transform_state(g, state)  # the base class treats only the shoulder
    moved = simulate(env, wrong, env.symmetry.transform_action(g, actions))
    assert relative_error(physical(env, moved), physical(env, env.transform_state(g, reference))) > 1e-2


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_observation_transforms_by_declared_representation(env_id):
    """obs(g.s) == rho_obs(g) obs(s): the declared obs representation matches the state action."""
    env = make(env_id)
    for seed in range(3):
        env.reset(seed=seed)
        state = env.get_state()
        obs = env._obs()
        for g in ENV_GROUPS[env_id]():
            env.set_state(env.transform_state(g, state))
            np.testing.assert_allclose(env._obs(), env.symmetry.transform_obs(g, obs), atol=1e-5)


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_cost_is_invariant(env_id):
    env = make(env_id)
    env.reset(seed=5)
    rng = np.random.default_rng(2)
    states = env.transform_state(O2Element(), np.tile(env.get_state(), (4, 3, 1)))
    states[..., env.state_layout["QVEL"]] += rng.normal(size=states[..., env.state_layout["QVEL"]].shape)
    actions = rng.uniform(-1, 1, size=(4, 3, *env.action_space.shape))
    base = env.cost(states, actions)
    for g in ENV_GROUPS[env_id]():
        moved = env.cost(env.transform_state(g, states), env.symmetry.transform_action(g, actions))
        np.testing.assert_allclose(moved, base, rtol=1e-10)


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_reward_is_minus_stage_cost_and_reset_is_seeded(env_id):
    env = make(env_id)
    obs_a, _ = env.reset(seed=7)
    obs_b, _ = env.reset(seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    action = np.full(env.action_space.shape, 0.5, dtype=np.float32)
    _, reward, _, _, _ = env.step(action)
    assert reward == pytest.approx(-float(env.stage_cost(env.get_state(), action)))


@pytest.mark.parametrize("env_id", sorted(ENV_GROUPS))
def test_bad_action_shape_is_rejected(env_id):
    env = make(env_id)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))


def test_reflection_group_is_a_group_of_two_mirrors():
    G = ReflectionGroup()
    e, m = G.elements()
    assert np.allclose(m.matrix(), np.diag([-1.0, 1.0]))  # x -> -x
    assert G.compose(m, m).isclose(e) and G.inverse(m).isclose(m)
    assert G.contains(G.compose(e, m)) and not G.contains(O2Element(0.0, True))
    with pytest.raises(ValueError, match="not an element"):
        G.index(O2Element(math.pi / 2))
    env = make("SymCartPole-v0")
    with pytest.raises(ValueError, match="not an element"):
        env.transform_state(O2Element(math.pi / 2), env.get_state())


def test_cartpole_mirror_negates_cart_and_pole():
    env = make("SymCartPole-v0")
    env.reset(seed=0)
    s = env.get_state()
    m = env.transform_state(MIRROR_X, s)
    np.testing.assert_allclose(m[env.state_layout["QPOS"]], -s[env.state_layout["QPOS"]])
    np.testing.assert_allclose(m[env.state_layout["TIME"]], s[env.state_layout["TIME"]])


def test_reach_arm_starts_away_from_goal_and_renders():
    env = gym.make("SymReach-v0", render_mode="rgb_array")
    _, info = env.reset(seed=0)
    assert info["goal_distance"] > 0.0
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8 and frame.std() > 0


#: qpos and mocap positions after ``reset(seed=0)``, recorded before ``reset_model`` replaced the per-env
#: ``reset`` overrides: the hook must not change which start states a seed gives.
SEED0_STARTS = {
    "SymPush-v0": ([0.21551021486680763, -0.13158926263705478, -0.014845065180548863, 0.1187908329986703,
                    0.6700123395200417], [0.04429231658829485, 0.004616194293363674, 0.0]),
    "SymReach-v0": ([0.8605556614246863, -1.1510664311806484], [0.2805967255724368, -0.17133070114225868, 0.0]),
    "SymCartPole-v0": ([0.08217701239287256, 3.0495073390953413], []),
    "HepPickPlace-v0": ([0.018796214352016345, -0.055234665363336696, 0.1, -0.06904306501428366,
                         -0.018417062898890377, 0.0], [0.04327788191489557, -0.038677789157717676, 0.0]),
}


@pytest.mark.parametrize("env_id", sorted(SEED0_STARTS))
def test_reset_is_the_base_hook_and_a_seed_pins_the_start(env_id):
    from symgym.envs.mujoco_base import PlanarMujocoEnv

    env = make(env_id)
    # subclasses only place bodies (reset_model); seeding, mj_resetData and mj_forward live in the base reset
    assert type(env).reset is PlanarMujocoEnv.reset
    assert "reset_model" in {k for c in type(env).__mro__[:-3] for k in vars(c)}
    env.step(env.action_space.sample())
    obs, info = env.reset(seed=0)
    qpos, mocap = SEED0_STARTS[env_id]
    np.testing.assert_array_equal(env.data.qpos, qpos)
    np.testing.assert_array_equal(env.data.mocap_pos.ravel(), mocap)
    assert env.data.time == 0.0 and "is_success" in info
    s0 = env.get_state()
    env.reset()                       # unseeded: continues the stream, so a different start
    assert not np.array_equal(env.get_state(), s0)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.get_state(), s0)
    obs_again, _ = env.reset(seed=0)
    parts = (lambda o: list(o.values()) if isinstance(o, dict) else [o])
    for a, b in zip(parts(obs), parts(obs_again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_subclass_that_only_writes_reset_model_gets_a_working_reset():
    from symgym.envs.sym_reach import SymReachEnv

    class StraightArm(SymReachEnv):
        def reset_model(self):
            self.data.qpos[:] = [0.5, 0.0]
            self.data.mocap_pos[0, :2] = self.np_random.uniform(-0.3, 0.3, size=2)

    env = StraightArm()
    obs, info = env.reset(seed=1)
    np.testing.assert_allclose(env.tip_pos, 0.4 * np.array([np.cos(0.5), np.sin(0.5)]))
    np.testing.assert_allclose(obs[8:10], env.tip_pos, atol=1e-6)   # forwarded before the observation
    assert info["goal_distance"] == pytest.approx(np.linalg.norm(env.goal_pos - env.tip_pos))


PLANNER_IDS = ["SymPush-v0", "SymPushWind-v0", "SymPushObstacle-v0", "SymReach-v0", "SymCartPole-v0"]


@pytest.mark.parametrize("env_id", PLANNER_IDS)
def test_planner_envs_satisfy_the_protocol_through_public_names(env_id):
    from symgym.envs.protocols import MujocoPlannerEnv, PlannerEnv, as_planner_env, missing_members

    wrapped = gym.make(env_id)
    env = as_planner_env(wrapped, MujocoPlannerEnv)
    assert env is wrapped.unwrapped and isinstance(env, PlannerEnv) and isinstance(env, MujocoPlannerEnv)
    assert missing_members(wrapped, MujocoPlannerEnv) == []
    env.reset(seed=2)
    state, layout = env.get_state(), env.state_layout
    # the layout tiles the state vector and names where the simulator keeps qpos, qvel, mocap poses
    spans = sorted((sl.start, sl.stop) for sl in layout.values())
    assert spans[0][0] == 0 and spans[-1][1] == state.size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    np.testing.assert_array_equal(state[layout["QPOS"]], env.data.qpos)
    np.testing.assert_array_equal(state[layout["QVEL"]], env.data.qvel)
    np.testing.assert_array_equal(env.physics_state()[env.physics_layout["QPOS"]], env.data.qpos)
    with pytest.raises(TypeError):
        layout["QPOS"] = slice(0, 1)  # read-only: a planner cannot corrupt the env's bookkeeping
    assert set(env.planner_defaults) <= {"horizon", "noise_sigma", "temperature"}
    K, H = 3, 2
    actions = env.project_actions(np.random.default_rng(0).normal(size=(K, H, *env.action_space.shape)))
    assert env.cost(np.broadcast_to(state, (K, H, state.size)), actions).shape == (K,)


def test_envs_without_a_cost_are_named_as_not_plannable():
    from symgym.envs.protocols import PlannerEnv, as_planner_env, missing_members

    env = gym.make("HepPickPlace-v0")
    assert not isinstance(env.unwrapped, PlannerEnv)
    missing = missing_members(env)
    assert "project_actions" in missing and "actions_to_ctrl" in missing
    assert "planner_defaults" not in missing and "state_layout" not in missing  # the MuJoCo base supplies these
    with pytest.raises(ValueError, match=r"PickPlaceEnv cannot be planned in: it lacks .*project_actions"):
        as_planner_env(env)
