"""Benchmark: sac vs equi-sac vs approx-sac on SymPush (exact) and SymPushWind (two break strengths).

For every (env, agent, seed) it trains with the agent's normal ``from_config`` path (monitor CSV, checkpoint)
and records, in the same run:

* success rate and episode return vs env steps (mean and spread over seeds), steps to reach a success and a
  return threshold, and the ratios sac / equi-sac and sac / approx-sac of those steps;
* wall time per 1k env steps (training, including gradient steps);
* final deterministic evaluation and its robustness to Gaussian observation noise;
* the actor equivariance and critic invariance errors on D4 after training (approx-sac's relaxed-weight
  error too), measured with :func:`agents.equi_sac.policy_symmetry_errors`.

Training is the cost here (2 shared CPU cores), so the budget is a :class:`SacBenchConfig`; ``quick`` is a
smoke-sized run. The bench uses a wider success radius than the env default so that short runs give a
success signal at all; the radius is recorded in the JSON.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from learn.io import save_figure

AGENTS = ("sac", "equi-sac", "approx-sac")


@dataclass
class SacBenchConfig:
    # 15k steps x 2 seeds x 3 agents x 2 envs is what fits ~30 minutes on the shared 2-core machine.
    steps: int = 15_000
    seeds: tuple[int, ...] = (0, 1)
    #: (label, env id, env kwargs): the exact env and a strong wind (m/s^2)
    envs: tuple[tuple[str, str, dict], ...] = (
        ("exact", "SymPush-v0", {}),
        ("wind-0.2", "SymPushWind-v0", {"wind": 0.2}),
    )
    success_radius: float = 0.08
    #: SAC hyper-parameters shared by all agents (small nets: training cost dominates on this machine)
    sac_kwargs: dict = field(default_factory=lambda: {"learning_starts": 500, "batch_size": 128,
                                                      "buffer_size": 50_000})
    #: comparable widths: 8 regular D4 fields = 64 channels (small: escnn/relaxed layers cost 2-4x per step)
    agent_kwargs: dict = field(default_factory=lambda: {"sac": {"net_arch": [64, 64]},
                                                        "equi-sac": {"hidden": [8, 8]},
                                                        "approx-sac": {"hidden": [8, 8], "penalty": 1e-2}})
    eval_episodes: int = 20
    obs_noise: tuple[float, ...] = (0.0, 0.03)
    success_threshold: float = 0.2
    curve_points: int = 20
    window: int = 10

    def validate(self) -> None:
        if self.steps < 200:
            raise ValueError(f"steps must be >= 200, got {self.steps}")
        if not self.seeds:
            raise ValueError("need at least one seed")


def quick_config() -> SacBenchConfig:
    return SacBenchConfig(steps=500, seeds=(0, 1), eval_episodes=3, obs_noise=(0.0, 0.03), curve_points=5,
                          window=3, sac_kwargs={"learning_starts": 250, "batch_size": 64, "buffer_size": 20_000})


def _train(agent: str, label: str, env_id: str, env_kwargs: dict, seed: int, cfg: SacBenchConfig,
           runs_dir: Path) -> dict[str, Any]:
    import torch

    from agents import TrainConfig, agent_class
    from learn.runs import read_monitor

    run_dir = runs_dir / label / agent / f"s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    kwargs = {**cfg.sac_kwargs, **cfg.agent_kwargs.get(agent, {})}
    config = TrainConfig(agent=agent, env=env_id, steps=cfg.steps, seed=seed, out=str(run_dir),
                         env_kwargs={**env_kwargs, "success_radius": cfg.success_radius}, agent_kwargs=kwargs)
    torch.set_num_threads(1)
    start = time.perf_counter()
    trained = agent_class(agent).from_config(config, run_dir)
    wall = time.perf_counter() - start
    df = read_monitor(run_dir)
    return {"agent": trained, "config": config, "wall_s_per_1k_steps": 1000 * wall / cfg.steps,
            "steps": df["steps"].to_numpy(), "success": df["is_success"].astype(float).to_numpy(),
            "returns": df["r"].to_numpy()}


def _curve(steps: np.ndarray, values: np.ndarray, grid: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` episodes finished by each grid step (NaN before the first episode)."""
    out = np.full(len(grid), np.nan)
    for i, s in enumerate(grid):
        done = values[steps <= s]
        if len(done):
            out[i] = done[-window:].mean()
    return out


