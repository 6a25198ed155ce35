"""The one episode loop: evaluation, demonstrations, benchmarks and the closed-loop collectors all use it.

A *policy* here is any callable ``obs -> action``; returning ``None`` ends the episode early (a scripted
oracle that gives up). ``record(obs, action, env)`` returns the per-step fields to keep (e.g. the image
and the action for a demos file); they are stacked per field in :attr:`Episode.steps`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np

Policy = Callable[[Any], Any]
Recorder = Callable[[Any, np.ndarray, gym.Env], dict[str, Any]]


@dataclass
class Episode:
    """What one episode produced."""

    seed: int
    total_reward: float = 0.0
    length: int = 0
    success: bool = False
    final_info: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, list] = field(default_factory=dict)
    rewards: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    gave_up: bool = False

    def stacked(self) -> dict[str, np.ndarray]:
        return {k: np.stack([np.asarray(v) for v in vs]) for k, vs in self.steps.items()}


def run_episode(env: gym.Env, policy: Policy | None, seed: int, *, on_reset: Callable[[], None] | None = None,
                record: Recorder | None = None, render: bool = False,
                max_steps: int | None = None) -> Episode:
    """Reset ``env`` with ``seed`` and step it with ``policy`` (``None``: uniform random actions) until the
    episode terminates or truncates (or ``max_steps``, or the policy returns ``None``)."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    if on_reset is not None:
        on_reset()
    ep = Episode(seed=seed, final_info=dict(info))
    if render:
        ep.frames.append(env.render())
    while max_steps is None or ep.length < max_steps:
        action = env.action_space.sample() if policy is None else policy(obs)
        if action is None:
            ep.gave_up = True
            break
        if record is not None:
            for k, v in record(obs, action, env).items():
                ep.steps.setdefault(k, []).append(v)
        obs, reward, terminated, truncated, info = env.step(action)
        ep.rewards.append(float(reward))
        ep.total_reward += float(reward)
        ep.length += 1
        ep.final_info = dict(info)
        if render:
            ep.frames.append(env.render())
        if terminated or truncated:
            break
    ep.success = bool(ep.final_info.get("is_success", False))
    return ep


def episodes(env: gym.Env, policy: Policy | None, seeds: range | list[int], **kwargs) -> Iterator[Episode]:
    for s in seeds:
        yield run_episode(env, policy, int(s), **kwargs)


def solved_episodes(env: gym.Env, policy: Policy, n: int, seed: int = 0, record: Recorder | None = None,
                    max_failures: int | None = None, on_episode: Callable[[Episode], None] | None = None,
                    ) -> list[Episode]:
    """Episodes from seeds ``seed, seed+1, ...`` until ``n`` succeed (demonstrations keep only good behaviour).

    Raises RuntimeError when more than ``max_failures`` (default ``n``) episodes fail: a broken oracle must not
    silently yield a short demos file.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 demonstrations, got {n}")
    max_failures = n if max_failures is None else max_failures
    solved: list[Episode] = []
    failures, s = 0, seed
    while len(solved) < n:
        ep = run_episode(env, policy, s, record=record)
        if ep.success:
            solved.append(ep)
            if on_episode is not None:
                on_episode(ep)
        else:
            failures += 1
            if failures > max_failures:
                raise RuntimeError(f"oracle failed {failures} episodes of {env.spec.id if env.spec else env} "
                                   f"(last seed {s})")
        s += 1
    return solved
