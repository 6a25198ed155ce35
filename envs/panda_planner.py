"""The planner side of PandaReach-v0 and PandaPush-v0: what :class:`~symgym.envs.protocols.PlannerEnv` asks of them.

The Panda's controller solves a differential IK once per control step (``PandaPushEnv.control(action, state)``
gives the ``ctrl`` the velocity servos hold for the period), so a simulator rollout of an action *sequence* is
closed-loop: the IK of step t+1 reads the state step t reached. :class:`PandaRolloutBackend` does exactly that, one
``control`` call per sample and step between ``frame_skip`` physics steps, and reproduces ``env.step`` bit for bit
(tested). It steps one ``MjData`` per sample with ``mj_step`` rather than ``mujoco.rollout``: a rollout returns no
solver warm start, and restarting each control period without the one ``step`` carries would break exactness;
the IK (Python, ~0.25 ms) dominates a sample-step anyway (physics ~0.45 ms on this machine).

:class:`PandaPlannerView` adds, over the env:

* ``project_actions``: the env's own action map (projection onto the unit disc, which commutes with O(2)),
  batched over leading axes;
* ``obs_cost``: the env's per-step cost (minus its reward) from observations, batched, for both envs: what a
  learned stage-cost model is fit to and what a learned-dynamics planner can score with;
* ``stage_cost`` / ``cost`` on full ``get_state()`` vectors (forward kinematics per state for the tip);
* ``planner_defaults`` for the planner.

``actions_to_ctrl`` raises: there is no open-loop map from actions to controls (use the backend).
:func:`planner_env` returns an env's unwrapped self when it already satisfies the protocol, else this view.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from symgym.envs.protocols import PlannerEnv, missing_members

NO_OPEN_LOOP = ("the Panda's actions map to actuator controls through an IK solve per state and step, so there is "
                "no open-loop action -> ctrl map; roll it out with symgym.envs.panda_planner.PandaRolloutBackend "
                "(closed loop) or plan with a learned model (symgym.agents.mppi_models)")


def project_to_disc(actions: np.ndarray) -> np.ndarray:
    """Actions ``(..., 2)`` with norm above 1 scaled back onto the unit circle (the env's ``clip_to_disc``)."""
    a = np.asarray(actions, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1.0)


def step_cost(reach: bool, tip: np.ndarray, goal: np.ndarray, puck: np.ndarray | None,
              success_radius: float) -> np.ndarray:
    """Minus the env's reward from positions in metres ``(..., 2)`` (the reward of ``_reward_info``, batched)."""
    if reach:
        d_goal = np.linalg.norm(goal - tip, axis=-1)
        return 10.0 * d_goal - 10.0 * (d_goal < success_radius)
    d_goal = np.linalg.norm(goal - puck, axis=-1)
    d_push = np.linalg.norm(puck - tip, axis=-1)
    return 10.0 * (d_goal + 0.5 * d_push) - 10.0 * (d_goal < success_radius)


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

        x = TABLE_RADIUS * np.asarray(obs, dtype=np.float64)
        if self.reach:  # [tip, tip velocity, goal, goal - tip]
            return step_cost(True, x[..., 0:2], x[..., 4:6], None, self.env.success_radius)
        # SymPush's layout: [tip, tip velocity, puck, puck velocity, goal, puck - tip, goal - puck]
        return step_cost(False, x[..., 0:2], x[..., 8:10], x[..., 4:6], self.env.success_radius)

    def positions(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Tip, goal and puck (None for Reach) xy in metres for ``get_state()`` vectors ``(..., nstate)``; the tip
        needs forward kinematics, one state at a time."""
        import mujoco

        from symgym.envs.mujoco_base import STATE_SPEC

        env, states = self.env, np.asarray(states, dtype=np.float64)
        flat = states.reshape(-1, states.shape[-1])
        d, tips = mujoco.MjData(env.model), np.empty((len(flat), 2))
        for i, s in enumerate(flat):
            mujoco.mj_setState(env.model, d, s[:-2], STATE_SPEC)
            env.controller.forward_kinematics(d)
            tips[i] = env.controller.tip(d)[:2]
        layout = env.state_layout
        goal = states[..., layout["MOCAP_POS"]][..., :2]  # the goal is the only mocap body
        puck = None if self.reach else states[..., layout["QPOS"]][..., env._pair_qpos[0]]
        return tips.reshape(*states.shape[:-1], 2), goal, puck

    def stage_cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Minus the reward of reaching ``states`` (``get_state()`` vectors ``(..., nstate)``), batched."""
        tip, goal, puck = self.positions(states)
        return step_cost(self.reach, tip, goal, puck, self.env.success_radius)

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Trajectory cost ``(K,)`` of states after each step ``(K, H, nstate)``."""
        return self.stage_cost(states, actions).sum(axis=-1)

    def actions_to_ctrl(self, actions: np.ndarray) -> np.ndarray:
        raise NotImplementedError(NO_OPEN_LOOP)


class PandaRolloutBackend:
    """Closed-loop simulator rollouts of PandaReach/PandaPush for :class:`~symgym.agents.mppi.MPPIPlanner`.

    For each sample and step: ``ctrl = env.control(action, state)`` (the env's own IK, the code path of ``step``),
    ``frame_skip`` physics steps, forward kinematics (what ``step`` does before observing). ``rollout`` returns the
    ``get_state()`` vectors after each step and the per-step costs (minus the env's rewards);
    ``trajectory_costs`` sums them (the planner then needs no ``actions_to_ctrl``).
    """

    plans_from = "state"

    def __init__(self, env: Any):
        view = env if isinstance(env, PandaPlannerView) else PandaPlannerView(env)
        self.view, self.env = view, view.env
        import mujoco

        self._data = mujoco.MjData(self.env.model)

    def rollout(self, state: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From one ``get_state()`` vector apply actions ``(K, H, 2)``: states ``(K, H, nstate)``, costs ``(K, H)``."""
        import mujoco

        from symgym.envs.mujoco_base import STATE_SPEC

        env, m, d, ctrl = self.env, self.env.model, self._data, self.env.controller
        state, actions = np.asarray(state, dtype=np.float64), np.asarray(actions, dtype=np.float64)
        k, h, _ = actions.shape
        states, costs = np.empty((k, h, state.shape[-1])), np.empty((k, h))
        goal = state[env.state_layout["MOCAP_POS"]][:2]  # the goal is the only mocap body
        puck_idx = None if self.view.reach else env._pair_qpos[0]
        for i in range(k):
            current = state
            mujoco.mj_setState(m, d, state[:-2], STATE_SPEC)
            for t in range(h):
                ctrl.forward_kinematics(d)
                tip_before = ctrl.tip(d)[:2].copy()
                d.ctrl[:] = env.control(actions[i, t], current)
                mujoco.mj_step(m, d, nstep=env.frame_skip)
                ctrl.forward_kinematics(d)
                out = states[i, t]
                mujoco.mj_getState(m, d, out[:-2], STATE_SPEC)
                out[-2:] = tip_before
                current = out
                puck = None if puck_idx is None else d.qpos[puck_idx]
                costs[i, t] = step_cost(self.view.reach, ctrl.tip(d)[:2], goal, puck, env.success_radius)
        return states, costs

    def trajectory_costs(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return self.rollout(state, actions)[1].sum(axis=-1)

    def close(self) -> None:
        pass


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


__all__ = ["PandaPlannerView", "PandaRolloutBackend", "planner_env", "project_to_disc", "step_cost", "NO_OPEN_LOOP"]
