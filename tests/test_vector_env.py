"""The batched vector env (symgym.envs.vector) behaves as N single envs, bit for bit, with Gymnasium's semantics."""
from __future__ import annotations

import dataclasses
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import symgym.envs  # noqa: F401  (registers the ids)
from symgym.agents import Agent
from symgym.envs.vector import MujocoVectorEnv
from symgym.learn.bench.timing import interleaved, ratio
from symgym.learn.run.evaluate import evaluate


def _pair(env_id: str, n: int, **kwargs):
    fast = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", **kwargs)
    return fast, sync


def _assert_same_step(a, b, t):
    for name, x, y in zip(("obs", "reward", "terminated", "truncated"), a[:4], b[:4]):
        assert x.dtype == y.dtype and np.array_equal(x, y), f"{name} differs at step {t}"
    assert a[4].keys() == b[4].keys(), f"info keys differ at step {t}: {a[4].keys()} vs {b[4].keys()}"
    for key in a[4]:
        assert a[4][key].dtype == b[4][key].dtype and np.array_equal(a[4][key], b[4][key]), f"info {key!r}, step {t}"


@pytest.mark.parametrize("env_id,kwargs", [
    ("SymPush-v0", {"success_radius": 0.12}),     # a wide goal: episodes also *terminate*, not only truncate
    ("SymPushWind-v0", {}),
    ("SymPushObstacle-v0", {"success_radius": 0.12}),
])
def test_identical_to_sync_vector_env_across_autoresets(env_id, kwargs):
    n = 6
    fast, sync = _pair(env_id, n, **kwargs)
    assert isinstance(fast, MujocoVectorEnv) and fast.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert fast.spec.id == env_id
    o1, i1 = fast.reset(seed=7)
    o2, i2 = sync.reset(seed=7)
    assert np.array_equal(o1, o2) and i1.keys() == i2.keys()
    rng = np.random.default_rng(0)
    terminated = truncated = 0
    for t in range(120):
        # actions beyond the unit disc exercise the projection; zero rows the degenerate norm
        actions = rng.uniform(-1.5, 1.5, (n, 2)).astype(np.float32)
        actions[t % n] = 0.0
        a, b = fast.step(actions), sync.step(actions)
        _assert_same_step(a, b, t)
        terminated += a[2].sum()
        truncated += a[3].sum()
    assert truncated > 0 and (terminated > 0 or env_id == "SymPushWind-v0")
    fast.close(), sync.close()


