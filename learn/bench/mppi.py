"""``symgym bench mppi``: symmetric MPPI in the paper's regime, its speed, and its fixed points.

* **Power** (the sweep ``specs/mppi.yaml``, its claims form the ``evidence`` list): naive vs symmetric (orbit)
  sampling x {true simulator, plain learned model, equivariant learned model} x model data on SymPointMass-v0,
  30 initial states x 3 noise seeds per cell, paired (``learn/bench/mppi_power.py``).
* **Planner equivariance**: ``max |plan(g.s) - g.plan(s)|`` relative, same noise seed, for the simulator planner on
  every MPPI env and for the learned-model planner (equivariant model: exact up to float32; plain: measured); on
  PandaReach/PandaPush with the closed-loop simulator (``learn/bench/mppi_panda.py``; approximate, measured).
* **Speed** (``learn/bench/mppi_speed.py``): plan time over the raw ``mujoco.rollout`` of the same K x H, and
  pytorch-mppi's plan time over ours, interleaved rounds, at every K in 8..256; the same with learned models.
* **Fixed points**: SymCartPole-v0 from the mirror-fixed hanging rest: steps to swing up for the symmetric planner
  with and without the tie-break (and the naive planner).
* **Toy**: coordinate regression by weighted sampling, naive vs D4-orbit samples.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import symgym.envs  # noqa: F401  (registers ids)
from symgym.agents.mppi import MPPIConfig, MPPIPlanner, action_orbit_matrices, orbit_noise
from symgym.equivariance import DihedralGroup, ReflectionGroup, Symmetry, equivariance_error, standard
from symgym.learn.io import save_figure

#: env id -> planning group for the simulator planner's equivariance (None: the env's own finite group)
PLANNING_GROUPS = {"SymReach-v0": None, "SymPush-v0": "D4", "SymCartPole-v0": None, "SymPointMass-v0": "D4"}


# -- planner equivariance ----------------------------------------------------------------------------
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


def model_planner_equivariance(models: dict, env_id: str = "SymPointMass-v0", k: int = 32) -> dict:
    """The learned-model planner's equivariance error on D4 (the equivariant nets' group), same noise seed."""
    from symgym.agents.mppi_models import ModelRolloutBackend

    env = gym.make(env_id).unwrapped
    sym = Symmetry(group=env.symmetry.group, obs=env.symmetry.obs, action=env.symmetry.transform_action)
    obs = [env.reset(seed=s)[0].astype(np.float64) for s in range(3)]
    out = {"group": "D4", "K": k}
    for kind, model in models.items():
        for symmetric in (False, True):
            planner = MPPIPlanner(env, MPPIConfig(samples=k, symmetric=symmetric, group="D4", seed=0),
                                  rollout=ModelRolloutBackend(model))

            def plan(o, planner=planner):
                planner.reset()
                return planner.plan(o)

            out[f"{kind}-{'symmetric' if symmetric else 'naive'}"] = equivariance_error(
                plan, sym, obs, DihedralGroup(4).elements())
    return out


# -- fixed points ------------------------------------------------------------------------------------
def swing_up_from_fixed_point(seeds=(0, 1, 2), k: int = 32, steps: int = 200) -> dict:
    """SymCartPole-v0 from x = 0, theta = pi at rest (the mirror fixes it): steps until the pole is within the
    env's success angle of upright (censored at ``steps``), per planner, and how many plans met a tie."""
    env = gym.make("SymCartPole-v0").unwrapped
    rows = {}
    for name, kwargs in (("symmetric", {"symmetric": True}), ("symmetric+tie-break", {"symmetric": True,
                                                                                      "tie_break": True}),
                         ("naive", {"symmetric": False})):
        times, ties, first = [], [], []
        for seed in seeds:
            env.reset(seed=0)
            s = env.get_state()
            s[env.state_layout["QPOS"]] = [0.0, np.pi]
            s[env.state_layout["QVEL"]] = 0.0
            s[env.state_layout["WARMSTART"]] = 0.0
            env.set_state(s)
            planner = MPPIPlanner(env, MPPIConfig(samples=k, seed=seed, nthread=1, **kwargs))
            reached = None
            for t in range(steps):
                a = planner.act()
                if t == 0:
                    first.append(float(abs(a[0])))
                _, _, _, _, info = env.step(a)
                if info.get("is_success"):
                    reached = t + 1
                    break
            times.append(steps if reached is None else reached)
            ties.append(planner.ties)
            planner.close()
        rows[name] = {"steps_to_upright": times, "reached": [t < steps for t in times], "ties_broken": ties,
                      "first_action_abs": first}
    return {"env": "SymCartPole-v0", "start": "x=0, theta=pi, at rest (fixed by the mirror)", "K": k,
            "budget_steps": steps, "noise_seeds": list(seeds), "planners": rows}


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
    """Final distance by model data (IQM per cell), planner speed ratios vs K, swing-up times, the toy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    groups = results.get("groups", {})
    for model, colour in (("sim", "k"), ("plain", "C0"), ("equi", "C3")):
        for sampler, ls in (("naive", "--"), ("sym", "-")):
            pts = []
            for g in groups.values():
                name = str(g["labels"].get("method", ""))
                parts = name.split("-")
                if (len(parts) < 2 or parts[0] != sampler or parts[1] != model or {"panda", "push"} & set(parts)
                        or "final_distance" not in g["metrics"]):
                    continue  # the Panda cells have their own env
                data = {"1k": 1e3, "5k": 5e3, "20k": 2e4}.get(parts[2] if len(parts) > 2 else "", None)
                pts.append((data, g["metrics"]["final_distance"]["iqm"]))
            for data, v in pts:
                if data is None:  # the simulator column does not depend on data: a horizontal line
                    ax.axhline(v, color=colour, ls=ls, lw=1, label=f"{sampler} sampling, simulator")
            pts = sorted(p for p in pts if p[0] is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker="o", color=colour,
                        label=f"{sampler} sampling, {model} model")
    ax.set(xscale="log", yscale="log", xlabel="model data (transitions)", ylabel="final distance (m), IQM",
           title="SymPointMass-v0: 30 states x 3 noise seeds per cell")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    # CPU-time ratios when recorded (robust to an overloaded box), else wall-clock ones
    cpu = "cpu_plan_over_raw" in (results.get("speed", {}).get("simulator") or [{"rows": [{}]}])[0]["rows"][0]
    pre = "cpu_" if cpu else ""
    for j, sp in enumerate(results.get("speed", {}).get("simulator", [])):
        ks = [r["K"] for r in sp["rows"]]
        ax.plot(ks, [r[pre + "plan_over_raw"] for r in sp["rows"]], "o-", color=f"C{j}",
                label=f"plan / raw rollout, {sp['env']}")
        if "peer_over_ours" in sp["rows"][0]:
            ax.plot(ks, [r[pre + "peer_over_ours"] for r in sp["rows"]], "s--", color=f"C{j}",
                    label=f"pytorch-mppi / ours, {sp['env']}")
    model = results.get("speed", {}).get("model", {})
    if "rows" in model:
        ax.plot([r["K"] for r in model["rows"]], [r[pre + "peer_over_ours"] for r in model["rows"]], "^:",
                color="C3", label=f"pytorch-mppi / ours, learned {model['model']} model")
    ax.axhline(1.25, color="grey", lw=0.8)
    ax.axhline(2.0, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="samples K", ylabel="time ratio (median of interleaved rounds)",
           title="planner speed" + (" (CPU time)" if cpu else " (wall clock)"))
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    fp = results.get("fixed_point", {}).get("planners", {})
    for i, (name, row) in enumerate(fp.items()):
        ax.scatter([i] * len(row["steps_to_upright"]), row["steps_to_upright"], color=f"C{i}")
    ax.set_xticks(range(len(fp)), list(fp), fontsize=8)
    ax.set(ylabel="steps to upright (censored at budget)", title="SymCartPole from the mirror-fixed rest")
    ax = axes[1, 1]
    toy = results.get("coordinate_regression", {})
    for j, key in enumerate(k for k in toy if k.startswith("temperature_")):
        ks = [r["K"] for r in toy[key]]
        for name, colour in (("naive", "C0"), ("symmetric", "C3")):
            ax.errorbar(ks, [r[name]["error"] for r in toy[key]], yerr=[r[name]["error_sem"] for r in toy[key]],
                        marker="os"[j], ls="-" if j == 0 else "--", color=colour, capsize=3,
                        label=f"{name}, T={key.split('_')[1]}")
    ax.set(xscale="log", yscale="log", xlabel="samples K", ylabel="|x_hat - x*|",
           title="coordinate regression by sampling (D4)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def bench_models(out_dir: Path, quick: bool) -> dict:
    """The sweep's cached learned models (5k transitions, noise seed 0) when present, else small fresh fits."""
    from symgym.learn.bench.mppi_power import PARAMS, cached_model

    params = {**PARAMS, "data": 200 if quick else 5000, "model_epochs": 2 if quick else 20,
              "model_rounds": 1 if quick else 3, "episode_steps": 20 if quick else 60}
    return {kind: cached_model(Path(out_dir) / "cache", {**params, "model": kind}, 0)[0]
            for kind in ("equivariant", "plain")}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    import torch

    from symgym.learn.bench.mppi_speed import model_speed, simulator_speed
    from symgym.learn.evidence.report import sweep_and_report

    torch.set_num_threads(1)
    results = sweep_and_report("mppi", out_dir, quick=quick, seed=seed, max_concurrent=2)
    ks = (8, 32) if quick else (8, 16, 32, 64, 128, 256)
    rounds = 5 if quick else 7
    envs = {"SymReach-v0": None} if quick else PLANNING_GROUPS
    models = bench_models(Path(out_dir), quick)
    results["planner_equivariance_error"] = {
        "simulator": {env_id: planner_equivariance(env_id, group) for env_id, group in envs.items()},
        "learned_model": model_planner_equivariance(models)}
    from symgym.learn.bench.mppi_panda import run as panda_run

    panda = panda_run(quick)  # the Panda with the closed-loop simulator: approximate symmetry, measured
    results["planner_equivariance_error"]["panda_simulator"] = panda["planner_equivariance_error"]
    results["panda_rollout_cost"] = panda["rollout_cost"]
    results["parameter_counts"] = {k: m.parameter_counts() for k, m in models.items()}
    results["speed"] = {
        "simulator": [simulator_speed(env_id, ks, nthread=2, rounds=rounds)
                      for env_id in (("SymReach-v0",) if quick else ("SymReach-v0", "SymPointMass-v0"))],
        "model": model_speed(models["equivariant"], ks=ks, rounds=rounds)}
    results["fixed_point"] = swing_up_from_fixed_point(seeds=(0,) if quick else (0, 1, 2, 3, 4),
                                                       steps=30 if quick else 200)
    results["coordinate_regression"] = coordinate_regression_toy((8, 32, 128), 100 if quick else 400, seed)
    try:
        from importlib.metadata import version

        results["metaworld"] = {"installed": True, "version": version("metaworld")}
    except Exception:
        results["metaworld"] = {"installed": False, "note": (
            "pip install --dry-run metaworld (3.1.1) would downgrade mujoco 4.0.1 -> 3.3.0, which breaks the "
            "project's simulator version; MetaWorld tasks are not run")}
    plot(results, Path(out_dir) / "mppi_planner.png")
    return results
