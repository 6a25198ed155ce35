"""Per-env hyper-parameters in RL-Zoo-style YAML (``learn/run/hyperparams/AGENT.yml``, keyed by env id).

An entry's ``n_timesteps`` is the default training budget, ``policy_kwargs`` are the policy's settings and
every other key is an agent hyper-parameter; all of them become ``agent_kwargs`` (flat), which the agent
validates. Explicit ``--steps`` and ``--agent-kwargs`` win over the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"


def hyperparams_file(agent: str) -> Path:
    return HYPERPARAMS_DIR / f"{agent}.yml"


def load_hyperparams(agent: str, env_id: str, path: str | Path | None = None) -> tuple[int | None, dict[str, Any]]:
    """(n_timesteps or None, flat agent kwargs) for ``agent`` on ``env_id``; ``({}, None)`` when not listed."""
    path = Path(path) if path is not None else hyperparams_file(agent)
    if not path.is_file():
        return None, {}
    try:
        table = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"hyper-parameter file {path} is not valid YAML: {e}") from e
    entry = dict(table.get(env_id) or {})
    steps = entry.pop("n_timesteps", None)
    policy_kwargs = entry.pop("policy_kwargs", None) or {}
    if not isinstance(policy_kwargs, dict):
        raise ValueError(f"{path}: policy_kwargs for {env_id} must be a mapping, got {policy_kwargs!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 0):
        raise ValueError(f"{path}: n_timesteps for {env_id} must be a non-negative integer, got {steps!r}")
    return steps, {**entry, **policy_kwargs}


def resolve(agent: str, env_id: str, steps: int | None, agent_kwargs: dict[str, Any] | None,
            path: str | Path | None = None, default_steps: int = 20_000) -> tuple[int, dict[str, Any]]:
    """The run's steps and agent kwargs: command line over the YAML file over the agent's defaults."""
    file_steps, file_kwargs = load_hyperparams(agent, env_id, path)
    return (steps if steps is not None else file_steps if file_steps is not None else default_steps,
            {**file_kwargs, **(agent_kwargs or {})})
