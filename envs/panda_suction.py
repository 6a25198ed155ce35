"""The Panda suction cell of the HEP Panda tasks: its MuJoCo scene and the env base class the tasks share.

The tasks themselves (their rewards, oracles and docstrings) are in :mod:`symgym.envs.closed_loop_panda`.

``HepPandaPickPlace-v0``, ``HepPandaPushToTarget-v0`` and the longer-horizon ``HepPandaTwoStagePlace-v0`` (place
cylinder A on a target, then stack cylinder B on A). The action is the floating-sphere envs' (``envs/closed_loop``):
``[dx, dy, dz, suction]`` end-effector displacements per 20 Hz control step, here executed by the Panda's
Cartesian controller (:class:`~symgym.envs.panda_model.CartesianVelocityController`, imported, not changed): the
planar part is its commanded tip velocity, the height its end-of-period tip height target (deadbeat gain), the hand
held pointing down; MuJoCo's joint velocity servos hold the solved joint velocities through the substeps.

The "tip" is the centre of the suction cup's face, 0.16 m below the hand on a rod. Suction is one weld equality per
cylinder (cup -> cylinder, a fixed relative pose: the cylinder centred under the cup, its top at the face; no
torque part, the cylinders slide on x/y/z joints and cannot turn). A weld switches on only while suction is
commanded *and* the cup's face touches the cylinder's top (a MuJoCo contact between the two geoms with a vertical
normal, recomputed at the current state, the cup's centre within ``CAPTURE_XY`` of the cylinder's axis); it
switches off as soon as suction is off. Objects move by physics (contacts with the floor, the cup, the rod, the
arm's links and each other).

Observations keep HepPickPlace(Depth)-v0's keys and layout, so agents/hep3d.py reads them unchanged; the depth
cloud is :class:`~symgym.envs.closed_loop_perception.DepthCloud` rendering this scene with the robot filtered out
(``self_filter=True``, the default): the arm's links, rod, cup and tip site are hidden from the depth cameras, as a
real cell drops the robot's own points using its kinematics, so the cloud holds the cylinders (a held one included)
and the targets. Left in (``self_filter=False``), the robot made about 75% of the cloud's points, the cup low beside
a cylinder looked like a cylinder's top to hep3d's keypose network (its keypose then followed the cup), and the arm
entered the keypose frame from directions the demos never showed once the layout was rotated (HepPandaPushToTarget-v0,
10 demos, seed 0: hep3d's training keypose error 2.3 cm with the robot in the cloud, 0.4 cm without). The cloud's
random subsample is drawn from a generator seeded by the state (positions, targets), so an observation is a
function of ``get_state()`` and a restored state replays exactly.
"""
from __future__ import annotations

import math
import zlib
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

from symgym.envs.closed_loop import (OBJ_HEIGHT, OBJ_RADIUS, SUCCESS_RADIUS, TARGET_RADIUS, VECTOR_DIM,
                                     move_toward, transform_action, transform_vector_obs)
from symgym.envs.closed_loop_perception import (CLOUD_COLUMNS, DepthCloud, ensure_headless_gl,
                                                transform_cloud_obs)
from symgym.envs.mujoco_base import STATE_SPEC, PlanarMujocoEnv
from symgym.envs.panda_model import (ARM_BIT, ARM_JOINTS, FINGER_JOINTS, SELF_CONTACT_EXCLUDED, SERVO_GAINS,
                                     TORQUE_LIMITS, CartesianVelocityController, panda_spec)
from symgym.equivariance.groups import SE2Element, SE2Group, as_se2
from symgym.equivariance.symmetry import Symmetry

#: hand origin to the cup's face (m), the cup (a short cylinder) and the rod that carries it
CUP_LENGTH, CUP_RADIUS, CUP_HALF, ROD_RADIUS = 0.16, 0.014, 0.006, 0.006
#: suction captures a cylinder whose axis is within this distance (m) of the cup's centre
CAPTURE_XY = 0.015
#: a held cylinder's top sits this far (m) below the face (a hair, so weld and contact do not fight)
HOLD_GAP = 0.0005
HOVER_Z = 0.10                 # travel height of the cup's face (m)
PUSH_Z = 0.012                 # the face's height while pushing: the cup meets the puck's side
FLOOR_BIT, OBJ_BIT = 1, 2      # contact bits beside panda_model's ARM_BIT
#: the group the robot's geoms and sites move to while the depth cameras render (MuJoCo draws groups 0-2 by default)
HIDDEN_GROUP = 3
#: a start posture counts as reached when IK puts the cup within this distance (m)
REACH_TOLERANCE = 1e-3
#: the slices of the vector observation (as envs/closed_loop)
EE_POS, EE_VEL, ATTACHED, OBJ_POS, OBJ_VEL, TARGET_POS = (slice(0, 3), slice(3, 6), slice(6, 7), slice(7, 10),
                                                          slice(10, 13), slice(13, 16))


