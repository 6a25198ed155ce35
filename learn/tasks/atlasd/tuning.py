"""AtlasD downstream: each model's learning rate, tuned on seeds of its own by validation error.

For each model ("steerable", "cnn") the downstream runs of the tuning seeds (``TUNING_SEEDS``; never one of the
comparison's seeds, so their training fields and initialisation are their own) are trained under the task's
convergence rule at each rate of a grid, at every training-set size. The rate with the lowest validation error
(of the kept checkpoint, on the validation fields) averaged over the sizes and the seeds that ran every rate is
chosen. If that rate lies on an edge of the starting grid, the grid is extended once past that edge (the next
rate on ``LADDER``). Test fields are never drawn here (``run_downstream(..., evaluate_test=False)``), so the
choice cannot see them.

Each (model, rate, seed) run is cached as a JSON file, so a cut-short sitting resumes:

    python -m symgym.learn.tasks.atlasd.tuning run --model steerable --rates 3e-3,1e-2   # (a second process: 3e-2)
    python -m symgym.learn.tasks.atlasd.tuning run --model cnn
    python -m symgym.learn.tasks.atlasd.tuning extend --model steerable   # one more rate past an edge, if needed
    python -m symgym.learn.tasks.atlasd.tuning table                      # the table and the chosen rates

The table is attached to results/atlasd.json as ``downstream_tuning`` by ``seeds merge --tuning-cache``. (The
table of 2026-12-07 came from one tuning seed, 100, and 8 validation fields: cache ``results/cache/atlasd-tune``.)
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from symgym.learn.tasks.atlasd.downstream import MODEL_KINDS, run_downstream

TUNING_SEEDS = (100, 101)
CACHE = Path("results/cache/atlasd-tune2")
START_GRID = (3e-3, 1e-2, 3e-2)
#: the rates a grid may hold (half decades): an extension past an edge is the next one here
LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
#: rule fields that tuning varies; every other field of the tuning runs' rule must be the comparison's
TUNED_FIELDS = ("lr", "lr_by_model")


def check_tuning_seeds(cfg, seeds: list[int]) -> None:
    """Refuse tuning seeds that are also comparison seeds (ValueError)."""
    comparison = [s for s in seeds if s in cfg.downstream_seeds]
    if comparison:
        raise ValueError(f"the tuning seeds must not be comparison seeds {list(cfg.downstream_seeds)}, "
                         f"got {', '.join(map(str, comparison))}")


def tune_run(sim, group, cfg, model: str, lr: float, seed: int = TUNING_SEEDS[0]) -> dict:
    """One model at one rate on tuning seed ``seed``, every training-set size; validation only (no test fields)."""
    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")
    check_tuning_seeds(cfg, [seed])
    rule = replace(cfg.downstream_rule, lr_by_model={model: lr})
    clock = time.process_time()
    res = run_downstream(sim, group, cfg.downstream_sizes, (seed,), rule, cfg.downstream_test, cfg.downstream_fields,
                         data_seed=cfg.seed, only=model, evaluate_test=False)
    return {**res, "model": model, "lr": lr, "cpu_s": round(time.process_time() - clock, 1)}


def shared_rule(rule: dict) -> dict:
    """A rule (as a dict) without the fields that tuning varies."""
    return {k: v for k, v in rule.items() if k not in TUNED_FIELDS}


def extension(rates: list[float], best: float) -> float | None:
    """The rate past the grid's edge that ``best`` sits on (None: an inner rate, or the ladder ends)."""
    for r in (*rates, best):
        if not any(np.isclose(r, x) for x in LADDER):
            raise ValueError(f"rates must lie on LADDER {LADDER}, got {r}")
    idx = [int(np.argmin(np.abs(np.log(LADDER) - np.log(r)))) for r in rates]
    at = idx[int(np.argmin(np.abs(np.asarray(rates) - best)))]
    if at == min(idx) and at > 0:
        return LADDER[at - 1]
    if at == max(idx) and at < len(LADDER) - 1:
        return LADDER[at + 1]
    return None


