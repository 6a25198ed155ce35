"""``symgym bench panda-ik``: how well the Panda's tip tracks a commanded planar velocity, over its workspace.

From a grid of start points (spacing 3 cm, 6 cm with ``--quick``) over the table, the arm is placed at rest by IK
(hand down, at table height) and commanded a constant planar velocity in each of 8 directions for 4 control
periods (0.1 s each), at 0.1 and 0.4 m/s; only paths that stay inside the disc being scored are run, so the
workspace edge's clipping plays no part. The tracking error of one period is ``|v_tip - v_cmd| / |v_cmd|`` with
``v_tip`` the tip's displacement over the period / 0.1 s (what the observation reports). The first period starts
from rest and includes accelerating the arm at its torque limits: it is reported on its own ("from rest"); the
others are "moving". Scored over the declared workspace (``PandaPushEnv.workspace_radius``) and, for the map,
over the whole table (radius 0.33 m, the workspace before it was shrunk, with the env's edge rule moved there).
The arm: PandaReach-v0's (no puck).

Also timed, interleaved in one process over the same states and controls: ``env.step`` against the raw
``mujoco.mj_step(nstep=frame_skip)`` it wraps (median and spread of rounds, warm-up excluded). The ratio uses the
thread's CPU time (``time.thread_time``), which a loaded machine does not inflate; wall times are recorded too.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import mujoco
import numpy as np

from symgym.learn.io import save_figure

SPEEDS = (0.1, 0.4)
DIRECTIONS = 8
PERIODS = 4
TABLE = 0.33   # the workspace radius before it was shrunk to where the arm tracks


def _paths(radius: float, spacing: float, speed: float, horizon: float):
    """Start points on a grid and unit directions whose straight path of length ``horizon`` stays in ``radius``."""
    ticks = np.arange(-radius, radius + 1e-9, spacing)
    for x in ticks:
        for y in ticks:
            p = np.array([x, y])
            if np.hypot(x, y) > radius:
                continue
            for k in range(DIRECTIONS):
                d = np.array([np.cos(2 * np.pi * k / DIRECTIONS), np.sin(2 * np.pi * k / DIRECTIONS)])
                if np.linalg.norm(p + horizon * d) <= radius:
                    yield p, d


def tracking_errors(env, speed: float, radius: float, spacing: float) -> dict:
    """Per-path, per-period tracking errors (see the module docstring); unreachable starts are counted, not run."""
    T = env.control_period
    rows, starts, where, unreachable = [], [], [], 0
    for p, d in _paths(radius, spacing, speed, speed * T * PERIODS):
        env.reset(seed=0)
        if env.controller.solve_ik(env.data, p) > 1e-4:
            unreachable += 1
            continue
        mujoco.mj_forward(env.model, env.data)
        prev = env.tip_pos
        errs, at = [], []
        for _ in range(PERIODS):
            env.step_velocity(speed * d)
            tip = env.tip_pos
            errs.append(float(np.linalg.norm((tip - prev) / T - speed * d) / speed))
            at.append(prev + 0.5 * speed * T * d)   # the middle of the commanded segment
            prev = tip
        rows.append(errs)
        starts.append(p)
        where.append(at)
    return {"errors": np.array(rows), "starts": np.array(starts), "where": np.array(where),
            "unreachable_paths": unreachable}


def _summary(errors: np.ndarray, unreachable: int) -> dict:
    moving, first = errors[:, 1:], errors[:, 0]
    return {"paths": int(len(errors)), "unreachable_start_paths": int(unreachable),
            "moving_p50": float(np.percentile(moving, 50)), "moving_p95": float(np.percentile(moving, 95)),
            "moving_max": float(moving.max()), "from_rest_p50": float(np.percentile(first, 50)),
            "from_rest_p95": float(np.percentile(first, 95)), "all_periods_p95": float(np.percentile(errors, 95))}


def step_timing(env, rounds: int = 7, steps: int = 200, seed: int = 0) -> dict:
    """``env.step`` vs raw ``mj_step(nstep=frame_skip)`` replaying the same start states and controls."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    actions = rng.uniform(-1, 1, size=(steps, 2))
    start = env.get_state()
    ctrls, states = [], []
    for a in actions:
        states.append(env.get_state()[:-2])
        ctrls.append(env.control(a))
        env.step(a)
    m, raw = env.model, mujoco.MjData(env.model)
    spec = int(mujoco.mjtState.mjSTATE_FULLPHYSICS | mujoco.mjtState.mjSTATE_WARMSTART
               | mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)

    def env_round() -> tuple[float, float]:
        env.set_state(start)
        c, w = time.thread_time(), time.perf_counter()
        for a in actions:
            env.step(a)
        return (time.thread_time() - c) / steps, (time.perf_counter() - w) / steps

    def raw_round() -> tuple[float, float]:
        cpu = wall = 0.0
        for s, u in zip(states, ctrls):   # the state is set outside the timed part
            mujoco.mj_setState(m, raw, s, spec)
            raw.ctrl[:] = u
            c, w = time.thread_time(), time.perf_counter()
            mujoco.mj_step(m, raw, nstep=env.frame_skip)
            cpu, wall = cpu + time.thread_time() - c, wall + time.perf_counter() - w
        return cpu / steps, wall / steps

    env_round(), raw_round()   # warm-up, not recorded
    load_before = os.getloadavg()
    env_s, raw_s = [], []
    for _ in range(rounds):    # interleaved, so load changes hit both
        env_s.append(env_round())
        raw_s.append(raw_round())
    env_s, raw_s = np.array(env_s), np.array(raw_s)
    ratios = env_s[:, 0] / raw_s[:, 0]
    return {"rounds": rounds, "steps_per_round": steps, "frame_skip": env.frame_skip, "clock": "thread CPU time",
            "env_step_cpu_us": (1e6 * env_s[:, 0]).tolist(), "raw_mj_step_cpu_us": (1e6 * raw_s[:, 0]).tolist(),
            "env_step_wall_us": (1e6 * env_s[:, 1]).tolist(), "raw_mj_step_wall_us": (1e6 * raw_s[:, 1]).tolist(),
            "ratio_median": float(np.median(ratios)), "ratio_min": float(ratios.min()),
            "ratio_max": float(ratios.max()), "torch_threads": "unused", "mujoco_threads": 1,
            "load_average_before_after": [list(load_before), list(os.getloadavg())]}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    from symgym.envs.panda import PandaPushEnv, PandaReachEnv

    env = PandaReachEnv()
    declared = env.workspace_radius
    # the same arm without the workspace's edge rule at 0.25 m, so that paths outside it measure the arm, not the rule
    whole = PandaReachEnv(workspace_radius=TABLE)
    spacing = 0.06 if quick else 0.03
    out = {"metric": "|v_tip - v_cmd| / |v_cmd| per 0.1 s control period (see the module docstring)",
           "declared_workspace_radius_m": declared, "table_radius_scored_m": TABLE, "grid_spacing_m": spacing,
           "directions": DIRECTIONS, "periods_per_path": PERIODS, "speeds": {}}
    maps = {}
    for speed in SPEEDS:
        inside = tracking_errors(env, speed, declared, spacing)
        table = tracking_errors(whole, speed, TABLE, spacing)
        out["speeds"][f"{speed:g}"] = {"declared_workspace": _summary(inside["errors"], inside["unreachable_paths"]),
                                       "whole_table": _summary(table["errors"], table["unreachable_paths"])}
        maps[speed] = table
    out["pass_p95_le_0.15_at_0.4"] = out["speeds"]["0.4"]["declared_workspace"]["moving_p95"] <= 0.15
    out["step_timing"] = {"PandaPush-v0": step_timing(PandaPushEnv(), rounds=5 if quick else 9,
                                                      steps=50 if quick else 200, seed=seed)}
    _plot(maps, declared, spacing, out_dir / "panda-ik.png")
    return out


