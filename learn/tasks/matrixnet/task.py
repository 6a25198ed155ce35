"""Task ``matrixnet``: learned matrix representations and length generalisation, at the paper's scope.

Two word problems from Laird et al. 2025 (MatrixNet, arXiv 2501.09571):

* ``symmetric``: S_10 from its 9 adjacent transpositions; label: the element order (16 classes),
  from the cycle type (:mod:`learn.tasks.matrixnet.group_words`).
* ``braid-jh``: the infinite braid group B_3; regression of the six Jordan–Hölder multiplicities
  of the stable objects in beta(P_1), beta(P_2) of the 2-CY A_2 category, generated exactly from the
  reduced Burau representation at generic t (:mod:`learn.tasks.matrixnet.braid`, which cites the
  construction and how it was checked against the authors' data).

Models, all trained with the same batch and data on words of length <= L, each with its own learning
rate, width and step count chosen by the same tuning stage (:mod:`learn.tasks.matrixnet.tuning`:
grid on a separate tuning seed, selection on in-distribution validation accuracy, more steps for
configurations below the fit threshold):

* ``matrixnet-paper``: the paper's MatrixNet with the non-linear (tanh MLP) matrix block, general
  GL(d) matrices, plain products, and the relation regulariser;
* ablations ``matrixnet-orthogonal-conj`` (skew-symmetric algebra elements, generators tied to be
  conjugate, relation regulariser: this project's earlier version) and ``matrixnet-orthogonal``
  (skew-symmetric, untied);
* baselines on the same tokens (:mod:`learn.tasks.matrixnet.baselines`): MLP on padded one-hot
  words, LSTM, Transformer.

Accuracy (regression: all six rounded outputs exact) is measured on fresh words of exactly
L, 2L, ..., 8L letters and in distribution (lengths 1..L), over several seeds. S_10's labels are
dominated by a few element orders (always answering the most frequent one, the *majority-label rate*,
scores ~0.42 on lengths 1..L and ~0.2 at 2L..8L, about what most models score there), so S_10 is
also scored by **balanced accuracy** (mean per-class recall: 1/#classes for any constant predictor) and by
accuracy on the words whose label is not the majority one; the majority-label rate is reported beside every
accuracy. Ledger entries (Holm across the task's claims) compare the paper model with each baseline and
each ablation over 2L..8L: on mean accuracy (B_3) and on mean balanced accuracy (S_10).
Training words are fresh: by default (``n_train=None``) the pool holds steps x batch words and every
word is drawn once (S_10 overfits a 20,000-word pool: train 0.99 vs validation 0.85 for the LSTM).
Every (problem, seed, model) evaluation is cached under ``results/cache/matrixnet/`` keyed by its settings
and tuned hyper-parameters, so a rerun retrains only what a change invalidates
(``python -m symgym.learn.tasks.matrixnet.task --help``: subsets, parallel shares, assembling the cache).
Outputs: ``results/matrixnet.json`` (via ``symgym task matrixnet``), ``results/matrixnet.png``,
``results/matrixnet_tuning.json`` (tuning table) and ``results/matrixnet_tuning.png``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from symgym.equivariance.matrixnet import MatrixNet
from symgym.learn.evidence.ledger import adjust, claim, summarize
from symgym.learn.io import run_and_record, write_json
from symgym.learn.tasks.matrixnet.braid import OUTPUT_NAMES
from symgym.learn.tasks.matrixnet.training import (  # noqa: F401  (re-exported: the task's public names)
    ABLATIONS, BASELINES, DESCRIPTIONS, MODELS, PAPER_MODEL, PROBLEMS, TaskConfig, TuningConfig, accuracy, build_model,
    constant_predictor_accuracy, correct_mask, default_hparams, make_data, quick_config, train_model,
    train_task_model, training_pool_size, word_scores,
)

#: the settings (besides problem, seed, model, hyper-parameters and pool) an evaluation cell depends on
CELL_FIELDS = ("train_max_len", "eval_multipliers", "n_train", "batch_size", "n_eval", "n_eval_in_distribution",
               "matrix_dim", "relation_weight", "relation_warmup", "log_every")
#: per-seed offset of each problem's seeds (problem i runs seeds s + 101 i)
SEED_STRIDE = 101


# ---------------------------------------------------------------------------- run --
def eval_pool_size(cfg: TaskConfig, problem_name: str, hparams: dict[str, dict[str, Any]]) -> int:
    """Training words drawn per (problem, seed): enough for the longest step count any model may get (the tuning
    cap), so that a model's words do not depend on which other models are trained."""
    cap = cfg.tuning.max_steps[problem_name] if cfg.tuning is not None else 0
    return training_pool_size(cfg, max([cap] + [hp["steps"] for hp in hparams.values()]))


def cell_key(problem_name: str, cfg: TaskConfig, seed: int, model: str, hp: dict[str, Any], pool: int) -> dict:
    """What one evaluation cell (problem, seed, model) depends on: its cache key."""
    full = json.loads(json.dumps(asdict(cfg), default=str))
    return {"problem": problem_name, "seed": seed, "model": model, "pool": pool,
            "hparams": {k: hp[k] for k in ("lr", "hidden", "steps")}, **{k: full[k] for k in CELL_FIELDS}}


def _cell_path(cache: Path, problem_name: str, seed: int, model: str) -> Path:
    return Path(cache) / f"{problem_name}_seed{seed}_{model}.json"


def cached_cell(cache: Path | None, key: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """A cached evaluation with exactly this key (and, for class labels, the balanced scores), else None."""
    if cache is None:
        return None
    path = _cell_path(cache, key["problem"], key["seed"], key["model"])
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if saved.get("key") != key or (kind != "regression" and "balanced_accuracy" not in saved["result"]):
        return None
    return saved["result"]


def run_seed(
    problem_name: str, cfg: TaskConfig, seed: int, hparams: dict[str, dict[str, Any]] | None = None,
    cache: Path | None = None, train: bool = True,
) -> dict[str, Any] | None:
    """Train every model (with its ``hparams``: lr, hidden, steps) on one problem with one seed; accuracy vs
    length, in distribution, relations. Cells found in ``cache`` are reused, new ones written there; with
    ``train=False`` missing cells are listed under ``missing_models`` (None when no cell is cached)."""
    torch.set_num_threads(1)  # also in worker processes
    hparams = hparams or default_hparams(cfg)
    problem = PROBLEMS[problem_name]()
    rng = np.random.default_rng(seed)
    length = cfg.train_max_len[problem_name]
    pool = eval_pool_size(cfg, problem_name, hparams)
    evals = {n: make_data(problem, rng, cfg.n_eval, n, n) for n in cfg.eval_lengths(problem_name)}
    in_dist = make_data(problem, rng, cfg.n_eval_in_distribution, 1, length)
    relators = problem.relations()
    out: dict[str, Any] = {
        "seed": seed,
        "constant_predictor_accuracy": [constant_predictor_accuracy(evals[n][1].numpy()) for n in evals],
        "in_distribution_majority_label_rate": constant_predictor_accuracy(in_dist[1].numpy()),
        "max_target": [float(evals[n][1].max()) for n in evals] if problem.kind == "regression" else None,
        "models": {},
        "missing_models": [],
    }
    if problem.kind != "regression":  # balanced accuracy of any constant predictor: 1 / classes present
        out["chance_balanced_accuracy"] = [1 / len(np.unique(evals[n][1].numpy())) for n in evals]
    train_words: list[tuple] = []
    for name in cfg.models:
        hp = hparams[name]
        key = cell_key(problem_name, cfg, seed, name, hp, pool)
        result = cached_cell(cache, key, problem.kind)
        if result is None and not train:
            out["missing_models"].append(name)
            continue
        if result is None:
            if not train_words:  # drawn only when some cell is missing (a prefix of one seeded stream)
                train_words.append(make_data(problem, np.random.default_rng([seed, 0]), pool, 1, length))
            result = evaluate_model(problem, cfg, seed, name, hp, train_words[0], evals, in_dist, relators)
            if cache is not None:
                write_json(_cell_path(cache, problem_name, seed, name), {"key": key, "result": result})
            print(f"[matrixnet] {problem_name:9s} seed {seed} {name:26s} id {result['in_distribution_accuracy']:.3f} "
                  f"acc@{list(evals)[-1]} {result['accuracy'][-1]:.3f} ({result['train_time_s']:.0f}s)", flush=True)
        out["models"][name] = result
    return out if out["models"] else None


def evaluate_model(problem: Any, cfg: TaskConfig, seed: int, name: str, hp: dict[str, Any], train: tuple,
                   evals: dict[int, tuple], in_dist: tuple, relators: Any) -> dict[str, Any]:
    """Train one model (initialised and shuffled from its index in MODELS) and score it."""
    offset = MODELS.index(name)
    torch.manual_seed(seed * 1000 + offset)
    model = build_model(name, problem, cfg, hidden=hp["hidden"])
    is_matrixnet = isinstance(model, MatrixNet)
    with torch.no_grad():
        rel_init = float(model.representation.relation_errors(relators).mean()) if is_matrixnet else None
    curve, train_time = train_task_model(model, train, relators, cfg, hp["lr"], hp["steps"], seed + offset,
                                         cfg.log_every)
    scored = [word_scores(model, *evals[n]) for n in evals]
    inside = word_scores(model, *in_dist)
    result: dict[str, Any] = {
        "accuracy": [s["accuracy"] for s in scored],
        "in_distribution_accuracy": inside["accuracy"],
        "out_of_distribution_mean": float(np.mean([s["accuracy"] for s in scored[1:]] or [scored[0]["accuracy"]])),
        "loss_curve": curve,
        "train_time_s": round(train_time, 2),
        "n_params": sum(p.numel() for p in model.parameters()),
        "hparams": dict(hp),
    }
    for score in ("balanced_accuracy", "non_majority_accuracy"):
        if score in inside:
            result[score] = [s[score] for s in scored]
            result[f"in_distribution_{score}"] = inside[score]
            result[f"out_of_distribution_{score}_mean"] = float(np.mean([s[score] for s in scored[1:]]
                                                                        or [scored[0][score]]))
    if is_matrixnet:
        with torch.no_grad():
            result["relation_error"] = {
                "at_init": rel_init, "trained": float(model.representation.relation_errors(relators).mean())
            }
    return result


def summarise(problem_name: str, per_seed: list[dict[str, Any]], cfg: TaskConfig) -> dict[str, Any]:
    """Mean/std over seeds of accuracy vs length and in-distribution accuracy, per model (for class labels also
    balanced and non-majority accuracy), with the majority-label rate beside them."""
    models = {}
    for name in cfg.models:
        runs = [s["models"][name] for s in per_seed if name in s["models"]]
        if not runs:
            continue
        acc = np.array([r["accuracy"] for r in runs])
        models[name] = {
            "accuracy_mean": acc.mean(0).tolist(),
            "accuracy_std": acc.std(0).tolist(),
            "in_distribution_accuracy": [r["in_distribution_accuracy"] for r in runs],
            "in_distribution_mean": float(np.mean([r["in_distribution_accuracy"] for r in runs])),
            "out_of_distribution_mean": [r["out_of_distribution_mean"] for r in runs],
            "seeds": [s["seed"] for s in per_seed if name in s["models"]],
            "n_params": runs[0]["n_params"],
            "hparams": runs[0].get("hparams"),
            "train_time_s_mean": float(np.mean([r["train_time_s"] for r in runs])),
        }
        for score in ("balanced_accuracy", "non_majority_accuracy"):
            if score in runs[0]:
                values = np.array([r[score] for r in runs])
                models[name].update({
                    f"{score}_mean": values.mean(0).tolist(), f"{score}_std": values.std(0).tolist(),
                    f"in_distribution_{score}": [r[f"in_distribution_{score}"] for r in runs],
                    f"in_distribution_{score}_mean": float(np.mean([r[f"in_distribution_{score}"] for r in runs])),
                    f"out_of_distribution_{score}_mean": [r[f"out_of_distribution_{score}_mean"] for r in runs],
                })
        if "relation_error" in runs[0]:
            models[name]["relation_error_trained_mean"] = float(np.mean([r["relation_error"]["trained"] for r in runs]))
    problem = PROBLEMS[problem_name]()
    out = {
        "description": DESCRIPTIONS[problem_name],
        "kind": problem.kind,
        "outputs": list(OUTPUT_NAMES) if problem.kind == "regression" else getattr(problem, "orders", None),
        "train_max_len": cfg.train_max_len[problem_name],
        "eval_lengths": cfg.eval_lengths(problem_name),
        "seeds": [s["seed"] for s in per_seed],
        "constant_predictor_accuracy": np.mean([s["constant_predictor_accuracy"] for s in per_seed], 0).tolist(),
        "majority_label_rate": np.mean([s["constant_predictor_accuracy"] for s in per_seed], 0).tolist(),
        "in_distribution_majority_label_rate": float(np.mean([s.get("in_distribution_majority_label_rate", np.nan)
                                                              for s in per_seed])),
        "models": models,
        "per_seed": per_seed,
    }
    if problem.kind != "regression":
        out["chance_balanced_accuracy"] = np.mean([s["chance_balanced_accuracy"] for s in per_seed], 0).tolist()
    return out


def headline_metric(summary: dict[str, Any]) -> tuple[str, str]:
    """(per-seed value key, description) the ledger compares on: balanced accuracy for class labels (S_10's
    plain accuracy is dominated by its majority label), exact accuracy for regression."""
    if summary["kind"] == "regression":
        return "out_of_distribution_mean", "mean accuracy over word lengths 2L..8L"
    return ("out_of_distribution_balanced_accuracy_mean",
            "mean balanced accuracy (mean per-class recall) over word lengths 2L..8L")


def evidence(problem_name: str, summary: dict[str, Any], seeds: list[int]) -> list[dict[str, Any]]:
    """Ledger: the paper model vs each baseline and each ablation over 2L..8L (see :func:`headline_metric`);
    each entry carries the plain accuracy and the majority-label rate beside the compared score. Values are
    matched by seed: a model's own ``seeds`` where the summary has them, else ``seeds``."""
    length = summary["train_max_len"]
    entries = []
    paper = summary["models"].get(PAPER_MODEL)
    if paper is None:
        return entries
    key, metric = headline_metric(summary)
    extra: dict[str, Any] = {"majority_label_rate_2L_to_8L": float(np.mean(summary["majority_label_rate"][1:]))}
    if "chance_balanced_accuracy" in summary:
        extra["chance_balanced_accuracy_2L_to_8L"] = float(np.mean(summary["chance_balanced_accuracy"][1:]))
    for other in [m for m in summary["models"] if m != PAPER_MODEL]:
        base = summary["models"][other]
        entries.append(claim(
            f"{PAPER_MODEL} generalises to longer words than {other} on {problem_name} "
            f"(trained on length <= {length}, tested at {2 * length}..{max(summary['eval_lengths'])})",
            metric=metric, method=PAPER_MODEL, baseline=other,
            method_values=paper[key], baseline_values=base[key],
            method_seeds=paper.get("seeds", seeds), baseline_seeds=base.get("seeds", seeds), bounds=(0.0, 1.0), task=problem_name,
            method_in_distribution=paper["in_distribution_mean"],
            baseline_in_distribution=base["in_distribution_mean"],
            method_accuracy_2L_to_8L=float(np.mean(paper["out_of_distribution_mean"])),
            baseline_accuracy_2L_to_8L=float(np.mean(base["out_of_distribution_mean"])), **extra,
        ))
    return entries


def _summary_row(res: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    row = {"in_distribution": r["in_distribution_mean"], "at_8L": r["accuracy_mean"][-1],
           "mean_2L_to_8L": float(np.mean(r["out_of_distribution_mean"])),
           "majority_label_rate_in_distribution": res["in_distribution_majority_label_rate"],
           "majority_label_rate_at_8L": res["majority_label_rate"][-1],
           "majority_label_rate_2L_to_8L": float(np.mean(res["majority_label_rate"][1:]))}
    if "balanced_accuracy_mean" in r:
        row.update({"balanced_in_distribution": r["in_distribution_balanced_accuracy_mean"],
                    "balanced_at_8L": r["balanced_accuracy_mean"][-1],
                    "balanced_mean_2L_to_8L": float(np.mean(r["out_of_distribution_balanced_accuracy_mean"])),
                    "non_majority_in_distribution": r["in_distribution_non_majority_accuracy_mean"],
                    "non_majority_mean_2L_to_8L": float(np.mean(r["out_of_distribution_non_majority_accuracy_mean"]))})
    return row


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), config: TaskConfig | None = None,
        train: bool = True) -> dict:
    """Tune, then train the MatrixNet variants and baselines on S_10 orders and B_3 multiplicities over seeds.
    Cells cached under ``out_dir/cache/matrixnet/`` are reused (not in a ``quick`` run); with ``train=False``
    only cached cells are used, each model over the seeds it has (the rest are listed in ``runs_missing``;
    a claim pairs the seeds both sides have)."""
    from symgym.learn.tasks.matrixnet.plot import plot_results, plot_tuning
    from symgym.learn.tasks.matrixnet.tuning import chosen_hparams, tune_all, tuning_summary

    torch.set_num_threads(1)  # shared CPUs: parallelism only adds contention for these small models
    cfg = config or (quick_config() if quick else TaskConfig())
    unknown = [p for p in cfg.problems if p not in PROBLEMS] + [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown problem(s)/model(s) {unknown}; problems: {list(PROBLEMS)}, models: {list(MODELS)}")
    if cfg.n_seeds < 1:
        raise ValueError(f"n_seeds must be positive, got {cfg.n_seeds}")
    seeds = [seed + i for i in range(cfg.n_seeds)]
    if cfg.tuning is not None and cfg.tuning.seed in seeds:
        raise ValueError(f"tuning seed {cfg.tuning.seed} is one of the evaluation seeds {seeds}")
    cache = None if quick else Path(out_dir) / "cache" / "matrixnet"
    results: dict[str, Any] = {"task_config": asdict(cfg), "seeds": seeds, "problems": {}, "evidence": []}
    table = tune_all(cfg, PROBLEMS, Path(out_dir)) if cfg.tuning is not None else None
    hparams = {p: chosen_hparams(table, p) if table else default_hparams(cfg) for p in cfg.problems}
    jobs = [(name, s + SEED_STRIDE * PROBLEMS_ORDER.index(name)) for name in cfg.problems for s in seeds]
    if cfg.workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(cfg.workers) as pool:
            done = list(pool.map(run_seed, [j[0] for j in jobs], [cfg] * len(jobs), [j[1] for j in jobs],
                                 [hparams[j[0]] for j in jobs], [cache] * len(jobs), [train] * len(jobs)))
    else:
        done = [run_seed(name, cfg, s, hparams[name], cache, train) for name, s in jobs]
    results["runs_missing"] = [f"{name} seed {s}" + (f" {m}" if d else "") for (name, s), d in zip(jobs, done)
                               for m in (d["missing_models"] if d else [None])]
    for name in cfg.problems:
        per_seed = [d for (job_name, _), d in zip(jobs, done) if job_name == name and d is not None]
        if not per_seed:
            continue
        summary = summarise(name, per_seed, cfg)
        results["problems"][name] = summary
        results["evidence"] += evidence(name, summary, summary["seeds"])
    results["ledger_metric"] = {name: headline_metric(res)[1] for name, res in results["problems"].items()}
    # the cells' own training wall time (the run's wall_time_s excludes cells reused from the cache)
    results["cells_train_time_s"] = round(sum(r["train_time_s"] for d in done if d for r in d["models"].values()), 1)
    results["assembled_from_cache_only"] = not train
    results["evidence"] = adjust(results["evidence"])
    results["evidence_counts"] = summarize(results["evidence"])
    results["summary"] = {name: {m: _summary_row(res, r) for m, r in res["models"].items()}
                          for name, res in results["problems"].items()}
    if table is not None:
        results["tuning"] = {"fit_threshold": cfg.tuning.fit_threshold, "summary": tuning_summary(table),
                             "table": {p: table["problems"][p] for p in cfg.problems}}
        for name, per_model in results["summary"].items():
            for m, entry in per_model.items():
                entry["fits_in_validation"] = results["tuning"]["summary"][name][m]["fits"]
                entry["fits_in_evaluation"] = bool(entry["in_distribution"] >= cfg.tuning.fit_threshold)
        results["tuning_figure"] = str(plot_tuning(results, Path(out_dir) / "matrixnet_tuning.png"))
    results["figure"] = str(plot_results(results, Path(out_dir) / "matrixnet.png"))
    return results


#: problem order that fixes each problem's seed offset (independent of which problems a run includes)
PROBLEMS_ORDER = tuple(PROBLEMS)


def main(argv: list[str] | None = None) -> None:
    """Train a share of the evaluation cells into the cache, or assemble the results from it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated problems")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated models (a share: no results file)")
    ap.add_argument("--seeds", default=None, help="comma-separated seed indices (a share: no results file)")
    ap.add_argument("--report-only", action="store_true",
                    help="assemble results/matrixnet.json from the cache; train no evaluation cell")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = TaskConfig(problems=tuple(args.problems.split(",")), models=tuple(args.models.split(",")))
    if args.seeds is not None or cfg.models != MODELS:  # a share: tune what it needs, train its cells, write no results
        from symgym.learn.tasks.matrixnet.tuning import chosen_hparams, tune_all

        table = tune_all(cfg, PROBLEMS, Path("results"), write_table=False)
        cache = Path("results") / "cache" / "matrixnet"
        for i in [int(v) for v in args.seeds.split(",")] if args.seeds else range(cfg.n_seeds):
            for name in cfg.problems:
                run_seed(name, cfg, i + SEED_STRIDE * PROBLEMS_ORDER.index(name), chosen_hparams(table, name), cache)
        return
    run_and_record("task", "matrixnet", lambda **kw: run(config=cfg, train=not args.report_only, **kw), "results",
                   False, 0)


if __name__ == "__main__":
    main()
