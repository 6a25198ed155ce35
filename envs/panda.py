"""PandaPush-v0 and PandaReach-v0: SymPush's tasks executed by a Franka Panda's end effector (MuJoCo).

The arm stands beside SymPush's round table (base at ``(base_x, 0)``, 0.55 m from the workspace centre by
default) with a pusher sphere on a rod below its hand. An action is SymPush's: a planar end-effector velocity
in units of ``max_speed``, projected onto the unit disc, and kept inside the workspace disc (both commute with
rotations about the centre). A Cartesian velocity controller
(:class:`~symgym.envs.panda_model.CartesianVelocityController`: damped least-squares IK, height and
orientation hold, nullspace posture, joint limits) turns it into joint velocity targets once per action, which
MuJoCo's velocity servos hold through the 10 physics substeps (see :meth:`PandaPushEnv.control` for batched
rollouts). The arm collides with the table, the puck and itself.

The observation has SymPush's 14-float layout (pusher = the tip), read from the current kinematics after the
last substep. The tip's velocity is its finite difference over the last control period: what a deployment can
compute from ``/tf`` poses, and what the Panda twin's clients compute (``envs.ros``), so sim and twin observe the
same thing.
"""
from __future__ import annotations

import math
from typing import Generator, Sequence

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from symgym.envs.mujoco_base import STATE_SPEC, PlanarMujocoEnv
from symgym.envs.panda_model import (ARM_JOINTS, FINGER_JOINTS, TIP_HEIGHT, CartesianVelocityController,
                                     panda_scene)
from symgym.envs.render2d import TopDownCanvas, composite
from symgym.envs.sym_push import PUCK_RADIUS, PUSHER_RADIUS, TABLE_RADIUS, _uniform_disc, clip_to_disc, push_observation
from symgym.equivariance import O2, O2Element, Symmetry, standard

#: a tip target counts as reachable when IK puts the tip within this distance (m)
REACH_TOLERANCE = 1e-4


class UnreachableStateError(ValueError):
    """A transformed state whose tip the arm cannot reach (``PandaPushEnv.transform_state``)."""


def _hypot_rows(xy: np.ndarray) -> np.ndarray:
    """``math.hypot`` of each row of ``xy`` (N, 2): what the scalar code computes (``np.hypot`` may round otherwise)."""
    return np.fromiter(map(math.hypot, xy[:, 0], xy[:, 1]), np.float64, len(xy))


def remove_outward(velocity: np.ndarray, position: np.ndarray, radius: float) -> np.ndarray:
    """At or beyond ``radius`` from the centre, drop the outward radial part of ``velocity`` (rotation-equivariant)."""
    r = math.hypot(position[0], position[1])
    if r < radius:
        return velocity
    radial = np.asarray(position, dtype=np.float64) / r
    outward = float(velocity @ radial)
    return velocity - outward * radial if outward > 0 else velocity


