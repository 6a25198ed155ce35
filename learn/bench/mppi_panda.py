"""MPPI on the Panda with the simulator: planner equivariance (the symmetry is approximate) and rollout cost.

``python -m symgym.learn.bench.mppi_panda [--quick]`` writes ``results/mppi-panda.json``; ``symgym bench mppi``
adds the same numbers under ``planner_equivariance_error.panda_simulator``.

* **Planner equivariance**: ``max |plan(g.s) - g.plan(s)|`` relative (``equivariance_error``), the same noise seed,
  over D4 and start states after reset, for naive and orbit (symmetric) sampling, with the closed-loop simulator
  backend (:class:`~symgym.envs.panda_planner.PandaRolloutBackend`). The arm breaks O(2) (its base sits on one
  side, ``transform_state`` re-solves its IK), so neither planner is exactly equivariant: reported, not asserted.
* **Rollout cost**: one closed-loop rollout of K x H sample-steps against K x H calls of ``env.step`` (the same
  work done the env's way), interleaved rounds, median ratio.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import symgym.envs  # noqa: F401  (registers ids)
from symgym.agents.mppi import MPPIConfig, MPPIPlanner
from symgym.envs.panda_planner import PandaRolloutBackend, planner_env
from symgym.equivariance import DihedralGroup, Symmetry, equivariance_error
from symgym.learn.io import write_json

#: env id -> (samples K, horizon H): Push's contacts make a sample-step ~10x dearer than Reach's
SIZES = {"PandaReach-v0": (32, 15), "PandaPush-v0": (16, 8)}


def panda_planner_equivariance(env_id: str, n_states: int = 3, k: int | None = None, horizon: int | None = None,
                               ) -> dict:
    """Relative equivariance error of the naive and the symmetric simulator planner over D4 on ``env_id``."""
    env = gym.make(env_id)
    view = planner_env(env)
    k0, h0 = SIZES[env_id]
    k, horizon = k or k0, horizon or h0
    elements = DihedralGroup(4).elements()
    sym = Symmetry(group=view.symmetry.group, obs=view.transform_state, action=view.symmetry.transform_action)
    states = []
    for seed in range(n_states):
        env.reset(seed=seed)
        states.append(view.get_state())
    out = {"env": env_id, "elements": len(elements), "states": n_states, "K": k, "H": horizon}
    for symmetric in (False, True):
        planner = MPPIPlanner(view, MPPIConfig(samples=k, horizon=horizon, symmetric=symmetric, group="D4", seed=0),
                              rollout=PandaRolloutBackend(view))

        def plan(state, planner=planner):
            planner.reset()
            return planner.plan(state)

        out["symmetric" if symmetric else "naive"] = float(equivariance_error(plan, sym, states, elements))
    return out


def rollout_cost(env_id: str, k: int = 16, horizon: int = 8, rounds: int = 5) -> dict:
    """Seconds per closed-loop sample-step and per ``env.step``, interleaved rounds; their median ratio."""
    env = gym.make(env_id)
    u = env.unwrapped
    env.reset(seed=0)
    start = u.get_state()
    backend = PandaRolloutBackend(env)
    actions = np.random.default_rng(0).uniform(-1, 1, (k, horizon, 2))
    ours, steps = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        backend.rollout(start, actions)
        ours.append((time.perf_counter() - t) / (k * horizon))
        t = time.perf_counter()
        for i in range(k):
            u.set_state(start)
            for a in actions[i]:
                env.step(a)
        steps.append((time.perf_counter() - t) / (k * horizon))
    ratio = [a / b for a, b in zip(ours, steps)]
    return {"env": env_id, "K": k, "H": horizon, "rounds": rounds,
            "ms_per_sample_step": 1e3 * float(np.median(ours)), "ms_per_env_step": 1e3 * float(np.median(steps)),
            "rollout_over_env_step": float(np.median(ratio))}


def run(quick: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    n = 1 if quick else 3
    # at the env's planning horizon and at H=3: the arm's symmetry break grows along a rollout, and the softmax
    # amplifies cost differences, so the error depends on how far ahead the planner looks
    sizes = [{"k": 8, "horizon": 3}] if quick else [{}, {"horizon": 3}]
    return {"planner_equivariance_error": {f"{e} H={kw.get('horizon', SIZES[e][1])}": panda_planner_equivariance(
                e, n_states=n, **kw) for e in SIZES for kw in sizes},
            "rollout_cost": [rollout_cost(e, rounds=2 if quick else 5) for e in SIZES]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    path = Path(args.out) / "mppi-panda.json"
    write_json(path, run(args.quick))
    print(path)


if __name__ == "__main__":
    main()
