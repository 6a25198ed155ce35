"""The shared Gymnasium env for tabletop pick-and-place tasks and its declared SE(2) symmetry.

Observation: ``{"color": (S, S, 3) uint8, "height": (S, S, 1) float32}``, a top-down orthographic view
fused from simulated RGB-D cameras (see ``camera.py``); ``env.unwrapped.point_cloud()`` gives the fused cloud.
Action (7 floats): ``[pick_x, pick_y, pick_yaw, place_x, place_y, place_z, place_yaw]`` -- the suction
gripper's pose at pick (on the object's top) and at release (``place_z`` is the suction point's height),
executed by a Franka Panda with a suction tip (``arm.py``) or, with ``arm=False``, by a teleporting gripper.
Tasks whose place is non-planar (``se3_place = True``) take 9 floats: the 7 above plus ``place_roll,
place_pitch``; the gripper frame moves from ``Rz(pick_yaw)`` to ``Rz(place_yaw) Ry(place_pitch) Rx(place_roll)``
(``scene.place_quat``) and the held object with it. Every env accepts both lengths: a 7-float action is a
level place (roll = pitch = 0), so planar agents and demos work unchanged.

Symmetry: SE(2) acting on the workspace (centred on the world origin): rotating and translating the scene
rotates/translates the observation images and the pick and place poses (x, y rotate and shift, yaws add
the angle, height, roll and pitch -- measured in the yawed gripper frame -- are invariant). The dynamics are equivariant while every object stays in the workspace.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from symgym.envs.tabletop.camera import DEFAULT_CAMERAS, Grid, capture, downsample_cloud
from symgym.envs.tabletop.scene import WORKSPACE_HALF, TabletopScene, wrap_angle
from symgym.equivariance.groups import SE2Group, as_se2
from symgym.equivariance.symmetry import Symmetry
from symgym.equivariance.transforms import transform_image

#: the Arguments table every tabletop task docstring shares (the constructor is this base class's)
ARGUMENTS_DOC = """    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` (the colour view, 4x upsampled) |
    | ``image_size`` | 64 | side S of the observation images (pixels, at least 16) |
    | ``cameras`` | three RGB-D cameras | ``CameraSpec`` tuple: one overhead, two oblique |
    | ``arm`` | ``True`` | ``True``: the Panda executes the primitive; ``False``: a teleporting gripper (fast, no contact) |

"""

MAX_PLACE_Z = 0.3
#: largest place roll/pitch magnitude (rad): 45 degrees, beyond every task's 30-degree tilts
MAX_TILT = math.pi / 4


def transform_topdown(g, image: np.ndarray, grid: Grid = Grid()) -> np.ndarray:
    """Act on an (S, S, C) top-down image by ``g``: rotate about the workspace centre, then translate.

    Exact for multiples of 90 degrees and translations by whole pixels; other angles interpolate.
    """
    g = as_se2(g)
    out = transform_image(g.rotation, image)
    dc, dr = int(round(g.tx / grid.pixel)), int(round(-g.ty / grid.pixel))
    if dc or dr:
        shifted = np.zeros_like(out)
        h, w = out.shape[:2]
        src_r, dst_r = slice(max(0, -dr), min(h, h - dr)), slice(max(0, dr), min(h, h + dr))
        src_c, dst_c = slice(max(0, -dc), min(w, w - dc)), slice(max(0, dc), min(w, w + dc))
        shifted[dst_r, dst_c] = out[src_r, src_c]
        out = shifted
    return out


def transform_action(g, action: np.ndarray) -> np.ndarray:
    """Pick and place poses move with the scene: x, y by ``g``, yaws by its angle; the place height and the
    place roll/pitch (entries 7-8 of a 9-float action, in the yawed gripper frame) not at all."""
    g = as_se2(g)
    a = np.array(action, dtype=np.float64, copy=True)
    a[..., 0:2] = g.apply(a[..., 0:2])
    a[..., 3:5] = g.apply(a[..., 3:5])
    a[..., 2] = wrap_angle(a[..., 2] + g.angle)
    a[..., 6] = wrap_angle(a[..., 6] + g.angle)
    return a.astype(np.asarray(action).dtype, copy=False)


def tabletop_symmetry(grid: Grid) -> Symmetry:
    def image_map(g, img):
        return transform_topdown(g, img, grid)

    return Symmetry(group=SE2Group(translation_scale=0.05), obs={"color": image_map, "height": image_map},
                    action=transform_action, exact=True)


def action_box(se3: bool) -> spaces.Box:
    """The 7-float planar action box, or with ``se3`` the 9-float one (place roll and pitch appended)."""
    h, t = WORKSPACE_HALF, MAX_TILT
    low = [-h, -h, -math.pi, -h, -h, 0.0, -math.pi] + ([-t, -t] if se3 else [])
    high = [h, h, math.pi, h, h, MAX_PLACE_Z, math.pi] + ([t, t] if se3 else [])
    return spaces.Box(low=np.array(low, np.float32), high=np.array(high, np.float32), dtype=np.float32)


class TabletopEnv(gym.Env):
    """Base class; a task sets up objects in ``_build``, scores them in ``_credit`` and has an oracle.

    Rewards are increments of the task's credit in [0, 1], so an episode's rewards sum to its final
    credit (1 on full success).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    #: how many pick-and-place steps the oracle needs at most (tasks override)
    oracle_steps = 1
    #: True: the action carries the place roll and pitch (9 floats), for tasks whose place is not level
    se3_place = False

    def __init__(self, render_mode: str | None = None, image_size: int = 64, cameras=DEFAULT_CAMERAS,
                 arm: bool = True):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        self.render_mode = render_mode
        self.grid = Grid(int(image_size), WORKSPACE_HALF)
        self.cameras = tuple(cameras)
        s = self.grid.size
        self.observation_space = spaces.Dict({
            "color": spaces.Box(0, 255, (s, s, 3), np.uint8),
            "height": spaces.Box(0.0, 1.0, (s, s, 1), np.float32),
        })
        self.action_space = action_box(self.se3_place)
        self.symmetry = tabletop_symmetry(self.grid)
        self.scene = TabletopScene(arm=arm)
        self._credit_now = 0.0
        self._last_cloud: np.ndarray | None = None

    # -- task hooks ---------------------------------------------------------------------
    def _build(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _credit(self) -> float:
        """Fraction of the task done, in [0, 1]."""
        raise NotImplementedError

    def oracle_action(self) -> np.ndarray | None:
        """The scripted expert's next action from privileged state (None when nothing is left to do)."""
        raise NotImplementedError

    def _step_info(self) -> dict[str, Any]:
        """Task-specific entries of a step's ``info`` (stacking: how many cubes stand in order)."""
        return {}

    # -- helpers for tasks ---------------------------------------------------------------
    def _sample_poses(self, rng: np.random.Generator, radii: list[float], margin: float = 0.02,
                      tries: int = 500) -> list[tuple[np.ndarray, float]]:
        """Non-overlapping (xy, yaw) for objects with bounding radii ``radii``, inside the workspace."""
        placed: list[tuple[np.ndarray, float]] = []
        for r in radii:
            for _ in range(tries):
                lim = WORKSPACE_HALF - r - margin
                xy = rng.uniform(-lim, lim, size=2)
                if all(np.linalg.norm(xy - q) > r + rq + margin for q, rq in zip((q for q, _ in placed), radii)):
                    placed.append((xy, float(rng.uniform(-math.pi, math.pi))))
                    break
            else:
                raise RuntimeError(f"could not place {len(radii)} objects without overlap")
        return placed

    # -- gym API ------------------------------------------------------------------------
    def _obs(self) -> dict[str, np.ndarray]:
        color, height, cloud = capture(self.scene.p, self.grid, self.cameras)
        self._last_cloud = cloud
        return {"color": color, "height": np.clip(height, 0.0, 1.0)[..., None].astype(np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.scene.reset()
        self._build(self.np_random)
        self.scene.settle(60)
        self._credit_now = self._credit()
        return self._obs(), {"is_success": False, "credit": self._credit_now}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape not in ((7,), (9,)) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be 7 finite floats [pick x, y, yaw, place x, y, z, yaw] (+ place roll, "
                             f"pitch: 9), got {action!r}")
        if len(a) == 7:  # a level place
            a = np.concatenate([a, [0.0, 0.0]])
        box = action_box(True)
        a[[2, 6]] = wrap_angle(a[[2, 6]])
        a = np.clip(a, box.low.astype(np.float64), box.high.astype(np.float64))
        moved, failure = self.scene.execute(a[0:2], a[2], a[3:6], a[6], a[7:9])
        if failure is None and self.scene.arm is not None and moved is None:
            failure = "grasp"
        credit = self._credit()
        reward = credit - self._credit_now
        self._credit_now = credit
        success = credit >= 1.0 - 1e-9
        info = {"is_success": bool(success), "credit": float(credit), "picked": moved, "failure": failure,
                **self._step_info()}
        # with the arm, a failed grasp, a collision or an unreachable target ends the episode (as a failure)
        return self._obs(), float(reward), bool(success or failure is not None), False, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        color, _, _ = capture(self.scene.p, self.grid, self.cameras)
        return np.kron(color, np.ones((4, 4, 1), np.uint8))

    def point_cloud(self, voxel: float | None = 0.005) -> np.ndarray:
        """The fused (N, 6) xyz+rgb cloud behind the last observation, voxel-downsampled with open3d."""
        if self._last_cloud is None:
            raise RuntimeError("call reset() before point_cloud()")
        return self._last_cloud if voxel is None else downsample_cloud(self._last_cloud, voxel)

    def get_state(self) -> dict[str, Any]:
        state = {"objects": self.scene.get_state(), "credit": self._credit_now}
        if self.scene.arm is not None:
            state["arm"] = self.scene.arm.get_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore objects (pose, and velocities when given) and the arm (its joints when given, else home)."""
        self.scene.set_state(state["objects"])
        if self.scene.arm is not None and "arm" in state:
            self.scene.arm.set_state(state["arm"])
        self._credit_now = float(state.get("credit", self._credit()))

    def close(self) -> None:
        self.scene.close()
