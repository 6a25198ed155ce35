"""``symgym bench sweep-overhead``: what running trials through Ray Tune costs.

The spec ``specs/sweep-overhead.yaml`` holds 12 short identical trials (one short MPPI episode each; only the
seed differs). They run (1) one after another in this process, after one warm-up trial, and (2) through
``symgym sweep`` with 2 concurrent trials on an embedded local Ray. The ideal sweep time is sequential time /
2 (the concurrency); the bench reports sweep / ideal (target: within 1.15x) and Ray's start-up separately.
The load average of the machine is recorded with the numbers: on a shared machine both sides slow down.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from symgym.learn.io import save_figure

CONCURRENCY = 2


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict[str, Any]:
    from symgym.learn.evidence.sweep import expand, load_spec, run_sweep, start_ray
    from symgym.learn.evidence.trials import run_trial

    out_dir = Path(out_dir)
    spec = load_spec("sweep-overhead", quick=quick)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    scratch = (out_dir / "cache" / f"sweep-overhead-{stamp}").resolve()
    load_before = os.getloadavg()
    # (1) sequential, in this process (imports warmed by one extra trial that is not counted)
    seq_trials = expand(spec, scratch / "sequential")
    warm = seq_trials[0].as_dict()
    run_trial({**warm, "run_dir": str(scratch / "warm-up")})
    start = time.perf_counter()
    per_trial = [run_trial(t.as_dict())["wall_s"] for t in seq_trials]
    sequential_s = time.perf_counter() - start
    # (2) the same trials through the sweep, CONCURRENCY at a time; Ray start-up timed on its own
    start = time.perf_counter()
    ray = start_ray(num_cpus=CONCURRENCY)
    ray_start_s = time.perf_counter() - start
    try:
        sweep = run_sweep(spec, out=scratch / "sweep", max_concurrent=CONCURRENCY, log=lambda *_: None)
    finally:
        ray.shutdown()
    if sweep["errors"] or sweep["ran"] != len(seq_trials):
        raise RuntimeError(f"sweep-overhead: the sweep did not finish every trial: {sweep}")
    ideal_s = sequential_s / CONCURRENCY
    # time the trials themselves took inside the sweep's workers (first ones include the workers' imports)
    inside = [json.loads(p.read_text())["wall_s"] for p in (scratch / "sweep" / "trials" / spec.name).glob("*.json")
              if p.name != "sweep.json"]
    results = {
        "trials": len(seq_trials), "concurrency": CONCURRENCY, "cpu_count": os.cpu_count(),
        "sequential_s": round(sequential_s, 2), "mean_trial_s": round(sum(per_trial) / len(per_trial), 3),
        "ideal_sweep_s": round(ideal_s, 2), "sweep_s": sweep["wall_s"], "ray_start_s": round(ray_start_s, 2),
        "ratio_to_ideal": round(sweep["wall_s"] / ideal_s, 3), "target_ratio": 1.15,
        "trial_s_inside_sweep_sum": round(sum(inside), 2),
        "scheduling_overhead_s": round(sweep["wall_s"] - sum(inside) / CONCURRENCY, 2),
        "within_target": bool(sweep["wall_s"] / ideal_s <= 1.15),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "sweep_s is Tuner.fit() wall time (trial actors started, trials run, results back); "
                "ray_start_s is ray.init on its own; scheduling_overhead_s = sweep_s - (time the trials took "
                "inside the workers) / concurrency",
    }
    _plot(results, out_dir / "sweep-overhead.png")
    return results


def _plot(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["sequential", f"ideal (/{results['concurrency']})", f"sweep ({results['concurrency']} at once)",
             "Ray start-up"]
    values = [results["sequential_s"], results["ideal_sweep_s"], results["sweep_s"], results["ray_start_s"]]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(range(4), values, color=["C7", "C2", "C0", "C1"])
    ax.set_xticks(range(4), names, fontsize=8)
    ax.set(ylabel="seconds", title=f"{results['trials']} identical trials: sweep / ideal = "
                                   f"{results['ratio_to_ideal']:.2f} (load {results['load_average_before'][0]:.1f})")
    fig.tight_layout()
    return save_figure(fig, path)
