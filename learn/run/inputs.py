"""Every CLI input checked before anything is written: :func:`validate` is the first thing ``symgym`` calls.

Each check raises one exception whose one-line message names the bad value and, for numbers, the bound it broke;
the CLI prints it as ``symgym: error: ...`` with exit status 2. Checks are cheap (no training, no model loads)
so a bad command costs well under a second and leaves nothing on disk. ``check_train_config`` is the part the
Python API's ``train`` runs too.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

MAX_SEED = 2**32 - 1          # NumPy's legacy seeding (used by SB3) takes seeds below 2**32
MAX_STEPS = 10**8             # ~a day of MuJoCo SAC on one core at the measured ~1k steps/s is 10**8 / 1000 s
MAX_EPISODES = 100_000
MAX_EPISODE_STEPS = 10**6


@dataclass(frozen=True)
class Bound:
    """A closed or half-open numeric range, described in the message when a value falls outside it."""

    lo: float
    hi: float
    integer: bool = True
    lo_open: bool = False
    also: tuple = ()  # special values allowed outside the range (SB3's gradient_steps=-1)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        hi = "inf" if math.isinf(self.hi) else f"{self.hi:g}" if not self.integer else str(int(self.hi))
        lo = f"{self.lo:g}" if not self.integer else str(int(self.lo))
        extra = f" (or {', '.join(map(str, self.also))})" if self.also else ""
        return f"{kind} in {'(' if self.lo_open else '['}{lo}, {hi}]{extra}"

    def check(self, name: str, value: Any) -> None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        ok_type = is_int if self.integer else (is_int or isinstance(value, float)) and math.isfinite(value)
        if ok_type and value in self.also:
            return
        if not ok_type or value > self.hi or value < self.lo or (self.lo_open and value == self.lo):
            raise ValueError(f"{name}={value!r} is out of bounds: expected {self.describe()}")


SEED = Bound(0, MAX_SEED)
STEPS = Bound(0, MAX_STEPS)
#: hyper-parameters bounded wherever an agent takes them (an agent still rejects keys it does not know)
AGENT_KWARG_BOUNDS: dict[str, Bound] = {
    "learning_rate": Bound(0, 10, integer=False, lo_open=True),
    "buffer_size": Bound(1, MAX_STEPS),
    "learning_starts": Bound(0, MAX_STEPS),
    "batch_size": Bound(1, 1_000_000),
    "gamma": Bound(0, 1, integer=False, lo_open=True),
    "tau": Bound(0, 1, integer=False, lo_open=True),
    "train_freq": Bound(1, MAX_STEPS),
    "gradient_steps": Bound(1, 100_000, also=(-1,)),
    "threads": Bound(1, 1024),
    "n_demos": Bound(1, MAX_EPISODES),
}
ENV_KWARG_BOUNDS: dict[str, Bound] = {"max_episode_steps": Bound(1, MAX_EPISODE_STEPS)}


def check_agent_kwargs(kwargs: dict[str, Any]) -> None:
    for name, bound in AGENT_KWARG_BOUNDS.items():
        if name in kwargs:
            bound.check(f"agent kwarg {name}", kwargs[name])
    if "net_arch" in kwargs:
        arch = kwargs["net_arch"]
        if not isinstance(arch, list) or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 65536
                                                 for w in arch):
            raise ValueError(f"agent kwarg net_arch={arch!r} must be a list of layer widths, each in [1, 65536]")


def _env_class(env_id: str) -> Any:
    import gymnasium as gym

    entry = gym.registry[env_id].entry_point
    if not isinstance(entry, str):
        return entry
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def check_env(env_id: Any, env_kwargs: dict[str, Any]) -> None:
    """A known id whose extra is installed, bounded gym kwargs, a render mode the env has, a reachable bridge."""
    import gymnasium as gym

    import symgym.envs  # noqa: F401  (registers the ids)
    from symgym.learn.run.runs import _known_env_ids, check_env_kwargs, require_env

    if not isinstance(env_id, str) or env_id not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}; symgym envs: {_known_env_ids()}")
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"env kwargs must be a mapping, got {env_kwargs!r}")
    require_env(env_id)
    for name, bound in ENV_KWARG_BOUNDS.items():
        if name in env_kwargs:
            bound.check(f"env kwarg {name}", env_kwargs[name])
    check_env_kwargs(env_id, env_kwargs)
    if env_kwargs.get("render_mode") is not None:
        modes = list(getattr(_env_class(env_id), "metadata", {}).get("render_modes", []))
        if env_kwargs["render_mode"] not in modes:
            raise ValueError(f"render_mode {env_kwargs['render_mode']!r} is not one {env_id} has "
                             f"(it renders: {', '.join(map(str, modes)) or 'nothing'})")
    if env_id.startswith("RosArm"):
        check_rosbridge_reachable(str(env_kwargs.get("url", "ws://127.0.0.1:9090")))


def check_rosbridge_reachable(url: str, timeout: float = 2.0) -> None:
    """A TCP connection to the bridge, opened and closed at once: training on a dead bridge fails here."""
    from symgym.envs.ros import parse_rosbridge_url

    host, port = parse_rosbridge_url(url)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"cannot reach rosbridge at {url} ({e.strerror or e}); start the bridge "
                              f"(or `symgym sim-robot`) first") from None


def check_writable_dir(path: str | Path, what: str) -> None:
    """``path`` (or the directory it would be created in) can be written: not a file, not read-only."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{what} {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path} cannot be written: {probe} is read-only or not writable")


