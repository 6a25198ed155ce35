"""``HepPushAround-v0``: push-to-target starting *in front of* the puck, low, so the end-effector must go around
it, left or right: demonstrations with two equally valid modes (what a diffusion head can represent and an MSE
head averages away)."""
from __future__ import annotations

import math

import numpy as np

from symgym.envs.closed_loop import EE_RADIUS, OBJ_RADIUS, PushToTargetEnv

#: lateral clearance (m) from the puck's centre while passing it
CLEAR = OBJ_RADIUS + EE_RADIUS + 0.025
#: the end-effector starts this far past the puck, towards the target
START_AHEAD = 0.085


class PushAroundEnv(PushToTargetEnv):
    """Push the puck onto the target, starting between them at pushing height: first pass the puck on either side.

    ## Action Space

    ``Box(-1, 1, (4,), float32)``, one command per control step (20 Hz): ``dx, dy`` projected onto the unit disc,
    ``dz`` and ``suction`` clipped to [-1, 1]; velocity actuators track ``delta / dt``.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | end-effector displacement x, y | ``max_step`` (m per step) |
    | 2 | end-effector displacement z | ``max_step`` (m per step) |
    | 3 | suction (ignored: disabled in this task) | > 0 on |

    ## Observation Space

    As ``HepPushToTarget-v0``: a 16-float ``"vector"`` and ``"points"``: 96 labelled surface samples (``obs_mode=
    "points"``) or a rendered, unlabelled ``(256, 6)`` cloud of positions and normals (``"depth_cloud"``).

    | key | meaning | unit |
    |---|---|---|
    | ``vector`` 0-2, 3-5 | end-effector position, velocity | m, m/s |
    | ``vector`` 6 | attached flag (always 0: suction disabled) | 0 or 1 |
    | ``vector`` 7-9, 10-12 | puck position (bottom centre), velocity | m, m/s |
    | ``vector`` 13-15 | target position | m |
    | ``points`` | (96, 4) x, y, z, label, or (256, 6) x, y, z, nx, ny, nz | m |

    ## Rewards

    ``1 * success - 0.01`` per step.

    ## Starting State

    The ``HepPushToTarget-v0`` layout (object near (-0.08, 0), target near (0.08, 0)), but the end-effector starts
    0.085 m past the puck towards the target (+-5 mm sideways), at pushing height 0.02 m. ``workspace=
    "transformed"`` rotates and shifts the whole layout. The oracle picks the side it passes the puck on at
    random per episode (from the env's generator).

    ## Episode End

    Terminates on success (the puck's centre within 3 cm of the target); truncated after 80 steps.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` |
    | ``max_step`` | 0.02 | end-effector displacement (m) an action of 1 commands per step |
    | ``workspace`` | ``"demo"`` | ``"demo"`` or ``"transformed"`` |
    | ``max_shift`` | 0.1 | largest planar shift (m) of a ``"transformed"`` layout |
    | ``obs_mode`` | ``"points"`` | ``"points"`` (labelled samples) or ``"depth_cloud"`` (rendered) |
    | ``cloud_kwargs`` | ``None`` | options of ``symgym.envs.closed_loop_perception.DepthCloud`` |

    ## Symmetry

    SE(2), exact for the dynamics (as ``HepPushToTarget-v0``); the rendered cloud is equivariant up to sampling.

    ## Version History

    * v0: initial release.
    """

    def reset_model(self) -> None:
        super().reset_model()
        rng = self.np_random
        puck, target = self.obj_pos[:2], self.target_pos[:2]
        u = (target - puck) / (np.linalg.norm(target - puck) + 1e-9)
        perp = np.array([-u[1], u[0]])
        ee = puck + START_AHEAD * u + rng.uniform(-0.005, 0.005) * perp
        i = self._qadr["ee_x"]
        self.data.qpos[i:i + 3] = [ee[0], ee[1], self.push_z]
        self._side = float(rng.choice([-1.0, 1.0]))

    def oracle_action(self) -> np.ndarray:
        ee, puck, target = self.ee_pos, self.obj_pos, self.target_pos
        d = target[:2] - puck[:2]
        u = d / (np.linalg.norm(d) + 1e-9)
        perp = np.array([-u[1], u[0]])
        rel = ee[:2] - puck[:2]
        along, lateral = float(rel @ u), float(rel @ perp)
        in_place = (abs(lateral) < 0.012 and -(self.behind + 0.02) < along < -(OBJ_RADIUS + EE_RADIUS - 0.01)
                    and ee[2] < self.push_z + 0.012)
        if in_place:
            goal = puck[:2] - (OBJ_RADIUS + EE_RADIUS - 0.012) * u
            return np.r_[self._move_toward(np.r_[goal, self.push_z], speed=0.5), -1.0]
        if along < -(self.behind - 0.012):
            return np.r_[self._move_toward(np.r_[puck[:2] - self.behind * u, self.push_z]), -1.0]
        # Not behind the puck yet: step sideways (the side chosen at reset while still centred), then back past it.
        side = self._side if abs(lateral) < 0.02 else math.copysign(1.0, lateral)
        if abs(lateral) < CLEAR - 0.005 and along > 0:
            goal = puck[:2] + side * CLEAR * perp + along * u
        else:
            goal = puck[:2] + side * CLEAR * perp - self.behind * u
        return np.r_[self._move_toward(np.r_[goal, self.push_z]), -1.0]
