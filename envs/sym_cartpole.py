"""SymCartPole-v0: cart-pole swing-up, symmetric under the mirror x -> -x.

The group has two elements (:class:`symgym.equivariance.ReflectionGroup`). It is written with the planar
element type the rest of symgym uses: the mirror is ``MIRROR_X = O2Element(angle=pi, flip=True)``, whose
matrix is ``diag(-1, 1)`` (x -> -x in the x-z plane of the rail). ``DihedralGroup(1)`` would be the same
abstract group but its reflection is y -> -y, which is not the mirror of this scene.
"""
from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces

from symgym.envs.mujoco_base import PlanarMujocoEnv
from symgym.envs.render2d import TopDownCanvas, composite
from symgym.equivariance import O2Element, ReflectionGroup, Symmetry, sign, trivial

POLE_LENGTH = 0.6


class SymCartPoleEnv(PlanarMujocoEnv):
    """Swing a pole up from hanging and balance it by pushing the cart along a rail with end stops.

    The rail runs along x from -1.5 m to 1.5 m; the pole (0.6 m) hinges about y; gravity pulls along -z.

    ## Action Space

    ``Box(-1, 1, (1,), float32)``, clipped. One action lasts 0.02 s (2 physics steps of 0.01 s).

    | index | meaning | unit |
    |---|---|---|
    | 0 | force on the cart along x | 10 N (the motor's gear) |

    ## Observation Space

    ``Box(-inf, inf, (5,), float32)``; ``theta`` is the pole angle, 0 upright.

    | index | meaning | unit |
    |---|---|---|
    | 0 | cart position x | m |
    | 1 | ``cos theta`` | - |
    | 2 | ``sin theta`` | - |
    | 3 | cart velocity | m/s |
    | 4 | pole angular velocity | rad/s |

    ## Rewards

    Minus :meth:`stage_cost`: ``-((1 - cos theta) + position_weight * x^2 + spin_weight * dtheta^2 +
    action_weight * a^2)`` per step.

    ## Starting State

    Hanging: ``theta = pi + U(-0.2, 0.2)``, ``x ~ U(-0.3, 0.3)``, both velocities normal with standard
    deviation 0.05.

    ## Episode End

    Never terminates (``info["is_success"]`` says whether the pole is within ``success_angle`` of upright);
    truncated after 200 actions by the registration.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` |
    | ``success_angle`` | 0.3 | upright tolerance (rad) for ``info["is_success"]`` |
    | ``position_weight`` | 0.1 | cost per m^2 of cart offset |
    | ``spin_weight`` | 0.001 | cost per (rad/s)^2 of pole angular velocity |
    | ``action_weight`` | 0.01 | cost per squared action |

    ## Symmetry

    Group: the mirror x -> -x, ``Z2(x->-x)`` (two elements). Representations: observation
    ``sign + trivial + sign + sign + sign``, action ``sign``. Exact; measured by ``symgym bench equivariance``:
    max |step(g.s, g.a) - g.step(s, a)| = 0 over 60 steps (results/equivariance.json).

    ## Version History

    * v0: initial release; the pole-spin weight became an argument (default unchanged).
    """

    xml_file = "sym_cartpole.xml"
    frame_skip = 2
    planner_defaults = {"horizon": 40, "noise_sigma": 0.7, "temperature": 0.5}
    #: step() is project_actions -> _simulate(actions_to_ctrl(a)) -> an outcome read from the state alone (no
    #: derived quantities), so symgym.envs.vector may run the physics batched and replay step() on each row
    vector_from_state = True
    #: 3-D video camera (symgym.learn.run.video): the rail's x-z plane seen from the side
    video_camera = {"lookat": (0.0, 0.0, 0.1), "distance": 3.6, "azimuth": 90.0, "elevation": -8.0}

    def __init__(self, render_mode: str | None = None, success_angle: float = 0.3, position_weight: float = 0.1,
                 action_weight: float = 0.01, spin_weight: float = 0.001):
        super().__init__(render_mode=render_mode)
        self.success_angle = float(success_angle)
        self.position_weight = float(position_weight)
        self.action_weight = float(action_weight)
        self.spin_weight = float(spin_weight)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(5,), dtype=np.float32)
        group = ReflectionGroup()
        obs_rep = sign(group) + trivial(group) + sign(group) + sign(group) + sign(group)
        self.symmetry = Symmetry(group=group, obs=obs_rep, action=sign(group), exact=True)

    # -- symmetry ---------------------------------------------------------------------
    def transform_state(self, g: O2Element, state: np.ndarray) -> np.ndarray:
        """Every coordinate (cart x, pole angle) is odd under the mirror, and so are their velocities."""
        if not self.symmetry.group.contains(g):
            raise ValueError(f"{g} is not an element of {self.symmetry.group.name}")
        s = np.array(state, dtype=np.float64, copy=True)
        for part in ("QPOS", "QVEL", "WARMSTART"):
            if part in self._layout:
                s[..., self._layout[part]] *= g.det
        return s

    # -- vectorised pieces the planner uses ----------------------------------------------
    def project_actions(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(actions, -1.0, 1.0)

    def actions_to_ctrl(self, actions: np.ndarray) -> np.ndarray:
        return self.project_actions(actions)

    def stage_cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-step cost: pole height deficit, cart offset and effort (all even under the mirror)."""
        qpos = states[..., self._layout["QPOS"]]
        qvel = states[..., self._layout["QVEL"]]
        x, theta = qpos[..., 0], qpos[..., 1]
        return ((1.0 - np.cos(theta)) + self.position_weight * x**2 + self.spin_weight * qvel[..., 1] ** 2
                + self.action_weight * np.sum(np.asarray(actions) ** 2, axis=-1))


    # -- gym API ----------------------------------------------------------------------
    def reset_model(self) -> None:
        rng = self.np_random
        self.data.qpos[:] = [rng.uniform(-0.3, 0.3), math.pi + rng.uniform(-0.2, 0.2)]
        self.data.qvel[:] = rng.normal(0.0, 0.05, size=2)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (1,):
            raise ValueError(f"SymCartPole action must have shape (1,), got {a.shape}")
        a = self.project_actions(a)
        self._simulate(self.actions_to_ctrl(a))
        reward = -float(self.stage_cost(self.get_state(), a))
        return self._obs(), reward, False, False, self._info()

    def _info(self) -> dict:
        theta = float(self.data.qpos[1])
        upright_error = abs(math.remainder(theta, 2 * math.pi))
        return {"is_success": upright_error < self.success_angle, "upright_error": upright_error}

    def _obs(self) -> np.ndarray:
        x, theta = self.data.qpos
        return np.array([x, math.cos(theta), math.sin(theta), *self.data.qvel], dtype=np.float32)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        c = TopDownCanvas(256, 1.7)  # the canvas' (x, y) is the scene's (x, z) here
        x, theta = self.data.qpos
        tip = np.array([x + POLE_LENGTH * math.sin(theta), POLE_LENGTH * math.cos(theta)])
        rail = np.max([c.disc((px, 0.0), 0.01) for px in np.linspace(-1.6, 1.6, 80)], axis=0)
        pole = np.max([c.disc(p, 0.025) for p in np.linspace((x, 0.0), tip, 30)], axis=0)
        return composite([(rail, (0.5, 0.5, 0.5)), (c.disc((x, 0.0), 0.09), (0.25, 0.4, 0.85)),
                          (pole, (0.9, 0.5, 0.2))], background=(1, 1, 1), size=256)
