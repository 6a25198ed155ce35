"""``symgym bench mppi``: naive vs symmetric MPPI sampling, planner throughput, and the sampling toy.

On SymReach-v0, SymPush-v0 and SymCartPole-v0:
  * episode return and success rate of naive vs orbit-symmetrised MPPI for each K over 5 seeds: the sweep
    ``specs/mppi.yaml`` (resumable; its claims form the ``evidence`` list, rliable IQMs and CIs per cell);
  * the planners' equivariance error on the env's finite group (symmetric ~0, naive reported);
  * planner rollout steps/s against the raw single-thread ``mj_step`` rate of the same model;
  * the ``pytorch-mppi`` package as a peer on the same env, horizon, K and simulator (skipped with a note
    when the package is not installed);
  * the coordinate-regression toy: find the minimiser of a symmetric cost by weighted sampling,
    naive vs symmetric samples, error vs number of samples.
"""
from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import symgym.envs  # noqa: F401  (registers ids)
from symgym.agents.mppi import MPPIConfig, MPPIPlanner, action_orbit_matrices, orbit_noise
from symgym.envs.sym_cartpole import ReflectionGroup
from symgym.equivariance import DihedralGroup, Symmetry, equivariance_error, standard
from symgym.learn.run.episodes import run_episode
from symgym.learn.io import save_figure

PEER_PACKAGE = "pytorch-mppi"


# -- control episodes ------------------------------------------------------------------------------
def timed_episode(env: gym.Env, planner: MPPIPlanner, seed: int, steps: int) -> dict:
    """One episode through the shared episode loop; cost is minus the return, plus the mean time per plan."""
    times: list[float] = []

    def policy(_obs):
        t0 = time.perf_counter()
        action = planner.act()
        times.append(time.perf_counter() - t0)
        return action

    ep = run_episode(env, policy, seed, on_reset=planner.reset, max_steps=steps)
    return {"cost": -ep.total_reward, "success": float(ep.success), "plan_time_s": float(np.mean(times))}


def planner_equivariance(env_id: str, group: str | None, k: int = 32) -> dict:
    """Max relative error of plan(g.s) vs g.plan(s) over the planning group, same noise seed."""
    env = gym.make(env_id).unwrapped
    elements = (ReflectionGroup() if group is None and env_id == "SymCartPole-v0"
                else DihedralGroup(int(group[1:])) if group else DihedralGroup(8)).elements()
    sym = Symmetry(group=env.symmetry.group, obs=env.transform_state, action=env.symmetry.transform_action)
    states = []
    for seed in range(3):
        env.reset(seed=seed)
        states.append(env.get_state())
    out = {"elements": len(elements)}
    for symmetric in (False, True):
        planner = MPPIPlanner(env, MPPIConfig(samples=k, symmetric=symmetric, group=group, seed=0))

        def plan(state, planner=planner):
            planner.reset()
            return planner.plan(state)

        out["symmetric" if symmetric else "naive"] = equivariance_error(plan, sym, states, elements)
        planner.close()
    return out


# -- throughput -------------------------------------------------------------------------------------
def raw_step_rate(env_id: str, windows: int = 5, seconds: float = 0.3) -> float:
    """Single-thread ``mj_step`` steps per second on the env's model (the physical limit for rollouts).

    The best of several short windows, like :func:`planner_step_rate`, so that both sides of the ratio are
    peak rates and other processes on a shared machine bias neither.
    """
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    data = mujoco.MjData(env.model)
    mujoco.mj_setState(env.model, data, env.physics_state(), int(mujoco.mjtState.mjSTATE_FULLPHYSICS))
    best = 0.0
    for _ in range(windows):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            data.ctrl[:] = np.sin(steps * 0.01)
            mujoco.mj_step(env.model, data, nstep=500)
            steps += 500
            if not np.isfinite(data.qpos).all():
                mujoco.mj_resetData(env.model, data)
        best = max(best, steps / (time.perf_counter() - start))
    return best


def planner_step_rate(env_id: str, k: int, group: str | None, repeats: int = 10) -> float:
    """Simulator steps per second that one MPPI plan sustains (rollouts, cost and update included); best plan."""
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    planner = MPPIPlanner(env, MPPIConfig(samples=k, symmetric=True, group=group))
    state = env.get_state()
    planner.plan(state)  # warm up the pool
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        planner.plan(state)
        best = min(best, time.perf_counter() - start)
    planner.close()
    return planner.rollout_steps_per_plan / best


