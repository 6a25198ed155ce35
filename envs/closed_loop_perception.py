"""Rendered point clouds for the closed-loop envs: ``obs_mode="depth_cloud"``.

Depth images from a ring of fixed virtual cameras (``mujoco.Renderer``, headless GL: ``MUJOCO_GL=egl`` unless
the caller chose a backend), unprojected with each camera's intrinsics (MuJoCo's vertical field of view and the
image aspect) and pose into world coordinates, cropped to the workspace (a disc of ``radius`` around the origin,
above the floor: the floor is dropped by height, as one drops a table, so nothing here reads simulator labels),
given normals by open3d (k-nearest-neighbour PCA, oriented towards the camera that saw the point), merged,
voxel down-sampled by open3d, and finally sampled to a fixed ``n_points`` so that observations batch.

Output: ``(n_points, 6)`` float32, columns ``x, y, z, nx, ny, nz`` (metres, unit normals), unlabelled.

Symmetry: the cameras sit on a ring about the vertical axis through the origin (``C_k`` for ``k`` cameras) and
the crop is a disc about that axis, so rotating the scene about it changes *which* pixels see a surface but not
which surfaces are seen; the cloud is SE(2)-equivariant up to sampling (pixel grid, voxels, random subsample)
and self-occlusion from a different viewpoint. ``transform_cloud_obs`` rotates points and normals.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from symgym.equivariance.groups import as_se2

CLOUD_COLUMNS = 6


def ensure_headless_gl(default: str = "egl") -> None:
    """Use ``default`` as ``MUJOCO_GL`` unless the caller set one; mujoco reads it on import, so re-read it
    when mujoco is already imported (possible while no GL context exists, i.e. before the first renderer)."""
    if os.environ.get("MUJOCO_GL"):
        return
    os.environ["MUJOCO_GL"] = default
    os.environ.setdefault("PYOPENGL_PLATFORM", default)
    if "mujoco" in sys.modules:
        import importlib

        from mujoco.rendering.classic import gl_context

        importlib.reload(gl_context)


def transform_cloud_obs(g, cloud: np.ndarray) -> np.ndarray:
    """Rotate and translate x, y of the points; rotate nx, ny of the normals; z and nz are invariant."""
    g = as_se2(g)
    c = np.array(cloud, dtype=np.float64, copy=True)
    if c.shape[-1] != CLOUD_COLUMNS:
        raise ValueError(f"a depth cloud has {CLOUD_COLUMNS} columns (x, y, z, nx, ny, nz), got shape {c.shape}")
    c[..., :2] = g.apply(c[..., :2])
    c[..., 3:5] = c[..., 3:5] @ g.rotation.matrix().T
    return c.astype(np.asarray(cloud).dtype)


class DepthCloud:
    """Renders ``model``/``data`` from ``n_cameras`` cameras on a ring and returns a fixed-size cloud.

    Args:
        n_cameras: cameras at azimuths ``90 + 360 k / n`` degrees, ``elevation`` degrees, ``distance`` metres
            from ``lookat`` (on the vertical axis through the origin).
        size: square depth image side in pixels (rendering costs about the same from 64 to 96 pixels here).
        voxel: open3d voxel size (m); ``knn``: neighbours for the normals.
        radius, z_min, z_max: the workspace crop (m): a disc about the origin, between two heights.
    """

    def __init__(self, model, n_cameras: int = 3, size: int = 80, n_points: int = 256, voxel: float = 0.006,
                 knn: int = 12, radius: float = 0.32, z_min: float = 0.002, z_max: float = 0.25,
                 distance: float = 0.6, elevation: float = -55.0, lookat=(0.0, 0.0, 0.03)):
        if n_cameras < 1 or n_points < 1 or size < 8:
            raise ValueError(f"need n_cameras >= 1, n_points >= 1, size >= 8; got {n_cameras}, {n_points}, {size}")
        ensure_headless_gl()
        import mujoco

        self._mujoco = mujoco
        self.model, self.size, self.n_points = model, int(size), int(n_points)
        self.voxel, self.knn, self.radius, self.z_min, self.z_max = voxel, knn, radius, z_min, z_max
        self.renderer = mujoco.Renderer(model, self.size, self.size)
        self.renderer.enable_depth_rendering()
        self.cameras = []
        for k in range(n_cameras):
            cam = mujoco.MjvCamera()
            cam.lookat[:] = lookat
            cam.distance, cam.azimuth, cam.elevation = distance, 90.0 + 360.0 * k / n_cameras, elevation
            self.cameras.append(cam)
        # pixel-centre ray slopes (intrinsics): square image, MuJoCo's vertical field of view
        tan_half = np.tan(np.deg2rad(model.vis.global_.fovy) / 2)
        s = ((np.arange(self.size) + 0.5) / self.size * 2 - 1) * tan_half
        self._right_slope = np.tile(s, self.size)               # columns, left to right
        self._up_slope = np.repeat(-s, self.size)                # rows, top to bottom

    def close(self) -> None:
        self.renderer.close()

    def _camera_points(self, data, cam) -> tuple[np.ndarray, np.ndarray]:
        """World points of one camera's depth image (cropped) and that camera's position."""
        r = self.renderer
        r.update_scene(data, camera=cam)
        depth = r.render().reshape(-1).astype(np.float64)
        eyes = r.scene.camera                                    # the two stereo eyes; mono renders their mean
        pos = (np.asarray(eyes[0].pos) + np.asarray(eyes[1].pos)) / 2
        fwd, up = np.asarray(eyes[0].forward, float), np.asarray(eyes[0].up, float)
        right = np.cross(fwd, up)
        # MuJoCo's depth is the distance along the optical axis, so each ray is scaled by it directly
        pts = pos + depth[:, None] * (fwd + self._right_slope[:, None] * right + self._up_slope[:, None] * up)
        keep = ((pts[:, 0] ** 2 + pts[:, 1] ** 2 < self.radius ** 2) & (pts[:, 2] > self.z_min)
                & (pts[:, 2] < self.z_max))
        return pts[keep], pos

    def __call__(self, data, rng: np.random.Generator) -> np.ndarray:
        import open3d as o3d

        merged = o3d.geometry.PointCloud()
        for cam in self.cameras:
            pts, pos = self._camera_points(data, cam)
            if len(pts) < 3:
                continue
            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
            pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(self.knn))
            pc.orient_normals_towards_camera_location(pos)
            merged += pc
        if len(merged.points) == 0:
            return np.zeros((self.n_points, CLOUD_COLUMNS), np.float32)   # nothing above the floor in view
        down = merged.voxel_down_sample(self.voxel)
        pts, nrm = np.asarray(down.points), np.asarray(down.normals)
        nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)   # voxel means of unit normals
        idx = rng.choice(len(pts), self.n_points, replace=len(pts) < self.n_points)
        return np.concatenate([pts[idx], nrm[idx]], 1).astype(np.float32)
