"""Keyframe Transporter: bi-equivariant place prediction with a coarse-to-fine SE(3) search.

The place action must move with the workspace *and* with the object as it sits in the gripper. So the
correlated kernel is not a crop of the scene but the *grasped object*: the pixels of the picked object
(segmented by height and connectivity around the pick pixel), expressed in the gripper frame (rotated by
minus the pick yaw). Rotating that object image by each yaw bin and cross-correlating its steerable (C_n)
features with the scene's gives place scores over (gripper yaw, pixel):

* rotate the scene by g1 -> the scores move and rotate with g1 (steerable key/query nets);
* rotate the object in the gripper by g2 -> the predicted gripper yaw changes by g2^-1 (the kernel for bin i
  of the rotated object is the kernel for bin i + g2 of the original): bi-equivariance.

Coarse-to-fine: the correlation fixes (x, y, yaw bin); the yaw is refined to a sub-bin angle at the chosen
pixel (``TransporterAgent.refine_yaw``); a learned head then scores place heights from the scene crop at the
place (rotated into the gripper frame) stacked with the object image; finally roll and pitch are refined
geometrically: the grasped object's visible points (gripper frame) are tilted by each candidate (roll, pitch)
and scored by how evenly they then sit over the scene surface under them (a rigid object whose resting
face is parallel to its visible top face). A tilted grasp therefore gets the compensating tilt. The env's
suction primitive is planar, so roll and pitch are reported in ``plan()`` but not part of the 7-d action;
in these tasks (level objects on level surfaces) they come out within a few degrees of zero.

Status against the paper (issue #34): what this agent is, is a *planar* keyframe Transporter -- SE(2) place
plus a learned height, bi-equivariant in the grasped object. The paper's coarse-to-fine SE(3) evaluation is
not here: roll and pitch are a geometric fit, never learned and never executed, and no task needs them yet.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from symgym.agents.transporter import (HEIGHT_SCALE, IN_CHANNELS, EquiTransporterAgent, TransporterConfig, crop_at,
                                obs_to_tensor, rotate_images, rotation_angles)

#: place heights scored by the refinement head: 0 to 20 cm in 5 mm steps
HEIGHT_BINS = torch.arange(0.0, 0.2001, 0.005)
OBJECT_MIN_HEIGHT = 0.015  # above fixtures and bowl floors (<= 1 cm): what sticks up is a graspable object
#: roll and pitch candidates of the last refinement stage: -20 to 20 degrees in 2.5-degree steps
TILT_BINS = torch.deg2rad(torch.arange(-20.0, 20.01, 2.5))


def tilt_rotations(roll: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations R_y(pitch) @ R_x(roll): roll about the gripper's x axis, then pitch about y."""
    cr, sr, cp, sp = torch.cos(roll), torch.sin(roll), torch.cos(pitch), torch.sin(pitch)
    one, zero = torch.ones_like(roll), torch.zeros_like(roll)
    rx = torch.stack([one, zero, zero, zero, cr, -sr, zero, sr, cr], -1).reshape(*roll.shape, 3, 3)
    ry = torch.stack([cp, zero, sp, zero, one, zero, -sp, zero, cp], -1).reshape(*roll.shape, 3, 3)
    return ry @ rx


def object_points(obj: torch.Tensor, pixel: float) -> torch.Tensor:
    """(N, 3) visible points of a segmented object image in the gripper frame (origin: the crop centre at the
    height of the pick pixel; x right, y up, z up)."""
    height = obj[3] * HEIGHT_SCALE
    rows, cols = torch.nonzero(height > OBJECT_MIN_HEIGHT, as_tuple=True)
    if len(rows) < 3:
        raise ValueError(f"the grasped-object image has {len(rows)} raised pixels; need >= 3 to refine roll/pitch")
    c = obj.shape[-1] // 2
    x, y = (cols - c).float() * pixel, (c - rows).float() * pixel
    return torch.stack([x, y, height[rows, cols] - height[c, c]], -1)


def tilt_scores(obj: torch.Tensor, scene_crop: torch.Tensor, pixel: float,
                bins: torch.Tensor = TILT_BINS) -> torch.Tensor:
    """(len(bins), len(bins)) scores over (roll, pitch): minus the variance of the gap between the tilted
    object's points and the scene surface under them. Both images are in the gripper frame, same size."""
    pts = object_points(obj, pixel)
    roll, pitch = torch.meshgrid(bins, bins, indexing="ij")
    moved = pts @ tilt_rotations(roll, pitch).transpose(-1, -2)          # (R, P, N, 3)
    half = (scene_crop.shape[-1] / 2) * pixel
    # grid_sample's normalised coordinates: x right, y *down*, +-1 at the crop's outer edges
    where = torch.stack([moved[..., 0] / half, -moved[..., 1] / half], -1).reshape(1, -1, len(pts), 2)
    surface = F.grid_sample(scene_crop[None, 3:4] * HEIGHT_SCALE, where, mode="bilinear",
                            padding_mode="border", align_corners=False).reshape(moved.shape[:-1])
    return -(moved[..., 2] - surface).var(-1)


