"""``symgym bench transporter``: oracle success per task, then Transporter vs equivariant Transporter vs
Keyframe Transporter trained by imitation on 1 and 10 oracle demonstrations, as the sweep ``specs/transporter.yaml``.

Budget (stated because the machine is a loaded 2-core CPU box): every agent gets the same number of gradient
steps (batch 1, Adam) whatever the number of demos -- 250, except stacking, whose demos hold three
pick-and-places each and which gets 500 -- and is evaluated on held-out seeds (10_000 + 1000 * trial seed, ...)
that no demonstration used. Five trial seeds; each seed draws its own demonstrations (episode seeds
1000 * seed, ...) and its own network initialisation. The sweep resumes; its claims form the ``evidence`` list.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

TASKS = ("TabletopBlockInsertion-v0", "TabletopPlaceRedInGreen-v0", "TabletopStacking-v0")
AGENTS = ("transporter", "equi-transporter", "keyframe-transporter")
EVAL_SEED = 10_000


def oracle_success(env_id: str, episodes: int, seed: int = 0) -> dict:
    """The scripted oracle's success rate (the ceiling imitation can reach) through the shared episode loop."""
    from symgym.learn.run.episodes import run_episode
    from symgym.learn.run.runs import make_env

    env = make_env(env_id)
    start = time.perf_counter()
    eps = [run_episode(env, lambda _: env.unwrapped.oracle_action(), seed + i) for i in range(episodes)]
    env.close()
    return {"episodes": episodes, "success_rate": float(np.mean([e.success for e in eps])),
            "mean_reward": float(np.mean([e.total_reward for e in eps])),
            "seconds_per_episode": (time.perf_counter() - start) / episodes}


def evaluate_agent(agent, env_id: str, episodes: int, seed: int = EVAL_SEED) -> dict:
    """Success rate (and its standard error) on held-out seeds, through ``symgym.learn.run.evaluate``."""
    from symgym.learn.run.evaluate import evaluate

    res = evaluate(agent, env_id, episodes=episodes, seed=seed, progress=False)
    p = res.success_rate
    return {"success_rate": p, "success_stderr": float(np.sqrt(p * (1 - p) / episodes)),
            "mean_reward": res.mean_return, "episodes": episodes}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    from symgym.learn.evidence.report import sweep_and_report

    oracle = {env_id: oracle_success(env_id, 10 if quick else 100, seed) for env_id in TASKS}
    results = sweep_and_report("transporter", out_dir, quick=quick, seed=seed)
    results["oracle"] = oracle
    return results