def test_same_as_single_envs_and_reset_mask():
    """Literally N ``gymnasium.make`` envs, seeded s + i, then a partial reset with explicit seeds."""
    n = 4
    fast = gym.make_vec("SymPush-v0", num_envs=n, vectorization_mode="vector_entry_point")
    singles = [gym.make("SymPush-v0") for _ in range(n)]
    obs, _ = fast.reset(seed=100)
    assert np.array_equal(obs, np.stack([e.reset(seed=100 + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(1)
    for t in range(20):
        actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        obs, reward, *_ = fast.step(actions)
        steps = [e.step(a) for e, a in zip(singles, actions)]
        assert np.array_equal(obs, np.stack([s[0] for s in steps])), t
        assert np.array_equal(reward, [s[1] for s in steps]), t
    mask = np.array([False, True, False, True])
    obs, info = fast.reset(seed=[None, 5, None, 9], options={"reset_mask": mask})
    assert np.array_equal(obs[1], singles[1].reset(seed=5)[0]) and np.array_equal(obs[3], singles[3].reset(seed=9)[0])
    assert np.array_equal(info["_is_success"], mask)
    actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    obs, *_ = fast.step(actions)
    assert np.array_equal(obs, np.stack([e.step(a)[0] for e, a in zip(singles, actions)]))


def test_rejects_bad_input():
    fast = gym.make_vec("SymPush-v0", num_envs=3, vectorization_mode="vector_entry_point")
    fast.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        fast.step(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="3 seeds"):
        fast.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec("SymPush-v0", num_envs=0, vectorization_mode="vector_entry_point")


@pytest.mark.parametrize("env_id,n_actions", [("SymReach-v0", 2), ("SymCartPole-v0", 1), ("SymPointMass-v0", 2)])
def test_replayed_step_envs_identical_to_sync(env_id, n_actions):
    """Envs without batched helpers but with a state-only step: batched physics, their own step() on each row."""
    n = 3
    fast, sync = _pair(env_id, n)
    assert isinstance(fast, MujocoVectorEnv) and not fast._helpers
    o1, _ = fast.reset(seed=11)
    o2, _ = sync.reset(seed=11)
    assert np.array_equal(o1, o2)
    rng = np.random.default_rng(3)
    limit = gym.spec(env_id).max_episode_steps
    truncated = 0
    for t in range(limit + 5):      # across one time-limit autoreset
        actions = rng.uniform(-1.5, 1.5, (n, n_actions)).astype(np.float32)
        a, b = fast.step(actions), sync.step(actions)
        _assert_same_step(a, b, t)
        truncated += a[3].sum()
    assert truncated == n


def _single_step_next_reset(env: gym.Env, action, done: bool):
    """One step of a single env with gymnasium's NEXT_STEP autoreset, as SyncVectorEnv and the vector env do it."""
    if done:
        obs, info = env.reset()
        return obs, 0.0, False, False, info
    return env.step(action)


@pytest.mark.parametrize("env_id,kwargs", [
    ("PandaPush-v0", {"success_radius": 0.15}),     # wide goals: episodes terminate as well as truncate
    ("PandaReach-v0", {"success_radius": 0.12}),
])
def test_panda_controlled_step_identical_to_single_envs_and_sync(env_id, kwargs):
    """The Panda's controller runs per env (env.control), the physics in the batch: the same as N gymnasium.make
    envs and as SyncVectorEnv, bit for bit, observations, rewards, flags, infos and full states, across autoresets."""
    n = 3
    fast, sync = _pair(env_id, n, **kwargs)
    assert isinstance(fast, MujocoVectorEnv) and fast._controlled and not fast._helpers
    singles = [gym.make(env_id, **kwargs) for _ in range(n)]
    obs, _ = fast.reset(seed=21)
    assert np.array_equal(obs, sync.reset(seed=21)[0])
    assert np.array_equal(obs, np.stack([e.reset(seed=21 + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(4)
    done = np.zeros(n, dtype=bool)
    terminated = truncated = 0
    limit = gym.spec(env_id).max_episode_steps
    for t in range(limit + 10):                      # past the time limit: every env autoresets at least once
        actions = rng.uniform(-1.5, 1.5, (n, 2)).astype(np.float32)
        if env_id == "PandaReach-v0":   # env 1 homes on its goal (obs[-2:] = goal - tip), so it also terminates
            actions[1] = np.clip(4.0 * obs[1, -2:], -1, 1)
        actions[t % n] = 0.0
        a, b = fast.step(actions), sync.step(actions)
        _assert_same_step(a, b, t)
        obs = a[0]
        steps = [_single_step_next_reset(e, x, d) for e, x, d in zip(singles, actions, done)]
        assert np.array_equal(a[0], np.stack([s[0] for s in steps])), t
        assert np.array_equal(a[1], np.array([s[1] for s in steps])), t
        assert np.array_equal(a[2], [s[2] for s in steps]) and np.array_equal(a[3], [s[3] for s in steps]), t
        fast.sync_envs()                              # the rows are whole states (get_state, renders)
        for i, e in enumerate(singles):
            assert np.array_equal(fast.envs[i].get_state(), e.unwrapped.get_state()), (t, i)
        done = a[2] | a[3]
        terminated += a[2].sum()
        truncated += a[3].sum()
    assert terminated > 0 and truncated > 0
    fast.close(), sync.close()


def test_panda_rejects_non_finite_actions_before_stepping():
    fast = gym.make_vec("PandaReach-v0", num_envs=2, vectorization_mode="vector_entry_point")
    fast.reset(seed=0)
    before = [e.get_state() for e in fast.envs]
    rows = fast.batch.state.copy()
    with pytest.raises(ValueError, match=r"env 1 must be finite, got \[0.5, nan\]"):
        fast.step(np.array([[0.1, 0.2], [0.5, np.nan]], np.float32))
    assert all(np.array_equal(b, e.get_state()) for b, e in zip(before, fast.envs))
    assert np.array_equal(rows, fast.batch.state)
    fast.close()


def test_envs_that_simulate_inside_step_fall_back_to_sync():
    """HEP's suction rule switches a constraint inside step(): the entry point gives a SyncVectorEnv, time-limited."""
    env = gym.make_vec("HepPushToTarget-v0", num_envs=2, vectorization_mode="vector_entry_point")
    assert isinstance(env, SyncVectorEnv)
    env.reset(seed=0)
    limit = gym.spec("HepPushToTarget-v0").max_episode_steps
    for _ in range(limit):
        *_, truncated, _ = env.step(np.zeros((2, 4), np.float32))
    assert truncated.all()


def test_image_observations_match():
    fast, sync = _pair("SymPushImage-v0", 2)
    _assert_same_step((*fast.reset(seed=3)[:1], np.zeros(1), np.zeros(1), np.zeros(1), {}),
                      (*sync.reset(seed=3)[:1], np.zeros(1), np.zeros(1), np.zeros(1), {}), -1)
    rng = np.random.default_rng(2)
    for t in range(5):
        actions = rng.uniform(-1, 1, (2, 2)).astype(np.float32)
        _assert_same_step(fast.step(actions), sync.step(actions), t)


@dataclasses.dataclass
class _NoConfig:
    """The chaser has no hyper-parameters."""


class _Chaser(Agent):
    """A deterministic observation-only policy: push the pusher towards the puck, then the puck to the goal."""

    name = "chaser-test"
    config_class = _NoConfig

    def act(self, obs, deterministic=True):
        to_puck, to_goal = obs[10:12], obs[12:14]
        return np.clip(3.0 * to_puck + 1.5 * to_goal, -1, 1).astype(np.float32)


@pytest.mark.parametrize("agent,env_id,episodes", [(None, "SymPush-v0", 50), (_Chaser(), "SymPush-v0", 50),
                                                   (None, "SymReach-v0", 20), (None, "PandaReach-v0", 5)],
                         ids=["random", "chaser", "reach", "panda"])
def test_batched_evaluation_equals_sequential(agent, env_id, episodes):
    """Held-out episodes, up to 16 at a time, give exactly the sequential loop's numbers (same seeds)."""
    kwargs = {"success_radius": 0.08}
    batched = evaluate(agent, env_id, episodes=episodes, seed=123, env_kwargs=kwargs, progress=False)
    sequential = evaluate(agent, env_id, episodes=episodes, seed=123, env_kwargs=kwargs, progress=False, num_envs=1)
    assert batched == sequential
    if agent is not None:      # the policy solves some and not all: both termination and truncation are exercised
        assert 0.0 < batched.success_rate < 1.0


def test_interleaved_timing_helper():
    """The bench helper interleaves, drops warm-ups, reports ratios to the baseline and the conditions."""
    calls: list[str] = []

    def work(name, seconds):
        def go():
            calls.append(name)
            time.sleep(seconds)
        return go

    t = interleaved({"slow": work("slow", 0.004), "fast": work("fast", 0.001)}, baseline="fast", rounds=5, warmup=1,
                    units=10, unit="naps", threads={"pool": 2})
    assert calls.count("slow") == calls.count("fast") == 6
    assert calls[:4] == ["slow", "fast", "fast", "slow"]            # rotating order, warm-up round included
    assert len(t["contenders"]["slow"]["seconds"]) == 5 and "fast" not in t["ratios"]
    r = t["ratios"]["slow"]
    assert 1.5 < r["median"] < 8 and r["iqr"][0] <= r["median"] <= r["iqr"][1] and len(r["per_round"]) == 5
    assert t["threads"]["pool"] == 2 and t["threads"]["cpus_available"] >= 1
    assert len(t["load_average"]["before"]) == 3
    assert ratio(t, "fast", "slow")["median"] == pytest.approx(1 / r["median"], rel=0.5)
    assert len(t["contenders"]["fast"]["cpu_seconds"]) == 5 and t["cpu_ratios"]["slow"]["clock"] == "cpu"
    assert t["contenders"]["slow"]["cpu_median_s"] < t["contenders"]["slow"]["median_s"]   # a nap uses no CPU
    with pytest.raises(ValueError, match="rounds"):
        interleaved({"a": lambda: None, "b": lambda: None}, baseline="a", rounds=3)
    with pytest.raises(ValueError, match="'c'"):
        interleaved({"a": lambda: None, "b": lambda: None}, baseline="c")


def test_two_physics_threads_give_the_same_numbers():
    """mujoco.batch is bit-identical at any thread count: a 2-thread pool matches the 1-thread default."""
    one = gym.make_vec("SymPush-v0", num_envs=5, vectorization_mode="vector_entry_point")
    two = gym.make_vec("SymPush-v0", num_envs=5, vectorization_mode="vector_entry_point", nthread=2)
    assert (one.nthread, two.nthread) == (1, 2)
    assert np.array_equal(one.reset(seed=4)[0], two.reset(seed=4)[0])
    rng = np.random.default_rng(5)
    for t in range(60):
        actions = rng.uniform(-1.2, 1.2, (5, 2)).astype(np.float32)
        _assert_same_step(one.step(actions), two.step(actions), t)
    with pytest.raises(ValueError, match="nthread"):
        gym.make_vec("SymPush-v0", num_envs=2, vectorization_mode="vector_entry_point", nthread=0)


def test_panda_partial_reset_solves_placements_together_as_single_envs():
    """A reset_mask reset of some Panda envs (their IK placements solved as one batch) leaves each exactly where
    its own reset puts it; the next step then matches single envs too."""
    n = 4
    fast = gym.make_vec("PandaPush-v0", num_envs=n, vectorization_mode="vector_entry_point")
    singles = [gym.make("PandaPush-v0") for _ in range(n)]
    obs, _ = fast.reset(seed=50)
    assert np.array_equal(obs, np.stack([e.reset(seed=50 + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(6)
    for _ in range(3):
        actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        fast.step(actions)
        for e, a in zip(singles, actions):
            e.step(a)
    mask = np.array([True, False, True, True])
    obs, info = fast.reset(seed=[3, None, 4, 5], options={"reset_mask": mask})
    for i, seed in ((0, 3), (2, 4), (3, 5)):
        assert np.array_equal(obs[i], singles[i].reset(seed=seed)[0])
    assert np.array_equal(info["_is_success"], mask)
    actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    obs, reward, *_ = fast.step(actions)
    steps = [e.step(a) for e, a in zip(singles, actions)]
    assert np.array_equal(obs, np.stack([s[0] for s in steps])) and np.array_equal(reward, [s[1] for s in steps])
    fast.sync_envs()
    assert all(np.array_equal(f.get_state(), e.unwrapped.get_state()) for f, e in zip(fast.envs, singles))
    fast.close()
