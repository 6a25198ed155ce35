"""The Franka Panda in MuJoCo, offline: the model from pybullet_data, and its Cartesian velocity controller.

``panda_spec()`` reads ``pybullet_data/franka_panda/panda.urdf`` (shipped with the pybullet wheel), rewrites its
``package://`` mesh paths to that directory and compiles it with ``mujoco.MjSpec``: 9 DoF (7 arm joints and
two finger slides), the URDF's joint limits. Nothing is downloaded or copied. ``panda_scene()`` adds SymPush's
table, puck and goal to it, places the base beside the table, adds a pusher sphere on a rod below the hand, joint velocity
servos with the Panda's torque limits, and gravity compensation.

:class:`CartesianVelocityController` realises a commanded planar end-effector velocity: damped least-squares
differential IK on the 6-D task (planar velocity, height hold, hand pointing down with a fixed yaw), the arm's
one redundant DoF pulled toward a home posture in the task nullspace, joint-limit avoidance and the Panda's
joint velocity limits. It runs at every physics substep.
"""
from __future__ import annotations

import re
from pathlib import Path

import mujoco
import numpy as np

ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")
#: Panda joint torque limits (N m) and velocity limits (rad/s), as in the URDF
TORQUE_LIMITS = np.array([87, 87, 87, 87, 12, 12, 12], dtype=float)
VELOCITY_LIMITS = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
#: a standard "ready" posture: hand pointing down in front of the base
HOME_POSTURE = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, np.pi / 4])
#: the hand's orientation target: z axis straight down, fingers across the x axis
HAND_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
TIP_RADIUS = 0.02           # SymPush's pusher radius
TIP_HEIGHT = 0.02           # tip centre above the table (SymPush's pusher height)
ROD_LENGTH = 0.16           # hand origin to tip centre


def pybullet_panda_urdf() -> Path:
    try:
        import pybullet_data
    except ImportError:
        raise ImportError("PandaPush-v0 needs pybullet_data: pip install 'symgym[arm]'") from None
    path = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    if not path.is_file():
        raise ImportError(f"pybullet_data has no franka_panda/panda.urdf at {path}: pip install 'symgym[arm]'")
    return path


def panda_spec() -> "mujoco.MjSpec":
    """The Panda URDF as a MuJoCo spec (mesh paths rewritten to the pybullet_data directory, fixed links kept)."""
    urdf = pybullet_panda_urdf()
    text = urdf.read_text().replace("package://", f"{urdf.parent}/")
    compiler = '<mujoco><compiler fusestatic="false" discardvisual="true" strippath="false"/></mujoco>'
    text = re.sub(r"(<robot[^>]*>)", r"\1" + compiler, text, count=1)
    return mujoco.MjSpec.from_string(text)


