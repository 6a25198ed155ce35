"""Scripted-oracle demonstrations: ``symgym demos --env ID --n N --out FILE``.

A demos file is a compressed ``.npz`` of flat per-step arrays plus ``episode`` (index of the episode each
step belongs to), ``seeds`` (the env seed of each kept episode) and ``env_id``. Only successful episodes are
kept, so the file holds exactly ``n`` solved episodes (imitation learns from good behaviour only). What a
step records depends on the observation: top-down ``color``/``height`` images (tabletop envs: + ``action``,
``reward``) or ``vector``/``points`` observations and the oracle's ``keypose`` (closed-loop envs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from symgym.learn.run.episodes import Episode, Recorder, run_episode, solved_episodes
from symgym.learn.io import atomic_path
from symgym.learn.run.runs import make_env


def _recorder(env: gym.Env) -> Recorder:
    keys = set(getattr(env.observation_space, "spaces", {}) or {})
    if {"color", "height"} <= keys:
        return lambda obs, action, _env: {"color": obs["color"], "height": obs["height"],
                                          "action": np.asarray(action, np.float32)}
    if {"vector", "points"} <= keys:
        return lambda obs, action, e: {"vector": obs["vector"], "points": obs["points"],
                                       "action": np.asarray(action, np.float32),
                                       "keypose": np.asarray(e.unwrapped.keypose(), np.float32)}
    raise ValueError(f"env {env.spec.id if env.spec else env!r} has no demonstration format "
                     f"(observation keys {sorted(keys) or 'none'})")


def oracle(env: gym.Env):
    """The env's scripted demonstrator as a policy ``obs -> action`` (``None`` when it gives up)."""
    u = env.unwrapped
    if not hasattr(u, "oracle_action"):
        raise ValueError(f"env {env.spec.id if env.spec else env!r} has no scripted oracle (oracle_action)")

    def act(_obs):
        a = u.oracle_action()
        return None if a is None else np.asarray(a, np.float32)

    return act


def demo_episode(env: gym.Env, seed: int) -> Episode:
    """One oracle episode from ``seed``, recording what a demos file holds."""
    return run_episode(env, oracle(env), seed, record=_recorder(env))


def demonstrations(env_id: str, n: int, seed: int = 0, env_kwargs: dict[str, Any] | None = None,
                   progress: bool = False, max_failures: int | None = None) -> dict[str, np.ndarray]:
    """``n`` solved oracle episodes from seeds ``seed, seed+1, ...`` as flat arrays (see the module doc)."""
    if n < 1:
        raise ValueError(f"n must be >= 1 demonstrations, got {n}")
    env = make_env(env_id, **(env_kwargs or {}))
    try:
        policy, record = oracle(env), _recorder(env)
        bar = tqdm(total=n, desc=f"demos {env_id}", disable=not progress, unit="ep")
        solved = solved_episodes(env, policy, n, seed=seed, record=record, max_failures=max_failures,
                                 on_episode=lambda _ep: bar.update(1))
        bar.close()
    finally:
        env.close()
    steps = [ep.stacked() for ep in solved]
    data = {k: np.concatenate([s[k] for s in steps]) for k in steps[0]}
    if "color" in data:
        data["reward"] = np.concatenate([np.asarray(ep.rewards, np.float32) for ep in solved])
    data["episode"] = np.concatenate([np.full(ep.length, i, np.int64) for i, ep in enumerate(solved)])
    data["seeds"] = np.asarray([ep.seed for ep in solved], np.int64)
    return data


def demos_path(out: str | Path) -> Path:
    out = Path(out)
    return out if out.suffix == ".npz" else out.with_suffix(".npz")


def write_demos(data: dict[str, np.ndarray], out: str | Path, env_id: str) -> Path:
    out = demos_path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, env_id=np.asarray(env_id), **data)
    return out


def collect_demos(env_id: str, n: int, out: str | Path, seed: int = 0, progress: bool = True,
                  max_failures: int | None = None, env_kwargs: dict[str, Any] | None = None) -> Path:
    """Run the env's oracle until ``n`` episodes succeed and write them to ``out`` (``.npz``); returns the path.

    Raises ValueError for an env without an oracle, and RuntimeError when the oracle fails more than
    ``max_failures`` episodes (default ``n``): a broken env must not silently yield a short file.
    """
    data = demonstrations(env_id, n, seed=seed, env_kwargs=env_kwargs, progress=progress, max_failures=max_failures)
    return write_demos(data, out, env_id)
