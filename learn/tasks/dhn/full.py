"""The DHN study at the reference budget (issue #35 item 1): tuning, seeds, ledger; resumable across sittings.

``DHNConfig.reference()`` is the scale (width 128, 128-d codes, 1,000 training trajectories, 6,400 iterations,
64 test trajectories). For each system in turn (the single pendulum first, then the double pendulum and the
spring chain) the runner

1. tunes the learning rate of every model on a tuning seed that is never an evaluation seed (grid
   ``lr_grid``; the choice is the lowest final held-out rollout error, see ``training.py``);
2. trains every model at its chosen rate on each evaluation seed and scores it on the test set, writing one
   result JSON per (model, seed) as it finishes;
3. once every (model, seed) of a system is in, writes the ledger ``dhn.json`` (the task's format: per system
   and metric, DHN vs HNN and DHN vs plain, Holm across the family), ``dhn.png`` and the learning curves
   ``dhn_learning_curves.png`` for every finished system.

Data live under ``results/cache/dhn-full/`` (ignored by git; regenerated in seconds), the small result JSONs
under ``results/dhn-full/``. A unit's checkpoint lives under ``results/carry/dhn-full/`` (tracked), because a unit
outlasts a sitting and a fresh checkout holds only what git holds: commit an unfinished unit's checkpoint at the
end of a sitting and the next one continues it; a finished unit's checkpoint is deleted once its result JSON is
written. Killing the runner loses at most ``checkpoint_every`` iterations of one unit; starting it again continues.
``--part i/k`` splits the units over k processes (one torch thread each)::

    python -m symgym.learn.tasks.dhn.full time              # 50 iterations per model -> the CPU-hour estimate
    python -m symgym.learn.tasks.dhn.full run --system pendulum [--part 0/2]
    python -m symgym.learn.tasks.dhn.full status            # progress, chosen rates, CPU-hours done and left
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from symgym.learn.io import atomic_path, save_figure, write_json
from symgym.learn.tasks.dhn.plots import plot_learning_curves
from symgym.learn.tasks.dhn.task import (
    SYSTEM_NAMES, DHNConfig, assemble, build_model, make_windows, new_codes, train_step,
)
from symgym.learn.tasks.dhn.training import (
    CurveSettings, Trained, Unit, config_key, evaluate_unit, heldout_metrics, load_data, lr_tag, train_unit,
)
from symgym.physics.hamiltonian import get_system


@dataclass
class Plan:
    """What the full study runs and where it keeps it."""

    config: DHNConfig = field(default_factory=DHNConfig.reference)
    """model, data and training settings (the learning rate in it is ignored: each unit has its own)"""
    systems: tuple[str, ...] = SYSTEM_NAMES
    """systems in the order they are run (the single pendulum first)"""
    models: tuple[str, ...] = ("dhn", "hnn", "plain")
    """models compared; the midpoint ablation is left out at this scale to save CPU time (add it here)"""
    lr_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    """learning rates tried per model on the tuning seed (1e-4 is the reference's)"""
    tuning_seed: int = 100
    """the seed whose data tune the learning rates; never an evaluation seed"""
    eval_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """evaluation seeds (the ledger calls a comparison with fewer than 5 "underpowered")"""
    curve: CurveSettings = field(default_factory=CurveSettings)
    """checkpoint and learning-curve cadence, validation trajectories"""
    cache: Path = Path("results/cache/dhn-full")
    """data (ignored by git: regenerated from the seeds in seconds)"""
    checkpoints: Path = Path("results/carry/dhn-full")
    """unfinished units' checkpoints (~8 MB each, tracked: committed at the end of a sitting so the next continues)"""
    results: Path = Path("results/dhn-full")
    """per-unit result JSONs, tuning choices and the timing measurement (small, committed)"""
    out_dir: Path = Path("results")
    """where the ledger ``dhn.json`` and the figures go"""

    def validate(self) -> None:
        self.config.validate()
        self.curve.validate()
        for name in self.systems:
            get_system(name)
        if self.tuning_seed in self.eval_seeds:
            raise ValueError(f"tuning seed {self.tuning_seed} is also an evaluation seed {list(self.eval_seeds)}")
        if "dhn" not in self.models:
            raise ValueError(f"models {self.models} must include 'dhn' (every claim compares it)")
        if not self.lr_grid or min(self.lr_grid) <= 0:
            raise ValueError(f"lr_grid must be non-empty and positive, got {self.lr_grid}")

    @property
    def key(self) -> str:
        return config_key(self.config)

    def tuning_unit(self, system: str, model: str, lr: float) -> Unit:
        return Unit(system, model, self.tuning_seed, lr,
                    self.checkpoints / self.key / system / "tuning" / f"{model}_lr{lr_tag(lr)}")

    def eval_unit(self, system: str, model: str, seed: int, lr: float) -> Unit:
        return Unit(system, model, seed, lr,
                    self.checkpoints / self.key / system / f"{model}_s{seed}_lr{lr_tag(lr)}")

    def tuning_result(self, system: str, model: str, lr: float) -> Path:
        return self.results / system / "tuning" / f"{model}_lr{lr_tag(lr)}.json"

    def seed_result(self, system: str, model: str, seed: int) -> Path:
        return self.results / system / f"{model}_s{seed}.json"


# ----------------------------------------------------------------------------- reading what is done


def _read(path: Path, key: str) -> dict | None:
    """A result JSON written under config ``key``, or None (absent, or from other settings: stale)."""
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("config_key") == key else None


def chosen_lrs(plan: Plan, system: str) -> dict[str, float]:
    """The tuned learning rate of every model whose whole grid has finished on the tuning seed."""
    chosen = {}
    for model in plan.models:
        finals = {}
        for lr in plan.lr_grid:
            result = _read(plan.tuning_result(system, model, lr), plan.key)
            if result is None:
                break
            finals[lr] = result["final"]["val_rmse"]
        else:
            chosen[model] = min(finals, key=lambda lr: (finals[lr], lr))  # ties: the smaller rate
    return chosen


def seed_result(plan: Plan, system: str, model: str, seed: int, chosen: dict[str, float]) -> dict | None:
    """A finished (model, seed) result, if it was trained at the rate tuning now chooses (a grid changed since
    makes it stale)."""
    result = _read(plan.seed_result(system, model, seed), plan.key)
    return result if result is not None and result["lr"] == chosen.get(model) else None


def system_done(plan: Plan, system: str) -> bool:
    chosen = chosen_lrs(plan, system)
    return all(seed_result(plan, system, m, s, chosen) for m in plan.models for s in plan.eval_seeds)


# ----------------------------------------------------------------------------- running


def _mine(index: int, part: tuple[int, int]) -> bool:
    return index % part[1] == part[0]


def run_tuning_unit(plan: Plan, system: str, model: str, lr: float) -> dict:
    unit = plan.tuning_unit(system, model, lr)
    data = load_data(plan.cache, system, plan.tuning_seed, plan.config, plan.curve.n_val, with_test=False)
    trained = train_unit(unit, data, plan.config, plan.curve)
    result = {"config_key": plan.key, "system": system, "model": model, "seed": plan.tuning_seed, "lr": lr,
              "final": trained.curve[-1], "curve": trained.curve, "train_seconds": round(trained.train_seconds, 1)}
    write_json(plan.tuning_result(system, model, lr), result)
    shutil.rmtree(unit.folder)  # the result holds what is kept; the checkpoint need not be carried any more
    return result


def run_eval_unit(plan: Plan, system: str, model: str, seed: int, lr: float) -> dict:
    unit = plan.eval_unit(system, model, seed, lr)
    data = load_data(plan.cache, system, seed, plan.config, plan.curve.n_val)
    trained: Trained = train_unit(unit, data, plan.config, plan.curve)
    metrics, curves = evaluate_unit(unit, trained, data, plan.config)
    result = {"config_key": plan.key, "system": system, "model": model, "seed": seed, "lr": lr,
              "metrics": metrics, "curves": curves, "learning_curve": trained.curve}
    write_json(plan.seed_result(system, model, seed), result)
    shutil.rmtree(unit.folder)
    return result


def run_system(plan: Plan, system: str, part: tuple[int, int] = (0, 1), log=print) -> bool:
    """Every unit of ``system`` that belongs to ``part``, tuning first; True when the whole system is done."""
    torch.set_num_threads(1)
    plan.validate()
    index = 0
    for model in plan.models:
        for lr in plan.lr_grid:
            if _mine(index, part) and _read(plan.tuning_result(system, model, lr), plan.key) is None:
                log(f"[dhn-full] {system}: tuning {model} lr {lr:g} (seed {plan.tuning_seed})")
                run_tuning_unit(plan, system, model, lr)
            index += 1
    chosen = chosen_lrs(plan, system)
    if chosen:
        write_json(plan.results / system / "tuning.json", {"config_key": plan.key, "chosen_lr": chosen,
                                                           "grid": list(plan.lr_grid), "seed": plan.tuning_seed})
    for model in plan.models:
        for seed in plan.eval_seeds:
            if _mine(index, part) and seed_result(plan, system, model, seed, chosen) is None:
                if model not in chosen:
                    log(f"[dhn-full] {system}: {model} seed {seed} waits for its tuning (another part?)")
                else:
                    log(f"[dhn-full] {system}: {model} seed {seed} at lr {chosen[model]:g}")
                    run_eval_unit(plan, system, model, seed, chosen[model])
            index += 1
    return system_done(plan, system)


def keep_small_budget_ledger(out_dir: Path) -> Path | None:
    """Copy the small-budget ledger (``symgym task dhn``: all three systems, undertrained) that ``dhn.json`` holds
    to ``dhn-previous.json``, its figure to ``dhn-previous.png``, before the first reference-budget ledger replaces
    it; the copy's path, or None when ``dhn.json`` is absent or already a reference-budget ledger."""
    ledger = out_dir / "dhn.json"
    if not ledger.exists():
        return None
    old = json.loads(ledger.read_text())
    if "plan" in old:
        return None
    figure = out_dir / Path(old.get("figure", "dhn.png")).name
    if figure.exists():
        with atomic_path(out_dir / "dhn-previous.png") as tmp:
            shutil.copyfile(figure, tmp)
        old["figure"] = str(out_dir / "dhn-previous.png")
    return write_json(out_dir / "dhn-previous.json", {**old, "superseded_by": "dhn.json (the reference budget)"})


def write_ledger(plan: Plan) -> dict | None:
    """``dhn.json`` (+ figures) over every finished system; None when none has finished."""
    per_system, learning, chosen = {}, {}, {}
    for system in plan.systems:
        if not system_done(plan, system):
            continue
        chosen[system] = chosen_lrs(plan, system)
        rows = {s: {m: seed_result(plan, system, m, s, chosen[system]) for m in plan.models} for s in plan.eval_seeds}
        per_seed = {}
        for seed, by_model in rows.items():
            merged = dict(next(iter(by_model.values()))["metrics"])
            for model, result in by_model.items():
                merged[model] = result["metrics"][model]
            per_seed[seed] = merged
        curves = {}
        for kind in ("rmse", "energy"):
            names = list(plan.models) + (["true simulator"] if kind == "energy" else [])
            source = {n: plan.models[0] if n == "true simulator" else n for n in names}  # every row holds the truth
            curves[kind] = {n: np.mean([np.asarray(rows[s][source[n]]["curves"][kind][n], dtype=float)
                                        for s in plan.eval_seeds], 0) for n in names}
        per_system[system] = {"system": system, "seeds": list(plan.eval_seeds), "per_seed": per_seed, "curves": curves}
        learning[system] = {m: {"seeds": [rows[s][m]["learning_curve"] for s in plan.eval_seeds],
                                "tuning": {lr: _read(plan.tuning_result(system, m, lr), plan.key)["curve"]
                                           for lr in plan.lr_grid}} for m in plan.models}
    if not per_system:
        return None
    keep_small_budget_ledger(plan.out_dir)
    curves_path = plan.out_dir / "dhn_learning_curves.png"
    save_figure(plot_learning_curves(learning, chosen), curves_path)
    results = {"task": "dhn", "config": {"quick": False, "run_as": "python -m symgym.learn.tasks.dhn.full"},
               "plan": {"config_key": plan.key, "models": list(plan.models), "lr_grid": list(plan.lr_grid),
                        "tuning_seed": plan.tuning_seed, "eval_seeds": list(plan.eval_seeds),
                        "curve": dataclasses.asdict(plan.curve), "chosen_lr": chosen,
                        "systems_pending": [s for s in plan.systems if s not in per_system]},
               "learning_curves_figure": str(curves_path),
               **assemble(per_system, plan.config, plan.out_dir, plan.models)}
    write_json(plan.out_dir / "dhn.json", results)
    return results


def run(plan: Plan, systems: tuple[str, ...] | None = None, part: tuple[int, int] = (0, 1), log=print) -> dict | None:
    """Run ``systems`` (default: the plan's, in order) and write the ledger over every finished system."""
    for system in systems or plan.systems:
        if system not in plan.systems:
            raise ValueError(f"system {system!r} is not in the plan {plan.systems}")
        if not run_system(plan, system, part, log):
            log(f"[dhn-full] {system}: not finished in this process (other parts still running?)")
    return write_ledger(plan)


# ----------------------------------------------------------------------------- cost


def measure_cost(plan: Plan, iters: int = 50, system: str = "pendulum", log=print) -> dict:
    """Seconds per training iteration, per held-out evaluation and per code-fit iteration, one thread, per model.

    Seconds are this process's CPU time (``time.process_time``), which a machine shared with other jobs inflates
    far less than wall time; the wall time of the training iterations is recorded beside it.
    """
    torch.set_num_threads(1)
    cfg = plan.config
    data = load_data(plan.cache, system, plan.tuning_seed, cfg, plan.curve.n_val, with_test=False)
    windows, index = make_windows(data.norm.encode(data.train.observations), cfg.block_size)
    per_model = {}
    for model in plan.models:
        torch.manual_seed(0)
        network = build_model(model, 2 * get_system(system).dof, cfg)
        codes = new_codes(cfg.n_train, cfg.latent_dim)
        optimizer = torch.optim.Adam([{"params": codes.parameters(), "lr": cfg.code_lr},
                                      {"params": network.parameters(), "lr": cfg.lr}])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.train_iters)
        generator = torch.Generator().manual_seed(0)
        for _ in range(3):  # warm-up: allocator, autograd graph caches
            train_step(network, codes, optimizer, schedule, windows, index, cfg, generator)
        start, wall = time.process_time(), time.perf_counter()
        for _ in range(iters):
            train_step(network, codes, optimizer, schedule, windows, index, cfg, generator)
        train_iter = (time.process_time() - start) / iters
        train_iter_wall = (time.perf_counter() - wall) / iters
        start = time.process_time()
        heldout_metrics(network, model, data, cfg, plan.curve.fit_iters, 0)
        heldout = time.process_time() - start
        start = time.process_time()
        heldout_metrics(network, model, data, cfg, 1, 0)
        rollout_s = time.process_time() - start  # one fit iteration plus the rollout
        fit_iter = max(heldout - rollout_s, 0.0) / max(plan.curve.fit_iters - 1, 1)
        per_model[model] = {"train_iter_s": round(train_iter, 4), "train_iter_wall_s": round(train_iter_wall, 4),
                            "heldout_eval_s": round(heldout, 2),
                            "fit_iter_s": round(fit_iter, 4), "heldout_rollout_s": round(rollout_s, 3)}
        log(f"[dhn-full] {model}: {train_iter:.3f} CPU s/iteration ({train_iter_wall:.3f} s wall), "
            f"held-out evaluation {heldout:.1f} CPU s")
    return {"config_key": plan.key, "system": system, "iters": iters, "threads": 1, "batch": cfg.batch, "clock": "cpu",
            "machine": {"processor": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_1min": round(os.getloadavg()[0], 2)},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "models": per_model}


def unit_seconds(plan: Plan, timing: dict, model: str, final_eval: bool) -> tuple[float, float]:
    """Estimated seconds of one unit: ``(training with its curve points, the test evaluation)``; the second is 0
    for tuning units.

    The test evaluation is extrapolated from the held-out one: code fitting at the measured rate for
    ``fit_iters``, rollouts scaled by steps (horizon / train_length) and trajectories (n_test / n_val),
    super-resolution counted as one more such rollout.
    """
    cfg, t = plan.config, timing["models"][model]
    points = math.ceil(cfg.train_iters / plan.curve.eval_every)
    training = cfg.train_iters * t["train_iter_s"] + points * t["heldout_eval_s"]
    if not final_eval:
        return training, 0.0
    rollout = t["heldout_rollout_s"] * (cfg.horizon / cfg.train_length) * (cfg.n_test / plan.curve.n_val)
    return training, cfg.fit_iters * t["fit_iter_s"] + 2 * rollout


def status(plan: Plan, timing_path: Path | None = None) -> dict[str, Any]:
    """Progress per system and unit, the chosen learning rates, and CPU-hours (estimated) in all and left."""
    timing_path = timing_path or plan.results / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else None
    report: dict[str, Any] = {"config_key": plan.key, "systems": {}}
    total = left = 0.0
    for system in plan.systems:
        system_total = system_left = 0.0
        chosen = chosen_lrs(plan, system)
        units = [(m, plan.tuning_seed, lr, plan.tuning_unit(system, m, lr), plan.tuning_result(system, m, lr), False)
                 for m in plan.models for lr in plan.lr_grid]
        units += [(m, s, chosen.get(m), plan.eval_unit(system, m, s, chosen[m]) if m in chosen else None,
                   plan.seed_result(system, m, s), True) for m in plan.models for s in plan.eval_seeds]
        rows = []
        for model, seed, lr, unit, result, final in units:
            finished = (_read(result, plan.key) is not None if not final
                        else seed_result(plan, system, model, seed, chosen) is not None)
            progress = unit.progress() if unit is not None else {"iteration": 0}
            fraction = 1.0 if finished else progress["iteration"] / plan.config.train_iters
            curve = progress.get("curve") or [{}]
            rows.append({"model": model, "seed": seed, "lr": lr, "finished": finished,
                         "iteration": plan.config.train_iters if finished else progress["iteration"],
                         "val_rmse": curve[-1].get("val_rmse")})
            if timing is not None:
                training, evaluation = unit_seconds(plan, timing, model, final)
                system_total += training + evaluation
                system_left += 0.0 if finished else training * (1 - fraction) + evaluation
        total, left = total + system_total, left + system_left
        edge = [m for m, lr in chosen.items() if lr in (min(plan.lr_grid), max(plan.lr_grid)) and len(plan.lr_grid) > 1]
        report["systems"][system] = {"chosen_lr": chosen, "lr_on_grid_edge": edge, "done": system_done(plan, system),
                                     "units_finished": sum(r["finished"] for r in rows), "units": len(rows),
                                     "rows": rows}
        if timing is not None:
            report["systems"][system]["cpu_hours"] = {"total": round(system_total / 3600, 1),
                                                      "left": round(system_left / 3600, 1)}
    if timing is not None:
        report["cpu_hours_total"] = round(total / 3600, 1)
        report["cpu_hours_left"] = round(left / 3600, 1)
        report["timing"] = timing
    return report


def format_status(report: dict[str, Any]) -> str:
    lines = [f"DHN full study (config {report['config_key']})"]
    for system, entry in report["systems"].items():
        lines.append(f"  {system}: {entry['units_finished']}/{entry['units']} units finished"
                     f"{' (ledger ready)' if entry['done'] else ''}; chosen lr {entry['chosen_lr'] or '-'}"
                     + (f"; ON THE GRID EDGE: {entry['lr_on_grid_edge']}" if entry["lr_on_grid_edge"] else "")
                     + (f"; {entry['cpu_hours']['left']} of {entry['cpu_hours']['total']} CPU-hours left"
                        if "cpu_hours" in entry else ""))
        for row in entry["rows"]:
            if not row["finished"] and row["iteration"]:
                held_out = "" if row["val_rmse"] is None else f", held-out rollout error {row['val_rmse']:.3g}"
                lines.append(f"    running/paused: {row['model']} seed {row['seed']} lr {row['lr']:g} "
                             f"at iteration {row['iteration']}{held_out}")
    if "cpu_hours_total" in report:
        timing = report["timing"]
        per_iter = ", ".join(f"{m} {t['train_iter_s']:.3f} s" for m, t in timing["models"].items())
        lines.append(f"  cost (one thread, CPU time; per iteration {per_iter}; measured {timing['measured_at']} "
                     f"at load {timing['machine']['load_average_1min']}): "
                     f"{report['cpu_hours_total']} CPU-hours in all, {report['cpu_hours_left']} left"
                     + ("" if timing["config_key"] == report["config_key"] else
                        f" (TIMED FOR CONFIG {timing['config_key']}, NOT THIS ONE: rerun `time`)"))
    else:
        lines.append("  cost: not measured yet (run `python -m symgym.learn.tasks.dhn.full time`)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def _part(text: str) -> tuple[int, int]:
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part must look like i/k, got {text!r}") from None
    if not 0 <= i < k:
        raise argparse.ArgumentTypeError(f"--part i/k needs 0 <= i < k, got {text!r}")
    return i, k


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="train what is missing (tuning first), write per-unit results and the ledger")
    go.add_argument("--system", action="append", choices=SYSTEM_NAMES, help="only these systems (repeatable)")
    go.add_argument("--part", type=_part, default=(0, 1), help="i/k: this process runs every k-th unit from i")
    sub.add_parser("status", help="progress, chosen learning rates and the CPU-hour estimate")
    timer = sub.add_parser("time", help="time training iterations of every model at the reference scale")
    timer.add_argument("--iters", type=int, default=50)
    sub.add_parser("ledger", help="write dhn.json and the figures over the finished systems")
    args = parser.parse_args(argv)
    plan = Plan()
    plan.validate()
    if args.command == "run":
        results = run(plan, tuple(args.system) if args.system else None, args.part)
        print(format_status(status(plan)))
        if results is not None:
            print(f"ledger: {plan.out_dir / 'dhn.json'} ({len(results['evidence'])} claims)")
    elif args.command == "status":
        print(format_status(status(plan)))
    elif args.command == "time":
        timing = measure_cost(plan, args.iters)
        write_json(plan.results / "timing.json", timing)
        print(format_status(status(plan)))
    else:
        results = write_ledger(plan)
        print("no system has finished yet" if results is None else f"wrote {plan.out_dir / 'dhn.json'}")


if __name__ == "__main__":
    main()
