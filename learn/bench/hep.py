"""``symgym bench hep``: success rate vs number of demonstrations for HEP, its ablations and flat BC.

For each closed-loop task and each demo count ``n`` (nested subsets of one pool of oracle demos) this trains,
in the same run and from the same demos:

    hep            C4-equivariant heatmap keypose + SO(2)-equivariant low level in the keypose frame
    hep_no_ft      the same high level (shared weights), low level in the world frame (keypose as an input)
    hep_no_eq      plain CNN + plain MLP, with frame transfer
    flat_bc        one MLP, vector observation -> action chunk (no hierarchy), similar parameter count

and evaluates each on held-out seeds in the demonstrations' workspace (``demo``) and in randomly rotated and
translated workspaces never seen in the demos (``transformed``). Writes ``hep.json`` (via the bench runner)
and ``hep.png``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from agents.hep import FlatBCAgent, HEPAgent, plan_vector, transform_plan
from envs.closed_loop import collect_closed_loop_demos
from equivariance import SE2Element, Symmetry, equivariance_error

METHODS = ("hep", "hep_no_ft", "hep_no_eq", "flat_bc")
WORKSPACES = ("demo", "transformed")
EVAL_SEED = 10_000


def _subset(data: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    keep = data["episode"] < n
    return {k: v[keep] for k, v in data.items() if k != "seeds"}


def success_rate(agent, env_id: str, workspace: str, episodes: int, seed: int = EVAL_SEED) -> float:
    env = gym.make(env_id, workspace=workspace)
    wins = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        agent.reset()
        done, info = False, {}
        while not done:
            obs, _, terminated, truncated, info = env.step(agent.act(obs))
            done = terminated or truncated
        wins += bool(info.get("is_success"))
    env.close()
    return wins / episodes


def train_methods(data: dict[str, np.ndarray], seed: int, high_steps: int, low_steps: int) -> tuple[dict, dict]:
    """The four agents trained on ``data``; returns (agents, train seconds)."""
    agents, seconds = {}, {}
    t = time.perf_counter()
    agents["hep"] = HEPAgent(seed=seed, high_steps=high_steps, low_steps=low_steps)
    agents["hep"].learn(data)
    seconds["hep"] = time.perf_counter() - t
    t = time.perf_counter()
    agents["hep_no_ft"] = HEPAgent(seed=seed, frame_transfer=False, high_steps=high_steps, low_steps=low_steps)
    agents["hep_no_ft"].learn(data, high_from=agents["hep"])
    seconds["hep_no_ft"] = time.perf_counter() - t
    t = time.perf_counter()
    agents["hep_no_eq"] = HEPAgent(seed=seed, equivariant=False, high_steps=high_steps, low_steps=low_steps)
    agents["hep_no_eq"].learn(data)
    seconds["hep_no_eq"] = time.perf_counter() - t
    t = time.perf_counter()
    agents["flat_bc"] = FlatBCAgent(seed=seed, low_steps=low_steps)
    agents["flat_bc"].learn(data)
    seconds["flat_bc"] = time.perf_counter() - t
    return agents, seconds


def policy_equivariance_error(agent: HEPAgent, env_id: str, seed: int) -> float:
    """Max relative error of plan(g.obs) vs g.plan(obs) over random C4 rotations + whole-pixel translations."""
    env = gym.make(env_id)
    sym = env.unwrapped.symmetry
    out_sym = Symmetry(group=sym.group, obs=sym.obs, action=transform_plan)
    rng = np.random.default_rng(seed)
    pix = agent.cfg.pixel
    elements = [SE2Element(np.pi / 2 * rng.integers(1, 4), pix * rng.integers(-3, 4), pix * rng.integers(-3, 4))
                for _ in range(4)]
    inputs = []
    for s in range(3):
        obs, _ = env.reset(seed=EVAL_SEED + 500 + s)
        for _ in range(3 + 4 * s):
            obs, *_ = env.step(env.unwrapped.oracle_action())
        inputs.append(obs)
    agent.reset()
    return equivariance_error(lambda o: plan_vector(agent, o), out_sym, inputs, elements)


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict[str, Any]:
    torch.set_num_threads(1)
    env_ids = ["HepPickPlace-v0", "HepPushToTarget-v0"]
    demo_counts = [1, 5] if quick else [1, 5, 10, 20]
    episodes = 6 if quick else 20
    high_steps, low_steps = (120, 800) if quick else (200, 2000)
    results: dict[str, Any] = {"methods": list(METHODS), "demo_counts": demo_counts, "episodes_per_point": episodes,
                               "workspaces": {"demo": "layout distribution of the demos, held-out seeds",
                                              "transformed": "held-out seeds, layout rotated by a random angle "
                                                             "and shifted up to 0.1 m"},
                               "tasks": {}}
    bar = tqdm(total=len(env_ids) * len(demo_counts), desc="bench hep", unit="cfg")
    for env_id in env_ids:
        pool = collect_closed_loop_demos(env_id, max(demo_counts), seed=seed)
        task: dict[str, Any] = {"success": {m: {w: [] for w in WORKSPACES} for m in METHODS},
                                "train_seconds": {m: [] for m in METHODS}, "frames": []}
        for n in demo_counts:
            data = _subset(pool, n)
            task["frames"].append(int(len(data["action"])))
            agents, seconds = train_methods(data, seed, high_steps, low_steps)
            for m in METHODS:
                task["train_seconds"][m].append(round(seconds[m], 1))
                for w in WORKSPACES:
                    task["success"][m][w].append(success_rate(agents[m], env_id, w, episodes))
            bar.update(1)
        task["parameters"] = {m: agents[m].n_parameters() for m in METHODS}
        task["hep_policy_equivariance_error"] = policy_equivariance_error(agents["hep"], env_id, seed)
        task["hep_no_eq_policy_equivariance_error"] = policy_equivariance_error(agents["hep_no_eq"], env_id, seed)
        results["tasks"][env_id] = task
    bar.close()
    results["equivariance_group"] = "rotations by multiples of 90 degrees x translations by whole pixels (0.02 m)"
    _plot(results, out_dir / "hep.png")
    return results


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from learn.io import save_figure

    tasks = results["tasks"]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.3 * len(tasks)), squeeze=False)
    labels = {"hep": "HEP", "hep_no_ft": "HEP w/o frame transfer", "hep_no_eq": "HEP w/o equivariance",
              "flat_bc": "flat BC"}
    for row, (env_id, task) in enumerate(tasks.items()):
        for col, w in enumerate(WORKSPACES):
            ax = axes[row, col]
            for m in results["methods"]:
                ax.plot(results["demo_counts"], task["success"][m][w], marker="o", label=labels[m])
            ax.set(xscale="log", xlabel="demonstrations", ylabel="success rate", ylim=(-0.03, 1.03),
                   title=f"{env_id}: {w} workspace")
            ax.set_xticks(results["demo_counts"], [str(n) for n in results["demo_counts"]])
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
