"""Closed-loop manipulation with a suction end-effector: ``HepPickPlace-v0`` and ``HepPushToTarget-v0``.

Unlike the tabletop suite (one pick/place primitive per step) the agent here commands the end-effector every
control step (20 Hz): ``action = [dx, dy, dz, suction]`` in ``[-1, 1]``. ``dx, dy`` is projected onto the unit
disc and scaled by ``max_step`` (metres per step), ``dz`` is clipped to ``[-1, 1]`` and scaled likewise; the
velocity actuators track ``delta / dt``. ``suction > 0`` holds the suction cup on: it grabs the cylinder when the
cup touches its top (centred within ``CAPTURE_XY``) and lets go as soon as it is switched off.

Tasks (both multi-stage, both solved by a closed-loop scripted oracle, :func:`oracle`):
    * ``HepPickPlace-v0``: reach above the cylinder, descend, grasp, lift, carry, descend onto the target, release.
      Success: released, resting, centre within ``SUCCESS_RADIUS`` of the target.
    * ``HepPushToTarget-v0``: suction disabled; go behind the puck (over it, at hover height), descend, push it
      onto the target. Success: puck centre within ``SUCCESS_RADIUS`` of the target.

Observation (a dict):
    * ``"vector"`` (16 floats): end-effector position (3) and velocity (3), attached flag (1), object position
      (3, bottom centre) and velocity (3), target position (3).
    * ``"points"`` (96, 4) with ``obs_mode="points"`` (default): ``x, y, z, label`` with label 0 = end-effector, 1 = object, 2 = target marker. The
      points are a fixed set of surface samples per geom (seeded at construction) placed by the simulator's
      geom poses, not a rendered depth image. Because bodies do not yaw, rotating the scene rotates the
      *surfaces* but not the sample pattern on them; ``symmetry.transform_obs`` rotates the sampled points.
      With ``obs_mode="depth_cloud"``: a rendered, unlabelled (256, 6) cloud instead
      (:mod:`symgym.envs.closed_loop_perception`).

Symmetry: SE(2) = rotations about the vertical axis through the world origin + planar translations. The
dynamics are exactly equivariant (infinite floor, isotropic damping, elliptic cones, disc-clipped actions, a
suction rule that only looks at distances); ``transform_state`` accepts ``SE2Element`` or rotation-only
``O2Element`` and the tests check ``step(g.s, g.a) == g.step(s, a)`` by simulation.

``workspace="demo"`` (default) samples the layout the demonstrations see: object left of the origin, target
right, end-effector in front. ``workspace="transformed"`` applies a random rotation (any angle) and a random
planar translation (up to ``max_shift``) to that layout: scenes never seen in the demonstrations.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

from symgym.envs.closed_loop_perception import CLOUD_COLUMNS, DepthCloud, transform_cloud_obs
from symgym.envs.mujoco_base import PlanarMujocoEnv
from symgym.envs.render2d import TopDownCanvas, composite
from symgym.equivariance.groups import SE2Element, SE2Group, as_se2
from symgym.equivariance.symmetry import Symmetry

EE_RADIUS, OBJ_RADIUS, OBJ_HEIGHT, TARGET_RADIUS = 0.015, 0.025, 0.04, 0.03
GRASP_OFFSET = 0.055          # ee centre above object bottom when attached (weld relpose in the XML)
CAPTURE_XY, CAPTURE_Z = 0.02, 0.008
HOVER_Z = 0.10
SUCCESS_RADIUS = 0.03
N_EE_POINTS, N_OBJ_POINTS, N_TARGET_POINTS = 24, 48, 24
VECTOR_DIM = 16
#: slices of the vector observation
EE_POS, EE_VEL, ATTACHED, OBJ_POS, OBJ_VEL, TARGET_POS = (slice(0, 3), slice(3, 6), slice(6, 7), slice(7, 10),
                                                          slice(10, 13), slice(13, 16))
_POSITIONS = (EE_POS, OBJ_POS, TARGET_POS)
_VELOCITIES = (EE_VEL, OBJ_VEL)


def transform_vector_obs(g, vec: np.ndarray) -> np.ndarray:
    """Positions rotate and translate in x, y; velocities rotate; heights and the attached flag are invariant."""
    g = as_se2(g)
    v = np.array(vec, dtype=np.float64, copy=True)
    if v.shape[-1] != VECTOR_DIM:
        raise ValueError(f"vector observation must have {VECTOR_DIM} entries, got shape {v.shape}")
    R, t = g.rotation.matrix(), np.array([g.tx, g.ty])
    for sl in _POSITIONS:
        v[..., sl.start:sl.start + 2] = v[..., sl.start:sl.start + 2] @ R.T + t
    for sl in _VELOCITIES:
        v[..., sl.start:sl.start + 2] = v[..., sl.start:sl.start + 2] @ R.T
    return v.astype(np.asarray(vec).dtype)


def keypose_label(vector: np.ndarray) -> np.ndarray:
    """The 3-D keypose ``(x, y, z, yaw)`` of a vector observation (privileged: a training label from demos).

    Where the current stage's interaction happens: the object's top before it is held, the top of the object
    as placed on the target while it is held; yaw is the heading from object to target (the carrying or
    pushing direction; the cylinder itself has no yaw). Rotating the scene adds the rotation to the yaw.
    """
    v = np.asarray(vector, dtype=np.float64)
    obj, tgt, held = v[..., OBJ_POS], v[..., TARGET_POS], v[..., ATTACHED] > 0.5
    site = np.where(held, tgt, obj)
    d = tgt[..., :2] - obj[..., :2]
    yaw = np.arctan2(d[..., 1], d[..., 0])
    return np.concatenate([site[..., :2], site[..., 2:3] + OBJ_HEIGHT, yaw[..., None]], -1)


def transform_point_obs(g, points: np.ndarray) -> np.ndarray:
    """Rotate and translate the x, y columns of an (N, 4) cloud; z and labels are invariant."""
    g = as_se2(g)
    p = np.array(points, dtype=np.float64, copy=True)
    p[..., :2] = g.apply(p[..., :2])
    return p.astype(np.asarray(points).dtype)


def transform_action(g, action: np.ndarray) -> np.ndarray:
    """Actions are displacements: dx, dy rotate (translations do not move them); dz and suction are invariant."""
    g = as_se2(g)
    a = np.array(action, dtype=np.float64, copy=True)
    a[..., :2] = a[..., :2] @ g.rotation.matrix().T
    return a.astype(np.asarray(action).dtype)


def closed_loop_symmetry(obs_mode: str = "points") -> Symmetry:
    points = transform_cloud_obs if obs_mode == "depth_cloud" else transform_point_obs
    return Symmetry(group=SE2Group(translation_scale=0.05),
                    obs={"vector": transform_vector_obs, "points": points},
                    action=transform_action, exact=True)


def _surface_samples(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local surface points: sphere (end-effector), cylinder top and side (object), flat disc (target)."""
    d = rng.normal(size=(N_EE_POINTS, 3))
    ee = EE_RADIUS * d / np.linalg.norm(d, axis=1, keepdims=True)
    n_top = N_OBJ_POINTS // 3
    r, th = OBJ_RADIUS * np.sqrt(rng.uniform(size=n_top)), rng.uniform(0, 2 * np.pi, n_top)
    top = np.stack([r * np.cos(th), r * np.sin(th), np.full(n_top, OBJ_HEIGHT / 2)], 1)
    th = rng.uniform(0, 2 * np.pi, N_OBJ_POINTS - n_top)
    side = np.stack([OBJ_RADIUS * np.cos(th), OBJ_RADIUS * np.sin(th),
                     rng.uniform(-OBJ_HEIGHT / 2, OBJ_HEIGHT / 2, th.size)], 1)
    r, th = TARGET_RADIUS * np.sqrt(rng.uniform(size=N_TARGET_POINTS)), rng.uniform(0, 2 * np.pi, N_TARGET_POINTS)
    target = np.stack([r * np.cos(th), r * np.sin(th), np.zeros(N_TARGET_POINTS)], 1)
    return ee, np.concatenate([top, side]), target


