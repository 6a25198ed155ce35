"""``symgym bench env-speed``: SymPush-v0 steps/s through Gymnasium vs raw ``mujoco.mj_step`` on the same model.

Both are measured in the same process, interleaved over several rounds (the machine is shared, so
the median of per-round ratios is more trustworthy than either absolute rate).
"""
from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import symgym.envs  # noqa: F401
from symgym.learn.io import save_figure


def _gym_rate(env: gym.Env, actions: np.ndarray) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - start)


def _raw_rate(model: mujoco.MjModel, frame_skip: int, ctrls: np.ndarray) -> float:
    """Env steps/s when each env step is just ``frame_skip`` raw mj_step calls with the same controls."""
    data = mujoco.MjData(model)
    start = time.perf_counter()
    for c in ctrls:
        data.ctrl[:] = c
        mujoco.mj_step(model, data, nstep=frame_skip)
    return len(ctrls) / (time.perf_counter() - start)


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    n_steps = 2_000 if quick else 10_000
    rounds = 3 if quick else 7
    env = gym.make("SymPush-v0")
    raw_env = env.unwrapped
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(n_steps, 2)).astype(np.float32)
    ctrls = actions * raw_env.max_speed
    gym_rates, raw_rates = [], []
    for _ in range(rounds):
        gym_rates.append(_gym_rate(env, actions))
        raw_rates.append(_raw_rate(raw_env.model, raw_env.frame_skip, ctrls))
    ratios = np.array(raw_rates) / np.array(gym_rates)
    results = {
        "env": "SymPush-v0",
        "frame_skip": raw_env.frame_skip,
        "steps_per_round": n_steps,
        "rounds": rounds,
        "gym_env_steps_per_s": float(np.median(gym_rates)),
        "raw_env_steps_per_s": float(np.median(raw_rates)),
        "raw_mj_steps_per_s": float(np.median(raw_rates) * raw_env.frame_skip),
        "overhead_ratio_raw_over_gym": float(np.median(ratios)),
        "gym_overhead_us_per_step": float(np.median(1e6 / np.array(gym_rates) - 1e6 / np.array(raw_rates))),
        "per_round": {"gym": gym_rates, "raw": raw_rates},
    }
    _plot(results, out_dir / "env-speed.png")
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    labels = ["gymnasium.make\n(SymPush-v0)", f"raw mj_step x{results['frame_skip']}"]
    vals = [results["gym_env_steps_per_s"], results["raw_env_steps_per_s"]]
    ax.bar(labels, vals, color=["C0", "C7"])
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:,.0f}/s", ha="center", va="bottom")
    ax.set_ylabel("env steps per second")
    ax.set_title(f"Gymnasium overhead: raw/gym = {results['overhead_ratio_raw_over_gym']:.2f}x")
    fig.tight_layout()
    save_figure(fig, path)
