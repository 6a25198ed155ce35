"""IAEmu: the table of the paper model's pilot check, learning rate and batch size re-made at full width
(:mod:`learn.tasks.iaemu.tuning` runs it), read from its cache; kept apart from the runner so the task can attach
the table without importing the runner."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TUNING_SEEDS = (100, 101)
CELLS = ((256, 1e-2), (128, 1e-2), (512, 1e-2), (256, 3e-2), (256, 3e-3), (64, 1e-2))
"""(batch, rate) pairs checked: the two axes through the choice, batch 64-512 at rate 1e-2 and rate 3e-3 to 3e-2 at
batch 256, so the table shows whether the choice is inside the grid on both. History: the first check (2026-12-07)
started from the rate grid at the then-configured batch 128 and the batch grid at rates the linear scaling rule
suggests, found the best at (256, 1e-2) on that grid's edge and extended it (9 cells in all: the six here and 128
at 3e-3 and 3e-2, 64 at 3e-3). Its runs were lost with the ignored cache they were kept in; the re-run keeps the six
on the axes, in the order they matter (the choice and the old configuration first)."""
CHECK_EPOCHS = 100
"""Epochs of each check run (the comparison trains 500; the schedule keeps its shape)."""
CACHE = Path("results/iaemu-tune")
"""Each run's JSON (tracked: a fresh checkout keeps only what git holds), and an unfinished run's checkpoint
beside it (commit it at the end of a sitting to continue it in the next; training deletes it when done)."""
RESULTS_KEY = "paper_pilot_check"
"""Where the table goes in results/iaemu.json (its figure: ``iaemu_pilot_check.png`` beside it)."""


def run_path(cache: Path, seed: int, batch: int, lr: float, epochs: int) -> Path:
    return cache / f"paper_seed{seed}_batch{batch}_lr{lr:g}_epochs{epochs}.json"


def _cell(run: dict) -> tuple[int, float]:
    return int(run["batch"]), float(run["lr"])


def table(epochs: int, cache: Path = CACHE, configured: tuple[int, float] | None = None,
          cells: tuple[tuple[int, float], ...] = CELLS, min_seeds: int = len(TUNING_SEEDS)) -> dict | None:
    """Every cached run at ``epochs`` epochs, the mean score per (batch, rate) cell over the seeds that ran every
    cell of ``cells``, and the cell that mean picks; None when no run is cached. ``configured``: the configured
    (batch, rate), to say whether they agree. Until every cell has run on ``min_seeds`` seeds the table says
    ``complete: false`` and picks nothing (a partial grid would pick among what happened to finish first)."""
    runs = [json.loads(p.read_text()) for p in sorted(cache.glob(f"paper_seed*_epochs{epochs}.json"))]
    if not runs:
        return None
    wanted = {(int(b), float(lr)) for b, lr in cells}
    seeds = sorted(s for s in {r["seed"] for r in runs} if wanted <= {_cell(r) for r in runs if r["seed"] == s})
    scored = [r for r in runs if r["seed"] in seeds and _cell(r) in wanted]
    mean = {cell: float(np.mean([r["validation_score"] for r in scored if _cell(r) == cell]))
            for cell in sorted(wanted) if seeds}
    best_per_seed = {s: list(_cell(min((r for r in scored if r["seed"] == s), key=lambda r: r["validation_score"])))
                     for s in seeds}
    complete = len(seeds) >= min_seeds
    chosen = min(mean, key=mean.get) if complete else None
    return {"epochs": epochs, "cells": [list(c) for c in sorted(wanted)], "seeds_complete": seeds,
            "complete": complete, "runs": runs,
            "mean_validation_score": [{"batch": b, "lr": lr, "score": s} for (b, lr), s in mean.items()],
            "best_cell_per_seed": best_per_seed, "chosen": None if chosen is None else list(chosen),
            "configured": None if configured is None else list(configured),
            "agrees": None if chosen is None or configured is None else chosen == tuple(configured),
            "score": "0.7 MSE + 0.3 Gaussian NLL on the tuning seed's validation split (standardised targets)"}


def attach(results: dict, check: dict, out_dir: Path) -> dict:
    """``results`` with the table ``check`` under :data:`RESULTS_KEY`, and its figure drawn into ``out_dir``."""
    from symgym.learn.tasks.iaemu.plots import plot_pilot_check

    plot_pilot_check(Path(out_dir) / "iaemu_pilot_check.png", check)
    return {**results, RESULTS_KEY: check}