def _plot(maps: dict, declared: float, cell: float, path: Path) -> None:
    """Per speed: the p95 of the moving periods' errors in each grid cell, placed where the period was commanded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 4.6))
    for ax, (speed, m) in zip(np.atleast_1d(axes), maps.items()):
        xy = m["where"][:, 1:].reshape(-1, 2)
        errs = m["errors"][:, 1:].ravel()
        cells = np.round(xy / cell).astype(int)
        keys, inverse = np.unique(cells, axis=0, return_inverse=True)
        p95 = np.array([np.percentile(errs[inverse.ravel() == k], 95) for k in range(len(keys))])
        sc = ax.scatter(keys[:, 0] * cell, keys[:, 1] * cell, c=p95, cmap="viridis_r", vmin=0, vmax=0.5, s=24,
                        marker="s")
        for r, style in ((TABLE, ":"), (declared, "-")):
            ax.add_patch(plt.Circle((0, 0), r, fill=False, ls=style, color="k"))
        ax.plot([-0.55], [0], "ks")
        ax.annotate("arm base", (-0.55, 0), (-0.53, 0.03), fontsize=8)
        ax.set_xlim(-0.6, 0.38)
        ax.set_ylim(-0.37, 0.37)
        ax.set_aspect("equal")
        ax.set_title(f"{speed:g} m/s: p95 error of moving periods")
        fig.colorbar(sc, ax=ax, shrink=0.8, label="|v_tip - v_cmd| / |v_cmd|")
    fig.suptitle(f"Panda tip tracking (solid: declared workspace r={declared:g} m; dotted: r={TABLE} m)")
    fig.tight_layout()
    save_figure(fig, path)
