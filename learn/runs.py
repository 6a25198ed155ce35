"""Run directories: config, monitor CSV, checkpoint and learning-curve plot in one place."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd

from symgym.learn.io import save_figure


def make_env(env_id: str, seed: int | None = None, monitor_dir: Path | None = None, **kwargs) -> gym.Env:
    """``gymnasium.make`` with a clear error for unknown ids, optionally wrapped in SB3's Monitor."""
    import symgym.envs  # noqa: F401  (registers ids)

    if env_id not in gym.registry:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith(("Sym", "Ros", "Tabletop", "Hep"))))
        raise ValueError(f"unknown env id {env_id!r}; symgym envs: {known}")
    env = gym.make(env_id, **kwargs)
    if monitor_dir is not None:
        from stable_baselines3.common.monitor import Monitor

        env = Monitor(env, str(Path(monitor_dir) / "monitor"), info_keywords=("is_success",))
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def load_run(run_dir: str | Path):
    """(agent, config) for a saved run; clear errors for missing dirs and damaged checkpoints."""
    from symgym.agents import TrainConfig, agent_class

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    config = TrainConfig.read(run_dir)
    agent = agent_class(config.agent).load(run_dir)
    return agent, config


def read_monitor(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "monitor.monitor.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no monitor log at {path}")
    df = pd.read_csv(path, skiprows=1)
    df["steps"] = df["l"].cumsum()
    return df


def plot_learning_curve(run_dir: str | Path, title: str = "", window: int = 20) -> Path:
    """Episode return and success rate against env steps, smoothed over ``window`` episodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = read_monitor(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    w = max(1, min(window, len(df) // 3 or 1))
    axes[0].plot(df["steps"], df["r"], alpha=0.25, color="C0")
    axes[0].plot(df["steps"], df["r"].rolling(w, min_periods=1).mean(), color="C0")
    axes[0].set(xlabel="env steps", ylabel="episode return", title=title or Path(run_dir).name)
    if "is_success" in df:
        axes[1].plot(df["steps"], df["is_success"].astype(float).rolling(w, min_periods=1).mean(), color="C2")
        axes[1].set(xlabel="env steps", ylabel=f"success rate ({w}-episode mean)", ylim=(-0.02, 1.02))
    fig.tight_layout()
    return save_figure(fig, Path(run_dir) / "learning_curve.png")


def success_rate_curve(run_dir: str | Path, window: int = 50) -> tuple[np.ndarray, np.ndarray]:
    df = read_monitor(run_dir)
    return df["steps"].to_numpy(), df["is_success"].astype(float).rolling(window, min_periods=1).mean().to_numpy()
