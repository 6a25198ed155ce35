"""A Franka Panda with a suction tip that executes the tabletop pick-and-place primitive by physics (Ravens-style).

The arm is ``pybullet_data/franka_panda/panda.urdf`` with its two fingers replaced by a rigid suction cylinder
(the URDF is rewritten once per process into a temporary file with absolute mesh paths). Its base stands beside
the workspace at (0, -0.5) facing +y, so the workspace spans 0.25-0.75 m in front of it, as Ravens' UR5 does.

One primitive, as in Ravens' ``PickPlace``: move above the pick; descend until the tip touches something;
suction on -- a fixed constraint to the touched body, created only on contact with a movable object; lift;
move above the place while turning by the yaw change; descend until the carried object touches something or
the tip reaches the target height; release (the constraint is removed); lift; return home, out of the
cameras' view. Joints track inverse-kinematics targets with position motors; the simulation steps at
PyBullet's 240 Hz throughout, so the carried object moves (and can slip, hit or fall) by physics. A contact
between any arm link other than the tip and anything, or a target the arm cannot reach, aborts the primitive.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as p
import pybullet_data

ARM_JOINTS = tuple(range(7))
#: the Panda's joint torque limits (URDF efforts), used as motor forces
FORCES = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
LOWER = (-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671)
UPPER = (2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671)
BASE_XY = (0.0, -0.5)
#: home: tip at (0, -0.33, 0.35), pointing down; outside every camera's view of the workspace (|y| > 0.25)
HOME_TIP = (0.0, -0.33, 0.35)
HOVER_Z = 0.22          # approach height of the tip above the table (m)
TIP_LENGTH = 0.07       # suction cylinder below the hand (m), so the hand clears 4 cm cubes stacked three high
TIP_RADIUS = 0.008
DESCEND_SPEED = 0.3     # m/s while looking for contact: ~1.2 mm per 240 Hz step, less than a contact's depth
MOVE_SPEED = 1.0        # m/s in free space
IK_ITERATIONS = 30      # each waypoint's solve starts from the previous one, a few cm away
IK_DAMPING = 0.01       # PyBullet's default damping (0.1) left chained descent waypoints up to 5 cm off; 0.01: < 0.1 mm
#: tip yaw about which pick and place yaws are split: with the base facing +y, yaws in [0, pi] keep the last
#: joint inside its limits (yaws below about -0.3 rad drove it into its upper limit)
YAW_CENTRE = math.pi / 2
SETTLE_MOVE = 60        # at most this many steps for the motors to reach a move's end
AXIAL_APPROACH = 0.08  # longest straight approach along a leaned tip axis (m)
REACH_TOL = 0.01        # a target the tip cannot get within 1 cm of is unreachable


@functools.lru_cache(maxsize=1)
def suction_urdf() -> str:
    """Path of the Panda URDF with the fingers replaced by a suction tip link (``suction_tip``, frame at its end)."""
    src = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    text = src.read_text()
    text = text.replace('filename="package://meshes/', f'filename="{src.parent}/meshes/')
    # the collision meshes stand in for the visual ones (~1 MB each): 10x faster to load and to render
    text = text.replace("/meshes/visual/", "/meshes/collision/")
    # drop the fingers (links and their joints) and the grasp-target frame: the tip takes their place
    for name in ("panda_leftfinger", "panda_rightfinger", "panda_grasptarget"):
        text = re.sub(rf'<link name="{name}">.*?</link>', "", text, flags=re.S)
    text = re.sub(r'<joint name="(panda_finger_joint\d|panda_grasptarget_hand)".*?</joint>', "", text, flags=re.S)
    half = TIP_LENGTH / 2
    tip = f"""
  <link name="suction_tip">
    <inertial><origin xyz="0 0 {-half}"/><mass value="0.05"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>
    <visual><origin xyz="0 0 {-half}"/><geometry><cylinder radius="{TIP_RADIUS}" length="{TIP_LENGTH}"/></geometry>
      <material name="tip"><color rgba="0.1 0.1 0.1 1"/></material></visual>
    <collision><origin xyz="0 0 {-half}"/><geometry><cylinder radius="{TIP_RADIUS}" length="{TIP_LENGTH}"/></geometry>
    </collision>
  </link>
  <joint name="suction_joint" type="fixed">
    <parent link="panda_hand"/><child link="suction_tip"/><origin xyz="0 0 {0.058 + TIP_LENGTH}" rpy="0 0 0"/>
  </joint>
