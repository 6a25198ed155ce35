"""The ``mppi-episode`` sweep trial: one MPPI episode from one initial state with one noise seed, paired by seed.

The power design of ``specs/mppi.yaml``: a trial's ``seed`` ``e`` picks initial state ``e % n_states`` and noise
seed ``e // n_states``, so ``n_states x noise seeds`` trials per cell and every compared cell (naive vs
symmetric sampling; plain vs equivariant model) sees the *same* initial states and noise seeds: the ledger's
paired t-interval then works on per-episode differences. Metrics are unsaturated: final distance to the goal,
steps to the goal (censored at the episode length when never reached) and the episode's summed cost.

Learned models (``model: plain | equivariant``) are fit once per (env, kind, data size, noise seed) by
:func:`symgym.agents.mppi.learn_world_model` and cached under the sweep's cache folder (written to a
temporary file, then renamed), so the naive and symmetric cells plan with the *same* model.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("simulator", "plain", "equivariant")
SAMPLERS = ("naive", "symmetric")

PARAMS: dict[str, Any] = {
    "env": "SymPointMass-v0", "sampler": "naive", "model": "simulator", "data": 1000, "seed": 0, "samples": 32,
    "horizon": None, "group": None, "group_order": 4, "tie_break": False, "n_states": 30, "episode_steps": 60,
    "state_seed": 20_000, "model_epochs": 20, "model_rounds": 3, "env_kwargs": {}}
METRICS = ("final_distance", "time_to_goal", "cost", "success", "plan_ms", "model_loss_dynamics",
           "model_loss_cost")


def _check(params: dict[str, Any]) -> None:
    if params["sampler"] not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {params['sampler']!r}")
    if params["model"] not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {params['model']!r}")
    if int(params["n_states"]) < 1 or int(params["data"]) < 10:
        raise ValueError(f"n_states must be >= 1 and data >= 10, got {params['n_states']}, {params['data']}")


def cached_model(cache: Path, params: dict[str, Any], noise_seed: int):
    """The world model for (env, kind, data, noise seed): loaded from ``cache`` or fit and saved atomically."""
    import gymnasium as gym

    env = gym.make(params["env"], **params["env_kwargs"])
    name = (f"{params['env']}-{params['model']}-n{int(params['data'])}-s{noise_seed}-D{int(params['group_order'])}"
            f"-e{int(params['model_epochs'])}-r{int(params['model_rounds'])}")
    path = cache / "mppi-models" / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    # the naive and symmetric cells of one seed run side by side: the second waits for the first's fit
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _load_or_fit(path, env, params, noise_seed)


def _load_or_fit(path: Path, env, params: dict[str, Any], noise_seed: int):
    import torch

    from symgym.agents.mppi import learn_world_model
    from symgym.agents.mppi_models import WorldModel

    from symgym.learn.evidence.provenance import current

    fingerprint = current()["fingerprint"]
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=False)
        # a model fit by other code (an env's dynamics changed) is stale like a trial would be: refit it
        if blob["info"].get("fingerprint") == fingerprint:
            model = WorldModel(env.unwrapped.symmetry, kind=params["model"], group_order=int(params["group_order"]))
            model.load_state_dict(blob["state_dict"])
            model.freeze_for_planning()
            return model, blob["info"]
    from symgym.envs.panda_planner import planner_env

    start = time.perf_counter()
    model, info = learn_world_model(env, params["model"], int(params["data"]), seed=noise_seed,
                                    view=planner_env(env),
                                    rounds=int(params["model_rounds"]), episode_len=int(params["episode_steps"]),
                                    epochs=int(params["model_epochs"]), group_order=int(params["group_order"]),
                                    planner_kwargs={"samples": int(params["samples"])})
    info["fit_seconds"] = time.perf_counter() - start
    info["fingerprint"] = fingerprint
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"state_dict": model.state_dict(), "info": info}, tmp)
    os.replace(tmp, path)
    return model, info


def episode_trial(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """One paired MPPI episode (see the module docstring); returns ``{"metrics", "censoring"}``."""
    import gymnasium as gym
    import torch

    import symgym.envs  # noqa: F401  (registers ids)
    from symgym.agents.mppi import MPPIConfig, MPPIPlanner
    from symgym.agents.mppi_models import ModelRolloutBackend
    from symgym.learn.io import write_json

    torch.set_num_threads(1)
    _check(params)
    run_dir.mkdir(parents=True, exist_ok=True)
    n_states, seed = int(params["n_states"]), int(params["seed"])
    state_index, noise_seed = seed % n_states, seed // n_states
    from symgym.envs.panda_planner import PandaPlannerView, PandaRolloutBackend, planner_env

    env = gym.make(params["env"], **params["env_kwargs"])
    u = planner_env(env)
    rollout, model_info = None, {}
    if params["model"] != "simulator":
        model, model_info = cached_model(Path(params["cache"]), params, noise_seed)
        rollout = ModelRolloutBackend(model)
    elif isinstance(u, PandaPlannerView):  # closed-loop IK: the env's own controller per sample and step
        rollout = PandaRolloutBackend(u)
    config = MPPIConfig(samples=int(params["samples"]), horizon=params["horizon"], group=params["group"],
                        symmetric=params["sampler"] == "symmetric", tie_break=bool(params["tie_break"]),
                        seed=noise_seed, nthread=1)
    planner = MPPIPlanner(u, config, rollout=rollout)
    obs, info = env.reset(seed=int(params["state_seed"]) + state_index)
    steps = int(params["episode_steps"])
    cost, reached, times = 0.0, None, []
    for t in range(steps):
        start = time.perf_counter()
        action = planner.act(obs)
        times.append(time.perf_counter() - start)
        obs, reward, terminated, truncated, info = env.step(action)
        cost -= float(reward)
        if reached is None and info.get("is_success"):
            reached = t + 1
        if terminated:
            break
    planner.close()
    metrics = {"final_distance": float(info["goal_distance"]), "cost": cost,
               "time_to_goal": float(steps if reached is None else reached), "success": float(reached is not None),
               "plan_ms": 1e3 * float(np.median(times)),
               "model_loss_dynamics": float(model_info.get("loss_dynamics", float("nan"))),
               "model_loss_cost": float(model_info.get("loss_cost", float("nan")))}
    write_json(run_dir / "episode.json", {"state_index": state_index, "noise_seed": noise_seed,
                                          "model": model_info, **metrics})
    return {"metrics": metrics,
            "censoring": {"time_to_goal": {"budget": steps, "reached": reached is not None}}}
