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

The learning-rate grid grows at its edges: while a model's best grid point sits at the largest learning
rate tried, the next of ``TuningConfig.lrs_above`` is added for that model (every width), and likewise
``lrs_below`` at the smallest, so no chosen learning rate is an edge of what was tried unless the extension
ran out (``lr_at_edge`` in the table says so).

Every run records validation accuracy, accuracy on words it trained on (the overfitting check),
steps, train time and whether it was chosen. Runs are cached one by one, keyed by the settings that
determine them (:func:`cache_key`: everything but the list of learning rates): in the table
``matrixnet_tuning.json`` (written after every model) and in ``cache/matrixnet-tuning/`` (one file per run,
so that processes tuning different models can share them). A rerun trains only the runs it lacks: changing
the grid re-runs only its new points and the step ladders whose starting point moved.
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
    MODELS, TaskConfig, accuracy, build_model, make_data, train_task_model, training_pool_size,
)

# settings a cached tuning run must share with the current run to be reused
_CACHE_KEY_FIELDS = ("tuning", "train_max_len", "n_train", "batch_size", "matrix_dim", "relation_weight",
                     "relation_warmup")
# TuningConfig fields that only say which points to try: not part of a run's key
_GRID_FIELDS = ("lrs", "lrs_above", "lrs_below")


def grid(tuning: Any) -> list[dict[str, float]]:
    """Grid points, learning rate outer, width inner: the same for every model."""
    return [{"lr": lr, "hidden": hidden} for lr in tuning.lrs for hidden in tuning.hidden]


def next_edge_lr(rows: list[dict[str, Any]], tried: list[float], above: list[float], below: list[float]) -> float | None:
    """The learning rate to add when the best row sits at an edge of ``tried`` (popped from ``above``/``below``)."""
    best = rows[select_best(rows)]["lr"]
    if best == max(tried) and above:
        return above.pop(0)
    if best == min(tried) and below:
        return below.pop(0)
    return None


class RowCache:
    """Tuning runs by (problem, model, lr, hidden, steps): seeded from a table, backed by one file per run."""

    def __init__(self, key: dict[str, Any], directory: Path | None = None, rows: dict | None = None):
        self.key, self.directory, self.rows = key, directory, dict(rows or {})

    def _path(self, problem: str, model: str, lr: float, hidden: int, steps: int) -> Path:
        return Path(self.directory) / f"{problem}_{model}_lr{lr:g}_h{hidden}_s{steps}.json"

    def get(self, problem: str, model: str, lr: float, hidden: int, steps: int) -> dict[str, Any] | None:
        row = self.rows.get((problem, model, lr, hidden, steps))
        if row is None and self.directory is not None:
            path = self._path(problem, model, lr, hidden, steps)
            if path.exists():
                saved = json.loads(path.read_text())
                row = saved["row"] if saved.get("key") == self.key else None
        return dict(row) if row is not None else None

    def put(self, problem: str, row: dict[str, Any]) -> None:
        where = (problem, row["model"], row["lr"], row["hidden"], row["steps"])
        self.rows[where] = dict(row)
        if self.directory is not None:
            write_json(self._path(*where), {"key": self.key, "row": row})

    @classmethod
    def from_table(cls, table: dict[str, Any], key: dict[str, Any], directory: Path | None) -> "RowCache":
        """Rows of a saved table whose settings match ``key`` (grid fields aside)."""
        rows = {}
        if _strip_grid(table.get("key", {})) == key:
            for problem, res in table.get("problems", {}).items():
                for model, r in res.get("models", {}).items():
                    for row in r["rows"]:
                        rows[(problem, model, row["lr"], row["hidden"], row["steps"])] = row
        return cls(key, directory, rows)


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
    name: str, offset: int, problem: Any, cfg: TaskConfig, data: Callable[[], tuple[tuple, tuple]],
    log: Callable[[str], None], cache: RowCache | None = None,
) -> dict[str, Any]:
    """Grid (grown at its learning-rate edges), selection on validation accuracy, then more steps until the fit
    criterion holds or the cap. ``data()`` gives (train, val), called only when a run is not in ``cache``."""
    tuning = cfg.tuning
    base, cap = tuning.steps[problem.name], tuning.max_steps[problem.name]
    seed = tuning.seed * 100 + offset

    def score(lr: float, hidden: int, steps: int, stage: str) -> dict[str, Any]:
        row = cache.get(problem.name, name, lr, hidden, steps) if cache is not None else None
        if row is None:
            row = fit_and_score(name, problem, cfg, *data(), lr, hidden, steps, seed, stage)
            log(_row_text(problem.name, row))
            if cache is not None:
                cache.put(problem.name, row)
        row.update(stage=stage, chosen=False)
        return row

    rows = [score(point["lr"], point["hidden"], base, "grid") for point in grid(tuning)]
    tried, above, below = list(tuning.lrs), list(tuning.lrs_above), list(tuning.lrs_below)
    while (lr := next_edge_lr(rows, tried, above, below)) is not None:
        tried.append(lr)
        rows += [score(lr, hidden, base, "edge") for hidden in tuning.hidden]
    best = rows[select_best(rows)]
    ladder = [best]
    while ladder[-1]["val_accuracy"] < tuning.fit_threshold and 2 * ladder[-1]["steps"] <= cap:
        ladder.append(score(best["lr"], best["hidden"], 2 * ladder[-1]["steps"], "more-steps"))
        rows.append(ladder[-1])
    chosen = ladder[select_best(ladder)]
    chosen["chosen"] = True
    return {
        "rows": rows,
        "chosen": {"lr": chosen["lr"], "hidden": chosen["hidden"], "steps": chosen["steps"]},
        "val_accuracy": chosen["val_accuracy"],
        "train_accuracy": chosen["train_accuracy"],
        "fits": bool(chosen["val_accuracy"] >= tuning.fit_threshold),
        "lrs_tried": sorted(tried),
        "lr_at_edge": bool(len(tried) > 1 and chosen["lr"] in (min(tried), max(tried))),
    }