def panda_suction_scene(base_x: float, n_objects: int, n_targets: int) -> "mujoco.MjSpec":
    """The Panda (pybullet_data URDF via :func:`panda_spec`) at ``(base_x, 0)`` on a floor, a suction cup on a rod
    below its hand, ``n_objects`` cylinders on x/y/z slide joints, ``n_targets`` target markers, one suction weld
    per cylinder and the arm's joint velocity servos (panda_model's gains and torque limits).

    Contacts: the arm's links, rod and cup (``ARM_BIT``) touch the floor and the cylinders; the links touch each
    other except panda_model's excluded pairs; cylinders touch the floor and each other; targets touch nothing.
    """
    spec = panda_spec()
    spec.modelname = "panda_suction"
    spec.compiler.discardvisual = False
    opt = spec.option
    # 5 ms substeps (PandaPush uses 10 ms): a stack of two cylinders held by contacts settles without jitter
    opt.timestep, opt.cone, opt.impratio = 0.005, mujoco.mjtCone.mjCONE_ELLIPTIC, 1.0
    opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.body("panda_link0").pos = [base_x, 0.0, 0.0]
    for body in spec.bodies:
        if body.name.startswith("panda_"):
            body.gravcomp = 1.0
    for geom in spec.geoms:
        geom.contype, geom.conaffinity, geom.group, geom.rgba = ARM_BIT, ARM_BIT, 0, [0.92, 0.92, 0.95, 1.0]
    for a, b in SELF_CONTACT_EXCLUDED:
        if "pusher" not in (a, b):
            spec.add_exclude(bodyname1=a, bodyname2=b)
    world = spec.worldbody
    world.add_light(name="top", pos=[0, 0, 2.0], dir=[0, 0, -1], diffuse=[0.8, 0.8, 0.8])
    contact = {"friction": [0.5, 0.005, 0.0001], "solref": [0.01, 1]}
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05], contype=FLOOR_BIT,
                   conaffinity=OBJ_BIT | ARM_BIT, rgba=[0.82, 0.78, 0.72, 1], **contact)
    # the cup's frame is the hand's (z pointing down): the face is its origin, the cup and rod lie above it (-z)
    cup = spec.body("panda_hand").add_body(name="cup", pos=[0.0, 0.0, CUP_LENGTH], gravcomp=1.0)
    rod_half = (CUP_LENGTH - 2 * CUP_HALF) / 2
    cup.add_geom(name="rod", type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[ROD_RADIUS, rod_half, 0],
                 pos=[0, 0, -2 * CUP_HALF - rod_half], contype=ARM_BIT, conaffinity=0, mass=0.02,
                 rgba=[0.3, 0.3, 0.3, 1])
    cup.add_geom(name="cup", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[CUP_RADIUS, CUP_HALF, 0],
                 pos=[0, 0, -CUP_HALF], contype=ARM_BIT, conaffinity=0, mass=0.03, rgba=[0.2, 0.4, 0.9, 1],
                 **contact)
    cup.add_site(name="pusher_tip", size=[0.004, 0, 0])   # the name CartesianVelocityController drives
    spec.add_exclude(bodyname1="panda_link6", bodyname2="cup")
    colours = ([0.9, 0.25, 0.2, 1], [0.95, 0.7, 0.15, 1], [0.6, 0.3, 0.8, 1])
    for k in range(n_objects):
        body = world.add_body(name=f"obj{k}")
        for axis, vec in zip("xyz", np.eye(3)):
            body.add_joint(name=f"obj{k}_{axis}", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=vec, damping=[0.05, 0, 0])
        body.add_geom(name=f"obj{k}", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[OBJ_RADIUS, OBJ_HEIGHT / 2, 0],
                      pos=[0, 0, OBJ_HEIGHT / 2], mass=0.1, contype=OBJ_BIT,
                      conaffinity=FLOOR_BIT | OBJ_BIT | ARM_BIT,
                      rgba=colours[k % len(colours)], **contact)
        weld = spec.add_equality(name=f"suction{k}", type=mujoco.mjtEq.mjEQ_WELD, objtype=mujoco.mjtObj.mjOBJ_BODY,
                                 name1="cup", name2=f"obj{k}", active=False)
        data = np.zeros(len(weld.data))
        # relative pose of the cylinder (bottom centre, z up) in the cup's frame (z down): OBJ_HEIGHT below the
        # face, turned half a turn about x; torquescale 0: a position-only weld (the cylinder cannot turn)
        data[3:6] = [0.0, 0.0, OBJ_HEIGHT + HOLD_GAP]
        data[6:10] = [0.0, 1.0, 0.0, 0.0]
        data[10] = 0.0
        weld.data = data
    for k in range(n_targets):
        t = world.add_body(name=f"target{k}", mocap=True)
        t.add_geom(name=f"target{k}", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[TARGET_RADIUS, 0.004, 0],
                   contype=0, conaffinity=0, rgba=[0.2, 0.8, 0.3, 0.5] if k == 0 else [0.2, 0.5, 0.9, 0.5])
    for name, torque, kv in zip(ARM_JOINTS, TORQUE_LIMITS, SERVO_GAINS):
        joint = spec.joint(name)
        joint.armature, joint.damping = 0.1, [1.0, 0.0, 0.0]
        act = spec.add_actuator(name=f"{name}_velocity", target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_velocity(kv=kv)
        act.forcelimited, act.forcerange = True, [-torque, torque]
    for name in FINGER_JOINTS:
        spec.joint(name).damping = [10.0, 0.0, 0.0]
    return spec


def _clip_action(action: np.ndarray) -> np.ndarray:
    """Disc-clip dx, dy (commutes with rotations), clip dz and suction to [-1, 1]."""
    a = np.asarray(action, dtype=np.float64).copy()
    n = math.hypot(a[0], a[1])
    if n > 1.0:
        a[:2] /= n
    a[2:] = np.clip(a[2:], -1.0, 1.0)
    return a


def _state_seed(*arrays: np.ndarray) -> int:
    """A 32-bit seed from the bytes of state arrays: the same state, the same cloud subsample."""
    return zlib.crc32(b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in arrays))


