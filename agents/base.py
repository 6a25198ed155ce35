"""The one agent lifecycle, as in Stable-Baselines3.

    agent = AgentClass.build(EnvInfo.of(env), agent_kwargs, seed)   # config + env spaces/symmetry
    metrics = agent.learn(env_or_demos, steps, callback)             # RL: an env; imitation: demos
    agent.save(run_dir)                                              # one checkpoint scheme (manifest)
    agent = AgentClass.load(run_dir)                                 # CheckpointError when damaged
    agent.attach(env); agent.reset(); action = agent.act(obs)

One lifecycle in code, not only in name: every agent is ``AgentClass(config, seed, info)`` with ``config`` an
instance of its ``config_class`` dataclass (the attribute is always ``self.config``) and ``seed`` the run's seed.
``build``, ``save`` and ``load`` are written once, here; an agent adds its own files through two hooks,
:meth:`Agent.checkpoint_files` and :meth:`Agent.restore_files` (plus :meth:`Agent.checkpoint_state` for small
JSON extras). One seed rule: the run's seed wins, and ``seed`` inside agent kwargs is a one-line error; a config
dataclass that carries a ``seed`` field (a planner seeded through its config) gets the run's seed filled in, and
the manifest stores the seed once, beside the config.

An agent never creates its env, seeds the process, plots or writes anything but its checkpoint: the run
layer (``symgym.learn.run.training``) does that.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import gymnasium as gym
import numpy as np

from symgym.agents.checkpoint import CheckpointFiles, read_checkpoint, write_checkpoint
from symgym.equivariance import Symmetry


@dataclass
class TrainConfig:
    """Everything needed to reproduce a run; saved (resolved) as ``config.json`` in the run directory.

    Args:
        agent: agent id (see ``symgym.agents.AGENTS``).
        env: Gymnasium env id.
        steps: environment steps (RL), gradient steps (imitation) or 0 (planners).
        seed: seeds the env, the agent and torch.
        out: run directory.
        demos: demonstrations file for imitation agents (collected into the run dir when absent).
        env_kwargs: keyword arguments for ``gymnasium.make``.
        agent_kwargs: agent hyper-parameters overriding its defaults.
    """

    agent: str
    env: str
    steps: int = 10_000
    seed: int = 0
    out: str = "runs/latest"
    demos: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config.json has unknown keys {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def read(cls, run_dir: str | Path) -> "TrainConfig":
        path = Path(run_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no run at {run_dir}: {path} does not exist")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"corrupt run config {path}: {e}") from e


@dataclass(frozen=True)
class EnvInfo:
    """What an agent may know about its env when it is built: the spaces and the declared symmetry."""

    observation_space: gym.Space
    action_space: gym.Space
    symmetry: Symmetry | None = None
    env_id: str | None = None

    @classmethod
    def of(cls, env: gym.Env) -> "EnvInfo":
        return cls(env.observation_space, env.action_space, getattr(env.unwrapped, "symmetry", None),
                   env.spec.id if env.spec is not None else None)


def parse_config(config_cls: type, kwargs: dict[str, Any], agent: str) -> Any:
    """``config_cls(**kwargs)`` with one-line errors for unknown keys and wrongly typed values.

    Types are checked against the dataclass annotations (ints are accepted for floats; lists and tuples
    for sequences), so ``{"learning_rate": "fast"}`` fails here and not deep inside a library.
    """
    fields_ = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(kwargs) - set(fields_))
    if unknown:
        raise ValueError(f"unknown {agent} agent kwarg(s) {unknown}; known: {sorted(fields_)}")
    hints = typing.get_type_hints(config_cls)
    for key, value in kwargs.items():
        if not _matches(value, hints[key]):
            raise ValueError(f"{agent} agent kwarg {key}={value!r}: expected {_type_name(hints[key])}")
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad {agent} agent kwargs {kwargs}: {e}") from e


def _matches(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, (bool, np.bool_))
    if tp is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args else Any
        return all(_matches(v, inner) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class Agent(ABC):
    """Base class. Subclasses set ``name``, ``learns_from`` and ``config_class`` and implement ``act`` and the
    checkpoint hooks; ``build``/``save``/``load`` are not overridden."""

    #: the CLI id, also recorded in the checkpoint manifest
    name: ClassVar[str] = ""
    #: what ``learn`` consumes: an env ("env"), demonstrations ("demos") or nothing (pure planners)
    learns_from: ClassVar[Literal["env", "demos", "nothing"]] = "nothing"
    #: reinforcement learners get SB3 callbacks, monitor logs and learning curves from the run layer
    rl: ClassVar[bool] = False
    #: planners read the simulator state of the env they are attached to
    needs_simulator: ClassVar[bool] = False
    #: the dataclass of the agent's hyper-parameters (``agent_kwargs``); saved in the manifest
    config_class: ClassVar[type]

    def __init__(self, config: Any = None, seed: int = 0, info: EnvInfo | None = None):
        self.config = self.config_class() if config is None else config
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{self.name} takes a {self.config_class.__name__}, got {type(self.config).__name__}")
        self.seed, self.info = int(seed), info
        if "seed" in _field_names(self.config_class):
            self.config = dataclasses.replace(self.config, seed=self.seed)

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def make_config(cls, agent_kwargs: dict[str, Any] | None = None) -> Any:
        """``config_class(**agent_kwargs)`` with one-line errors; ``seed`` is never an agent kwarg."""
        kwargs = dict(agent_kwargs or {})
        if "seed" in kwargs:
            raise ValueError(f"{cls.name}: seed={kwargs['seed']!r} in agent kwargs; the run's seed (--seed) is the "
                             f"agent's only seed")
        return parse_config(cls.config_class, kwargs, cls.name)

    @classmethod
    def build(cls, info: EnvInfo | None, agent_kwargs: dict[str, Any] | None = None, seed: int = 0) -> "Agent":
        """A fresh (untrained) agent for an env with these spaces and symmetry (``info=None``: agents that
        need no env to be built, e.g. imitation learners in tests)."""
        agent = cls(cls.make_config(agent_kwargs), seed, info)
        if info is not None:
            agent.check_env(info)
        return agent

    def check_env(self, info: EnvInfo) -> None:
        """Fail at build time, before any env is created or stepped, when this agent cannot act in the env."""

    # -- learning and acting ------------------------------------------------------------------------
    def learn(self, source: Any, steps: int, callback: Any = None, progress: bool = False) -> dict[str, Any]:
        """Train on ``source`` (an env or a demo set) for ``steps``; returns training metrics."""
        return {}

    @classmethod
    def read_demos(cls, path: str | Path) -> Any:
        """Load a demonstrations file in the form ``learn`` takes (imitation agents)."""
        raise ValueError(f"{cls.name} does not learn from demonstrations")

    def attach(self, env: gym.Env) -> None:
        """Give the agent the env it will act in (planners read ``env.unwrapped.get_state()``)."""

    def reset(self) -> None:
        """Called at the start of each episode (planners drop their warm start)."""

    @abstractmethod
    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        ...

    # -- persistence: written once ------------------------------------------------------------------
    def save(self, run_dir: str | Path) -> None:
        """The agent's files (atomically), then the manifest: class, seed, config (without a seed), extras."""
        config = asdict(self.config)
        config.pop("seed", None)  # stored once, as the manifest's seed
        write_checkpoint(run_dir, self.name, type(self).__name__, self.checkpoint_files(), config=config,
                         seed=self.seed, state=self.checkpoint_state())

    @classmethod
    def load(cls, run_dir: str | Path, env: gym.Env | None = None) -> "Agent":
        """Read a checkpoint written by ``save``; raises ``CheckpointError`` when missing/corrupt/mismatched.
        With ``env`` the agent is attached to it."""
        manifest = read_checkpoint(run_dir, cls.name, cls.__name__)
        agent = cls(parse_config(cls.config_class, manifest["config"], cls.name), manifest["seed"])
        agent.restore_files(CheckpointFiles(run_dir, manifest), manifest["state"])
        if env is not None:
            agent.attach(env)
        return agent

    def checkpoint_files(self) -> dict[str, tuple[str, Callable[[Path], Any]]]:
        """Hook: ``{role: (file name, writer(path))}`` of what the agent learned (none for pure planners)."""
        return {}

    def checkpoint_state(self) -> dict[str, Any]:
        """Hook: small JSON-serialisable extras kept in the manifest (a training record, a loss curve)."""
        return {}

    def restore_files(self, files: CheckpointFiles, state: dict[str, Any]) -> None:
        """Hook: load what :meth:`checkpoint_files` wrote into this freshly constructed agent."""


def _field_names(config_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class)}