def _clip_action(action: np.ndarray) -> np.ndarray:
    """Disc-clip dx, dy (commutes with rotations), clip dz and suction to [-1, 1]."""
    a = np.asarray(action, dtype=np.float64).copy()
    n = math.hypot(a[0], a[1])
    if n > 1.0:
        a[:2] /= n
    a[2:] = np.clip(a[2:], -1.0, 1.0)
    return a


class ClosedLoopEnv(PlanarMujocoEnv):
    """Base class of the closed-loop tasks; subclasses set ``suction``, ``_success``, ``keypose`` and the oracle."""

    xml_file = "closed_loop.xml"
    frame_skip = 10
    planar_pairs = (("ee_x", "ee_y"), ("obj_x", "obj_y"))
    mocap_bodies = ("target",)
    suction = True
    #: 3-D video camera (symgym.learn.run.video): the whole workspace, transformed layouts included
    video_camera = {"lookat": (0.0, 0.0, 0.03), "distance": 0.75, "azimuth": 90.0, "elevation": -50.0}

    def __init__(self, render_mode: str | None = None, max_step: float = 0.02, workspace: str = "demo",
                 max_shift: float = 0.1, obs_mode: str = "points", cloud_kwargs: dict | None = None):
        if workspace not in ("demo", "transformed"):
            raise ValueError(f"workspace must be 'demo' or 'transformed', got {workspace!r}")
        if obs_mode not in ("points", "depth_cloud"):
            raise ValueError(f"obs_mode must be 'points' or 'depth_cloud', got {obs_mode!r}")
        if not max_step > 0:
            raise ValueError(f"max_step must be positive, got {max_step}")
        super().__init__(render_mode=render_mode)
        self.max_step, self.workspace, self.max_shift = float(max_step), workspace, float(max_shift)
        self.dt = self.model.opt.timestep * self.frame_skip
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.obs_mode = obs_mode
        # depth_cloud: rendered, unlabelled (n, 6) clouds in the "points" slot (demo files keep their format)
        self._camera = DepthCloud(self.model, **(cloud_kwargs or {})) if obs_mode == "depth_cloud" else None
        shape = ((self._camera.n_points, CLOUD_COLUMNS) if self._camera is not None
                 else (N_EE_POINTS + N_OBJ_POINTS + N_TARGET_POINTS, 4))
        self.observation_space = spaces.Dict({
            "vector": spaces.Box(-np.inf, np.inf, shape=(VECTOR_DIM,), dtype=np.float32),
            "points": spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32),
        })
        self.symmetry = closed_loop_symmetry(obs_mode)
        m = self.model
        self._qadr = {n: int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)])
                      for n in ("ee_x", "obj_x")}
        self._geoms = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ("ee", "obj", "target")]
        self._local_points = _surface_samples(np.random.default_rng(12345))
        self._labels = np.concatenate([np.full(len(p), float(k)) for k, p in enumerate(self._local_points)])

    # -- state ---------------------------------------------------------------------------
    def transform_state(self, g, state: np.ndarray) -> np.ndarray:
        """Rotate (base class) and then translate planar positions and mocap bodies by ``g`` in SE(2)."""
        g = as_se2(g)
        s = super().transform_state(g.rotation, state)
        t = np.array([g.tx, g.ty])
        qpos = s[..., self._layout["QPOS"]]
        qpos[..., self._pair_qpos] += t
        s[..., self._layout["QPOS"]] = qpos
        mpos = s[..., self._layout["MOCAP_POS"]].reshape(*s.shape[:-1], -1, 3)
        mpos[..., self._mocap, :2] += t
        s[..., self._layout["MOCAP_POS"]] = mpos.reshape(*s.shape[:-1], -1)
        return s

    @property
    def ee_pos(self) -> np.ndarray:
        i = self._qadr["ee_x"]
        return self.data.qpos[i:i + 3].copy()

    @property
    def obj_pos(self) -> np.ndarray:
        i = self._qadr["obj_x"]
        return self.data.qpos[i:i + 3].copy()

    @property
    def target_pos(self) -> np.ndarray:
        return self.data.mocap_pos[self._mocap[0]].copy()

    @property
    def attached(self) -> bool:
        return bool(self.data.eq_active[0])

    # -- task hooks ------------------------------------------------------------------------
    def _layout_demo(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ee xy, object xy, target xy) in the demonstration workspace."""
        obj = np.array([-0.08, 0.0]) + rng.uniform(-0.04, 0.04, 2)
        target = np.array([0.08, 0.0]) + rng.uniform(-0.04, 0.04, 2)
        ee = np.array([0.0, -0.08]) + rng.uniform(-0.03, 0.03, 2)
        return ee, obj, target

    def _success(self) -> bool:
        raise NotImplementedError

    def keypose(self) -> np.ndarray:
        """Where the current stage's interaction happens (x, y): the high-level label for imitation."""
        raise NotImplementedError

    # -- gym API ----------------------------------------------------------------------------
    def reset_model(self) -> None:
        rng = self.np_random
        ee, obj, target = self._layout_demo(rng)
        if self.workspace == "transformed":
            r = self.max_shift * math.sqrt(rng.uniform())
            phi = rng.uniform(0, 2 * np.pi)
            g = SE2Element(rng.uniform(0, 2 * np.pi), r * math.cos(phi), r * math.sin(phi))
            ee, obj, target = g.apply(ee), g.apply(obj), g.apply(target)
        q = self.data.qpos
        q[self._qadr["ee_x"]:self._qadr["ee_x"] + 3] = [ee[0], ee[1], HOVER_Z]
        q[self._qadr["obj_x"]:self._qadr["obj_x"] + 3] = [obj[0], obj[1], 0.0]
        self.data.mocap_pos[self._mocap[0]] = [target[0], target[1], 0.0]
        self.data.eq_active[0] = 0

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (4,) or not np.all(np.isfinite(a)):
            raise ValueError(f"closed-loop action must be 4 finite floats [dx, dy, dz, suction], got {action!r}")
        a = _clip_action(a)
        self._update_suction(a[3] > 0)
        self._simulate(a[:3] * self.max_step / self.dt)
        success = self._success()
        reward = float(success) - 0.01
        return self._obs(), reward, success, False, self._info(success)

    def _update_suction(self, on: bool) -> None:
        """Grab when the cup is on for an object whose top touches it (a rotation-invariant rule)."""
        if not self.suction or not on:
            self.data.eq_active[0] = 0
            return
        if self.attached:
            return
        ee, obj = self.ee_pos, self.obj_pos
        if (math.hypot(*(ee[:2] - obj[:2])) < CAPTURE_XY
                and abs(ee[2] - EE_RADIUS - (obj[2] + OBJ_HEIGHT)) < CAPTURE_Z):
            self.data.eq_active[0] = 1

    def _info(self, success: bool | None = None) -> dict[str, Any]:
        d = float(np.linalg.norm(self.obj_pos[:2] - self.target_pos[:2]))
        return {"is_success": self._success() if success is None else success, "target_distance": d}

    def vector_obs(self) -> np.ndarray:
        i, j = self._qadr["ee_x"], self._qadr["obj_x"]
        v = self.data.qvel
        return np.concatenate([self.ee_pos, v[i:i + 3], [float(self.attached)], self.obj_pos, v[j:j + 3],
                               self.target_pos]).astype(np.float32)

    def point_cloud(self) -> np.ndarray:
        parts = [local @ self.data.geom_xmat[gid].reshape(3, 3).T + self.data.geom_xpos[gid]
                 for gid, local in zip(self._geoms, self._local_points)]
        return np.concatenate([np.concatenate(parts), self._labels[:, None]], 1).astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        if self._camera is not None:
            # subsampling draws from the env's generator: a seeded reset reproduces the clouds
            return {"vector": self.vector_obs(), "points": self._camera(self.data, self.np_random)}
        return {"vector": self.vector_obs(), "points": self.point_cloud()}

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None
        super().close()

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        c = TopDownCanvas(256, 0.35)
        return composite([
            (c.ring(self.target_pos[:2], TARGET_RADIUS, 0.006), (0.2, 0.7, 0.3)),
            (c.disc(self.obj_pos[:2], OBJ_RADIUS), (0.85, 0.25, 0.2)),
            (c.disc(self.ee_pos[:2], EE_RADIUS), (0.2, 0.4, 0.9) if not self.attached else (0.1, 0.1, 0.5)),
        ], background=(0.82, 0.78, 0.72), size=256)

    # -- scripted demonstrator ------------------------------------------------------------
    def oracle_action(self) -> np.ndarray:
        """The scripted expert's next action from privileged state (used by :func:`oracle`)."""
        raise NotImplementedError

    def _move_toward(self, goal: np.ndarray, speed: float = 1.0) -> np.ndarray:
        return move_toward(self.ee_pos, goal, self.max_step, speed)


