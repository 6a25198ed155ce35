"""``symgym bench sac``: sac vs equi-sac vs approx-sac on SymPush-v0 and SymPushWind-v0, as a sweep.

The grid, the budget (env steps, SAC hyper-parameters, matched widths) and the claims live in
``specs/sac.yaml``; this runs that sweep (resuming: finished trials are skipped), reports it with rliable
(IQM, bootstrap CIs, probability of improvement, performance profile, learning curves with CI bands) and adds,
for the seed-0 runs of the symmetric agents, the actor equivariance and critic invariance errors on D4 after
training (approx-sac's relaxed-weight error too), measured on the saved runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# the learning-curve helpers every train-eval trial uses (kept importable from here)
from symgym.learn.evidence.trials import _curve, _first_crossing  # noqa: F401

SYMMETRIC_AGENTS = ("equi-sac", "approx-sac")


def symmetry_errors(run_dir: str | Path) -> dict[str, float]:
    """Actor equivariance / critic invariance errors on D4 of a saved equi-sac or approx-sac run."""
    from symgym.agents.equi_sac import policy_symmetry_errors, relaxed_weight_errors
    from symgym.equivariance import DihedralGroup, Symmetry
    from symgym.equivariance.layers import restrict_rep
    from symgym.learn.run.runs import load_run, make_env

    agent, config = load_run(run_dir)
    d4 = DihedralGroup(4)
    env = make_env(config.env, **config.env_kwargs).unwrapped
    sym = Symmetry(d4, restrict_rep(env.symmetry.obs, d4), restrict_rep(env.symmetry.action, d4))
    obs = [env.reset(seed=500 + i)[0] for i in range(8)]
    out = policy_symmetry_errors(agent.model, sym, obs, d4.elements())
    if config.agent == "approx-sac":
        w = relaxed_weight_errors(agent.model.policy)
        out.update({"actor_relaxed_weight_error": w["actor"], "critic_relaxed_weight_error": w["critic"]})
    env.close()
    return {k: float(v) for k, v in out.items()}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict[str, Any]:
    from symgym.learn.evidence.report import sweep_and_report
    from symgym.learn.evidence.sweep import expand, load_spec

    results = sweep_and_report("sac", out_dir, quick=quick, seed=seed)
    spec = load_spec("sac", quick=quick)
    first_seed = min(spec.raw["grid"]["seed"]) + seed
    errors = {}
    for t in expand(spec, Path(out_dir)):
        done = (Path(t.run_dir) / "checkpoint.json").is_file() or (Path(t.run_dir) / "config.json").is_file()
        if t.labels["method"] in SYMMETRIC_AGENTS and t.labels["seed"] == first_seed and done:
            errors[f"{t.labels['method']} {t.labels['env']}"] = symmetry_errors(t.run_dir)
    results["symmetry_errors_after_training"] = {
        "group": "D4", "seed": first_seed, "runs": errors,
        "note": "runs of this machine only (run directories are not committed)"}
    return results
