"""Evaluate any agent on an env: success rate, mean return, optional video. Uses the one episode loop."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from symgym.agents import Agent
from symgym.learn.run.episodes import run_episode
from symgym.learn.run.runs import make_env

#: episodes recorded into the video
VIDEO_EPISODES = 3


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

    Evaluation seeds default to a range disjoint from training seeds. ``video``: write the first
    :data:`VIDEO_EPISODES` episodes there (MP4 of a 3-D view where headless GL works, see ``symgym.learn.run.video``).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_id, render_mode="rgb_array" if video else None, **(env_kwargs or {}))
    frames: list[np.ndarray] = []
    grab = None
    if video:
        from symgym.learn.run.video import frame_source

        grab = frame_source(env)
    if agent is not None:
        agent.attach(env)
    policy = None if agent is None else (lambda obs: agent.act(obs, deterministic=True))
    on_reset = None if agent is None else agent.reset
    returns, successes, lengths = [], [], []
    try:
        for ep in tqdm(range(episodes), desc=f"eval {env_id}", disable=not progress, unit="ep"):
            filming = grab is not None and ep < VIDEO_EPISODES
            record = (lambda _o, _a, _e: {"frame": grab()}) if filming else None
            result = run_episode(env, policy, seed + ep, on_reset=on_reset, record=record)
            if filming:
                frames.extend(result.steps.get("frame", []))
                frames.append(grab())
            returns.append(result.total_reward)
            successes.append(float(result.success))
            lengths.append(result.length)
    finally:
        env.close()
    if grab is not None:
        grab.close()
    if video and frames:
        from symgym.learn.run.video import write_video

        write_video(frames, video, fps=grab.fps)
    return EvalResult(episodes, float(np.mean(successes)), float(np.mean(returns)), float(np.std(returns)),
                      float(np.mean(lengths)))