def _first_crossing(grid: np.ndarray, curve: np.ndarray, threshold: float | None) -> float | None:
    """First grid step from which the curve stays at or above ``threshold`` ("reach and hold"), so that an
    early lucky stretch (random episodes that drift through the goal) does not count."""
    if threshold is None:
        return None
    above = np.nan_to_num(curve, nan=-np.inf) >= threshold
    for i in range(len(grid)):
        if above[i:].all():
            return float(grid[i])
    return None


def _noisy_eval(agent, env_id: str, env_kwargs: dict, sigma: float, episodes: int, seed: int = 10_000) -> dict:
    """Deterministic policy with N(0, sigma^2) noise (metres, m/s) added to every observation it sees."""
    from learn.runs import make_env

    env = make_env(env_id, **env_kwargs)
    rng = np.random.default_rng(seed)
    successes, returns = [], []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            noisy = (obs + sigma * rng.normal(size=obs.shape)).astype(np.float32)
            obs, r, term, trunc, info = env.step(agent.act(noisy, deterministic=True))
            total += float(r)
            done = term or trunc
        successes.append(float(info.get("is_success", False)))
        returns.append(total)
    env.close()
    return {"success_rate": float(np.mean(successes)), "mean_return": float(np.mean(returns))}


def _symmetry_errors(run: dict) -> dict[str, float]:
    import gymnasium as gym

    from agents.equi_sac import policy_symmetry_errors, relaxed_weight_errors
    from equivariance import DihedralGroup, Symmetry
    from equivariance.layers import restrict_rep

    d4 = DihedralGroup(4)
    env = gym.make("envs:SymPush-v0").unwrapped
    sym = Symmetry(d4, restrict_rep(env.symmetry.obs, d4), restrict_rep(env.symmetry.action, d4))
    obs = [env.reset(seed=500 + i)[0] for i in range(8)]
    out = policy_symmetry_errors(run["agent"].model, sym, obs, d4.elements())
    if run["config"].agent == "approx-sac":
        w = relaxed_weight_errors(run["agent"].model.policy)
        out.update({"actor_relaxed_weight_error": w["actor"], "critic_relaxed_weight_error": w["critic"]})
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0,
        config: SacBenchConfig | None = None) -> dict[str, Any]:
    cfg = config or (quick_config() if quick else SacBenchConfig())
    cfg.validate()
    seeds = tuple(seed + s for s in cfg.seeds)
    runs_dir = Path(out_dir) / "cache" / ("sac-bench-quick" if quick else "sac-bench")
    grid = np.linspace(cfg.steps / cfg.curve_points, cfg.steps, cfg.curve_points)
    results: dict[str, Any] = {"settings": {**asdict(cfg), "seeds": list(seeds)}, "envs": {}}
    for label, env_id, env_kwargs in cfg.envs:
        per_agent: dict[str, Any] = {}
        for agent in AGENTS:
            runs = [_train(agent, label, env_id, env_kwargs, s, cfg, runs_dir) for s in seeds]
            succ = np.array([_curve(r["steps"], r["success"], grid, cfg.window) for r in runs])
            rets = np.array([_curve(r["steps"], r["returns"], grid, cfg.window) for r in runs])
            eval_kwargs = {**env_kwargs, "success_radius": cfg.success_radius}
            noise = {str(sigma): [_noisy_eval(r["agent"], env_id, eval_kwargs, sigma, cfg.eval_episodes)
                                  for r in runs] for sigma in cfg.obs_noise}
            sym_errors = [_symmetry_errors(r) for r in runs]
            per_agent[agent] = {
                "success_curve_mean": np.nanmean(succ, axis=0), "success_curve_std": np.nanstd(succ, axis=0),
                "return_curve_mean": np.nanmean(rets, axis=0), "return_curve_std": np.nanstd(rets, axis=0),
                "wall_s_per_1k_steps": float(np.mean([r["wall_s_per_1k_steps"] for r in runs])),
                "train_success_rate": float(np.mean([r["success"].mean() for r in runs])),
                "eval": {sigma: {"success_rate": float(np.mean([e["success_rate"] for e in evs])),
                                 "success_rate_std": float(np.std([e["success_rate"] for e in evs])),
                                 "mean_return": float(np.mean([e["mean_return"] for e in evs]))}
                         for sigma, evs in noise.items()},
                "symmetry_errors": {k: float(np.max([e[k] for e in sym_errors])) for k in sym_errors[0]},
            }
        results["envs"][label] = {"env": env_id, "env_kwargs": env_kwargs, "agents": per_agent}
        _thresholds(results["envs"][label], grid, cfg)
    results["curve_steps"] = grid
    results["summary"] = _summary(results)
    _plot(results, grid, Path(out_dir))
    return results


