"""Run the full ``dhn`` task as one process per (system, seed), then assemble ``results/dhn.json``.

Same numbers as ``symgym task dhn`` (each part calls :func:`symgym.learn.tasks.dhn.task.run_seed` with
the default config), but the parts can run side by side::

    python -m symgym.learn.tasks.dhn.parallel part pendulum 0 /tmp/dhn_parts
    ...                                                     # every system x seed
    python -m symgym.learn.tasks.dhn.parallel assemble /tmp/dhn_parts results
"""
from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from symgym.learn.io import atomic_path, write_json
from symgym.learn.tasks.dhn.task import DHNConfig, assemble, run_seed


def run_part(system: str, seed: int, parts: Path, cfg: DHNConfig | None = None) -> Path:
    torch.set_num_threads(1)
    cfg = cfg or DHNConfig()
    cfg.validate()
    start = time.perf_counter()
    metrics, curves = run_seed(system, seed, cfg)
    parts.mkdir(parents=True, exist_ok=True)
    path = parts / f"{system}_{seed}.pkl"
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump({"metrics": metrics, "curves": curves, "seconds": time.perf_counter() - start}, handle)
    return path


def assemble_parts(parts: Path, out_dir: Path, cfg: DHNConfig | None = None) -> dict:
    cfg = cfg or DHNConfig()
    per_system, seconds = {}, 0.0
    for system in cfg.systems:
        seeds = list(range(cfg.n_seeds))
        loaded = []
        for seed in seeds:
            path = parts / f"{system}_{seed}.pkl"
            if not path.exists():
                raise FileNotFoundError(f"missing part {path}: run `part {system} {seed}` first")
            loaded.append(pickle.loads(path.read_bytes()))
        seconds += sum(part["seconds"] for part in loaded)
        curves = {kind: {name: np.mean([p["curves"][kind][name] for p in loaded], 0) for name in loaded[0]["curves"][kind]}
                  for kind in ("rmse", "energy")}
        per_system[system] = {"system": system, "seeds": seeds, "curves": curves,
                              "per_seed": {s: p["metrics"] for s, p in zip(seeds, loaded)}}
    results = {"task": "dhn", "config": {"quick": False, "seed": 0, "run_as": "dhn_parallel parts"},
               "wall_time_s": round(seconds, 1), **assemble(per_system, cfg, out_dir)}
    write_json(out_dir / "dhn.json", results)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    part = sub.add_parser("part")
    part.add_argument("system")
    part.add_argument("seed", type=int)
    part.add_argument("parts", type=Path)
    together = sub.add_parser("assemble")
    together.add_argument("parts", type=Path)
    together.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "part":
        print(run_part(args.system, args.seed, args.parts))
    else:
        results = assemble_parts(args.parts, args.out_dir)
        for entry in results["evidence"]:
            print(f"{entry['claim']}: {entry['method_value']:.4g} vs {entry['baseline_value']:.4g} -> {entry['holds']}")


if __name__ == "__main__":
    main()
