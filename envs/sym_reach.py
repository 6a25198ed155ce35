"""SymReach-v0: a planar 2-link arm with its base at the origin reaches a goal; O(2)-symmetric about the base.

Rotating the scene about the base adds the rotation angle to the shoulder angle and rotates the goal;
mirroring it negates both joint angles, both joint velocities and both torques. The elbow angle is
*relative* to the upper arm, so it is invariant under rotations and only changes sign under reflections,
which is why this env extends :meth:`PlanarMujocoEnv.transform_state` rather than listing the elbow as a
yaw hinge.
"""
from __future__ import annotations

import mujoco
import numpy as np
from gymnasium import spaces

from symgym.envs.mujoco_base import PlanarMujocoEnv
from symgym.envs.render2d import TopDownCanvas, composite
from symgym.equivariance import O2, O2Element, Symmetry, sign, standard, trivial

LINK_LENGTHS = (0.2, 0.2)


class SymReachEnv(PlanarMujocoEnv):
    """Move the fingertip of a torque-driven 2-link arm onto a goal.

    Two links of 0.2 m hinge about +z, the shoulder at the world origin; no contacts, no joint limits.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``, clipped to the box (the action representation ``sign + sign`` maps the
    box to itself, so clipping keeps the dynamics equivariant). One action lasts 0.02 s (4 physics steps).

    | index | meaning | unit |
    |---|---|---|
    | 0 | shoulder torque | ``max_torque`` (N m) |
    | 1 | elbow torque | ``max_torque`` (N m) |

    ## Observation Space

    ``Box(-inf, inf, (12,), float32)``; ``q1`` is the shoulder angle (world frame), ``q2`` the elbow angle
    relative to the upper link.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | ``cos q1, sin q1`` (shoulder direction) | - |
    | 2 | ``cos q2`` | - |
    | 3 | ``sin q2`` | - |
    | 4 | shoulder angular velocity ``dq1`` | rad/s |
    | 5 | elbow angular velocity ``dq2`` | rad/s |
    | 6-7 | goal position | m |
    | 8-9 | fingertip position | m |
    | 10-11 | goal - fingertip | m |

    ## Rewards

    Minus :meth:`stage_cost`: ``-(|goal - tip| + velocity_weight * |dq|^2 + action_weight * |a|^2)`` per step
    (distance in m, velocities in rad/s, actions in ``max_torque`` units).

    ## Starting State

    Shoulder angle uniform in [-pi, pi), elbow uniform in [-2.5, 2.5] rad, joint velocities normal with
    standard deviation 0.1 rad/s; the goal uniform in the annulus 0.12-0.36 m about the base.

    ## Episode End

    Never terminates (``info["is_success"]`` says whether the tip is within ``success_radius``); truncated
    after 100 actions by the registration.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` |
    | ``max_torque`` | 0.5 | joint torque (N m) an action of 1 commands |
    | ``success_radius`` | 0.02 | goal tolerance (m) for ``info["is_success"]`` |
    | ``velocity_weight`` | 0.01 | cost per (rad/s)^2 of joint velocity |
    | ``action_weight`` | 0.01 | cost per squared action |

    ## Symmetry

    Group: O(2) about the base. Representations: observation ``standard + trivial + sign + sign + sign +
    3 * standard``; action ``sign + sign`` (a rotation shifts the shoulder angle, a mirror negates both joint
    angles, velocities and torques). Exact; measured by ``symgym bench equivariance``:
    max |step(g.s, g.a) - g.step(s, a)| = 7.1e-14 over 60 steps (results/equivariance.json).

    ## Version History

    * v0: initial release.
    """

    xml_file = "sym_reach.xml"
    frame_skip = 4
    yaw_hinges = ("shoulder",)
    mocap_bodies = ("goal",)
    #: MPPI hyper-parameters that work on this env (the agent's kwargs override them).
    planner_defaults = {"horizon": 25, "noise_sigma": 0.6, "temperature": 0.05}
    #: step() is project_actions -> _simulate(actions_to_ctrl(a)) -> an outcome read from the state alone (no
    #: derived quantities), so symgym.envs.vector may run the physics batched and replay step() on each row
    vector_from_state = True

    def __init__(self, render_mode: str | None = None, max_torque: float = 0.5, success_radius: float = 0.02,
                 velocity_weight: float = 0.01, action_weight: float = 0.01):
        super().__init__(render_mode=render_mode)
        self.max_torque = float(max_torque)
        self.success_radius = float(success_radius)
        self.velocity_weight = float(velocity_weight)
        self.action_weight = float(action_weight)
        self._elbow_qpos = self.model.jnt_qposadr[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, "elbow")]
        self._elbow_dof = self.model.jnt_dofadr[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, "elbow")]
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(12,), dtype=np.float32)
        group = O2()
        obs_rep = standard(group) + trivial(group) + sign(group) + sign(group) + sign(group) + 3 * standard(group)
        self.symmetry = Symmetry(group=group, obs=obs_rep, action=sign(group) + sign(group), exact=True)

    # -- symmetry ---------------------------------------------------------------------
    def transform_state(self, g: O2Element, state: np.ndarray) -> np.ndarray:
        s = super().transform_state(g, state)
        qpos, qvel = self._layout["QPOS"], self._layout["QVEL"]
        s[..., qpos.start + self._elbow_qpos] *= g.det
        s[..., qvel.start + self._elbow_dof] *= g.det
        if "WARMSTART" in self._layout:
            s[..., self._layout["WARMSTART"].start + self._elbow_dof] *= g.det
        return s

    # -- vectorised pieces the planner uses ----------------------------------------------
    def project_actions(self, actions: np.ndarray) -> np.ndarray:
        """Feasible actions (any leading batch shape)."""
        return np.clip(actions, -1.0, 1.0)

    def actions_to_ctrl(self, actions: np.ndarray) -> np.ndarray:
        return self.max_torque * self.project_actions(actions)

    def fingertip(self, qpos: np.ndarray) -> np.ndarray:
        """Fingertip xy from joint angles ``qpos[..., 2]`` (forward kinematics, batched)."""
        q1, q12 = qpos[..., 0], qpos[..., 0] + qpos[..., 1]
        l1, l2 = LINK_LENGTHS
        return np.stack([l1 * np.cos(q1) + l2 * np.cos(q12), l1 * np.sin(q1) + l2 * np.sin(q12)], axis=-1)

    def stage_cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-step cost of states ``(..., nstate)`` reached by actions ``(..., 2)``: rotation/reflection invariant."""
        qpos = states[..., self._layout["QPOS"]]
        qvel = states[..., self._layout["QVEL"]]
        goal = states[..., self._layout["MOCAP_POS"]][..., :2]
        dist = np.linalg.norm(self.fingertip(qpos) - goal, axis=-1)
        return (dist + self.velocity_weight * np.sum(qvel**2, axis=-1)
                + self.action_weight * np.sum(np.asarray(actions) ** 2, axis=-1))


    # -- gym API ----------------------------------------------------------------------
    def reset_model(self) -> None:
        rng = self.np_random
        self.data.qpos[self._yaw_qpos[0]] = rng.uniform(-np.pi, np.pi)
        self.data.qpos[self._elbow_qpos] = rng.uniform(-2.5, 2.5)
        self.data.qvel[:] = rng.normal(0.0, 0.1, size=self.model.nv)
        radius = np.sqrt(rng.uniform(0.12**2, 0.36**2))
        angle = rng.uniform(0, 2 * np.pi)
        self.data.mocap_pos[self._mocap[0], :2] = radius * np.array([np.cos(angle), np.sin(angle)])

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise ValueError(f"SymReach action must have shape (2,), got {a.shape}")
        a = self.project_actions(a)
        self._simulate(self.actions_to_ctrl(a))
        info = self._info()
        reward = -float(self.stage_cost(self.get_state(), a))
        return self._obs(), reward, False, False, info

    @property
    def goal_pos(self) -> np.ndarray:
        return self.data.mocap_pos[self._mocap[0], :2].copy()

    @property
    def tip_pos(self) -> np.ndarray:
        return self.fingertip(self.data.qpos[[self._yaw_qpos[0], self._elbow_qpos]])

    def _info(self) -> dict:
        d = float(np.linalg.norm(self.goal_pos - self.tip_pos))
        return {"is_success": d < self.success_radius, "goal_distance": d}

    def _obs(self) -> np.ndarray:
        q1, q2 = self.data.qpos[self._yaw_qpos[0]], self.data.qpos[self._elbow_qpos]
        dq = self.data.qvel[[self._yaw_dof[0], self._elbow_dof]]
        tip, goal = self.tip_pos, self.goal_pos
        return np.concatenate([[np.cos(q1), np.sin(q1), np.cos(q2), np.sin(q2)], dq, goal, tip, goal - tip]
                              ).astype(np.float32)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        c = TopDownCanvas(256, 0.45)
        q1 = self.data.qpos[self._yaw_qpos[0]]
        elbow = LINK_LENGTHS[0] * np.array([np.cos(q1), np.sin(q1)])
        tip = self.tip_pos
        links = [c.disc(p, 0.012) for seg in ((np.zeros(2), elbow), (elbow, tip))
                 for p in np.linspace(seg[0], seg[1], 24)]
        return composite([
            (c.disc((0, 0), 0.42), (0.88, 0.86, 0.82)),
            (c.ring(self.goal_pos, 0.02, 0.005), (0.2, 0.7, 0.3)),
            (np.max(links, axis=0), (0.25, 0.4, 0.85)),
            (c.disc(tip, 0.015), (0.85, 0.25, 0.2)),
        ], background=(1, 1, 1), size=256)
