"""``symgym bench hep``: success rate vs number of demonstrations for HEP, its ablations and flat BC.

The sweep ``specs/hep.yaml`` trains, per closed-loop task, demo count (nested: the first n solved oracle
episodes) and trial seed:

    hep            C4-equivariant heatmap keypose + SO(2)-equivariant low level in the keypose frame
    hep_no_ft      the same high level, low level in the world frame (keypose as an input)
    hep_no_eq      plain CNN + plain MLP, with frame transfer
    flat_bc        one MLP, vector observation -> action chunk (no hierarchy), similar parameter count

and evaluates each on held-out seeds in the demonstrations' workspace (``success_rate``) and in randomly
rotated and translated workspaces never seen in the demos (``success_rate.transformed``). The report (rliable
IQMs, CIs, claims ledger) is ``hep.json``; this adds the policy equivariance error of the seed-0 hep and
hep_no_eq runs with the most demos.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from symgym.agents.hep import HEPAgent, plan_vector, transform_plan
from symgym.equivariance import SE2Element, Symmetry, equivariance_error

METHODS = ("hep", "hep_no_ft", "hep_no_eq", "flat_bc")
WORKSPACES = ("demo", "transformed")
EVAL_SEED = 10_000


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
    from symgym.learn.evidence.report import sweep_and_report
    from symgym.learn.run.runs import load_run
    from symgym.learn.evidence.sweep import expand, load_spec

    results = sweep_and_report("hep", out_dir, quick=quick, seed=seed)
    spec = load_spec("hep", quick=quick)
    first_seed, most = min(spec.raw["grid"]["seed"]) + seed, max(spec.raw["grid"]["demos"])
    errors: dict[str, Any] = {}
    for t in expand(spec, Path(out_dir)):
        lab = t.labels
        if lab["method"] in ("hep", "hep_no_eq") and lab["seed"] == first_seed and lab["demos"] == most \
                and (Path(t.run_dir) / "config.json").is_file():
            try:
                agent, _ = load_run(t.run_dir)
            except ValueError as e:  # a checkpoint from an older agent version: its summary stands, no error
                errors.setdefault(lab["env"], {})[lab["method"]] = f"skipped: {str(e).splitlines()[0][:160]}"
                continue
            errors.setdefault(lab["env"], {})[lab["method"]] = policy_equivariance_error(agent, lab["env"], seed)
    results["policy_equivariance_error"] = {
        "group": "rotations by multiples of 90 degrees x translations by whole pixels (0.02 m)",
        "demos": most, "seed": first_seed, "runs": errors}
    return results