def move_toward(ee: np.ndarray, goal: np.ndarray, max_step: float, speed: float = 1.0) -> np.ndarray:
    """The scripted oracles' displacement command (units of ``max_step``) from ``ee`` toward ``goal`` (x, y, z): the
    planar part at most ``speed`` in norm (a disc, like the action), the height clipped to ``speed``."""
    d = (np.asarray(goal, float) - ee) / max_step
    out = np.zeros(3)
    n = math.hypot(d[0], d[1])
    out[:2] = d[:2] * min(1.0, speed / n) if n > 1e-12 else 0.0
    out[2] = np.clip(d[2], -speed, speed)
    return out


class PickPlaceEnv(ClosedLoopEnv):
    """Reach the cylinder, grasp it with suction, carry it onto the target and release it there.

    ## Action Space

    ``Box(-1, 1, (4,), float32)``, one command per control step (20 Hz): ``dx, dy`` projected onto the unit disc,
    ``dz`` and ``suction`` clipped to [-1, 1]; velocity actuators track ``delta / dt``.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | end-effector displacement x, y | ``max_step`` (m per step) |
    | 2 | end-effector displacement z | ``max_step`` (m per step) |
    | 3 | suction on/off | > 0 on |

    ## Observation Space

    ``Dict`` with a 16-float ``"vector"`` and a (96, 4) ``"points"`` cloud (24 end-effector, 48 object, 24
    target surface samples placed by the simulator's geom poses; columns x, y, z in m and a label 0 = end
    effector, 1 = object, 2 = target). With ``obs_mode="depth_cloud"`` (``*Depth-v0`` ids) ``"points"`` is instead
    a rendered, unlabelled (256, 6) cloud: depth from three cameras, unprojected, cropped to the workspace above the
    floor, open3d voxels and normals (columns x, y, z, nx, ny, nz).

    | index of ``"vector"`` | meaning | unit |
    |---|---|---|
    | 0-2 | end-effector position | m |
    | 3-5 | end-effector velocity | m/s |
    | 6 | attached flag (suction holding the object) | 0 or 1 |
    | 7-9 | object position (bottom centre) | m |
    | 10-12 | object velocity | m/s |
    | 13-15 | target position | m |

    ## Rewards

    ``1 * success - 0.01`` per step: a small time penalty and 1 on the step that succeeds.

    ## Starting State

    ``workspace="demo"``: object near (-0.08, 0), target near (0.08, 0) (each +-0.04 m uniform), end effector
    near (0, -0.08) (+-0.03 m) at hover height 0.10 m, nothing attached. ``workspace="transformed"`` applies a
    uniform rotation and a planar shift of up to ``max_shift`` to that layout.

    ## Episode End

    Terminates on success (released, resting on the floor, centre within 3 cm of the target); truncated after 80 steps by the registration.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` |
    | ``max_step`` | 0.02 | end-effector displacement (m) an action of 1 commands per step |
    | ``workspace`` | ``"demo"`` | ``"demo"`` or ``"transformed"`` (layouts the demonstrations never show) |
    | ``max_shift`` | 0.1 | largest planar shift (m) of a ``"transformed"`` layout |
    | ``obs_mode`` | ``"points"`` | ``"points"`` (labelled samples) or ``"depth_cloud"`` (rendered cloud) |
    | ``cloud_kwargs`` | ``None`` | options of ``symgym.envs.closed_loop_perception.DepthCloud`` |

    ## Symmetry

    Group: SE(2) (rotations about the vertical axis through the origin and planar translations). Representations:
    vector positions rotate and shift in x, y, velocities rotate, heights and the attached flag are invariant;
    points rotate and shift; ``dx, dy`` rotate, ``dz`` and suction are invariant. Exact; measured by
    ``symgym bench equivariance``: max |step(g.s, g.a) - g.step(s, a)| = 1.4e-14 over 60 steps
    (results/equivariance.json).

    ## Version History

    * v0: initial release; ``obs_mode="depth_cloud"`` added later (the default observation is unchanged).
    """

    suction = True

    def _success(self) -> bool:
        return (not self.attached and self.obj_pos[2] < 0.01
                and float(np.linalg.norm(self.obj_pos[:2] - self.target_pos[:2])) < SUCCESS_RADIUS)

    def keypose(self) -> np.ndarray:
        return (self.target_pos if self.attached else self.obj_pos)[:2].copy()

    def oracle_action(self) -> np.ndarray:
        ee, obj, target = self.ee_pos, self.obj_pos, self.target_pos
        if not self.attached:
            goal_xy, final_z, grip_when_down = obj[:2], obj[2] + OBJ_HEIGHT + EE_RADIUS - 0.004, 1.0
        else:
            goal_xy, final_z, grip_when_down = target[:2], GRASP_OFFSET + 0.004, -1.0
        hold = 1.0 if self.attached else -1.0
        low = ee[2] < HOVER_Z - 0.03
        dxy = math.hypot(*(ee[:2] - goal_xy))
        if (not low and dxy > 0.006) or (low and dxy > 0.015):
            # Travel at hover height, so the cup never sweeps into the object's side: first up, then across.
            goal = np.r_[ee[:2], HOVER_Z] if low else np.r_[goal_xy, HOVER_Z]
            return np.r_[self._move_toward(goal), hold]
        down = ee[2] < final_z + 0.004 + 0.004 * (not self.attached)
        return np.r_[self._move_toward(np.r_[goal_xy, final_z]), grip_when_down if down else hold]


