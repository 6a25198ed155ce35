"""Approximately symmetric SymPush variants: the O(2) symmetry is broken by a known, tunable term.

Both breaks live in the MuJoCo *model* (edited at load time through ``_edit_spec``), so anything that
simulates the model (``step``, ``mujoco.rollout`` in planners) sees them.

* ``SymPushWind-v0``: a constant horizontal force field (wind, or equivalently a tilted table),
  implemented by tilting gravity: the puck and pusher sit on planar slide joints, so the horizontal part
  of gravity pushes both along ``wind_direction`` with acceleration ``wind`` (m/s^2). ``wind=0`` is
  exactly symmetric.
* ``SymPushObstacle-v0``: a fixed cylindrical post off the table centre that both bodies collide with.
  ``obstacle_radius=0`` removes it (exactly symmetric).

Each declares ``Symmetry(exact=False, breaking={...})`` (exact when its strength is 0) and exposes the
breaking term as an attribute (``env.wind_vector``, ``env.obstacle``).
"""
from __future__ import annotations

import math

import mujoco
import numpy as np

from symgym.envs.render2d import TopDownCanvas
from symgym.envs.sym_push import PUCK_RADIUS, PUSHER_RADIUS, TABLE_RADIUS, SymPushEnv
from symgym.equivariance import Symmetry


class SymPushWindEnv(SymPushEnv):
    """SymPush with a constant planar force field of strength ``wind`` (m/s^2) along ``wind_direction`` (rad).

    The field is gravity tilted into the table plane, so it accelerates the pusher and the puck alike.

    ## Action Space

    As ``SymPush-v0`` (:class:`~symgym.envs.sym_push.SymPushEnv`): ``Box(-1, 1, (2,), float32)``, projected
    onto the unit disc.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | desired pusher velocity (x, y) | ``max_speed`` (m/s) |

    ## Observation Space

    As ``SymPush-v0``: ``Box(-10, 10, (14,), float32)``. The wind is not observed.

    | index | meaning | unit |
    |---|---|---|
    | 0-1, 2-3 | pusher position, velocity | table radii, ``max_speed`` |
    | 4-5, 6-7 | puck position, velocity | table radii, ``max_speed`` |
    | 8-9 | goal position | table radii |
    | 10-11, 12-13 | puck - pusher, goal - puck | table radii |

    ## Rewards

    As ``SymPush-v0``: ``-(goal_weight |goal - puck| + pusher_weight |puck - pusher|) + success_bonus * success``.

    ## Starting State

    As ``SymPush-v0``.

    ## Episode End

    Terminates on success (puck within ``success_radius`` of the goal); truncated after 100 actions (twice
    SymPush's 50: the wind makes the task longer).

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``wind`` | 0.3 | field strength (m/s^2); 0 is exactly ``SymPush-v0`` |
    | ``wind_direction`` | 0.0 | direction of the field (rad from +x) |
    | ``**kwargs`` | | every argument of ``SymPush-v0`` (``max_speed``, reward weights, ...) |

    ## Symmetry

    Group: O(2) about the table centre, declared ``exact=False`` with ``breaking={"wind": [wx, wy]}`` (exact
    when ``wind=0``). Representations: as ``SymPush-v0`` (7 x standard on observations, standard on actions).
    Measured break (``symgym bench equivariance``, default wind 0.3 m/s^2): max |step(g.s, g.a) - g.step(s, a)|
    = 5.3 over 60 steps (results/equivariance.json).

    ## Version History

    * v0: initial release.
    """

    def __init__(self, wind: float = 0.3, wind_direction: float = 0.0, **kwargs):
        if not math.isfinite(wind) or wind < 0:
            raise ValueError(f"wind must be a finite non-negative acceleration in m/s^2, got {wind!r}")
        self.wind = float(wind)
        self.wind_direction = float(wind_direction)
        self.wind_vector = self.wind * np.array([math.cos(self.wind_direction), math.sin(self.wind_direction)])
        super().__init__(**kwargs)

    def _edit_spec(self, spec: "mujoco.MjSpec") -> None:
        g = np.array(spec.option.gravity, dtype=float)
        spec.option.gravity = [self.wind_vector[0], self.wind_vector[1], g[2]]

    def _declare_symmetry(self, group) -> Symmetry:
        sym = super()._declare_symmetry(group)
        if self.wind == 0.0:
            return sym
        return Symmetry(group=sym.group, obs=sym.obs, action=sym.action, exact=False,
                        breaking={"wind": [float(v) for v in self.wind_vector]})