def check_writable_file(path: str | Path, what: str) -> None:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a directory, not a file")
    check_writable_dir(path.parent, f"{what} {path}: directory")


def require_module(module: str, what: str) -> None:
    """``what`` needs ``module``'s extra: a one-line MissingExtraError naming it before anything runs."""
    from symgym.agents.registry import MissingExtraError, missing_extra_message

    top = module.split(".")[0]
    if importlib.util.find_spec(top) is None:
        raise MissingExtraError(f"{what} {missing_extra_message(ImportError(name=top))}")


def check_train_config(config: Any, options: Any) -> None:
    """The checks ``train`` runs before it builds anything (the CLI runs them too, through :func:`validate`)."""
    from symgym.agents import AGENTS

    if not isinstance(config.agent, str):
        raise ValueError(f"agent must be a name, got {config.agent!r}")
    AGENTS.check(config.agent)
    SEED.check("seed", config.seed)
    STEPS.check("steps", config.steps)
    check_env(config.env, config.env_kwargs)
    if not isinstance(config.agent_kwargs, dict):
        raise ValueError(f"agent kwargs must be a mapping, got {config.agent_kwargs!r}")
    check_agent_kwargs(config.agent_kwargs)
    if config.demos is not None and not Path(config.demos).is_file():
        raise FileNotFoundError(f"demos file {config.demos} does not exist")
    for name in ("eval_freq", "checkpoint_freq"):
        value = getattr(options, name)
        if value is not None:
            STEPS.check(name.replace("_", "-"), value)
    Bound(1, MAX_EPISODES).check("eval-episodes", options.eval_episodes)
    if options.tensorboard:
        require_module("tensorboard", "--tensorboard")
        check_writable_dir(options.tensorboard, "TensorBoard directory")
    check_writable_dir(config.out, "run directory")


# -- the CLI -------------------------------------------------------------------------------------------------
def train_request(args: Any) -> tuple[Any, dict[str, Any]]:
    """(TrainConfig, TrainOptions keyword arguments) for ``symgym train`` arguments, hyper-parameter file resolved."""
    from symgym.agents import TrainConfig
    from symgym.learn.run.hyperparams import resolve

    options = train_options(args)
    if args.agent is None or args.env is None:
        raise ValueError("train needs --agent and --env (or --resume RUN)")
    steps, agent_kwargs = resolve(args.agent, args.env, args.steps, args.agent_kwargs, path=args.hyperparams)
    out = args.out or f"runs/{args.agent}-{args.env}-s{args.seed}"
    config = TrainConfig(agent=args.agent, env=args.env, steps=steps, seed=args.seed, out=str(out),
                         demos=args.demos, env_kwargs=args.env_kwargs, agent_kwargs=agent_kwargs)
    return config, options


