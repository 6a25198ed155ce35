"""The planner side of PandaReach-v0 and PandaPush-v0: what :class:`~symgym.envs.protocols.PlannerEnv` asks of them.

The Panda's controller solves a differential IK per control step (``PandaPushEnv.control(action, state)`` gives the
``ctrl`` that ``mujoco.rollout`` holds for one control period), so a simulator rollout of an action *sequence* is
closed-loop: one IK solve per sample and step, in Python, between one-period rollouts. That backend is not written
yet. This module supplies, as a view over the env (:class:`PandaPlannerView`), the parts that need no simulator
replay:

* ``project_actions``: the env's own action map (projection onto the unit disc, which commutes with O(2)),
  batched over leading axes;
* ``obs_cost``: the env's per-step cost (minus its reward) computed from observations, batched: what a learned
  stage-cost model is fit to and what a learned-dynamics planner can score with;
* ``planner_defaults`` for the learned-model planner.

``actions_to_ctrl`` and ``cost`` (on full simulator states) raise a ``NotImplementedError`` naming this gap:
the simulator column of the MPPI benchmark is not run on the Panda (see ``learn/bench/mppi.py``).
:func:`planner_env` returns an env's unwrapped self when it already satisfies the protocol, else this view.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from symgym.envs.protocols import PlannerEnv, missing_members

SIMULATOR_GAP = ("the Panda's actions map to actuator controls through an IK solve per state and step, so an "
                 "open-loop batched rollout of an action sequence is not its dynamics and the closed-loop simulator "
                 "backend is not written yet; plan with a learned model (symgym.agents.mppi_models)")


def project_to_disc(actions: np.ndarray) -> np.ndarray:
    """Actions ``(..., 2)`` with norm above 1 scaled back onto the unit circle (the env's ``clip_to_disc``)."""
    a = np.asarray(actions, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1.0)


class PandaPlannerView:
    """A :class:`PlannerEnv` view over a PandaReach/PandaPush env (attributes not defined here come from the env)."""

    planner_defaults = MappingProxyType({"horizon": 15, "noise_sigma": 0.5, "temperature": 0.05})

    def __init__(self, env: Any):
        self.env = getattr(env, "unwrapped", env)
        name = type(self.env).__name__
        if name not in ("PandaReachEnv", "PandaPushEnv"):
            raise ValueError(f"PandaPlannerView needs PandaReach-v0 or PandaPush-v0, got {name}")
        self.reach = name == "PandaReachEnv"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    @property
    def unwrapped(self) -> "PandaPlannerView":
        return self

    def project_actions(self, actions: np.ndarray) -> np.ndarray:
        return project_to_disc(actions)

    def obs_cost(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Minus the env's reward, from observations ``(..., obs_size)`` (positions in table radii)."""
        from symgym.envs.panda import TABLE_RADIUS

        obs = np.asarray(obs, dtype=np.float64)
        if self.reach:  # [tip, tip velocity, goal, goal - tip]
            d_goal = TABLE_RADIUS * np.linalg.norm(obs[..., 6:8], axis=-1)
            success = d_goal < self.env.success_radius
            return 10.0 * d_goal - 10.0 * success
        raise NotImplementedError("obs_cost for PandaPush-v0 needs its observation layout; a learned cost model "
                                  "(fit to the env's rewards) works without it")

    def actions_to_ctrl(self, actions: np.ndarray) -> np.ndarray:
        raise NotImplementedError(SIMULATOR_GAP)

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        raise NotImplementedError(SIMULATOR_GAP)


def planner_env(env: Any) -> Any:
    """``env.unwrapped`` if it is a :class:`PlannerEnv`, the Panda's planner view for the Panda envs, else a
    one-line ValueError naming what is missing."""
    target = getattr(env, "unwrapped", env)
    missing = missing_members(target, PlannerEnv)
    if not missing:
        return target
    if type(target).__name__ in ("PandaReachEnv", "PandaPushEnv"):
        return PandaPlannerView(target)
    raise ValueError(f"{type(target).__name__} cannot be planned in: it lacks {', '.join(missing)}")


__all__ = ["PandaPlannerView", "planner_env", "project_to_disc", "SIMULATOR_GAP"]