</robot>"""
    text = text.replace("</robot>", tip)
    out = Path(tempfile.gettempdir()) / f"symgym_panda_suction_{hashlib.sha1(text.encode()).hexdigest()[:10]}.urdf"
    if not out.exists():
        tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # concurrent processes: no shared temp name
        tmp.write_text(text)
        tmp.replace(out)
    return str(out)


@dataclass
class PrimitiveResult:
    """What happened during one pick-and-place: the grasped body (None: nothing), why it stopped early, steps."""

    grasped: int | None = None
    failure: str | None = None    # None, "grasp", "collision" or "unreachable"
    steps: int = 0


class SuctionPanda:
    """The arm in one PyBullet client: ``home()``, ``pick_and_place(...)`` and its contact bookkeeping."""

    def __init__(self, client, table: int) -> None:
        self.p = client
        self.body = client.loadURDF(suction_urdf(), basePosition=(*BASE_XY, 0.0),
                                    baseOrientation=client.getQuaternionFromEuler((0, 0, math.pi / 2)),
                                    useFixedBase=True)
        client.setCollisionFilterPair(self.body, table, -1, -1, 0)  # the base stands on the table: not a collision
        self.tip = client.getNumJoints(self.body) - 1
        self.constraint: int | None = None
        self.held: int | None = None
        self.steps = 0
        self.target = np.zeros(7)
        self._home_q = self._solve_home()
        self.home()

    # -- kinematics ------------------------------------------------------------------------------
    def _set_q(self, q) -> None:
        for j, v in zip(ARM_JOINTS, q):
            self.p.resetJointState(self.body, j, float(v))

    def q(self) -> np.ndarray:
        return np.array([s[0] for s in self.p.getJointStates(self.body, ARM_JOINTS)])

    def tip_pose(self) -> tuple[np.ndarray, float]:
        s = self.p.getLinkState(self.body, self.tip, computeForwardKinematics=True)
        x_axis = np.array(self.p.getMatrixFromQuaternion(s[5])).reshape(3, 3)[:, 0]
        return np.array(s[4]), float(math.atan2(x_axis[1], x_axis[0]))  # yaw of the tip's x axis

    @staticmethod
    def down(yaw: float, tilt=(0.0, 0.0), lean=None):
        """Tip pointing down, turned by ``yaw`` about the world z axis, then tilted by ``tilt`` = (roll, pitch)
        about the tip's own x and y axes, then rotated by ``lean`` (a world-frame quaternion, None: identity).

        ``lean`` is how the env executes a full-orientation place: it turns the held object rigidly about
        world axes through the tip, whatever yaw the arm chose for the tip (suction is symmetric about it)."""
        level = p.getQuaternionFromEuler((math.pi, 0.0, float(yaw)))
        if any(tilt):
            level = p.multiplyTransforms((0, 0, 0), level, (0, 0, 0),
                                         p.getQuaternionFromEuler((float(tilt[0]), float(tilt[1]), 0.0)))[1]
        if lean is None:
            return level
        return p.multiplyTransforms((0, 0, 0), tuple(map(float, lean)), (0, 0, 0), level)[1]

    def ik(self, pos, yaw: float, iterations: int = IK_ITERATIONS, tilt=(0.0, 0.0), lean=None) -> np.ndarray:
        """Joint targets for a tip pose, from the arm's current joints (PyBullet's damped least squares).

        Without null-space terms: measured on 60 random workspace poses, passing joint limits and rest poses
        (PyBullet's null-space variant) left the tip 6-12 mm off on average, the plain solver 1 mm; its few
        out-of-range joints are clipped. (PyBullet's ``currentPositions`` seed is not used: with it the solver
        stops refining and a chain of waypoints drifted by centimetres.)
        """
        q = self.p.calculateInverseKinematics(self.body, self.tip, [float(v) for v in pos], self.down(yaw, tilt, lean),
                                              jointDamping=[IK_DAMPING] * 7, maxNumIterations=iterations,
                                              residualThreshold=1e-6)
        return np.clip(np.array(q[:7]), LOWER, UPPER)

    def _solve_home(self) -> np.ndarray:
        self._set_q((0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8))
        for _ in range(5):  # IK from the current state, iterated: converges where one call does not
            self._set_q(self.ik(HOME_TIP, YAW_CENTRE, iterations=200))
        return self.q()

    def home(self) -> None:
        """Teleport to the home pose (reset only: between episodes, never during one)."""
        self.release()
        self._set_q(self._home_q)
        for j in ARM_JOINTS:
            self.p.resetJointState(self.body, j, float(self._home_q[j]), 0.0)
        self._drive(self._home_q)

    def _drive(self, target) -> None:
        self.target = np.asarray(target, dtype=float)
        self.p.setJointMotorControlArray(self.body, ARM_JOINTS, p.POSITION_CONTROL, targetPositions=self.target,
                                         forces=FORCES)

    def get_state(self) -> list[float]:
        """Joint positions, velocities and motor targets (7 each): between primitives nothing is held."""
        states = self.p.getJointStates(self.body, ARM_JOINTS)
        return [s[0] for s in states] + [s[1] for s in states] + list(self.target)

    def set_state(self, state) -> None:
        state = np.asarray(state, dtype=float)
        if state.shape != (21,):
            raise ValueError(f"arm state must be 21 floats (q, dq, motor targets), got shape {state.shape}")
        self.release()
        for j, q, dq in zip(ARM_JOINTS, state[:7], state[7:14]):
            self.p.resetJointState(self.body, j, float(q), float(dq))
        self._drive(state[14:21])

    # -- contacts and suction ------------------------------------------------------------------------
    def arm_collision(self, ignore: set[int] = frozenset()) -> bool:
        """A contact between any arm link except the tip and anything but the arm itself."""
        return any(c[3] != self.tip and c[2] != self.body and c[2] not in ignore
                   for c in self.p.getContactPoints(bodyA=self.body))

    def tip_contacts(self) -> list[int]:
        return [c[2] for c in self.p.getContactPoints(bodyA=self.body, linkIndexA=self.tip) if c[2] != self.body]

    def suction_on(self, movable: set[int]) -> int | None:
        """Attach the movable body the tip touches (fixed constraint at the current relative pose); None if none."""
        touched = [b for b in self.tip_contacts() if b in movable]
        if not touched:
            return None
        body = touched[0]
        # constraint frames are relative to the parent link's centre of mass (getLinkState's first pose)
        s = self.p.getLinkState(self.body, self.tip)
        obj_pos, obj_quat = self.p.getBasePositionAndOrientation(body)
        inv_pos, inv_quat = self.p.invertTransform(s[0], s[1])
        rel_pos, rel_quat = self.p.multiplyTransforms(inv_pos, inv_quat, obj_pos, obj_quat)
        self.constraint = self.p.createConstraint(self.body, self.tip, body, -1, p.JOINT_FIXED, (0, 0, 0),
                                                  rel_pos, (0, 0, 0), rel_quat, (0, 0, 0, 1))
        self.p.changeConstraint(self.constraint, maxForce=100.0)
        self.held = body
        return body

    def release(self) -> None:
        if self.constraint is not None:
            self.p.removeConstraint(self.constraint)
        self.constraint, self.held = None, None

    def held_contacts(self) -> list[int]:
        """Bodies (other than the arm) the carried object touches."""
        if self.held is None:
            return []
        return [c[2] for c in self.p.getContactPoints(bodyA=self.held) if c[2] != self.body]

    # -- motion ----------------------------------------------------------------------------------------
    def plan(self, pos, yaw: float, spacing: float, tilt=(0.0, 0.0), start_tilt=(0.0, 0.0), lean=None,
             start_lean=None) -> tuple[np.ndarray, np.ndarray]:
        """Joint waypoints along the straight tip path to ``pos`` (yaw and tilt interpolated, lean slerped), one
        per ``spacing`` metres, each IK solve seeded with the previous one; and the Cartesian points they aim at."""
        ident = (0.0, 0.0, 0.0, 1.0)
        lean0, lean1 = start_lean or ident, lean or ident
        leaning = lean is not None or start_lean is not None
        tilt0, tilt1 = np.asarray(start_tilt, dtype=float), np.asarray(tilt, dtype=float)
        start, yaw0 = self.tip_pose()
        goal = np.asarray(pos, dtype=float)
        dyaw = float((yaw - yaw0 + math.pi) % (2 * math.pi) - math.pi)
        n = max(1, int(math.ceil(max(np.linalg.norm(goal - start) / spacing, abs(dyaw) / 0.3))))
        states = self.p.getJointStates(self.body, ARM_JOINTS)
        qs, pts = [], []
        # each solve starts from the previous waypoint's joints (set kinematically, restored below: planning
        # leaves the simulation as it found it)
        for i in range(1, n + 1):
            f = i / n
            pt = start + f * (goal - start)
            lean_f = p.getQuaternionSlerp(lean0, lean1, f) if leaning else None
            qs.append(self.ik(pt, yaw0 + f * dyaw, tilt=tuple(tilt0 + f * (tilt1 - tilt0)), lean=lean_f))
            pts.append(pt)
            self._set_q(qs[-1])
        for _ in range(2):  # refine the end: it is where the object is picked or released
            qs[-1] = self.ik(goal, yaw, iterations=100, tilt=tuple(tilt1), lean=lean1 if leaning else None)
            self._set_q(qs[-1])
        for j, st in zip(ARM_JOINTS, states):
            self.p.resetJointState(self.body, j, st[0], st[1])
        return np.array(qs), np.array(pts)

    def move(self, pos, yaw: float, speed: float = MOVE_SPEED, until=None, ignore: set[int] = frozenset(),
             spacing: float = 0.03, check_reach: bool = True, tilt=(0.0, 0.0), start_tilt=(0.0, 0.0),
             lean=None, start_lean=None) -> str | None:
        """Move the tip to ``pos`` along joint-space segments between IK waypoints on the straight line (Ravens
        moves in joint space to IK targets too); stop early when ``until()`` is true.

        Returns None on arrival (or an ``until`` stop), "collision" or "unreachable".
        """
        qs, pts = self.plan(pos, yaw, spacing, tilt, start_tilt, lean, start_lean)
        q0, prev = self.q(), self.tip_pose()[0]
        for q1, pt in zip(qs, pts):
            n = max(1, int(math.ceil(np.linalg.norm(pt - prev) / (speed / 240.0))))
            n = max(n, int(math.ceil(np.abs(q1 - q0).max() / (2.0 / 240.0))))  # joints turn at <= 2 rad/s
            for k in range(1, n + 1):
                self._drive(q0 + (k / n) * (q1 - q0))
                if (err := self._step(until, ignore)) is not False:
                    return err
            q0, prev = q1, pt
        goal = np.asarray(pos, dtype=float)
        for _ in range(SETTLE_MOVE):  # the motors lag their targets: let them arrive
            if np.linalg.norm(self.tip_pose()[0] - goal) < 2e-3:
                return None
            if (err := self._step(until, ignore)) is not False:
                return err
        if check_reach and np.linalg.norm(self.tip_pose()[0] - goal) > REACH_TOL:
            return "unreachable"
        return None

    def _step(self, until, ignore) -> str | None | bool:
        """One physics step; "collision", None (``until`` fired) or False (carry on)."""
        self.p.stepSimulation()
        self.steps += 1
        if self.arm_collision(ignore):
            return "collision"
        if until is not None and until():
            return None
        return False

    def pick_and_place(self, pick_xy, pick_yaw: float, place_xyz, place_yaw: float,
                       movable: set[int], place_tilt=(0.0, 0.0), place_lean=None) -> PrimitiveResult:
        """Run the primitive; ``movable``: the bodies suction may hold; ``place_tilt``: (roll, pitch) of the tip
        at the place, about its own axes; ``place_lean``: a world-frame quaternion turning the tip (and the held
        object) at the place (the tip tilts on the way to the place and levels on the way home).

        With a lean the last approach and the retreat run along the leaned tip axis (Ravens' 6-DoF places
        approach along the place pose's z axis too): a block meets a tilted socket square-on."""
        tilt = (float(place_tilt[0]), float(place_tilt[1]))
        lean = None if place_lean is None else tuple(float(v) for v in place_lean)
        self.steps = 0
        res = PrimitiveResult()
        # suction is symmetric about the tip axis: only the yaw change matters, so split it evenly about
        # YAW_CENTRE (tip yaws in [0, pi]), which keeps the wrist joint inside its range
        dyaw = float((place_yaw - pick_yaw + math.pi) % (2 * math.pi) - math.pi)
        yaw_pick, yaw_place = YAW_CENTRE - dyaw / 2, YAW_CENTRE + dyaw / 2
        px, py = float(pick_xy[0]), float(pick_xy[1])
        tx, ty, tz = (float(v) for v in place_xyz)
        place = np.array([tx, ty, tz])
        # the place approach point: straight above, or back along the leaned tip axis up to the hover height
        if lean is None:
            approach = np.array([tx, ty, HOVER_Z])
        else:
            axis = np.array(p.getMatrixFromQuaternion(lean))[[2, 5, 8]]  # the leaned world z axis
            # at most 8 cm back: a hover-height point up to 30 degrees off vertical left the Panda's reach
            approach = place + axis * min(max(HOVER_Z - tz, 0.0) / max(axis[2], 0.2), AXIAL_APPROACH)

        def stop(failure):
            res.failure, res.steps = failure, self.steps
            self.release()
            return res

        for target, yaw in (((px, py, HOVER_Z), yaw_pick),):
            if (err := self.move(target, yaw)) is not None:
                return stop(err)
        # descend until the tip touches anything (down to the table)
        err = self.move((px, py, -0.005), yaw_pick, DESCEND_SPEED, until=lambda: bool(self.tip_contacts()),
                        spacing=0.01, check_reach=False)
        if err == "collision":
            return stop(err)
        if self.suction_on(movable) is None:
            self.move((px, py, HOVER_Z), yaw_pick)
            self._go_home()
            return stop("grasp")
        res.grasped = self.held
        ignore = {self.held}
        if (err := self.move((px, py, HOVER_Z), yaw_pick, ignore=ignore)) is not None:
            return stop(err)
        if (err := self.move(approach, yaw_place, ignore=ignore, tilt=tilt, lean=lean)) is not None:
            return stop(err)
        held = self.held
        err = self.move(place, yaw_place, DESCEND_SPEED, until=lambda: bool(self.held_contacts()),
                        ignore=ignore, spacing=0.01, tilt=tilt, start_tilt=tilt, lean=lean, start_lean=lean)
        self.release()
        if err == "collision":
            return stop(err)
        if (err := self.move(approach, yaw_place, ignore={held}, tilt=tilt, start_tilt=tilt, lean=lean,
                             start_lean=lean)) is not None:
            return stop(err)
        if (err := self._go_home(start_tilt=tilt, start_lean=lean)) is not None:
            return stop(err)
        res.steps = self.steps
        return res

    def _go_home(self, start_tilt=(0.0, 0.0), start_lean=None) -> str | None:
        # only needs to leave the cameras' view: no reach check
        return self.move(HOME_TIP, YAW_CENTRE, check_reach=False, start_tilt=start_tilt, start_lean=start_lean)
