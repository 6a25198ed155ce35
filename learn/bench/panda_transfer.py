"""``symgym bench panda-transfer``: a SymPush SAC policy on the Franka Panda, zero-shot and after a short fine-tune.

The source is the ``make demo`` policy (``symgym train --agent sac --env SymPush-v0 --steps 30000 --seed 0 --out
runs/demo``; trained here with exactly that config when ``runs/demo`` is missing). It is evaluated on SymPush-v0
and on PandaPush-v0 over the same 100 evaluation seeds (10000...), then fine-tuned on PandaPush-v0 (SB3 SAC
loaded from the run, training continued on the arm env with a fresh replay buffer; ``FINE_TUNE_STEPS`` env
steps) and evaluated again. The fine-tuned policy is saved as a run (``runs/demo-panda-ft``) that ``symgym eval``
and ``symgym deploy --config envs/configs/panda_servo.yaml`` take.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SOURCE_RUN = Path("runs/demo")
FINE_TUNED_RUN = Path("runs/demo-panda-ft")
FINE_TUNE_STEPS = 5_000
EVAL_SEED = 10_000


def episode_outcomes(agent, env_id: str, episodes: int, seed: int = EVAL_SEED) -> dict[str, Any]:
    """Per-episode success and return of ``agent`` (deterministic) on ``env_id`` for seeds ``seed...``."""
    from symgym.learn.run.episodes import run_episode
    from symgym.learn.run.runs import make_env

    env = make_env(env_id)
    agent.attach(env)
    runs = [run_episode(env, lambda obs: agent.act(obs, deterministic=True), seed + i, on_reset=agent.reset)
            for i in range(episodes)]
    env.close()
    successes = [float(ep.success) for ep in runs]
    returns = [ep.total_reward for ep in runs]
    return {"env": env_id, "episodes": episodes, "first_seed": seed, "success_rate": float(np.mean(successes)),
            "mean_return": float(np.mean(returns)), "successes": successes, "returns": returns}


def source_run(quick: bool) -> tuple[Path, dict]:
    """The ``make demo`` run (trained now, with the demo's config, if absent); quick mode trains a tiny stand-in."""
    from symgym.agents import TrainConfig
    from symgym.learn.run.training import train

    if quick:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="panda-transfer-")) / "demo"
        config = TrainConfig(agent="sac", env="SymPush-v0", steps=300, seed=0, out=str(out),
                             agent_kwargs={"learning_starts": 100, "net_arch": [32, 32]})
        return train(config, progress=False), {"trained": "quick stand-in", **config.to_json()}
    if not (SOURCE_RUN / "config.json").is_file():
        train(TrainConfig(agent="sac", env="SymPush-v0", steps=30_000, seed=0, out=str(SOURCE_RUN)), progress=False)
    return SOURCE_RUN, {"trained": "make demo (symgym train --agent sac --env SymPush-v0 --steps 30000 --seed 0)"}


def fine_tune(run_dir: Path, out: Path, steps: int, seed: int = 0) -> Path:
    """Continue the run's SAC on PandaPush-v0 for ``steps`` env steps; save the result as a run directory."""
    import torch

    from symgym.agents import TrainConfig
    from symgym.learn.io import write_json
    from symgym.learn.run.runs import load_run, make_env, plot_learning_curve

    torch.manual_seed(seed)
    agent, config = load_run(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env("PandaPush-v0", seed=seed, monitor_dir=out)
    model = agent.model
    # a fresh replay buffer: collect some arm transitions before the first update
    model.learning_starts = int(model.num_timesteps) + min(1_000, steps // 4)
    agent.learn(env, steps)
    env.close()
    ft = TrainConfig(agent=config.agent, env="PandaPush-v0", steps=steps, seed=seed, out=str(out),
                     agent_kwargs=dict(config.agent_kwargs))
    write_json(out / "config.json", {**ft.to_json()})
    write_json(out / "fine_tune.json", {"source_run": str(run_dir), "source_env": config.env, "steps": steps})
    agent.save(out)
    plot_learning_curve(out, title=f"fine-tune on PandaPush-v0 from {run_dir}")
    return out


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    import torch

    from symgym.learn.evidence.ledger import claim
    from symgym.learn.run.runs import load_run

    torch.set_num_threads(1)
    episodes = 5 if quick else 100
    steps = 300 if quick else FINE_TUNE_STEPS
    src, src_info = source_run(quick)
    agent, _ = load_run(src)
    on_sympush = episode_outcomes(agent, "SymPush-v0", episodes)
    zero_shot = episode_outcomes(agent, "PandaPush-v0", episodes)
    ft_dir = fine_tune(src, (src.parent / "demo-panda-ft") if quick else FINE_TUNED_RUN, steps, seed)
    ft_agent, _ = load_run(ft_dir)
    fine_tuned = episode_outcomes(ft_agent, "PandaPush-v0", episodes)
    seeds = list(range(EVAL_SEED, EVAL_SEED + episodes))
    evidence = [
        claim("the SymPush SAC policy succeeds on the Panda (zero-shot) as often as on SymPush", "success_rate",
              "PandaPush-v0 zero-shot", "SymPush-v0", zero_shot["successes"], on_sympush["successes"],
              method_seeds=seeds, baseline_seeds=seeds, n_episodes=episodes),
        claim(f"fine-tuning {steps} steps on PandaPush-v0 raises the policy's success there", "success_rate",
              "PandaPush-v0 fine-tuned", "PandaPush-v0 zero-shot", fine_tuned["successes"], zero_shot["successes"],
              method_seeds=seeds, baseline_seeds=seeds, n_episodes=episodes),
    ]
    results = {"source_run": str(src), "source": src_info, "fine_tuned_run": str(ft_dir), "fine_tune_steps": steps,
               "sympush": on_sympush, "panda_zero_shot": zero_shot, "panda_fine_tuned": fine_tuned,
               "evidence": evidence}
    _plot(results, out_dir / "panda-transfer.png")
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symgym.learn.io import save_figure

    rows = [("SymPush-v0", results["sympush"]), ("PandaPush-v0\nzero-shot", results["panda_zero_shot"]),
            (f"PandaPush-v0\n+{results['fine_tune_steps']} steps", results["panda_fine_tuned"])]
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    rates = [r["success_rate"] for _, r in rows]
    n = rows[0][1]["episodes"]
    err = [1.96 * np.sqrt(max(p * (1 - p), 1e-9) / n) for p in rates]
    ax.bar(range(3), rates, yerr=err, color=["C7", "C0", "C2"], capsize=4)
    ax.set_xticks(range(3), [name for name, _ in rows])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"success rate ({n} seeds)")
    ax.set_title("SymPush SAC policy on the Franka Panda")
    fig.tight_layout()
    save_figure(fig, path)
