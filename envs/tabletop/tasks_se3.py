"""Tabletop tasks whose place is not level: a block into a tilted socket, a bar leaned on a ramp between rails.

Both are *seated placements*: a static fixture at a random tilt (15-30 degrees about a horizontal axis) holds a
seat -- a pocket whose walls leave a few millimetres of clearance -- and success is the object resting in the
seat, checked in position (3-D) and orientation (the object's face normal against the seat normal, and its
yaw about that normal modulo the object's symmetry). A level place cannot seat the object: it meets the tilted
walls with an edge and jams or falls off (``results/transporter.json`` quotes how often the level oracle
succeeds anyway). The action carries the place roll and pitch (9 floats, ``base.py``); the arm executes them
and approaches along the tilted tip axis.
"""
from __future__ import annotations

import math

import numpy as np
import pybullet as p

from symgym.envs.tabletop.base import ARGUMENTS_DOC, TabletopEnv
from symgym.envs.tabletop.oracles import RELEASE_GAP
from symgym.envs.tabletop.scene import WORKSPACE_HALF, place_quat, wrap_angle, yaw_quat

POS_TOL = 0.015                  # m, the seated object's centre against the seat's (3-D)
TILT_TOL = math.radians(8.0)     # the object's face normal against the seat normal
YAW_TOL = math.radians(15.0)     # yaw about the seat normal, modulo the object's symmetry
TILT_RANGE = (math.radians(15.0), math.radians(30.0))
WALL = 0.003                     # half thickness of socket walls and rails (m)


def rotation(quat) -> np.ndarray:
    return np.array(p.getMatrixFromQuaternion(quat)).reshape(3, 3)


def tilted(axis_angle: float, tilt: float, yaw: float):
    """Quaternion of ``S Rz(yaw)``: yawed, then tilted by ``tilt`` about the horizontal world axis at angle
    ``axis_angle`` from x."""
    axis = (math.cos(axis_angle), math.sin(axis_angle), 0.0)
    return p.multiplyTransforms((0, 0, 0), p.getQuaternionFromAxisAngle(axis, tilt), (0, 0, 0), yaw_quat(yaw))[1]


def lift_to_table(orn, boxes) -> float:
    """Height of the body origin that puts the lowest corner of its boxes 1 mm above the table."""
    r = rotation(orn)
    low = min((r @ (np.array(off) + np.array(s) * half))[2]
              for half, off in boxes for s in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3))
    return 0.001 - float(low)


class SeatedPlacementEnv(TabletopEnv):
    """Shared credit and oracle: object ``"object"`` into the seat of fixture ``"fixture"``."""

    se3_place = True
    oracle_steps = 1

    def seat(self) -> tuple[np.ndarray, np.ndarray]:
        """(seat centre (3,), seat rotation (3, 3)): the fixture frame's origin and axes (z: the seat normal)."""
        pos, quat = self.scene.p.getBasePositionAndOrientation(self.scene.objects["fixture"].body)
        return np.array(pos), rotation(quat)

    def seat_errors(self) -> tuple[float, float, float]:
        """(position error (m), tilt error (rad), yaw error about the normal (rad)) of the object in the seat."""
        info = self.scene.objects["object"]
        pos, quat = self.scene.p.getBasePositionAndOrientation(info.body)
        ob = rotation(quat)
        centre, r = self.seat()
        n = r[:, 2]
        # the object's face closest to the seat normal is the one it rests on (a tumbled cube may seat too)
        k = int(np.argmax(np.abs(ob.T @ n)))
        tilt = math.acos(min(1.0, abs(float(ob[:, k] @ n))))
        half_up = info.size[k]
        pos_err = float(np.linalg.norm(np.array(pos) - (centre + half_up * n)))
        side = r.T @ ob[:, (k + 1) % 3]
        period = 2 * math.pi / info.yaw_order
        d = math.atan2(side[1], side[0]) % period
        return pos_err, tilt, min(d, period - d)

    def _credit(self) -> float:
        pos_err, tilt, yaw = self.seat_errors()
        return 1.0 if pos_err < POS_TOL and tilt < TILT_TOL and yaw < YAW_TOL else 0.0

    def oracle_action(self, level: bool = False) -> np.ndarray | None:
        """Pick the object at its top centre (gripper yaw = object yaw), place it seated: the gripper frame
        becomes the seat frame turned by the symmetric copy of the object's yaw closest to its current one.
        ``level=True``: the same place with roll = pitch = 0 (how a planar agent would do at best)."""
        if self._credit() >= 1.0:
            return None
        info = self.scene.objects["object"]
        pos, quat = self.scene.p.getBasePositionAndOrientation(info.body)
        pick_yaw = float(p.getEulerFromQuaternion(quat)[2])
        centre, r = self.seat()
        fquat = self.scene.p.getBasePositionAndOrientation(self.scene.objects["fixture"].body)[1]
        period = 2 * math.pi / info.yaw_order
        best = None
        for k in range(info.yaw_order):
            q = p.multiplyTransforms((0, 0, 0), fquat, (0, 0, 0), yaw_quat(k * period))[1]
            roll, pitch, yaw = p.getEulerFromQuaternion(q)
            cost = abs(float(wrap_angle(yaw - pick_yaw)))
            if best is None or cost < best[0]:
                best = (cost, roll, pitch, yaw)
        _, roll, pitch, yaw = best
        top = centre + (2 * info.size[2] + RELEASE_GAP) * r[:, 2]
        if level:
            roll = pitch = 0.0
            top = centre + np.array([0.0, 0.0, 2 * info.size[2] + RELEASE_GAP])
        return np.array([pos[0], pos[1], wrap_angle(pick_yaw), top[0], top[1], top[2], wrap_angle(yaw), roll, pitch],
                        np.float32)


