"""Benchmarks: measurements, not tests.

A benchmark is a module under ``learn/bench/`` exposing

    def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict

It compares a method against its baseline *in the same run*, reports ratios, writes a PNG
``out_dir/NAME.png`` and returns a JSON-serialisable dict that ``symgym bench NAME``
writes to ``out_dir/NAME.json`` (atomically). The README quotes these JSON files.

The seeded comparisons (sac, mppi, transporter, hep) are sweep specs under ``specs/``: their ``run`` runs the
sweep (``symgym sweep``, resuming) and its report (``symgym report``), so their JSON carries the claims ledger
(``evidence``); ``--quick`` runs the spec's tiny grid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from symgym.agents.registry import Registry
from symgym.learn.io import run_and_record

BENCHES = Registry("benchmark", {
    "env-speed": "symgym.learn.bench.env_speed",
    "equivariance": "symgym.learn.bench.equivariance",
    "mppi": "symgym.learn.bench.mppi",
    "sac": "symgym.learn.bench.sac",
    "transporter": "symgym.learn.bench.transporter",
    "hep": "symgym.learn.bench.hep",
    "ros-latency": "symgym.learn.bench.ros_latency",
    "sweep-overhead": "symgym.learn.bench.sweep_overhead",
    "panda-transfer": "symgym.learn.bench.panda_transfer",
    "panda-ik": "symgym.learn.bench.panda_ik",
    "sac-throughput": "symgym.learn.bench.sac:THROUGHPUT",
    "sac-layers": "symgym.learn.bench.sac_layers",
})


def run_bench(name: str, out_dir: str | Path = "results", quick: bool = False, seed: int = 0) -> dict[str, Any]:
    return run_and_record("bench", name, BENCHES.load(name).run, out_dir, quick, seed)
