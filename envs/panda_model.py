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
The control law is numpy over a batch of arms (:meth:`CartesianVelocityController.joint_velocities_batch`): one
env is a batch of one, the vector env (``envs/vector.py``) a batch of N, and each row is the same numbers.
"""
from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

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
#: solve_ik near the target: damping of its Gauss-Newton steps (lambda k of the fixed point, see solve_ik) and
#: the step (rad) below which it has converged
IK_DAMPING, IK_STEP_TOL, IK_NEWTON_RADIUS = 1e-7, 1e-12, 1e-2
# index helpers of the batched kinematics: cross products and rotation-matrix antisymmetric parts


def _hand_error_entries() -> tuple[np.ndarray, np.ndarray]:
    """Where the entries of ``E = HAND_DOWN R^T`` that the orientation error needs sit in a flattened R, and their
    signs (HAND_DOWN is a signed permutation, so each is one entry of R): E21, E02, E10, then E12, E20, E01 (v's
    two terms), then E00, E11, E22 (the trace)."""
    nz = np.argmax(np.abs(HAND_DOWN), axis=1)
    assert np.array_equal(np.abs(HAND_DOWN)[np.arange(3), nz], np.ones(3)) and len(set(nz)) == 3, HAND_DOWN
    pairs = ((2, 1), (0, 2), (1, 0), (1, 2), (2, 0), (0, 1), (0, 0), (1, 1), (2, 2))
    # E_ij = sum_k HAND_DOWN_ik R_jk = HAND_DOWN_i,nz(i) R_j,nz(i)
    return (np.array([3 * j + nz[i] for i, j in pairs]), np.array([HAND_DOWN[i, nz[i]] for i, _ in pairs]))


_E_INDEX, _E_SIGN = _hand_error_entries()
# axis and offset components of a cross product's terms (see CartesianVelocityController.arm_kinematics)
_CROSS_A, _CROSS_B = np.array([1, 2, 0, 2, 0, 1]), np.array([2, 0, 1, 1, 2, 0])
_EYE6 = np.eye(6)
try:
    # the gufunc under np.linalg.solve, called without that wrapper's per-call checks and error-state setup (~3 us of
    # a 6x6 solve, twice per control step); the same numbers. Its systems are damped, never singular.
    from numpy.linalg import _umath_linalg

    def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _umath_linalg.solve(a, b, signature="dd->d")
except ImportError:   # a numpy without it: the public function
    _solve = np.linalg.solve


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


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    """A slice where ``index`` is contiguous (the arm's joints are: the URDF lists them first): no fancy-index copy."""
    start = int(index[0])
    return slice(start, start + len(index)) if np.array_equal(index, np.arange(start, start + len(index))) else index


class ArmKinematics(NamedTuple):
    """The arm's kinematics at N postures, batched on the first axis (what the controller reads)."""

    q: np.ndarray       # (N, 7) arm joint positions
    tip: np.ndarray     # (N, 3) pusher tip, world frame
    hand: np.ndarray    # (N, 3, 3) hand orientation, world frame
    jac: np.ndarray     # (N, 6, 7) the tip's translational (rows 0-2) and rotational (3-5) Jacobian, arm dofs


class CartesianVelocityController:
    """Joint velocities that move the pusher tip at a commanded planar velocity (see the module docstring).

    The control law is written once, batched over N arms (:meth:`joint_velocities_batch`, numpy over the batch,
    rows independent of each other and of N): a single env calls it with one row read from its ``MjData``, the
    vector env (``envs/vector.py``) with all its rows read from a ``mujoco.batch.Batch``, and both get the same
    numbers bit for bit. Kinematics come from MuJoCo (``mj_kinematics`` + ``mj_comPos``, the same C either way);
    the Jacobian is assembled from ``cdof``/``subtree_com`` as ``mj_jac`` does, so a batch's outputs suffice.
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
        self.joint_ids = np.array(jids)
        self.qpos_idx = np.array([model.jnt_qposadr[j] for j in jids])
        self.dof_idx = np.array([model.jnt_dofadr[j] for j in jids])
        self._qpos = _as_slice(self.qpos_idx)
        self._joints = _as_slice(self.joint_ids)
        self.lower, self.upper = model.jnt_range[jids, 0].copy(), model.jnt_range[jids, 1].copy()
        self._lo_bound, self._hi_bound = self.lower + limit_margin, self.upper - limit_margin
        # the orientation error the task leaves for after the period, per unit of the task's rate (the residual's)
        self._orientation_left = (1.0 - orientation_gain) * self.period / orientation_gain
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "pusher_tip")
        self.hand = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "panda_hand")
        # mj_jac's reference point: the subtree com of the tip's kinematic tree root
        self._root = int(model.body_rootid[model.site_bodyid[self.site]])
        self._predict = mujoco.MjData(model)   # where the arm ends a period (the single env's scratch)
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

    def arm_kinematics(self, q: np.ndarray, tip: np.ndarray, hand: np.ndarray, xanchor: np.ndarray,
                       xaxis: np.ndarray) -> ArmKinematics:
        """:class:`ArmKinematics` of k postures from MuJoCo's kinematics: the arm's joint positions ``q`` (k, 7), the
        tip (k, 3), the hand's ``xmat`` (k, 9 or 3, 3) and the arm joints' ``xanchor``/``xaxis`` (k, 7, 3). The
        Jacobian of the tip over the hinges is ``axis x (tip - anchor)`` (translation) and ``axis`` (rotation)."""
        # the cross product's two halves, (a1 o2, a2 o0, a0 o1) - (a2 o1, a0 o2, a1 o0), in one product
        products = xaxis.take(_CROSS_A, axis=2) * (tip[:, None, :] - xanchor).take(_CROSS_B, axis=2)
        jac = np.empty((len(q), 6, xaxis.shape[1]))
        jac[:, :3] = (products[..., :3] - products[..., 3:]).transpose(0, 2, 1)
        jac[:, 3:] = xaxis.transpose(0, 2, 1)
        return ArmKinematics(q, tip, hand.reshape(-1, 3, 3), jac)

    def kinematics_of(self, data: mujoco.MjData) -> ArmKinematics:
        """One row of :class:`ArmKinematics` from ``data``, whose kinematics must be current (``mj_kinematics``)."""
        j = self._joints
        return self.arm_kinematics(data.qpos[None, self._qpos], data.site_xpos[None, self.site],
                                   data.xmat[None, self.hand], data.xanchor[None, j], data.xaxis[None, j])

    def kinematics_at(self, datas: Sequence[mujoco.MjData], q: np.ndarray,
                      qpos: np.ndarray | None = None) -> ArmKinematics:
        """:class:`ArmKinematics` of k postures: ``datas[j]`` takes ``qpos[j]`` (if given) with the arm at ``q[j]``
        and runs ``mj_kinematics`` (what :meth:`kinematics_of` reads, so the same numbers bit for bit)."""
        q = np.array(q, dtype=np.float64)
        for j, d in enumerate(datas):
            if qpos is not None:
                d.qpos[:] = qpos[j]
            d.qpos[self.qpos_idx] = q[j]
            mujoco.mj_kinematics(self.model, d)
        if len(datas) == 1:   # the same values without stacking
            return self.kinematics_of(datas[0])._replace(q=q)
        jids = self.joint_ids
        return self.arm_kinematics(q, np.stack([d.site_xpos[self.site] for d in datas]),
                                   np.stack([d.xmat[self.hand] for d in datas]),
                                   np.stack([d.xanchor[jids] for d in datas]), np.stack([d.xaxis[jids] for d in datas]))

    def _task_jacobian(self, data: mujoco.MjData) -> np.ndarray:
        return self.kinematics_of(data).jac[0]

    @staticmethod
    def orientation_error(hand: np.ndarray) -> np.ndarray:
        """Rotation vectors (N, 3) taking hand orientations (N, 3, 3) to HAND_DOWN (world frame), the short way
        round (what ``mju_mat2Quat`` + ``mju_quat2Vel`` give), batched: with ``E = HAND_DOWN R^T``, the angle is
        ``atan2(|v|, tr E - 1)`` with ``v`` E's antisymmetric part (2 sin(angle) axis). Rows past ~120 degrees
        (trace <= 0, where v loses the axis near 180 degrees) go through MuJoCo's routines one by one."""
        g = hand.reshape(-1, 9).take(_E_INDEX, axis=1) * _E_SIGN   # E's entries: v's two terms, its diagonal
        v = g[:, :3] - g[:, 3:6]
        trace = g[:, 6:].sum(axis=1)
        two_sin = np.sqrt((v * v).sum(axis=1))
        # v = 0 (no rotation) gives 0 whatever it is divided by
        out = v * (np.arctan2(two_sin, trace - 1.0) / np.maximum(two_sin, 1e-300))[:, None]
        if trace.min() <= 0:
            for i in np.flatnonzero(trace <= 0):
                quat = np.empty(4)
                mujoco.mju_mat2Quat(quat, (HAND_DOWN @ hand[i].T).reshape(-1))
                if quat[0] < 0:
                    quat = -quat
                mujoco.mju_quat2Vel(out[i], quat, 1.0)
        return out

    def solve_batch(self, J: np.ndarray, task: np.ndarray, q: np.ndarray, posture_gain: float, damping: float,
                    lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
        """Weighted damped least squares on the task plus a pull toward the home posture in the task's nullspace,
        ``J+ t + (I - J+ J) k (q_home - q)``, for N rows at once. Joints that would leave ``[lo, hi]`` are held at
        the bound and the task is re-solved with the others (:meth:`_solve_saturated`, row by row: rare)."""
        Jw = J * self.weights[:, None]
        JwT = Jw.transpose(0, 2, 1)
        A = Jw @ JwT
        A += damping * _EYE6
        rhs = (task * self.weights)[..., None]
        if posture_gain:
            posture = posture_gain * (HOME_POSTURE - q)
            qdot = (JwT @ _solve(A, rhs - Jw @ posture[..., None]))[..., 0] + posture
        else:
            qdot = (JwT @ _solve(A, rhs))[..., 0]
        if lo is not None and ((qdot < lo) | (qdot > hi)).any():
            for i in np.flatnonzero(((qdot < lo) | (qdot > hi)).any(axis=1)):
                qdot[i] = self._solve_saturated(Jw[i], rhs[i, :, 0], q[i], posture_gain, damping, lo[i], hi[i])
        return qdot

    @staticmethod
    def _solve_saturated(Jw: np.ndarray, tw: np.ndarray, q: np.ndarray, posture_gain: float, damping: float,
                         lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """One row of :meth:`solve_batch` with saturating joints: up to four rounds, each holding the joints that
        would leave their bounds at the bound and re-solving the (weighted) task with the others."""
        free = np.ones(len(q), dtype=bool)
        fixed = np.zeros(len(q))
        qdot = fixed
        for _ in range(4):
            Jf = Jw[:, free]
            posture = posture_gain * (HOME_POSTURE[free] - q[free])
            A = Jf @ Jf.T
            A.flat[::len(A) + 1] += damping
            rhs = tw - Jw[:, ~free] @ fixed[~free] - Jf @ posture
            qdot = fixed.copy()
            qdot[free] = Jf.T @ np.linalg.solve(A, rhs) + posture
            over = free & ((qdot < lo) | (qdot > hi))
            if not over.any():
                return qdot
            fixed[over] = np.clip(qdot[over], lo[over], hi[over])
            free &= ~over
            if not free.any():
                break
        return np.clip(qdot, lo, hi)

    # -- control --------------------------------------------------------------------------------
    def joint_velocities_batch(self, now: ArmKinematics, planar_velocity: np.ndarray,
                               predict: Callable[[np.ndarray], ArmKinematics]) -> np.ndarray:
        """Joint velocity targets (N, 7) to hold for one control period so each tip moves at its
        ``planar_velocity`` (N, 2; m/s, world frame), returns to the table height and keeps the hand pointing down.
        ``now`` is the arms' current kinematics; ``predict(q)`` returns the kinematics at postures ``q`` (N, 7)."""
        T = self.period
        q, tip = now.q, now.tip
        task = np.empty((len(q), 6))
        task[:, :2] = planar_velocity
        task[:, 2] = self.height_gain * (self.tip_height - tip[:, 2]) / T
        task[:, 3:] = self.orientation_gain / T * self.orientation_error(now.hand)
        # joint limits: no joint ends the period inside its margin (one already there may only move out of it)
        lo = np.minimum((self._lo_bound - q) / T, 0.0)
        hi = np.maximum((self._hi_bound - q) / T, 0.0)
        qdot = self.solve_batch(now.jac, task, q, self.posture_gain, self.damping, lo, hi)
        # held joint velocities move the tip on a curve: one Newton correction at the predicted end of the
        # period puts the end point where the task wants it (the residual is second order in the step)
        end = predict(q + T * qdot)
        residual = np.empty_like(task)
        residual[:, :3] = tip + T * task[:, :3] - end.tip
        residual[:, 3:] = self.orientation_error(end.hand) - self._orientation_left * task[:, 3:]
        qdot = qdot + self.solve_batch(end.jac, residual / T, q, 0.0, self.damping, lo - qdot, hi - qdot)
        # the Panda's velocity limits: uniform scaling keeps the direction of the tip's motion (x / 1.0 == x)
        scale = np.max(np.abs(qdot) / VELOCITY_LIMITS, axis=1, keepdims=True)
        return qdot / np.maximum(scale, 1.0) * self._servo_scale

    def joint_velocities(self, data: mujoco.MjData, planar_velocity: np.ndarray) -> np.ndarray:
        """:meth:`joint_velocities_batch` for one arm whose current kinematics are in ``data`` (as
        :meth:`forward_kinematics` leaves them); returns (7,)."""
        v = np.asarray(planar_velocity, dtype=np.float64).reshape(1, 2)
        return self.joint_velocities_batch(self.kinematics_of(data), v, functools.partial(self._predict_one, data))[0]

    def _predict_one(self, data: mujoco.MjData, q: np.ndarray) -> ArmKinematics:
        p = self._predict   # kinematics_at for one row, without its stacking
        p.qpos[:] = data.qpos
        p.qpos[self.qpos_idx] = q[0]
        mujoco.mj_kinematics(self.model, p)
        return self.kinematics_of(p)

    def solve_ik(self, data: mujoco.MjData, target_xy: np.ndarray, iterations: int = 200) -> float:
        """Put the arm (at rest) where the tip is at ``target_xy`` and the tip height, hand down, starting from the
        home posture; returns the remaining tip position error (m), > 0 where the target is out of reach
        (:meth:`solve_ik_batch` for one arm)."""
        return float(self.solve_ik_batch((data,), np.asarray(target_xy, dtype=np.float64)[None, :2], iterations)[0])

    def solve_ik_batch(self, datas: Sequence[mujoco.MjData], targets: np.ndarray, iterations: int = 200) -> np.ndarray:
        """:meth:`solve_ik` for k arms at once (``datas[j]`` to ``targets[j]``, (k, 2)); rows are independent of
        each other, so a row's posture is the one a single solve finds, bit for bit. Returns the errors (k,).

        The posture solved for is the fixed point of damped least squares with a pull toward the home posture,
        ``J^T e(q) = lambda k (q - q_home)`` with ``lambda k = 1e-7``: beyond 1 cm of the target steps use damping
        1e-4 and a nullspace gain k = 0.1; within it, Gauss-Newton steps on that fixed-point equation (gain 1,
        damping 1e-7) converge quadratically, and a row stops when its step moves no joint by more than 1e-12 rad
        (typically 10-30 iterations; before, 200 fixed-gain iterations approached the same point to ~2e-10 rad)."""
        k = len(datas)
        q = np.tile(HOME_POSTURE, (k, 1))
        target = np.column_stack([targets, np.full(k, self.tip_height)])
        err = np.full(k, np.inf)
        newton, exits = np.zeros(k, dtype=bool), np.zeros(k, dtype=np.int64)
        rows = np.arange(k)                   # the rows still iterating
        weights, self.weights = self.weights, np.ones(6)   # a placement must hold the hand exactly down
        try:
            for _ in range(iterations):
                kin = self.kinematics_at([datas[j] for j in rows], q[rows])
                task = np.empty((len(rows), 6))
                task[:, :3] = target[rows] - kin.tip
                e = np.sqrt(task[:, 0] * task[:, 0] + task[:, 1] * task[:, 1] + task[:, 2] * task[:, 2])
                err[rows] = e
                task[:, 3:] = self.orientation_error(kin.hand)
                # Gauss-Newton within 1 cm. Its first steps move the posture a lot along the nullspace and may
                # throw the tip out of that radius again; after a few such exits (beyond the arm's reach the tip
                # settles short of the target, where nearly undamped steps jump between postures) a row takes only
                # damped steps
                gn = (e < IK_NEWTON_RADIUS) & (exits[rows] < 4)
                exits[rows] += newton[rows] & ~gn
                newton[rows] = gn
                if len(rows) == 1:   # one arm (a single env's reset): its own mode, no grouping
                    gain, damping = (1.0, IK_DAMPING) if gn[0] else (0.1, 1e-6 if e[0] < 0.01 else 1e-4)
                    step = self.solve_batch(kin.jac, task, kin.q, gain, damping)
                else:
                    step = np.empty((len(rows), len(self.dof_idx)))
                    for mask, gain, damping in ((gn, 1.0, IK_DAMPING), (~gn & (e < 0.01), 0.1, 1e-6),
                                                (~gn & ~(e < 0.01), 0.1, 1e-4)):
                        if mask.any():
                            step[mask] = self.solve_batch(kin.jac[mask], task[mask], kin.q[mask], gain, damping)
                done = gn & (np.abs(step).max(axis=1) < IK_STEP_TOL)
                moving = rows[~done]
                q[moving] = np.clip(q[moving] + step[~done], self.lower + 1e-3, self.upper - 1e-3)
                rows = moving
                if not len(rows):
                    break
        finally:
            self.weights = weights
        for d, q_j in zip(datas, q):
            d.qpos[self.qpos_idx] = q_j
            d.qvel[self.dof_idx] = 0.0
        return err


class BatchKinematics:
    """:class:`ArmKinematics` of many postures at once, from ``mj_kinematics`` (the C a single env runs on its
    ``MjData``, so the same numbers bit for bit) in ``nsim`` simulations of a ``mujoco.batch.Batch`` (MuJoCo >= 4):
    one call for all rows, its outputs gathered in C. The batch's model is a copy with contacts and constraints
    disabled, which kinematics do not read, so its position stage skips collision detection."""

    def __init__(self, controller: CartesianVelocityController, nsim: int):
        from mujoco import batch as mj_batch

        model = copy.copy(controller.model)
        model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT | mujoco.mjtDisableBit.mjDSBL_CONSTRAINT)
        self.controller = controller
        self.batch = mj_batch.Batch(model, nsim, nthread=1)
        self._qpos = self.batch.bind("qpos")
        self._out = [self.batch.bind(name) for name in ("site_xpos", "xmat", "xanchor", "xaxis")]

    def __call__(self, rows: np.ndarray, qpos: np.ndarray, q: np.ndarray | None = None) -> ArmKinematics:
        """The kinematics at ``qpos`` (k, nq) with the arm at ``q`` (k, 7) if given, computed in the batch's
        simulations ``rows`` (k,), which it overwrites."""
        c = self.controller
        self._qpos[rows] = qpos
        if q is not None:
            self._qpos[rows[:, None], c.qpos_idx] = q
        self.batch.forward(rows, stage=mujoco.mjtStage.mjSTAGE_POS)
        site_xpos, xmat, xanchor, xaxis = self._out
        return c.arm_kinematics(qpos[:, c.qpos_idx] if q is None else np.array(q, dtype=np.float64),
                                site_xpos[rows, c.site], xmat[rows, c.hand], xanchor[rows[:, None], c.joint_ids],
                                xaxis[rows[:, None], c.joint_ids])