def _thresholds(entry: dict, grid: np.ndarray, cfg: SacBenchConfig) -> None:
    """Steps to a success threshold and to a return threshold (half-way from the agents' mean return at the
    first curve point to the best final return of any agent; None when no agent improved)."""
    agents = entry["agents"]
    firsts = [c[np.isfinite(c)][0] for c in (np.asarray(a["return_curve_mean"]) for a in agents.values())
              if np.isfinite(c).any()]
    start = float(np.mean(firsts)) if firsts else float("nan")
    best = max(float(a["return_curve_mean"][-1]) for a in agents.values())
    ret_threshold = start + 0.5 * (best - start) if np.isfinite(start) and best > start else None
    entry["return_threshold"] = ret_threshold
    for a in agents.values():
        a["steps_to_success_threshold"] = _first_crossing(grid, a["success_curve_mean"], cfg.success_threshold)
        a["steps_to_return_threshold"] = _first_crossing(grid, a["return_curve_mean"], ret_threshold)
    for key in ("steps_to_success_threshold", "steps_to_return_threshold"):
        base = agents["sac"][key]
        entry[f"{key}_ratio_sac_over_equi"] = _ratio(base, agents["equi-sac"][key])
        entry[f"{key}_ratio_sac_over_approx"] = _ratio(base, agents["approx-sac"][key])


def _summary(results: dict) -> dict[str, Any]:
    """The orderings the issue expects, stated as booleans on final return and area under the curves."""
    out = {}
    for label, entry in results["envs"].items():
        a = entry["agents"]
        final = {k: float(v["return_curve_mean"][-1]) for k, v in a.items()}
        auc_return = {k: float(np.nanmean(v["return_curve_mean"])) for k, v in a.items()}
        auc_success = {k: float(np.nanmean(v["success_curve_mean"])) for k, v in a.items()}
        out[label] = {"final_return": final, "mean_return_over_training": auc_return,
                      "mean_success_over_training": auc_success,
                      "equi_beats_sac": auc_return["equi-sac"] > auc_return["sac"],
                      "approx_beats_sac": auc_return["approx-sac"] > auc_return["sac"],
                      "approx_matches_or_beats_equi": auc_return["approx-sac"] >= auc_return["equi-sac"]}
    return out


def _plot(results: dict, grid: np.ndarray, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results["envs"])
    fig, axes = plt.subplots(2, len(labels), figsize=(4.2 * len(labels), 6.4), squeeze=False)
    for j, label in enumerate(labels):
        entry = results["envs"][label]
        for k, agent in enumerate(AGENTS):
            a = entry["agents"][agent]
            for i, key in enumerate(("success", "return")):
                m, s = np.asarray(a[f"{key}_curve_mean"]), np.asarray(a[f"{key}_curve_std"])
                axes[i, j].plot(grid, m, color=f"C{k}", label=agent)
                axes[i, j].fill_between(grid, m - s, m + s, color=f"C{k}", alpha=0.2)
        axes[0, j].set(title=f"{entry['env']} {label}", ylabel="success rate", ylim=(-0.02, 1.02))
        axes[1, j].set(xlabel="env steps", ylabel="episode return")
        if entry["return_threshold"] is not None:
            axes[1, j].axhline(entry["return_threshold"], color="grey", lw=0.8, ls="--")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    n = len(results["settings"]["seeds"])
    fig.suptitle(f"SAC variants, mean +/- std over {n} seeds")
    fig.tight_layout()
    save_figure(fig, out_dir / "sac.png")
