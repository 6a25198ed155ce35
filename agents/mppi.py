"""MPPI (model predictive path integral control) and its symmetry-preserving variant.

Each control step samples ``K`` action sequences ``U + eps_k`` around a warm-started nominal plan ``U``,
rolls them out ``H`` steps (the true simulator through ``mujoco.rollout`` with a persistent thread
pool, or a learned torch dynamics model), scores them with the env's vectorised ``cost`` and moves
``U`` to the softmax(-cost / temperature) weighted mean of the sampled sequences.

Naive Gaussian noise breaks the task's symmetry: the planner's answer for a rotated state is not the
rotated answer. ``symmetric=True`` draws ``K / m`` base sequences and maps each through the ``m``
distinct action matrices ``rho_A(g)`` of a finite group ``G`` (orbit-symmetrised noise). The noise set
is then invariant under ``G``; since the dynamics are equivariant and the cost invariant, a rotated state
sees the same costs on a permuted set of samples and the weighted mean comes out rotated:
``plan(g.s) == rho_A(g) plan(s)`` for every ``g`` in ``G`` with the same noise seed. Orbits also make the
noise exactly zero-mean and isotropic at any ``K`` (antithetic sampling for a reflection), which is where
the sample-efficiency gain at small ``K`` comes from.

**Fixed points.** At a state that a group element ``h`` fixes (SymCartPole hanging at rest at ``x = 0``: the mirror
maps it to itself), equivariance forces ``plan(s) = rho(h) plan(s)``: the plan lies in ``h``'s fixed subspace, zero
force for the mirror, and the planner waits for float rounding to break the tie. ``tie_break=True`` detects this
on the orbit's costs (they are invariant under the sample permutation ``h`` induces; no state comparison needed)
and plans from one random coset of the orbit instead, which keeps the planner equivariant in distribution.
``symgym bench mppi`` measures the swing-up time with and without it.

**Learned models.** A rollout backend with ``trajectory_costs(obs, actions)`` (``symgym.agents.mppi_models``:
dynamics, stage cost and terminal value nets, plain or escnn-equivariant) replaces the simulator and the analytic
cost; the planner then plans from observations (``act(obs)``).

The env supplies (vectorised over leading batch axes): ``get_state``/``set_state`` (full MuJoCo state),
``project_actions`` (feasible set, equivariant), ``actions_to_ctrl``, ``cost(states (K,H,nstate),
actions (K,H,na)) -> (K,)``, ``frame_skip``, ``symmetry`` and optional ``planner_defaults``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import mujoco
import mujoco.rollout
import numpy as np

from symgym.agents.base import Agent, EnvInfo, parse_config

DYNAMICS_FILE = "dynamics.pt"
WORLD_MODEL_FILE = "world_model.pt"


@dataclass
class MPPIConfig:
    """MPPI hyper-parameters; ``None`` takes the env's ``planner_defaults`` (then the fallbacks below).

    Args:
        samples: rollouts per plan ``K`` (symmetric sampling uses ``m * (K // m)`` of them, ``m`` the orbit size).
        horizon: planning horizon ``H`` in env steps.
        temperature: softmax temperature on trajectory costs.
        noise_sigma: std of the action perturbations (in the env's normalised action units).
        warm_start: start each plan from the previous plan shifted by one step.
        symmetric: orbit-symmetrised noise (the equivariant planner).
        group: finite group for symmetric sampling (``"D4"``, ...); default the env's group if finite, else D4.
        dynamics: ``"mujoco"`` (true simulator) or ``"torch"`` (a learned model saved in the run dir).
        nthread: rollout threads (a persistent pool).
        seed: noise seed; ``reset()`` restarts the noise stream.
        tie_break: with symmetric sampling, detect states that a group element fixes (the orbit's costs are then
            invariant under that element, so the weighted mean lies in its fixed subspace: zero force for the
            mirror at the cart-pole's hanging rest) and plan from one random coset of the orbit instead.
        model: ``None`` (plan in the simulator) or a TD-MPC-style world model (``symgym.agents.mppi_models``):
            ``"plain"`` or ``"equivariant"``; ``learn`` fits it on ``data`` transitions of the planner's own data.
        data: transitions the world model is fit on (a fifth random, the rest from the planner in ``model_rounds``).
        model_rounds / model_epochs / group_order: the world model's collection rounds, epochs per fit and the
            dihedral group ``D_n`` its equivariant nets use.
    """

    samples: int = 64
    horizon: int | None = None
    temperature: float | None = None
    noise_sigma: float | None = None
    warm_start: bool = True
    symmetric: bool = False
    group: str | None = None
    dynamics: str = "mujoco"
    nthread: int = 2
    seed: int = 0
    tie_break: bool = False
    model: str | None = None
    data: int = 5000
    model_rounds: int = 3
    model_epochs: int = 20
    group_order: int = 4

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.noise_sigma is not None and self.noise_sigma <= 0:
            raise ValueError(f"noise_sigma must be > 0, got {self.noise_sigma}")
        if self.dynamics not in ("mujoco", "torch"):
            raise ValueError(f"dynamics must be 'mujoco' or 'torch', got {self.dynamics!r}")
        if self.model not in (None, "plain", "equivariant"):
            raise ValueError(f"model must be None, 'plain' or 'equivariant', got {self.model!r}")
        if self.model is not None and self.dynamics == "torch":
            raise ValueError("model= (a world model) and dynamics='torch' are two learned models; pick one")
        for name in ("data", "model_rounds", "model_epochs", "group_order"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> "MPPIConfig":
        return parse_config(cls, dict(kwargs), "MPPI")


# -- symmetric sampling ------------------------------------------------------------------------------
def action_orbit_matrices(symmetry, group) -> np.ndarray:
    """The distinct matrices ``rho_A(g)``, ``g`` in the finite ``group``: shape ``(m, na, na)``.

    Duplicates are dropped because the action may carry a smaller group than the state (the reach arm's
    torques ignore rotations and only flip sign under reflections): repeated matrices would waste samples.
    """
    if not group.finite:
        raise ValueError(f"symmetric sampling needs a finite group, got {group.name}")
    mats: list[np.ndarray] = []
    for g in group.elements():
        na = _action_dim(symmetry)
        m = np.stack([np.asarray(symmetry.transform_action(g, e), dtype=float) for e in np.eye(na)], axis=1)
        if not any(np.allclose(m, other, atol=1e-12) for other in mats):
            mats.append(m)
    return np.stack(mats)


def _action_dim(symmetry) -> int:
    size = getattr(symmetry.action, "size", None)
    if size is None:
        raise ValueError("symmetric sampling needs the action to transform by a Representation")
    return int(size)


def orbit_multiplication_table(matrices: np.ndarray) -> np.ndarray:
    """``table[h, g]`` = index of ``M_h @ M_g`` among ``matrices`` (closed under products for a group image)."""
    m = len(matrices)
    table = np.empty((m, m), dtype=int)
    for h in range(m):
        for g in range(m):
            prod = matrices[h] @ matrices[g]
            table[h, g] = int(np.argmin([np.abs(prod - other).max() for other in matrices]))
    if np.any(np.sort(table, axis=1) != np.arange(m)):
        raise ValueError("the action matrices are not closed under products (not a group image)")
    return table


def orbit_noise(base: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Map base noise ``(B, H, na)`` through every matrix ``(m, na, na)``: ``(m * B, H, na)``, a G-invariant set."""
    return np.einsum("gij,bhj->gbhi", matrices, base).reshape(-1, *base.shape[1:])


# -- rollout backends -------------------------------------------------------------------------------
class MujocoRolloutBackend:
    """Batched open-loop rollouts of the true simulator through a persistent ``mujoco.rollout`` pool.

    ``mujoco.rollout`` works on the physics part of the state (``env.physics_state``); the backend feeds it
    the solver warm start separately, copies mocap poses (goals) into its ``MjData`` and hands back states
    in the env's ``get_state()`` layout so that ``env.cost`` can read goals from them.
    """

    def __init__(self, env: gym.Env, nthread: int = 2):
        self.env = env.unwrapped
        self.model, self.frame_skip = self.env.model, int(self.env.frame_skip)
        self.nthread = max(0, int(nthread))
        self._pool = mujoco.rollout.Rollout(nthread=self.nthread)
        self._datas = [mujoco.MjData(self.model) for _ in range(max(1, self.nthread))]
        full, phys = self.env.state_layout, self.env.physics_layout
        # where each physics component sits in the full state vector
        self._scatter = [(full[name], phys[name]) for name in phys if phys[name].stop > phys[name].start]
        self._out: np.ndarray | None = None

    def __call__(self, state: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
        """From one full state ``(nstate,)`` apply ``ctrl (K, H, nu)`` (held for ``frame_skip`` physics steps).

        Returns the full states after each env step, ``(K, H, nstate)``.
        """
        k, h, _ = ctrl.shape
        layout = self.env.state_layout
        control = np.repeat(ctrl, self.frame_skip, axis=1)
        physics = self.env.physics_state(state)
        if self._out is None or self._out.shape != (k, h * self.frame_skip, physics.shape[-1]):
            self._out = np.empty((k, h * self.frame_skip, physics.shape[-1]))
        for data in self._datas:  # goals and markers are not part of the rollout state
            if self.model.nmocap:
                data.mocap_pos[:] = state[layout["MOCAP_POS"]].reshape(-1, 3)
                data.mocap_quat[:] = state[layout["MOCAP_QUAT"]].reshape(-1, 4)
        warm = state[layout["WARMSTART"]][None, :] if "WARMSTART" in layout else None
        self._pool.rollout(self.model, self._datas, physics[None, :], control, state=self._out,
                           initial_warmstart=warm, chunk_size=max(1, k // (4 * max(1, self.nthread))))
        phys = self._out[:, self.frame_skip - 1::self.frame_skip]
        full = np.empty((k, h, state.shape[-1]))
        full[...] = state
        for dst, src in self._scatter:
            full[..., dst] = phys[..., src]
        return full

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class TorchRolloutBackend:
    """Rollouts of a learned torch model ``x' = f(x, ctrl)`` over ``x = [qpos, qvel]``.

    Full states are rebuilt by writing the predicted ``qpos``/``qvel`` into copies of the start state, so
    the env's cost (which also reads e.g. goal mocap positions) works unchanged.
    """

    def __init__(self, model, layout: dict[str, slice]):
        import torch

        self.model, self.torch = model.eval(), torch
        self.qpos, self.qvel = layout["QPOS"], layout["QVEL"]

    def __call__(self, state: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
        torch = self.torch
        k, h, _ = ctrl.shape
        x = torch.as_tensor(np.concatenate([state[self.qpos], state[self.qvel]]), dtype=torch.float32).expand(k, -1)
        u = torch.as_tensor(ctrl, dtype=torch.float32)
        xs = []
        with torch.no_grad():
            for t in range(h):
                x = self.model(x, u[:, t])
                xs.append(x)
        traj = torch.stack(xs, dim=1).double().numpy()
        out = np.broadcast_to(state, (k, h, state.shape[-1])).copy()
        nq = self.qpos.stop - self.qpos.start
        out[..., self.qpos], out[..., self.qvel] = traj[..., :nq], traj[..., nq:]
        return out

    def close(self) -> None:
        pass


# -- the planner ------------------------------------------------------------------------------------
class MPPIPlanner:
    """MPPI over an env's full simulator state. ``plan(state)`` returns the updated ``(H, na)`` plan."""

    def __init__(self, env: gym.Env, config: MPPIConfig, rollout: Callable | None = None):
        self.env = env.unwrapped
        for need in ("get_state", "cost", "project_actions", "actions_to_ctrl"):
            if not hasattr(self.env, need):
                raise ValueError(f"MPPI needs env.unwrapped.{need}(); {type(self.env).__name__} does not have it")
        defaults = {"horizon": 20, "temperature": 0.1, "noise_sigma": 0.5, **getattr(self.env, "planner_defaults", {})}
        self.config = config
        self.horizon = int(config.horizon or defaults["horizon"])
        self.temperature = float(config.temperature or defaults["temperature"])
        self.noise_sigma = float(config.noise_sigma or defaults["noise_sigma"])
        self.action_dim = int(np.prod(self.env.action_space.shape))
        self.rollout = rollout or MujocoRolloutBackend(self.env, config.nthread)
        self.orbit: np.ndarray | None = None
        self.ties = 0  # plans whose tie was broken (fixed states met)
        if config.symmetric:
            self.orbit = action_orbit_matrices(self.env.symmetry, self.planning_group())
            self._orbit_table = orbit_multiplication_table(self.orbit)
            self.num_samples = self.orbit.shape[0] * max(1, config.samples // self.orbit.shape[0])
        else:
            self.num_samples = config.samples
        self.reset()

    def planning_group(self):
        from symgym.equivariance import DihedralGroup, group_from_name

        if self.config.group is not None:
            return group_from_name(self.config.group)
        group = self.env.symmetry.group
        return group if group.finite else DihedralGroup(4)

    def reset(self) -> None:
        """Drop the warm start and restart the noise stream (same seed -> same noise)."""
        self.rng = np.random.default_rng(self.config.seed)
        self.nominal = np.zeros((self.horizon, self.action_dim))

    def sample_noise(self) -> np.ndarray:
        shape = (self.horizon, self.action_dim)
        if self.orbit is None:
            return self.noise_sigma * self.rng.standard_normal((self.num_samples, *shape))
        base = self.noise_sigma * self.rng.standard_normal((self.num_samples // self.orbit.shape[0], *shape))
        return orbit_noise(base, self.orbit)

    def plan(self, state: np.ndarray) -> np.ndarray:
        """One MPPI update from ``state`` (a full simulator state, or an observation for a backend that
        ``plans_from = "obs"``); returns the new plan ``(H, na)`` and keeps it warm."""
        candidates = self.env.project_actions(self.nominal[None] + self.sample_noise())
        if hasattr(self.rollout, "trajectory_costs"):  # a learned model scores its own rollouts
            costs = self.rollout.trajectory_costs(np.asarray(state), candidates)
        else:
            states = self.rollout(np.asarray(state, dtype=np.float64), self.env.actions_to_ctrl(candidates))
            costs = self.env.cost(states, candidates)
        costs = np.asarray(costs, dtype=np.float64)
        costs = np.where(np.isfinite(costs), costs, np.inf)
        if self.orbit is not None and self.config.tie_break and self.fixing_elements(costs):
            # keep one random coset {g b : b}: the plan is then rho(g) times a naive plan, with g uniform, so the
            # planner stays equivariant in distribution and leaves the fixed subspace
            g = int(self.rng.integers(self.orbit.shape[0]))
            keep = np.zeros(len(costs), bool)
            b = len(costs) // self.orbit.shape[0]
            keep[g * b:(g + 1) * b] = True
            costs = np.where(keep, costs, np.inf)
            self.ties += 1
        weights = np.exp(-(costs - costs.min()) / self.temperature)
        weights /= weights.sum()
        plan = np.tensordot(weights, candidates, axes=1)
        self.last_costs = costs
        if self.config.warm_start:
            self.nominal = np.concatenate([plan[1:], plan[-1:]])
        return plan

    def fixing_elements(self, costs: np.ndarray, rtol: float = 1e-9) -> list[int]:
        """Indices ``h != e`` of orbit elements whose action on the samples leaves every cost unchanged.

        Sample ``(g, b)`` is ``rho(g) eps_b``; at a state ``s`` with ``h.s == s`` the sample ``(h g, b)`` costs the
        same as ``(g, b)`` for every ``g, b`` (equivariant dynamics, invariant cost). That is what a symmetric
        planner cannot break by itself, and it is checked on the costs, so no state comparison (angle wrapping,
        solver warm starts) is needed.
        """
        m = self.orbit.shape[0]
        c = costs.reshape(m, -1)
        if not np.all(np.isfinite(c)):
            return []
        tol = rtol * (1.0 + np.abs(c).max())
        return [h for h in range(1, m) if np.abs(c[self._orbit_table[h]] - c).max() <= tol]

    def act(self, obs: np.ndarray | None = None) -> np.ndarray:
        if getattr(self.rollout, "plans_from", "state") == "obs":
            if obs is None:
                raise ValueError("this planner plans from observations (a learned model): pass act(obs)")
            return self.plan(obs)[0].astype(np.float32)
        return self.plan(self.env.get_state())[0].astype(np.float32)

    @property
    def rollout_steps_per_plan(self) -> int:
        return self.num_samples * self.horizon * int(self.env.frame_skip)

    def close(self) -> None:
        self.rollout.close()


def learn_world_model(env: gym.Env, kind: str, transitions: int, seed: int = 0, rounds: int = 3,
                      episode_len: int = 50, planner_kwargs: dict | None = None, epochs: int = 30, view=None,
                      **model_kwargs):
    """A world model (``symgym.agents.mppi_models``) fit on ``transitions`` of the planner's own data, collected by
    naive MPPI on the current model (``planner_kwargs`` override its config). Returns ``(model, info)``."""
    from symgym.agents.mppi_models import ModelRolloutBackend, fit_world_model

    target = view or env.unwrapped

    def make_planner(model, round_seed: int) -> MPPIPlanner:
        config = MPPIConfig(**{"samples": 32, "seed": round_seed, **(planner_kwargs or {})})
        return MPPIPlanner(target, config, rollout=ModelRolloutBackend(model))

    return fit_world_model(env, kind, transitions, make_planner, seed=seed, rounds=rounds, episode_len=episode_len,
                           epochs=epochs, view=view, **model_kwargs)


# -- agents -----------------------------------------------------------------------------------------
class MPPIAgent(Agent):
    """MPPI with naive Gaussian sampling. Planners do not train in the simulator: ``learn(env, steps)`` fits a
    model only when one is asked for: a world model (``model="plain" | "equivariant"``, on ``data`` transitions
    collected by the planner itself, TD-MPC-style; ``steps`` is not used) or the residual dynamics MLP
    (``dynamics="torch"``, on ``steps`` random transitions). ``act`` plans online in the attached env: with a world
    model from the observation, else from the env's simulator state (the Panda through its closed-loop
    :class:`~symgym.envs.panda_planner.PandaRolloutBackend`)."""

    name = "mppi"
    symmetric = False
    needs_simulator = True
    learns_from = "env"

    config_class = MPPIConfig

    def __init__(self, config: MPPIConfig | None = None, seed: int = 0, info: EnvInfo | None = None):
        # the agent id fixes the sampling: ``symmetric`` is never taken from the config
        super().__init__(dataclasses.replace(config or MPPIConfig(), symmetric=self.symmetric), seed, info)
        self.dynamics_model = None
        self.world_model = None
        self._world_state: dict | None = None  # loaded weights; the model is built at attach (it needs the symmetry)
        self.model_info: dict[str, Any] = {}
        self.planner: MPPIPlanner | None = None

    @classmethod
    def make_config(cls, agent_kwargs: dict[str, Any] | None = None) -> MPPIConfig:
        if "symmetric" in (agent_kwargs or {}):
            raise ValueError(f"{cls.name} fixes symmetric={cls.symmetric}; use the other agent id instead")
        return super().make_config(agent_kwargs)

    def learn(self, source: gym.Env, steps: int, callback: Any = None, progress: bool = False) -> dict[str, Any]:
        if self.config.model is not None:
            from symgym.envs.panda_planner import planner_env

            c = self.config
            self.world_model, info = learn_world_model(
                source, c.model, c.data, seed=c.seed, view=planner_env(source), rounds=c.model_rounds,
                epochs=c.model_epochs, group_order=c.group_order, planner_kwargs={"samples": c.samples})
            self.world_model.freeze_for_planning()
            self._world_state = None
            self.model_info = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
            self.attach(source)
            return {"world_model": c.model, **self.model_info}
        if self.config.dynamics != "torch":
            return {}
        if steps < 1:
            raise ValueError(f"dynamics='torch' fits a model on --steps random transitions; got {steps}")
        from symgym.agents.mppi_models import fit_dynamics

        self.dynamics_model = fit_dynamics(source, transitions=steps, seed=self.config.seed)
        return {"dynamics_transitions": steps}

    def attach(self, env: gym.Env) -> None:
        if self.planner is not None:
            self.planner.close()
        from symgym.envs.panda_planner import PandaPlannerView, PandaRolloutBackend, planner_env

        rollout, target = None, planner_env(env)
        if self.config.model is not None:
            from symgym.agents.mppi_models import ModelRolloutBackend

            if self.world_model is None:
                self.world_model = self._build_world_model(target)
            rollout = ModelRolloutBackend(self.world_model)
        elif isinstance(target, PandaPlannerView):
            rollout = PandaRolloutBackend(target)
        elif self.config.dynamics == "torch":
            if self.dynamics_model is None:
                raise ValueError("dynamics='torch' needs a learned model: train with --steps N > 0 first")
            rollout = TorchRolloutBackend(self.dynamics_model, env.unwrapped.state_layout)
        self.planner = MPPIPlanner(target, self.config, rollout=rollout)

    def _build_world_model(self, target: Any):
        from symgym.agents.mppi_models import WorldModel

        if self._world_state is None:
            raise ValueError(f"model={self.config.model!r} needs a learned world model: train it first "
                             f"(learn fits it on data={self.config.data} transitions)")
        model = WorldModel(target.symmetry, kind=self.config.model, group_order=self.config.group_order)
        try:
            model.load_state_dict(self._world_state)
        except RuntimeError as err:
            raise ValueError(f"the saved world model does not fit {type(target).__name__} "
                             f"({str(err).splitlines()[0]})") from None
        model.freeze_for_planning()
        return model

    def reset(self) -> None:
        if self.planner is not None:
            self.planner.reset()

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        if self.planner is None:
            raise RuntimeError(f"{self.name} plans in the simulator: call agent.attach(env) before act()")
        return self.planner.act(np.asarray(obs))

    def checkpoint_files(self) -> dict[str, tuple[str, Any]]:
        import torch

        files = {}
        if self.dynamics_model is not None:
            files["dynamics"] = (DYNAMICS_FILE, lambda p: torch.save(self.dynamics_model.state_dict(), p))
        if self.world_model is not None or self._world_state is not None:
            state = self.world_model.state_dict() if self.world_model is not None else self._world_state
            files["world_model"] = (WORLD_MODEL_FILE, lambda p: torch.save(dict(state), p))
        return files

    def restore_files(self, files, state: dict[str, Any]) -> None:
        if self.config.dynamics == "torch":
            from symgym.agents.mppi_models import load_dynamics

            self.dynamics_model = files.load("dynamics", load_dynamics)
        if self.config.model is not None:
            self._world_state = files.load(
                "world_model", lambda p: __import__("torch").load(p, map_location="cpu", weights_only=True))


class SymMPPIAgent(MPPIAgent):
    """MPPI with orbit-symmetrised sampling: equivariant under the env's (finite) symmetry group."""

    name = "sym-mppi"
    symmetric = True
