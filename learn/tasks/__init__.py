"""Scientific tasks: the pattern every scientific model follows.

A task is a module under ``learn/tasks/`` exposing

    def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results")) -> dict

It generates its own data with a seeded simulator from ``physics/`` (no downloads),
trains a model and its baselines, evaluates a metric, writes its PNG figures into
``out_dir`` (named ``NAME*.png``, via :func:`learn.io.save_figure`) and returns a
JSON-serialisable results dict. ``symgym task NAME`` calls ``run`` and writes the dict
to ``out_dir/NAME.json`` atomically, adding the run's config and wall time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from symgym.agents.registry import Registry
from symgym.learn.io import run_and_record

#: task name -> module implementing ``run``
TASKS = Registry("task", {
    "dhn": "symgym.learn.tasks.dhn.task",
    "matrixnet": "symgym.learn.tasks.matrixnet.task",
    "iaemu": "symgym.learn.tasks.iaemu.task",
    "iaemu-halotools": "symgym.learn.tasks.iaemu.halotools",
    "atlasd": "symgym.learn.tasks.atlasd.task",
    "relaxed-e3": "symgym.learn.tasks.relaxed_e3.task",
    "mesh": "symgym.learn.tasks.mesh.task",
})


def run_task(name: str, quick: bool = False, seed: int = 0, out_dir: str | Path = "results") -> dict[str, Any]:
    """Run task ``name`` and write ``out_dir/NAME.json``; returns the results dict."""
    return run_and_record("task", name, TASKS.load(name).run, out_dir, quick, seed)
