"""How a planar group element acts on common observation types."""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from symgym.equivariance.groups import O2Element


def transform_image(g: O2Element, image: np.ndarray, channels_last: bool = True) -> np.ndarray:
    """Rotate/reflect a top-down image about its centre by ``g``.

    The image's first spatial axis is world +y pointing *down the rows reversed*: we use the
    convention pixel (row, col) <-> world (x = col, y = H-1-row), so that world rotations are
    counter-clockwise in the picture. Multiples of 90 degrees on square images are exact
    (``np.rot90``); other angles interpolate bilinearly.
    """
    img = np.asarray(image)
    if not channels_last:
        img = np.moveaxis(img, 0, -1)
    if img.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W, C), got {img.shape}")
    out = img
    if g.flip:
        # Reflection across the world x-axis (y -> -y) flips the rows.
        out = out[::-1, :, :]
    quarter = g.angle / (math.pi / 2)
    if abs(quarter - round(quarter)) < 1e-9 and img.shape[0] == img.shape[1]:
        out = np.rot90(out, k=int(round(quarter)) % 4, axes=(0, 1))
    else:
        out = ndimage.rotate(out.astype(np.float32), math.degrees(g.angle), axes=(1, 0), reshape=False,
                             order=1, mode="constant", cval=0.0).astype(img.dtype)
    out = np.ascontiguousarray(out)
    return out if channels_last else np.moveaxis(out, -1, 0)


def transform_points(g: O2Element, points: np.ndarray) -> np.ndarray:
    """Act on the x, y columns of an (N, >=2) point array; z and extra features are invariant."""
    pts = np.array(points, dtype=float, copy=True)
    pts[..., :2] = pts[..., :2] @ g.matrix().T
    return pts
