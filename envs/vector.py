"""A batched Gymnasium vector env for symgym's MuJoCo envs: N simulations stepped together in C.

    import gymnasium, symgym.envs
    envs = gymnasium.make_vec("SymPush-v0", num_envs=16, vectorization_mode="vector_entry_point")

What it is: one ``mujoco.batch.Batch`` (MuJoCo >= 4) holding the N simulations' integration states, stepped
``frame_skip`` substeps per env step on a thread pool, plus N ordinary single envs that are used only for what
is not physics: resets (each draws from its own seeded ``np_random`` exactly as a single env does) and the
task's own code for controls, observation, reward, termination and info. Two ways, so that the vector env holds
no task logic of its own:

* *batched helpers* (SymPush and its variants): ``vector_ctrl`` (actions -> controls) and ``vector_outcome``
  (obs, reward, terminated, info from the rows' ``qpos``/``qvel``/``mocap_pos``), written beside ``step`` in the
  env's module and tested against it; fastest.
* *replayed step* (envs that set ``vector_from_state = True``: their ``step`` is ``project_actions`` ->
  ``_simulate(actions_to_ctrl(a))`` -> an outcome read from the state alone, no derived quantities): controls come
  from the batched planner protocol (``actions_to_ctrl(project_actions(actions))``), physics from the batch, and
  then each sub-env runs its own ``step`` with ``_simulate`` replaced by loading its already-simulated row.
* *controlled step* (PandaPush/PandaReach: a closed-loop controller turns the action into one ``ctrl`` held through
  all substeps): the whole step is batched over the N envs. The env's ``vector_velocity`` (the action's projection
  and the workspace rule) and its controller's ``joint_velocities_batch`` (the differential IK, numpy over the
  batch) give the servo targets; their kinematics (tips, hand orientations, Jacobians, at the current states and
  at the predicted end of the period) come from a second batch, ``panda_model.BatchKinematics``; the env's
  ``vector_outcome`` gives observation, reward and info. A single env's ``step`` runs the same controller code on
  one row, so ``tests/test_vector_env.py`` holds this path equal to N single envs bit for bit; a change to the
  Panda's step that it does not follow fails there. Resets use the sub-envs' own ``reset`` (their IK placement).

Why ``mujoco.batch`` and not ``mujoco.rollout``: a rollout returns the *physics* state of each step but not the
solver's warm start (``qacc_warmstart``), so the next env step would start the constraint solver from another
point and drift from a single env by 1e-18..3e-15 within 5-25 steps of SymPush (measured). A Batch keeps each
simulation's whole ``mjSTATE_INTEGRATION`` row (warm start, controls, mocap poses, equality flags) and is
documented to be bit-identical to one ``MjData`` per simulation at any thread count, so the observations here
equal N single envs' bit for bit (``tests/test_vector_env.py``).

In the batched paths the sub-envs hold a row's state after its reset, not after each step (copying N states per
step would cost what the batching saves); :meth:`MujocoVectorEnv.sync_envs` loads the rows into them (to render
one, or to read its ``get_state()``).

Semantics are gymnasium 1.x's defaults, as ``SyncVectorEnv`` has them: autoreset mode NEXT_STEP (the step after
an episode ends resets that env, ignores its action and returns reward 0), ``reset(seed=s)`` seeds env ``i`` with
``s + i``, ``options={"reset_mask": mask}`` resets only some envs, infos are batched with ``_key`` masks, the
registered ``max_episode_steps`` truncates as ``TimeLimit`` does.

Other envs (the closed-loop HEP envs, whose suction rule switches an equality constraint inside ``step`` and
whose point clouds read derived quantities) get gymnasium's ``SyncVectorEnv`` from the same entry point, so
``make_vec(..., vectorization_mode="vector_entry_point")`` works for every MuJoCo id.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space, create_empty_array

if TYPE_CHECKING:  # the arm's classes load only on the Panda path, so planar envs' runs never import the arm
    from symgym.envs.panda_model import ArmKinematics


#: the per-simulation state a Batch keeps, and what a single env's reset is copied in as
INTEGRATION = int(mujoco.mjtState.mjSTATE_INTEGRATION)


#: physics threads by default: one (the calling thread). Sweeps give each trial one CPU, and on a shared machine a
#: second thread lost more than it gained (SymPush, N=16: 2 threads 177k substeps/s, 1 thread 243k, at load 3 on 2
#: cores); pass ``nthread`` to ``make_vec`` on a machine with idle cores.
DEFAULT_THREADS = 1


def make_vector_env(entry_point: str, num_envs: int = 1, max_episode_steps: int | None = None,
                    nthread: int | None = None, **env_kwargs: Any) -> VectorEnv:
    """The ``vector_entry_point`` of a MuJoCo env: a :class:`MujocoVectorEnv` when the env class has the batched
    helpers, otherwise a ``SyncVectorEnv`` of single envs (``TimeLimit``-wrapped like ``gymnasium.make``)."""
    if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    creator = load_env_creator(entry_point)
    if batched(creator, env_kwargs) and _have_batch():
        return MujocoVectorEnv(creator, num_envs, max_episode_steps=max_episode_steps, nthread=nthread,
                               **env_kwargs)

    def single() -> gym.Env:
        env = creator(**env_kwargs)
        return gym.wrappers.TimeLimit(env, max_episode_steps) if max_episode_steps else env

    return SyncVectorEnv([single] * num_envs)


def _have_batch() -> bool:
    """``mujoco.batch`` arrived in MuJoCo 4; with an older MuJoCo every id gets the SyncVectorEnv fallback."""
    try:
        from mujoco import batch  # noqa: F401
    except ImportError:
        return False
    return True


def _has(creator: Callable[..., gym.Env], *names: str) -> bool:
    return all(callable(getattr(creator, n, None)) for n in names)


def batched(creator: Callable[..., gym.Env], env_kwargs: dict[str, Any]) -> bool:
    """Whether envs from ``creator`` can be stepped by :class:`MujocoVectorEnv`: batched helpers or a replayable
    step (see the module docstring), and no render mode asked for (frames come from single envs)."""
    if env_kwargs.get("render_mode") is not None:
        return False
    replayable = getattr(creator, "vector_from_state", False) and _has(creator, "actions_to_ctrl", "project_actions")
    return _has(creator, "vector_ctrl", "vector_outcome") or bool(replayable) or controlled(creator)


def controlled(creator: Callable[..., gym.Env]) -> bool:
    """Envs whose ``step`` holds one ``ctrl`` from a Cartesian controller through all ``frame_skip`` substeps and
    that carry its batched twins (the Panda envs' contract, ``envs/panda.py``): ``vector_velocity``,
    ``vector_outcome`` (tip-based) and a ``controller`` with ``joint_velocities_batch``."""
    return _has(creator, "control", "vector_velocity", "vector_outcome") and hasattr(creator, "tip_pos")


class MujocoVectorEnv(VectorEnv):
    """N copies of one MuJoCo env stepped through one ``mujoco.batch.Batch`` (see the module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, creator: Callable[..., gym.Env], num_envs: int, max_episode_steps: int | None = None,
                 nthread: int | None = None, **env_kwargs: Any):
        from mujoco import batch as mj_batch  # MuJoCo >= 4

        self.envs = [creator(**env_kwargs) for _ in range(num_envs)]
        first = self.envs[0]
        self._controlled = controlled(creator)
        self._helpers = not self._controlled and _has(creator, "vector_ctrl", "vector_outcome")
        if not (self._helpers or self._controlled):  # replayed step: each sub-env's step loads its row instead
            for i, env in enumerate(self.envs):
                env._simulate = functools.partial(self._load_row, i)
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.frame_skip = int(first.frame_skip)
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self.model = first.model
        self.nthread = DEFAULT_THREADS if nthread is None else int(nthread)
        if self.nthread < 1:
            raise ValueError(f"nthread must be >= 1, got {nthread!r}")
        # not persistent (one MjData per thread): persistent=True measured no faster (1.18-1.26x vs 1.22-1.26x the
        # whole-horizon rollout, load 18 on 2 cores)
        self.batch = mj_batch.Batch(self.model, num_envs, nthread=self.nthread)
        # live (num_envs, ...) views of the state rows: what the helpers read and vector_ctrl writes
        self._qpos, self._qvel = self.batch.bind("qpos"), self.batch.bind("qvel")
        self._mocap_pos, self._ctrl = self.batch.bind("mocap_pos"), self.batch.bind("ctrl")
        self._row = np.empty(self.batch.nstate)
        self._obs = create_empty_array(self.single_observation_space, num_envs)
        self._rewards = np.zeros(num_envs, dtype=np.float64)
        self._terminations = np.zeros(num_envs, dtype=np.bool_)
        self._truncations = np.zeros(num_envs, dtype=np.bool_)
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        if self._controlled:   # the arms' kinematics at the current states, one row per env
            from symgym.envs.panda_model import BatchKinematics   # the Panda path only: planar envs never load it

            self._kinematics = BatchKinematics(first.controller, num_envs)
            self._arm = {"q": np.zeros((num_envs, 7)), "tip": np.zeros((num_envs, 3)),
                         "hand": np.zeros((num_envs, 3, 3)), "jac": np.zeros((num_envs, 6, 7))}
            self._prev_tips = np.zeros((num_envs, 2))

    # -- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset every env (or those in ``options["reset_mask"]``); ``seed=s`` seeds env ``i`` with ``s + i``."""
        n = self.num_envs
        seeds = [None] * n if seed is None else [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
        if len(seeds) != n:
            raise ValueError(f"seed must be an int or a list of {n} seeds, got {len(seeds)} seeds")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(n, dtype=np.bool_)
        elif not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (n,) and mask.any()):
            raise ValueError(f"options['reset_mask'] must be a boolean array of shape ({n},) with a True, got {mask!r}")
        infos: dict[str, Any] = {}
        rows = np.flatnonzero(mask)
        infos = self._reset_rows(rows, infos, [seeds[i] for i in rows], options or None)
        self._terminations[mask] = self._truncations[mask] = self._autoreset[mask] = False
        return self._obs.copy(), infos

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions must have shape {self.action_space.shape}, got {actions.shape}")
        resetting = self._autoreset.copy()
        active = np.flatnonzero(~resetting)
        infos: dict[str, Any] = {}
        if len(active):
            first = self.envs[0]
            if self._controlled:
                self._control(actions, active)
            elif self._helpers:
                self._ctrl[active] = first.vector_ctrl(actions[active])
            else:  # what step() applies: float64 first, then the env's projection and scaling
                a = np.asarray(actions[active], dtype=np.float64)
                self._ctrl[active] = first.actions_to_ctrl(first.project_actions(a))
            self.batch.step(None if len(active) == self.num_envs else active, nstep=self.frame_skip)
            if self._helpers:
                obs, reward, terminated, info = first.vector_outcome(self._qpos[active], self._qvel[active],
                                                                    self._mocap_pos[active])
                self._obs[active] = obs
                self._rewards[active] = reward
                self._terminations[active] = terminated
                infos = self._batched_info(info, active)
            elif self._controlled:
                arm = self._store_arm(active, self._kinematics(active, self._qpos[active]))
                obs, reward, terminated, info = first.vector_outcome(arm.tip, self._prev_tips[active],
                                                                    self._qpos[active], self._qvel[active],
                                                                    self._mocap_pos[active])
                self._obs[active] = obs
                self._rewards[active] = reward
                self._terminations[active] = terminated
                infos = self._batched_info(info, active)
            else:
                for i in active:
                    self._obs[i], self._rewards[i], self._terminations[i], _, info = self.envs[i].step(actions[i])
                    infos = self._add_info(infos, info, int(i))
            self._elapsed[active] += 1
            limit = self.max_episode_steps
            self._truncations[active] = False if limit is None else self._elapsed[active] >= limit
        if resetting.any():
            rows = np.flatnonzero(resetting)
            infos = self._reset_rows(rows, infos, [None] * len(rows))
            self._rewards[rows] = 0.0
            self._terminations[rows] = self._truncations[rows] = False
        self._autoreset = self._terminations | self._truncations
        return (self._obs.copy(), self._rewards.copy(), self._terminations.copy(), self._truncations.copy(),
                infos)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()

    # -- internals -------------------------------------------------------------------------------
    def _reset_rows(self, rows: np.ndarray, infos: dict[str, Any], seeds: list[int | None],
                    options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Reset the sub-envs of ``rows`` (each its own RNG stream, as SyncVectorEnv's would) and copy their states
        into the rows. Env classes with ``reset_many`` (the Panda's: the IK placements solved as one batch) reset
        together, the others one by one."""
        envs = [self.envs[i] for i in rows]
        reset_many = getattr(type(envs[0]), "reset_many", None)
        if reset_many is not None:
            results = reset_many(envs, seeds, [options] * len(envs))
        else:
            results = [env.reset(seed=seed, options=options) for env, seed in zip(envs, seeds)]
        for i, env, (obs, info) in zip(rows, envs, results):
            mujoco.mj_getState(env.model, env.data, self._row, INTEGRATION)
            self.batch.state[i] = self._row
            self._obs[i] = obs
            self._elapsed[i] = 0
            infos = self._add_info(infos, info, int(i))
        if self._controlled:   # the reset rows' arm kinematics and previous tips (the sub-envs' own)
            self._store_arm(rows, self._kinematics(rows, self._qpos[rows]))
            self._prev_tips[rows] = [env._prev_tip for env in envs]
        return infos

    def sync_envs(self, ids: Any = None) -> None:
        """Load the rows' states into the sub-envs (all, or ``ids``), with current kinematics and, for the Panda, the
        previous tip: afterwards ``envs[i].get_state()`` and ``envs[i].render()`` show env i as it is now."""
        for i in range(self.num_envs) if ids is None else np.atleast_1d(ids):
            env = self.envs[int(i)]
            mujoco.mj_setState(env.model, env.data, self.batch.state[int(i)], INTEGRATION)
            mujoco.mj_kinematics(env.model, env.data)
            mujoco.mj_comPos(env.model, env.data)
            if self._controlled:
                env._prev_tip = self._prev_tips[int(i)].copy()

    def _store_arm(self, rows: np.ndarray, arm: ArmKinematics) -> ArmKinematics:
        for name, value in zip(arm._fields, arm):
            self._arm[name][rows] = value
        return arm

    def _control(self, actions: np.ndarray, active: np.ndarray) -> None:
        """Controlled step, before the physics: the servo targets of the active rows (written into their ``ctrl``),
        from their current kinematics, as each env's ``step`` computes them; the tips before the step are kept for
        the velocity estimate."""
        a = np.asarray(actions[active], dtype=np.float64)   # what the single env's step() converts to
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():   # what the single env's step refuses, refused before any row changes
            i = int(active[np.argmax(bad)])
            raise ValueError(f"{type(self.envs[i]).__name__} action of env {i} must be finite, "
                             f"got {a[np.argmax(bad)].tolist()}")
        from symgym.envs.panda_model import ArmKinematics

        first = self.envs[0]
        controller = first.controller
        now = ArmKinematics(**{name: rows[active] for name, rows in self._arm.items()})
        qpos = self._qpos[active]

        def predict(q: np.ndarray) -> ArmKinematics:   # as the single env's: its qpos with the arm at q
            return self._kinematics(active, qpos, q)

        self._ctrl[active] = controller.joint_velocities_batch(now, first.vector_velocity(a, now.tip[:, :2]), predict)
        self._prev_tips[active] = now.tip[:, :2]

    def _load_row(self, i: int, _ctrl: np.ndarray) -> None:
        """Sub-env ``i``'s ``_simulate`` in the replayed mode: its row was already stepped by the batch."""
        env = self.envs[i]
        mujoco.mj_setState(env.model, env.data, self.batch.state[i], INTEGRATION)
        # as PlanarMujocoEnv._simulate leaves it: positions (xpos, site_xpos) of the current state, not the last substep's
        mujoco.mj_kinematics(env.model, env.data)

    def _batched_info(self, info: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, Any]:
        """Infos of the stepped rows as gymnasium batches them: each key a (num_envs,) array plus its ``_key`` mask."""
        out: dict[str, Any] = {}
        for key, values in info.items():
            values = np.asarray(values)
            array = np.zeros((self.num_envs, *values.shape[1:]), dtype=values.dtype)
            array[rows] = values
            mask = np.zeros(self.num_envs, dtype=np.bool_)
            mask[rows] = True
            out[key], out[f"_{key}"] = array, mask
        return out

    def __repr__(self) -> str:
        return (f"MujocoVectorEnv({type(self.envs[0]).__name__}, num_envs={self.num_envs}, "
                f"nthread={self.nthread})")
