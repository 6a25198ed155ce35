"""For every registered symgym env with ``get_state``/``set_state``: restoring a saved state replays the future
bit for bit, in the same env and in a pickled or deep-copied one.

Planners (MPPI), symmetry checks and the vector env all assume that a state from ``get_state()`` *is* the
state: nothing the next steps depend on (stale kinematics, a previous-tip estimate, the solver's warm start)
lives outside it.
"""
from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest

import symgym.envs  # noqa: F401  (registers the ids)

#: ids that need a server (a rosbridge) rather than a simulator in this process
NEEDS_SERVER = ("RosArm-v0",)
WARMUP, HORIZON = 7, 20


def _ids() -> list[str]:
    return sorted(k for k, spec in gym.registry.items()
                  if str(spec.entry_point).startswith("symgym.") and k not in NEEDS_SERVER)


def _make(env_id: str):
    try:
        return gym.make(env_id).unwrapped
    except ImportError as e:   # an optional extra (pybullet for tabletop, pybullet_data for the Panda) is missing
        pytest.skip(f"{env_id}: {e}")


def _flat(obs) -> np.ndarray:
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(obs[k], dtype=np.float64).ravel() for k in sorted(obs)])
    return np.asarray(obs, dtype=np.float64).ravel()


def _replay(env, actions) -> tuple[np.ndarray, np.ndarray]:
    obs, rewards = [], []
    for a in actions:
        o, r, terminated, truncated, _ = env.step(a)
        obs.append(_flat(o))
        rewards.append(r)
        if terminated or truncated:
            break
    return np.array(obs), np.array(rewards)


def _saved_future(env_id: str):
    """An env a few random steps after a seeded reset, its state, the next actions and what they produce."""
    env = _make(env_id)
    if not (hasattr(env, "get_state") and hasattr(env, "set_state")):
        pytest.skip(f"{env_id} has no get_state/set_state")
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(WARMUP):   # leave the reset state: velocities, contacts and warm starts are non-trivial
        env.step(env.action_space.sample())
    actions = [env.action_space.sample() for _ in range(HORIZON)]
    state = env.get_state()
    obs, rewards = _replay(env, actions)
    assert len(obs) >= 2, f"{env_id}: the episode ended before the replay could compare anything"
    return env, state, actions, obs, rewards


#: tabletop (#34): with the Panda arm a random action's failed grasp ends the episode at once, and PyBullet does not
#: replay a primitive bit for bit from a mid-episode state (even restoreState: 0.3 mm apart after one primitive)
_TABLETOP = tuple(i for i in _ids() if i.startswith("Tabletop"))
_REPLAY_XFAIL = {env_id: "tabletop: episodes end on a failed grasp; PyBullet replays are not bit-exact mid-episode"
                 for env_id in _TABLETOP}
#: HEP depth clouds (#33): each observation subsamples the rendered cloud with np_random, which get_state does not
#: carry, so a restored state observes another subsample (the dynamics and the vector part do replay)
_DEPTH = {env_id: "depth cloud subsampled with np_random, which get_state does not carry (envs/closed_loop_perception)"
          for env_id in ("HepPickPlaceDepth-v0", "HepPushToTargetDepth-v0", "HepPushAroundDepth-v0")}
_REPLAY_XFAIL.update(_DEPTH)


@pytest.mark.parametrize("env_id", [pytest.param(i, marks=pytest.mark.xfail(reason=_REPLAY_XFAIL[i], strict=True))
                                    if i in _REPLAY_XFAIL else i for i in _ids()])
def test_set_state_get_state_replays_the_next_steps_bit_for_bit(env_id):
    env, state, actions, obs, rewards = _saved_future(env_id)
    env.set_state(state)
    again_obs, again_rewards = _replay(env, actions)
    np.testing.assert_array_equal(again_obs, obs)
    np.testing.assert_array_equal(again_rewards, rewards)


#: known defects owned elsewhere: strict, so the test fails (and asks for this entry to go) once they are fixed
_PICKLE_XFAIL = {env_id: "the tabletop symmetry's image map is a closure and does not pickle (envs/tabletop)"
                 for env_id in _TABLETOP}
_PICKLE_XFAIL.update(_DEPTH)


@pytest.mark.parametrize("env_id", [pytest.param(i, marks=pytest.mark.xfail(reason=_PICKLE_XFAIL[i], strict=True))
                                    if i in _PICKLE_XFAIL else i for i in _ids()])
def test_a_pickled_or_deep_copied_env_replays_the_same_future(env_id):
    env, state, actions, obs, rewards = _saved_future(env_id)
    env.set_state(state)
    for clone in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        assert clone is not env and clone.get_state().shape == state.shape
        clone_obs, clone_rewards = _replay(clone, actions)
        np.testing.assert_array_equal(clone_obs, obs)
        np.testing.assert_array_equal(clone_rewards, rewards)


def test_the_registry_walk_covers_the_mujoco_envs():
    """The parametrisation is not silently empty: the planar MuJoCo envs and the Panda are in it."""
    ids = _ids()
    for env_id in ("SymPush-v0", "SymReach-v0", "SymCartPole-v0", "HepPickPlace-v0", "PandaPush-v0"):
        assert env_id in ids
