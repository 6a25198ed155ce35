"""``symgym replay LOG``: re-execute a deploy log's actions in the mirrored simulator and report the divergence.

Each logged episode restarts the simulator from the logged reset seed and applies the logged actions (what the
policy asked for; the simulator applies its own action clipping, as the twin does). The divergence is the largest
absolute difference between a logged observation and the simulator's, per episode and over the log. Through the
lock-step twin it is exactly 0.0; on hardware it measures the sim-to-real gap along the executed trajectory.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from symgym.learn.deploy.log import read_log


def replay_in_sim(path: str | Path) -> list[dict]:
    """Per episode: seed, steps, ``max_obs_error`` (the divergence) and both success flags."""
    import gymnasium as gym

    import symgym.envs  # noqa: F401

    records = read_log(path)
    if not records or records[0].get("event") != "start":
        raise ValueError(f"deploy log {path} does not begin with a start record")
    mirror = records[0].get("config", {}).get("mirrors")
    if mirror not in gym.registry:
        raise ValueError(f"deploy log {path}: its config mirrors {mirror!r}, which is not a registered env")
    env = gym.make(mirror)
    out, current = [], None
    try:
        for rec in records:
            if rec["event"] == "reset":
                sim_obs, _ = env.reset(seed=rec["seed"])
                current = {"episode": rec["episode"], "seed": rec["seed"], "steps": 0, "sim_success": False,
                           "log_success": False,
                           "max_obs_error": float(np.abs(sim_obs - np.asarray(rec["obs"], np.float32)).max())}
                out.append(current)
            elif rec["event"] == "step" and current is not None:
                sim_obs, _, _, _, info = env.step(np.asarray(rec["action"], np.float32))
                err = float(np.abs(sim_obs - np.asarray(rec["next_obs"], np.float32)).max())
                current.update(steps=current["steps"] + 1, sim_success=bool(info["is_success"]),
                               log_success=bool(rec["is_success"]),
                               max_obs_error=max(current["max_obs_error"], err))
    finally:
        env.close()
    return out


def replay_main(args) -> int:
    """Print one JSON line per episode and a summary; exit 1 if the divergence exceeds ``--tolerance``."""
    episodes = replay_in_sim(args.log)
    for row in episodes:
        print(json.dumps(row))
    divergence = max((r["max_obs_error"] for r in episodes), default=0.0)
    agree = sum(r["sim_success"] == r["log_success"] for r in episodes)
    print(f"replayed {len(episodes)} episode(s), {sum(r['steps'] for r in episodes)} steps in the simulator: "
          f"max observation divergence {divergence!r}, success agrees on {agree}/{len(episodes)}")
    if args.tolerance is not None and divergence > args.tolerance:
        print(f"symgym: divergence {divergence!r} exceeds --tolerance {args.tolerance!r}", file=sys.stderr)
        return 1
    return 0
