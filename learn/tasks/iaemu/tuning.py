"""IAEmu: the paper model's pilot choices (learning rate, batch size) re-made at full width, on tuning seeds of its own.

The rate and batch in :class:`IAEmuConfig` (``paper_lr``, ``paper_batch_size``) came from a pilot at width 0.25
(they are also the reference code's defaults). Here the full-width model is trained at each (batch, rate) cell of
:data:`~learn.tasks.iaemu.pilot_check.CELLS` on each of ``TUNING_SEEDS`` (never a comparison seed: their
initialisation and train/validation split are their own) and scored by the selection score its training keeps its
best state by (0.7 MSE + 0.3 Gaussian NLL on the validation split, every realisation). The held-out test sets are
never loaded here. The schedule is the paper's shape (x0.1 at 1/3 and 2/3 of the epochs) over ``epochs`` epochs,
which may be fewer than the comparison's 500 to fit the CPU budget; the table records how many.

Each (seed, batch, rate) run is cached as a JSON file (and its training checkpoints, so a cut-short run resumes):

    python -m symgym.learn.tasks.iaemu.tuning run --seeds 100 --cells 128:3e-3,64:1e-2 --epochs 100
    python -m symgym.learn.tasks.iaemu.tuning table --epochs 100 [--attach results/iaemu.json]

``symgym task iaemu`` attaches the table to results/iaemu.json as ``paper_pilot_check`` when the cache holds it;
``--attach`` adds it to an assembled results file without re-running the task.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from symgym.learn.io import write_json
from symgym.learn.tasks.iaemu.config import IAEmuConfig
from symgym.learn.tasks.iaemu.pilot_check import CACHE, CELLS, CHECK_EPOCHS, TUNING_SEEDS, attach, run_path, table
from symgym.learn.tasks.iaemu.models import validation_score
from symgym.learn.tasks.iaemu.task import load_training_set, standardised_targets, train_part, validation_split


def check_runs(cfg: IAEmuConfig, seeds: list[int], cells: list[tuple[int, float]], epochs: int) -> None:
    """Refuse check runs on a comparison seed, at a batch < 1, a rate <= 0 or for fewer than one epoch (ValueError)."""
    bad = [s for s in seeds if s in range(cfg.n_seeds)]
    if bad:
        raise ValueError(f"the tuning seeds must not be comparison seeds 0..{cfg.n_seeds - 1}, got {bad}")
    if epochs < 1 or not all(b >= 1 and r > 0 for b, r in cells):
        raise ValueError(f"need epochs >= 1, batches >= 1 and rates > 0, got epochs={epochs}, cells={cells}")


def tune_run(cfg: IAEmuConfig, seed: int, batch: int, lr: float, epochs: int, train: dict, z_train: np.ndarray,
             cache: Path = CACHE) -> dict:
    """Train the paper model (``cfg``'s width) with minibatches of ``batch`` at rate ``lr`` for ``epochs`` on
    tuning seed ``seed``; its best validation score. Cached: a finished run is read back, an unfinished one
    resumes from its checkpoint."""
    check_runs(cfg, [seed], [(batch, lr)], epochs)
    path = run_path(cache, seed, batch, lr, epochs)
    if path.exists():
        return json.loads(path.read_text())
    cfg = replace(cfg, paper_lr=lr, paper_epochs=epochs, paper_batch_size=batch)
    cache.mkdir(parents=True, exist_ok=True)
    clock = time.process_time()
    models, _, _ = train_part(cfg, seed, "paper", train, z_train, checkpoint=path.with_suffix(".partial.pt"))
    val_idx, _ = validation_split(cfg, seed, len(z_train))
    score = validation_score(models["paper"], train["theta"][val_idx], z_train[val_idx], "paper")
    out = {"seed": seed, "batch": batch, "lr": lr, "epochs": epochs, "paper_width": cfg.paper_width,
           "validation_score": score, "cpu_s_this_sitting": round(time.process_time() - clock, 1)}
    write_json(path, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="IAEmu paper-model pilot check (batch, rate) at full width")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    run.add_argument("--cells", default=",".join(f"{b}:{r:g}" for b, r in CELLS), help="BATCH:RATE,...")
    run.add_argument("--epochs", type=int, default=CHECK_EPOCHS)
    show = sub.add_parser("table")
    show.add_argument("--epochs", type=int, default=CHECK_EPOCHS)
    show.add_argument("--attach", type=Path, default=None, help="results JSON to store the table in")
    args = parser.parse_args(argv)
    cfg = IAEmuConfig()
    if args.cmd == "table":
        found = table(args.epochs, configured=(cfg.paper_batch_size, cfg.paper_lr))
        if args.attach is not None:
            if found is None or not args.attach.exists():
                parser.error(f"nothing to attach: no runs at {args.epochs} epochs, or no file {args.attach}")
            write_json(args.attach, attach(json.loads(args.attach.read_text()), found, args.attach.parent))
        print(json.dumps({k: v for k, v in (found or {}).items() if k != "runs"}, indent=1))
        return
    try:
        cells = [(int(b), float(r)) for b, r in (cell.split(":") for cell in args.cells.split(","))]
    except ValueError:
        parser.error(f"--cells must be comma-separated BATCH:RATE pairs, got {args.cells!r}")
    try:  # before the training set is loaded
        check_runs(cfg, args.seeds, cells, args.epochs)
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(1)
    train = load_training_set(cfg, Path("results/cache"))
    _, z_train = standardised_targets(train)
    for seed in args.seeds:
        for batch, lr in cells:
            r = tune_run(cfg, seed, batch, lr, args.epochs, train, z_train)
            print(f"iaemu tune seed {seed} batch {batch} lr {lr:g}: validation {r['validation_score']:.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
