"""Tuning stage of the ``matrixnet`` task: every model (paper model, ablations, baselines alike)
gets the same hyper-parameter search before the multi-seed evaluation.

Per problem and per model:

1. a grid over learning rate x width (``TuningConfig.lrs`` x ``TuningConfig.hidden``; width is the
   head MLP of a MatrixNet and the hidden size of a baseline), each point trained for
   ``TuningConfig.steps[problem]`` steps on a *tuning seed* that is none of the evaluation seeds;
2. selection on in-distribution **validation** accuracy only: fresh words of lengths 1..L from an rng
   stream of their own (``[tuning_seed, 1]``; training words come from ``[tuning_seed, 0]``). No word
   longer than L is ever drawn here, so the long-word test accuracy cannot steer the choice;
3. the fit criterion: validation accuracy >= ``fit_threshold``. A chosen point below it is retrained
   with doubled steps (cosine schedule over the new length) until it fits or ``max_steps`` is reached;
   the chosen step count is the ladder entry with the best validation accuracy.

Every run records validation accuracy, accuracy on words it trained on (the overfitting check),
steps, train time and whether it was chosen. The table is written after every model to
``matrixnet_tuning.json`` and reused by a rerun with the same settings (resuming a cut run).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from symgym.learn.io import write_json
from symgym.learn.tasks.matrixnet.training import (
    TaskConfig, accuracy, build_model, make_data, train_task_model, training_pool_size,
)

# settings a cached tuning table must share with the current run to be reused
_CACHE_KEY_FIELDS = ("tuning", "train_max_len", "n_train", "batch_size", "matrix_dim", "relation_weight",
                     "relation_warmup")


def grid(tuning: Any) -> list[dict[str, float]]:
    """Grid points, learning rate outer, width inner: the same for every model."""
    return [{"lr": lr, "hidden": hidden} for lr in tuning.lrs for hidden in tuning.hidden]


def select_best(rows: list[dict[str, Any]]) -> int:
    """Index of the row with the highest validation accuracy (first on ties: the grid's order, or fewer steps)."""
    if not rows:
        raise ValueError("select_best needs at least one tuning row")
    return int(np.argmax([r["val_accuracy"] for r in rows]))


def fit_and_score(
    name: str, problem: Any, cfg: TaskConfig, train: tuple, val: tuple, lr: float, hidden: int, steps: int,
    seed: int, stage: str,
) -> dict[str, Any]:
    """Train one configuration on the tuning data; validation accuracy and accuracy on trained-on words."""
    torch.manual_seed(seed)
    model = build_model(name, problem, cfg, hidden=hidden)
    curve, train_time = train_task_model(model, train, problem.relations(), cfg, lr, steps, seed, max(1, steps // 10))
    n_probe = len(val[0])  # train_model draws from the first steps*batch pool words, so these were trained on
    return {
        "model": name, "stage": stage, "lr": lr, "hidden": hidden, "steps": steps,
        "val_accuracy": accuracy(model, *val),
        "train_accuracy": accuracy(model, train[0][:n_probe], train[1][:n_probe]),
        "final_loss": curve["loss"][-1], "train_time_s": round(train_time, 2), "chosen": False,
    }


def tune_model(
    name: str, offset: int, problem: Any, cfg: TaskConfig, train: tuple, val: tuple, log: Callable[[str], None],
) -> dict[str, Any]:
    """Grid, selection on validation accuracy, then more steps until the fit criterion holds or the cap."""
    tuning = cfg.tuning
    base, cap = tuning.steps[problem.name], tuning.max_steps[problem.name]
    seed = tuning.seed * 100 + offset
    rows = []
    for point in grid(tuning):
        rows.append(fit_and_score(name, problem, cfg, train, val, point["lr"], point["hidden"], base, seed, "grid"))
        log(_row_text(problem.name, rows[-1]))
    best = rows[select_best(rows)]
    ladder = [best]
    while ladder[-1]["val_accuracy"] < tuning.fit_threshold and 2 * ladder[-1]["steps"] <= cap:
        ladder.append(fit_and_score(name, problem, cfg, train, val, best["lr"], best["hidden"],
                                    2 * ladder[-1]["steps"], seed, "more-steps"))
        rows.append(ladder[-1])
        log(_row_text(problem.name, ladder[-1]))
    chosen = ladder[select_best(ladder)]
    chosen["chosen"] = True
    return {
        "rows": rows,
        "chosen": {"lr": chosen["lr"], "hidden": chosen["hidden"], "steps": chosen["steps"]},
        "val_accuracy": chosen["val_accuracy"],
        "train_accuracy": chosen["train_accuracy"],
        "fits": bool(chosen["val_accuracy"] >= tuning.fit_threshold),
    }


def _row_text(problem: str, row: dict[str, Any]) -> str:
    return (f"[matrixnet-tune] {problem:9s} {row['model']:26s} lr {row['lr']:.0e} h {row['hidden']:3d} "
            f"steps {row['steps']:5d} val {row['val_accuracy']:.3f} train {row['train_accuracy']:.3f} "
            f"({row['train_time_s']:.0f}s){' [' + row['stage'] + ']' if row['stage'] != 'grid' else ''}")


def tune_problem(
    problem: Any, cfg: TaskConfig, done: dict[str, Any] | None = None,
    on_model_done: Callable[[dict[str, Any]], None] | None = None, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Tune every model of ``cfg`` on ``problem``; ``done`` holds models already tuned (reused as they are)."""
    tuning = cfg.tuning
    length = cfg.train_max_len[problem.name]
    pool = training_pool_size(cfg, tuning.max_steps[problem.name])
    train = make_data(problem, np.random.default_rng([tuning.seed, 0]), pool, 1, length)
    val = make_data(problem, np.random.default_rng([tuning.seed, 1]), tuning.n_val, 1, length)
    out = {"train_words": pool, "val_words": tuning.n_val, "val_lengths": [1, length],
           "models": dict(done or {})}
    for offset, name in enumerate(cfg.models):
        if name in out["models"]:
            continue
        out["models"][name] = tune_model(name, offset, problem, cfg, train, val, log)
        if on_model_done is not None:
            on_model_done(out)
    return out


def cache_key(cfg: TaskConfig) -> dict[str, Any]:
    full = json.loads(json.dumps(asdict(cfg), default=str))
    return {k: full[k] for k in _CACHE_KEY_FIELDS}


def tune_all(cfg: TaskConfig, problems: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Tune every problem, writing (and, with matching settings, resuming from) ``out_dir/matrixnet_tuning.json``."""
    path = Path(out_dir) / "matrixnet_tuning.json"
    key = cache_key(cfg)
    cached: dict[str, Any] = {}
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            cached = saved.get("problems", {})
            print(f"[matrixnet-tune] reusing {sum(len(p['models']) for p in cached.values())} tuned models from {path}")
    table: dict[str, Any] = {"key": key, "fit_threshold": cfg.tuning.fit_threshold, "problems": dict(cached)}

    def save(progress: dict[str, Any], name: str) -> None:
        table["problems"][name] = progress
        write_json(path, table)

    for name in cfg.problems:
        done = {m: r for m, r in cached.get(name, {}).get("models", {}).items() if m in cfg.models}
        table["problems"][name] = tune_problem(problems[name](), cfg, done, on_model_done=lambda p, n=name: save(p, n))
        write_json(path, table)
    return table


def chosen_hparams(table: dict[str, Any], problem: str) -> dict[str, dict[str, Any]]:
    """Per model: the chosen ``lr``, ``hidden`` and ``steps`` on ``problem``."""
    return {m: dict(r["chosen"]) for m, r in table["problems"][problem]["models"].items()}


def tuning_summary(table: dict[str, Any]) -> dict[str, Any]:
    """Compact view: per problem and model the chosen point, its validation accuracy and whether it fits."""
    return {
        p: {m: {**r["chosen"], "val_accuracy": r["val_accuracy"], "train_accuracy": r["train_accuracy"],
                "fits": r["fits"], "n_runs": len(r["rows"]),
                "tuning_time_s": round(sum(row["train_time_s"] for row in r["rows"]), 1)}
            for m, r in res["models"].items()}
        for p, res in table["problems"].items()
    }
