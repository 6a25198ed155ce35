"""Benchmarks: measurements, not tests.

A benchmark is a module under ``learn/bench/`` exposing

    def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict

It compares a method against its baseline *in the same run*, reports ratios, writes a PNG
``out_dir/NAME.png`` and returns a JSON-serialisable dict that ``symgym bench NAME``
writes to ``out_dir/NAME.json`` (atomically). The README quotes these JSON files.
"""
from __future__ import annotations

import importlib
import platform
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from learn.io import write_json

BENCHES: dict[str, str] = {
    "env-speed": "learn.bench.env_speed",
    "equivariance": "learn.bench.equivariance",
    "mppi": "learn.bench.mppi",
    "sac": "learn.bench.sac",
    "transporter": "learn.bench.transporter",
    "hep": "learn.bench.hep",
    "ros-latency": "learn.bench.ros_latency",
}


class UnknownBenchError(KeyError):
    def __str__(self) -> str:
        return f"unknown benchmark {self.args[0]!r}; known: {', '.join(sorted(BENCHES))}"


def load_bench(name: str) -> ModuleType:
    if name not in BENCHES:
        raise UnknownBenchError(name)
    return importlib.import_module(BENCHES[name])


def run_bench(name: str, out_dir: str | Path = "results", quick: bool = False, seed: int = 0) -> dict[str, Any]:
    module = load_bench(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = module.run(out_dir=out_dir, quick=quick, seed=seed)
    results = {
        "bench": name,
        "config": {"quick": quick, "seed": seed},
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "wall_time_s": round(time.perf_counter() - start, 2),
        **results,
    }
    write_json(out_dir / f"{name}.json", results)
    return results
