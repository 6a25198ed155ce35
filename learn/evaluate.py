"""Evaluate any agent on its env: success rate, mean return, optional video."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from symgym.agents.base import Agent
from symgym.learn.runs import make_env


@dataclass
class EvalResult:
    episodes: int
    success_rate: float
    mean_return: float
    std_return: float
    mean_length: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate(agent: Agent | None, env_id: str, episodes: int = 20, seed: int = 10_000, env_kwargs: dict | None = None,
             video: Path | None = None, progress: bool = True) -> EvalResult:
    """Run ``episodes`` episodes with seeds ``seed, seed+1, ...``; ``agent=None`` is the uniform random policy.

    Evaluation seeds default to a range disjoint from training seeds.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_id, render_mode="rgb_array" if video else None, **(env_kwargs or {}))
    if agent is not None:
        agent.attach(env)
    returns, successes, lengths, frames = [], [], [], []
    for ep in tqdm(range(episodes), desc=f"eval {env_id}", disable=not progress, unit="ep"):
        obs, info = env.reset(seed=seed + ep)
        env.action_space.seed(seed + ep)
        if agent is not None:
            agent.reset()
        done, total, length = False, 0.0, 0
        while not done:
            action = env.action_space.sample() if agent is None else agent.act(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            if video and ep < 3:
                frames.append(env.render())
        returns.append(total)
        successes.append(float(info.get("is_success", False)))
        lengths.append(length)
    env.close()
    if video and frames:
        write_video(frames, video)
    return EvalResult(episodes, float(np.mean(successes)), float(np.mean(returns)), float(np.std(returns)),
                      float(np.mean(lengths)))


def write_video(frames: list[np.ndarray], path: Path, fps: int = 20) -> Path:
    """GIF (always available through imageio's Pillow plugin), written atomically."""
    import imageio.v3 as iio

    from symgym.learn.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(frames), extension=path.suffix or ".gif", duration=1000 / fps, loop=0)
    return path
