"""``symgym bench env-speed``: what an env step costs over the physics it runs, single and batched.

Three comparisons, each timed with :func:`symgym.learn.bench.timing.interleaved` (method and baseline in the same
rounds of one process, warm-up excluded, median and spread, threads and load average recorded):

* ``sympush``: SymPush-v0 ``env.step`` through ``gymnasium.make`` (wrappers, resets included) vs a raw ``mj_step``
  replay of *the same states and controls* (recorded from the env, resets restored with ``mj_setState``; the replay
  is checked to end in the env's final state bit for bit).
* ``pandapush``: the same for PandaPush-v0 (its controller's ``mj_step`` calls recorded as they happen).
* ``sympush_steps``, ``pandapush_steps``: ``env.step`` alone, no resets on either side (a PandaPush reset solves
  IK for the arm's placement, about four steps' worth of time, once per 50-step episode).
* ``vector_n16``: 16 SymPush envs: the batched vector env (``make_vec(..., "vector_entry_point")``,
  ``symgym.envs.vector``) vs gymnasium's ``SyncVectorEnv`` vs raw ``mujoco.rollout`` of the same initial states
  and controls, chained one call per env step (what a policy in the loop needs) and as one call for the whole
  horizon (the physical limit: no Python between steps). The rollout pool has as many threads as the vector env
  (its default, 1); the vector env with a 2-thread pool is timed too.
* ``pandapush_vector_n16``: the same for 16 PandaPush envs. The vector env's Panda path is batched over the 16 envs
  (the controller's differential IK as numpy over the batch, its kinematics from one ``mujoco.batch`` call, the
  physics in the batch; resets solve their IK placements together); the raw rollouts replay the controls the vector
  env applied (recorded), so they are the physics alone, with no controller. ``breakdown`` splits one untimed pass
  of the vector env into the resets (IK placements), the controller's arithmetic, the arm kinematics, the batched
  physics and the rest (observation, reward, info, bookkeeping), on the CPU clock.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from mujoco import rollout

import symgym.envs  # noqa: F401
from symgym.envs.mujoco_base import STATE_SPEC
from symgym.learn.bench.timing import interleaved, ratio
from symgym.learn.evidence import provenance
from symgym.learn.io import save_figure

N_VECTOR = 16


def _record(env: gym.Env, actions: np.ndarray, seed: int, resets: bool = True) -> list[tuple]:
    """Run ``env`` on ``actions`` from ``reset(seed)``, recording every physics call it makes: ("state", s) at each
    reset and ("step", ctrl, nstep) for each ``mj_step``. The env's own ``mj_step`` calls are intercepted, so a
    controller that re-computes ``ctrl`` between substeps is recorded as it runs. ``resets=False``: step through
    episode ends without resetting (the steps-only rows)."""
    u = env.unwrapped
    ops: list[tuple] = []
    real_step = mujoco.mj_step

    def recording_step(m, d, nstep=1):
        ops.append(("step", d.ctrl.copy(), int(nstep)))
        real_step(m, d, nstep=nstep)

    def snapshot():
        s = np.empty(mujoco.mj_stateSize(u.model, STATE_SPEC))
        mujoco.mj_getState(u.model, u.data, s, STATE_SPEC)
        ops.append(("state", s))

    mujoco.mj_step = recording_step
    try:
        env.reset(seed=seed)
        snapshot()
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if resets and (terminated or truncated):
                env.reset()
                snapshot()
    finally:
        mujoco.mj_step = real_step
    return ops


def _replay(ops: list[tuple], m: mujoco.MjModel, d: mujoco.MjData) -> None:
    """The physics of a :func:`_record`\ ed run, alone: states restored, recorded controls stepped."""
    for op in ops:
        if op[0] == "state":
            mujoco.mj_setState(m, d, op[1], STATE_SPEC)
        else:
            d.ctrl[:] = op[1]
            mujoco.mj_step(m, d, nstep=op[2])


def _single(env_id: str, n_steps: int, rounds: int, seed: int, resets: bool = True) -> dict[str, Any]:
    """``env.step`` through ``gymnasium.make`` against a raw replay of the physics it ran. ``resets=True``: episodes
    end and reset as in use (the replay restores each reset state). ``resets=False`` (the steps-only rows): every
    round restores the state after ``reset(seed)`` (the env through its ``set_state``, the replay with
    ``mj_setState``) and steps through episode ends (the time limit's truncation flag is ignored; the arm keeps
    moving), so the resets, whose IK placements the other rows include, are left out on both sides."""
    env = gym.make(env_id)
    u = env.unwrapped
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(n_steps, *env.action_space.shape)).astype(np.float32)
    ops = _record(env, actions, seed, resets=resets)
    env.reset(seed=seed)
    start = u.get_state()
    m, d = u.model, mujoco.MjData(u.model)

    def run_env():
        if not resets:
            u.set_state(start)
            for a in actions:
                env.step(a)
            return
        env.reset(seed=seed)
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()

    def run_raw():
        _replay(ops, m, d)

    run_env(), run_raw()
    exact = bool(np.array_equal(u.data.qpos, d.qpos) and np.array_equal(u.data.qvel, d.qvel))
    timing = interleaved({"env.step": run_env, "raw mj_step replay": run_raw}, baseline="raw mj_step replay",
                         rounds=rounds, units=n_steps, unit="env steps", threads={"mujoco": 1})
    env.close()
    return {"env": env_id, "env_steps_per_round": n_steps, "resets": resets,
            "mj_steps_per_round": sum(op[2] for op in ops if op[0] == "step"),
            "mj_step_calls_per_env_step": sum(op[0] == "step" for op in ops) / n_steps,
            "replay_bit_identical": exact, "timing": timing}


def _recorded_controls(vec, actions: np.ndarray, seed: int) -> np.ndarray:
    """The ``ctrl`` rows the vector env applies at each step of each repeat, ``(repeats, horizon, n, nu)``: read from
    the batch after each step (a closed-loop controller's commands depend on the state, so they are recorded)."""
    out = np.empty((*actions.shape[:3], vec.model.nu))
    for r, rep in enumerate(actions):
        vec.reset(seed=seed)
        for t, a in enumerate(rep):
            vec.step(a)
            out[r, t] = vec._ctrl
    return out


class _TimedBatch:
    """A stand-in for a vector env's ``mujoco.batch.Batch`` that adds the CPU time of its ``step`` calls."""

    def __init__(self, batch):
        self._batch, self.cpu = batch, 0.0

    def step(self, *args, **kwargs):
        start = time.process_time()
        self._batch.step(*args, **kwargs)
        self.cpu += time.process_time() - start

    def __getattr__(self, name):
        return getattr(self._batch, name)


def _breakdown(vec, actions: np.ndarray, seed: int) -> dict[str, float]:
    """Where the Panda vector env's CPU time goes, over one pass of ``actions``: the resets (each places the arm by
    IK), the controller's arithmetic (``_control`` less the kinematics it asks for), the arm kinematics of the
    steps, the batched physics and the rest; fractions of the pass's CPU time."""
    real_batch, real_control, real_kinematics = vec.batch, vec._control, vec._kinematics
    timed = _TimedBatch(real_batch)
    spent = {"control": 0.0, "kinematics": 0.0, "kinematics_in_control": 0.0, "reset": 0.0}
    inside = {"control": False, "reset": False}

    def control(*args):
        inside["control"], start = True, time.process_time()
        try:
            return real_control(*args)
        finally:
            spent["control"] += time.process_time() - start
            inside["control"] = False

    def kinematics(*args):
        start = time.process_time()
        out = real_kinematics(*args)
        if not inside["reset"]:     # a reset's kinematics count as the reset's
            spent["kinematics"] += time.process_time() - start
            spent["kinematics_in_control"] += (time.process_time() - start) * inside["control"]
        return out

    vec.batch, vec._control, vec._kinematics = timed, control, kinematics
    try:
        start = time.process_time()
        for rep in actions:
            inside["reset"], r0 = True, time.process_time()
            vec.reset(seed=seed)
            spent["reset"] += time.process_time() - r0
            inside["reset"] = False
            for a in rep:
                vec.step(a)
        total = time.process_time() - start
    finally:
        vec.batch, vec._kinematics = real_batch, real_kinematics
        del vec._control
    parts = {"reset": spent["reset"], "controller": spent["control"] - spent["kinematics_in_control"],
             "kinematics": spent["kinematics"], "batched_physics": timed.cpu}
    return {"cpu_seconds": total, **{k: v / total for k, v in parts.items()}, "rest": 1.0 - sum(parts.values()) / total}


def _vector(env_id: str, n: int, horizon: int, repeats: int, rounds: int, seed: int) -> dict[str, Any]:
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    vec2 = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", nthread=2)
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    nthread = vec.nthread
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(repeats, horizon, n, 2)).astype(np.float32)
    first = vec.envs[0]
    m, fs = first.model, first.frame_skip
    # the raw rollouts start where the vector env's episodes start and apply the controls it applies
    vec.reset(seed=seed)
    init = np.stack([e.physics_state() for e in vec.envs])   # (the layout's slices: Panda's extra tip ignored)
    ctrl = np.repeat(_recorded_controls(vec, actions, seed)[:, :, :, None, :], fs, axis=3)
    ctrl_whole = np.ascontiguousarray(ctrl.transpose(0, 2, 1, 3, 4).reshape(repeats, n, horizon * fs, m.nu))
    pool = rollout.Rollout(nthread=nthread)
    datas = [mujoco.MjData(m) for _ in range(max(1, nthread))]
    models = [m] * n
    nstate = init.shape[1]
    out_step = np.empty((n, fs, nstate))
    out_whole = np.empty((n, horizon * fs, nstate))
    sens_step, sens_whole = np.empty((n, fs, 0)), np.empty((n, horizon * fs, 0))

    def run_env(env):
        def go():
            for rep in actions:
                env.reset(seed=seed)
                for a in rep:
                    env.step(a)
        return go

    def run_rollout_per_step():
        for rep in ctrl:
            state = init
            for c in rep:
                pool.rollout(models, datas, state, c, nstep=fs, state=out_step, sensordata=sens_step,
                             skip_checks=True)
                state = np.ascontiguousarray(out_step[:, -1])

    def run_rollout_whole():
        for c in ctrl_whole:
            pool.rollout(models, datas, init, c, nstep=horizon * fs, state=out_whole, sensordata=sens_whole,
                         skip_checks=True)

    names = {"vector env (mujoco.batch)": run_env(vec), "vector env, 2 threads": run_env(vec2),
             "SyncVectorEnv": run_env(sync),
             "raw rollout, one call per env step": run_rollout_per_step,
             "raw rollout, one call per horizon": run_rollout_whole}
    timing = interleaved(names, baseline="raw rollout, one call per env step", rounds=rounds,
                         units=repeats * horizon * n, unit="env steps (all envs)",
                         threads={"vector_env_batch": nthread, "vector_env_batch_2": 2, "rollout_pool": nthread})
    breakdown = _breakdown(vec, actions, seed) if vec._controlled else None
    vec.close(), vec2.close(), sync.close(), pool.close()
    v, sync_name = "vector env (mujoco.batch)", "SyncVectorEnv"
    pairs = {  # name -> (numerator, denominator) of a time ratio
        "sync_over_vector": (sync_name, v),      # the vector env's speed-up
        "vector_over_rollout_per_step": (v, "raw rollout, one call per env step"),
        "vector_over_rollout_whole": (v, "raw rollout, one call per horizon"),
        # the most any vector env could gain over SyncVectorEnv here: Sync's time over the bare physics'
        "ceiling_sync_over_rollout_whole": (sync_name, "raw rollout, one call per horizon"),
        "two_threads_over_one": ("vector env, 2 threads", v),
    }
    return {"env": env_id, "num_envs": n, "horizon": horizon, "repeats_per_round": repeats, "timing": timing,
            **({"breakdown_cpu_fractions": breakdown} if breakdown else {}),
            "ratios": {clock: {k: ratio(timing, a, b, clock) for k, (a, b) in pairs.items()}
                       for clock in ("wall", "cpu")}}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict:
    rounds = 5 if quick else 9
    results = {
        "sympush": _single("SymPush-v0", 1_000 if quick else 5_000, rounds, seed),
        "pandapush": _single("PandaPush-v0", 300 if quick else 1_500, rounds, seed),
        "sympush_steps": _single("SymPush-v0", 1_000 if quick else 5_000, rounds, seed, resets=False),
        "pandapush_steps": _single("PandaPush-v0", 300 if quick else 1_500, rounds, seed, resets=False),
        "vector_n16": _vector("SymPush-v0", N_VECTOR, 50, 1 if quick else 4, rounds, seed),
        "pandapush_vector_n16": _vector("PandaPush-v0", N_VECTOR, 10 if quick else 50, 1, rounds, seed),
    }
    results["summary"] = {clock: _summary(results, clock) for clock in ("wall", "cpu")}
    results["summary"]["load_average_1min"] = [results[k]["timing"]["load_average"]["before"][0]
                                               for k in ("sympush", "pandapush", "vector_n16",
                                                         "pandapush_vector_n16")]
    # which code ran: the Panda row times whatever controller the working tree holds
    results["provenance"] = provenance.current()
    _plot(results, out_dir / "env-speed.png")
    return results


