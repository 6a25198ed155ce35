"""SymPointMass-v0: a puck pushed by a planar force reaches a goal; O(2)-symmetric, and its actions rotate.

In SymReach the action (two joint torques) only changes sign under the group, so an orbit of action noise
has two members whatever the group. Here the action is a force in the plane: it transforms by the standard
representation, so a D_n orbit of noise has 2n members and rotations by any angle move an action off the
coordinate axes. The feasible set is therefore the unit *disk* (a rotation-invariant set), not the box
``[-1, 1]^2``: rotating a corner of the box by 45 degrees would leave the box, and clipping to the box would
break the symmetry of the dynamics.
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces

from symgym.envs.mujoco_base import PlanarMujocoEnv
from symgym.envs.render2d import TopDownCanvas, composite
from symgym.equivariance import O2, Symmetry, standard


def project_to_disk(actions: np.ndarray) -> np.ndarray:
    """Scale actions ``(..., 2)`` with norm above 1 back onto the unit circle (commutes with O(2))."""
    a = np.asarray(actions, dtype=np.float64)
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(norm, 1.0)


class SymPointMassEnv(PlanarMujocoEnv):
    """Push a damped puck on a frictionless plane onto a goal with a planar force.

    ## Action Space

    ``Box(-1, 1, (2,), float32)`` as the declared space; every action is projected onto the unit disk
    (:func:`project_to_disk`), the rotation-invariant feasible set, so rotated actions (which may leave the
    box) are valid too. One action lasts 0.05 s (5 physics steps).

    | index | meaning | unit |
    |---|---|---|
    | 0 | force along world x | ``max_force`` (N) |
    | 1 | force along world y | ``max_force`` (N) |

    ## Observation Space

    ``Box(-inf, inf, (6,), float32)``; it transforms by ``3 * standard`` of O(2).

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | puck position | m |
    | 2-3 | puck velocity | m/s |
    | 4-5 | goal position | m |

    ## Rewards

    Minus :meth:`stage_cost`: ``-(|goal - puck| + velocity_weight * |v|^2 + action_weight * |a|^2)`` per step.

    ## Starting State

    Puck uniform in the disk of radius 0.3 m, velocity normal with standard deviation 0.05 m/s, goal uniform
    in the disk of radius 0.3 m, all about the origin.

    ## Episode End

    Never terminates (``info["is_success"]`` says whether the puck is within ``success_radius`` of the goal);
    truncated after 60 actions by the registration.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` |
    | ``max_force`` | 1.0 | force (N) an action of norm 1 commands |
    | ``success_radius`` | 0.03 | goal tolerance (m) for ``info["is_success"]`` |
    | ``velocity_weight`` | 0.05 | cost per (m/s)^2 of puck velocity |
    | ``action_weight`` | 0.01 | cost per squared action |

    ## Symmetry

    Group: O(2) about the origin. Representations: observation ``3 * standard``, action ``standard``.
    Exact: the joints, motors and damping are the same along x and y and there are no contacts, so
    ``step(g.s, g.a) == g.step(s, a)`` for every rotation and mirror (tested by simulation in
    ``tests/test_point_mass.py`` at random angles).

    ## Version History

    * v0: initial release.
    """

    xml_file = "sym_point_mass.xml"
    frame_skip = 5
    planar_pairs = (("x", "y"),)
    mocap_bodies = ("goal",)
    planner_defaults = {"horizon": 15, "noise_sigma": 0.5, "temperature": 0.05}
    #: step() is project_actions -> _simulate(actions_to_ctrl(a)) -> an outcome read from the state alone (no
    #: derived quantities), so symgym.envs.vector may run the physics batched and replay step() on each row
    vector_from_state = True

    def __init__(self, render_mode: str | None = None, max_force: float = 1.0, success_radius: float = 0.03,
                 velocity_weight: float = 0.05, action_weight: float = 0.01):
        for name, value in (("max_force", max_force), ("success_radius", success_radius)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        super().__init__(render_mode=render_mode)
        self.max_force = float(max_force)
        self.success_radius = float(success_radius)
        self.velocity_weight = float(velocity_weight)
        self.action_weight = float(action_weight)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)
        group = O2()
        self.symmetry = Symmetry(group=group, obs=3 * standard(group), action=standard(group), exact=True)

    # -- vectorised pieces the planner uses ----------------------------------------------
    def project_actions(self, actions: np.ndarray) -> np.ndarray:
        return project_to_disk(actions)

    def actions_to_ctrl(self, actions: np.ndarray) -> np.ndarray:
        return self.max_force * self.project_actions(actions)

    def obs_from_states(self, states: np.ndarray) -> np.ndarray:
        """Observations ``(..., 6)`` of full states ``(..., nstate)`` (batched :meth:`_obs`)."""
        qpos = states[..., self._layout["QPOS"]]
        qvel = states[..., self._layout["QVEL"]]
        goal = states[..., self._layout["MOCAP_POS"]][..., :2]
        return np.concatenate([qpos[..., self._pair_qpos[0]], qvel[..., self._pair_dof[0]], goal], axis=-1)

    def obs_cost(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Stage cost from observations ``(..., 6)`` (what a learned reward model is fit to)."""
        dist = np.linalg.norm(obs[..., 4:6] - obs[..., 0:2], axis=-1)
        return (dist + self.velocity_weight * np.sum(obs[..., 2:4] ** 2, axis=-1)
                + self.action_weight * np.sum(self.project_actions(actions) ** 2, axis=-1))

    def stage_cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-step cost of full states ``(..., nstate)`` reached by actions ``(..., 2)``: O(2) invariant."""
        return self.obs_cost(self.obs_from_states(states), actions)

    # -- gym API ----------------------------------------------------------------------
    def reset_model(self) -> None:
        rng = self.np_random

        def in_disk(radius: float) -> np.ndarray:
            r, phi = radius * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
            return np.array([r * np.cos(phi), r * np.sin(phi)])

        self.data.qpos[self._pair_qpos[0]] = in_disk(0.3)
        self.data.qvel[self._pair_dof[0]] = rng.normal(0.0, 0.05, size=2)
        self.data.mocap_pos[self._mocap[0], :2] = in_disk(0.3)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise ValueError(f"SymPointMass action must be a finite vector of shape (2,), got {action!r}")
        a = self.project_actions(a)
        self._simulate(self.actions_to_ctrl(a))
        reward = -float(self.stage_cost(self.get_state(), a))
        return self._obs(), reward, False, False, self._info()

    def _info(self) -> dict:
        d = float(np.linalg.norm(self._obs()[4:6] - self._obs()[0:2]))
        return {"is_success": d < self.success_radius, "goal_distance": d}

    def _obs(self) -> np.ndarray:
        return self.obs_from_states(self.get_state()).astype(np.float32)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        c = TopDownCanvas(256, 0.6)
        obs = self._obs()
        return composite([
            (c.disc((0, 0), 0.58), (0.88, 0.86, 0.82)),
            (c.ring(obs[4:6], 0.03, 0.005), (0.2, 0.7, 0.3)),
            (c.disc(obs[0:2], 0.02), (0.85, 0.25, 0.2)),
        ], background=(1, 1, 1), size=256)
