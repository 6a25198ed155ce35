"""Top-down rendering of planar scenes in numpy: fast, deterministic, no OpenGL needed.

Pixel (row, col) covers world (x, y) with x = col, y = H-1-row (rows reversed), the convention
``equivariance.transforms.transform_image`` uses, so rotating the scene rotates the image.
"""
from __future__ import annotations

import numpy as np


class TopDownCanvas:
    def __init__(self, size: int, half_extent: float):
        if size < 8:
            raise ValueError(f"image size must be >= 8 pixels, got {size}")
        self.size = size
        self.half_extent = half_extent
        centres = (np.arange(size) + 0.5) / size * 2 * half_extent - half_extent
        self.x = np.broadcast_to(centres[None, :], (size, size))
        self.y = np.broadcast_to(centres[::-1, None], (size, size))
        self.pixel = 2 * half_extent / size

    def disc(self, centre, radius: float) -> np.ndarray:
        """Anti-aliased coverage in [0, 1] of a disc (one pixel soft edge)."""
        d = np.hypot(self.x - centre[0], self.y - centre[1])
        return np.clip((radius - d) / self.pixel + 0.5, 0.0, 1.0)

    def ring(self, centre, radius: float, width: float) -> np.ndarray:
        d = np.abs(np.hypot(self.x - centre[0], self.y - centre[1]) - radius)
        return np.clip((width / 2 - d) / self.pixel + 0.5, 0.0, 1.0)


def composite(layers: list[tuple[np.ndarray, tuple[float, float, float]]], background=(1.0, 1.0, 1.0),
              size: int = 64) -> np.ndarray:
    """Paint coverage masks over a background, in order; returns uint8 RGB."""
    img = np.ones((size, size, 3)) * np.asarray(background)
    for mask, colour in layers:
        img = img * (1 - mask[..., None]) + mask[..., None] * np.asarray(colour)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
