"""IAEmu: the table of the paper model's learning-rate check (:mod:`learn.tasks.iaemu.tuning` runs it), read from
its cache; kept apart from the runner so the task can attach the table without importing the runner."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TUNING_SEEDS = (100, 101)
GRID = (3e-3, 1e-2, 3e-2)
CHECK_EPOCHS = 100
"""Epochs of each check run (the comparison trains 500; the schedule keeps its shape)."""
CACHE = Path("results/cache/iaemu-tune")


def run_path(cache: Path, seed: int, lr: float, epochs: int) -> Path:
    return cache / f"paper_seed{seed}_lr{lr:g}_epochs{epochs}.json"


def table(epochs: int, cache: Path = CACHE, config_lr: float | None = None, grid: tuple[float, ...] = GRID,
          min_seeds: int = len(TUNING_SEEDS)) -> dict | None:
    """Every cached run at ``epochs`` epochs, the mean score per rate over the seeds that ran every rate, and the
    rate that mean picks; None when no run is cached. ``config_lr``: the configured rate, to say whether they agree.
    Until every rate of ``grid`` has run on ``min_seeds`` seeds the table says ``complete: false`` and picks nothing
    (a partial grid would pick among what happened to finish first)."""
    runs = [json.loads(p.read_text()) for p in sorted(cache.glob(f"paper_seed*_epochs{epochs}.json"))]
    if not runs:
        return None
    rates = sorted({r["lr"] for r in runs})
    seeds = sorted(s for s in {r["seed"] for r in runs} if {r["lr"] for r in runs if r["seed"] == s} == set(rates))
    mean = {f"{lr:g}": float(np.mean([r["validation_score"] for r in runs if r["lr"] == lr and r["seed"] in seeds]))
            for lr in rates} if seeds else {}
    best_per_seed = {s: min((r for r in runs if r["seed"] == s), key=lambda r: r["validation_score"])["lr"]
                     for s in seeds}
    complete = set(grid) <= set(rates) and len(seeds) >= min_seeds
    chosen = float(min(mean, key=mean.get)) if complete else None
    return {"epochs": epochs, "rates": rates, "seeds_complete": seeds, "complete": complete, "runs": runs,
            "mean_validation_score": mean, "best_rate_per_seed": best_per_seed, "chosen": chosen,
            "configured": config_lr, "agrees": None if chosen is None or config_lr is None else chosen == config_lr,
            "score": "0.7 MSE + 0.3 Gaussian NLL on the tuning seed's validation split (standardised targets)"}
