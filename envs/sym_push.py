"""SymPush-v0 and SymPushImage-v0: push a puck to a goal on a round table; O(2)-symmetric about its centre."""
from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces

from symgym.envs.mujoco_base import PlanarMujocoEnv
from symgym.envs.render2d import TopDownCanvas, composite
from symgym.equivariance import O2, Symmetry, group_from_name, standard

TABLE_RADIUS = 0.35
PUCK_RADIUS, PUSHER_RADIUS = 0.03, 0.02


def push_observation(pusher, v_pusher, puck, v_puck, goal, max_speed: float) -> np.ndarray:
    """SymPush's 14-float observation: seven 2-D vectors, positions in table radii and velocities in units of
    ``max_speed`` so network inputs are O(1) (a scalar per vector, so the O(2) action is unchanged)."""
    p = 1.0 / TABLE_RADIUS
    return np.concatenate([pusher * p, v_pusher / max_speed, puck * p, v_puck / max_speed, goal * p,
                           (puck - pusher) * p, (goal - puck) * p], axis=-1).astype(np.float32)


def clip_to_disc(action: np.ndarray, radius: float = 1.0) -> np.ndarray:
    """Project onto the disc |a| <= radius; unlike per-axis clipping this commutes with rotations."""
    n = math.hypot(action[0], action[1])
    return action * (radius / n) if n > radius else action


