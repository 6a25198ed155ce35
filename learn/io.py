"""Output for the run layer and above: figures, plus the atomic writers of :mod:`symgym.agents.io`."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from symgym.agents.io import atomic_path, dumps, json_default, save_torch, write_json, write_text

__all__ = ["atomic_path", "dumps", "json_default", "run_and_record", "save_figure", "save_torch", "write_json",
           "write_text"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)


def run_and_record(kind: str, name: str, run: Callable[..., dict[str, Any]], out_dir: str | Path, quick: bool,
                   seed: int) -> dict[str, Any]:
    """Call a task's or bench's ``run(out_dir=, quick=, seed=)`` and write ``out_dir/NAME.json`` with a header
    (``kind: name``, config, machine, wall time) before its results; returns what was written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run(out_dir=out_dir, quick=quick, seed=seed)
    results = {kind: name, "config": {"quick": quick, "seed": seed},
               "machine": {"python": platform.python_version(), "processor": platform.machine()},
               "wall_time_s": round(time.perf_counter() - start, 2), **results}
    write_json(out_dir / f"{name}.json", results)
    return results
