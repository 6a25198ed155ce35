"""Agents, each beside its non-symmetric baseline. ``AGENTS`` maps a CLI id to ``module:Class``."""
from __future__ import annotations

from symgym.agents.base import Agent, EnvInfo, TrainConfig
from symgym.agents.checkpoint import CheckpointError
from symgym.agents.registry import Registry, UnknownNameError

AGENTS = Registry("agent", {
    "sac": "symgym.agents.sac:SACAgent",
    "equi-sac": "symgym.agents.equi_sac:EquiSACAgent",
    "approx-sac": "symgym.agents.equi_sac:ApproxSACAgent",
    "approx-sac-frozen": "symgym.agents.equi_sac:ApproxSACFrozenAgent",
    "sac-aug": "symgym.agents.sac:SACAugAgent",
    "mppi": "symgym.agents.mppi:MPPIAgent",
    "sym-mppi": "symgym.agents.mppi:SymMPPIAgent",
    "transporter": "symgym.agents.transporter:TransporterAgent",
    "equi-transporter": "symgym.agents.transporter:EquiTransporterAgent",
    "keyframe-transporter": "symgym.agents.keyframe_transporter:KeyframeTransporterAgent",
    "hep": "symgym.agents.hep:HEPAgent",
    "flat-bc": "symgym.agents.hep:FlatBCAgent",
    "hep3d": "symgym.agents.hep3d:HEP3DAgent",
    "flat-diffusion": "symgym.agents.hep3d:FlatDiffusionAgent",
})

def agent_class(name: str) -> type[Agent]:
    return AGENTS.load(name)


__all__ = ["AGENTS", "Agent", "CheckpointError", "EnvInfo", "TrainConfig", "UnknownNameError", "agent_class"]
