"""Evaluate any agent on an env: success rate, mean return, optional video. Uses the one episode loop."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from symgym.agents import Agent
from symgym.envs.vector import MujocoVectorEnv
from symgym.learn.run.episodes import run_episode
from symgym.learn.run.runs import check_env_kwargs, make_env

#: episodes recorded into the video
VIDEO_EPISODES = 3
#: the final-info key of multi-step tasks that counts the steps an episode completed (TabletopStacking-v0's cubes
#: standing in order); evaluation reports the fraction of episodes that completed at least k steps, per k
STAGES_KEY = "stacked"
#: simulations stepped together by the batched path (symgym.envs.vector)
NUM_ENVS = 16
#: gymnasium.make keywords that only a single env takes: with them, evaluation runs episode by episode
_SINGLE_ONLY_KWARGS = {"render_mode", "disable_env_checker", "autoreset", "apply_api_compatibility"}


@dataclass
class EvalResult:
    episodes: int
    success_rate: float
    mean_return: float
    std_return: float
    mean_length: float
    #: per episode, the steps of a multi-step task it completed (``info[STAGES_KEY]`` at its end); None elsewhere
    stages: list[int] | None = None

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "stages"}
        if self.stages is not None:
            out["stages"] = list(self.stages)
            out.update(stage_success(self.stages))
        return out


def stage_success(stages: list[int]) -> dict[str, float]:
    """``{"step{k}_success": fraction of episodes that completed at least k steps}`` for k = 1 .. the most any did."""
    arr = np.asarray(stages)
    return {f"step{k}_success": float(np.mean(arr >= k)) for k in range(1, int(arr.max(initial=0)) + 1)}


def evaluate(agent: Agent | None, env_id: str, episodes: int = 20, seed: int = 10_000, env_kwargs: dict | None = None,
             video: Path | None = None, progress: bool = True, num_envs: int = NUM_ENVS,
             batch_act: bool = False) -> EvalResult:
    """Run ``episodes`` episodes with seeds ``seed, seed+1, ...``; ``agent=None`` is the uniform random policy.

    Evaluation seeds default to a range disjoint from training seeds. ``video``: write the first
    :data:`VIDEO_EPISODES` episodes there (MP4 of a 3-D view where headless GL works, see ``symgym.learn.run.video``).

    Envs with a batched vector env (``symgym.envs.vector``) run ``num_envs`` episodes at a time through it, with
    the same seeds and the same per-episode results as one at a time (the agent acts on each observation on its
    own); ``num_envs=1``, a video, a planner (it reads one simulator) or an agent that keeps per-episode state
    run the sequential loop. ``batch_act=True`` lets the agent act on all observations in one call: faster, but a
    network's batched matmul rounds differently (SB3 SAC: actions differ by ~6e-8), so episodes are no longer
    bit-identical to the sequential loop's.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if video is None and num_envs > 1 and episodes > 1 and _batchable(agent, env_kwargs):
        result = _evaluate_batched(agent, env_id, episodes, seed, env_kwargs or {}, progress, num_envs, batch_act)
        if result is not None:
            return result
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
    returns, successes, lengths, stages = [], [], [], []
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
            if STAGES_KEY in result.final_info:
                stages.append(int(result.final_info[STAGES_KEY]))
    finally:
        env.close()
    if grab is not None:
        grab.close()
    if video and frames:
        from symgym.learn.run.video import write_video

        write_video(frames, video, fps=grab.fps)
    return EvalResult(episodes, float(np.mean(successes)), float(np.mean(returns)), float(np.std(returns)),
                      float(np.mean(lengths)), stages if len(stages) == episodes else None)


def _batchable(agent: Agent | None, env_kwargs: dict | None) -> bool:
    """Episodes may run side by side: the agent reads only its observation and keeps nothing between episodes."""
    if set(env_kwargs or {}) & _SINGLE_ONLY_KWARGS:
        return False
    if agent is None:
        return True
    cls = type(agent)
    return not agent.needs_simulator and cls.reset is Agent.reset and cls.attach is Agent.attach


def _evaluate_batched(agent: Agent | None, env_id: str, episodes: int, seed: int, env_kwargs: dict,
                      progress: bool, num_envs: int, batch_act: bool) -> EvalResult | None:
    """The batched twin of the sequential loop; None when ``env_id`` has no batched vector env."""
    check_env_kwargs(env_id, env_kwargs)
    spec = gym.registry[env_id]
    if spec.vector_entry_point is None:
        return None
    # as many simulations as keep every wave full: 50 episodes on 16 would run a last wave of 2 beside 14 idle
    waves = -(-episodes // num_envs)
    n = -(-episodes // waves)
    try:
        vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **env_kwargs)
    except TypeError as e:  # as make_env: a kwarg of the right name but the wrong type
        raise ValueError(f"bad env kwargs {env_kwargs} for {env_id}: {e}") from e
    if not isinstance(vec, MujocoVectorEnv):  # a SyncVectorEnv fallback gains nothing over the sequential loop
        vec.close()
        return None
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    successes = np.zeros(episodes)
    slot_episode = np.arange(n)           # which episode each simulation runs; -1: idle (none left)
    # the random policy draws from an action space seeded with the episode's seed, as run_episode does
    spaces = [copy.deepcopy(vec.single_action_space) for _ in range(n)]
    for i in range(n):
        spaces[i].seed(seed + i)
    next_episode = n
    bar = tqdm(total=episodes, desc=f"eval {env_id} x{n}", disable=not progress, unit="ep")
    try:
        obs, _ = vec.reset(seed=[seed + i for i in range(n)])
        while (slot_episode >= 0).any():
            active = np.flatnonzero(slot_episode >= 0)
            actions = np.zeros(vec.action_space.shape, dtype=vec.action_space.dtype)
            if agent is None:
                for i in active:
                    actions[i] = spaces[i].sample()
            elif batch_act:
                actions[active] = agent.act(obs[active], deterministic=True)
            else:
                for i in active:
                    actions[i] = agent.act(obs[i], deterministic=True)
            obs, reward, terminated, truncated, info = vec.step(actions)
            # one addition per episode per step, in step order: the same sums as run_episode's
            returns[slot_episode[active]] += reward[active]
            lengths[slot_episode[active]] += 1
            done = active[(terminated | truncated)[active]]
            if len(done):
                solved = (np.asarray(info["is_success"], bool) & info["_is_success"] if "is_success" in info
                          else np.zeros(n, bool))
                successes[slot_episode[done]] = solved[done]
                bar.update(len(done))
                mask = np.zeros(n, dtype=np.bool_)
                seeds: list[int | None] = [None] * n
                for i in done:
                    if next_episode < episodes:
                        slot_episode[i] = next_episode
                        seeds[i] = seed + next_episode
                        spaces[i].seed(seed + next_episode)
                        mask[i] = True
                        next_episode += 1
                    else:
                        slot_episode[i] = -1
                if mask.any():
                    reset_obs, _ = vec.reset(seed=seeds, options={"reset_mask": mask})
                    obs[mask] = reset_obs[mask]
    finally:
        bar.close()
        vec.close()
    return EvalResult(episodes, float(np.mean(successes)), float(np.mean(returns)), float(np.std(returns)),
                      float(np.mean(lengths)))
