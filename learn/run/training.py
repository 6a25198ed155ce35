"""Training orchestration (the run layer): seed, build the env, build and train the agent, save, plot.

``train(config)`` is what ``symgym train`` and every sweep trial call. The agent only learns; this module
creates its env (with SB3's ``Monitor``), its demonstrations, its callbacks and its plots:

* reinforcement learners get SB3's ``EvalCallback`` (``evaluations.npz`` and ``best_model.zip`` in the run
  dir), a ``CheckpointCallback`` (``checkpoints/``), SB3's own progress bar and optional TensorBoard logs;
* imitation agents get demonstrations: ``config.demos`` when given, else ``n_demos`` oracle episodes
  collected into ``RUN/demos.npz`` (``n_demos`` is read from the agent kwargs, default 10).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from symgym.agents import Agent, EnvInfo, TrainConfig, agent_class
from symgym.learn.run.demos import collect_demos
from symgym.learn.io import write_json
from symgym.learn.run.runs import make_env, plot_learning_curve

DEFAULT_N_DEMOS = 10


@dataclass
class TrainOptions:
    """How to train, not what: none of these change the trained agent for a given config and seed.

    Args:
        progress: SB3's progress bar (needs ``rich``, extra ``logging``) / tqdm for imitation.
        tensorboard: TensorBoard log directory (extra ``logging``), or None.
        eval_freq: env steps between EvalCallback evaluations (0: off; None: steps // 10).
        eval_episodes: episodes per EvalCallback evaluation.
        checkpoint_freq: env steps between CheckpointCallback saves (0: off; None: steps // 2).
    """

    progress: bool = True
    tensorboard: str | None = None
    eval_freq: int | None = None
    eval_episodes: int = 10
    checkpoint_freq: int | None = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _progress_available() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def sb3_callbacks(config: TrainConfig, run_dir: Path, options: TrainOptions) -> list:
    """EvalCallback + CheckpointCallback writing into the run dir, as RL Zoo does."""
    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.monitor import Monitor

    callbacks: list = []
    eval_freq = max(config.steps // 10, 1) if options.eval_freq is None else options.eval_freq
    if eval_freq > 0 and config.steps > 0:
        # Monitor (no file) so SB3's evaluation counts whole episodes; seeds disjoint from training's
        eval_env = Monitor(make_env(config.env, seed=config.seed + 100_000, **config.env_kwargs))
        callbacks.append(EvalCallback(eval_env, n_eval_episodes=options.eval_episodes, eval_freq=eval_freq,
                                      log_path=str(run_dir), best_model_save_path=str(run_dir),
                                      deterministic=True, verbose=0))
    ckpt_freq = max(config.steps // 2, 1) if options.checkpoint_freq is None else options.checkpoint_freq
    if ckpt_freq > 0 and config.steps > 0:
        callbacks.append(CheckpointCallback(save_freq=ckpt_freq, save_path=str(run_dir / "checkpoints"),
                                            name_prefix=config.agent, verbose=0))
    return callbacks


def demos_for(cls: type[Agent], config: TrainConfig, run_dir: Path, n_demos: Any = DEFAULT_N_DEMOS) -> Any:
    """The demonstrations an imitation agent learns from (collected into the run dir when not given)."""
    if config.demos:
        if not Path(config.demos).is_file():
            raise FileNotFoundError(f"demos file {config.demos} does not exist")
        return cls.read_demos(config.demos)
    if not isinstance(n_demos, int) or isinstance(n_demos, bool) or n_demos < 1:
        raise ValueError(f"n_demos must be a positive integer, got {n_demos!r}")
    path = collect_demos(config.env, n_demos, out=run_dir / "demos.npz", seed=config.seed, progress=False,
                         env_kwargs=config.env_kwargs)
    return cls.read_demos(path)


def train(config: TrainConfig, options: TrainOptions | None = None, progress: bool | None = None) -> Path:
    """Train (or build) ``config.agent`` on ``config.env``; returns the run directory ``config.out``.

    Writes ``config.json`` (resolved), the agent's checkpoint (``checkpoint.json`` + files), ``train.json``
    (metrics and wall time) and, for RL agents, the monitor log, EvalCallback files and a learning curve.
    """
    options = options or TrainOptions()
    if progress is not None:
        options.progress = progress
    cls = agent_class(config.agent)
    agent_kwargs = dict(config.agent_kwargs)
    probe = make_env(config.env, **config.env_kwargs)  # fails fast on a bad id/kwarg, before the run dir exists
    info = EnvInfo.of(probe)
    probe.close()
    n_demos = agent_kwargs.pop("n_demos", DEFAULT_N_DEMOS) if cls.learns_from == "demos" else None
    agent = cls.build(info, agent_kwargs, seed=config.seed)  # validates the agent kwargs, also before any file
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config.to_json())
    seed_everything(config.seed)
    start = time.perf_counter()
    env = None
    try:
        if cls.learns_from == "env":
            env = make_env(config.env, seed=config.seed, monitor_dir=run_dir if cls.rl else None,
                           **config.env_kwargs)
            if cls.rl:
                kwargs: dict[str, Any] = {}
                if options.tensorboard:
                    kwargs["tensorboard_log"] = options.tensorboard
                metrics = agent.learn(env, config.steps, callback=sb3_callbacks(config, run_dir, options),
                                      progress=options.progress and _progress_available(), **kwargs)
            else:
                metrics = agent.learn(env, config.steps)
        elif cls.learns_from == "demos":
            metrics = agent.learn(demos_for(cls, config, run_dir, n_demos), config.steps,
                                  progress=options.progress)
        else:
            metrics = agent.learn(None, config.steps)
    finally:
        if env is not None:
            env.close()
    agent.save(run_dir)
    metrics = {k: v for k, v in (metrics or {}).items() if k != "losses"}
    write_json(run_dir / "train.json", {**metrics, "wall_time_s": round(time.perf_counter() - start, 2),
                                        "steps": config.steps})
    if cls.rl:
        plot_learning_curve(run_dir, title=f"{config.agent} on {config.env} (seed {config.seed})")
    return run_dir
