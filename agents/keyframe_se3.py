"""The non-planar part of the Keyframe Transporter's place: a swing-twist split of the place orientation and a
learned, rotation-equivariant roll/pitch refinement head.

A place orientation (the gripper frame at release, ``G = Rz(yaw) Ry(pitch) Rx(roll)`` in the env's action) is
split as ``G = Rz(psi) S(w)``: a *twist* ``psi`` about the vertical (what the cross-correlation's yaw bins and
sub-bin refinement predict) and a *swing* ``S(w)``, the rotation by ``|w|`` about the horizontal axis ``w``
expressed in the yawed gripper frame (what :class:`TiltHead` predicts). The split is unique for tilts below 90
degrees and ``w`` rotates as a planar vector: ``Rz(a) S(w) Rz(-a) = S(Rz(a) w)``.

:class:`TiltHead` regresses ``w`` from the scene crop at the place and the grasped object, both in the gripper
frame. A small CNN is averaged over the four quarter turns of its inputs (frame averaging over C4), so turning
both inputs by a quarter turn turns the predicted ``w`` by the same quarter turn, exactly. With the crops in
the gripper frame that gives the place bi-equivariance (tested in ``tests/test_transporter.py``):

* turning the scene about the vertical by ``g`` turns the twist by ``g`` and leaves both crops and ``w`` as
  they were, so ``G -> Rz(g) G``;
* turning the object in the gripper by ``h`` turns the twist by ``-h`` (the correlation) and both crops by
  ``h``, so ``w -> Rz(h) w`` and ``G -> Rz(psi - h) S(Rz(h) w) = G Rz(-h)``: the inverse rotation, exactly for
  quarter turns (the yaw bins must contain them).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import nn

#: the largest tilt the head may output (rad): the env's action box allows 45 degrees of roll and pitch
MAX_TILT = math.radians(40.0)


def place_rotation(action) -> np.ndarray:
    """(3, 3) gripper rotation at the place of a 7- or 9-float tabletop action: ``Rz(yaw) Ry(pitch) Rx(roll)``."""
    a = np.asarray(action, dtype=np.float64)
    roll, pitch = (float(a[7]), float(a[8])) if len(a) >= 9 else (0.0, 0.0)
    return Rotation.from_euler("ZYX", [float(a[6]), pitch, roll]).as_matrix()


def swing_twist(rot: np.ndarray) -> tuple[float, np.ndarray]:
    """``rot = Rz(psi) S(w)`` -> (psi, w): twist angle about z and the swing's rotation vector (2,), gripper frame."""
    z = rot[:, 2]
    axis = np.cross([0.0, 0.0, 1.0], z)
    s = float(np.linalg.norm(axis))
    angle = math.atan2(s, float(z[2]))
    # the world-frame swing takes e_z to the gripper's z axis about a horizontal axis
    world = np.zeros(3) if s < 1e-12 else axis / s * angle
    twist = Rotation.from_rotvec(world).inv().as_matrix() @ rot       # Rz(psi)
    psi = math.atan2(twist[1, 0], twist[0, 0])
    c, sn = math.cos(psi), math.sin(psi)
    w = np.array([c * world[0] + sn * world[1], -sn * world[0] + c * world[1]])   # Rz(-psi) world
    return psi, w


def compose_place(psi: float, w) -> tuple[float, float, float]:
    """(roll, pitch, yaw) of ``Rz(psi) S(w)``: the env's action entries 7, 8 and 6."""
    w = np.asarray(w, dtype=np.float64)
    rot = Rotation.from_euler("Z", psi).as_matrix() @ Rotation.from_rotvec([w[0], w[1], 0.0]).as_matrix()
    yaw, pitch, roll = Rotation.from_matrix(rot).as_euler("ZYX")
    return float(roll), float(pitch), float(yaw)


def rotate_vectors(w: torch.Tensor, k) -> torch.Tensor:
    """Rotate (..., 2) planar vectors counter-clockwise by quarter turns ``k`` (tensor or int, broadcast)."""
    k = torch.as_tensor(k) % 4
    c = torch.tensor([1.0, 0.0, -1.0, 0.0])[k]
    s = torch.tensor([0.0, 1.0, 0.0, -1.0])[k]
    return torch.stack([c * w[..., 0] - s * w[..., 1], s * w[..., 0] + c * w[..., 1]], -1)


class TiltHead(nn.Module):
    """Regresses the swing ``w`` (rad, gripper frame) from the place crop and the object image, C4-averaged.

    ``active`` (a saved buffer) is set when the head was trained on places that carry roll and pitch; an
    inactive head is never asked, so planar tasks keep 7-float actions.
    """

    def __init__(self, in_channels: int = 8, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 2))
        self.register_buffer("active", torch.zeros((), dtype=torch.bool))

    def forward(self, scene_crop: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """(C, k, k) crops -> (2,) swing vector; rotating both crops by a quarter turn rotates it by one too."""
        x = torch.cat([scene_crop, obj], 0)
        turns = torch.stack([torch.rot90(x, k, (1, 2)) for k in range(4)])
        # g(rot^k x) turned back by -k quarter turns, averaged: f(rot x) = R f(x) for the average
        out = rotate_vectors(self.net(turns), -torch.arange(4)).mean(0)
        return MAX_TILT * torch.tanh(out / MAX_TILT)