# -- the pytorch-mppi peer ---------------------------------------------------------------------------
def pytorch_mppi_peer(env_id: str, k: int, steps: int, seed: int = 0) -> dict:
    """Same env, horizon, K, temperature, noise and simulator (batched ``mujoco.rollout`` per step) through
    ``pytorch_mppi.MPPI``; returns its time per plan and episode cost, or a note when it is not installed."""
    try:
        import torch
        from pytorch_mppi import MPPI
    except ImportError:
        return {"skipped": f"the `{PEER_PACKAGE}` package is not installed; add it to the dependencies "
                           f"(pip install {PEER_PACKAGE}) to run this comparison"}
    torch.set_num_threads(1)
    env = gym.make(env_id).unwrapped
    ours = MPPIPlanner(env, MPPIConfig(samples=k))
    horizon, sigma, lam = ours.horizon, ours.noise_sigma, ours.temperature
    ours.close()
    pool = mujoco.rollout.Rollout(nthread=2)
    datas = [mujoco.MjData(env.model) for _ in range(2)]
    layout = env._layout

    def dynamics(state: "torch.Tensor", action: "torch.Tensor") -> "torch.Tensor":
        full = state.detach().cpu().numpy().astype(np.float64)
        phys = env.physics_state(full)
        ctrl = np.repeat(env.actions_to_ctrl(action.detach().cpu().numpy())[:, None], env.frame_skip, axis=1)
        out = pool.rollout(env.model, datas, phys, ctrl)[0][:, -1]
        nxt = full.copy()
        nxt[:, layout["QPOS"]] = out[:, _phys_slice(env, "QPOS")]
        nxt[:, layout["QVEL"]] = out[:, _phys_slice(env, "QVEL")]
        return torch.as_tensor(nxt, dtype=state.dtype)

    def running_cost(state: "torch.Tensor", action: "torch.Tensor") -> "torch.Tensor":
        return torch.as_tensor(env.stage_cost(state.cpu().numpy(), action.cpu().numpy()), dtype=state.dtype)

    na = env.action_space.shape[0]
    ctrl = MPPI(dynamics, running_cost, len(env.get_state()), sigma**2 * torch.eye(na, dtype=torch.double),
                num_samples=k, horizon=horizon, lambda_=lam, device="cpu",
                u_min=-torch.ones(na, dtype=torch.double), u_max=torch.ones(na, dtype=torch.double))
    torch.manual_seed(seed)
    times: list[float] = []

    def policy(_obs):
        t0 = time.perf_counter()
        action = ctrl.command(torch.as_tensor(env.get_state(), dtype=torch.double)).cpu().numpy()
        times.append(time.perf_counter() - t0)
        return np.asarray(action, dtype=np.float64).reshape(na)

    total = -run_episode(env, policy, 1000 + seed, max_steps=steps).total_reward
    pool.close()
    return {"K": k, "horizon": horizon, "episode_steps": len(times), "plan_time_ms": 1e3 * float(np.mean(times)),
            "cost": total}


def _phys_slice(env, name: str) -> slice:
    from symgym.envs.mujoco_base import PHYSICS_SPEC, state_layout

    return state_layout(env.model, PHYSICS_SPEC)[name]


def ours_short_episode(env_id: str, k: int, steps: int, seed: int = 0) -> dict:
    env = gym.make(env_id).unwrapped
    planner = MPPIPlanner(env, MPPIConfig(samples=k, seed=seed))
    ep = timed_episode(env, planner, seed=1000 + seed, steps=steps)
    planner.close()
    return {"K": k, "horizon": planner.horizon, "plan_time_ms": 1e3 * ep["plan_time_s"], "cost": ep["cost"]}


