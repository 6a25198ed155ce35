"""Keyframe Transporter: bi-equivariant SE(3) place prediction, coarse to fine.

The place action must move with the workspace *and* with the object as it sits in the gripper. So the
correlated kernel is not a crop of the scene but the *grasped object*: the pixels of the picked object
(segmented by height and connectivity around the pick pixel), expressed in the gripper frame (rotated by
minus the pick yaw). Rotating that object image by each yaw bin and cross-correlating its steerable (C_n)
features with the scene's gives place scores over (gripper yaw, pixel):

* rotate the scene by g1 -> the scores move and rotate with g1 (steerable key/query nets);
* rotate the object in the gripper by g2 -> the predicted gripper yaw changes by g2^-1 (the kernel for bin i
  of the rotated object is the kernel for bin i + g2 of the original): bi-equivariance.

Coarse to fine: the correlation fixes (x, y, yaw bin); the yaw is refined to a sub-bin angle at the chosen
pixel (``TransporterAgent.refine_yaw``); a learned head scores place heights from the scene crop at the place
(rotated into the gripper frame) stacked with the object image; on tasks whose demonstrations carry a place
roll and pitch, a learned head (``keyframe_se3.TiltHead``, trained on the demos' place orientations) regresses
the tilt from the same two crops, C4-equivariantly, and the action gets the full orientation (9 floats).

Status against the paper (arXiv 2502.01773, issue #34): the place is SE(3) -- yaw by correlation over bins
and sub-bins, roll/pitch by a learned regression conditioned on the place and object crops, both executed by
the arm -- but only the yaw is searched by correlation; roll and pitch are regressed once, not scored over a
grid of candidates as the paper does, and the pick is a pixel with a free suction yaw (no pick orientation).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from symgym.agents.keyframe_se3 import TiltHead, compose_place, place_rotation, swing_twist
from symgym.agents.transporter import (HEIGHT_SCALE, IN_CHANNELS, EquiTransporterAgent, TransporterConfig, crop_at,
                                obs_to_tensor, rotate_images, rotation_angles)

#: place heights scored by the refinement head: 0 to 20 cm in 5 mm steps
HEIGHT_BINS = torch.arange(0.0, 0.2001, 0.005)
OBJECT_MIN_HEIGHT = 0.015  # above fixtures and bowl floors (<= 1 cm): what sticks up is a graspable object


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
    """Equivariant pick net + bi-equivariant place (grasped-object kernels) + learned height and tilt refinement."""

    name = "keyframe-transporter"

    def __init__(self, config: TransporterConfig | None = None, seed: int = 0, info=None):
        super().__init__(config, seed, info)
        self.height_head = HeightHead()
        self.tilt_head = TiltHead(2 * IN_CHANNELS)
        self.extra_modules = {"height": self.height_head, "tilt": self.tilt_head}
        if info is not None and getattr(info.action_space, "shape", None) == (9,):
            self.tilt_head.active.fill_(True)  # the env's place carries roll and pitch

    def object_crop(self, x: torch.Tensor, pick_rc, pick_yaw: float) -> torch.Tensor:
        """The grasped object's image in the gripper frame: segmented crop, rotated by -pick_yaw."""
        obj = segment_object(crop_at(x, pick_rc, self.config.crop))
        if abs(pick_yaw) < 1e-9:
            return obj
        return rotate_images(obj[None], torch.tensor([-pick_yaw], dtype=torch.float32))[0]

    def place_yaw_label(self, action: np.ndarray) -> float:
        """Absolute gripper yaw at place: with the object in the gripper frame that is what the bins mean (for a
        tilted place, the twist of its swing-twist split)."""
        if len(action) < 9 or (action[7] == 0 and action[8] == 0):
            return float(action[6])
        return swing_twist(place_rotation(action))[0]

    def _scene_crop(self, x: torch.Tensor, place_rc, yaw: float) -> torch.Tensor:
        crop = crop_at(x, place_rc, self.config.crop)
        return rotate_images(crop[None], torch.tensor([-yaw], dtype=torch.float32))[0]

    def height_logits(self, x, place_rc, obj, yaw: float) -> torch.Tensor:
        return self.height_head(self._scene_crop(x, place_rc, yaw), obj)

    def place_height(self, x, pick_rc, place_rc, obj, yaw: float) -> float:
        logits = self.height_logits(x, place_rc, obj, yaw)
        return float(HEIGHT_BINS[int(logits.argmax())])

    def tilt(self, x, place_rc, obj, yaw: float) -> torch.Tensor:
        """The learned swing (roll/pitch refinement, gripper frame, rad) for a place at ``place_rc``, ``yaw``."""
        return self.tilt_head(self._scene_crop(x, place_rc, yaw), obj)

    def extra_loss(self, x, pick_rc, place_rc, obj, action) -> torch.Tensor:
        yaw = self.place_yaw_label(action)
        target = int(torch.argmin((HEIGHT_BINS - float(action[5])).abs()))
        logits = self.height_logits(x, place_rc, obj, yaw)
        loss = F.cross_entropy(logits[None], torch.tensor([target]))
        if len(action) >= 9:  # only SE(3) demos train the tilt head (its parameters see no other loss)
            swing = torch.as_tensor(swing_twist(place_rotation(action))[1], dtype=torch.float32)
            loss = loss + F.mse_loss(self.tilt(x, place_rc, obj, yaw), swing, reduction="sum")
        return loss

    def learn(self, source, steps: int, callback=None, progress: bool = False):
        if any(len(t["action"]) >= 9 for t in source):
            self.tilt_head.active.fill_(True)
        return super().learn(source, steps, callback, progress)

    def plan(self, obs: dict, step: int | None = None) -> dict:
        """The Transporter plan (pick, place pixel, refined yaw, height); with an active tilt head also the learned
        swing ``w`` and the 9-float action carrying the place roll and pitch (``keyframe_se3.compose_place``)."""
        out = super().plan(obs, step)
        if not bool(self.tilt_head.active):
            return out
        with torch.no_grad():
            w = self.tilt(obs_to_tensor(obs), out["place_rc"], out["object"], out["yaw"]).numpy()
        roll, pitch, yaw = compose_place(float(out["action"][6]), w)
        out.update(swing=w, action=np.concatenate([out["action"][:6], [yaw, roll, pitch]]).astype(np.float32))
        return out

    def place_for_object(self, obs: dict, obj: torch.Tensor) -> dict:
        """Place decision for a given grasped-object image (used by the bi-equivariance test)."""
        self._eval_mode()
        with torch.no_grad():
            x = obs_to_tensor(obs)
            place = self.place_logits(x, obj)
            rot, row, col = np.unravel_index(int(place.argmax()), place.shape)
        yaw = float(rotation_angles(self.config.n_rotations)[rot])
        return {"place_logits": place, "rotation_bin": int(rot), "place_rc": (int(row), int(col)),
                "yaw": yaw % (2 * math.pi)}