class PushToTargetEnv(ClosedLoopEnv):
    """Go behind the puck (passing over it), descend and push it onto the target; suction is disabled.

    ## Action Space

    ``Box(-1, 1, (4,), float32)``, one command per control step (20 Hz): ``dx, dy`` projected onto the unit disc,
    ``dz`` and ``suction`` clipped to [-1, 1]; velocity actuators track ``delta / dt``.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | end-effector displacement x, y | ``max_step`` (m per step) |
    | 2 | end-effector displacement z | ``max_step`` (m per step) |
    | 3 | suction (ignored: disabled in this task) | > 0 on |

    ## Observation Space

    ``Dict`` with a 16-float ``"vector"`` and a (96, 4) ``"points"`` cloud (24 end-effector, 48 object, 24
    target surface samples placed by the simulator's geom poses; columns x, y, z in m and a label 0 = end
    effector, 1 = object, 2 = target). With ``obs_mode="depth_cloud"`` (``*Depth-v0`` ids) ``"points"`` is instead
    a rendered, unlabelled (256, 6) cloud: depth from three cameras, unprojected, cropped to the workspace above the
    floor, open3d voxels and normals (columns x, y, z, nx, ny, nz).

    | index of ``"vector"`` | meaning | unit |
    |---|---|---|
    | 0-2 | end-effector position | m |
    | 3-5 | end-effector velocity | m/s |
    | 6 | attached flag (suction holding the object) | 0 or 1 |
    | 7-9 | object position (bottom centre) | m |
    | 10-12 | object velocity | m/s |
    | 13-15 | target position | m |

    ## Rewards

    ``1 * success - 0.01`` per step: a small time penalty and 1 on the step that succeeds.

    ## Starting State

    ``workspace="demo"``: object near (-0.08, 0), target near (0.08, 0) (each +-0.04 m uniform), end effector
    near (0, -0.08) (+-0.03 m) at hover height 0.10 m, nothing attached. ``workspace="transformed"`` applies a
    uniform rotation and a planar shift of up to ``max_shift`` to that layout.

    ## Episode End

    Terminates on success (the puck's centre within 3 cm of the target); truncated after 80 steps by the registration.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` |
    | ``max_step`` | 0.02 | end-effector displacement (m) an action of 1 commands per step |
    | ``workspace`` | ``"demo"`` | ``"demo"`` or ``"transformed"`` (layouts the demonstrations never show) |
    | ``max_shift`` | 0.1 | largest planar shift (m) of a ``"transformed"`` layout |
    | ``obs_mode`` | ``"points"`` | ``"points"`` (labelled samples) or ``"depth_cloud"`` (rendered cloud) |
    | ``cloud_kwargs`` | ``None`` | options of ``symgym.envs.closed_loop_perception.DepthCloud`` |

    ## Symmetry

    Group: SE(2) (rotations about the vertical axis through the origin and planar translations). Representations:
    vector positions rotate and shift in x, y, velocities rotate, heights and the attached flag are invariant;
    points rotate and shift; ``dx, dy`` rotate, ``dz`` and suction are invariant. Exact; measured by
    ``symgym bench equivariance``: max |step(g.s, g.a) - g.step(s, a)| = 1.4e-14 over 60 steps
    (results/equivariance.json).

    ## Version History

    * v0: initial release; ``obs_mode="depth_cloud"`` added later (the default observation is unchanged).
    """

    suction = False
    push_z = 0.02
    behind = OBJ_RADIUS + EE_RADIUS + 0.008

    def _success(self) -> bool:
        return float(np.linalg.norm(self.obj_pos[:2] - self.target_pos[:2])) < SUCCESS_RADIUS

    def keypose(self) -> np.ndarray:
        return self.obj_pos[:2].copy()

    def oracle_action(self) -> np.ndarray:
        ee, puck, target = self.ee_pos, self.obj_pos, self.target_pos
        to_target = target[:2] - puck[:2]
        u = to_target / (np.linalg.norm(to_target) + 1e-9)
        rel = ee[:2] - puck[:2]
        along, lateral = float(rel @ u), float(rel[0] * u[1] - rel[1] * u[0])
        pre = puck[:2] - self.behind * u
        in_place = (abs(lateral) < 0.012 and -(self.behind + 0.02) < along < -(OBJ_RADIUS + EE_RADIUS - 0.01)
                    and ee[2] < self.push_z + 0.012)
        if in_place:
            # Aim a little into the puck along the line to the target: steady contact, lateral error corrected.
            goal = np.r_[puck[:2] - (OBJ_RADIUS + EE_RADIUS - 0.012) * u, self.push_z]
            return np.r_[self._move_toward(goal, speed=0.5), -1.0]
        d_pre = math.hypot(*(ee[:2] - pre))
        if d_pre <= 0.008 or (ee[2] < HOVER_Z - 0.03 and d_pre < 0.02):
            return np.r_[self._move_toward(np.r_[pre, self.push_z]), -1.0]
        # Far from the pre-push point: up first, then across at hover height (passing over the puck).
        goal = np.r_[ee[:2], HOVER_Z] if ee[2] < HOVER_Z - 0.03 else np.r_[pre, HOVER_Z]
        return np.r_[self._move_toward(goal), -1.0]


def oracle(env) -> np.ndarray:
    """The scripted demonstrator's action for ``env`` (a closed-loop env, wrapped or not)."""
    return env.unwrapped.oracle_action()
