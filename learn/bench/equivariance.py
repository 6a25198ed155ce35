"""``symgym bench equivariance``: dynamics-equivariance error of each MuJoCo env, per group element.

For SymPush-v0: every element of D_4 and random O(2)/SO(2) elements. For each approximately
symmetric env the same check is reported, so the size of its declared break is visible.
"""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

import envs
from equivariance import DihedralGroup, PlanarGroup, SE2Group
from equivariance.dynamics import contact_rich_actions, dynamics_equivariance_errors
from learn.io import save_figure


def _elements(group, rng: np.random.Generator, n_random: int) -> list[tuple[str, object]]:
    """D_4 when it is a subgroup of the env's group, plus random elements of the env's group."""
    if isinstance(group, SE2Group):
        return [(f"SE(2):R{np.degrees(g.angle):.1f},t({g.tx:+.2f},{g.ty:+.2f})", g)
                for g in (group.sample(rng) for _ in range(n_random))]
    named = []
    if group.n is None or group.n % 4 == 0:
        d4 = DihedralGroup(4) if group.reflections else None
        for g in (d4.elements() if d4 else [e for e in DihedralGroup(4).elements() if not e.flip]):
            named.append((f"D4:{'F' if g.flip else 'R'}{round(np.degrees(g.angle))}", g))
    if not group.finite:
        for _ in range(n_random):
            g = group.sample(rng)
            named.append((f"{group.name}:{'F' if g.flip else 'R'}{np.degrees(g.angle):.1f}", g))
    else:
        named += [(f"{group.name}:{i}", g) for i, g in enumerate(group.elements())]
    return named


def check_env_id(env_id: str, seed: int, n_random: int, steps: int) -> dict:
    env = gym.make(env_id).unwrapped
    if not hasattr(env, "transform_state"):
        return {"skipped": "env has no transform_state (not a planar MuJoCo env)"}
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    aim = env.puck_pos - env.pusher_pos if hasattr(env, "puck_pos") else None
    actions = contact_rich_actions(env, steps, rng, aim=aim)
    named = _elements(env.symmetry.group, rng, n_random)
    errors = dynamics_equivariance_errors(env, env.get_state(), actions, [g for _, g in named])
    return {"group": env.symmetry.group.name, "exact": env.symmetry.exact, "breaking": env.symmetry.breaking,
            "steps": steps, "max_error": max(errors), "errors": dict(zip([n for n, _ in named], errors))}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    results = {}
    for env_id in envs.symgym_env_ids():
        if "Image" in env_id:
            continue
        try:
            results[env_id] = check_env_id(env_id, seed, n_random=4 if quick else 12, steps=20 if quick else 60)
        except Exception as e:  # an env that cannot be built offline (e.g. a real robot) is reported, not fatal
            results[env_id] = {"skipped": f"{type(e).__name__}: {e}"}
    _plot(results, out_dir / "equivariance.png")
    return {"metric": "max |step(g.s, g.a) - g.step(s, a)| over the full simulator state", "envs": results}


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(k, v) for k, v in results.items() if "errors" in v]
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * max(1, len(rows))))
    for i, (env_id, r) in enumerate(rows):
        errs = np.maximum(np.array(list(r["errors"].values())), 1e-17)
        ax.scatter(errs, np.full(len(errs), i), s=14, color="C0" if r["exact"] else "C3", alpha=0.7)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [k for k, _ in rows])
    ax.set_xlabel("dynamics equivariance error (max-abs over state)")
    ax.set_title("Declared symmetry vs simulation (blue exact, red approximate)")
    fig.tight_layout()
    save_figure(fig, path)
