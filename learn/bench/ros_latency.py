"""``symgym bench ros-latency``: control-step latency through rosbridge twins vs stepping the sim directly, per phase.

Each twin runs in its own process (as a robot would), serving on 127.0.0.1. Each control step sends the same
action to ``RosArm-v0`` (publish the command, wait for newer stamped readings on every topic) and to a local sim
env; both step times are measured in the same loop, so machine load hits both alike, and because the twins are
lock-step the two observation streams must agree exactly, which is checked and reported. The policy is the
scripted linear SAC run from ``learn.deploy.deploy.write_linear_policy_run`` (its inference time reported separately).

Twins: the SymPush twin (TCP_NODELAY, as before); the same twin in rosbridge's wire behaviour (``--nagle``: Nagle
on, one frame per reading) with the client's Linux TCP_QUICKACK fix on, and with it off (the ~40 ms delayed-ACK
stall a genuine rosbridge showed); and the Panda twin (``--robot panda``: MoveIt Servo TwistStamped, /tf,
/joint_states) against a direct PandaPush-v0. Client-side phases per step: ``publish_s`` (encode and send the
command), ``wait_readings_s`` (until every topic has a newer reading: network plus the twin's simulation) and
``observation_s`` (assembling the observation). Finally the ``make demo`` policy (``runs/demo``; the scripted run
if absent) is deployed through the Panda twin for ``DEPLOY_EPISODES`` episodes and compared with simulation.
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

import symgym.envs  # noqa: F401
from symgym.envs.ros import quickack_supported
from symgym.envs.ros_config import CONFIG_DIR, DEFAULT_CONFIG, load_config
from symgym.learn.io import save_figure

ROOT = Path(__file__).resolve().parents[2]
PANDA_CONFIG = CONFIG_DIR / "panda_servo.yaml"
DEPLOY_EPISODES = 20


def _start_twin(extra: tuple[str, ...] = (), timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "symgym.learn.deploy.twin", "--port", "0", *extra], cwd=ROOT,
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
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}


def measure_twin(agent, config: dict, sim_id: str, n_steps: int, twin_args: tuple[str, ...] = (),
                 quickack: bool = True, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    """Step ``RosArm-v0`` against a twin subprocess and ``sim_id`` locally with the same actions."""
    cfg = dict(config, control_rate_hz=10_000)   # pacing would only add sleep: measure the bridge itself
    proc, url = _start_twin(twin_args)
    bridge_s, direct_s, policy_s, max_diff, episodes = [], [], [], 0.0, 0
    phases: dict[str, list[float]] = {}
    try:
        ros = gym.make("RosArm-v0", config=cfg, url=url, quickack=quickack)
        sim = gym.make(sim_id)
        while len(bridge_s) < n_steps:
            ep_seed = 10_000 + seed * 1_000 + episodes
            obs, _ = ros.reset(seed=ep_seed)
            sim.reset(seed=ep_seed)
            episodes += 1
            done = False
            while not done and len(bridge_s) < n_steps:
                t0 = time.perf_counter()
                action = agent.act(obs)
                t1 = time.perf_counter()
                obs, _, term, trunc, info = ros.step(action)
                t2 = time.perf_counter()
                sim_obs, _, sim_term, sim_trunc, _ = sim.step(action)
                t3 = time.perf_counter()
                policy_s.append(t1 - t0)
                bridge_s.append(t2 - t1)
                direct_s.append(t3 - t2)
                for name, value in info["latency_phases_s"].items():
                    phases.setdefault(name, []).append(value)
                max_diff = max(max_diff, float(np.abs(obs - sim_obs).max()))
                done = term or trunc or sim_term or sim_trunc
        ros.close()
        sim.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bridge, direct = np.array(bridge_s), np.array(direct_s)
    b, d = _stats(bridge), _stats(direct)
    return {"twin": f"sim-robot {' '.join(twin_args)}".strip(), "sim": sim_id, "client_quickack": quickack,
            "steps": len(bridge), "episodes": episodes, "bridge_step": b, "direct_step": d,
            "phases": {name: _stats(np.array(v)) for name, v in phases.items()},
            "policy_act": _stats(np.array(policy_s)),
            "ratio_median_bridge_over_direct": b["median_ms"] / d["median_ms"],
            "ratio_p99_bridge_over_direct": b["p99_ms"] / d["p99_ms"],
            "max_obs_difference_bridge_vs_direct": max_diff}, bridge, direct


def deploy_through_panda_twin(agent_run: Path, episodes: int) -> dict:
    """Deploy ``agent_run`` through the Panda twin (``--robot panda``) and compare with PandaPush-v0 in simulation."""
    from symgym.learn.deploy.deploy import deploy
    from symgym.learn.run.episodes import run_episode
    from symgym.learn.run.runs import load_run

    cfg = yaml.safe_load(PANDA_CONFIG.read_text())
    cfg.update({"control_rate_hz": 10_000, "deploy": {"episodes": episodes, "seed": 10_000}})
    proc, url = _start_twin(("--robot", "panda"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = deploy(agent_run, url, config=cfg, yes=True, log=Path(tmp) / "deploy.jsonl")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    agent, _ = load_run(agent_run)
    env = gym.make("PandaPush-v0")
    sim = [run_episode(env, agent.act, 10_000 + i).success for i in range(episodes)]
    deployed = [bool(e["success"]) for e in result.episodes]
    return {"run": str(agent_run), "config": "envs/configs/panda_servo.yaml", "status": result.status,
            "episodes": len(deployed), "first_seed": 10_000, "deployed_success_rate": float(np.mean(deployed)),
            "simulated_success_rate": float(np.mean(sim)), "same_outcome_every_episode": deployed == sim,
            "deployed_successes": deployed}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    from symgym.learn.deploy.deploy import write_linear_policy_run
    from symgym.learn.run.runs import load_run

    torch.set_num_threads(1)
    n_steps = 300 if quick else 2_000
    sympush_cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    panda_cfg = yaml.safe_load(PANDA_CONFIG.read_text())
    nominal_rate = load_config(sympush_cfg).control_rate_hz
    with tempfile.TemporaryDirectory() as tmp:
        linear = write_linear_policy_run(Path(tmp) / "linear", seed=seed)
        agent, _ = load_run(linear)
        twins = {}
        twins["sympush"], bridge, direct = measure_twin(agent, sympush_cfg, "SymPush-v0", n_steps, seed=seed)
        twins["sympush_nagle_quickack"], nagle_bridge, _ = measure_twin(
            agent, sympush_cfg, "SymPush-v0", n_steps, ("--nagle",), seed=seed)
        twins["sympush_nagle_no_quickack"], stalled, _ = measure_twin(
            agent, sympush_cfg, "SymPush-v0", min(n_steps, 300), ("--nagle",), quickack=False, seed=seed)
        twins["panda"], panda_bridge, panda_direct = measure_twin(
            agent, panda_cfg, "PandaPush-v0", n_steps // 2, ("--robot", "panda"), seed=seed)
        demo = Path("runs/demo")
        deploy_run = demo if (demo / "config.json").is_file() and not quick else linear
        panda_deploy = deploy_through_panda_twin(deploy_run, 3 if quick else DEPLOY_EPISODES)
    main = twins["sympush"]
    results = {
        "env": "RosArm-v0 -> sim-robot twin (SymPush-v0), separate process, ws://127.0.0.1",
        **{k: v for k, v in main.items() if k not in ("twin", "sim")},
        "nominal_control_period_ms": 1e3 / nominal_rate,
        "bridge_p99_fraction_of_period": main["bridge_step"]["p99_ms"] / (1e3 / nominal_rate),
        "client_quickack_supported": quickack_supported(),
        "twins": twins,
        "panda_deploy": panda_deploy,
    }
    _plot({"SymPush twin": bridge, "SymPush twin, Nagle + QUICKACK": nagle_bridge,
           "SymPush twin, Nagle, no QUICKACK": stalled, "Panda twin": panda_bridge},
          {"direct SymPush-v0": direct, "direct PandaPush-v0": panda_direct}, results, out_dir / "ros-latency.png")
    return results


def _plot(bridges: dict[str, np.ndarray], directs: dict[str, np.ndarray], results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    every = np.concatenate(list(bridges.values()) + list(directs.values())) * 1e3
    bins = np.geomspace(max(every.min() * 0.8, 1e-3), every.max() * 1.2, 70)
    series = [(k, v, f"C{i}") for i, (k, v) in enumerate(bridges.items())]
    series += [(k, v, c) for (k, v), c in zip(directs.items(), ("C7", "C8"))]
    for label, data, color in series:
        ms = data * 1e3
        ax.hist(ms, bins=bins, alpha=0.5, color=color, label=f"{label} (median {np.median(ms):.2g} ms)")
        ax.axvline(np.median(ms), color=color, linewidth=1)
    ax.axvline(results["nominal_control_period_ms"], color="C3", linewidth=1.5, linestyle="--",
               label=f"control period ({results['nominal_control_period_ms']:g} ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time per control step [ms] (lines: medians)")
    ax.set_ylabel("steps")
    ax.set_title("RosArm-v0 step latency through rosbridge twins vs direct simulation")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    save_figure(fig, path)
