"""Sweep trials: what one cell of a sweep grid runs, in its own run directory.

The built-in trial kind is ``train-eval``: :func:`symgym.learn.run.training.train` (oracle demonstrations first,
for imitation agents) then :func:`symgym.learn.run.evaluate.evaluate` on held-out seeds, plus the learning curve of
agents that log a monitor CSV (the SB3 agents). It writes the same files ``symgym train`` writes, an
``eval.json`` and a ``summary.json``, and returns the summary. Trials know nothing about Ray: the sweep runs
them through Ray Tune, the sweep-overhead bench also runs them one after another in-process.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from symgym.learn.io import write_json


@dataclass(frozen=True)
class TrialKind:
    """A trial function with the parameters it accepts (name -> default; ``REQUIRED`` has none) and the
    metrics its summaries carry (``metric.VARIANT`` for each extra evaluation variant)."""

    name: str
    function: Callable[[dict[str, Any], Path], dict[str, Any]]
    params: dict[str, Any]
    metrics: tuple[str, ...]


REQUIRED = object()
#: parameters whose values are dicts; a grid axis ``agent_kwargs.KEY`` sets one entry
DICT_PARAMS = ("env_kwargs", "agent_kwargs", "eval_variants")
#: imitation agents learn from oracle demonstrations (``demos: N`` collects N of them first)
IMITATION_AGENTS = ("transporter", "equi-transporter", "keyframe-transporter", "hep", "flat-bc",
                    "hep3d", "flat-diffusion")


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


def demos_file(cache: Path, env: str, n: int, seed: int) -> Path:
    """Oracle demonstrations for a trial, shared by every trial that asks for the same (env, n, seed)."""
    from symgym.learn.run.demos import collect_demos

    path = cache / f"{env}-n{n}-s{seed}.npz"
    if not path.is_file():
        collect_demos(env, n, out=path, seed=seed, progress=False)
    return path


def learning_curve(run_dir: Path, steps: int, points: int, threshold: float, window: int = 10) -> dict[str, Any]:
    """Training success/return curve from the monitor CSV (empty when the agent logs none)."""
    from symgym.learn.run.runs import read_monitor

    if not (run_dir / "monitor.monitor.csv").is_file():
        return {}
    df = read_monitor(run_dir)
    if df.empty:
        return {}
    grid = np.linspace(steps / points, steps, points)
    ep_steps = df["steps"].to_numpy()
    success = _curve(ep_steps, df["is_success"].astype(float).to_numpy(), grid, window)
    returns = _curve(ep_steps, df["r"].to_numpy(), grid, window)
    reached = _first_crossing(grid, success, threshold)
    return {"curve": {"steps": grid.tolist(), "success": success.tolist(), "return": returns.tolist()},
            "metrics": {"train_success": float(df["is_success"].astype(float).mean()),
                        "final_train_success": float(success[-1]),
                        # censored at the budget when the threshold is never reached and held
                        "steps_to_success": float(steps if reached is None else reached)},
            "reached_success_threshold": reached is not None}


def train_eval_trial(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``train`` then ``evaluate`` (plus one evaluation per ``eval_variants`` entry) in ``run_dir``."""
    import torch

    from symgym.agents import TrainConfig
    from symgym.learn.run.evaluate import evaluate
    from symgym.learn.run.runs import load_run
    from symgym.learn.run.training import TrainOptions, train

    torch.set_num_threads(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    demos = None
    if params["demos"] is not None:
        # demonstrations come from seeds 1000*seed, ...: disjoint per trial seed and from the eval seeds
        demos = str(demos_file(Path(params["cache"]) / "demos", params["env"], int(params["demos"]),
                               1000 * int(params["seed"])))
    config = TrainConfig(agent=params["agent"], env=params["env"], steps=int(params["steps"]),
                         seed=int(params["seed"]), out=str(run_dir), demos=demos,
                         env_kwargs=dict(params["env_kwargs"]), agent_kwargs=dict(params["agent_kwargs"]))
    start = time.perf_counter()
    # no periodic EvalCallback/checkpoints inside a trial: the trial evaluates once, after training
    train(config, TrainOptions(progress=False, eval_freq=0, checkpoint_freq=0))
    train_seconds = time.perf_counter() - start
    agent, _ = load_run(run_dir)
    start = time.perf_counter()
    # each trial seed evaluates its own held-out episodes; method and baseline with one seed share them
    eval_seed = int(params["eval_seed"]) + 1000 * int(params["seed"])
    result = evaluate(agent, params["env"], episodes=int(params["episodes"]), seed=eval_seed,
                      env_kwargs=dict(params["env_kwargs"]), progress=False).as_dict()
    metrics = {k: float(result[k]) for k in ("success_rate", "mean_return", "std_return", "mean_length")}
    # multi-step tasks (stacking): the fraction of held-out episodes that completed at least k steps
    metrics.update({k: float(v) for k, v in result.items() if k.startswith("step") and k.endswith("_success")})
    metrics.update(getattr(agent, "extra_metrics", dict)())  # e.g. SAC's early stop, approx-sac's drift
    evals = {"default": {**result, "first_seed": eval_seed}}
    for variant, kwargs in params["eval_variants"].items():
        res = evaluate(agent, params["env"], episodes=int(params["episodes"]), seed=eval_seed,
                       env_kwargs={**params["env_kwargs"], **kwargs}, progress=False).as_dict()
        evals[variant] = res
        metrics[f"success_rate.{variant}"] = float(res["success_rate"])
        metrics[f"mean_return.{variant}"] = float(res["mean_return"])
    metrics["eval_seconds"] = time.perf_counter() - start
    metrics["train_seconds"] = train_seconds
    write_json(run_dir / "eval.json", evals)
    curve = learning_curve(run_dir, int(params["steps"]), int(params["curve_points"]),
                           float(params["success_threshold"]))
    metrics.update(curve.get("metrics", {}))
    out = {"metrics": metrics}
    if curve:
        out["curve"] = curve["curve"]
        # steps_to_success equals the budget both when reached at the last point and when never reached
        out["censoring"] = {"steps_to_success": {"budget": int(params["steps"]),
                                                 "reached": bool(curve["reached_success_threshold"])}}
    return out


TRIAL_KINDS: dict[str, TrialKind] = {
    "train-eval": TrialKind(
        name="train-eval", function=train_eval_trial,
        params={"agent": REQUIRED, "env": REQUIRED, "seed": 0, "steps": 10_000, "episodes": 20,
                "eval_seed": 10_000, "demos": None, "env_kwargs": {}, "agent_kwargs": {}, "eval_variants": {},
                "curve_points": 20, "success_threshold": 0.5},
        metrics=("success_rate", "mean_return", "std_return", "mean_length", "train_seconds", "eval_seconds",
                 "train_success", "final_train_success", "steps_to_success", "success_auc", "stopped_at",
                 "actor_drift", "critic_drift")),
}



def _mppi_episode_trial(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from symgym.learn.bench.mppi_power import episode_trial  # lazy: the bench module imports the sweep engine

    return episode_trial(params, run_dir)


def _mppi_kind() -> TrialKind:
    from symgym.learn.bench import mppi_power

    return TrialKind(name="mppi-episode", function=_mppi_episode_trial, params=dict(mppi_power.PARAMS),
                     metrics=mppi_power.METRICS)


TRIAL_KINDS["mppi-episode"] = _mppi_kind()  # one paired MPPI episode per trial (learn/bench/mppi_power.py)


def run_trial(trial: dict[str, Any]) -> dict[str, Any]:
    """Run one expanded trial (see ``symgym.learn.evidence.sweep.Trial.as_dict``); write and return its summary."""
    from symgym.learn.evidence import provenance

    kind = TRIAL_KINDS[trial["kind"]]
    run_dir = Path(trial["run_dir"])
    # the code about to run (hashed once per process); which of its files the trial used is known at the end
    provenance.snapshot()
    start = time.perf_counter()
    out = kind.function(dict(trial["params"]), run_dir)
    metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out["metrics"].items()}
    summary = {"sweep": trial["sweep"], "key": trial["key"], "kind": trial["kind"], "labels": trial["labels"],
               "params": {k: v for k, v in trial["params"].items() if k != "cache"}, "metrics": metrics,
               "wall_s": round(time.perf_counter() - start, 3), "run_dir": str(run_dir),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "provenance": provenance.trial_provenance()}
    for extra in ("curve", "censoring"):
        if extra in out:
            summary[extra] = out[extra]
    write_json(run_dir / "summary.json", summary)
    return summary