def _row(parts: list[dict], seeds: list[int]) -> dict:
    """One model at one rate as a table row, from its runs on ``seeds``: validation error per size (mean over the
    seeds, and per seed), its mean over the sizes, best step and stopping reason per seed and size."""
    by_seed = {p["seeds"][0]: next(iter(p["models"].values())) for p in parts if p["seeds"][0] in seeds}
    val = {s: by_seed[s]["best_val_relative_mse"][0] for s in seeds}
    per_size = np.mean([val[s] for s in seeds], axis=0)
    return {"lr": parts[0]["lr"], "val_relative_mse": np.round(per_size, 6).tolist(),
            "mean_val_relative_mse": round(float(per_size.mean()), 6),
            "val_relative_mse_per_seed": {str(s): val[s] for s in seeds},
            "best_step": {str(s): by_seed[s]["best_step"][0] for s in seeds},
            "last_step": {str(s): by_seed[s]["last_step"][0] for s in seeds},
            "stopped_by": {str(s): by_seed[s]["stopped_by"][0] for s in seeds},
            "cpu_s": round(sum(p.get("cpu_s") or 0.0 for p in parts if p["seeds"][0] in seeds), 1)}


def tuning_table(parts: list[dict]) -> dict:
    """The tuning runs as one table: per model its rows (by rate), the chosen rate and whether it is on an edge.

    Per model, only the seeds that ran every one of its rates count (a partial seed would weigh some rates and
    not others). Chosen: the lowest validation error, averaged over the sizes and those seeds. Parts must share
    the sizes and the rule (bar the rate).
    """
    if not parts:
        raise ValueError("no tuning runs given")
    first = parts[0]
    for p in parts:
        if p["n_train"] != first["n_train"] or shared_rule(p["rule"]) != shared_rule(first["rule"]):
            raise ValueError(f"tuning runs differ in sizes or rule: {p['model']} at lr {p['lr']} on seed {p['seeds']}")
        if any(k.startswith("test") for m in p["models"].values() for k in m):
            raise ValueError(f"a tuning run holds test errors ({p['model']} at lr {p['lr']}): "
                             "tuning must not see test data")
    models, all_seeds = {}, set()
    for kind in MODEL_KINDS:
        mine = [p for p in parts if p["model"] == kind]
        if not mine:
            continue
        rates = sorted({p["lr"] for p in mine})
        seeds = sorted(s for s in {p["seeds"][0] for p in mine}
                       if {p["lr"] for p in mine if p["seeds"][0] == s} == set(rates))
        if not seeds:
            raise ValueError(f"{kind}: no tuning seed has run every rate {rates} yet")
        all_seeds.update(seeds)
        rows = [_row([p for p in mine if p["lr"] == lr], seeds) for lr in rates]
        best = min(rows, key=lambda r: r["mean_val_relative_mse"])
        start = [r["lr"] for r in rows if any(np.isclose(r["lr"], s) for s in START_GRID)]
        log_mean = {r["lr"]: float(np.mean(np.log([v for val in r["val_relative_mse_per_seed"].values() for v in val])))
                    for r in rows}
        models[kind] = {"rows": rows, "seeds": seeds, "chosen_lr": best["lr"],
                        "grid_extended_to": [r["lr"] for r in rows if r["lr"] not in start],
                        "chosen_on_grid_edge": best["lr"] in (rows[0]["lr"], rows[-1]["lr"]),
                        "chosen_by_geometric_mean": min(log_mean, key=log_mean.get)}
    return {"seeds": sorted(all_seeds), "n_train": first["n_train"], "rule": shared_rule(first["rule"]),
            "start_grid": list(START_GRID),
            "selection": "per model, the rate with the lowest validation relative MSE (kept checkpoint) averaged over "
                         "the training-set sizes and the tuning seeds that ran every rate; test fields are never drawn "
                         "in tuning; a best rate on an edge of the start grid extends it once past that edge",
            "models": models, "chosen_lr_by_model": {k: v["chosen_lr"] for k, v in models.items()},
            "cpu_s": round(sum(p.get("cpu_s") or 0.0 for p in parts), 1)}


