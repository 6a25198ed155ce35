"""Scripted oracles: read the privileged object poses and return the next pick-and-place action.

The suction gripper picks each object at its body origin (on its top face) with the gripper yaw equal to
the object's yaw, so the place yaw is the object's target yaw; for symmetric objects the target is the
symmetric copy closest to the current yaw (smallest rotation), which keeps demonstrations consistent.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from symgym.envs.tabletop.scene import wrap_angle

if TYPE_CHECKING:
    from symgym.envs.tabletop.base import TabletopEnv

RELEASE_GAP = 0.003  # release the object 3 mm above its resting height, so it never starts interpenetrating


def _closest_symmetric_yaw(current: float, target: float, order: int) -> float:
    if order == 0:
        return current
    period = 2 * math.pi / order
    return float(wrap_angle(target + round((current - target) / period) * period))


def _pick(env: "TabletopEnv", name: str) -> tuple[np.ndarray, float, float]:
    """(pick xy, gripper yaw, height of the object's top above its origin)."""
    pos, yaw, _ = env.scene.pose(name)
    half_h = env.scene.objects[name].size[2]
    return pos[:2], yaw, half_h


def _action(pick_xy, pick_yaw, place_xy, place_z, place_yaw) -> np.ndarray:
    return np.array([pick_xy[0], pick_xy[1], wrap_angle(pick_yaw), place_xy[0], place_xy[1], place_z,
                     wrap_angle(place_yaw)], np.float32)


def insertion(env) -> np.ndarray | None:
    if env._credit() >= 1.0:
        return None
    pick_xy, pick_yaw, half_h = _pick(env, "block")
    fpos, fyaw, _ = env.scene.pose("fixture")
    top = fpos[2] + env.scene.objects["fixture"].size[2]
    return _action(pick_xy, pick_yaw, fpos[:2], top + 2 * half_h + RELEASE_GAP, fyaw)


def place_red_in_green(env) -> np.ndarray | None:
    reds = [n for n in env.scene.objects if n.startswith("red")]
    bowls = env.bowls("green")
    todo = [r for r in reds if not any(env.in_bowl(r, b) for b in bowls)]
    if not todo:
        return None
    free = [b for b in bowls if not any(env.in_bowl(r, b) for r in reds)]
    if not free:
        return None
    pick_xy, pick_yaw, half_h = _pick(env, todo[0])
    # nearest free bowl: shorter moves, and a deterministic choice for the demonstrations
    bowl = min(free, key=lambda b: np.linalg.norm(env.scene.pose(b)[0][:2] - pick_xy))
    bpos, _, _ = env.scene.pose(bowl)
    floor_top = bpos[2] + 0.0025
    return _action(pick_xy, pick_yaw, bpos[:2], floor_top + 2 * half_h + RELEASE_GAP, pick_yaw)


def stacking(env) -> np.ndarray | None:
    level = env.stacked()
    if level >= len(env.ORDER):
        return None
    name = env.ORDER[level]
    pick_xy, pick_yaw, half_h = _pick(env, name)
    ppos, pyaw, _ = env.scene.pose("pad")
    pad_top = ppos[2] + env.scene.objects["pad"].size[2]
    target_yaw = _closest_symmetric_yaw(pick_yaw, pyaw, 4)
    return _action(pick_xy, pick_yaw, ppos[:2], pad_top + 2 * half_h * (level + 1) + RELEASE_GAP, target_yaw)
