"""``symgym bench sweep-overhead``: what running trials through Ray Tune costs.

The spec ``specs/sweep-overhead.yaml`` holds identical MPPI trials of realistic length (one 800-step episode,
about 30 s each on an idle core; only the seed differs; seeds 0 and 1 only warm up). They run (1) one after
another in this process and (2) through ``symgym sweep`` with 2 concurrent trials on an embedded local Ray (one CPU
per trial). The ideal
sweep time is sequential time / 2; the bench reports sweep / ideal (target: within 1.15x).

What makes the comparison fair (each was a design flaw of the first version, which measured 1.79x):

* **one thread per trial** on both sides: torch uses one thread (the trial sets it) and the MPPI rollout runs in
  the trial's own thread (``agent_kwargs: {nthread: 0}``, no ``mujoco.rollout`` pool). With the planner's default
  2-thread pool two concurrent trials put 4 busy threads on 2 cores;
* **workers warmed the same way**: the sequential side runs one uncounted warm-up trial in-process first; the
  sweep runs every trial on actors that Tune reuses (``reuse_actors``), the first two (seeds 0 and 1, run
  first in seed-major order) start the actors and pay their imports, and counting starts when the first of
  them reports. (Ray tasks run on the worker pool beforehand do not help: Tune's trial actors start in fresh
  processes, measured.) Whether the counted trials ran on the warmed actors is checked from their process ids;
* **Ray start-up is reported apart** (``ray_start_s``), and so is the whole cold ``Tuner.fit`` (``fit_s``).

The ratio is split into its causes: ``contention`` (how much slower a trial runs inside the sweep, two at once on
two cores shared with whatever else runs here, than alone) and ``scheduling`` (``sweep_s`` against the trials'
own time inside the workers). The load average is recorded with the numbers: on a shared machine both sides slow
down, and unevenly.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from symgym.learn.io import save_figure

CONCURRENCY = 2
#: grid seeds that only warm up: the sweep's first CONCURRENCY trials (seed-major order) and the sequential side's
#: first trial; neither side counts them
WARMUP_SEEDS = (0, 1)


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict[str, Any]:
    import torch

    from symgym.learn.evidence.sweep import expand, load_spec, run_sweep, start_ray
    from symgym.learn.evidence.trials import run_trial

    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    spec = load_spec("sweep-overhead", quick=quick)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    scratch = (out_dir / "cache" / f"sweep-overhead-{stamp}").resolve()
    load_before = os.getloadavg()
    trials = expand(spec, scratch / "sequential")
    warm = [t for t in trials if t.labels["seed"] in WARMUP_SEEDS]
    counted = [t for t in trials if t.labels["seed"] not in WARMUP_SEEDS]
    # (1) sequential, in this process, after one warm-up trial
    run_trial(warm[0].as_dict())
    start = time.perf_counter()
    per_trial = [run_trial(t.as_dict())["wall_s"] for t in counted]
    sequential_s = time.perf_counter() - start
    # (2) every trial through the sweep, CONCURRENCY at a time, on actors Tune reuses (reuse_actors): the first
    # CONCURRENCY trials (the warm-up seeds) start the actors and import everything; counting starts when the
    # first of them reports, so the window also holds the rest of the other warm-up (conservative: overcounts)
    start = time.perf_counter()
    ray = start_ray(num_cpus=CONCURRENCY)
    ray_start_s = time.perf_counter() - start
    try:
        sweep = run_sweep(spec, out=scratch / "sweep", max_concurrent=CONCURRENCY, log=lambda *_: None)
    finally:
        ray.shutdown()
    if sweep["errors"] or sweep["ran"] != len(trials):
        raise RuntimeError(f"sweep-overhead: the sweep did not finish every trial: {sweep}")
    arrivals = sweep["arrivals_s"]
    warm_done = sorted(arrivals[t.key] for t in warm)
    sweep_s = max(arrivals.values()) - warm_done[0]
    ideal_s = sequential_s / CONCURRENCY
    summaries = {p.stem: json.loads(p.read_text()) for p in (scratch / "sweep" / "trials" / spec.name).glob("*.json")
                 if p.name != "sweep.json"}
    inside_s = [summaries[t.key]["wall_s"] for t in counted]
    pids = {t.key: summaries[t.key].get("pid") for t in trials}
    contention = statistics.mean(inside_s) / statistics.mean(per_trial)
    # the counted window held sum(inside_s) of trial work over CONCURRENCY slots; beyond that is Tune's own time
    scheduling = sweep_s / (sum(inside_s) / CONCURRENCY)
    results = {
        "trials": len(counted), "warmup_trials": {"sequential": 1, "sweep": len(warm)}, "concurrency": CONCURRENCY,
        "cpu_count": os.cpu_count(),
        "threads_per_trial": {"torch": 1, "mujoco_rollout_pool": spec.params["agent_kwargs"].get("nthread")},
        "sequential_s": round(sequential_s, 2), "trial_s_sequential": [round(x, 2) for x in per_trial],
        "mean_trial_s": round(statistics.mean(per_trial), 2),
        "ideal_sweep_s": round(ideal_s, 2), "sweep_s": round(sweep_s, 2),
        "ratio_to_ideal": round(sweep_s / ideal_s, 3), "target_ratio": 1.15,
        "within_target": bool(sweep_s / ideal_s <= 1.15),
        "ray_start_s": round(ray_start_s, 2), "fit_s": sweep["wall_s"],
        # the whole cold fit against the same 10 trials' work done sequentially (warm-ups at the mean trial time)
        "cold_ratio_to_ideal": round(sweep["wall_s"] / ((sequential_s + statistics.mean(per_trial) * len(warm))
                                                        / CONCURRENCY), 3),
        "warmup_skew_s": round(warm_done[-1] - warm_done[0], 2),
        # counting from the later warm-up instead leaves out some counted work: the optimistic end of the range
        "ratio_to_ideal_range": [round((max(arrivals.values()) - warm_done[-1]) / ideal_s, 3),
                                 round(sweep_s / ideal_s, 3)],
        "trial_s_inside_sweep": [round(x, 2) for x in inside_s],
        "contention": round(contention, 3), "scheduling": round(scheduling, 3),
        "scheduling_overhead_s": round(sweep_s - sum(inside_s) / CONCURRENCY, 2),
        "actors": len({p for p in pids.values() if p is not None}),
        "counted_trials_on_warmed_actors": all(pids[t.key] in {pids[w.key] for w in warm} for t in counted),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "sweep_s: from the first warm-up trial's result to the last result, inside Tuner.fit (Tune reuses "
                "the warmed actors); ratio_to_ideal = sweep_s / (sequential_s / concurrency) ~ contention x "
                "scheduling: contention = mean trial time inside the sweep / alone, scheduling = sweep_s / (sum of "
                "counted trial times inside the sweep / concurrency). fit_s: the whole Tuner.fit, cold actors and "
                "warm-ups included (cold_ratio_to_ideal compares it with the same trials run sequentially). "
                "ray_start_s (ray.init) is apart. Measured on a shared machine: see the load averages.",
    }
    _plot(results, out_dir / "sweep-overhead.png")
    return results


def _plot(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["sequential", f"ideal (/{results['concurrency']})", f"sweep ({results['concurrency']} at once)",
             "Ray start-up", "whole fit (cold)"]
    values = [results["sequential_s"], results["ideal_sweep_s"], results["sweep_s"], results["ray_start_s"],
              results["fit_s"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.bar(range(len(values)), values, color=["C7", "C2", "C0", "C1", "C3"])
    ax.set_xticks(range(len(values)), names, fontsize=8)
    ax.set(ylabel="seconds", title=f"{results['trials']} identical trials: sweep / ideal = "
                                   f"{results['ratio_to_ideal']:.2f} (contention {results['contention']:.2f}, "
                                   f"scheduling {results['scheduling']:.2f}; load "
                                   f"{results['load_average_before'][0]:.1f})", )
    ax.title.set_fontsize(8)
    fig.tight_layout()
    return save_figure(fig, path)
