"""Agents, each beside its non-symmetric baseline. ``AGENTS`` maps a CLI id to ``module:Class``."""
from __future__ import annotations

import importlib

from symgym.agents.base import Agent, TrainConfig

AGENTS: dict[str, str] = {
    "sac": "symgym.agents.sac:SACAgent",
    "equi-sac": "symgym.agents.equi_sac:EquiSACAgent",
    "approx-sac": "symgym.agents.equi_sac:ApproxSACAgent",
    "mppi": "symgym.agents.mppi:MPPIAgent",
    "sym-mppi": "symgym.agents.mppi:SymMPPIAgent",
    "transporter": "symgym.agents.transporter:TransporterAgent",
    "equi-transporter": "symgym.agents.transporter:EquiTransporterAgent",
    "keyframe-transporter": "symgym.agents.keyframe_transporter:KeyframeTransporterAgent",
    "hep": "symgym.agents.hep:HEPAgent",
    "flat-bc": "symgym.agents.hep:FlatBCAgent",
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