def load_parts(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cache.glob("tune_*.json"))]


def run_path(cache: Path, model: str, lr: float, seed: int) -> Path:
    return cache / f"tune_{model}_lr{lr:g}_seed{seed}.json"


def _run(model: str, rates: list[float], seeds: list[int], cache: Path) -> None:
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd.config import AtlasDConfig
    from symgym.learn.tasks.atlasd.task import _planar_from_name
    from symgym.physics.pde import HeatObstacleSim

    cfg = AtlasDConfig()
    sim, group = HeatObstacleSim(cfg.pde), _planar_from_name(cfg.downstream_expected_group)
    for seed in seeds:
        for lr in rates:
            path = run_path(cache, model, lr, seed)
            if path.exists():
                cached = json.loads(path.read_text())["rule"]
                if shared_rule(cached) != shared_rule(asdict(cfg.downstream_rule)):
                    raise ValueError(f"{path} was run under rule {shared_rule(cached)}, not the config's "
                                     f"{shared_rule(asdict(cfg.downstream_rule))}: use another --cache")
                continue
            part = tune_run(sim, group, cfg, model, lr, seed)
            write_json(path, part)
            row = _row([part], [seed])
            print(f"[tune] {model} lr {lr:g} seed {seed}: val {row['val_relative_mse']} mean "
                  f"{row['mean_val_relative_mse']} best step {row['best_step']} stopped {row['stopped_by']} "
                  f"cpu {part['cpu_s']}s", flush=True)


def _extend(model: str, seeds: list[int], cache: Path) -> None:
    """Run the one extra rate past the edge that the start grid's best sits on (nothing if inner, or done)."""
    parts = [p for p in load_parts(cache) if p["model"] == model and any(np.isclose(p["lr"], s) for s in START_GRID)
             and p["seeds"][0] in seeds]
    if len(parts) < len(START_GRID) * len(seeds):
        raise ValueError(f"{model}: {len(parts)} of the start grid's {len(START_GRID)} rates x {len(seeds)} seeds are "
                         f"cached in {cache}; run them first")
    best = tuning_table(parts)["models"][model]["chosen_lr"]
    extra = extension(list(START_GRID), best)
    print(f"[tune] {model}: best of the start grid {best:g}; "
          + (f"extending to {extra:g}" if extra else "inner: no extension"), flush=True)
    if extra is not None:
        _run(model, [extra], seeds, cache)


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("run", "extend", "table"))
    ap.add_argument("--model", choices=MODEL_KINDS)
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in START_GRID))
    ap.add_argument("--seeds", default=",".join(str(s) for s in TUNING_SEEDS), help="tuning seeds, comma-separated")
    ap.add_argument("--cache", default=str(CACHE))
    args = ap.parse_args(argv)
    if args.part != "table" and args.model is None:
        ap.error(f"{args.part} needs --model")
    try:
        rates, seeds = [float(r) for r in args.rates.split(",")], [int(s) for s in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--rates and --seeds must be comma-separated numbers, got {args.rates!r} and {args.seeds!r}")
    from symgym.learn.tasks.atlasd.config import AtlasDConfig

    try:  # before anything is trained
        check_tuning_seeds(AtlasDConfig(), seeds)
    except ValueError as err:
        ap.error(str(err))
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.part == "run":
        _run(args.model, rates, seeds, cache)
    elif args.part == "extend":
        _extend(args.model, seeds, cache)
    else:
        table = tuning_table(load_parts(cache))
        for kind, m in table["models"].items():
            for r in m["rows"]:
                print(f"{kind:9s} lr {r['lr']:<7g} mean val {r['mean_val_relative_mse']:.5f}  "
                      f"per size {r['val_relative_mse']}  "
                      f"seeds {m['seeds']}")
        print("chosen:", table["chosen_lr_by_model"])


if __name__ == "__main__":
    main()
