"""Benchmark hygiene: time a method and its baseline interleaved in one process, and say under what load.

On a shared machine absolute rates swing with whatever else runs, so a benchmark compares contenders *in the same
rounds*: each round runs every contender once (in a rotating order, so neither always runs first after the
other's cache traffic), warm-up rounds are discarded, and the result is the median and spread of the per-round
times and of the per-round ratios to the baseline. The record also says how many threads each side had and what
the load average was, because a ratio measured at load 6 on 2 cores is not the same number as one at load 0.2.
Each call is timed on two clocks: wall time (``seconds``, ``ratios``) and this process's CPU time (``cpu_seconds``,
``cpu_ratios``). On an oversubscribed machine the wall clock also counts the time the scheduler gave to others,
which swings from round to round; CPU time counts the work done (all of the process's threads summed, so for a
multi-threaded contender it measures work, not latency).

    from symgym.learn.bench.timing import interleaved

    timing = interleaved({"env.step": run_env, "raw mj_step": run_raw}, baseline="raw mj_step",
                         rounds=7, warmup=1, units=10_000, unit="env steps", threads={"mujoco": 1})
    timing["ratios"]["env.step"]["median"]      # time(env.step) / time(raw mj_step), median over rounds
    timing["cpu_ratios"]["env.step"]["median"]  # the same on CPU time

Each contender is a zero-argument callable doing one round of work (``units`` units of it); its return value is
ignored. The returned dict is JSON-serialisable; put it in the bench's results as it is.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Mapping

import numpy as np


def spread(values) -> dict[str, Any]:
    """Median, interquartile range and min/max of a list of numbers (all floats, JSON-ready)."""
    v = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "iqr": [float(q1), float(q3)], "min": float(v.min()), "max": float(v.max())}


def thread_counts(extra: Mapping[str, int] | None = None) -> dict[str, int]:
    """CPUs this process may use, torch's intra-op threads (when torch is loaded) and any pools the caller names
    (a MuJoCo rollout or batch pool, a Ray trial's CPUs)."""
    out = {"cpus_available": len(os.sched_getaffinity(0))}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = int(torch.get_num_threads())
    out.update({k: int(v) for k, v in (extra or {}).items()})
    return out


def interleaved(contenders: Mapping[str, Callable[[], Any]], baseline: str, *, rounds: int = 7, warmup: int = 1,
                units: float = 1, unit: str = "calls", threads: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Time ``contenders`` (name -> one round of work) in interleaved rounds; ratios are to ``baseline``.

    Args:
        contenders: at least two callables; each is called once per round.
        baseline: the name of the contender the others are divided by (ratio > 1: slower than the baseline).
        rounds: measured rounds (>= 5: a median and a spread need them).
        warmup: rounds run first and discarded (imports, allocation, caches, thread pools starting).
        units: how much work one round does (e.g. env steps), so rates can be reported per unit.
        unit: what a unit is, for the record.
        threads: thread counts of pools the contenders use, recorded with torch's and the CPU count.

    Returns:
        ``{"rounds", "warmup", "units_per_round", "unit", "baseline", "order", "contenders": {name: {"seconds":
        [...], "median_s", "iqr_s", "min_s", "max_s", "units_per_s", "cpu_seconds": [...], "cpu_median_s",
        "cpu_iqr_s", "units_per_cpu_s"}}, "ratios": {name: {"over", "per_round": [...], "median", "iqr", "min",
        "max"}}, "cpu_ratios": {the same on CPU time}, "threads", "load_average": {"before", "after"}}``.
    """
    names = list(contenders)
    if baseline not in contenders:
        raise ValueError(f"baseline {baseline!r} is not one of the contenders {names}")
    if len(names) < 2:
        raise ValueError(f"interleaved timing compares at least two contenders, got {names}")
    if rounds < 5:
        raise ValueError(f"rounds must be >= 5 for a median and a spread, got {rounds}")
    if warmup < 0 or units <= 0:
        raise ValueError(f"warmup must be >= 0 and units > 0, got warmup={warmup}, units={units}")
    load_before = list(os.getloadavg())
    seconds: dict[str, list[float]] = {n: [] for n in names}
    cpu_seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:  # rotate who goes first
            start, cpu_start = time.perf_counter(), time.process_time()
            contenders[name]()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if r >= warmup:
                seconds[name].append(elapsed)
                cpu_seconds[name].append(cpu)
    result: dict[str, Any] = {
        "rounds": rounds, "warmup": warmup, "units_per_round": units, "unit": unit, "baseline": baseline,
        "order": "interleaved, rotating start", "contenders": {}, "ratios": {}, "cpu_ratios": {},
    }
    for name in names:
        s, c = spread(seconds[name]), spread(cpu_seconds[name])
        result["contenders"][name] = {"seconds": seconds[name], "median_s": s["median"], "iqr_s": s["iqr"],
                                      "min_s": s["min"], "max_s": s["max"], "units_per_s": units / s["median"],
                                      "cpu_seconds": cpu_seconds[name], "cpu_median_s": c["median"],
                                      "cpu_iqr_s": c["iqr"], "units_per_cpu_s": units / c["median"]}
    for name in names:
        if name != baseline:
            result["ratios"][name] = ratio(result, name, baseline)
            result["cpu_ratios"][name] = ratio(result, name, baseline, clock="cpu")
    result["threads"] = thread_counts(threads)
    result["load_average"] = {"before": load_before, "after": list(os.getloadavg())}
    return result


def ratio(timing: Mapping[str, Any], numerator: str, denominator: str, clock: str = "wall") -> dict[str, Any]:
    """Per-round ratio ``time(numerator) / time(denominator)`` of two contenders of one :func:`interleaved` record
    (rounds pair up because they ran interleaved), with its median and spread; ``clock``: "wall" or "cpu"."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    key = "seconds" if clock == "wall" else "cpu_seconds"
    c = timing["contenders"]
    per_round = (np.asarray(c[numerator][key]) / np.asarray(c[denominator][key])).tolist()
    return {"over": denominator, "clock": clock, "per_round": per_round, **spread(per_round)}