def train_options(args: Any) -> dict[str, Any]:
    """``TrainOptions`` keyword arguments (a dict: this module sits below ``training``, which imports it)."""
    return dict(progress=not args.no_progress, tensorboard=args.tensorboard, eval_freq=args.eval_freq,
                eval_episodes=args.eval_episodes, checkpoint_freq=args.checkpoint_freq,
                if_exists="move" if args.force else "refuse")


_RESUME_CONFLICTS = ("agent", "env", "steps", "out", "demos", "hyperparams")


def _validate_train(args: Any) -> None:
    from symgym.learn.run.runs import RunDirError, lock_holder, already_holds, not_resumable, run_state

    if args.resume is not None:
        from symgym.learn.run.runs import checkpoint_steps, read_config

        given = [f"--{n}" for n in _RESUME_CONFLICTS if getattr(args, n) is not None]
        if given or args.env_kwargs or args.agent_kwargs or args.seed is not None or args.force:
            raise ValueError(f"--resume continues {args.resume} with its saved config; drop "
                             f"{', '.join(given) or '--seed/--env-kwargs/--agent-kwargs/--force'}")
        run = Path(args.resume)
        state = run_state(run)
        if state != "incomplete":
            raise not_resumable(run, state)
        holder = lock_holder(run)
        if holder:
            raise RunDirError(f"cannot resume {run}: it is being trained now (pid {holder})")
        config = read_config(run)
        check_train_config(config, SimpleNamespace(**train_options(args)))
        if not checkpoint_steps(run / "checkpoints", config.agent):
            raise RunDirError(f"cannot resume {run}: it has no complete step checkpoint (train with "
                              f"--checkpoint-freq N > 0); start it again with --force")
        return
    if args.seed is None:
        args.seed = 0
    config, options = train_request(args)
    check_train_config(config, SimpleNamespace(**options))
    out = Path(config.out)
    holder = lock_holder(out) if out.is_dir() else None
    if holder:
        raise RunDirError(f"run directory {out} is in use by another symgym process (pid {holder})")
    state = run_state(out)
    if state not in ("absent", "empty") and (not args.force or state == "other"):
        raise already_holds(out, state)


def _validate_eval(args: Any) -> None:
    from symgym.learn.run.runs import check_run_dir

    config = check_run_dir(args.run)
    SEED.check("seed", args.seed + args.episodes - 1)  # episodes use seeds seed, seed+1, ...
    if args.env is not None and args.env != config.env:
        check_env(args.env, {})
        _check_same_spaces(config, args.env)


def _check_same_spaces(config: Any, env_id: str) -> None:
    """A zero-shot transfer target must have the run's observation and action shapes (else SB3's own error)."""
    import gymnasium as gym

    shapes = []
    for name, kwargs in ((config.env, config.env_kwargs), (env_id, {})):
        env = gym.make(name, **kwargs)
        shapes.append((env.observation_space.shape, env.action_space.shape))
        env.close()
    (obs_a, act_a), (obs_b, act_b) = shapes
    if obs_a != obs_b or act_a != act_b:
        raise ValueError(f"run {config.out} was trained on {config.env} (observations {obs_a}, actions {act_a}); "
                         f"{env_id} has observations {obs_b}, actions {act_b}")


def validate(args: Any) -> None:
    """Check every input of a parsed ``symgym`` command line; raises before anything is written."""
    command = args.command
    if command == "train":
        _validate_train(args)
    elif command == "eval":
        _validate_eval(args)
    elif command == "demo":
        check_writable_dir(args.out, "run directory")
    elif command == "demos":
        check_env(args.env, {})
        check_writable_file(args.out, "demos file")
    elif command in ("task", "bench"):
        if command == "task":
            from symgym.learn.tasks import TASKS as registry
        else:
            from symgym.learn.bench import BENCHES as registry
        registry.check(args.name)
        check_writable_dir(args.out, "results directory")
    elif command == "envs" and args.frames:
        check_writable_dir(args.frames, "frames directory")
    elif command == "deploy":
        require_module("roslibpy", "deploy")  # the rosbridge client
    elif command == "sim-robot":
        require_module("websockets", "sim-robot")  # the twin's rosbridge server
        check_port_free(args.port)


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """The twin serves on loopback: a busy port is named here, not deep in its server thread."""
    if not port:
        return
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise OSError(f"port {port} on {host} is in use ({e.strerror}); pick another --port") from None
