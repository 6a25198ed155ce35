"""``symgym bench ros-latency``: control-step latency through rosbridge vs stepping the sim directly.

The digital twin runs in its own process (as a robot would), serving on 127.0.0.1. Each control step
sends the same action to ``RosArm-v0`` (publish a Twist, wait for the next stamped readings on all three
topics) and to a local ``SymPush-v0``; the two step times are measured in the same loop, so machine load
hits both alike. Because the twin is lock-step, the two observation streams must also agree exactly,
which the benchmark checks and reports. The policy is the scripted linear SAC run from
``learn.deploy.write_linear_policy_run`` (its inference time is reported separately).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml

import envs  # noqa: F401
from envs.ros_config import DEFAULT_CONFIG, load_config
from learn.io import save_figure

ROOT = Path(__file__).resolve().parents[2]


def _start_twin(timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "learn.sim_robot", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    line = proc.stdout.readline()
    if "ws://127.0.0.1:" not in line or time.monotonic() - start > timeout:
        proc.kill()
        raise RuntimeError(f"sim-robot did not start: {line!r} {proc.stderr.read()[-500:]}")
    url = line.split(" listening on ")[1].split()[0]
    return proc, url


def _stats(x_s: np.ndarray) -> dict:
    ms = np.asarray(x_s) * 1e3
    return {"median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "max_ms": float(ms.max())}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    from learn.cli import load_run
    from learn.deploy import write_linear_policy_run

    torch.set_num_threads(1)
    n_steps = 300 if quick else 2_000
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    nominal_rate = load_config(cfg).control_rate_hz
    # pacing would only add sleep: measure the bridge itself, as fast as the twin answers
    cfg["control_rate_hz"] = 10_000
    with tempfile.TemporaryDirectory() as tmp:
        agent, _ = load_run(write_linear_policy_run(Path(tmp) / "linear", seed=seed))
    proc, url = _start_twin()
    bridge_s, direct_s, policy_s, max_diff = [], [], [], 0.0
    episodes = 0
    try:
        ros = gym.make("RosArm-v0", config=cfg, url=url)
        sim = gym.make("SymPush-v0")
        while len(bridge_s) < n_steps:
            ep_seed = 10_000 + seed * 1_000 + episodes
            obs, _ = ros.reset(seed=ep_seed)
            sim_obs, _ = sim.reset(seed=ep_seed)
            episodes += 1
            done = False
            while not done and len(bridge_s) < n_steps:
                t0 = time.perf_counter()
                action = agent.act(obs)
                t1 = time.perf_counter()
                obs, _, term, trunc, _ = ros.step(action)
                t2 = time.perf_counter()
                sim_obs, _, sim_term, sim_trunc, _ = sim.step(action)
                t3 = time.perf_counter()
                policy_s.append(t1 - t0)
                bridge_s.append(t2 - t1)
                direct_s.append(t3 - t2)
                max_diff = max(max_diff, float(np.abs(obs - sim_obs).max()))
                done = term or trunc or sim_term or sim_trunc
        ros.close()
        sim.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bridge, direct = np.array(bridge_s), np.array(direct_s)
    b, d = _stats(bridge), _stats(direct)
    results = {
        "env": "RosArm-v0 -> sim-robot twin (SymPush-v0), separate process, ws://127.0.0.1",
        "steps": len(bridge),
        "episodes": episodes,
        "bridge_step": b,
        "direct_step": d,
        "policy_act": _stats(np.array(policy_s)),
        "ratio_median_bridge_over_direct": b["median_ms"] / d["median_ms"],
        "ratio_p99_bridge_over_direct": b["p99_ms"] / d["p99_ms"],
        "nominal_control_period_ms": 1e3 / nominal_rate,
        "bridge_p99_fraction_of_period": b["p99_ms"] / (1e3 / nominal_rate),
        "max_obs_difference_bridge_vs_direct": max_diff,
    }
    _plot(bridge, direct, results, out_dir / "ros-latency.png")
    return results


def _plot(bridge: np.ndarray, direct: np.ndarray, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    lo = max(min(bridge.min(), direct.min()) * 1e3 * 0.8, 1e-3)
    hi = max(bridge.max(), direct.max()) * 1e3 * 1.2
    bins = np.geomspace(lo, hi, 60)
    for data, label, color in ((direct, "direct SymPush-v0 step", "C7"), (bridge, "RosArm-v0 step via rosbridge", "C0")):
        ms = data * 1e3
        ax.hist(ms, bins=bins, alpha=0.6, color=color, label=label)
        for q, style in ((50, "-"), (99, "--")):
            ax.axvline(np.percentile(ms, q), color=color, linestyle=style, linewidth=1)
    ax.axvline(results["nominal_control_period_ms"], color="C3", linewidth=1.5,
               label=f"control period ({results['nominal_control_period_ms']:g} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("time per control step [ms] (solid: median, dashed: p99)")
    ax.set_ylabel("steps")
    ax.set_title(f"bridge / direct: median x{results['ratio_median_bridge_over_direct']:.0f}, "
                 f"p99 x{results['ratio_p99_bridge_over_direct']:.0f}  ({results['steps']} steps)")
    ax.legend(fontsize=8, loc="upper center")
    fig.tight_layout()
    save_figure(fig, path)
