"""Training orchestration (the run layer): seed, build the env, train the agent, save, plot.

``train(config)`` is what ``symgym train`` and every sweep trial call.
"""
from __future__ import annotations

from pathlib import Path

from symgym.agents import TrainConfig, agent_class
from symgym.learn.io import write_json


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Train (or build) ``config.agent`` on ``config.env``; returns the run directory ``config.out``."""
    cls = agent_class(config.agent)
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config.to_json())
    cls.from_config(config, run_dir)
    return run_dir