class PandaPushEnv(PlanarMujocoEnv):
    """Push the puck (red) to the goal (green) with the Panda's pusher tip (blue); see the module docstring.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``, projected onto the unit disc (not clipped per axis). One action lasts 0.1 s
    (10 physics steps of 0.01 s); the tip's end-of-period target is kept inside the workspace disc.

    | index | meaning | unit |
    |---|---|---|
    | 0 | desired tip velocity, x | ``max_speed`` (m/s) |
    | 1 | desired tip velocity, y | ``max_speed`` (m/s) |

    ## Observation Space

    ``Box(-10, 10, (14,), float32)``, SymPush's layout with the pusher = the arm's tip; world frame, origin at the
    table centre; positions divided by the table radius (0.35 m), velocities by ``max_speed``.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | tip position | table radii |
    | 2-3 | tip velocity (displacement over the last 0.1 s) | ``max_speed`` |
    | 4-5 | puck position | table radii |
    | 6-7 | puck velocity | ``max_speed`` |
    | 8-9 | goal position | table radii |
    | 10-11 | puck - tip | table radii |
    | 12-13 | goal - puck | table radii |

    ## Rewards

    SymPush's: ``-10 |goal - puck| - 5 |puck - tip| + 10 * success`` per step (distances in metres). ``info``
    adds ``tip_height_error`` (m), how well the arm holds the tip at table height.

    ## Starting State

    Puck uniform in a disc of 0.15 m, goal in a disc of 0.22 m at 0.08-0.2 m from the puck, the puck's yaw
    uniform: SymPush's draws for the same seed. The tip is drawn as SymPush draws its pusher (0.28 m disc, clear of
    the puck) and redrawn while it lies outside the workspace; the arm is placed there at rest by IK, hand down.

    ## Episode End

    Terminates on success (the puck within ``success_radius`` of the goal); truncated after 50 actions.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` (a 256x256 top-down drawing) |
    | ``max_speed`` | 0.4 | tip speed (m/s) that an action of norm 1 commands |
    | ``success_radius`` | 0.05 | goal tolerance (m) |
    | ``workspace_radius`` | 0.25 | the tip stays within this disc (m); 0.25 is where the arm tracks (below) |
    | ``base_x`` | -0.55 | the arm base's x (m), in [-0.9, -0.4] |

    ## Symmetry

    O(2) about the table centre, declared ``exact=False``: the puck, goal, table and workspace disc are
    symmetric; the arm is not (its base sits on one side), so the tip's dynamics depend on where it is.
    ``transform_state`` rotates the scene and re-solves the arm's IK for the rotated tip; it raises
    :class:`UnreachableStateError` when the rotated tip is out of reach (or, with ``allow_unreachable=True``,
    returns the closest state and sets ``last_transform_residual``). Inside the 0.25 m workspace every tip is
    reachable hand-down. Measured break (``symgym bench equivariance``, results/equivariance.json: task space,
    4 start states after reset, 60 contact-rich steps, D4 and 12 random O(2) elements): after one step the rotated
    tip is at most 1.6 cm from where the rotation puts it and its observed velocity differs by up to 0.39
    ``max_speed`` (the arm's acceleration from rest depends on its posture); over 60 steps the tip stays within
    3.3 cm and the largest observation difference is 0.93 (pushing contacts amplify it). Tracking over the
    workspace: ``symgym bench panda-ik`` (results/panda-ik.json).

    ## Version History

    * v0 (current): the arm collides with the table, the puck and itself; the controller is solved once per action and
      held by joint velocity servos (before: re-solved at each substep); observations read the current
      kinematics (before: the tip lagged one substep); the workspace shrank from 0.33 m to 0.25 m, where the
      arm tracks a 0.4 m/s command (p95 error <= 0.15). Since then, unversioned (same dynamics): the controller is
      written once over a batch of arms (the vector env steps N at once) and the reset's IK placement converges by
      Gauss-Newton to the same posture (within 1.1e-10 rad; servo targets within 6e-13, float32 observations of
      8 x 50-step episodes identical, float64 states within 1.2e-12).
    """

    frame_skip = 10
    planar_pairs = (("puck_x", "puck_y"),)
    yaw_hinges = ("puck_yaw",)
    mocap_bodies = ("goal",)
    has_puck = True
    #: 3-D view for ``symgym.learn.run.video`` and the gallery: from beyond the table's far rim, looking back at
    #: the arm, so the arm, the puck and the goal are all in view (from the base's side the hand hides them)
    video_camera = {"lookat": (-0.12, 0.0, 0.2), "distance": 1.75, "azimuth": 160.0, "elevation": -38.0}

    def __init__(self, render_mode: str | None = None, max_speed: float = 0.4, success_radius: float = 0.05,
                 workspace_radius: float = 0.25, base_x: float = -0.55):
        for name, value in (("max_speed", max_speed), ("success_radius", success_radius),
                            ("workspace_radius", workspace_radius)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(base_x) and -0.9 <= base_x <= -0.4):
            raise ValueError(f"base_x must be in [-0.9, -0.4] m (the base beside the table), got {base_x!r}")
        self.base_x = float(base_x)
        self._init_kwargs = {"render_mode": render_mode, "max_speed": max_speed, "success_radius": success_radius,
                             "workspace_radius": workspace_radius, "base_x": base_x}
        self.xml_file = f"pybullet_data franka_panda/panda.urdf + scene (base_x={self.base_x})"
        super().__init__(render_mode=render_mode)
        self.max_speed, self.success_radius = float(max_speed), float(success_radius)
        self.workspace_radius = float(workspace_radius)
        self.control_period = round(self.model.opt.timestep * self.frame_skip * 1e9) * 1e-9
        self.controller = CartesianVelocityController(self.model, self.control_period)
        self._scratch = mujoco.MjData(self.model)
        self._prev_tip = np.zeros(2)
        self.last_transform_residual = 0.0
        m = self.model
        self.joint_names = ARM_JOINTS + FINGER_JOINTS
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in self.joint_names]
        self._joint_qpos = np.array([m.jnt_qposadr[j] for j in jids])
        self._joint_dof = np.array([m.jnt_dofadr[j] for j in jids])
        self._link_bodies = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"panda_link{i}") for i in range(8)]
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(self.obs_size,), dtype=np.float32)
        group = O2()
        self.symmetry = Symmetry(group=group, obs=(self.obs_size // 2) * standard(group), action=standard(group),
                                 exact=False, breaking={"arm_base_xy": [self.base_x, 0.0],
                                                        "arm": "reach and joint limits of a Franka Panda"})

    obs_size = 14

    # -- pickling: MuJoCo models and the symmetry's representations do not pickle; rebuild from the kwargs --------
    def __getstate__(self) -> dict:
        return {"kwargs": self._init_kwargs, "state": self.get_state(), "np_random": self._np_random}

    def __setstate__(self, saved: dict) -> None:
        self.__init__(**saved["kwargs"])
        self.set_state(saved["state"])
        self._np_random = saved["np_random"]

    def _build_model(self) -> mujoco.MjModel:
        return panda_scene(self.base_x, puck=self.has_puck).compile()

    # -- scene accessors (world xy, origin = workspace centre) ------------------------------------
    @property
    def tip_pos(self) -> np.ndarray:
        return self.controller.tip(self.data)[:2].copy()

    pusher_pos = tip_pos

    @property
    def tip_velocity(self) -> np.ndarray:
        return (self.controller.tip(self.data)[:2] - self._prev_tip) / self.control_period

    @property
    def puck_pos(self) -> np.ndarray:
        return self.data.qpos[self._pair_qpos[0]].copy()

    @property
    def goal_pos(self) -> np.ndarray:
        return self.data.mocap_pos[self._mocap[0], :2].copy()

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities of ``joint_names`` (7 arm joints + 2 fingers), as ``/joint_states`` has them."""
        return self.data.qpos[self._joint_qpos].copy(), self.data.qvel[self._joint_dof].copy()

    def hand_quaternion(self) -> np.ndarray:
        """The tip frame's orientation (w, x, y, z) in the world frame."""
        return self.data.xquat[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "pusher")].copy()

    # -- state (the MuJoCo state + the previous tip position the velocity estimate uses) -----------
    def get_state(self) -> np.ndarray:
        return np.concatenate([super().get_state(), self._prev_tip])

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.ndim != 1 or state.shape[0] < 2:
            raise ValueError(f"state must be a 1-D vector from get_state(), got shape {state.shape}")
        super().set_state(state[:-2])
        self._prev_tip = state[-2:].copy()

    def transform_state(self, g: O2Element, state: np.ndarray, allow_unreachable: bool = False) -> np.ndarray:
        """Rotate/reflect the scene about the centre and move the arm (by IK, at the rotated tip velocity) so its
        tip follows. ``last_transform_residual`` is the tip's distance (m) from its rotated position (0 when
        reachable); above ``REACH_TOLERANCE`` this raises :class:`UnreachableStateError`, unless
        ``allow_unreachable`` asks for the closest state the arm can take (what a break measurement wants)."""
        state = np.asarray(state, dtype=np.float64)
        if state.ndim != 1:
            raise ValueError(f"PandaPush transform_state takes one state vector, got shape {state.shape}")
        R = g.matrix()
        moved = super().transform_state(g, state[:-2])
        d, m, ctrl = self._scratch, self.model, self.controller
        mujoco.mj_setState(m, d, state[:-2], STATE_SPEC)
        mujoco.mj_forward(m, d)
        tip, tip_velocity = ctrl.tip(d)[:2].copy(), self._site_velocity(d)
        mujoco.mj_setState(m, d, moved, STATE_SPEC)
        self.last_transform_residual = ctrl.solve_ik(d, R @ tip)
        if self.last_transform_residual > REACH_TOLERANCE and not allow_unreachable:
            raise UnreachableStateError(
                f"{type(self).__name__}: the transformed tip {np.round(R @ tip, 4).tolist()} is out of the arm's "
                f"reach (IK residual {self.last_transform_residual * 1e3:.1f} mm); pass allow_unreachable=True for "
                f"the closest state")
        mujoco.mj_forward(m, d)
        task = np.concatenate([R @ tip_velocity[:2], [tip_velocity[2]], np.zeros(3)])
        d.qvel[ctrl.dof_idx] = np.linalg.lstsq(ctrl._task_jacobian(d), task, rcond=None)[0]
        d.qacc_warmstart[ctrl.dof_idx] = 0.0
        out = np.empty_like(moved)
        mujoco.mj_getState(m, d, out, STATE_SPEC)
        return np.concatenate([out, R @ state[-2:]])

    def _site_velocity(self, d: mujoco.MjData) -> np.ndarray:
        vel = np.empty(6)
        mujoco.mj_objectVelocity(self.model, d, mujoco.mjtObj.mjOBJ_SITE, self.controller.site, vel, 0)
        return vel[3:]

    # -- gym API ----------------------------------------------------------------------------------
    def _place_tip(self, rng: np.random.Generator, radius: float, avoid: np.ndarray | None, clearance: float,
                   ) -> Generator[np.ndarray, float, np.ndarray]:
        """Draw tip positions as SymPush draws its pusher; redraw those the arm cannot reach. A step of a reset plan
        (see :meth:`reset`): yields each tip target and is sent the IK residual of placing the arm there."""
        for _ in range(1000):
            tip = _uniform_disc(rng, radius)
            while ((avoid is not None and np.linalg.norm(tip - avoid) < clearance)
                   or np.linalg.norm(tip) > self.workspace_radius):
                tip = _uniform_disc(rng, radius)
            if (yield tip) < REACH_TOLERANCE:
                return tip
        raise RuntimeError(f"{type(self).__name__}: no reachable tip position found (base_x={self.base_x})")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self.reset_many([self], [seed], [options])[0]

    @staticmethod
    def reset_many(envs: Sequence["PandaPushEnv"], seeds: Sequence[int | None],
                   options: Sequence[dict | None]) -> list[tuple[np.ndarray, dict]]:
        """Reset Panda envs (of one model) together: each runs its own :meth:`reset_plan` (its own RNG, draws in its
        own order), and the IK placements the plans ask for in the same round are solved as one batch
        (``solve_ik_batch``, rows independent: each env ends where its own ``reset`` puts it, bit for bit)."""
        plans = [env.reset_plan(seed, opts) for env, seed, opts in zip(envs, seeds, options)]
        targets = {i: next(plan) for i, plan in enumerate(plans)}
        out: list = [None] * len(envs)
        while targets:
            ids = list(targets)
            errors = envs[0].controller.solve_ik_batch([envs[i].data for i in ids], np.array([targets[i] for i in ids]))
            targets = {}
            for i, err in zip(ids, errors):
                try:
                    targets[i] = plans[i].send(float(err))
                except StopIteration as done:
                    out[i] = done.value
        return out

    def reset_plan(self, seed: int | None = None, options: dict | None = None,
                   ) -> Generator[np.ndarray, float, tuple[np.ndarray, dict]]:
        """The reset as a plan: a generator that yields the tip targets at which the arm must be placed by IK (into
        ``self.data``), is sent each placement's residual, and returns ``(obs, info)``. :meth:`reset` runs one plan;
        the vector env runs N together and solves their placements in one batch (:meth:`reset_many`)."""
        gym.Env.reset(self, seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        rng = self.np_random
        puck = _uniform_disc(rng, 0.15)
        goal = _uniform_disc(rng, 0.22)
        while not 0.08 <= np.linalg.norm(goal - puck) <= 0.2:
            goal = _uniform_disc(rng, 0.22)
        yield from self._place_tip(rng, 0.28, puck, PUCK_RADIUS + PUSHER_RADIUS + 0.02)
        self.data.qpos[self._pair_qpos[0]] = puck
        self.data.qpos[self._yaw_qpos] = rng.uniform(-np.pi, np.pi)
        self.data.mocap_pos[self._mocap[0], :2] = goal
        return self._finish_reset()

    def _finish_reset(self) -> tuple[np.ndarray, dict]:
        mujoco.mj_forward(self.model, self.data)
        self._prev_tip = self.tip_pos
        return self._obs(), self._info()

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise ValueError(f"{type(self).__name__} action must have shape (2,), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{type(self).__name__} action must be finite, got {a.tolist()}")
        return self.step_velocity(self.max_speed * clip_to_disc(a))

    def step_velocity(self, velocity: np.ndarray):
        """One control period at a planar tip velocity in m/s (what ``step`` does after scaling the action; the
        Panda twin of ``symgym sim-robot`` calls it with the velocity a client commanded)."""
        self._prev_tip = self.tip_pos
        m, d = self.model, self.data
        d.ctrl[:] = self._velocity_ctrl(d, velocity)
        mujoco.mj_step(m, d, nstep=self.frame_skip)
        # after mj_step, positions describe the state before the last substep: observe the current one
        self.controller.forward_kinematics(d)
        reward, success, info = self._reward_info()
        return self._obs(), reward, success, False, info

    def _velocity_ctrl(self, d: mujoco.MjData, velocity: np.ndarray) -> np.ndarray:
        """The joint velocity servo targets that realise a planar tip velocity (m/s) from the state in ``d``
        (current kinematics): inside the workspace, the tip's end-of-period target is projected onto the
        workspace disc; at or beyond its edge, the outward part of the velocity is removed (both commute with
        rotations about the centre)."""
        tip = self.controller.tip(d)[:2]
        R, T = self.workspace_radius, self.control_period
        if math.hypot(tip[0], tip[1]) >= R:
            velocity = remove_outward(velocity, tip, R)
        else:
            end = tip + T * np.asarray(velocity, dtype=np.float64)
            r = math.hypot(end[0], end[1])
            if r > R:
                velocity = (end * (R / r) - tip) / T
        return self.controller.joint_velocities(d, velocity)

    def control(self, action: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """The ``ctrl`` vector (nu,) that ``step(action)`` holds through all ``frame_skip`` substeps from ``state``
        (a ``get_state()`` vector; default the current state). For batched rollouts: with
        ``x = self.physics_state(state[:-2])`` and ``w = state[self.state_layout["WARMSTART"]]``,
        ``mujoco.rollout.rollout(model, data, x, np.tile(ctrl, (frame_skip, 1)), initial_warmstart=w)`` reproduces
        ``step`` bit for bit: its last state is the physics part of the next ``get_state()``, whose trailing two
        entries (the previous tip, for the velocity estimate) are the tip before the step. The controller reads
        the state, so a planner calls this once per control step and state, between rollouts of ``frame_skip``."""
        a = np.asarray(action, dtype=np.float64)
        if state is None:
            return self._velocity_ctrl(self.data, self.max_speed * clip_to_disc(a)).copy()
        d = self._scratch
        mujoco.mj_setState(self.model, d, np.asarray(state, dtype=np.float64)[:-2], STATE_SPEC)
        self.controller.forward_kinematics(d)
        return self._velocity_ctrl(d, self.max_speed * clip_to_disc(a))

    # -- batched twins of step(), for the vector env (envs/vector.py): the same arithmetic row by row ------------
    def vector_velocity(self, actions: np.ndarray, tips: np.ndarray) -> np.ndarray:
        """The planar tip velocities (N, 2; m/s) that ``step`` commands for ``actions`` (N, 2) from tips at ``tips``
        (N, 2): the disc projection, ``max_speed`` and the workspace rule of :meth:`_velocity_ctrl`, batched with
        the same operations (``math.hypot`` row by row, as the scalar code), so equal to it bit for bit."""
        a = np.asarray(actions, dtype=np.float64)
        n = _hypot_rows(a)
        v = self.max_speed * (a * np.divide(1.0, n, out=np.ones_like(n), where=n > 1.0)[:, None])
        R, T = self.workspace_radius, self.control_period
        r = _hypot_rows(tips)
        end = tips + T * v
        r_end = _hypot_rows(end)
        clip = (r < R) & (r_end > R)
        if clip.any():
            v[clip] = (end[clip] * (R / r_end[clip])[:, None] - tips[clip]) / T
        for i in np.flatnonzero(r >= R):   # at the edge (rare): the scalar rule
            v[i] = remove_outward(v[i], tips[i], R)
        return v

    def vector_outcome(self, tips: np.ndarray, prev_tips: np.ndarray, qpos: np.ndarray, qvel: np.ndarray,
                       mocap_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """``(obs, reward, terminated, info)`` of N arms after a step, from their tips (N, 3; current kinematics),
        the tips before it (N, 2) and their ``qpos``/``qvel``/``mocap_pos`` rows: :meth:`step`'s outcome, batched."""
        tip, puck, goal = tips[:, :2], qpos[:, self._pair_qpos[0]], mocap_pos[:, self._mocap[0], :2]
        d_goal = _hypot_rows(goal - puck)
        d_push = _hypot_rows(puck - tip)
        success = d_goal < self.success_radius
        reward = -(d_goal + 0.5 * d_push) * 10.0 + 10.0 * success
        obs = push_observation(tip, (tip - prev_tips) / self.control_period, puck, qvel[:, self._pair_dof[0]], goal,
                               self.max_speed)
        return obs, reward, success, {"is_success": success, "goal_distance": d_goal,
                                      "tip_height_error": tips[:, 2] - TIP_HEIGHT}

    def _reward_info(self) -> tuple[float, bool, dict]:
        tip, puck, goal = self.controller.tip(self.data)[:2], self.data.qpos[self._pair_qpos[0]], self.goal_pos
        d_goal = math.hypot(goal[0] - puck[0], goal[1] - puck[1])
        d_push = math.hypot(puck[0] - tip[0], puck[1] - tip[1])
        success = d_goal < self.success_radius
        info = {"is_success": success, "goal_distance": d_goal, "tip_height_error": self._height_error()}
        return -(d_goal + 0.5 * d_push) * 10.0 + 10.0 * success, success, info

    def _height_error(self) -> float:
        return float(self.controller.tip(self.data)[2] - TIP_HEIGHT)

    def _info(self) -> dict:
        return self._reward_info()[2]

    def _obs(self) -> np.ndarray:
        v = self.data.qvel
        puck_v = v[self._pair_dof[0]]
        return push_observation(self.tip_pos, self.tip_velocity, self.puck_pos, puck_v, self.goal_pos, self.max_speed)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        half = max(TABLE_RADIUS, -self.base_x) + 0.05
        c = TopDownCanvas(256, half)
        links = [self.data.xpos[b, :2] for b in self._link_bodies] + [self.tip_pos]
        arm = [c.disc(p, 0.012) for a, b in zip(links[:-1], links[1:]) for p in np.linspace(a, b, 8)]
        layers = [(c.disc((0, 0), TABLE_RADIUS), (0.82, 0.78, 0.72)), (c.disc(links[0], 0.06), (0.5, 0.5, 0.55)),
                  (c.ring(self.goal_pos, PUCK_RADIUS, 0.006), (0.2, 0.7, 0.3))]
        if self.has_puck:
            layers.append((c.disc(self.puck_pos, PUCK_RADIUS), (0.85, 0.25, 0.2)))
        layers += [(np.max(arm, axis=0), (0.35, 0.35, 0.4)), (c.disc(self.tip_pos, PUSHER_RADIUS), (0.2, 0.4, 0.9))]
        return composite(layers, background=(1, 1, 1), size=256)


class PandaReachEnv(PandaPushEnv):
    """Bring the Panda's tip onto a goal on the table (no puck); the same arm, controller and action convention.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: PandaPush-v0's (desired tip velocity in units of ``max_speed``, projected onto
    the unit disc; 0.1 s per action; the tip kept inside the workspace disc).

    | index | meaning | unit |
    |---|---|---|
    | 0 | desired tip velocity, x | ``max_speed`` (m/s) |
    | 1 | desired tip velocity, y | ``max_speed`` (m/s) |

    ## Observation Space

    ``Box(-10, 10, (8,), float32)``, four 2-D vectors (``4 x standard`` of O(2)), world frame, origin at the table
    centre, read from the current kinematics.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | tip position | table radii (0.35 m) |
    | 2-3 | tip velocity (displacement over the last 0.1 s) | ``max_speed`` |
    | 4-5 | goal position | table radii |
    | 6-7 | goal - tip | table radii |

    ## Rewards

    ``-10 |goal - tip| + 10 * success`` per step (distance in metres); ``info`` adds ``tip_height_error`` (m).

    ## Starting State

    Goal uniform in a disc of 0.25 m; the tip uniform in the same disc, at least 5 cm from the goal, the arm placed
    there at rest by IK with the hand down (the whole disc is in the arm's reach).

    ## Episode End

    Terminates on success (the tip within ``success_radius`` of the goal); truncated after 50 actions.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` (a 256x256 top-down drawing) |
    | ``max_speed`` | 0.4 | tip speed (m/s) that an action of norm 1 commands |
    | ``success_radius`` | 0.02 | goal tolerance (m) |
    | ``workspace_radius`` | 0.25 | the tip stays within this disc (m) |
    | ``base_x`` | -0.55 | the arm base's x (m), in [-0.9, -0.4] |
    | ``**kwargs`` | | the remaining PandaPush-v0 arguments (``workspace_radius``, ``base_x``) |

    ## Symmetry

    O(2) about the table centre, declared ``exact=False``, broken by the arm as in PandaPush-v0 (same
    ``transform_state`` contract, :class:`UnreachableStateError` included). Measured by ``symgym bench
    equivariance`` (results/equivariance.json, 60 steps, 4 starts): after one step the rotated tip is within
    1.8 cm of its rotated position, its observed velocity within 0.45 ``max_speed``; over 60 steps within 3.8 cm
    (largest observation difference 0.45).

    ## Version History

    * v0 (current): as PandaPush-v0 (colliding arm, one controller solve per action, current kinematics, the
      0.25 m workspace).
    """

    planar_pairs = ()
    yaw_hinges = ()
    has_puck = False
    obs_size = 8

    def __init__(self, render_mode: str | None = None, max_speed: float = 0.4, success_radius: float = 0.02,
                 **kwargs):
        super().__init__(render_mode=render_mode, max_speed=max_speed, success_radius=success_radius, **kwargs)

    def reset_plan(self, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        rng = self.np_random
        goal = _uniform_disc(rng, 0.25)
        yield from self._place_tip(rng, 0.25, goal, 0.05)
        self.data.mocap_pos[self._mocap[0], :2] = goal
        return self._finish_reset()

    def vector_outcome(self, tips: np.ndarray, prev_tips: np.ndarray, qpos: np.ndarray, qvel: np.ndarray,
                       mocap_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        tip, goal = tips[:, :2], mocap_pos[:, self._mocap[0], :2]
        d_goal = _hypot_rows(goal - tip)
        success = d_goal < self.success_radius
        p = 1.0 / TABLE_RADIUS
        obs = np.concatenate([tip * p, (tip - prev_tips) / self.control_period / self.max_speed, goal * p,
                              (goal - tip) * p], axis=1).astype(np.float32)
        return obs, -10.0 * d_goal + 10.0 * success, success, {
            "is_success": success, "goal_distance": d_goal, "tip_height_error": tips[:, 2] - TIP_HEIGHT}

    def _reward_info(self) -> tuple[float, bool, dict]:
        tip, goal = self.controller.tip(self.data)[:2], self.goal_pos
        d_goal = math.hypot(goal[0] - tip[0], goal[1] - tip[1])
        success = d_goal < self.success_radius
        info = {"is_success": success, "goal_distance": d_goal, "tip_height_error": self._height_error()}
        return -10.0 * d_goal + 10.0 * success, success, info

    def _obs(self) -> np.ndarray:
        p = 1.0 / TABLE_RADIUS
        tip, goal = self.tip_pos, self.goal_pos
        return np.concatenate([tip * p, self.tip_velocity / self.max_speed, goal * p, (goal - tip) * p]
                              ).astype(np.float32)

    @property
    def puck_pos(self) -> np.ndarray:
        raise AttributeError("PandaReach-v0 has no puck")