def _summary(results: dict, clock: str) -> dict[str, float]:
    """Median time ratios on one clock ("wall" or "cpu", see symgym.learn.bench.timing)."""
    key = "ratios" if clock == "wall" else "cpu_ratios"
    out = {f"{name}_env_over_raw": results[name]["timing"][key]["env.step"]["median"]
           for name in ("sympush", "pandapush", "sympush_steps", "pandapush_steps") if name in results}
    out.update({f"{k}_n{N_VECTOR}": r["median"] for k, r in results["vector_n16"]["ratios"][clock].items()})
    out.update({f"pandapush_{k}_n{N_VECTOR}": r["median"]
                for k, r in results["pandapush_vector_n16"]["ratios"][clock].items()})
    return out


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v, pv = results["vector_n16"], results["pandapush_vector_n16"]
    n = v["num_envs"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, clock in zip(axes, ("wall", "cpu")):
        key = "ratios" if clock == "wall" else "cpu_ratios"
        r = v["ratios"][clock]
        rows = [("SymPush-v0 env.step / raw mj_step", results["sympush"]["timing"][key]["env.step"]),
                ("PandaPush-v0 env.step / raw mj_step", results["pandapush"]["timing"][key]["env.step"]),
                ("PandaPush-v0, steps only (no resets)", results["pandapush_steps"]["timing"][key]["env.step"]),
                (f"SyncVectorEnv / vector env (N={n})", r["sync_over_vector"]),
                ("SyncVectorEnv / raw rollout (ceiling)", r["ceiling_sync_over_rollout_whole"]),
                ("vector env / rollout per env step", r["vector_over_rollout_per_step"]),
                ("vector env / rollout per horizon", r["vector_over_rollout_whole"])]
        p = pv["ratios"][clock]
        rows += [(f"PandaPush: SyncVectorEnv / vector env (N={n})", p["sync_over_vector"]),
                 ("PandaPush: SyncVectorEnv / raw rollout (ceiling)", p["ceiling_sync_over_rollout_whole"]),
                 ("PandaPush: vector env / rollout per horizon", p["vector_over_rollout_whole"])]
        y = np.arange(len(rows))[::-1]
        med = np.array([x["median"] for _, x in rows])
        lo = med - np.array([x["iqr"][0] for _, x in rows])
        hi = np.array([x["iqr"][1] for _, x in rows]) - med
        ax.barh(y, med, xerr=[lo, hi], color=["C0", "C1", "C1", "C2", "C7", "C3", "C3", "C4", "C7", "C5"], capsize=3)
        for yi, m_ in zip(y, med):
            ax.text(m_, yi + 0.25, f"{m_:.2f}x", va="center", fontsize=8)
        ax.set_yticks(y, [x[0] for x in rows])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel(f"time ratio on the {clock} clock (median, bars: IQR)")
    load = results["summary"]["load_average_1min"]
    fig.suptitle(f"env-speed: interleaved rounds, {v['timing']['threads']['cpus_available']} CPUs, "
                 f"1-min load {min(load):.1f}-{max(load):.1f}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