_SPACES_DOC = """
    ## Action Space

    ``Box((9,), float32)``: one suction pick-and-place primitive per step, executed by a Franka Panda with a
    suction tip (``arm.py``). The gripper frame moves from ``Rz(pick yaw)`` to ``Rz(place yaw) Ry(place pitch)
    Rx(place roll)`` and the held object with it; the tip approaches the place along its tilted axis, descends
    until the object touches something or the tip reaches the place point, releases, returns home. A 7-float
    (level) action is accepted too. Angles are wrapped to [-pi, pi), then the action is clipped to the box.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | pick point x, y (the tip descends there until contact) | m, in [-0.25, 0.25] |
    | 2 | gripper yaw at pick | rad |
    | 3-5 | place point x, y, z of the suction tip | m (z in [0, 0.3]) |
    | 6 | gripper yaw at place | rad |
    | 7-8 | gripper roll and pitch at place (about its yawed x, then y axes) | rad, in [-pi/4, pi/4] |

    ## Observation Space

    ``Dict``: a top-down orthographic view of the 0.5 m x 0.5 m workspace fused from three simulated RGB-D
    cameras (``image_size`` S, default 64: 7.8 mm per pixel).

    | key | meaning | unit |
    |---|---|---|
    | ``"color"`` (S, S, 3) uint8 | colour of the highest point per cell | RGB 0-255 |
    | ``"height"`` (S, S, 1) float32 | height of the highest point per cell above the table, clipped to [0, 1] | m |
"""

_COMMON_DOC = """
    ## Episode End

    Terminates on success or on a failed primitive (``info["failure"]``: a grasp that touched nothing
    movable, an arm collision, an unreachable target); truncated after 2 steps (the oracle needs 1).

""" + ARGUMENTS_DOC + """    ## Symmetry

    Group: SE(2) of the workspace, as for the planar tabletop tasks: images rotate and shift as pictures; pick
    and place x, y rotate and shift, yaws add the angle; the place height, roll and pitch (gripper frame) are
    invariant. Declared exact while every object stays in the workspace and the arm can reach the targets.

    ## Version History

    * v0: initial release.
"""


