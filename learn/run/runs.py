"""Run directories and envs for the run layer: ``make_env``, ``load_run``, monitor logs, learning curves.

A run directory written by training is locked (``flock`` on ``RUN/.symgym.lock``) for the run's life and is
complete only once ``run.json`` says so, written last; :func:`load_run` names an incomplete run as such.
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import inspect
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
import pandas as pd

import symgym.envs  # noqa: F401  (registers every env id)
from symgym.agents import Agent, TrainConfig, agent_class
from symgym.agents.registry import MissingExtraError, missing_extra_message
from symgym.learn.io import save_figure, write_json

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


def make_env(env_id: str, seed: int | None = None, monitor_dir: Path | None = None, append_monitor: bool = False,
             **kwargs) -> gym.Env:
    """``gymnasium.make`` with one-line errors for unknown ids and kwargs, optionally wrapped in SB3's Monitor
    (``append_monitor``: continue an existing monitor log, as a resumed run does)."""
    try:
        check_env_kwargs(env_id, kwargs)
        require_env(env_id)
        env = gym.make(env_id, **kwargs)
    except TypeError as e:  # a kwarg of the right name but the wrong type, caught by the constructor
        raise ValueError(f"bad env kwargs {kwargs} for {env_id}: {e}") from e
    except ImportError as e:  # an env whose optional extra is not installed (pybullet, roslibpy, ...)
        raise MissingExtraError(f"env {env_id!r} {missing_extra_message(e)}") from e
    if monitor_dir is not None:
        from stable_baselines3.common.monitor import Monitor

        env = Monitor(env, str(Path(monitor_dir) / "monitor"), info_keywords=("is_success",),
                      override_existing=not append_monitor)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def load_run(run_dir: str | Path) -> tuple[Agent, TrainConfig]:
    """(agent, config) for a saved run; clear errors for missing dirs and damaged checkpoints."""
    config = check_run_dir(run_dir)
    agent = agent_class(config.agent).load(run_dir)
    return agent, config


def lock_holder(run_dir: Path) -> str | None:
    """The pid holding ``run_dir``'s lock (a run being written now), else None; takes no lock itself."""
    path = run_dir / LOCK_FILE
    if not path.is_file():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
    return None


def read_config(run_dir: str | Path) -> TrainConfig:
    """The run's ``config.json``, with every field of the right type (a one-line ValueError otherwise)."""
    config = TrainConfig.read(run_dir)
    path = Path(run_dir) / "config.json"
    for name, kinds in (("agent", str), ("env", str), ("steps", int), ("seed", int), ("env_kwargs", dict),
                        ("agent_kwargs", dict), ("demos", (str, type(None)))):
        value = getattr(config, name)
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ValueError(f"corrupt run config {path}: {name} is {value!r}, expected "
                             f"{'a mapping' if kinds is dict else getattr(kinds, '__name__', 'a string or null')}")
    return config


def check_run_dir(run_dir: str | Path) -> TrainConfig:
    """The config of a complete run at ``run_dir``; one-line errors for a file, a missing or incomplete run."""
    run_dir = Path(run_dir)
    state = run_state(run_dir)
    if state == "absent":
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is a file, not a run directory")
    if state == "incomplete":
        holder = lock_holder(run_dir)
        if holder:
            raise RunDirError(f"run {run_dir} is incomplete: it is being trained now (pid {holder})")
        raise RunDirError(f"run {run_dir} is incomplete: its training was interrupted; "
                          f"continue it with: symgym train --resume {run_dir}")
    return read_config(run_dir)


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


# -- optional extras of env ids ---------------------------------------------------------------
#: env module prefix -> (extra, the module whose absence means the extra is missing)
ENV_EXTRAS: dict[str, tuple[str, str]] = {
    "symgym.envs.tabletop": ("tabletop", "pybullet"),
    "symgym.envs.panda": ("arm", "pybullet_data"),
    "symgym.envs.closed_loop_panda": ("arm", "pybullet_data"),   # the HEP tasks on the same Panda model
    "symgym.envs.ros": ("ros", "roslibpy"),
}


def env_missing_extra(env_id: str) -> str | None:
    """``"pip install 'symgym[EXTRA]'"`` when ``env_id`` needs an extra that is not installed, else None.

    Looks the module up with ``find_spec`` (imports nothing), so ``symgym envs`` can mark such ids.
    """
    spec = gym.registry.get(env_id)
    entry = spec.entry_point if spec is not None and isinstance(spec.entry_point, str) else ""
    for prefix, (extra, module) in ENV_EXTRAS.items():
        if entry.startswith(prefix) and importlib.util.find_spec(module) is None:
            return f"needs the optional package {module!r}: pip install 'symgym[{extra}]'"
    return None


def require_env(env_id: str) -> None:
    """Raise a one-line ``MissingExtraError`` when ``env_id``'s optional extra is not installed."""
    missing = env_missing_extra(env_id)
    if missing:
        raise MissingExtraError(f"env {env_id!r} {missing}")


# -- run directories: a lock for the run's life, a manifest written last -------------------------
RUN_MANIFEST = "run.json"
LOCK_FILE = ".symgym.lock"


class RunDirError(ValueError):
    """A run directory cannot be used as asked (busy, already holds a run, incomplete); one line."""