def refine_roll_pitch(obj: torch.Tensor, scene_crop: torch.Tensor, pixel: float,
                      bins: torch.Tensor = TILT_BINS) -> tuple[float, float]:
    """The (roll, pitch) candidate whose tilted object sits most evenly on the scene (ties: the smallest tilt)."""
    scores = tilt_scores(obj, scene_crop, pixel, bins)
    roll, pitch = torch.meshgrid(bins, bins, indexing="ij")
    # prefer small tilts among (numerically) equal scores: flat objects on flat ground stay level
    scores = scores - 1e-12 * (roll ** 2 + pitch ** 2)
    i, j = np.unravel_index(int(scores.argmax()), scores.shape)
    return float(bins[i]), float(bins[j])


def segment_object(crop: torch.Tensor) -> torch.Tensor:
    """Keep the connected raised region under the crop's centre pixel (the grasped object); zero the rest.

    When the centre pixel is not raised (a pick on empty table) the whole crop is kept unchanged.
    """
    height = crop[3].numpy() * HEIGHT_SCALE
    labels, _ = ndimage.label(height > OBJECT_MIN_HEIGHT)
    centre = labels[crop.shape[1] // 2, crop.shape[2] // 2]
    if centre == 0:
        return crop
    mask = torch.as_tensor(labels == centre, dtype=crop.dtype)
    return crop * mask[None]


class HeightHead(nn.Module):
    """Scores place heights from the scene crop at the place (gripper frame) and the grasped object."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2 * IN_CHANNELS, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(width, len(HEIGHT_BINS)))

    def forward(self, scene_crop: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([scene_crop, obj], 0)[None])[0]


class KeyframeTransporterAgent(EquiTransporterAgent):
    """Equivariant pick net + bi-equivariant place (grasped-object kernels) + learned height refinement."""

    name = "keyframe-transporter"

    def __init__(self, config: TransporterConfig | None = None, seed: int = 0):
        super().__init__(config, seed)
        self.height_head = HeightHead()
        self.extra_modules = {"height": self.height_head}

    def object_crop(self, x: torch.Tensor, pick_rc, pick_yaw: float) -> torch.Tensor:
        """The grasped object's image in the gripper frame: segmented crop, rotated by -pick_yaw."""
        obj = segment_object(crop_at(x, pick_rc, self.cfg.crop))
        if abs(pick_yaw) < 1e-9:
            return obj
        return rotate_images(obj[None], torch.tensor([-pick_yaw], dtype=torch.float32))[0]

    def place_yaw_label(self, action: np.ndarray) -> float:
        """Absolute gripper yaw at place: with the object in the gripper frame that is what the bins mean."""
        return float(action[6])

    def _scene_crop(self, x: torch.Tensor, place_rc, yaw: float) -> torch.Tensor:
        crop = crop_at(x, place_rc, self.cfg.crop)
        return rotate_images(crop[None], torch.tensor([-yaw], dtype=torch.float32))[0]

    def height_logits(self, x, place_rc, obj, yaw: float) -> torch.Tensor:
        return self.height_head(self._scene_crop(x, place_rc, yaw), obj)

    def place_height(self, x, pick_rc, place_rc, obj, yaw: float) -> float:
        logits = self.height_logits(x, place_rc, obj, yaw)
        return float(HEIGHT_BINS[int(logits.argmax())])

    def extra_loss(self, x, pick_rc, place_rc, obj, action) -> torch.Tensor:
        target = int(torch.argmin((HEIGHT_BINS - float(action[5])).abs()))
        logits = self.height_logits(x, place_rc, obj, float(action[6]))
        return F.cross_entropy(logits[None], torch.tensor([target]))

    def plan(self, obs: dict) -> dict:
        """The Transporter plan (pick, place pixel, refined yaw, height) plus the refined roll and pitch."""
        out = super().plan(obs)
        with torch.no_grad():
            x = obs_to_tensor(obs)
            try:
                roll, pitch = refine_roll_pitch(out["object"], self._scene_crop(x, out["place_rc"], out["yaw"]),
                                                self.grid.pixel)
            except ValueError:  # picked nothing raised (an empty-table pick): nothing to level
                roll, pitch = 0.0, 0.0
        out.update(roll=roll, pitch=pitch)
        return out

    def place_for_object(self, obs: dict, obj: torch.Tensor) -> dict:
        """Place decision for a given grasped-object image (used by the bi-equivariance test)."""
        self._eval_mode()
        with torch.no_grad():
            x = obs_to_tensor(obs)
            place = self.place_logits(x, obj)
            rot, row, col = np.unravel_index(int(place.argmax()), place.shape)
        yaw = float(rotation_angles(self.cfg.n_rotations)[rot])
        return {"place_logits": place, "rotation_bin": int(rot), "place_rc": (int(row), int(col)),
                "yaw": yaw % (2 * math.pi)}