def panda_scene(base_x: float = -0.55, puck: bool = True) -> "mujoco.MjSpec":
    """The Panda at ``(base_x, 0, 0)`` beside SymPush's table, with a pusher tip, servos and gravity compensation.

    Table, puck, goal and the puck's rim are exactly SymPush's (``envs/assets/sym_push.xml``: viscous planar
    friction on slide joints, elliptic cones, a radial rim), so the puck moves as it does there. Only the pusher
    sphere and the puck collide (the arm's links are visual-only): what differs from SymPush is how the pusher
    moves, as the end effector of a 7-DoF arm with the arm's reach and joint limits.
    """
    spec = panda_spec()
    spec.modelname = "panda_push"
    spec.compiler.discardvisual = False   # keep the visual-only geoms (arm links, table, goal) for rendering
    opt = spec.option
    opt.timestep, opt.cone, opt.impratio = 0.01, mujoco.mjtCone.mjCONE_ELLIPTIC, 1.0
    opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.body("panda_link0").pos = [base_x, 0.0, 0.0]
    for body in spec.bodies:
        if body.name.startswith("panda_"):
            body.gravcomp = 1.0
    for geom in spec.geoms:   # the arm's links are visual only (and shown: the URDF puts them in a hidden group)
        geom.contype, geom.conaffinity, geom.group, geom.rgba = 0, 0, 0, [0.92, 0.92, 0.95, 1.0]
    spec.worldbody.add_light(name="top", pos=[0, 0, 2.0], dir=[0, 0, -1], diffuse=[0.8, 0.8, 0.8])
    _add_table_puck_goal(spec, puck)
    hand = spec.body("panda_hand")
    tip = hand.add_body(name="pusher", pos=[0.0, 0.0, ROD_LENGTH], gravcomp=1.0)
    tip.add_geom(name="rod", type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[0.006, ROD_LENGTH / 2, 0],
                 pos=[0, 0, -ROD_LENGTH / 2], contype=0, conaffinity=0, mass=0.02, rgba=[0.3, 0.3, 0.3, 1])
    tip.add_geom(name="pusher", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[TIP_RADIUS, 0, 0], mass=0.05,
                 contype=1, conaffinity=2, friction=[0.5, 0.005, 0.0001], solref=[0.01, 1], rgba=[0.2, 0.4, 0.9, 1])
    tip.add_site(name="pusher_tip", size=[0.005, 0, 0])
    for name, torque in zip(ARM_JOINTS, TORQUE_LIMITS):
        joint = spec.joint(name)
        joint.armature = 0.1
        joint.damping = [1.0, 0.0, 0.0]
        act = spec.add_actuator(name=f"{name}_velocity", target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_velocity(kv=1.0 * torque)
        act.forcelimited = True
        act.forcerange = [-torque, torque]
    for name in FINGER_JOINTS:
        spec.joint(name).damping = [10.0, 0.0, 0.0]
    return spec


def _add_table_puck_goal(spec: "mujoco.MjSpec", with_puck: bool = True) -> None:
    """SymPush's table, puck (slide x/y + yaw, viscous damping), goal marker and puck rim, in code."""
    world = spec.worldbody
    contact = {"friction": [0.5, 0.005, 0.0001], "solref": [0.01, 1]}
    world.add_site(name="centre", pos=[0, 0, TIP_HEIGHT], size=[0.005, 0, 0])
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.35, 0.005, 0], pos=[0, 0, -0.005],
                   contype=0, conaffinity=0, rgba=[0.75, 0.72, 0.68, 1])
    goal = world.add_body(name="goal", mocap=True)
    goal.add_geom(name="goal", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.03, 0.001, 0], contype=0, conaffinity=0,
                  rgba=[0.2, 0.8, 0.3, 0.5])
    if not with_puck:
        return
    puck = world.add_body(name="puck", pos=[0, 0, TIP_HEIGHT])
    for name, jtype, axis, damp in (("puck_x", mujoco.mjtJoint.mjJNT_SLIDE, [1, 0, 0], 0.6),
                                    ("puck_y", mujoco.mjtJoint.mjJNT_SLIDE, [0, 1, 0], 0.6),
                                    ("puck_yaw", mujoco.mjtJoint.mjJNT_HINGE, [0, 0, 1], 0.002)):
        puck.add_joint(name=name, type=jtype, axis=axis, damping=[damp, 0.0, 0.0])
    puck.add_geom(name="puck", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.03, 0.02, 0], mass=0.2, contype=2,
                  conaffinity=1, rgba=[0.9, 0.25, 0.2, 1], **contact)
    puck.add_site(name="puck_site", size=[0.005, 0, 0])
    rim = spec.add_tendon(name="puck_rim", limited=True, range=[0, 0.32], width=0.001)
    rim.wrap_site("centre")
    rim.wrap_site("puck_site")