class TiltedInsertionEnv(SeatedPlacementEnv):
    __doc__ = """Insert a 4 cm cube into a square socket tilted 15-30 degrees about a random horizontal axis.

    The socket (3 mm clearance a side, 2.5 cm walls) stands on the table at a uniform yaw; its seat normal
    leans by the tilt, so the cube must be placed rolled and pitched to match (C4 about the normal).
""" + _SPACES_DOC + """
    ## Rewards

    1 when the cube rests in the socket: centre within 1.5 cm of the seated centre, face normal within 8 degrees
    of the seat normal, yaw about it within 15 degrees modulo 90; else 0.

    ## Starting State

    A red cube on the table and the grey socket (tilt uniform in [15, 30] degrees about a horizontal axis at a
    uniform angle, uniform yaw) at non-overlapping poses, settled for 60 physics steps.
""" + _COMMON_DOC

    INNER = 0.023    # socket inner half width: a 4 cm cube plus 3 mm a side
    WALL_H = 0.025

    def _boxes(self) -> list[tuple]:
        a, h, o = self.INNER, self.WALL_H / 2, self.INNER + 2 * WALL
        return [((o, o, 0.005), (0, 0, -0.005)),
                ((WALL, o, h), (a + WALL, 0, h)), ((WALL, o, h), (-a - WALL, 0, h)),
                ((a, WALL, h), (0, a + WALL, h)), ((a, WALL, h), (0, -a - WALL, h))]

    def _build(self, rng):
        (bxy, byaw), (fxy, fyaw) = self._sample_poses(rng, [0.03, 0.055])
        orn = tilted(rng.uniform(-math.pi, math.pi), rng.uniform(*TILT_RANGE), fyaw)
        boxes = self._boxes()
        self.scene.add_fixture("fixture", "grey", (fxy[0], fxy[1], lift_to_table(orn, boxes)), orn, boxes,
                               "socket", (self.INNER, self.INNER, self.WALL_H), 4)
        self.scene.add_block("object", "red", bxy, byaw)


class RampLeanEnv(SeatedPlacementEnv):
    __doc__ = """Lean an 8 x 4 x 2 cm bar on a ramp: into the recess between its rails, its stop and its lip.

    The ramp (a slab sloping 15-30 degrees up along its own x axis, at a uniform yaw) carries a recess 2 mm
    longer and wider than the bar a side and 2 cm deep (rails along the slope, a lip at the low end, a stop at
    the high end); the bar must lie on the slope, long axis up the slope (C2 about the ramp normal). Unlike the
    socket, the tilt axis is tied to the ramp's yaw and the object is long: a level bar spans the recess's
    horizontal footprint (its ends meet the lip and the stop).
""" + _SPACES_DOC + """
    ## Rewards

    1 when the bar lies in the recess: centre within 1.5 cm of the recess's, face normal within 8 degrees of
    the ramp normal, yaw about it within 15 degrees modulo 180; else 0.

    ## Starting State

    A blue bar on the table and the grey ramp (slope uniform in [15, 30] degrees, uniform yaw) at
    non-overlapping poses, settled for 60 physics steps.
""" + _COMMON_DOC

    BAR = (0.04, 0.02, 0.01)
    CLEAR = 0.002
    RAIL_H = 0.02

    def _boxes(self) -> list[tuple]:
        bx, by = self.BAR[0] + self.CLEAR, self.BAR[1] + self.CLEAR
        h, ox, oy = self.RAIL_H / 2, bx + 2 * WALL, by + 2 * WALL
        return [((ox + 0.02, oy, 0.01), (0.0, 0, -0.01)),                           # the ramp's slab
                ((WALL, oy, h), (-bx - WALL, 0, h)), ((WALL, oy, h), (bx + WALL, 0, h)),   # lip and stop
                ((bx, WALL, h), (0, by + WALL, h)), ((bx, WALL, h), (0, -by - WALL, h))]   # rails

    def _build(self, rng):
        (bxy, byaw), (fxy, fyaw) = self._sample_poses(rng, [0.045, 0.07])
        slope = rng.uniform(*TILT_RANGE)
        # up the slope along the ramp's own x axis: a tilt about its y axis, which points at fyaw + 90 degrees
        orn = tilted(fyaw + math.pi / 2, -slope, fyaw)
        boxes = self._boxes()
        self.scene.add_fixture("fixture", "grey", (fxy[0], fxy[1], lift_to_table(orn, boxes)), orn, boxes,
                               "ramp", (self.BAR[0] + self.CLEAR, self.BAR[1] + self.CLEAR, self.RAIL_H), 2)
        self.scene.add_block_box("object", "blue", bxy, byaw, self.BAR, 2)


SE3_IDS = {"TabletopTiltedInsertion-v0": TiltedInsertionEnv, "TabletopRampLean-v0": RampLeanEnv}
__all__ = ["SeatedPlacementEnv", "TiltedInsertionEnv", "RampLeanEnv", "SE3_IDS", "place_quat", "WORKSPACE_HALF"]
