"""Run directories and envs for the run layer: ``make_env``, ``load_run``, monitor logs, learning curves."""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd

import symgym.envs  # noqa: F401  (registers every env id)
from symgym.agents import Agent, TrainConfig, agent_class
from symgym.agents.registry import MissingExtraError, missing_extra_message
from symgym.learn.io import save_figure

MONITOR_FILE = "monitor.monitor.csv"


def symgym_registered_ids() -> list[str]:
    """Every Gymnasium id whose entry point lives in symgym, read from the registry (a new env needs no list)."""
    def module(entry) -> str:
        return entry.partition(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "")

    return sorted(k for k, spec in gym.registry.items() if module(spec.entry_point).startswith("symgym."))


def _known_env_ids() -> str:
    return ", ".join(symgym_registered_ids())


def check_env_kwargs(env_id: str, kwargs: dict) -> None:
    """Raise ValueError naming any keyword the env's constructor does not take (before building it)."""
    if env_id not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}; symgym envs: {_known_env_ids()}")
    spec = gym.registry[env_id]
    entry = spec.entry_point
    if not kwargs or not isinstance(entry, str):
        return
    module, _, name = entry.partition(":")

    cls = getattr(importlib.import_module(module), name)
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    gym_keys = {"render_mode", "max_episode_steps", "disable_env_checker", "autoreset", "apply_api_compatibility"}
    unknown = sorted(set(kwargs) - set(params) - gym_keys)
    if unknown:
        known = sorted(k for k in params if k != "self")
        raise ValueError(f"unknown env kwarg(s) {unknown} for {env_id}; it takes: {', '.join(known) or 'none'}")


def make_env(env_id: str, seed: int | None = None, monitor_dir: Path | None = None, **kwargs) -> gym.Env:
    """``gymnasium.make`` with one-line errors for unknown ids and kwargs, optionally wrapped in SB3's Monitor."""
    try:
        check_env_kwargs(env_id, kwargs)
        env = gym.make(env_id, **kwargs)
    except TypeError as e:  # a kwarg of the right name but the wrong type, caught by the constructor
        raise ValueError(f"bad env kwargs {kwargs} for {env_id}: {e}") from e
    except ImportError as e:  # an env whose optional extra is not installed (pybullet, roslibpy, ...)
        raise MissingExtraError(f"env {env_id!r} {missing_extra_message(e)}") from e
    if monitor_dir is not None:
        from stable_baselines3.common.monitor import Monitor

        env = Monitor(env, str(Path(monitor_dir) / "monitor"), info_keywords=("is_success",))
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def load_run(run_dir: str | Path) -> tuple[Agent, TrainConfig]:
    """(agent, config) for a saved run; clear errors for missing dirs and damaged checkpoints."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    config = TrainConfig.read(run_dir)
    agent = agent_class(config.agent).load(run_dir)
    return agent, config


def read_monitor(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / MONITOR_FILE
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