class CartesianVelocityController:
    """Joint velocities that move the pusher tip at a commanded planar velocity (see the module docstring)."""

    def __init__(self, model: mujoco.MjModel, tip_height: float = TIP_HEIGHT, damping: float = 1e-3,
                 height_gain: float = 20.0, orientation_gain: float = 10.0, posture_gain: float = 2.0,
                 limit_margin: float = 0.05, limit_gain: float = 10.0):
        self.model = model
        self.tip_height = tip_height
        self.damping, self.height_gain, self.orientation_gain = damping, height_gain, orientation_gain
        self.posture_gain, self.limit_margin, self.limit_gain = posture_gain, limit_margin, limit_gain
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in ARM_JOINTS]
        self.qpos_idx = np.array([model.jnt_qposadr[j] for j in jids])
        self.dof_idx = np.array([model.jnt_dofadr[j] for j in jids])
        self.lower, self.upper = model.jnt_range[jids, 0].copy(), model.jnt_range[jids, 1].copy()
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "pusher_tip")
        self.hand = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "panda_hand")
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    # -- kinematics ------------------------------------------------------------------------------
    def tip(self, data: mujoco.MjData) -> np.ndarray:
        return data.site_xpos[self.site]

    def _task_jacobian(self, data: mujoco.MjData) -> np.ndarray:
        mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site)
        return np.vstack([self._jacp[:, self.dof_idx], self._jacr[:, self.dof_idx]])

    def _orientation_error(self, data: mujoco.MjData) -> np.ndarray:
        """Rotation vector taking the hand's current orientation to HAND_DOWN (world frame)."""
        R = data.xmat[self.hand].reshape(3, 3)
        err = HAND_DOWN @ R.T
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, err.reshape(-1))
        if quat[0] < 0:   # the same rotation; the short way round
            quat = -quat
        vel = np.empty(3)
        mujoco.mju_quat2Vel(vel, quat, 1.0)
        return vel

    @staticmethod
    def _solve(J: np.ndarray, task_velocity: np.ndarray, q: np.ndarray, posture_gain: float,
               damping: float) -> np.ndarray:
        """Damped least squares on the task plus a pull toward the home posture in the task's nullspace:
        ``J+ t + (I - J+ J) k (q_home - q)`` with ``J+ = J^T (J J^T + damping I)^-1`` (a 6x6 Cholesky solve with
        MuJoCo's own routine: LAPACK's threaded path costs milliseconds on a loaded machine)."""
        A = J @ J.T
        A[np.diag_indices(6)] += damping
        mujoco.mju_cholFactor(A, 0.0)
        posture = posture_gain * (HOME_POSTURE - q)
        rhs = task_velocity - J @ posture
        y = np.empty(6)
        mujoco.mju_cholSolve(y, A, rhs)
        return J.T @ y + posture

    # -- control --------------------------------------------------------------------------------
    def joint_velocities(self, data: mujoco.MjData, planar_velocity: np.ndarray) -> np.ndarray:
        """Joint velocity command (7,) for a planar tip velocity (m/s, world frame)."""
        q = data.qpos[self.qpos_idx]
        tip = self.tip(data)
        task = np.empty(6)
        task[:2] = planar_velocity
        task[2] = self.height_gain * (self.tip_height - tip[2])
        task[3:] = self.orientation_gain * self._orientation_error(data)
        qdot = self._solve(self._task_jacobian(data), task, q, self.posture_gain, self.damping)
        # joint limits: never drive a joint into its margin; then the Panda's velocity limits (uniform scaling
        # keeps the direction of the tip's motion)
        lo = self.limit_gain * (self.lower + self.limit_margin - q)
        hi = self.limit_gain * (self.upper - self.limit_margin - q)
        qdot = np.clip(qdot, np.minimum(lo, 0.0), np.maximum(hi, 0.0))
        scale = np.max(np.abs(qdot) / VELOCITY_LIMITS)
        return qdot / scale if scale > 1.0 else qdot

    def solve_ik(self, data: mujoco.MjData, target_xy: np.ndarray, iterations: int = 200,
                 tol: float = 1e-7) -> float:
        """Put the arm (at rest) where the tip is at ``target_xy`` and the tip height, hand down, starting from the
        home posture; returns the remaining tip position error (m), > 0 where the target is out of reach."""
        q = HOME_POSTURE.copy()
        target = np.array([target_xy[0], target_xy[1], self.tip_height])
        err = np.inf
        for _ in range(iterations):
            data.qpos[self.qpos_idx] = q
            mujoco.mj_kinematics(self.model, data)
            mujoco.mj_comPos(self.model, data)
            pos_err = target - self.tip(data)
            err = float(np.linalg.norm(pos_err))
            task = np.concatenate([pos_err, self._orientation_error(data)])
            if err < tol and np.linalg.norm(task[3:]) < 1e-6:
                break
            step = self._solve(self._task_jacobian(data), task, q, 0.1, 1e-6 if err < 0.01 else 1e-4)
            q = np.clip(q + step, self.lower + 1e-3, self.upper - 1e-3)
        data.qpos[self.qpos_idx] = q
        data.qvel[self.dof_idx] = 0.0
        return err