class SymPushObstacleEnv(SymPushEnv):
    """SymPush with a fixed post of ``obstacle_radius`` (m) at ``obstacle_pos`` that puck and pusher hit.

    ## Action Space

    As ``SymPush-v0`` (:class:`~symgym.envs.sym_push.SymPushEnv`): ``Box(-1, 1, (2,), float32)``, projected
    onto the unit disc.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | desired pusher velocity (x, y) | ``max_speed`` (m/s) |

    ## Observation Space

    As ``SymPush-v0``: ``Box(-10, 10, (14,), float32)``. The post is not observed.

    | index | meaning | unit |
    |---|---|---|
    | 0-1, 2-3 | pusher position, velocity | table radii, ``max_speed`` |
    | 4-5, 6-7 | puck position, velocity | table radii, ``max_speed`` |
    | 8-9 | goal position | table radii |
    | 10-11, 12-13 | puck - pusher, goal - puck | table radii |

    ## Rewards

    As ``SymPush-v0``: ``-(goal_weight |goal - puck| + pusher_weight |puck - pusher|) + success_bonus * success``.

    ## Starting State

    As ``SymPush-v0``, resampled (continuing the seeded stream) until neither body nor the goal overlaps the post.

    ## Episode End

    Terminates on success (puck within ``success_radius`` of the goal); truncated after 100 actions.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``obstacle_radius`` | 0.04 | post radius (m); 0 removes it (exactly ``SymPush-v0``) |
    | ``obstacle_pos`` | (0.12, 0.06) | post centre (m); the post must lie inside 0.3 m of the centre |
    | ``**kwargs`` | | every argument of ``SymPush-v0`` |

    ## Symmetry

    Group: O(2) about the table centre, declared ``exact=False`` with ``breaking={"obstacle": {"pos", "radius"}}``
    (exact when the radius is 0). Representations: as ``SymPush-v0``. Measured break (``symgym bench
    equivariance``, default post): max |step(g.s, g.a) - g.step(s, a)| = 0.85 over 60 steps
    (results/equivariance.json).

    ## Version History

    * v0: initial release.
    """

    def __init__(self, obstacle_radius: float = 0.04, obstacle_pos: tuple[float, float] = (0.12, 0.06), **kwargs):
        if not math.isfinite(obstacle_radius) or obstacle_radius < 0:
            raise ValueError(f"obstacle_radius must be a finite non-negative length, got {obstacle_radius!r}")
        pos = np.asarray(obstacle_pos, dtype=float)
        if pos.shape != (2,) or np.linalg.norm(pos) + obstacle_radius > 0.3:
            raise ValueError(f"obstacle_pos must be a 2-vector with the post inside the table, got {obstacle_pos!r}")
        self.obstacle = {"pos": [float(pos[0]), float(pos[1])], "radius": float(obstacle_radius)}
        super().__init__(**kwargs)

    def _edit_spec(self, spec: "mujoco.MjSpec") -> None:
        if self.obstacle["radius"] == 0.0:
            return
        x, y = self.obstacle["pos"]
        spec.worldbody.add_geom(name="obstacle", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                                size=[self.obstacle["radius"], 0.03, 0], pos=[x, y, 0.02],
                                rgba=[0.3, 0.3, 0.3, 1], contype=3, conaffinity=3)

    def _declare_symmetry(self, group) -> Symmetry:
        sym = super()._declare_symmetry(group)
        if self.obstacle["radius"] == 0.0:
            return sym
        return Symmetry(group=sym.group, obs=sym.obs, action=sym.action, exact=False,
                        breaking={"obstacle": dict(self.obstacle)})

    def _overlaps(self) -> bool:
        c, r = np.array(self.obstacle["pos"]), self.obstacle["radius"]
        if r == 0.0:
            return False
        return (np.linalg.norm(self.puck_pos - c) < r + PUCK_RADIUS + 0.01
                or np.linalg.norm(self.pusher_pos - c) < r + PUSHER_RADIUS + 0.01
                or np.linalg.norm(self.goal_pos - c) < r + PUCK_RADIUS)

    def reset_model(self) -> None:
        # Rejection sampling continues the seeded RNG stream, so resets stay reproducible.
        super().reset_model()
        while self._overlaps():
            mujoco.mj_resetData(self.model, self.data)
            super().reset_model()

    def render(self):
        frame = super().render()
        if frame is None or self.obstacle["radius"] == 0.0:
            return frame
        mask = TopDownCanvas(frame.shape[0], TABLE_RADIUS + 0.01).disc(self.obstacle["pos"], self.obstacle["radius"])
        frame = frame.copy()
        frame[mask > 0.5] = (77, 77, 77)
        return frame


__all__ = ["SymPushWindEnv", "SymPushObstacleEnv"]
