"""Shared machinery for symgym's planar MuJoCo envs.

A planar env is an XML asset plus a small subclass that says which joints carry planar
positions (pairs of slide joints that rotate as 2-D vectors) and which are yaw hinges, so
that the base class can transform a *full simulator state* by a group element. That is what
makes the declared symmetry testable by simulation (``step(g.s, g.a) == g.step(s, a)``) and
what symmetric planners use.
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import gymnasium as gym
import mujoco
import numpy as np

from symgym.equivariance.groups import O2Element

ASSETS = Path(__file__).parent / "assets"

#: what ``mujoco.rollout`` takes as an initial state: time, qpos, qvel, act, history, plugin state.
PHYSICS_SPEC = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
#: what get_state() saves: the physics state plus the solver warm start (so a restored state steps
#: bit-identically) and mocap poses (goals and markers live there).
STATE_SPEC = (PHYSICS_SPEC | int(mujoco.mjtState.mjSTATE_WARMSTART) | int(mujoco.mjtState.mjSTATE_MOCAP_POS)
              | int(mujoco.mjtState.mjSTATE_MOCAP_QUAT))

#: everything MuJoCo integrates plus the controls and warm start: what a pickled env carries
_FULL_STATE = int(mujoco.mjtState.mjSTATE_INTEGRATION)


def state_layout(model: mujoco.MjModel, spec: int = STATE_SPEC) -> dict[str, slice]:
    """Offsets of each component (``"QPOS"``, ``"QVEL"``, ...) inside a state vector of ``spec``."""
    layout, offset = {}, 0
    bits = sorted(
        (int(getattr(mujoco.mjtState, n)), n[len("mjSTATE_"):])
        for n in dir(mujoco.mjtState)
        if n.startswith("mjSTATE_") and bin(int(getattr(mujoco.mjtState, n))).count("1") == 1
    )
    for bit, name in bits:
        if spec & bit:
            size = mujoco.mj_stateSize(model, bit)
            layout[name] = slice(offset, offset + size)
            offset += size
    return layout


class PlanarMujocoEnv(gym.Env):
    """Base class. Subclasses set ``xml_file``, ``frame_skip`` and the joint-role lists.

    Joint roles (names from the XML):
        planar_pairs: list of (x_joint, y_joint) slide-joint pairs whose positions and
            velocities rotate as 2-D vectors about the world origin.
        yaw_hinges: hinge joints about +z: angle -> g.angle +/- angle, velocity -> det(g) * velocity.
        mocap_bodies: mocap bodies whose xy position rotates (goals, markers).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    xml_file: str = ""
    frame_skip: int = 5
    planar_pairs: tuple[tuple[str, str], ...] = ()
    yaw_hinges: tuple[str, ...] = ()
    mocap_bodies: tuple[str, ...] = ()
    #: planner hyper-parameters that work on this env (``horizon``, ``noise_sigma``, ``temperature``); envs
    #: used by planners override it (see ``symgym.envs.protocols.PlannerEnv``)
    planner_defaults: Mapping[str, float] = MappingProxyType({})
    #: optional 3-D video camera for ``symgym.learn.run.video`` (``lookat``, ``distance``, ``azimuth``,
    #: ``elevation``); None: a view of every non-plane geom from above
    video_camera: Mapping[str, Any] | None = None

    def __new__(cls, *args, **kwargs):
        # remember the constructor call: pickling rebuilds the model and the symmetry (whose representations are
        # closures and do not pickle) by calling __init__ again, then restores the simulator and Python state
        self = super().__new__(cls)
        self._init_call = (args, dict(kwargs))
        return self

    def __getstate__(self) -> dict:
        saved = {k: v for k, v in self.__dict__.items()
                 if k not in self._REBUILT and not isinstance(v, (mujoco.MjModel, mujoco.MjData))}
        full = np.empty(mujoco.mj_stateSize(self.model, _FULL_STATE))
        mujoco.mj_getState(self.model, self.data, full, _FULL_STATE)
        saved["_mj_full_state"] = full
        return saved

    def __setstate__(self, saved: dict) -> None:
        saved = dict(saved)
        args, kwargs = saved["_init_call"]
        self.__init__(*args, **kwargs)
        full = saved.pop("_mj_full_state")
        self.__dict__.update(saved)
        mujoco.mj_setState(self.model, self.data, full, _FULL_STATE)
        mujoco.mj_forward(self.model, self.data)

    #: attributes that __init__ rebuilds rather than pickling (see __new__)
    _REBUILT = frozenset({"symmetry", "model", "data"})

    def __init__(self, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}; use None or 'rgb_array'")
        self.render_mode = render_mode
        self.model = self._build_model()
        self.data = mujoco.MjData(self.model)
        self._layout = state_layout(self.model)
        self._physics_layout = state_layout(self.model, PHYSICS_SPEC)
        self._index_joints()

    # -- model ---------------------------------------------------------------------------
    def _build_model(self) -> mujoco.MjModel:
        """Load the XML asset; subclasses edit ``spec`` in ``_edit_spec`` for tunable parameters."""
        spec = mujoco.MjSpec.from_file(str(ASSETS / self.xml_file))
        self._edit_spec(spec)
        return spec.compile()

    def _edit_spec(self, spec: "mujoco.MjSpec") -> None:
        pass

    def _index_joints(self) -> None:
        m = self.model

        def jid(name: str) -> int:
            i = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
            if i < 0:
                raise ValueError(f"joint {name!r} not found in {self.xml_file}")
            return i

        self._pair_qpos = np.array([[m.jnt_qposadr[jid(a)], m.jnt_qposadr[jid(b)]] for a, b in self.planar_pairs],
                                   dtype=int).reshape(-1, 2)
        self._pair_dof = np.array([[m.jnt_dofadr[jid(a)], m.jnt_dofadr[jid(b)]] for a, b in self.planar_pairs],
                                  dtype=int).reshape(-1, 2)
        self._yaw_qpos = np.array([m.jnt_qposadr[jid(h)] for h in self.yaw_hinges], dtype=int)
        self._yaw_dof = np.array([m.jnt_dofadr[jid(h)] for h in self.yaw_hinges], dtype=int)
        self._mocap = np.array([m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b)]
                                for b in self.mocap_bodies], dtype=int)

    # -- state ---------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        """Full physics state (a copy): restoring it with ``set_state`` reproduces the future exactly."""
        state = np.empty(mujoco.mj_stateSize(self.model, STATE_SPEC))
        mujoco.mj_getState(self.model, self.data, state, STATE_SPEC)
        return state

    @property
    def state_layout(self) -> Mapping[str, slice]:
        """Where each component (``"QPOS"``, ``"QVEL"``, ``"WARMSTART"``, ``"MOCAP_POS"``, ...) sits in a
        ``get_state()`` vector (read-only)."""
        return MappingProxyType(self._layout)

    @property
    def physics_layout(self) -> Mapping[str, slice]:
        """Where each component sits in a ``physics_state()`` vector, the state ``mujoco.rollout`` takes."""
        return MappingProxyType(self._physics_layout)

    def physics_state(self, state: np.ndarray | None = None) -> np.ndarray:
        """The ``PHYSICS_SPEC`` part of a ``get_state()`` vector (or batch): what ``mujoco.rollout`` expects."""
        state = self.get_state() if state is None else np.asarray(state)
        layout = self._layout
        parts = [state[..., layout[name]] for name in self._physics_layout]
        return np.concatenate(parts, axis=-1)

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        expected = mujoco.mj_stateSize(self.model, STATE_SPEC)
        if state.shape != (expected,):
            raise ValueError(f"state must have shape ({expected},), got {state.shape}")
        mujoco.mj_setState(self.model, self.data, state, STATE_SPEC)
        mujoco.mj_forward(self.model, self.data)

    def transform_state(self, g: O2Element, state: np.ndarray) -> np.ndarray:
        """Act on a full simulator state (or a batch ``(..., nstate)``) by the planar element ``g``."""
        s = np.array(state, dtype=np.float64, copy=True)
        R = g.matrix()
        qpos, qvel = s[..., self._layout["QPOS"]], s[..., self._layout["QVEL"]]
        warm = s[..., self._layout["WARMSTART"]] if "WARMSTART" in self._layout else None
        for vec, idx in ((qpos, self._pair_qpos), (qvel, self._pair_dof)) + (((warm, self._pair_dof),) if warm is not None else ()):
            xy = vec[..., idx]                      # (..., npairs, 2)
            vec[..., idx] = xy @ R.T
        qpos[..., self._yaw_qpos] = g.act_on_angle(qpos[..., self._yaw_qpos])
        qvel[..., self._yaw_dof] *= g.det
        if warm is not None:
            warm[..., self._yaw_dof] *= g.det
        s[..., self._layout["QPOS"]] = qpos
        s[..., self._layout["QVEL"]] = qvel
        if warm is not None:
            s[..., self._layout["WARMSTART"]] = warm
        if len(self._mocap) and "MOCAP_POS" in self._layout:
            mpos = s[..., self._layout["MOCAP_POS"]].reshape(*s.shape[:-1], -1, 3)
            mpos[..., self._mocap, :2] = mpos[..., self._mocap, :2] @ R.T
            s[..., self._layout["MOCAP_POS"]] = mpos.reshape(*s.shape[:-1], -1)
        return s

    # -- planning ----------------------------------------------------------------------
    def stage_cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-step cost of full states ``(..., nstate)`` and actions ``(..., nu)``; envs used by planners define it."""
        raise NotImplementedError(f"{type(self).__name__} defines no stage_cost for planners")

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Trajectory cost: states ``(K, H, nstate)`` after each step, actions ``(K, H, nu)`` -> ``(K,)``."""
        return self.stage_cost(states, actions).sum(axis=-1)

    def _simulate(self, ctrl: np.ndarray) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        # after mj_step, positions (xpos, site_xpos, geom_xpos) describe the state before the last substep, while
        # set_state's mj_forward describes the current one: recompute them, so observations and renders read the
        # current state and set_state(get_state()) reproduces a trajectory (mj_kinematics: ~1 us)
        mujoco.mj_kinematics(self.model, self.data)

    # -- gym -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Seed ``np_random`` (when ``seed`` is given), reset MjData to the model's defaults, let the subclass
        place bodies and goals in :meth:`reset_model`, forward, and return ``(obs, info)``."""
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.reset_model()
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), self._info()

    def reset_model(self) -> None:
        """Write the episode's initial state into ``self.data`` (qpos, qvel, mocap poses, ...), drawing every
        random number from ``self.np_random``. Called by :meth:`reset` between ``mj_resetData`` and
        ``mj_forward``; the default keeps the model's initial state (``qpos0``, zero velocities)."""

    def _obs(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no _obs()")

    def _info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass

