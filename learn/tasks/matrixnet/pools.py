"""MatrixNet sample efficiency: fixed training pools of several sizes (the paper's protocol).

The main task draws fresh words every step, which measures what a model can learn, not from how few examples.
Here each model trains on a *fixed* pool of ``n`` words (re-drawn in epochs) for its tuned step count, and is
scored on fresh words: in distribution (lengths 1..L) and at 2L. Pools, the evaluation words and the initial
weights are shared by all models of a seed.

S_10's labels (element orders) are dominated by a few classes at long lengths (the majority-label rate is ~0.2,
above what every model scores at 2L..8L), so S_10 is scored by **balanced accuracy** (mean per-class recall:
1/classes for any constant predictor) with the plain accuracy and the majority-label rate reported beside it.

Each (problem, pool, model, seed) run is cached under ``results/cache/matrixnet-pools/`` (resumable, and
splittable over processes with ``--part i/k``). ``python -m symgym.learn.tasks.matrixnet.pools`` trains the
missing runs and writes ``results/matrixnet-pools.json`` (ledger: the paper model vs each baseline per pool
size, Holm across the family) and ``results/matrixnet-pools.png``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from symgym.learn.evidence.ledger import adjust, claim, summarize
from symgym.learn.io import run_and_record, save_figure, write_json
from symgym.learn.tasks.matrixnet.training import (  # noqa: F401  (balanced_accuracy: re-exported)
    PAPER_MODEL, PROBLEMS, TaskConfig, balanced_accuracy, build_model, constant_predictor_accuracy, make_data,
    train_task_model, word_scores,
)

POOLS = {"braid-jh": (128, 512, 2048, 8192), "symmetric": (512, 4096)}
MODELS = (PAPER_MODEL, "lstm")  # LSTM: the strongest baseline in distribution on both problems (matrixnet.json)
SEEDS = (0, 1, 2, 3, 4)
CACHE = Path("results/cache/matrixnet-pools")
TUNING = Path("results/matrixnet_tuning.json")


def hparams(problem: str, tuning_path: Path = TUNING) -> dict[str, dict[str, Any]]:
    """The tuned lr / width / steps of each model (the main task's tuning stage, tuning seed only)."""
    from symgym.learn.tasks.matrixnet.tuning import chosen_hparams

    table = json.loads(Path(tuning_path).read_text())
    chosen = chosen_hparams(table, problem)
    return {m: {k: chosen[m][k] for k in ("lr", "hidden", "steps")} for m in MODELS}


def scores(model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Accuracy; for class labels also balanced and non-majority accuracy (:func:`training.word_scores`)."""
    out = word_scores(model, tokens, targets)
    out.pop("majority_label_rate")  # recorded per evaluation split by run_one
    return out


def run_one(problem_name: str, pool: int, model_name: str, seed: int, hp: dict[str, Any],
            cfg: TaskConfig | None = None, n_eval: int = 1000) -> dict[str, Any]:
    """Train one model on a fixed pool of ``pool`` words; score it in distribution and at 2L."""
    cfg = cfg or TaskConfig()
    problem = PROBLEMS[problem_name]()
    length = cfg.train_max_len[problem_name]
    train = make_data(problem, np.random.default_rng([seed, 0]), pool, 1, length)  # same words for every model
    rng = np.random.default_rng([seed, 1])
    evals = {"in_distribution": make_data(problem, rng, n_eval, 1, length),
             "at_2L": make_data(problem, rng, n_eval, 2 * length, 2 * length)}
    torch.manual_seed(seed * 1000 + MODELS.index(model_name))
    model = build_model(model_name, problem, cfg, hidden=hp["hidden"])
    _, wall = train_task_model(model, train, problem.relations(), cfg, hp["lr"], hp["steps"], seed, hp["steps"])
    res: dict[str, Any] = {"problem": problem_name, "pool": pool, "model": model_name, "seed": seed, "hparams": hp,
                           "train_time_s": round(wall, 2), "train": scores(model, *train)}
    for name, data in evals.items():
        res[name] = scores(model, *data)
        res[name]["majority_label_rate"] = constant_predictor_accuracy(data[1].numpy())
    return res


def _path(cache: Path, problem: str, pool: int, model: str, seed: int) -> Path:
    return Path(cache) / f"{problem}_pool{pool}_{model}_seed{seed}.json"


def grid(problems=tuple(POOLS), seeds=SEEDS) -> list[tuple[str, int, str, int]]:
    return [(p, n, m, s) for p in problems for s in seeds for n in POOLS[p] for m in MODELS]


def train_missing(problems=tuple(POOLS), seeds=SEEDS, cache: Path = CACHE, part: tuple[int, int] = (0, 1),
                  tuning_path: Path = TUNING, reverse: bool = False) -> None:
    """Train this process's share of the missing runs (``reverse``: from the end); a ``.claim`` file marks a run
    in progress so that concurrent processes skip it."""
    Path(cache).mkdir(parents=True, exist_ok=True)
    hps = {p: hparams(p, tuning_path) for p in problems}
    keys = [k for i, k in enumerate(grid(problems, seeds)) if i % part[1] == part[0]]
    for p, n, m, s in reversed(keys) if reverse else keys:
        path = _path(cache, p, n, m, s)
        claim_file = path.with_suffix(".claim")
        if _current(path, hps) or claim_file.exists():  # a stale run (other hyper-parameters) is retrained
            continue
        claim_file.touch()
        res = run_one(p, n, m, s, hps[p][m])
        write_json(path, res)
        claim_file.unlink(missing_ok=True)
        print(f"[pools] {p} pool {n} {m} seed {s}: id {res['in_distribution']['accuracy']:.3f} "
              f"2L {res['at_2L']['accuracy']:.3f} ({res['train_time_s']:.0f}s)", flush=True)


def _current(path: Path, hps: dict[str, dict[str, Any]]) -> bool:
    """A cached run exists and was trained with the model's current tuned hyper-parameters."""
    if not path.exists():
        return False
    run = json.loads(path.read_text())
    return run["hparams"] == hps[run["problem"]][run["model"]]


def collect(problems=tuple(POOLS), seeds=SEEDS, cache: Path = CACHE, tuning_path: Path = TUNING) -> list[dict[str, Any]]:
    """The cached runs trained with the current tuned hyper-parameters (stale ones are left out)."""
    hps = {p: hparams(p, tuning_path) for p in problems}
    paths = [_path(cache, *key) for key in grid(problems, seeds)]
    return [json.loads(path.read_text()) for path in paths if _current(path, hps)]


def metric_of(problem: str) -> str:
    return "balanced_accuracy" if PROBLEMS[problem]().kind != "regression" else "accuracy"


def table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """problem -> pool -> model -> mean scores (and the majority-label rate beside them)."""
    out: dict[str, Any] = {}
    for r in runs:
        out.setdefault(r["problem"], {}).setdefault(str(r["pool"]), {}).setdefault(r["model"], []).append(r)
    summary: dict[str, Any] = {}
    for p, pools in out.items():
        for n, models in pools.items():
            for m, rs in models.items():
                entry = {"n_seeds": len(rs)}
                for split in ("in_distribution", "at_2L", "train"):
                    for k in rs[0][split]:
                        entry[f"{split}_{k}"] = float(np.mean([r[split][k] for r in rs]))
                summary.setdefault(p, {}).setdefault(n, {})[m] = entry
    return summary


def evidence(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per problem, pool and split: the paper model beats each baseline (paired by seed)."""
    entries = []
    for p in sorted({r["problem"] for r in runs}):
        metric = metric_of(p)
        for n in POOLS[p]:
            for split, where in (("in_distribution", "in distribution"), ("at_2L", "at twice the training length")):
                by = {(r["model"], r["seed"]): r for r in runs if r["problem"] == p and r["pool"] == n}
                for other in MODELS[1:]:
                    seeds = sorted(s for (m, s) in by if m == PAPER_MODEL and (other, s) in by)
                    if not seeds:
                        continue
                    entries.append(claim(
                        f"{PAPER_MODEL} beats {other} on {p} {where} when trained on a fixed pool of {n} words",
                        f"{split} {metric}", PAPER_MODEL, other,
                        [by[(PAPER_MODEL, s)][split][metric] for s in seeds], [by[(other, s)][split][metric] for s in seeds],
                        method_seeds=seeds, baseline_seeds=seeds, bounds=(0.0, 1.0), problem=p, pool=n,
                        majority_label_rate=float(np.mean([by[(PAPER_MODEL, s)][split]["majority_label_rate"]
                                                           for s in seeds]))))
    return adjust(entries)


def plot(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(summary)
    fig, axes = plt.subplots(1, 2 * len(problems), figsize=(4.2 * 2 * len(problems), 3.5), squeeze=False)
    for j, p in enumerate(problems):
        metric = metric_of(p)
        pools = sorted(summary[p], key=int)
        for k, split in enumerate(("in_distribution", "at_2L")):
            ax = axes[0, 2 * j + k]
            for m in MODELS:
                xs = [int(n) for n in pools if m in summary[p][n]]
                ax.semilogx(xs, [summary[p][str(n)][m][f"{split}_{metric}"] for n in xs], "o-", label=m)
            if metric == "balanced_accuracy":
                ax.semilogx([int(n) for n in pools], [summary[p][n][MODELS[0]][f"{split}_majority_label_rate"]
                                                      for n in pools], "k:", label="majority-label rate (plain acc.)")
            ax.set_title(f"{p}, {split.replace('_', ' ')}", fontsize=9)
            ax.set_xlabel("training pool (words)")
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("sample efficiency: fixed training pools, fresh test words (mean over seeds)")
    fig.tight_layout()
    return save_figure(fig, path)


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), problems=tuple(POOLS)) -> dict[str, Any]:
    """Assemble the cached runs (training any that are missing unless ``quick``) into results + figure."""
    torch.set_num_threads(1)
    seeds = tuple(seed + s for s in SEEDS)
    if not quick:
        train_missing(problems, seeds)
    runs = collect(problems, seeds)
    summary = table(runs)
    ev = evidence(runs)
    hps = {p: hparams(p) for p in problems}
    missing = [f"{p} pool {n} {m} seed {s}" for p, n, m, s in grid(problems, seeds)
               if not _current(_path(CACHE, p, n, m, s), hps)]
    return {"protocol": __doc__.split("\n\n")[1].replace("\n", " "), "pools": {p: POOLS[p] for p in problems},
            "models": list(MODELS), "seeds": list(seeds), "hparams": {p: hparams(p) for p in problems},
            "summary": summary, "evidence": ev, "evidence_counts": summarize(ev), "runs_missing": missing,
            "figure": str(plot(summary, Path(out_dir) / "matrixnet-pools.png")) if summary else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default=None, help="i/k: only train every k-th missing run from i (no report)")
    ap.add_argument("--problems", default=",".join(POOLS))
    ap.add_argument("--reverse", action="store_true", help="with --part: walk the share from its end")
    ap.add_argument("--report-only", action="store_true", help="assemble the cached runs; train nothing")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    problems = tuple(args.problems.split(","))
    if args.part:
        i, k = (int(v) for v in args.part.split("/"))
        train_missing(problems, part=(i, k), reverse=args.reverse)
        return
    run_and_record("task", "matrixnet-pools", lambda **kw: run(problems=problems, **kw), "results",
                   args.report_only, 0)


if __name__ == "__main__":
    main()
