"""Agents, each beside its non-symmetric baseline. ``AGENTS`` maps a CLI id to ``module:Class``."""
from __future__ import annotations

import importlib

from agents.base import Agent, TrainConfig

AGENTS: dict[str, str] = {
    "sac": "agents.sac:SACAgent",
    "equi-sac": "agents.equi_sac:EquiSACAgent",
    "approx-sac": "agents.equi_sac:ApproxSACAgent",
    "mppi": "agents.mppi:MPPIAgent",
    "sym-mppi": "agents.mppi:SymMPPIAgent",
    "transporter": "agents.transporter:TransporterAgent",
    "equi-transporter": "agents.transporter:EquiTransporterAgent",
    "keyframe-transporter": "agents.keyframe_transporter:KeyframeTransporterAgent",
    "hep": "agents.hep:HEPAgent",
    "flat-bc": "agents.hep:FlatBCAgent",
}


class UnknownAgentError(KeyError):
    def __str__(self) -> str:
        return f"unknown agent {self.args[0]!r}; known agents: {', '.join(sorted(AGENTS))}"


def agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise UnknownAgentError(name)
    module, cls = AGENTS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise UnknownAgentError(f"{name} (not available: {e})") from e


__all__ = ["AGENTS", "Agent", "TrainConfig", "agent_class", "UnknownAgentError"]
