"""``symgym bench hep``: HEP as the paper builds it (``symgym.agents.hep3d``) on rendered depth clouds.

Three sweeps (specs under ``specs/``), each reported with the claims ledger:

    hep3d-modes   diffusion vs MSE low level on two-mode demos (HepPushAroundDepth-v0: around the puck either way)
    hep3d         hep vs hep without frame transfer / without equivariance vs a flat diffusion policy
                  (HepPickPlaceDepth-v0, a floating suction sphere), every method trained with SE(2) augmentation
    hep3d-panda   the same four methods on a Franka Panda with a suction cup (pick-place, push-to-target,
                  two-stage place), evaluated in unseen workspaces and in the demos' workspace

and beside them:

    perception            ms per observation of the rendered cloud vs the sampled labelled points, interleaved
    policy_equivariance   per finished seed-0 run: the trained policy's error on random SE(2) elements (any angle,
                          shifts up to 0.1 m) with the diffusion noise seed fixed, (a) on exactly transformed
                          clouds and (b) end to end, re-rendering the transformed scene (sampling, pixels, occlusion)

``python -m symgym.learn.bench.hep --report-only`` writes ``results/hep3d.json`` from the trials finished so far
(no training; mixed code fingerprints are allowed and flagged, since the tree changes under a long sweep).
The older heatmap-HEP sweep (spec ``hep``, ``results/hep.json``) is left as it is.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

SWEEPS = ("hep3d-modes", "hep3d", "hep3d-panda")
EVAL_SEED = 10_000


def _elements(seed: int, k: int = 4):
    from symgym.equivariance import SE2Element

    rng = np.random.default_rng(seed)
    return [SE2Element(rng.uniform(0, 2 * np.pi), *rng.uniform(-0.1, 0.1, 2)) for _ in range(k)]


def perception_timing(env_id: str = "HepPickPlace-v0", steps: int = 30) -> dict[str, Any]:
    """Wall ms per env step with ``obs_mode="depth_cloud"`` and with the default sampled points, interleaved."""
    import symgym.envs  # noqa: F401

    envs = {m: gym.make(env_id, obs_mode=m) for m in ("depth_cloud", "points")}
    times: dict[str, list[float]] = {m: [] for m in envs}
    for m, e in envs.items():
        e.reset(seed=0)
    for _ in range(steps):
        for m, e in envs.items():
            t = time.perf_counter()
            e.step(e.unwrapped.oracle_action())
            times[m].append(time.perf_counter() - t)
    for e in envs.values():
        e.close()
    med = {m: 1e3 * float(np.median(v)) for m, v in times.items()}
    return {"env": env_id, "steps": steps, "ms_per_step_depth_cloud": med["depth_cloud"],
            "ms_per_step_points": med["points"], "ratio": med["depth_cloud"] / med["points"],
            "note": "median wall time of env.step (simulation + observation) on the shared, loaded CPU"}


def trained_policy_equivariance(agent, env_id: str, seed: int = 0) -> dict[str, float]:
    """(a) exact: plan(g.obs) vs g.plan(obs) on transformed clouds; (b) end to end: plan(render(g.s)) vs
    g.plan(render(s)). Relative errors (max over 3 scenes x 4 elements)."""
    from symgym.agents.hep3d import plan_vector, transform_plan
    from symgym.equivariance import Symmetry, equivariance_error

    env = gym.make(env_id)
    u = env.unwrapped
    hier = agent.config.hierarchical
    out = Symmetry(group=u.symmetry.group, obs=u.symmetry.obs, action=lambda g, p: transform_plan(g, p, hier))
    states, scenes = [], []
    for s in range(3):
        obs, _ = env.reset(seed=EVAL_SEED + 500 + s)
        for _ in range(4 * s):
            obs, *_ = env.step(u.oracle_action())
        states.append(u.get_state())
        scenes.append(obs)
    elements = _elements(seed)
    exact = equivariance_error(lambda o: plan_vector(agent, o), out, scenes, elements)
    worst, unreachable = 0.0, 0
    for st in states:
        u.set_state(st)
        base = plan_vector(agent, u._obs())
        for g in elements:
            try:   # on the Panda the arm's base does not move with g: a moved cup can leave its reach
                u.set_state(u.transform_state(g, st))
            except ValueError:
                unreachable += 1
                continue
            moved = plan_vector(agent, u._obs())
            want = transform_plan(g, base, hier)
            worst = max(worst, float(np.linalg.norm(moved - want) / (np.linalg.norm(want) + 1e-12)))
    env.close()
    return {"exact_clouds": float(exact), "end_to_end_rendered": worst,
            "end_to_end_pairs": len(states) * len(elements) - unreachable, "unreachable_pairs": unreachable}


def policy_equivariance(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Errors of every finished run of the first seed, per sweep and method."""
    from symgym.learn.evidence.sweep import expand, load_spec
    from symgym.learn.run.runs import load_run

    res: dict[str, Any] = {}
    for name in SWEEPS:
        spec = load_spec(name)
        first = min(spec.raw["grid"]["seed"])
        for t in expand(spec, Path(out_dir)):
            lab = t.labels
            if lab["seed"] != first or not (Path(t.run_dir) / "config.json").is_file():
                continue
            try:
                agent, _ = load_run(t.run_dir)
            except ValueError as e:   # a checkpoint from an older agent version: no error to measure
                res.setdefault(name, {})[lab["method"]] = f"skipped: {str(e).splitlines()[0][:160]}"
                continue
            res.setdefault(name, {})[lab["method"]] = trained_policy_equivariance(agent, lab["env"], seed)
    return {"group": "SE(2): rotations by any angle, shifts up to 0.1 m; diffusion noise seed fixed",
            "seed": seed, "runs": res}


def report_only(out_dir: Path = Path("results"), seed: int = 0) -> dict[str, Any]:
    """Ledgers of the trials finished so far (no training) + perception timing + trained-policy equivariance."""
    from symgym.learn.evidence.report import build_report, plot_report
    from symgym.learn.evidence.sweep import load_spec

    out: dict[str, Any] = {"sweeps": {}, "evidence": []}
    for name in SWEEPS:
        spec = load_spec(name)
        rep = build_report(spec, out_dir, allow_mixed_code=True)
        rep["plots"] = [str(p) for p in plot_report(rep, Path(out_dir), name)]
        out["sweeps"][name] = rep
        out["evidence"] += rep.get("evidence", [])
    out["perception"] = perception_timing()
    out["policy_equivariance"] = policy_equivariance(Path(out_dir), seed)
    return out


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict[str, Any]:
    from symgym.learn.evidence.report import sweep_and_report

    out: dict[str, Any] = {"sweeps": {}, "evidence": []}
    for name in SWEEPS:
        rep = sweep_and_report(name, out_dir, quick=quick, seed=seed)
        out["sweeps"][name] = rep
        out["evidence"] += rep.get("evidence", [])
    out["perception"] = perception_timing(steps=5 if quick else 30)
    if not quick:
        out["policy_equivariance"] = policy_equivariance(Path(out_dir), seed)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report-only", action="store_true", help="no sweeps: report the finished trials")
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    import torch

    from symgym.learn.io import run_and_record

    torch.set_num_threads(1)
    fn = (lambda out_dir, quick, seed: report_only(out_dir, seed)) if args.report_only else run
    run_and_record("bench", "hep3d", fn, args.out, False, 0)
    print(f"wrote {Path(args.out) / 'hep3d.json'}")
