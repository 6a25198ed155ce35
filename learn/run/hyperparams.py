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
    """(n_timesteps or None, flat agent kwargs) for ``agent`` on ``env_id``; ``(None, {})`` when not listed.

    The agent's own file may be absent (no tuned values); a file named explicitly must exist, and every file must
    be a mapping of env ids to mappings.
    """
    explicit = path is not None
    path = Path(path) if explicit else hyperparams_file(agent)
    if not path.is_file():
        if explicit:
            raise FileNotFoundError(f"hyper-parameter file {path} "
                                    f"{'is a directory' if path.is_dir() else 'does not exist'}")
        return None, {}
    try:
        table = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"hyper-parameter file {path} is not valid YAML: {' '.join(str(e).split())}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"hyper-parameter file {path} is not text: {e}") from e
    if not isinstance(table, dict):
        raise ValueError(f"hyper-parameter file {path} must map env ids to settings, got a {type(table).__name__}")
    entry = table.get(env_id) or {}
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: the entry for {env_id} must be a mapping of settings, got {entry!r}")
    entry = dict(entry)
    if any(not isinstance(k, str) for k in entry):
        raise ValueError(f"{path}: the entry for {env_id} has non-string keys {[k for k in entry if not isinstance(k, str)]}")
    steps = entry.pop("n_timesteps", None)
    policy_kwargs = entry.pop("policy_kwargs", None) or {}
    if not isinstance(policy_kwargs, dict):
        raise ValueError(f"{path}: policy_kwargs for {env_id} must be a mapping, got {policy_kwargs!r}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
        raise ValueError(f"{path}: n_timesteps for {env_id} must be a non-negative integer, got {steps!r}")
    return steps, {**entry, **policy_kwargs}


def resolve(agent: str, env_id: str, steps: int | None, agent_kwargs: dict[str, Any] | None,
            path: str | Path | None = None, default_steps: int = 20_000) -> tuple[int, dict[str, Any]]:
    """The run's steps and agent kwargs: command line over the YAML file over the agent's defaults."""
    file_steps, file_kwargs = load_hyperparams(agent, env_id, path)
    return (steps if steps is not None else file_steps if file_steps is not None else default_steps,
            {**file_kwargs, **(agent_kwargs or {})})
