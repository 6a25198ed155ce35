"""Training orchestration (the run layer): seed, build the env, build and train the agent, save, plot.

``train(config)`` is what ``symgym train`` and every sweep trial call. The agent only learns; this module
creates its env (with SB3's ``Monitor``), its demonstrations, its callbacks and its plots:

* reinforcement learners get SB3's ``EvalCallback`` (``evaluations.npz`` and ``best_model.zip`` in the run
  dir), a ``CheckpointCallback`` (``checkpoints/``), SB3's own progress bar and optional TensorBoard logs;
* imitation agents get demonstrations: ``config.demos`` when given, else ``n_demos`` oracle episodes
  collected into ``RUN/demos.npz`` (``n_demos`` is read from the agent kwargs, default 10).

Every input is checked (:func:`symgym.learn.run.inputs.check_train_config`) and the env and agent are built
before the run directory is touched; the directory is then locked for the run's life and ``run.json`` is written
last. ``resume(run_dir)`` continues an interrupted RL run from its latest step checkpoint (model, replay buffer
and RNG states, saved together by :class:`ResumableCheckpoint`).
"""
from __future__ import annotations

import pickle
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.monitor import Monitor

from symgym.agents import Agent, EnvInfo, TrainConfig, agent_class
from symgym.learn.run.demos import collect_demos
from symgym.learn.io import atomic_path, write_json
from symgym.learn.run.inputs import check_train_config
from symgym.learn.run.runs import (CHECKPOINTS, MONITOR_FILE, RunDirError, checkpoint_files, checkpoint_steps,
                                   locked_run_dir, make_env, not_resumable, plot_learning_curve, read_config, run_state,
                                   write_run_manifest)

DEFAULT_N_DEMOS = 10


@dataclass
class TrainOptions:
    """How to train, not what: none of these change the trained agent for a given config and seed.

    Args:
        progress: SB3's progress bar (needs ``rich``, extra ``logging``) / tqdm for imitation.
        tensorboard: TensorBoard log directory (extra ``logging``), or None.
        eval_freq: env steps between EvalCallback evaluations (0: off; None: steps // 10).
        eval_episodes: episodes per EvalCallback evaluation.
        checkpoint_freq: env steps between step checkpoints (model + replay buffer + RNG states, the latest two
            kept; the buffers are deleted once the run completes) that ``resume`` continues from (0: off;
            None: steps // 2).
        if_exists: a run directory that already holds something: "move" it aside to ``RUN.old-<timestamp>``
            (the Python default; sweeps re-run killed trials in place) or "refuse" (the CLI without --force).
    """

    progress: bool = True
    tensorboard: str | None = None
    eval_freq: int | None = None
    eval_episodes: int = 10
    checkpoint_freq: int | None = 0
    if_exists: str = "move"


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
    """EvalCallback + step checkpoints writing into the run dir, as RL Zoo does."""
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
        callbacks.append(ResumableCheckpoint(save_freq=ckpt_freq, save_path=str(run_dir / CHECKPOINTS),
                                             name_prefix=config.agent))
    return callbacks


KEEP_CHECKPOINTS = 2  # the newest may be cut off by a kill mid-write; its predecessor is then complete


def _rng_states(env: Any) -> dict[str, Any]:
    base = env.unwrapped
    return {"random": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "env": base.np_random.bit_generator.state, "action_space": base.action_space.np_random.bit_generator.state}


