"""Simulated RGB-D cameras fused into a top-down orthographic colour image and heightmap.

Each camera renders RGB + depth with PyBullet's TinyRenderer; depth pixels are lifted to world points by
inverting the camera's projection*view matrix; the points of all cameras are projected orthographically
onto the workspace grid, keeping the highest point per cell (what a top-down orthographic camera sees).

Pixel convention (shared with ``equivariance.transforms.transform_image``): pixel (row, col) covers world
x = x_min + (col + 0.5) * px and y = y_max - (row + 0.5) * px, so world rotations are counter-clockwise in
the picture and ``np.rot90`` is an exact world rotation by 90 degrees about the workspace centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from symgym.envs.tabletop.scene import WORKSPACE_HALF


@dataclass(frozen=True)
class CameraSpec:
    eye: tuple[float, float, float]
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fov_deg: float = 34.0
    width: int = 128
    height: int = 128
    near: float = 0.3
    far: float = 2.0


#: an overhead camera plus two oblique ones that see the sides occluded from above; near/far planes are
#: tight around the workspace because the depth buffer's resolution is spread between them
DEFAULT_CAMERAS = (
    CameraSpec(eye=(0.0, 0.0, 0.95), near=0.6, far=1.1),
    CameraSpec(eye=(0.55, 0.0, 0.6), up=(0.0, 0.0, 1.0), fov_deg=50.0, width=96, height=96, near=0.3, far=1.2),
    CameraSpec(eye=(-0.55, 0.0, 0.6), up=(0.0, 0.0, 1.0), fov_deg=50.0, width=96, height=96, near=0.3, far=1.2),
)


@dataclass(frozen=True)
class Grid:
    """The top-down grid over the workspace: ``size`` x ``size`` pixels on [-half, half]^2."""

    size: int = 64
    half: float = WORKSPACE_HALF

    @property
    def pixel(self) -> float:
        return 2 * self.half / self.size

    def xy_to_pix(self, xy) -> np.ndarray:
        """World (..., 2) -> integer (row, col), clipped into the grid."""
        xy = np.asarray(xy, dtype=float)
        col = np.floor((xy[..., 0] + self.half) / self.pixel)
        row = np.floor((self.half - xy[..., 1]) / self.pixel)
        return np.clip(np.stack([row, col], -1), 0, self.size - 1).astype(int)

    def pix_to_xy(self, rc) -> np.ndarray:
        rc = np.asarray(rc, dtype=float)
        x = -self.half + (rc[..., 1] + 0.5) * self.pixel
        y = self.half - (rc[..., 0] + 0.5) * self.pixel
        return np.stack([x, y], -1)


def render(client, cam: CameraSpec) -> tuple[np.ndarray, np.ndarray]:
    """Render one camera; returns colours (N, 3) uint8 and world points (N, 3) for every pixel."""
    view = client.computeViewMatrix(cam.eye, cam.target, cam.up)
    proj = client.computeProjectionMatrixFOV(cam.fov_deg, cam.width / cam.height, cam.near, cam.far)
    _, _, rgba, depth, _ = client.getCameraImage(cam.width, cam.height, view, proj, renderer=p.ER_TINY_RENDERER,
                                                 flags=p.ER_NO_SEGMENTATION_MASK)
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(cam.height, cam.width, 4)[..., :3]
    depth = np.asarray(depth, dtype=np.float64).reshape(cam.height, cam.width)
    points = unproject(depth, view, proj)
    return rgb.reshape(-1, 3), points


def unproject(depth_buffer: np.ndarray, view, proj) -> np.ndarray:
    """OpenGL depth buffer (H, W) in [0, 1] -> world points (H*W, 3) (PyBullet matrices are column-major)."""
    h, w = depth_buffer.shape
    view_m = np.asarray(view, dtype=np.float64).reshape(4, 4).T
    proj_m = np.asarray(proj, dtype=np.float64).reshape(4, 4).T
    inv = np.linalg.inv(proj_m @ view_m)
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    ndc = np.stack([2 * (cols + 0.5) / w - 1, 1 - 2 * (rows + 0.5) / h, 2 * depth_buffer - 1,
                    np.ones_like(depth_buffer)], -1).reshape(-1, 4)
    world = ndc @ inv.T
    return world[:, :3] / world[:, 3:4]


def fuse(colors: np.ndarray, points: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic top-down projection: (size, size, 3) uint8 colour and (size, size) float32 height.

    Cells no camera saw stay at height 0 with black colour.
    """
    inside = (np.abs(points[:, 0]) < grid.half) & (np.abs(points[:, 1]) < grid.half) & (points[:, 2] > -0.01)
    pts, cols = points[inside], colors[inside]
    order = np.argsort(pts[:, 2])  # ascending z: for repeated cells the highest point is written last and wins
    pts, cols = pts[order], cols[order]
    rc = grid.xy_to_pix(pts[:, :2])
    height = np.zeros((grid.size, grid.size), np.float32)
    color = np.zeros((grid.size, grid.size, 3), np.uint8)
    height[rc[:, 0], rc[:, 1]] = np.maximum(pts[:, 2], 0.0)
    color[rc[:, 0], rc[:, 1]] = cols
    return color, height


def capture(client, grid: Grid, cameras=DEFAULT_CAMERAS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render all cameras and fuse them: (colour image, heightmap, fused point cloud (N, 6): xyz + rgb/255).

    The first camera has priority: oblique views measure depth less precisely at grazing angles (a few mm
    on the table), so they only fill the cells the first (overhead) camera did not see.
    """
    views = [render(client, cam) for cam in cameras]
    color, height = fuse(*views[0], grid)
    seen = np.zeros((grid.size, grid.size), bool)
    rc = grid.xy_to_pix(views[0][1][:, :2])
    inside = (np.abs(views[0][1][:, 0]) < grid.half) & (np.abs(views[0][1][:, 1]) < grid.half)
    seen[rc[inside, 0], rc[inside, 1]] = True
    if len(views) > 1 and not seen.all():
        fill_color, fill_height = fuse(np.concatenate([v[0] for v in views[1:]]),
                                       np.concatenate([v[1] for v in views[1:]]), grid)
        color[~seen], height[~seen] = fill_color[~seen], fill_height[~seen]
    colors, points = np.concatenate([v[0] for v in views]), np.concatenate([v[1] for v in views])
    keep = (np.abs(points[:, 0]) < grid.half) & (np.abs(points[:, 1]) < grid.half) & (points[:, 2] > -0.01)
    cloud = np.concatenate([points[keep], colors[keep] / 255.0], 1)
    return color, height, cloud


def downsample_cloud(cloud: np.ndarray, voxel: float = 0.005) -> np.ndarray:
    """Voxel-downsample an (N, 6) xyz+rgb cloud with open3d (the fused cloud has ~30k points)."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud[:, :3]))
    pcd.colors = o3d.utility.Vector3dVector(np.clip(cloud[:, 3:6], 0, 1))
    down = pcd.voxel_down_sample(voxel)
    return np.concatenate([np.asarray(down.points), np.asarray(down.colors)], 1)
