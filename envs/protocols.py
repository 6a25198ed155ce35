"""What planners may ask of an env, as typed protocols: agents use these names, never private attributes.

:class:`PlannerEnv` is what any sampling planner (MPPI with a learned model) needs: full simulator states,
the feasible action set, the map to actuator controls and a vectorised trajectory cost, plus the declared
symmetry and the state layout (where ``QPOS``, ``QVEL``, ``MOCAP_POS``, ... sit in a state vector).
:class:`MujocoPlannerEnv` adds what batched ``mujoco.rollout`` needs: the ``MjModel`` and the physics part of
a state. Both are ``runtime_checkable``: ``isinstance(env.unwrapped, PlannerEnv)`` checks the members exist
(not their signatures); :func:`as_planner_env` does that check and names whatever is missing.

SymPush (and its wind/obstacle variants), SymReach, SymCartPole and SymPointMass satisfy both; the closed-loop,
tabletop and ROS envs do not (they have no vectorised cost). PandaReach/PandaPush satisfy :class:`PlannerEnv` through
:class:`symgym.envs.panda_planner.PandaPlannerView` (``planner_env(env)``); their controller solves an IK per state
and step, so they have no open-loop ``actions_to_ctrl`` and simulator rollouts go through the closed-loop
:class:`symgym.envs.panda_planner.PandaRolloutBackend` (bit for bit ``env.step``).

A backend that scores its own rollouts (a learned model, ``symgym.agents.mppi_models``) plans from observations:
it needs only ``project_actions``, ``symmetry`` and ``action_space`` of the env; everything else here is what the
simulator backend needs.
"""
from __future__ import annotations

from typing import Any, Generic, Mapping, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from symgym.equivariance.symmetry import Symmetry


@runtime_checkable
class PlannerEnv(Protocol):
    """An env a model-predictive planner can plan in. Every array method is batched over leading axes."""

    #: physics steps per env step (an action is held that long)
    frame_skip: int
    #: the declared symmetry (symmetric planners sample noise orbits of ``symmetry.group``)
    symmetry: Symmetry
    #: hyper-parameters that work on this env (``horizon``, ``noise_sigma``, ``temperature``); may be empty
    planner_defaults: Mapping[str, float]
    action_space: gym.spaces.Space

    @property
    def state_layout(self) -> Mapping[str, slice]:
        """Where each component (``"QPOS"``, ``"QVEL"``, ``"WARMSTART"``, ``"MOCAP_POS"``, ...) sits in a
        ``get_state()`` vector."""
        ...

    def get_state(self) -> np.ndarray:
        """The full simulator state (a copy); ``set_state`` of it reproduces the future exactly."""
        ...

    def set_state(self, state: np.ndarray) -> None:
        ...

    def project_actions(self, actions: np.ndarray) -> np.ndarray:
        """Actions ``(..., na)`` mapped onto the feasible set (equivariantly)."""
        ...

    def actions_to_ctrl(self, actions: np.ndarray) -> np.ndarray:
        """Actuator controls ``(..., nu)`` for actions ``(..., na)``, exactly as ``step`` applies them."""
        ...

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Trajectory cost: states ``(K, H, nstate)`` after each step and actions ``(K, H, na)`` -> ``(K,)``."""
        ...


@runtime_checkable
class MujocoPlannerEnv(PlannerEnv, Protocol):
    """A :class:`PlannerEnv` simulated by MuJoCo, so ``mujoco.rollout`` can roll it out in batches."""

    model: Any  # mujoco.MjModel

    @property
    def physics_layout(self) -> Mapping[str, slice]:
        """Where each component sits in a ``physics_state()`` vector (what ``mujoco.rollout`` takes)."""
        ...

    def physics_state(self, state: np.ndarray | None = None) -> np.ndarray:
        """The physics part of a ``get_state()`` vector or batch (default: the current state)."""
        ...


def protocol_members(protocol: type) -> list[str]:
    """The public members ``protocol`` declares (its own and its parent protocols'), in declaration order."""
    names: list[str] = []
    for cls in reversed(protocol.__mro__):
        if cls in (object, Protocol, Generic) or not getattr(cls, "_is_protocol", False):
            continue
        for name in (*getattr(cls, "__annotations__", {}), *vars(cls)):
            if not name.startswith("_") and name not in names:
                names.append(name)
    return names


def missing_members(env: Any, protocol: type = PlannerEnv) -> list[str]:
    """The ``protocol`` members that ``env`` (unwrapped first) lacks."""
    target = getattr(env, "unwrapped", env)
    return [n for n in protocol_members(protocol) if not hasattr(target, n)]


def as_planner_env(env: Any, protocol: type = PlannerEnv) -> Any:
    """``env.unwrapped`` if it satisfies ``protocol``; otherwise a one-line ValueError naming what is missing."""
    target = getattr(env, "unwrapped", env)
    missing = missing_members(target, protocol)
    if missing:
        raise ValueError(f"{type(target).__name__} cannot be planned in: it lacks {', '.join(missing)} "
                         f"(see symgym.envs.protocols.{protocol.__name__})")
    return target


__all__ = ["PlannerEnv", "MujocoPlannerEnv", "as_planner_env", "missing_members", "protocol_members"]