def _restore_rng_states(states: dict[str, Any], env: Any) -> None:
    random.setstate(states["random"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    base = env.unwrapped
    base.np_random.bit_generator.state = states["env"]
    base.action_space.np_random.bit_generator.state = states["action_space"]


class ResumableCheckpoint(CheckpointCallback):
    """SB3's CheckpointCallback with the replay buffer, plus the RNG states and a marker written last.

    SB3 writes the model and buffer in place (not atomically), so a checkpoint counts only once its
    ``*_steps.json`` marker exists; checkpoints older than the newest two are deleted as new ones land.
    """

    def __init__(self, save_freq: int, save_path: str, name_prefix: str):
        super().__init__(save_freq=save_freq, save_path=save_path, name_prefix=name_prefix,
                         save_replay_buffer=True, verbose=0)

    def _on_step(self) -> bool:
        super()._on_step()
        if self.n_calls % self.save_freq == 0:
            with atomic_path(self._checkpoint_path("rng_", extension="pkl")) as tmp:
                tmp.write_bytes(pickle.dumps(_rng_states(self.training_env.envs[0])))
            write_json(self._checkpoint_path(extension="json"), {"num_timesteps": int(self.num_timesteps)})
            for step in checkpoint_steps(Path(self.save_path), self.name_prefix)[:-KEEP_CHECKPOINTS]:
                for path in checkpoint_files(Path(self.save_path), self.name_prefix, step).values():
                    path.unlink(missing_ok=True)
        return True


def demos_for(cls: type[Agent], config: TrainConfig, run_dir: Path, n_demos: Any = DEFAULT_N_DEMOS) -> Any:
    """The demonstrations an imitation agent learns from (collected into the run dir when not given)."""
    if config.demos:
        return read_demos(cls, config.demos)
    path = collect_demos(config.env, n_demos, out=run_dir / "demos.npz", seed=config.seed, progress=False,
                         env_kwargs=config.env_kwargs)
    return cls.read_demos(path)


def read_demos(cls: type[Agent], path: str | Path) -> Any:
    """A given demonstrations file, read before the run directory exists (one-line error when unreadable)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"demos file {path} does not exist")
    try:
        return cls.read_demos(path)
    except Exception as e:  # numpy/zip raise many types (ValueError included) for a file that is not a demo set
        raise ValueError(f"demos file {path} is not a demonstrations file: {type(e).__name__}: {e}") from e


def _prepare(config: TrainConfig, options: TrainOptions) -> tuple[type[Agent], Agent, Any, Any]:
    """Check the config, build the agent (and read given demos) before anything is written."""
    check_train_config(config, options)
    cls = agent_class(config.agent)
    agent_kwargs = dict(config.agent_kwargs)
    probe = make_env(config.env, **config.env_kwargs)  # fails fast on a bad id/kwarg, before the run dir exists
    info = EnvInfo.of(probe)
    probe.close()
    n_demos = agent_kwargs.pop("n_demos", DEFAULT_N_DEMOS) if cls.learns_from == "demos" else None
    agent = cls.build(info, agent_kwargs, seed=config.seed)  # validates the agent kwargs, also before any file
    demos = read_demos(cls, config.demos) if cls.learns_from == "demos" and config.demos else None
    return cls, agent, n_demos, demos


def train(config: TrainConfig, options: TrainOptions | None = None, progress: bool | None = None) -> Path:
    """Train (or build) ``config.agent`` on ``config.env``; returns the run directory ``config.out``.

    Writes ``config.json`` (resolved), ``run.json`` (``complete: false``), the agent's checkpoint
    (``checkpoint.json`` + files), ``train.json`` (metrics and wall time), for RL agents the monitor log,
    EvalCallback files and a learning curve, and last ``run.json`` with ``complete: true``.
    """
    options = options or TrainOptions()
    if progress is not None:
        options.progress = progress
    cls, agent, n_demos, demos = _prepare(config, options)
    with locked_run_dir(config.out, if_exists=options.if_exists) as run_dir:
        write_json(run_dir / "config.json", config.to_json())
        write_run_manifest(run_dir, complete=False, steps=config.steps)
        seed_everything(config.seed)
        start = time.perf_counter()
        env = None
        try:
            if cls.learns_from == "env":
                env = make_env(config.env, seed=config.seed, monitor_dir=run_dir if cls.rl else None,
                               **config.env_kwargs)
                metrics = _learn(agent, cls, env, config, run_dir, options, config.steps)
            elif cls.learns_from == "demos":
                demos = demos if demos is not None else demos_for(cls, config, run_dir, n_demos)
                metrics = agent.learn(demos, config.steps, progress=options.progress)
            else:
                metrics = agent.learn(None, config.steps)
        finally:
            if env is not None:
                env.close()
        _finish(agent, cls, config, run_dir, metrics, time.perf_counter() - start)
    return run_dir


def _learn(agent: Agent, cls: type[Agent], env: Any, config: TrainConfig, run_dir: Path, options: TrainOptions,
           steps: int) -> dict[str, Any]:
    if not cls.rl:
        return agent.learn(env, steps)
    kwargs: dict[str, Any] = {"tensorboard_log": options.tensorboard} if options.tensorboard else {}
    from stable_baselines3.common.callbacks import CallbackList

    # one callback object: agents may combine it with their own (SB3 nests CallbackLists, not plain lists)
    return agent.learn(env, steps, callback=CallbackList(sb3_callbacks(config, run_dir, options)),
                       progress=options.progress and _progress_available(), **kwargs)


def _finish(agent: Agent, cls: type[Agent], config: TrainConfig, run_dir: Path, metrics: dict | None,
            wall_s: float, **extra: Any) -> None:
    agent.save(run_dir)
    metrics = {k: v for k, v in (metrics or {}).items() if k != "losses"}
    write_json(run_dir / "train.json", {**metrics, "wall_time_s": round(wall_s, 2), "steps": config.steps, **extra})
    if cls.rl:
        plot_learning_curve(run_dir, title=f"{config.agent} on {config.env} (seed {config.seed})")
    # a complete run is never resumed: drop the replay buffers (SB3 pickles the whole preallocated buffer,
    # ~26 MB for SymPush at any step count), keep the small step models
    for path in (run_dir / CHECKPOINTS).glob("*_replay_buffer_*_steps.pkl"):
        path.unlink()
    write_run_manifest(run_dir, complete=True, steps=config.steps, **extra)  # last: the run is complete


def latest_checkpoint(run_dir: Path, agent: str) -> tuple[int, dict[str, Path]]:
    steps = checkpoint_steps(run_dir / CHECKPOINTS, agent)
    if not steps:
        raise RunDirError(f"cannot resume {run_dir}: it has no complete step checkpoint in {run_dir / CHECKPOINTS} "
                          f"(train with --checkpoint-freq N > 0); start it again with --force")
    return steps[-1], checkpoint_files(run_dir / CHECKPOINTS, agent, steps[-1])


def _trim_monitor(run_dir: Path, step: int) -> None:
    """Drop monitor rows of episodes that ended after the checkpoint: the resumed run lives them again."""
    path = run_dir / MONITOR_FILE
    if not path.is_file():
        return
    header, *rows = path.read_text().splitlines(keepends=True)
    kept, total = [rows[0]] if rows else [], 0
    for row in rows[1:]:
        total += int(row.split(",")[1])
        if total > step:
            break
        kept.append(row)
    with atomic_path(path) as tmp:
        tmp.write_text(header + "".join(kept))


def resume(run_dir: str | Path, options: TrainOptions | None = None) -> Path:
    """Continue an interrupted RL run from its latest step checkpoint to the ``steps`` its config names.

    The model, its replay buffer and the RNG states (Python, NumPy, torch, the env's and its action space's)
    come from the same checkpoint, so the run continues the seed streams it was on rather than restarting them.
    Episodes in flight at the checkpoint are started afresh (the env itself is not saved), and the transition of
    the checkpoint's own step is not in its buffer (SB3 runs callbacks before storing it).
    """
    options = options or TrainOptions()
    run_dir = Path(run_dir)
    state = run_state(run_dir)
    if state != "incomplete":
        raise not_resumable(run_dir, state)
    config = read_config(run_dir)
    check_train_config(config, options)
    cls = agent_class(config.agent)
    if not cls.rl:
        raise RunDirError(f"cannot resume {run_dir}: {config.agent} has no step checkpoints (only RL agents do)")
    step, files = latest_checkpoint(run_dir, config.agent)
    from stable_baselines3 import SAC

    with locked_run_dir(run_dir, resume=True):
        _trim_monitor(run_dir, step)
        env = make_env(config.env, monitor_dir=run_dir, append_monitor=True, **config.env_kwargs)
        try:
            agent = cls.build(EnvInfo.of(env), dict(config.agent_kwargs), seed=config.seed)
            sb3_class = getattr(cls, "sb3_class", SAC)
            agent.model = sb3_class.load(files["model"], env=env, device="cpu", custom_objects=cls.custom_objects())
            agent.model.load_replay_buffer(files["replay_buffer"])
            states = pickle.loads(files["rng"].read_bytes())
            _restore_rng_states(states, env)
            # SB3 samples warm-up actions from the model's own (unpickled) copy of the action space
            agent.model.action_space.np_random.bit_generator.state = states["action_space"]
            start = time.perf_counter()
            metrics = _learn(agent, cls, env, config, run_dir, options, config.steps - step)
        finally:
            env.close()
        _finish(agent, cls, config, run_dir, metrics, time.perf_counter() - start, resumed_from_step=step)
    return run_dir