class PandaClosedLoopEnv(PlanarMujocoEnv):
    """Base class of the Panda tasks; subclasses set the scene size, layout, success, active object and oracle."""

    frame_skip = 10               # 10 x 5 ms: 20 Hz control, as the floating-sphere envs
    n_objects, n_targets = 1, 1
    suction = True
    #: 3-D camera (render() and symgym.learn.run.video): from the far side of the workspace, looking at the arm
    video_camera = {"lookat": (-0.1, 0.0, 0.12), "distance": 1.3, "azimuth": 150.0, "elevation": -35.0}

    def __init__(self, render_mode: str | None = None, max_step: float = 0.02, workspace: str = "demo",
                 max_shift: float = 0.06, obs_mode: str = "depth_cloud", cloud_kwargs: dict | None = None,
                 base_x: float = -0.55, workspace_radius: float = 0.24, success_bonus: float = 1.0,
                 time_penalty: float = 0.01, self_filter: bool = True):
        if workspace not in ("demo", "transformed"):
            raise ValueError(f"workspace must be 'demo' or 'transformed', got {workspace!r}")
        if obs_mode not in ("depth_cloud", "vector"):
            raise ValueError(f"obs_mode must be 'depth_cloud' or 'vector', got {obs_mode!r}")
        for name, value in (("max_step", max_step), ("workspace_radius", workspace_radius)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(max_shift) and 0 <= max_shift <= 0.1):
            raise ValueError(f"max_shift must be in [0, 0.1] m (layouts stay in the arm's reach), got {max_shift!r}")
        if not (math.isfinite(base_x) and -0.6 <= base_x <= -0.5):
            raise ValueError(f"base_x must be in [-0.6, -0.5] m (the 0.24 m workspace in reach), got {base_x!r}")
        for name, value in (("success_bonus", success_bonus), ("time_penalty", time_penalty)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if not isinstance(self_filter, (bool, np.bool_)):
            raise ValueError(f"self_filter must be True or False, got {self_filter!r}")
        self.self_filter = bool(self_filter)
        self.base_x = float(base_x)
        self.xml_file = f"pybullet_data franka_panda/panda.urdf + suction scene (base_x={self.base_x})"
        super().__init__(render_mode=render_mode)
        self.max_step, self.workspace, self.max_shift = float(max_step), workspace, float(max_shift)
        self.workspace_radius = float(workspace_radius)
        self.success_bonus, self.time_penalty = float(success_bonus), float(time_penalty)
        self.dt = self.model.opt.timestep * self.frame_skip
        # height_gain 1: the z row of the task is "be at tip_height at the end of the period", which step() sets
        self.controller = CartesianVelocityController(self.model, self.dt, tip_height=HOVER_Z, height_gain=1.0)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.obs_mode = obs_mode
        self._camera = DepthCloud(self.model, **(cloud_kwargs or {})) if obs_mode == "depth_cloud" else None
        obs = {"vector": spaces.Box(-np.inf, np.inf, shape=(VECTOR_DIM,), dtype=np.float32)}
        if self._camera is not None:
            obs["points"] = spaces.Box(-np.inf, np.inf, shape=(self._camera.n_points, CLOUD_COLUMNS), dtype=np.float32)
        self.observation_space = spaces.Dict(obs)
        self.symmetry = Symmetry(group=SE2Group(translation_scale=0.05),
                                 obs={"vector": transform_vector_obs, "points": transform_cloud_obs},
                                 action=transform_action, exact=False,
                                 breaking={"arm_base_xy": [self.base_x, 0.0],
                                           "arm": "reach, joint limits and posture-dependent tracking of a Franka "
                                                  "Panda whose base stands on one side of the workspace",
                                           "workspace_radius": self.workspace_radius})
        m = self.model
        name = mujoco.mjtObj
        self._obj_qpos = [int(m.jnt_qposadr[mujoco.mj_name2id(m, name.mjOBJ_JOINT, f"obj{k}_x")])
                          for k in range(self.n_objects)]
        self._obj_dof = [int(m.jnt_dofadr[mujoco.mj_name2id(m, name.mjOBJ_JOINT, f"obj{k}_x")])
                         for k in range(self.n_objects)]
        self._obj_geom = [mujoco.mj_name2id(m, name.mjOBJ_GEOM, f"obj{k}") for k in range(self.n_objects)]
        self._weld = [mujoco.mj_name2id(m, name.mjOBJ_EQUALITY, f"suction{k}") for k in range(self.n_objects)]
        self._cup_geom = mujoco.mj_name2id(m, name.mjOBJ_GEOM, "cup")
        # the robot's geoms (links, rod, cup): hidden from the depth cameras when self_filter is on
        robot = {b for b in range(m.nbody)
                 if (mujoco.mj_id2name(m, name.mjOBJ_BODY, b) or "").startswith("panda_") or b == m.body("cup").id}
        self._robot_geoms = np.array([g for g in range(m.ngeom) if int(m.geom_bodyid[g]) in robot], int)
        # and its sites (the controller's tip marker, drawn as a small sphere at the cup's face)
        self._robot_sites = np.array([k for k in range(m.nsite) if int(m.site_bodyid[k]) in robot], int)
        self._site_vel = np.zeros(6)
        self._video = None

    planar_pairs = (("obj0_x", "obj0_y"),)
    mocap_bodies = ("target0",)
    #: rebuilt by __init__ when unpickling (they hold MuJoCo models, data and GL renderers)
    _REBUILT = PlanarMujocoEnv._REBUILT | {"controller", "_camera", "_video"}

    def _build_model(self) -> mujoco.MjModel:
        return panda_suction_scene(self.base_x, self.n_objects, self.n_targets).compile()

    # -- scene accessors ------------------------------------------------------------------------
    @property
    def ee_pos(self) -> np.ndarray:
        """The centre of the cup's face (the controller's tip), world frame."""
        return self.controller.tip(self.data).copy()

    @property
    def ee_vel(self) -> np.ndarray:
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self.controller.site,
                                 self._site_vel, 0)
        return self._site_vel[3:].copy()

    def object_pos(self, k: int) -> np.ndarray:
        """Bottom centre of cylinder ``k``."""
        return self.data.qpos[self._obj_qpos[k]:self._obj_qpos[k] + 3].copy()

    def object_vel(self, k: int) -> np.ndarray:
        return self.data.qvel[self._obj_dof[k]:self._obj_dof[k] + 3].copy()

    def target_marker(self, k: int) -> np.ndarray:
        return self.data.mocap_pos[self._mocap[k]].copy()

    def held(self, k: int) -> bool:
        return bool(self.data.eq_active[self._weld[k]])

    @property
    def attached(self) -> bool:
        return any(self.held(k) for k in range(self.n_objects))

    # the stage's object and target (one-stage tasks: cylinder 0 and target 0)
    def active_object(self) -> int:
        return 0

    @property
    def obj_pos(self) -> np.ndarray:
        return self.object_pos(self.active_object())

    @property
    def target_pos(self) -> np.ndarray:
        """Where the active object goes: a target marker (z = 0) or, when stacking, the top of the one below."""
        return self.target_marker(0)

    def keypose(self) -> np.ndarray:
        """Where the current stage's interaction happens (x, y): the high-level label demos record."""
        return (self.target_pos if self.attached else self.obj_pos)[:2].copy()

    # -- layout ---------------------------------------------------------------------------------
    def _layout_demo(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Planar positions (``"ee"``, ``"obj0"``, ..., ``"target0"``, ...) in the demonstration workspace."""
        return {"ee": np.array([0.0, -0.08]) + rng.uniform(-0.03, 0.03, 2),
                "obj0": np.array([-0.08, 0.0]) + rng.uniform(-0.04, 0.04, 2),
                "target0": np.array([0.08, 0.0]) + rng.uniform(-0.04, 0.04, 2)}

    def _draw_layout(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        layout = self._layout_demo(rng)
        if self.workspace == "demo":
            return layout
        # a rotation about the workspace centre (any angle) and a shift; redrawn (rarely) until every object and
        # target keeps the margin a push or a place approach needs inside the arm's workspace disc
        limit = self.workspace_radius - 0.05
        for _ in range(100):
            r = self.max_shift * math.sqrt(rng.uniform())
            phi = rng.uniform(0, 2 * np.pi)
            g = SE2Element(rng.uniform(0, 2 * np.pi), r * math.cos(phi), r * math.sin(phi))
            moved = {k: g.apply(v) for k, v in layout.items()}
            if all(np.linalg.norm(v) <= limit for v in moved.values()):
                return moved
        raise RuntimeError(f"{type(self).__name__}: no layout inside the workspace (max_shift={self.max_shift})")

    def reset_model(self) -> None:
        rng = self.np_random
        layout = self._draw_layout(rng)
        for k in range(self.n_objects):
            self.data.qpos[self._obj_qpos[k]:self._obj_qpos[k] + 3] = [*layout[f"obj{k}"], 0.0]
        for k in range(self.n_targets):
            self.data.mocap_pos[self._mocap[k]] = [*layout[f"target{k}"], 0.0]
        self.data.eq_active[:] = 0
        self.controller.tip_height = HOVER_Z
        err = self.controller.solve_ik(self.data, layout["ee"])
        if err > REACH_TOLERANCE:
            raise RuntimeError(f"{type(self).__name__}: start {np.round(layout['ee'], 3).tolist()} out of reach "
                               f"(IK residual {err * 1e3:.1f} mm)")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self.controller.forward_kinematics(self.data)
        return obs, info

    # -- stepping -------------------------------------------------------------------------------
    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (4,) or not np.all(np.isfinite(a)):
            raise ValueError(f"Panda closed-loop action must be 4 finite floats [dx, dy, dz, suction], got {action!r}")
        a = _clip_action(a)
        before = self._progress()
        self._update_suction(a[3] > 0)
        self.data.ctrl[:] = self._joint_targets(a[:3] * self.max_step)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        # after mj_step the kinematics describe the state before the last substep: observe the current one
        self.controller.forward_kinematics(self.data)
        success = self._success()
        reward = self.success_bonus * float(success) - self.time_penalty + self._shaping(before, self._progress())
        return self._obs(), reward, success, False, self._info(success)

    def _joint_targets(self, delta: np.ndarray) -> np.ndarray:
        """Joint velocity servo targets that move the cup by ``delta`` (m) in one control period: the planar part
        as the controller's tip velocity, with the end point kept inside the workspace disc (a rotation-equivariant
        projection), the height as its end-of-period target, kept in [PUSH_Z - 0.01, 0.2] m."""
        tip = self.controller.tip(self.data)
        end = tip[:2] + delta[:2]
        r = math.hypot(end[0], end[1])
        if r > self.workspace_radius:
            end = end * (self.workspace_radius / r)
        self.controller.tip_height = float(np.clip(tip[2] + delta[2], PUSH_Z - 0.01, 0.2))
        return self.controller.joint_velocities(self.data, (end - tip[:2]) / self.dt)

    def _update_suction(self, on: bool) -> None:
        """Switch every weld off when suction is off; switch one on where the cup's face touches a
        cylinder's top."""
        if not self.suction or not on:
            self.data.eq_active[self._weld] = 0
            return
        if self.attached:
            return
        k = self.touching_top()
        if k is not None:
            self.data.eq_active[self._weld[k]] = 1

    def touching_top(self) -> int | None:
        """The cylinder whose top the cup's face touches now (contacts recomputed at the current state), or None."""
        m, d = self.model, self.data
        mujoco.mj_collision(m, d)
        tip = self.controller.tip(d)
        for c in d.contact[:d.ncon]:
            pair = {int(c.geom1), int(c.geom2)}
            if self._cup_geom not in pair:
                continue
            for k, g in enumerate(self._obj_geom):
                top = self.object_pos(k)[2] + OBJ_HEIGHT
                if (g in pair and abs(c.frame[2]) > 0.9 and abs(c.pos[2] - top) < 0.005
                        and math.hypot(*(tip[:2] - self.object_pos(k)[:2])) < CAPTURE_XY):
                    return k
        return None

    # -- task hooks -----------------------------------------------------------------------------
    def _success(self) -> bool:
        raise NotImplementedError

    def _progress(self) -> float:
        """Sub-goals reached (a function of the state); rewards pay its change (``_shaping``)."""
        return 0.0

    def _shaping(self, before: float, after: float) -> float:
        return 0.0

    def _resting_on(self, k: int, xy: np.ndarray, z: float) -> bool:
        """Cylinder ``k`` released and resting at height ``z`` within SUCCESS_RADIUS of ``xy``."""
        p = self.object_pos(k)
        return (not self.held(k) and abs(p[2] - z) < 0.01
                and math.hypot(p[0] - xy[0], p[1] - xy[1]) < SUCCESS_RADIUS)

    def _info(self, success: bool | None = None) -> dict[str, Any]:
        d = float(np.linalg.norm(self.obj_pos[:2] - self.target_pos[:2]))
        return {"is_success": self._success() if success is None else success, "target_distance": d,
                "tip_height_target": float(self.controller.tip_height)}

    # -- observations -----------------------------------------------------------------------------
    def vector_obs(self) -> np.ndarray:
        k = self.active_object()
        return np.concatenate([self.ee_pos, self.ee_vel, [float(self.attached)], self.object_pos(k),
                               self.object_vel(k), self.target_pos]).astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        out = {"vector": self.vector_obs()}
        if self._camera is not None:
            d = self.data
            rng = np.random.default_rng(_state_seed(d.qpos, d.mocap_pos))
            if not self.self_filter:
                out["points"] = self._camera(d, rng)
                return out
            # robot self-filtering: the robot's geoms leave the groups the cameras draw for this render only
            # (render() and videos still show the arm)
            m = self.model
            groups = m.geom_group[self._robot_geoms].copy(), m.site_group[self._robot_sites].copy()
            m.geom_group[self._robot_geoms] = HIDDEN_GROUP
            m.site_group[self._robot_sites] = HIDDEN_GROUP
            try:
                out["points"] = self._camera(d, rng)
            finally:
                m.geom_group[self._robot_geoms], m.site_group[self._robot_sites] = groups
        return out

    def close(self) -> None:
        for r in (self._camera, self._video):
            if r is not None:
                r.close()
        self._camera = self._video = None
        super().close()

    def render(self):
        """A 256x256 RGB frame from ``video_camera`` (MuJoCo's renderer, headless GL)."""
        if self.render_mode != "rgb_array":
            return None
        if self._video is None:
            ensure_headless_gl()
            self._video = mujoco.Renderer(self.model, 256, 256)
        cam = mujoco.MjvCamera()
        cam.lookat[:] = self.video_camera["lookat"]
        cam.distance, cam.azimuth = self.video_camera["distance"], self.video_camera["azimuth"]
        cam.elevation = self.video_camera["elevation"]
        self._video.update_scene(self.data, camera=cam)
        return self._video.render().copy()

    # -- symmetry: a state moved by g, the arm re-placed by IK -------------------------------------
    def transform_state(self, g, state: np.ndarray) -> np.ndarray:
        """Move cylinders, targets and the cup by ``g`` in SE(2); the arm is re-solved by IK (at rest, hand down)
        for the moved cup position at the same height. Raises ValueError when the moved cup is out of reach."""
        g = as_se2(g)
        state = np.asarray(state, dtype=np.float64)
        s = super().transform_state(g.rotation, state)
        t = np.array([g.tx, g.ty])
        qpos = s[self._layout["QPOS"]]
        qpos[self._pair_qpos] += t
        s[self._layout["QPOS"]] = qpos
        mpos = s[self._layout["MOCAP_POS"]].reshape(-1, 3)
        mpos[self._mocap, :2] += t
        s[self._layout["MOCAP_POS"]] = mpos.ravel()
        d, m = mujoco.MjData(self.model), self.model
        mujoco.mj_setState(m, d, state, STATE_SPEC)
        mujoco.mj_forward(m, d)
        tip = self.controller.tip(d).copy()
        mujoco.mj_setState(m, d, s, STATE_SPEC)
        height = self.controller.tip_height
        try:
            self.controller.tip_height = tip[2]
            err = self.controller.solve_ik(d, g.apply(tip[:2]))
        finally:
            self.controller.tip_height = height
        if err > REACH_TOLERANCE:
            raise ValueError(f"the transformed cup {np.round(g.apply(tip[:2]), 3).tolist()} is out of the arm's "
                             f"reach (IK residual {err * 1e3:.1f} mm)")
        d.qacc_warmstart[:] = 0.0
        out = np.empty_like(s)
        mujoco.mj_getState(m, d, out, STATE_SPEC)
        return out

    # -- scripted demonstrator --------------------------------------------------------------------
    def oracle_action(self) -> np.ndarray:
        """The scripted expert's next action from privileged state (used by :func:`oracle` and demos)."""
        raise NotImplementedError

    def _move_toward(self, goal: np.ndarray, speed: float = 1.0) -> np.ndarray:
        return move_toward(self.ee_pos, goal, self.max_step, speed)

    def _pick_place_action(self, obj: np.ndarray, place_xy: np.ndarray, place_z: float) -> np.ndarray:
        """Travel at hover height, descend onto the cylinder, grasp, lift, carry, descend, release at height
        ``place_z`` (the surface the cylinder is set down on)."""
        ee = self.ee_pos
        if not self.attached:
            goal_xy, final_z = obj[:2], obj[2] + OBJ_HEIGHT - 0.003
        else:
            goal_xy, final_z = place_xy, place_z + OBJ_HEIGHT + HOLD_GAP + 0.003
        hold = 1.0 if self.attached else -1.0
        low = ee[2] < HOVER_Z - 0.03
        dxy = math.hypot(*(ee[:2] - goal_xy))
        if (not low and dxy > 0.006) or (low and dxy > 0.012):
            goal = np.r_[ee[:2], HOVER_Z] if low else np.r_[goal_xy, HOVER_Z]
            return np.r_[self._move_toward(goal), hold]
        speed = 1.0 if ee[2] > final_z + 0.03 else 0.4   # slow the last few centimetres: the arm lags
        if not self.attached:
            # suction on once near the top: it captures at contact only
            return np.r_[self._move_toward(np.r_[goal_xy, final_z], speed), 1.0 if ee[2] < final_z + 0.01 else -1.0]
        down = ee[2] < final_z + 0.004
        return np.r_[self._move_toward(np.r_[goal_xy, final_z], speed), -1.0 if down else 1.0]
