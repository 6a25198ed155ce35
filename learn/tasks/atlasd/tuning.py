"""AtlasD downstream: each model's learning rate, tuned on a seed of its own by validation error.

For each model ("steerable", "cnn") the downstream runs of one tuning seed (``TUNING_SEED``; never one of the
comparison's seeds, so its training fields and initialisation are its own) are trained under the task's
convergence rule at each rate of a grid, at every training-set size. The rate with the lowest validation error
(of the kept checkpoint, on the validation fields) averaged over the sizes is chosen. If that rate lies on an
edge of the starting grid, the grid is extended once past that edge (the next rate on ``LADDER``). Test fields
are never drawn here (``run_downstream(..., evaluate_test=False)``), so the choice cannot see them.

Each (model, rate) run is cached as a JSON file, so a cut-short sitting resumes:

    python -m symgym.learn.tasks.atlasd.tuning run --model steerable --rates 3e-3,1e-2   # (a second process: 3e-2)
    python -m symgym.learn.tasks.atlasd.tuning run --model cnn
    python -m symgym.learn.tasks.atlasd.tuning extend --model steerable   # one more rate past an edge, if needed
    python -m symgym.learn.tasks.atlasd.tuning table                      # the table and the chosen rates

The table is attached to results/atlasd.json as ``downstream_tuning`` by ``seeds merge --tuning-cache``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from symgym.learn.tasks.atlasd.downstream import MODEL_KINDS, run_downstream

TUNING_SEED = 100
CACHE = Path("results/cache/atlasd-tune")
START_GRID = (3e-3, 1e-2, 3e-2)
#: the rates a grid may hold (half decades): an extension past an edge is the next one here
LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
#: rule fields that tuning varies; every other field of the tuning runs' rule must be the comparison's
TUNED_FIELDS = ("lr", "lr_by_model")


def tune_run(sim, group, cfg, model: str, lr: float, seed: int = TUNING_SEED) -> dict:
    """One model at one rate on the tuning seed, every training-set size; validation only (no test fields)."""
    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")
    if seed in cfg.downstream_seeds:
        raise ValueError(f"the tuning seed must not be a comparison seed {cfg.downstream_seeds}, got {seed}")
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


def _row(part: dict) -> dict:
    """One (model, rate) run as a table row: validation error, best step and stopping reason per size."""
    (m,) = part["models"].values()
    val = m["best_val_relative_mse"][0]
    return {"lr": part["lr"], "val_relative_mse": val, "mean_val_relative_mse": round(float(np.mean(val)), 6),
            "best_step": m["best_step"][0], "last_step": m["last_step"][0], "stopped_by": m["stopped_by"][0],
            "cpu_s": part.get("cpu_s")}


def tuning_table(parts: list[dict]) -> dict:
    """The tuning runs as one table: per model its rows (by rate), the chosen rate and whether it is on an edge.

    Chosen: the lowest mean validation error over the sizes. Parts must share the seed, sizes and rule (bar rate).
    """
    if not parts:
        raise ValueError("no tuning runs given")
    first = parts[0]
    for p in parts:
        if p["seeds"] != first["seeds"] or p["n_train"] != first["n_train"] or shared_rule(p["rule"]) != shared_rule(first["rule"]):
            raise ValueError(f"tuning runs differ in seed, sizes or rule: {p['model']} at lr {p['lr']}")
        if any(k.startswith("test") for m in p["models"].values() for k in m):
            raise ValueError(f"a tuning run holds test errors ({p['model']} at lr {p['lr']}): tuning must not see test data")
    models = {}
    for kind in MODEL_KINDS:
        rows = sorted((_row(p) for p in parts if p["model"] == kind), key=lambda r: r["lr"])
        if not rows:
            continue
        best = min(rows, key=lambda r: r["mean_val_relative_mse"])
        start = [r["lr"] for r in rows if any(np.isclose(r["lr"], s) for s in START_GRID)]
        models[kind] = {"rows": rows, "chosen_lr": best["lr"],
                        "grid_extended_to": [r["lr"] for r in rows if r["lr"] not in start],
                        "chosen_on_grid_edge": best["lr"] in (rows[0]["lr"], rows[-1]["lr"]),
                        "chosen_by_geometric_mean": min(rows, key=lambda r: float(np.mean(np.log(r["val_relative_mse"]))))["lr"]}
    return {"seed": first["seeds"][0], "n_train": first["n_train"], "rule": shared_rule(first["rule"]),
            "start_grid": list(START_GRID),
            "selection": "per model, the rate with the lowest validation relative MSE (kept checkpoint) averaged over "
                         "the training-set sizes; test fields are never drawn in tuning; a best rate on an edge of the "
                         "start grid extends it once past that edge",
            "models": models, "chosen_lr_by_model": {k: v["chosen_lr"] for k, v in models.items()},
            "cpu_s": round(sum(p.get("cpu_s") or 0.0 for p in parts), 1)}


def load_parts(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cache.glob("tune_*.json"))]


def _run(model: str, rates: list[float], cache: Path) -> None:
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd.config import AtlasDConfig
    from symgym.learn.tasks.atlasd.task import _planar_from_name
    from symgym.physics.pde import HeatObstacleSim

    cfg = AtlasDConfig()
    sim, group = HeatObstacleSim(cfg.pde), _planar_from_name(cfg.downstream_expected_group)
    for lr in rates:
        path = cache / f"tune_{model}_lr{lr:g}.json"
        if path.exists():
            cached = json.loads(path.read_text())["rule"]
            if shared_rule(cached) != shared_rule(asdict(cfg.downstream_rule)):
                raise ValueError(f"{path} was run under rule {shared_rule(cached)}, not the config's "
                                 f"{shared_rule(asdict(cfg.downstream_rule))}: use another --cache")
            continue
        part = tune_run(sim, group, cfg, model, lr)
        write_json(path, part)
        row = _row(part)
        print(f"[tune] {model} lr {lr:g}: val {row['val_relative_mse']} mean {row['mean_val_relative_mse']} "
              f"best step {row['best_step']} stopped {row['stopped_by']} cpu {part['cpu_s']}s", flush=True)


def _extend(model: str, cache: Path) -> None:
    """Run the one extra rate past the edge that the start grid's best sits on (nothing if inner, or done)."""
    parts = [p for p in load_parts(cache) if p["model"] == model and any(np.isclose(p["lr"], s) for s in START_GRID)]
    if len(parts) < len(START_GRID):
        raise ValueError(f"{model}: {len(parts)} of the start grid's {len(START_GRID)} rates are cached in {cache}; run them first")
    best = tuning_table(parts)["models"][model]["chosen_lr"]
    extra = extension(list(START_GRID), best)
    print(f"[tune] {model}: best of the start grid {best:g}; " + (f"extending to {extra:g}" if extra else "inner: no extension"), flush=True)
    if extra is not None:
        _run(model, [extra], cache)


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("run", "extend", "table"))
    ap.add_argument("--model", choices=MODEL_KINDS)
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in START_GRID))
    ap.add_argument("--cache", default=str(CACHE))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.part != "table" and args.model is None:
        ap.error(f"{args.part} needs --model")
    if args.part == "run":
        _run(args.model, [float(r) for r in args.rates.split(",")], cache)
    elif args.part == "extend":
        _extend(args.model, cache)
    else:
        table = tuning_table(load_parts(cache))
        for kind, m in table["models"].items():
            for r in m["rows"]:
                print(f"{kind:9s} lr {r['lr']:<7g} mean val {r['mean_val_relative_mse']:.5f}  per size {r['val_relative_mse']}  "
                      f"stopped {r['stopped_by']}")
        print("chosen:", table["chosen_lr_by_model"])


if __name__ == "__main__":
    main()
