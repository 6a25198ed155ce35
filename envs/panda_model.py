"""The Franka Panda in MuJoCo, offline: the model from pybullet_data, and its Cartesian velocity controller.

``panda_spec()`` reads ``pybullet_data/franka_panda/panda.urdf`` (shipped with the pybullet wheel), rewrites its
``package://`` mesh paths to that directory and compiles it with ``mujoco.MjSpec``: 9 DoF (7 arm joints and
two finger slides), the URDF's joint limits and its collision meshes. Nothing is downloaded or copied.
``panda_scene()`` adds SymPush's table, puck and goal to it, places the base beside the table, adds a pusher
sphere on a rod below the hand, joint velocity servos with the Panda's torque limits, and gravity compensation.
The arm collides with the table, the puck and itself (see :func:`panda_scene` for the contact filter).

:class:`CartesianVelocityController` realises a commanded planar end-effector velocity. It is solved *once per
control period* (not per physics substep): the tip's target at the end of the period (the planar displacement,
the table height, the hand pointing down with a fixed yaw) becomes a 6-D task velocity, damped least-squares
differential IK (task-weighted, the redundant DoF pulled toward a home posture in the task nullspace, joint
limits as saturations that the remaining joints make up for, the Panda's velocity limits) turns it into joint
velocities, and MuJoCo's velocity servos hold them through the substeps. The per-substep ``ctrl`` is thus one
constant vector, so ``mujoco.rollout`` with that control repeated ``frame_skip`` times reproduces ``env.step``.
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
#: velocity servo gains (N m s/rad): about diag(M) at the home posture / 30 ms, so each joint settles on its
#: target velocity within ~3 physics substeps. Stiffer servos (15 ms) hit the torque limits often, and a clamped
#: servo under the implicit integrator rings from substep to substep (measured: p95 tracking error 0.15 -> 0.24)
SERVO_GAINS = np.array([100.0, 100.0, 75.0, 62.0, 30.0, 28.0, 22.0])
#: a standard "ready" posture: hand pointing down in front of the base
HOME_POSTURE = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, np.pi / 4])
#: the hand's orientation target: z axis straight down, fingers across the x axis
HAND_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
TIP_RADIUS = 0.02           # SymPush's pusher radius
TIP_HEIGHT = 0.02           # tip centre above the table (SymPush's pusher height)
ROD_LENGTH = 0.16           # hand origin to tip centre
#: arm body pairs that never collide (see panda_scene): the fingers touch by design, the rest are two links apart
SELF_CONTACT_EXCLUDED = (("panda_leftfinger", "panda_rightfinger"), ("panda_link0", "panda_link2"),
                         ("panda_link2", "panda_link4"), ("panda_link3", "panda_link5"), ("panda_link4", "panda_link6"),
                         ("panda_link5", "panda_link7"), ("panda_link5", "panda_hand"), ("panda_link6", "panda_hand"),
                         ("panda_link6", "pusher"), ("panda_link6", "panda_leftfinger"),
                         ("panda_link6", "panda_rightfinger"))
#: contact bits (contype/conaffinity): see panda_scene
PUSHER_BIT, PUCK_BIT, ARM_BIT = 1, 2, 4


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
    friction on slide joints, elliptic cones, a radial rim), so the puck moves as it does there; what differs from
    SymPush is how the pusher moves, as the end effector of a 7-DoF arm with the arm's reach and joint limits.

    Contacts (``contype``/``conaffinity`` bits: 1 pusher, 2 puck, 4 arm): the pusher sphere and the puck collide
    as in SymPush; the arm's links (the URDF's convex collision meshes), the hand, the fingers and the rod collide
    with the puck and the table top (a plane); the pusher meets it through one frictionless pair (``condim=1``), so the
    table stops it without dragging it while it slides at table height. The puck does not touch the table (it
    slides on joints, as in SymPush). Arm links collide with each other except parent-child pairs (MuJoCo's
    default) and the two fingers, which touch by design.
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
    for geom in spec.geoms:   # the URDF's collision meshes: shown (the URDF puts them in a hidden group), colliding
        geom.contype, geom.conaffinity, geom.group, geom.rgba = ARM_BIT, ARM_BIT, 0, [0.92, 0.92, 0.95, 1.0]
    # links collide with each other too, except where they touch by design: MuJoCo already skips parent-child and
    # welded pairs, and the two closed fingers touch. Pairs two links apart are excluded too: their bounding spheres
    # always overlap, so each substep would run a mesh-mesh test for them, and none touch over the workspace
    # (checked on a 5 cm grid of IK placements); upper arm vs forearm and base vs forearm stay checked.
    for a, b in SELF_CONTACT_EXCLUDED:
        spec.add_exclude(bodyname1=a, bodyname2=b)
    spec.worldbody.add_light(name="top", pos=[0, 0, 2.0], dir=[0, 0, -1], diffuse=[0.8, 0.8, 0.8])
    _add_table_puck_goal(spec, puck)
    hand = spec.body("panda_hand")
    tip = hand.add_body(name="pusher", pos=[0.0, 0.0, ROD_LENGTH], gravcomp=1.0)
    tip.add_geom(name="rod", type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[0.006, ROD_LENGTH / 2, 0],
                 pos=[0, 0, -ROD_LENGTH / 2], contype=ARM_BIT, conaffinity=0, mass=0.02, rgba=[0.3, 0.3, 0.3, 1])
    tip.add_geom(name="pusher", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[TIP_RADIUS, 0, 0], mass=0.05,
                 contype=PUSHER_BIT, conaffinity=PUCK_BIT, friction=[0.5, 0.005, 0.0001], solref=[0.01, 1],
                 rgba=[0.2, 0.4, 0.9, 1])
    # the table holds the pusher up without friction: at table height it slides as SymPush's pusher does
    spec.add_pair(name="pusher_table", geomname1="pusher", geomname2="table_top", condim=1)
    tip.add_site(name="pusher_tip", size=[0.005, 0, 0])
    for name, torque, kv in zip(ARM_JOINTS, TORQUE_LIMITS, SERVO_GAINS):
        joint = spec.joint(name)
        joint.armature = 0.1
        joint.damping = [1.0, 0.0, 0.0]
        act = spec.add_actuator(name=f"{name}_velocity", target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_velocity(kv=kv)
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
    # what the arm collides with is the plane of the table top: a plane-mesh test is a vertex scan, while the
    # round table's bounding sphere (r = 0.35 m) would send every link above it to the costly convex-mesh test
    # (measured: 2.2x the raw step time); the arm's base stands on the same plane, so the two agree where it reaches
    world.add_geom(name="table_top", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05], contype=0,
                   conaffinity=ARM_BIT, group=3, rgba=[0, 0, 0, 0])
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
    puck.add_geom(name="puck", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.03, 0.02, 0], mass=0.2, contype=PUCK_BIT,
                  conaffinity=PUSHER_BIT | ARM_BIT, rgba=[0.9, 0.25, 0.2, 1], **contact)
    puck.add_site(name="puck_site", size=[0.005, 0, 0])
    rim = spec.add_tendon(name="puck_rim", limited=True, range=[0, 0.32], width=0.001)
    rim.wrap_site("centre")
    rim.wrap_site("puck_site")


class CartesianVelocityController:
    """Joint velocities that move the pusher tip at a commanded planar velocity (see the module docstring).

    ``joint_velocities(data, v)`` needs current kinematics in ``data`` (``mj_kinematics`` + ``mj_comPos``, as
    ``mj_forward`` and :meth:`forward_kinematics` leave it) and returns the joint velocities to hold for one
    control period ``period``.
    """

    def __init__(self, model: mujoco.MjModel, period: float, tip_height: float = TIP_HEIGHT,
                 damping: float = 1e-4, height_gain: float = 0.7, orientation_gain: float = 0.7,
                 orientation_weight: float = 0.3, posture_gain: float = 2.0, limit_margin: float = 0.05):
        self.model, self.period = model, float(period)
        self.tip_height = tip_height
        # gains are fractions of the remaining error removed per control period (1 = deadbeat)
        self.damping, self.height_gain, self.orientation_gain = damping, height_gain, orientation_gain
        # the tip's position matters more than the hand's exact tilt: orientation rows are down-weighted so
        # that near the edge of reach the tip keeps moving and the hand tilts a little instead
        self.weights = np.array([1.0, 1.0, 1.0] + [orientation_weight] * 3)
        self.posture_gain, self.limit_margin = posture_gain, limit_margin
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in ARM_JOINTS]
        self.qpos_idx = np.array([model.jnt_qposadr[j] for j in jids])
        self.dof_idx = np.array([model.jnt_dofadr[j] for j in jids])
        # a slice where the arm's dofs are contiguous (they are: the URDF lists them first): no fancy-index copies
        contiguous = np.array_equal(self.dof_idx, np.arange(self.dof_idx[0], self.dof_idx[0] + len(jids)))
        self._dofs = slice(int(self.dof_idx[0]), int(self.dof_idx[0]) + len(jids)) if contiguous else self.dof_idx
        self.lower, self.upper = model.jnt_range[jids, 0].copy(), model.jnt_range[jids, 1].copy()
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "pusher_tip")
        self.hand = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "panda_hand")
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._predict = mujoco.MjData(model)   # where the arm ends a period (the controller's own scratch)
        # a velocity servo against joint damping d settles at kv/(kv + d) of its target: command the difference
        acts = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, f"{j}_velocity") for j in ARM_JOINTS]
        kv = model.actuator_gainprm[acts, 0] if min(acts) >= 0 else np.ones(len(jids))
        self._servo_scale = (kv + model.dof_damping[self.dof_idx]) / kv if min(acts) >= 0 else np.ones(len(jids))

    # -- kinematics ------------------------------------------------------------------------------
    def forward_kinematics(self, data: mujoco.MjData) -> None:
        """Positions, orientations and the Jacobian's ingredients of ``data.qpos`` (the cheap part of mj_forward)."""
        mujoco.mj_kinematics(self.model, data)
        mujoco.mj_comPos(self.model, data)

    def tip(self, data: mujoco.MjData) -> np.ndarray:
        return data.site_xpos[self.site]

    def _task_jacobian(self, data: mujoco.MjData) -> np.ndarray:
        mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site)
        J = np.empty((6, len(self.dof_idx)))
        J[:3], J[3:] = self._jacp[:, self._dofs], self._jacr[:, self._dofs]
        return J

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
    def _dls(J: np.ndarray, rhs: np.ndarray, damping: float) -> np.ndarray:
        """``y = (J J^T + damping I)^-1 rhs`` (a 6x6 Cholesky solve with MuJoCo's own routine: LAPACK's threaded
        path costs milliseconds on a loaded machine)."""
        A = J @ J.T
        A.flat[::len(A) + 1] += damping
        mujoco.mju_cholFactor(A, 0.0)
        y = np.empty(len(A))
        mujoco.mju_cholSolve(y, A, rhs)
        return y

    def _solve(self, J: np.ndarray, task: np.ndarray, q: np.ndarray, posture_gain: float, damping: float,
               lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
        """Weighted damped least squares on the task plus a pull toward the home posture in the task's nullspace,
        ``J+ t + (I - J+ J) k (q_home - q)``; joints that would leave ``[lo, hi]`` are held at the bound and the
        task is re-solved with the others (up to three rounds), so a joint at its limit does not stall the tip."""
        Jw, tw = J * self.weights[:, None], task * self.weights
        posture = posture_gain * (HOME_POSTURE - q)
        qdot = Jw.T @ self._dls(Jw, tw - Jw @ posture, damping) + posture   # the common case: no joint saturates
        if lo is None or (np.all(qdot >= lo) and np.all(qdot <= hi)):
            return qdot
        free = np.ones(len(q), dtype=bool)
        fixed = np.zeros(len(q))
        for _ in range(4):
            Jf = Jw[:, free]
            posture = posture_gain * (HOME_POSTURE[free] - q[free])
            rhs = tw - Jw[:, ~free] @ fixed[~free] - Jf @ posture
            qdot = fixed.copy()
            qdot[free] = Jf.T @ self._dls(Jf, rhs, damping) + posture
            if lo is None:
                return qdot
            over = free & ((qdot < lo) | (qdot > hi))
            if not over.any():
                return qdot
            fixed[over] = np.clip(qdot[over], lo[over], hi[over])
            free &= ~over
            if not free.any():
                break
        return np.clip(qdot, lo, hi)

    # -- control --------------------------------------------------------------------------------
    def joint_velocities(self, data: mujoco.MjData, planar_velocity: np.ndarray) -> np.ndarray:
        """Joint velocities (7,) to hold for one control period so the tip moves at ``planar_velocity`` (m/s,
        world frame), returns to the table height and keeps the hand pointing down."""
        T = self.period
        q = data.qpos[self.qpos_idx]
        tip = self.tip(data)
        task = np.empty(6)
        task[:2] = planar_velocity
        task[2] = self.height_gain * (self.tip_height - tip[2]) / T
        task[3:] = self.orientation_gain / T * self._orientation_error(data)
        # joint limits: no joint ends the period inside its margin (one already there may only move out of it)
        lo = np.minimum((self.lower + self.limit_margin - q) / T, 0.0)
        hi = np.maximum((self.upper - self.limit_margin - q) / T, 0.0)
        qdot = self._solve(self._task_jacobian(data), task, q, self.posture_gain, self.damping, lo, hi)
        # held joint velocities move the tip on a curve: one Newton correction at the predicted end of the
        # period puts the end point where the task wants it (the residual is second order in the step)
        p = self._predict
        p.qpos[:] = data.qpos
        p.qpos[self.qpos_idx] = q + T * qdot
        self.forward_kinematics(p)
        end = self.tip(p)
        residual = np.empty(6)
        residual[:2] = tip[:2] + T * np.asarray(planar_velocity) - end[:2]
        residual[2] = tip[2] + T * task[2] - end[2]
        residual[3:] = self._orientation_error(p) - (1.0 - self.orientation_gain) * task[3:] * T / self.orientation_gain
        qdot = qdot + self._solve(self._task_jacobian(p), residual / T, q, 0.0, self.damping, lo - qdot, hi - qdot)
        # the Panda's velocity limits: uniform scaling keeps the direction of the tip's motion
        scale = np.max(np.abs(qdot) / VELOCITY_LIMITS)
        qdot = qdot / scale if scale > 1.0 else qdot
        return qdot * self._servo_scale

    def solve_ik(self, data: mujoco.MjData, target_xy: np.ndarray, iterations: int = 200,
                 tol: float = 1e-7) -> float:
        """Put the arm (at rest) where the tip is at ``target_xy`` and the tip height, hand down, starting from the
        home posture; returns the remaining tip position error (m), > 0 where the target is out of reach."""
        q = HOME_POSTURE.copy()
        target = np.array([target_xy[0], target_xy[1], self.tip_height])
        err = np.inf
        weights, self.weights = self.weights, np.ones(6)   # a placement must hold the hand exactly down
        try:
            for _ in range(iterations):
                data.qpos[self.qpos_idx] = q
                self.forward_kinematics(data)
                pos_err = target - self.tip(data)
                err = float(np.linalg.norm(pos_err))
                task = np.concatenate([pos_err, self._orientation_error(data)])
                if err < tol and np.linalg.norm(task[3:]) < 1e-6:
                    break
                step = self._solve(self._task_jacobian(data), task, q, 0.1, 1e-6 if err < 0.01 else 1e-4)
                q = np.clip(q + step, self.lower + 1e-3, self.upper - 1e-3)
        finally:
            self.weights = weights
        data.qpos[self.qpos_idx] = q
        data.qvel[self.dof_idx] = 0.0
        return err