class SymPushEnv(PlanarMujocoEnv):
    """A pusher (blue) moves with a commanded planar velocity and pushes a puck (red) to a goal (green).

    The scene is a round table of radius 0.35 m centred on the world origin; the pusher and the puck are held
    on it by radial rim constraints. Everything that acts in the plane is isotropic (see ``sym_push.xml``).

    ## Action Space

    ``Box(-1, 1, (2,), float32)``, projected onto the unit disc (not clipped per axis, so clipping commutes
    with rotations). One action lasts 0.1 s (10 physics steps of 0.01 s).

    | index | meaning | unit |
    |---|---|---|
    | 0 | desired pusher velocity, x | ``max_speed`` (m/s) |
    | 1 | desired pusher velocity, y | ``max_speed`` (m/s) |

    ## Observation Space

    ``obs_mode="vector"``: ``Box(-10, 10, (14,), float32)``, seven 2-D vectors in the world frame; positions
    are divided by the table radius (0.35 m) and velocities by ``max_speed``, so entries are of order one.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | pusher position | table radii |
    | 2-3 | pusher velocity | ``max_speed`` |
    | 4-5 | puck position | table radii |
    | 6-7 | puck velocity | ``max_speed`` |
    | 8-9 | goal position | table radii |
    | 10-11 | puck - pusher | table radii |
    | 12-13 | goal - puck | table radii |

    ``obs_mode="image"``: ``Box(0, 255, (image_size, image_size, 3), uint8)``, a top-down view of the table
    with one channel per body: 0 pusher, 1 puck, 2 goal (255 inside the disc, 0 outside).

    ## Rewards

    ``-(goal_weight * |goal - puck| + pusher_weight * |puck - pusher|) + success_bonus * success`` per step,
    distances in metres; with the defaults ``-10 |goal - puck| - 5 |puck - pusher| + 10 * success``. The
    planners' :meth:`stage_cost` is the same expression without the bonus (one source: :meth:`shaping_cost`).

    ## Starting State

    The puck is uniform in a disc of radius 0.15 m, the goal in a disc of radius 0.22 m at 0.08-0.2 m from the
    puck, the pusher in a disc of radius 0.28 m clear of the puck; the puck's yaw is uniform. Velocities are 0.

    ## Episode End

    Terminates on success: the puck's centre within ``success_radius`` of the goal. Truncated after 50
    actions by the registration (``max_episode_steps``).

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``obs_mode`` | ``"vector"`` | ``"vector"`` (14 floats) or ``"image"`` (``SymPushImage-v0``) |
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` (a 256x256 top-down drawing) |
    | ``max_speed`` | 0.4 | pusher speed (m/s) that an action of norm 1 commands |
    | ``success_radius`` | 0.05 | goal tolerance (m) |
    | ``image_size`` | 64 | side of the image observation (pixels) |
    | ``group`` | ``"O(2)"`` | the declared group: ``"O(2)"``, ``"SO(2)"``, ``"C4"``, ``"D4"``, ... |
    | ``goal_weight`` | 10.0 | reward per metre of puck-to-goal distance |
    | ``pusher_weight`` | 5.0 | reward per metre of pusher-to-puck distance |
    | ``success_bonus`` | 10.0 | reward on the step that reaches the goal |

    ## Symmetry

    Group: O(2) about the table centre (or the subgroup named by ``group``). Representations: the observation
    is 7 copies of the standard (rotation/reflection) representation, the action one copy; the image
    observation rotates as a picture. Exact (``exact=True``): the dynamics are equivariant because damping,
    the rim and contact friction (elliptic cones) are isotropic. Measured by ``symgym bench equivariance``:
    max |step(g.s, g.a) - g.step(s, a)| = 2.2e-13 over 60 steps (results/equivariance.json).

    ## Version History

    * v0: initial release; reward weights became constructor arguments (defaults unchanged).
    """

    xml_file = "sym_push.xml"
    frame_skip = 10   # 0.1 s per action: short horizons make pushing learnable in a small SAC budget
    planar_pairs = (("pusher_x", "pusher_y"), ("puck_x", "puck_y"))
    yaw_hinges = ("puck_yaw",)
    mocap_bodies = ("goal",)

    def __init__(self, obs_mode: str = "vector", render_mode: str | None = None, max_speed: float = 0.4,
                 success_radius: float = 0.05, image_size: int = 64, group: str = "O(2)",
                 goal_weight: float = 10.0, pusher_weight: float = 5.0, success_bonus: float = 10.0):
        if obs_mode not in ("vector", "image"):
            raise ValueError(f"obs_mode must be 'vector' or 'image', got {obs_mode!r}")
        for name, value in (("goal_weight", goal_weight), ("pusher_weight", pusher_weight),
                            ("success_bonus", success_bonus)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        super().__init__(render_mode=render_mode)
        self.goal_weight, self.pusher_weight = float(goal_weight), float(pusher_weight)
        self.success_bonus = float(success_bonus)
        self.obs_mode = obs_mode
        self.max_speed = float(max_speed)
        self.success_radius = float(success_radius)
        self.image_size = int(image_size)
        self._canvas = TopDownCanvas(self.image_size, TABLE_RADIUS + 0.01)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        if obs_mode == "vector":
            self.observation_space = spaces.Box(-10.0, 10.0, shape=(14,), dtype=np.float32)
        else:
            self.observation_space = spaces.Box(0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8)
        # The XML puts each body's x/y slide joints next to each other, so qpos/qvel slices are contiguous.
        self._pusher_sl = slice(int(self._pair_qpos[0, 0]), int(self._pair_qpos[0, 0]) + 2)
        self._puck_sl = slice(int(self._pair_qpos[1, 0]), int(self._pair_qpos[1, 0]) + 2)
        assert list(self._pair_qpos[:, 0] + 1) == list(self._pair_qpos[:, 1]) == list(self._pair_dof[:, 1])
        self.symmetry = self._declare_symmetry(O2() if group == "O(2)" else group_from_name(group))

    def _declare_symmetry(self, group) -> Symmetry:
        obs = 7 * standard(group) if self.obs_mode == "vector" else "image"
        return Symmetry(group=group, obs=obs, action=standard(group), exact=True)

    # -- scene accessors (world coordinates: qpos are world xy because bodies sit at the origin) --
    @property
    def pusher_pos(self) -> np.ndarray:
        return self.data.qpos[self._pair_qpos[0]].copy()

    @property
    def puck_pos(self) -> np.ndarray:
        return self.data.qpos[self._pair_qpos[1]].copy()

    @property
    def goal_pos(self) -> np.ndarray:
        return self.data.mocap_pos[self._mocap[0], :2].copy()

    @property
    def pusher_velocity(self) -> np.ndarray:
        """World-frame planar velocity of the pusher (m/s)."""
        return self.data.qvel[self._pair_dof[0]].copy()

    @property
    def puck_velocity(self) -> np.ndarray:
        """World-frame planar velocity of the puck's centre (m/s)."""
        return self.data.qvel[self._pair_dof[1]].copy()

    # -- vectorised pieces the MPPI planner uses (added; the gym API below is unchanged) --------------
    #: MPPI hyper-parameters that work on this env (the agent's kwargs override them).
    planner_defaults = {"horizon": 20, "noise_sigma": 0.7, "temperature": 0.1}

    def project_actions(self, actions: np.ndarray) -> np.ndarray:
        """Batched :func:`clip_to_disc`: project actions ``(..., 2)`` onto the unit disc."""
        a = np.asarray(actions, dtype=np.float64)
        n = np.linalg.norm(a, axis=-1, keepdims=True)
        return a * np.minimum(1.0, 1.0 / np.maximum(n, 1e-12))

    def actions_to_ctrl(self, actions: np.ndarray) -> np.ndarray:
        """Actuator controls for actions ``(..., 2)``, exactly as :meth:`step` applies them."""
        return self.max_speed * self.project_actions(actions)

    def stage_cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-step cost of full states ``(..., nstate)``: minus the reward without the success bonus."""
        qpos = states[..., self._layout["QPOS"]]
        pusher, puck = qpos[..., self._pair_qpos[0]], qpos[..., self._pair_qpos[1]]
        goal = states[..., self._layout["MOCAP_POS"]].reshape(*states.shape[:-1], -1, 3)[..., self._mocap[0], :2]
        return self.shaping_cost(np.linalg.norm(goal - puck, axis=-1), np.linalg.norm(puck - pusher, axis=-1))

    def shaping_cost(self, goal_distance, pusher_distance):
        """The distance part of the reward, negated (floats or arrays): the one place the weights are applied,
        so the reward (:meth:`step`) and the planners' :meth:`stage_cost` cannot drift apart."""
        return self.goal_weight * goal_distance + self.pusher_weight * pusher_distance


    # -- gym API ----------------------------------------------------------------------
    def reset_model(self) -> None:
        rng = self.np_random
        puck = _uniform_disc(rng, 0.15)
        goal = _uniform_disc(rng, 0.22)
        while not 0.08 <= np.linalg.norm(goal - puck) <= 0.2:
            goal = _uniform_disc(rng, 0.22)
        pusher = _uniform_disc(rng, 0.28)
        while np.linalg.norm(pusher - puck) < PUCK_RADIUS + PUSHER_RADIUS + 0.02:
            pusher = _uniform_disc(rng, 0.28)
        self.data.qpos[self._pair_qpos[0]] = pusher
        self.data.qpos[self._pair_qpos[1]] = puck
        self.data.qpos[self._yaw_qpos] = rng.uniform(-np.pi, np.pi)
        self.data.mocap_pos[self._mocap[0], :2] = goal

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise ValueError(f"SymPush action must have shape (2,), got {a.shape}")
        self._simulate(self.max_speed * clip_to_disc(a))
        reward, success, d_goal = self._reward()
        return self._obs(), reward, success, False, {"is_success": success, "goal_distance": d_goal}

    def _positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # One read of the simulator per step: this is on the hot path of every rollout.
        q = self.data.qpos
        return q[self._pusher_sl], q[self._puck_sl], self.data.mocap_pos[self._mocap[0], :2]

    def _reward(self) -> tuple[float, bool, float]:
        pusher, puck, goal = self._positions()
        d_goal = math.hypot(goal[0] - puck[0], goal[1] - puck[1])
        d_push = math.hypot(puck[0] - pusher[0], puck[1] - pusher[1])
        success = d_goal < self.success_radius
        return -self.shaping_cost(d_goal, d_push) + self.success_bonus * success, success, d_goal

    def _info(self) -> dict:
        _, success, d_goal = self._reward()
        return {"is_success": success, "goal_distance": d_goal}

    def vector_obs(self) -> np.ndarray:
        pusher, puck, goal = self._positions()
        v = self.data.qvel
        return push_observation(pusher, v[self._pusher_sl], puck, v[self._puck_sl], goal, self.max_speed)

    def _obs(self):
        if self.obs_mode == "vector":
            return self.vector_obs()
        return self._image_obs(self.pusher_pos, self.puck_pos, self.goal_pos)

    def _image_obs(self, pusher, puck, goal) -> np.ndarray:
        c = self._canvas
        layers = [c.disc(pusher, PUSHER_RADIUS), c.disc(puck, PUCK_RADIUS), c.disc(goal, PUCK_RADIUS)]
        return (np.stack(layers, axis=-1) * 255).round().astype(np.uint8)

    # -- batched pieces for symgym.envs.vector (one row per simulation; bit-identical to step()) ------
    def vector_ctrl(self, actions: np.ndarray) -> np.ndarray:
        """Controls for actions ``(N, 2)`` exactly as :meth:`step` applies them (:func:`clip_to_disc`)."""
        a = np.asarray(actions, dtype=np.float64)
        # math.hypot row by row, as clip_to_disc: np.hypot (libm) and np.linalg.norm may round differently
        n = np.fromiter(map(math.hypot, a[:, 0], a[:, 1]), np.float64, len(a))
        scale = np.divide(1.0, n, out=np.ones_like(n), where=n > 1.0)
        return self.max_speed * (a * scale[:, None])

    def vector_outcome(self, qpos: np.ndarray, qvel: np.ndarray, mocap_pos: np.ndarray):
        """``(obs, reward, terminated, info)`` of N simulations after a step, from their ``qpos (N, nq)``,
        ``qvel (N, nv)`` and ``mocap_pos (N, nmocap, 3)``: the batched :meth:`step`, equal to it bit for bit."""
        pusher, puck, goal = qpos[:, self._pusher_sl], qpos[:, self._puck_sl], mocap_pos[:, self._mocap[0], :2]
        n = len(qpos)
        d_goal = np.fromiter(map(math.hypot, goal[:, 0] - puck[:, 0], goal[:, 1] - puck[:, 1]), np.float64, n)
        d_push = np.fromiter(map(math.hypot, puck[:, 0] - pusher[:, 0], puck[:, 1] - pusher[:, 1]), np.float64, n)
        success = d_goal < self.success_radius
        reward = -self.shaping_cost(d_goal, d_push) + self.success_bonus * success
        if self.obs_mode == "vector":
            obs = push_observation(pusher, qvel[:, self._pusher_sl], puck, qvel[:, self._puck_sl], goal,
                                   self.max_speed)
        else:
            obs = np.stack([self._image_obs(*row) for row in zip(pusher, puck, goal)])
        return obs, reward, success, {"is_success": success, "goal_distance": d_goal}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        c = TopDownCanvas(256, TABLE_RADIUS + 0.01)
        return composite([
            (c.disc((0, 0), TABLE_RADIUS), (0.82, 0.78, 0.72)),
            (c.ring(self.goal_pos, PUCK_RADIUS, 0.006), (0.2, 0.7, 0.3)),
            (c.disc(self.puck_pos, PUCK_RADIUS), (0.85, 0.25, 0.2)),
            (c.disc(self.pusher_pos, PUSHER_RADIUS), (0.2, 0.4, 0.9)),
        ], background=(1, 1, 1), size=256)


def _uniform_disc(rng: np.random.Generator, radius: float) -> np.ndarray:
    r = radius * np.sqrt(rng.uniform())
    t = rng.uniform(0, 2 * np.pi)
    return np.array([r * np.cos(t), r * np.sin(t)])