# -- the coordinate-regression toy -------------------------------------------------------------------
def regress_point(target: np.ndarray, k: int, rng: np.random.Generator, symmetric: bool, group=DihedralGroup(4),
                  sigma: float = 1.0, temperature: float = 0.05) -> np.ndarray:
    """Estimate argmin |x - target|^2 by softmax-weighted sampling around the origin (one MPPI update)."""
    if symmetric:
        mats = action_orbit_matrices(Symmetry(group=group, obs=standard(group), action=standard(group)), group)
        base = sigma * rng.standard_normal((max(1, k // len(mats)), 1, 2))
        samples = orbit_noise(base, mats)[:, 0]
    else:
        samples = sigma * rng.standard_normal((k, 2))
    cost = np.sum((samples - target) ** 2, axis=-1)
    w = np.exp(-(cost - cost.min()) / temperature)
    return (w / w.sum()) @ samples


def coordinate_regression_toy(ks, trials: int, seed: int = 0, temperatures=(0.05, 1.0)) -> dict:
    """Error of the sampled minimiser vs K, naive vs D4-orbit samples, at a low temperature (the update is
    close to picking the best sample: a search) and a high one (a weighted average of many samples)."""
    group = DihedralGroup(4)
    rng = np.random.default_rng(seed)
    targets = rng.uniform(-1, 1, size=(trials, 2))
    out = {"cost": "|x - x*|^2, x* uniform in [-1,1]^2, samples N(0, I) around the origin", "group": group.name,
           "trials": trials}
    for lam in temperatures:
        rows = []
        for k in ks:
            row = {"K": k}
            for symmetric in (False, True):
                def est(t, i):
                    return regress_point(t, k, np.random.default_rng([seed, i]), symmetric, temperature=lam)

                errs = [np.linalg.norm(est(t, i) - t) for i, t in enumerate(targets)]
                # equivariance of the estimator with a fixed noise seed, over the group
                eq = max(np.linalg.norm(est(g.matrix() @ t, i) - g.matrix() @ est(t, i))
                         for i, t in enumerate(targets[:20]) for g in group.elements())
                row["symmetric" if symmetric else "naive"] = {"error": float(np.mean(errs)),
                                                              "error_sem": float(np.std(errs) / np.sqrt(trials)),
                                                              "equivariance_error": float(eq)}
            row["error_ratio_naive_over_symmetric"] = row["naive"]["error"] / row["symmetric"]["error"]
            rows.append(row)
        out[f"temperature_{lam:g}"] = rows
    return out


# -- figure -----------------------------------------------------------------------------------------
def plot(results: dict, path: Path) -> Path:
    """Return vs K per env (IQM and 95% CI over seeds, from the sweep report), the toy and the throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = results["groups"]
    envs = list(dict.fromkeys(g["labels"]["env"] for g in groups.values()))
    fig, axes = plt.subplots(2, max(3, len(envs)), figsize=(13, 7.5), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        for name, colour in (("mppi", "C0"), ("sym-mppi", "C3")):
            rows = sorted((int(g["labels"]["K"]), g["metrics"]["mean_return"]) for g in groups.values()
                          if g["labels"]["env"] == env_id and g["labels"]["method"] == name
                          and "mean_return" in g["metrics"])
            if not rows:
                continue
            ks = [k for k, _ in rows]
            iqm = np.array([m["iqm"] for _, m in rows])
            ci = np.array([[np.nan if c is None else c for c in m["ci95"]] for _, m in rows], float)
            ax.plot(ks, iqm, marker="o", color=colour, label=f"{name} (IQM, 95% CI)")
            ax.fill_between(ks, ci[:, 0], ci[:, 1], color=colour, alpha=0.2)
            ax.set_xticks(ks, [str(k) for k in ks])
        ax.set(xscale="log", xlabel="samples K", ylabel="episode return", title=env_id)
        ax.legend(fontsize=8)
    ax = axes[1, 0]
    toy = results["coordinate_regression"]
    for j, key in enumerate(k for k in toy if k.startswith("temperature_")):
        ks = [r["K"] for r in toy[key]]
        for name, colour in (("naive", "C0"), ("symmetric", "C3")):
            ax.errorbar(ks, [r[name]["error"] for r in toy[key]], yerr=[r[name]["error_sem"] for r in toy[key]],
                        marker="os"[j], ls="-" if j == 0 else "--", color=colour, capsize=3,
                        label=f"{name}, T={key.split('_')[1]}")
    ax.set(xscale="log", yscale="log", xlabel="samples K", ylabel="|x_hat - x*|",
           title="coordinate regression by sampling (D4)")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    tp = results["throughput"]
    names = list(tp)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [tp[n]["raw_mj_step_per_s"] / 1e3 for n in names], 0.4, label="raw mj_step, 1 thread")
    ax.bar(x + 0.2, [tp[n]["planner_steps_per_s"] / 1e3 for n in names], 0.4, label="MPPI rollouts (max K)")
    ax.set_xticks(x, [n.replace("-v0", "") for n in names])
    ax.set(ylabel="k simulator steps / s", title="planner throughput vs raw MuJoCo")
    ax.legend(fontsize=8)
    axes[1, 2].axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


#: env id -> planning group for the equivariance and throughput measurements (None: the env's own)
PLANNING_GROUPS = {"SymReach-v0": None, "SymPush-v0": "D4", "SymCartPole-v0": None}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    import torch

    from symgym.learn.evidence.report import sweep_and_report

    torch.set_num_threads(1)
    results = sweep_and_report("mppi", out_dir, quick=quick, seed=seed)
    ks = (8, 32, 128)
    envs = {"SymReach-v0": None} if quick else PLANNING_GROUPS
    equivariance, throughput = {}, {}
    for env_id, group in envs.items():
        equivariance[env_id] = planner_equivariance(env_id, group)
        raw = raw_step_rate(env_id)
        planner = planner_step_rate(env_id, max(ks), group)
        throughput[env_id] = {"raw_mj_step_per_s": raw, "planner_steps_per_s": planner,
                              "raw_over_planner": raw / planner, "within_3x": bool(raw / planner <= 3.0)}
    peer_env, peer_k, peer_steps = "SymReach-v0", 64, 10 if quick else 30
    peer = {"env": peer_env, "pytorch_mppi": pytorch_mppi_peer(peer_env, peer_k, peer_steps, seed),
            "symgym_mppi": ours_short_episode(peer_env, peer_k, peer_steps, seed)}
    if "plan_time_ms" in peer["pytorch_mppi"]:
        peer["speedup_per_plan"] = peer["pytorch_mppi"]["plan_time_ms"] / peer["symgym_mppi"]["plan_time_ms"]
    results.update({"planner_equivariance_error": equivariance, "throughput": throughput, "peer": peer,
                    "coordinate_regression": coordinate_regression_toy(ks, 200 if quick else 400, seed)})
    plot(results, Path(out_dir) / "mppi_planner.png")
    return results
