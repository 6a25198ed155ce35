"""Planner speed for ``symgym bench mppi``: our MPPI against the physical limit and against pytorch-mppi.

Every number is a ratio of per-round times measured *interleaved in one process* with
:func:`symgym.learn.bench.timing.interleaved` (warm-up rounds dropped, rotating order, median and spread over
rounds, thread counts and load average recorded):

* **simulator planner vs raw rollout**: one plan (noise, projection, ``mujoco.rollout`` of K x H env steps,
  cost, softmax update) against a bare ``mujoco.rollout`` call of the same K x H controls from the same state
  on a pool with the same thread count: the ratio is the planner's overhead over the physics itself;
* **pytorch-mppi**: ``pytorch_mppi.MPPI`` on the same env, horizon, K, temperature and noise, its dynamics
  stepping the same simulator through a ``mujoco.rollout`` pool of the same thread count (it asks for one step
  of all K samples at a time, which is how that library is used);
* **learned model**: our planner with a :class:`~symgym.agents.mppi_models.WorldModel` (all K samples batched
  in torch) against pytorch-mppi given the same three nets as its dynamics, running and terminal costs.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import mujoco.rollout
import numpy as np

import symgym.envs  # noqa: F401  (registers ids)
from symgym.agents.mppi import MPPIConfig, MPPIPlanner
from symgym.learn.bench.timing import interleaved

PEER_PACKAGE = "pytorch-mppi"


def cpu_interleaved(contenders: dict, baseline: str, rounds: int = 7, warmup: int = 2) -> dict[str, Any]:
    """Per-round *CPU-time* ratios to ``baseline`` (``time.process_time``: every thread of this process, rollout
    pool included), same interleaving as :func:`interleaved`. On a box whose load average is many times its core
    count, wall-clock rounds mostly measure the scheduler; CPU time measures the work each side does."""
    import time

    from symgym.learn.bench.timing import spread

    names = list(contenders)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.process_time()
            contenders[name]()
            if r >= warmup:
                seconds[name].append(time.process_time() - start)
    base = np.asarray(seconds[baseline])
    return {"clock": "process_time (CPU seconds, all threads)", "rounds": rounds, "warmup": warmup,
            "median_s": {n: float(np.median(v)) for n, v in seconds.items()},
            "ratios": {n: {"over": baseline, **spread(np.asarray(v) / np.maximum(base, 1e-9))}
                       for n, v in seconds.items() if n != baseline}}


def _peer_class():
    try:
        from pytorch_mppi import MPPI
    except ImportError:
        return None
    return MPPI


def simulator_peer(env, k: int, horizon: int, sigma: float, lam: float, nthread: int):
    """pytorch-mppi planning in the true simulator (one ``mujoco.rollout`` call per step of the horizon)."""
    import torch

    MPPI = _peer_class()
    pool = mujoco.rollout.Rollout(nthread=nthread)
    datas = [mujoco.MjData(env.model) for _ in range(max(1, nthread))]
    layout, phys_layout = env.state_layout, env.physics_layout

    def dynamics(state, action):
        full = state.detach().cpu().numpy().astype(np.float64)
        phys = env.physics_state(full)
        ctrl = np.repeat(env.actions_to_ctrl(action.detach().cpu().numpy())[:, None], env.frame_skip, axis=1)
        out = pool.rollout(env.model, datas, phys, ctrl)[0][:, -1]
        nxt = full.copy()
        nxt[:, layout["QPOS"]] = out[:, phys_layout["QPOS"]]
        nxt[:, layout["QVEL"]] = out[:, phys_layout["QVEL"]]
        return torch.as_tensor(nxt, dtype=state.dtype)

    def running_cost(state, action):
        return torch.as_tensor(env.stage_cost(state.cpu().numpy(), action.cpu().numpy()), dtype=state.dtype)

    na = env.action_space.shape[0]
    ctrl = MPPI(dynamics, running_cost, len(env.get_state()), sigma**2 * torch.eye(na, dtype=torch.double),
                num_samples=k, horizon=horizon, lambda_=lam, device="cpu",
                u_min=-torch.ones(na, dtype=torch.double), u_max=torch.ones(na, dtype=torch.double))
    return ctrl, pool


def model_peer(model, k: int, horizon: int, sigma: float, lam: float):
    """pytorch-mppi with our learned nets as its dynamics, running cost and terminal cost (float32, batched)."""
    import torch

    MPPI = _peer_class()
    na = model.na

    def dynamics(x, u):
        return model.step(x, u)

    def running_cost(x, u):
        return model.cost(x, u)

    def terminal(x, u):
        return model.value(x[..., -1, :]) if x.ndim == 4 else model.value(x[:, -1])

    return MPPI(dynamics, running_cost, model.nx, sigma**2 * torch.eye(na), num_samples=k, horizon=horizon,
                lambda_=lam, device="cpu", terminal_state_cost=terminal, u_min=-torch.ones(na), u_max=torch.ones(na))


def simulator_speed(env_id: str, ks=(8, 16, 32, 64, 128, 256), nthread: int = 2, rounds: int = 7,
                    peer: bool = True) -> dict[str, Any]:
    """Per K: ours vs the raw rollout of the same K x H (and pytorch-mppi), interleaved."""
    import torch

    torch.set_num_threads(1)
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    state = env.get_state()
    have_peer = peer and _peer_class() is not None
    rows = []
    for k in ks:
        planner = MPPIPlanner(env, MPPIConfig(samples=k, nthread=nthread, seed=0))
        h, fs = planner.horizon, int(env.frame_skip)
        pool = mujoco.rollout.Rollout(nthread=nthread)
        datas = [mujoco.MjData(env.model) for _ in range(max(1, nthread))]
        rng = np.random.default_rng(0)
        ctrl = np.repeat(env.actions_to_ctrl(env.project_actions(planner.noise_sigma * rng.standard_normal(
            (k, h, planner.action_dim)))), fs, axis=1)
        phys = env.physics_state(state)[None]
        out = np.empty((k, h * fs, phys.shape[-1]))
        warm = state[env.state_layout["WARMSTART"]][None] if "WARMSTART" in env.state_layout else None
        reps = max(2, 128 // k)  # a round lasts long enough that timer and scheduler noise stay small

        def ours():
            for _ in range(reps):
                planner.plan(state)

        def raw():
            for _ in range(reps):
                pool.rollout(env.model, datas, phys, ctrl, state=out, initial_warmstart=warm)

        contenders = {"symgym MPPI plan": ours, "raw mujoco.rollout": raw}
        closers = [planner.close, pool.close]
        if have_peer:
            ctrl_peer, peer_pool = simulator_peer(env, k, h, planner.noise_sigma, planner.temperature, nthread)
            torch_state = torch.as_tensor(state, dtype=torch.double)

            def peer_plan():
                for _ in range(reps):
                    ctrl_peer.command(torch_state)

            contenders["pytorch-mppi plan"] = peer_plan
            closers.append(peer_pool.close)
        timing = interleaved(contenders, baseline="raw mujoco.rollout", rounds=rounds, warmup=2,
                             units=reps * k * h * fs, unit="physics steps", threads={"mujoco.rollout": nthread})
        cpu = cpu_interleaved(contenders, "raw mujoco.rollout", rounds=rounds)
        row = {"K": k, "horizon": h, "frame_skip": fs, "plans_per_round": reps,
               "plan_over_raw": timing["ratios"]["symgym MPPI plan"]["median"],
               "plan_ms": 1e3 * timing["contenders"]["symgym MPPI plan"]["median_s"] / reps,
               "raw_ms": 1e3 * timing["contenders"]["raw mujoco.rollout"]["median_s"] / reps, "timing": timing,
               "cpu_plan_over_raw": cpu["ratios"]["symgym MPPI plan"]["median"], "cpu_timing": cpu}
        if have_peer:
            from symgym.learn.bench.timing import ratio

            r = ratio(timing, "pytorch-mppi plan", "symgym MPPI plan")
            row.update(peer_ms=1e3 * timing["contenders"]["pytorch-mppi plan"]["median_s"] / reps,
                       peer_over_ours=r["median"], peer_over_ours_iqr=r["iqr"],
                       cpu_peer_over_ours=cpu["median_s"]["pytorch-mppi plan"] / cpu["median_s"]["symgym MPPI plan"])
        rows.append(row)
        for close in closers:
            close()
    out = {"env": env_id, "nthread": nthread, "rows": rows,
           "max_plan_over_raw": max(r["plan_over_raw"] for r in rows),
           "within_1_25x_of_raw": bool(all(r["plan_over_raw"] <= 1.25 for r in rows)),
           "cpu_max_plan_over_raw": max(r["cpu_plan_over_raw"] for r in rows),
           "cpu_within_1_25x_of_raw": bool(all(r["cpu_plan_over_raw"] <= 1.25 for r in rows))}
    if have_peer:
        small = [r["peer_over_ours"] for r in rows if r["K"] <= 64]
        cpu_small = [r["cpu_peer_over_ours"] for r in rows if r["K"] <= 64]
        out.update(min_peer_over_ours_k_le_64=min(small), peer_2x_at_k_le_64=bool(min(small) >= 2.0),
                   cpu_min_peer_over_ours_k_le_64=min(cpu_small), cpu_peer_2x_at_k_le_64=bool(min(cpu_small) >= 2.0))
    else:
        out["peer"] = f"skipped: the `{PEER_PACKAGE}` package is not installed (pip install symgym[bench])"
    return out


def model_speed(model, env_id: str = "SymPointMass-v0", ks=(8, 16, 32, 64, 128, 256), rounds: int = 7,
                horizon: int = 15) -> dict[str, Any]:
    """Per K: our planner with the learned model vs pytorch-mppi with the same nets, interleaved (torch 1 thread)."""
    import torch

    from symgym.agents.mppi_models import ModelRolloutBackend

    torch.set_num_threads(1)
    if _peer_class() is None:
        return {"skipped": f"the `{PEER_PACKAGE}` package is not installed"}
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    rows = []
    for k in ks:
        planner = MPPIPlanner(env.unwrapped, MPPIConfig(samples=k, horizon=horizon, seed=0),
                              rollout=ModelRolloutBackend(model))
        peer = model_peer(model, k, horizon, planner.noise_sigma, planner.temperature)
        x = torch.as_tensor(obs, dtype=torch.float32)
        reps = max(2, 64 // k)

        def ours():
            for _ in range(reps):
                planner.plan(obs)

        def theirs():
            with torch.no_grad():
                for _ in range(reps):
                    peer.command(x)

        timing = interleaved({"symgym MPPI plan": ours, "pytorch-mppi plan": theirs}, baseline="symgym MPPI plan",
                             rounds=rounds, warmup=2, units=reps, unit="plans", threads={"torch": 1})
        cpu = cpu_interleaved({"symgym MPPI plan": ours, "pytorch-mppi plan": theirs}, "symgym MPPI plan", rounds)
        rows.append({"K": k, "horizon": horizon, "plan_ms": 1e3 * timing["contenders"]["symgym MPPI plan"]["median_s"] / reps,
                     "peer_ms": 1e3 * timing["contenders"]["pytorch-mppi plan"]["median_s"] / reps,
                     "peer_over_ours": timing["ratios"]["pytorch-mppi plan"]["median"], "timing": timing,
                     "cpu_peer_over_ours": cpu["ratios"]["pytorch-mppi plan"]["median"], "cpu_timing": cpu})
    return {"env": env_id, "model": model.kind, "rows": rows,
            "min_peer_over_ours": min(r["peer_over_ours"] for r in rows),
            "peer_2x_at_every_k": bool(all(r["peer_over_ours"] >= 2.0 for r in rows)),
            "cpu_min_peer_over_ours": min(r["cpu_peer_over_ours"] for r in rows),
            "cpu_peer_2x_at_every_k": bool(all(r["cpu_peer_over_ours"] >= 2.0 for r in rows))}