def _row_text(problem: str, row: dict[str, Any]) -> str:
    return (f"[matrixnet-tune] {problem:9s} {row['model']:26s} lr {row['lr']:.0e} h {row['hidden']:3d} "
            f"steps {row['steps']:5d} val {row['val_accuracy']:.3f} train {row['train_accuracy']:.3f} "
            f"({row['train_time_s']:.0f}s){' [' + row['stage'] + ']' if row['stage'] != 'grid' else ''}")


def tune_problem(
    problem: Any, cfg: TaskConfig, cache: RowCache | None = None,
    on_model_done: Callable[[dict[str, Any]], None] | None = None, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Tune every model of ``cfg`` on ``problem``, reusing the runs in ``cache``; the tuning words are drawn
    only if some run is missing."""
    tuning = cfg.tuning
    length = cfg.train_max_len[problem.name]
    pool = training_pool_size(cfg, tuning.max_steps[problem.name])
    drawn: list[tuple[tuple, tuple]] = []

    def data() -> tuple[tuple, tuple]:
        if not drawn:
            drawn.append((make_data(problem, np.random.default_rng([tuning.seed, 0]), pool, 1, length),
                          make_data(problem, np.random.default_rng([tuning.seed, 1]), tuning.n_val, 1, length)))
        return drawn[0]

    out: dict[str, Any] = {"train_words": pool, "val_words": tuning.n_val, "val_lengths": [1, length], "models": {}}
    for name in cfg.models:  # the model's index in MODELS seeds it: the same run whichever models are tuned together
        out["models"][name] = tune_model(name, MODELS.index(name), problem, cfg, data, log, cache)
        if on_model_done is not None:
            on_model_done(out)
    return out


def _strip_grid(key: dict[str, Any]) -> dict[str, Any]:
    key = json.loads(json.dumps(key))
    for field in _GRID_FIELDS:
        key.get("tuning", {}).pop(field, None)
    return key


def cache_key(cfg: TaskConfig) -> dict[str, Any]:
    """The settings that determine a tuning run (not which learning rates are tried)."""
    full = json.loads(json.dumps(asdict(cfg), default=str))
    return _strip_grid({k: full[k] for k in _CACHE_KEY_FIELDS})


def tune_all(cfg: TaskConfig, problems: dict[str, Any], out_dir: Path, write_table: bool = True) -> dict[str, Any]:
    """Tune every problem, reusing the runs of ``out_dir/matrixnet_tuning.json`` (when its settings match) and of
    ``out_dir/cache/matrixnet-tuning/``; writes the table (unless ``write_table`` is false: a partial tuning)."""
    path = Path(out_dir) / "matrixnet_tuning.json"
    key = cache_key(cfg)
    saved = json.loads(path.read_text()) if path.exists() else {}
    cache = RowCache.from_table(saved, key, Path(out_dir) / "cache" / "matrixnet-tuning")
    if cache.rows:
        print(f"[matrixnet-tune] {len(cache.rows)} tuning runs reusable from {path}")
    grid_fields = {f: list(getattr(cfg.tuning, f)) for f in _GRID_FIELDS}
    table: dict[str, Any] = {"key": key, "grid": grid_fields, "fit_threshold": cfg.tuning.fit_threshold,
                             "problems": {}}

    def save(progress: dict[str, Any], name: str) -> None:
        table["problems"][name] = progress
        if write_table:
            write_json(path, {**table, "problems": {**_matching(saved, key), **table["problems"]}})

    for name in cfg.problems:
        table["problems"][name] = tune_problem(problems[name](), cfg, cache, on_model_done=lambda p, n=name: save(p, n))
    if write_table:
        write_json(path, table)
    return table


def _matching(saved: dict[str, Any], key: dict[str, Any]) -> dict[str, Any]:
    """The problems of a saved table with the same settings (kept while a rerun is under way)."""
    return saved.get("problems", {}) if _strip_grid(saved.get("key", {})) == key else {}


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