STATE_WORDS = {"absent": "does not exist", "empty": "empty", "complete": "a complete run",
               "incomplete": "an incomplete run", "other": "files that are not a symgym run"}


def not_resumable(run_dir: Path, state: str) -> RunDirError:
    return RunDirError(f"cannot resume {run_dir}: it is {STATE_WORDS[state]}" if state != "absent"
                       else f"cannot resume {run_dir}: it does not exist")


def already_holds(run_dir: Path, state: str) -> RunDirError:
    if state == "other":  # --force moves symgym runs aside, never someone's other directory
        return RunDirError(f"{run_dir} holds {STATE_WORDS[state]}; choose another --out")
    hint = " or continue it with --resume" if state == "incomplete" else ""
    return RunDirError(f"{run_dir} already holds {STATE_WORDS[state]}; pass --force to move it aside "
                       f"(to {run_dir.name}.old-<timestamp>){hint}")


def run_state(run_dir: str | Path) -> str:
    """"absent", "empty", "complete", "incomplete" (a run that was interrupted or is being written) or "other".

    A run written by :func:`train` is complete only once ``run.json`` says so; that file is written last.
    A directory with a checkpoint manifest but no ``run.json`` was written by ``Agent.save`` outside training
    (hand-set policies, fine-tuning): its manifest is written last, so it counts as complete.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return "absent"
    if not run_dir.is_dir():
        return "other"
    names = {p.name for p in run_dir.iterdir()} - {LOCK_FILE}
    if not names:
        return "empty"
    if RUN_MANIFEST in names:
        try:
            return "complete" if json.loads((run_dir / RUN_MANIFEST).read_text()).get("complete") else "incomplete"
        except (OSError, ValueError, AttributeError):
            return "incomplete"
    if "config.json" in names:
        return "complete" if "checkpoint.json" in names else "incomplete"
    return "other"


def _try_lock(run_dir: Path) -> Any:
    """An open lock file held with ``flock`` (released when closed or when the process dies), or None if busy."""
    handle = open(run_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise RunDirError(f"run directory {run_dir} is in use by another symgym process"
                          f"{f' (pid {holder})' if holder else ''}; wait for it or choose another --out")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def moved_aside_name(run_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = run_dir.with_name(f"{run_dir.name}.old-{stamp}"), 1
    while candidate.exists():
        candidate, n = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}"), n + 1
    return candidate


@contextlib.contextmanager
def locked_run_dir(run_dir: str | Path, if_exists: str = "refuse", resume: bool = False) -> Iterator[Path]:
    """Hold ``RUN/.symgym.lock`` for the body; a second writer gets a one-line :class:`RunDirError`.

    ``if_exists``: what to do with a directory that already holds something: "refuse" (the CLI's default) or
    "move" (``--force``: renamed to ``RUN.old-<timestamp>``, never deleted). ``resume`` locks an existing
    incomplete run in place instead.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file, not a directory")
    if resume and not run_dir.is_dir():
        raise not_resumable(run_dir, "absent")
    if run_state(run_dir) == "other":  # refused before a lock file is left in someone's directory
        raise already_holds(run_dir, "other")
    handle = None
    try:
        if run_dir.is_dir():
            handle = _try_lock(run_dir)
            state = run_state(run_dir)
            if resume:
                if state != "incomplete":
                    raise not_resumable(run_dir, state)
            elif state != "empty":
                if if_exists != "move" or state == "other":
                    raise already_holds(run_dir, state)
                aside = moved_aside_name(run_dir)
                os.rename(run_dir, aside)  # the old lock moves with it; nobody else can enter it meanwhile
                handle.close()
                handle = None
        if handle is None:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
                handle = _try_lock(run_dir)
            except OSError as e:  # a read-only file system, a path through a file, no permission
                raise RunDirError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
            if run_state(run_dir) != "empty":  # another writer got here between our rename and mkdir
                raise RunDirError(f"run directory {run_dir} was filled by another process meanwhile")
        yield run_dir
    finally:
        if handle is not None:
            handle.close()


def write_run_manifest(run_dir: Path, complete: bool, **fields: Any) -> Path:
    """``run.json``: ``complete: false`` when training starts, ``true`` as the very last write of a run."""
    return write_json(run_dir / RUN_MANIFEST, {"complete": complete, **fields})


# -- step checkpoints (written by training.ResumableCheckpoint, read by resume and by the CLI's checks) ---------
CHECKPOINTS = "checkpoints"


def checkpoint_files(folder: Path, prefix: str, step: int) -> dict[str, Path]:
    return {"model": folder / f"{prefix}_{step}_steps.zip",
            "replay_buffer": folder / f"{prefix}_replay_buffer_{step}_steps.pkl",
            "rng": folder / f"{prefix}_rng_{step}_steps.pkl",
            "marker": folder / f"{prefix}_{step}_steps.json"}


def checkpoint_steps(folder: Path, prefix: str) -> list[int]:
    """Steps of the complete step checkpoints in ``folder`` (their marker is written last)."""
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)_steps\.json")
    steps = [int(m.group(1)) for p in folder.glob("*.json") if (m := pattern.fullmatch(p.name))] \
        if folder.is_dir() else []
    return sorted(s for s in steps if all(p.is_file() for p in checkpoint_files(folder, prefix, s).values()))
