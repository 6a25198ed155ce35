"""``symgym bench transporter``: oracle success per task, then Transporter vs equivariant Transporter vs
Keyframe Transporter trained on 1, 10 and 100 oracle demonstrations (the same gradient-step budget for every
demo count, so 100 demos means more varied samples, not more training).

Budget (stated because the machine is a loaded 2-core CPU box): every agent gets the same number of
gradient steps (batch 1, Adam) whatever the number of demos -- 250, except stacking, whose demos hold three
pick-and-places each and which gets 500 -- and is evaluated on held-out seeds
(10_000+) that no demonstration used. Training seeds are 0, 1, ... (the first successful oracle episodes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from learn.io import save_figure

TASKS = ("TabletopBlockInsertion-v0", "TabletopPlaceRedInGreen-v0", "TabletopStacking-v0")
AGENTS = ("transporter", "equi-transporter", "keyframe-transporter")
EVAL_SEED = 10_000


@dataclass
class BenchConfig:
    oracle_episodes: int = 100
    demo_counts: tuple[int, ...] = (1, 10, 100)
    train_steps: int = 250
    eval_episodes: int = 50
    #: per-task overrides of ``train_steps`` (same for every agent on that task)
    task_steps: dict[str, int] = field(default_factory=lambda: {"TabletopStacking-v0": 500})

    @classmethod
    def quick(cls) -> "BenchConfig":
        return cls(oracle_episodes=10, demo_counts=(1,), train_steps=40, eval_episodes=5, task_steps={})

    def steps_for(self, env_id: str) -> int:
        return int(self.task_steps.get(env_id, self.train_steps))


def rollout(env, policy, seed: int) -> tuple[bool, float]:
    obs, _ = env.reset(seed=seed)
    done, total, info = False, 0.0, {"is_success": False}
    while not done:
        action = policy(obs)
        if action is None:
            break
        obs, r, term, trunc, info = env.step(action)
        total += r
        done = term or trunc
    return bool(info["is_success"]), total


def oracle_success(env_id: str, episodes: int, seed: int = 0) -> dict:
    from learn.runs import make_env

    env = make_env(env_id)
    start = time.perf_counter()
    runs = [rollout(env, lambda _: env.unwrapped.oracle_action(), seed + i)
            for i in tqdm(range(episodes), desc=f"oracle {env_id}", leave=False)]
    env.close()
    return {"episodes": episodes, "success_rate": float(np.mean([s for s, _ in runs])),
            "mean_reward": float(np.mean([r for _, r in runs])),
            "seconds_per_episode": (time.perf_counter() - start) / episodes}


def evaluate_agent(agent, env_id: str, episodes: int) -> dict:
    from learn.runs import make_env

    env = make_env(env_id)
    runs = [rollout(env, agent.act, EVAL_SEED + i) for i in range(episodes)]
    env.close()
    succ = np.array([s for s, _ in runs], float)
    return {"success_rate": float(succ.mean()), "success_stderr": float(succ.std() / np.sqrt(len(succ))),
            "mean_reward": float(np.mean([r for _, r in runs])), "episodes": episodes}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0,
        config: BenchConfig | None = None) -> dict:
    from agents import agent_class
    from agents.transporter import TransporterConfig, load_demos
    from learn.demos import collect_demos

    torch.set_num_threads(1)
    cfg = config or (BenchConfig.quick() if quick else BenchConfig())
    out_dir = Path(out_dir)
    results: dict = {"budget": {"train_steps": cfg.train_steps, "task_steps": dict(cfg.task_steps),
                                "batch": TransporterConfig().batch,
                                "eval_episodes": cfg.eval_episodes, "eval_seeds": f"{EVAL_SEED}+",
                                "demo_counts": list(cfg.demo_counts)},
                     "oracle": {}, "agents": {}}
    for env_id in TASKS:
        results["oracle"][env_id] = oracle_success(env_id, cfg.oracle_episodes)
        demo_file = collect_demos(env_id, n=max(cfg.demo_counts), out=out_dir / "cache" / f"demos-{env_id}.npz",
                                  seed=seed, progress=False)
        all_demos = load_demos(demo_file)
        episode = np.load(demo_file)["episode"]
        for n in cfg.demo_counts:
            demos = [d for d, e in zip(all_demos, episode) if e < n]
            for name in AGENTS:
                agent = agent_class(name)(TransporterConfig(), seed=seed)
                agent.learn(demos, cfg.steps_for(env_id), progress=False)
                res = evaluate_agent(agent, env_id, cfg.eval_episodes)
                res.update(train_time_s=round(agent.train_time_s, 1), demos=n, transitions=len(demos),
                           train_steps=cfg.steps_for(env_id))
                results["agents"].setdefault(env_id, {}).setdefault(name, {})[str(n)] = res
                print(f"{env_id} {name} {n} demos: success {res['success_rate']:.2f} "
                      f"reward {res['mean_reward']:.2f} ({res['train_time_s']} s training)", flush=True)
    results["summary"] = summarise(results)
    plot(results, out_dir / "transporter.png")
    return results


def summarise(results: dict) -> dict:
    """Mean success over tasks per agent and demo count, and the equivariant-minus-plain gaps."""
    out: dict = {}
    for name in AGENTS:
        per_n: dict = {}
        for task in results["agents"].values():
            for n, r in task.get(name, {}).items():
                per_n.setdefault(n, []).append(r["success_rate"])
        out[name] = {n: float(np.mean(v)) for n, v in per_n.items()}
    for name in AGENTS[1:]:
        out[f"{name}_minus_transporter"] = {n: out[name][n] - out["transporter"][n] for n in out[name]}
    return out


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results["agents"])
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(4 * (len(tasks) + 1), 3.4))
    for ax, task in zip(axes, tasks):
        for i, name in enumerate(AGENTS):
            rows = results["agents"][task][name]
            ns = sorted(rows, key=int)
            ax.errorbar([int(n) for n in ns], [rows[n]["success_rate"] for n in ns],
                        yerr=[rows[n]["success_stderr"] for n in ns], marker="o", capsize=3, label=name,
                        color=f"C{i}")
        ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="demonstrations", ylabel="success rate",
               title=task.replace("Tabletop", "").replace("-v0", ""))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    oracle = results["oracle"]
    axes[-1].bar(range(len(oracle)), [v["success_rate"] for v in oracle.values()], color="C7")
    axes[-1].set_xticks(range(len(oracle)), [k.replace("Tabletop", "").replace("-v0", "") for k in oracle],
                        rotation=20, fontsize=8)
    axes[-1].set(ylim=(0, 1.05), title=f"oracle ({next(iter(oracle.values()))['episodes']} seeds)",
                 ylabel="success rate")
    extra = "".join(f", {k.replace('Tabletop', '').replace('-v0', '')} {v}"
                    for k, v in results["budget"].get("task_steps", {}).items())
    fig.suptitle(f"Transporter agents, {results['budget']['train_steps']} gradient steps each{extra}, "
                 f"{results['budget']['eval_episodes']} held-out episodes")
    fig.tight_layout()
    return save_figure(fig, path)
