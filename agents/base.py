"""The small protocol every agent follows, so the CLI can train, save, load and evaluate any of them.

RL agents wrap Stable-Baselines3 (callbacks, vector envs, logging and save/load come from SB3);
planners and imitation agents implement the same methods directly.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass
class TrainConfig:
    """Everything needed to reproduce a run; saved as ``config.json`` in the run directory.

    Args:
        agent: agent id (see ``agents.AGENTS``).
        env: Gymnasium env id.
        steps: environment steps (RL), gradient steps (imitation) or 0 (planners).
        seed: seeds the env, the agent and torch.
        out: run directory.
        demos: demonstrations file for imitation agents.
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


class Agent(ABC):
    """Base class: ``act(obs)``, ``save(dir)``, ``load(dir)``; learners also implement ``learn``."""

    #: set by subclasses: does this agent need to read the simulator state (planners)?
    needs_simulator: bool = False

    def attach(self, env: gym.Env) -> None:
        """Give the agent the env it will act in (planners read ``env.unwrapped.get_state()``)."""

    def reset(self) -> None:
        """Called at the start of each episode (planners drop their warm start)."""

    @abstractmethod
    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        ...

    @abstractmethod
    def save(self, run_dir: Path) -> None:
        ...

    @classmethod
    @abstractmethod
    def load(cls, run_dir: Path, env: gym.Env | None = None) -> "Agent":
        ...

    @classmethod
    @abstractmethod
    def from_config(cls, config: TrainConfig, run_dir: Path) -> "Agent":
        """Build and (for learners) train an agent; ``run_dir`` receives monitor logs and checkpoints."""
