"""PyBullet tabletop scene: primitive-shape objects on a table and a suction pick-and-place primitive.

The world frame has the table top at z = 0 and the square workspace centred on the origin, so an
``SE2Element`` acts on world x, y directly. ``execute`` runs one pick-and-place primitive, by default with the
Franka Panda and its suction tip (``arm.py``: contact, a suction constraint, objects carried by physics). With
``arm=False`` the gripper is the older *teleporting* primitive, kept as a fast stand-in for tests: a pick casts
a ray straight down at the pick (x, y); if it hits a movable object, that object is attached with the rigid
transform between the gripper frame (hit point, yaw ``pick_yaw``) and the object. A place moves the gripper
frame to (x, y, z, ``place_yaw``), puts the object at ``gripper * grasp``, releases it and lets physics settle it.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import pybullet as p
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from symgym.envs.tabletop.arm import SuctionPanda

#: workspace half-width (m); the workspace is [-W, W]^2 on the table top
WORKSPACE_HALF = 0.25
COLORS = {
    "red": (0.85, 0.15, 0.15, 1.0), "green": (0.15, 0.75, 0.25, 1.0), "blue": (0.15, 0.35, 0.9, 1.0),
    "yellow": (0.95, 0.85, 0.1, 1.0), "purple": (0.6, 0.2, 0.75, 1.0), "orange": (1.0, 0.55, 0.1, 1.0),
    "grey": (0.55, 0.55, 0.55, 1.0), "table": (0.3, 0.3, 0.32, 1.0),
}
SETTLE_STEPS = 240  # 1 s at PyBullet's default 240 Hz: enough for a dropped block to come to rest


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return p.getQuaternionFromEuler((0.0, 0.0, float(yaw)))


def place_quat(yaw: float, roll: float = 0.0, pitch: float = 0.0) -> tuple[float, float, float, float]:
    """The gripper orientation an action names at the place: ``Rz(yaw) Ry(pitch) Rx(roll)`` (PyBullet's Euler
    convention); roll = pitch = 0 is the planar gripper turned by ``yaw``."""
    return p.getQuaternionFromEuler((float(roll), float(pitch), float(yaw)))


def place_lean(yaw: float, roll: float, pitch: float):
    """World-frame rotation ``Rz(yaw) Ry(pitch) Rx(roll) Rz(-yaw)`` that tilts the yawed gripper to the place
    orientation; None when there is no tilt (a planar place)."""
    if roll == 0.0 and pitch == 0.0:
        return None
    return p.multiplyTransforms((0, 0, 0), place_quat(yaw, roll, pitch), (0, 0, 0), yaw_quat(-yaw))[1]


def quat_yaw(quat) -> float:
    return float(p.getEulerFromQuaternion(quat)[2])


def wrap_angle(a):
    """Angle(s) in [-pi, pi)."""
    return (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi


def yaw_error(a: float, b: float, symmetry_order: int) -> float:
    """Smallest |a - b| modulo 2*pi/order: an object with ``order``-fold rotational symmetry (0 = round)."""
    if symmetry_order == 0:
        return 0.0
    period = 2 * math.pi / symmetry_order
    d = (a - b) % period
    return float(min(d, period - d))


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level writes to stdout (file descriptor 1) for the duration of the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


@dataclass
class ObjectInfo:
    """What the tasks and oracles know about a body (privileged: oracles only)."""

    body: int
    kind: str            # "block", "lblock", "bowl", "pad", "lpad"
    color: str
    movable: bool
    size: tuple          # half extents (boxes) or (radius, height) (bowls)
    yaw_order: int       # rotational symmetry order about z: 4 for cubes, 1 for L shapes, 0 for round


class TabletopScene:
    """One PyBullet DIRECT client holding a table and the task's objects."""

    def __init__(self, arm: bool = True) -> None:
        with _quiet_stdout():   # the C library prints 'argv[0]=' on every DIRECT connect
            self.p = BulletClient(connection_mode=p.DIRECT)
        self.p.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.objects: dict[str, ObjectInfo] = {}
        self.use_arm = bool(arm)
        self.arm: SuctionPanda | None = None
        self.reset()

    # -- building ---------------------------------------------------------------------
    def reset(self) -> None:
        self.p.resetSimulation()
        self.p.setGravity(0, 0, -9.81)
        # pybullet_data's plane is the table; its checker texture would make the observation depend on
        # absolute position, so it is painted one flat colour.
        self.table = self.p.loadURDF("plane.urdf", basePosition=(0, 0, 0))
        self.p.changeVisualShape(self.table, -1, textureUniqueId=-1, rgbaColor=COLORS["table"])
        self.p.changeDynamics(self.table, -1, lateralFriction=0.8)
        self.objects = {}
        # reloaded with the world on every reset (~20 ms): a fresh simulation keeps episodes reproducible by seed
        self.arm = SuctionPanda(self.p, self.table) if self.use_arm else None

    def _multibody(self, name: str, boxes: list[tuple], color: str, mass: float, pos, yaw: float,
                   kind: str, size: tuple, yaw_order: int, orn=None) -> int:
        """A rigid body made of boxes ``(half_extents, offset)`` (compound shapes for L blocks and bowls)."""
        half = [b[0] for b in boxes]
        offs = [b[1] for b in boxes]
        col = self.p.createCollisionShapeArray([p.GEOM_BOX] * len(boxes), halfExtents=half, collisionFramePositions=offs)
        vis = self.p.createVisualShapeArray([p.GEOM_BOX] * len(boxes), halfExtents=half, visualFramePositions=offs,
                                            rgbaColors=[COLORS[color]] * len(boxes))
        body = self.p.createMultiBody(mass, col, vis, basePosition=pos,
                                      baseOrientation=yaw_quat(yaw) if orn is None else orn)
        self.p.changeDynamics(body, -1, lateralFriction=0.8, spinningFriction=0.001, restitution=0.0)
        self.objects[name] = ObjectInfo(body, kind, color, mass > 0, size, yaw_order)
        return body

    def add_block(self, name: str, color: str, xy, yaw: float, half: float = 0.02) -> int:
        return self._multibody(name, [((half, half, half), (0, 0, 0))], color, 0.05, (xy[0], xy[1], half), yaw,
                               "block", (half, half, half), 4)

    def add_pad(self, name: str, color: str, xy, yaw: float, half: float = 0.03, thick: float = 0.0025) -> int:
        """A static square target pad."""
        return self._multibody(name, [((half, half, thick), (0, 0, 0))], color, 0.0, (xy[0], xy[1], thick), yaw,
                               "pad", (half, half, thick), 4)

    @staticmethod
    def l_boxes(half_height: float, grow: float = 0.0) -> list[tuple]:
        """An L footprint in its body frame: a 8x3 cm bar along x plus a 3x5 cm foot at its -x end."""
        return [((0.04 + grow, 0.015 + grow, half_height), (0.0, 0.0, 0.0)),
                ((0.015 + grow, 0.025, half_height), (-0.025, 0.04, 0.0))]

    def add_lblock(self, name: str, color: str, xy, yaw: float, half_height: float = 0.02) -> int:
        return self._multibody(name, self.l_boxes(half_height), color, 0.08, (xy[0], xy[1], half_height), yaw,
                               "lblock", (0.04, 0.065, half_height), 1)

    def add_lpad(self, name: str, color: str, xy, yaw: float, thick: float = 0.005) -> int:
        """The insertion fixture: a static L-shaped pad slightly larger than the L block."""
        return self._multibody(name, self.l_boxes(thick, grow=0.004), color, 0.0, (xy[0], xy[1], thick), yaw,
                               "lpad", (0.044, 0.069, thick), 1)

    def add_block_box(self, name: str, color: str, xy, yaw: float, half: tuple, yaw_order: int,
                      mass: float = 0.06) -> int:
        """A movable box with half extents ``half`` resting on the table (a bar or tile; cubes: ``add_block``)."""
        return self._multibody(name, [(tuple(half), (0, 0, 0))], color, mass, (xy[0], xy[1], half[2]), yaw,
                               "block", tuple(half), yaw_order)

    def add_fixture(self, name: str, color: str, pos, orn, boxes: list[tuple], kind: str, size: tuple,
                    yaw_order: int) -> int:
        """A static compound fixture at any orientation (a tilted socket, a ramp with rails). Its body frame's
        origin is the centre of the seat surface and its z axis the seat normal; ``size``: the seat's inner
        half extents and the wall height."""
        return self._multibody(name, boxes, color, 0.0, pos, 0.0, kind, tuple(size), yaw_order, orn=orn)

    def add_bowl(self, name: str, color: str, xy, radius: float = 0.06, wall_height: float = 0.03,
                 n_walls: int = 14) -> int:
        """A static bowl: a thin floor plus a ring of wall pillars (PyBullet allows <= 16 visual shapes)."""
        floor = 0.0025
        boxes = [((radius * 0.75, radius * 0.75, floor), (0.0, 0.0, 0.0))]
        # The wall is a ring of axis-aligned square pillars: PyBullet crashes on per-shape orientations in
        # visual shape arrays, and square pillars spaced closer than a block's width keep blocks in.
        pillar = math.pi * radius / n_walls + 0.001
        for k in range(n_walls):
            a = 2 * math.pi * k / n_walls
            boxes.append(((pillar, pillar, wall_height / 2), (radius * math.cos(a), radius * math.sin(a),
                                                               wall_height / 2 - floor)))
        half = [b[0] for b in boxes]
        offs = [b[1] for b in boxes]
        col = self.p.createCollisionShapeArray([p.GEOM_BOX] * len(boxes), halfExtents=half,
                                               collisionFramePositions=offs)
        vis = self.p.createVisualShapeArray([p.GEOM_BOX] * len(boxes), halfExtents=half, visualFramePositions=offs,
                                            rgbaColors=[COLORS[color]] * len(boxes))
        body = self.p.createMultiBody(0.0, col, vis, basePosition=(xy[0], xy[1], floor))
        self.objects[name] = ObjectInfo(body, "bowl", color, False, (radius, wall_height), 0)
        return body

    # -- state --------------------------------------------------------------------------
    def pose(self, name: str) -> tuple[np.ndarray, float, np.ndarray]:
        """(position (3,), yaw, quaternion (4,)) of an object."""
        pos, quat = self.p.getBasePositionAndOrientation(self.objects[name].body)
        return np.array(pos), quat_yaw(quat), np.array(quat)

    def get_state(self) -> dict[str, list[float]]:
        """Object name -> [x, y, z, qx, qy, qz, qw, vx, vy, vz, wx, wy, wz] (pose, then world velocities)."""
        out = {}
        for n, o in self.objects.items():
            pos, quat = self.p.getBasePositionAndOrientation(o.body)
            lin, ang = self.p.getBaseVelocity(o.body)
            out[n] = [*pos, *quat, *lin, *ang]
        return out

    def set_state(self, state: dict[str, list[float]]) -> None:
        unknown = set(state) - set(self.objects)
        if unknown:
            raise ValueError(f"state names unknown objects {sorted(unknown)}; scene has {sorted(self.objects)}")
        for name, v in state.items():
            body = self.objects[name].body
            self.p.resetBasePositionAndOrientation(body, v[:3], v[3:7])
            vel = list(v[7:13]) if len(v) >= 13 else [0.0] * 6  # a pose-only state is an object at rest
            self.p.resetBaseVelocity(body, vel[:3], vel[3:6])
        if self.arm is not None:
            self.arm.home()

    def settle(self, steps: int = SETTLE_STEPS) -> None:
        for _ in range(steps):
            self.p.stepSimulation()

    # -- suction primitive ----------------------------------------------------------------
    def ray_down(self, x: float, y: float) -> tuple[str | None, float]:
        """Name of the first object hit by a vertical ray at (x, y) (None for the table) and the hit height."""
        hit = self.p.rayTest((x, y, 1.0), (x, y, -0.01))[0]
        body, z = hit[0], hit[3][2]
        for name, info in self.objects.items():
            if info.body == body:
                return name, float(z)
        return None, float(max(z, 0.0))

    def name_of(self, body: int | None) -> str | None:
        return next((n for n, o in self.objects.items() if o.body == body), None)

    def execute(self, pick_xy, pick_yaw: float, place_xyz, place_yaw: float, place_tilt=(0.0, 0.0)
                ) -> tuple[str | None, str | None]:
        """One pick-and-place: (name of the grasped object or None, failure or None), then physics settles.

        ``place_tilt`` = (roll, pitch): the gripper frame moves from ``place_quat(pick_yaw)`` to
        ``place_quat(place_yaw, roll, pitch)`` and the held object moves rigidly with it.

        Failures (arm only): "grasp" (the tip touched nothing movable), "collision" (an arm link other than the
        tip touched something), "unreachable" (the tip could not get within 1 cm of a target).
        """
        roll, pitch = float(place_tilt[0]), float(place_tilt[1])
        if self.arm is None:
            name = self.pick_and_place(pick_xy, pick_yaw, place_xyz, place_yaw, (roll, pitch))
            return name, None
        movable = {o.body for o in self.objects.values() if o.movable}
        res = self.arm.pick_and_place(pick_xy, pick_yaw, place_xyz, place_yaw, movable,
                                      place_lean=place_lean(float(place_yaw), roll, pitch))
        self.settle(SETTLE_STEPS // 2)
        return self.name_of(res.grasped), res.failure

    def pick_and_place(self, pick_xy, pick_yaw: float, place_xyz, place_yaw: float, place_tilt=(0.0, 0.0)
                       ) -> str | None:
        """The teleporting suction primitive; returns the name of the moved object, or None when the pick missed."""
        name, z = self.ray_down(float(pick_xy[0]), float(pick_xy[1]))
        if name is None or not self.objects[name].movable:
            return None
        body = self.objects[name].body
        obj_pos, obj_quat = self.p.getBasePositionAndOrientation(body)
        grip_pos, grip_quat = (float(pick_xy[0]), float(pick_xy[1]), z), yaw_quat(pick_yaw)
        inv_pos, inv_quat = self.p.invertTransform(grip_pos, grip_quat)
        grasp_pos, grasp_quat = self.p.multiplyTransforms(inv_pos, inv_quat, obj_pos, obj_quat)
        new_pos, new_quat = self.p.multiplyTransforms(tuple(map(float, place_xyz)),
                                                      place_quat(place_yaw, *place_tilt),
                                                      grasp_pos, grasp_quat)
        self.p.resetBasePositionAndOrientation(body, new_pos, new_quat)
        self.p.resetBaseVelocity(body, (0, 0, 0), (0, 0, 0))
        self.settle()
        return name

    def close(self) -> None:
        try:
            self.p.disconnect()
        except p.error:  # already disconnected
            pass
