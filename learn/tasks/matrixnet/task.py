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
L, 2L, ..., 8L letters and in distribution (lengths 1..L), over several seeds; ledger entries
compare the paper model with each baseline (and each ablation) on mean accuracy over 2L..8L.
Training words are fresh: by default (``n_train=None``) the pool holds steps x batch words and every
word is drawn once (S_10 overfits a 20,000-word pool: train 0.99 vs validation 0.85 for the LSTM).
Outputs: ``results/matrixnet.json`` (via ``symgym task matrixnet``), ``results/matrixnet.png``,
``results/matrixnet_tuning.json`` (tuning table) and ``results/matrixnet_tuning.png``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from symgym.equivariance.matrixnet import MatrixNet
from symgym.learn.evidence.ledger import claim
from symgym.learn.tasks.matrixnet.braid import OUTPUT_NAMES
from symgym.learn.tasks.matrixnet.training import (  # noqa: F401  (re-exported: the task's public names)
    ABLATIONS, BASELINES, DESCRIPTIONS, MODELS, PAPER_MODEL, PROBLEMS, TaskConfig, TuningConfig, accuracy, build_model,
    constant_predictor_accuracy, correct_mask, default_hparams, make_data, quick_config, train_model,
    train_task_model, training_pool_size,
)


# ---------------------------------------------------------------------------- run --
def run_seed(
    problem_name: str, cfg: TaskConfig, seed: int, hparams: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Train every model (with its ``hparams``: lr, hidden, steps) on one problem with one seed;
    accuracy vs length, in distribution, relations."""
    torch.set_num_threads(1)  # also in worker processes
    hparams = hparams or default_hparams(cfg)
    problem = PROBLEMS[problem_name]()
    rng = np.random.default_rng(seed)
    length = cfg.train_max_len[problem_name]
    pool = training_pool_size(cfg, max(hparams[m]["steps"] for m in cfg.models))
    train = make_data(problem, np.random.default_rng([seed, 0]), pool, 1, length)
    evals = {n: make_data(problem, rng, cfg.n_eval, n, n) for n in cfg.eval_lengths(problem_name)}
    in_dist = make_data(problem, rng, cfg.n_eval_in_distribution, 1, length)
    relators = problem.relations()
    out: dict[str, Any] = {
        "seed": seed,
        "constant_predictor_accuracy": [constant_predictor_accuracy(evals[n][1].numpy()) for n in evals],
        "max_target": [float(evals[n][1].max()) for n in evals] if problem.kind == "regression" else None,
        "models": {},
    }
    for offset, name in enumerate(cfg.models):
        torch.manual_seed(seed * 1000 + offset)
        hp = hparams[name]
        model = build_model(name, problem, cfg, hidden=hp["hidden"])
        is_matrixnet = isinstance(model, MatrixNet)
        with torch.no_grad():
            rel_init = float(model.representation.relation_errors(relators).mean()) if is_matrixnet else None
        curve, train_time = train_task_model(model, train, relators, cfg, hp["lr"], hp["steps"], seed + offset,
                                             cfg.log_every)
        acc = [accuracy(model, *evals[n]) for n in evals]
        result: dict[str, Any] = {
            "accuracy": acc,
            "in_distribution_accuracy": accuracy(model, *in_dist),
            "out_of_distribution_mean": float(np.mean(acc[1:])) if len(acc) > 1 else acc[0],
            "loss_curve": curve,
            "train_time_s": round(train_time, 2),
            "n_params": sum(p.numel() for p in model.parameters()),
            "hparams": dict(hp),
        }
        if is_matrixnet:
            with torch.no_grad():
                result["relation_error"] = {
                    "at_init": rel_init, "trained": float(model.representation.relation_errors(relators).mean())
                }
        out["models"][name] = result
        print(f"[matrixnet] {problem_name:9s} seed {seed} {name:26s} id {result['in_distribution_accuracy']:.3f} "
              f"acc@{list(evals)[-1]} {acc[-1]:.3f} ({train_time:.0f}s)", flush=True)
    return out


def summarise(problem_name: str, per_seed: list[dict[str, Any]], cfg: TaskConfig) -> dict[str, Any]:
    """Mean/std over seeds of accuracy vs length and in-distribution accuracy, per model."""
    models = {}
    for name in cfg.models:
        runs = [s["models"][name] for s in per_seed]
        acc = np.array([r["accuracy"] for r in runs])
        models[name] = {
            "accuracy_mean": acc.mean(0).tolist(),
            "accuracy_std": acc.std(0).tolist(),
            "in_distribution_accuracy": [r["in_distribution_accuracy"] for r in runs],
            "in_distribution_mean": float(np.mean([r["in_distribution_accuracy"] for r in runs])),
            "out_of_distribution_mean": [r["out_of_distribution_mean"] for r in runs],
            "n_params": runs[0]["n_params"],
            "hparams": runs[0].get("hparams"),
            "train_time_s_mean": float(np.mean([r["train_time_s"] for r in runs])),
        }
        if "relation_error" in runs[0]:
            models[name]["relation_error_trained_mean"] = float(np.mean([r["relation_error"]["trained"] for r in runs]))
    problem = PROBLEMS[problem_name]()
    return {
        "description": DESCRIPTIONS[problem_name],
        "kind": problem.kind,
        "outputs": list(OUTPUT_NAMES) if problem.kind == "regression" else getattr(problem, "orders", None),
        "train_max_len": cfg.train_max_len[problem_name],
        "eval_lengths": cfg.eval_lengths(problem_name),
        "constant_predictor_accuracy": np.mean([s["constant_predictor_accuracy"] for s in per_seed], 0).tolist(),
        "models": models,
        "per_seed": per_seed,
    }


def evidence(problem_name: str, summary: dict[str, Any], seeds: list[int]) -> list[dict[str, Any]]:
    """Ledger: the paper model vs each baseline and each ablation on mean accuracy over 2L..8L."""
    length = summary["train_max_len"]
    entries = []
    paper = summary["models"].get(PAPER_MODEL)
    if paper is None:
        return entries
    for other in [m for m in summary["models"] if m != PAPER_MODEL]:
        entries.append(claim(
            f"{PAPER_MODEL} generalises to longer words than {other} on {problem_name} "
            f"(trained on length <= {length}, tested at {2 * length}..{max(summary['eval_lengths'])})",
            metric="mean accuracy over word lengths 2L..8L", method=PAPER_MODEL, baseline=other,
            method_values=paper["out_of_distribution_mean"], baseline_values=summary["models"][other]["out_of_distribution_mean"],
            method_seeds=seeds, baseline_seeds=seeds, task=problem_name,
            method_in_distribution=paper["in_distribution_mean"],
            baseline_in_distribution=summary["models"][other]["in_distribution_mean"],
        ))
    return entries


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), config: TaskConfig | None = None) -> dict:
    """Tune, then train the MatrixNet variants and baselines on S_10 orders and B_3 multiplicities over seeds."""
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
    results: dict[str, Any] = {"task_config": asdict(cfg), "seeds": seeds, "problems": {}, "evidence": []}
    table = tune_all(cfg, PROBLEMS, Path(out_dir)) if cfg.tuning is not None else None
    hparams = {p: chosen_hparams(table, p) if table else default_hparams(cfg) for p in cfg.problems}
    jobs = [(name, s + 101 * i) for i, name in enumerate(cfg.problems) for s in seeds]
    if cfg.workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(cfg.workers) as pool:
            done = list(pool.map(run_seed, [j[0] for j in jobs], [cfg] * len(jobs), [j[1] for j in jobs],
                                 [hparams[j[0]] for j in jobs]))
    else:
        done = [run_seed(name, cfg, s, hparams[name]) for name, s in jobs]
    for name in cfg.problems:
        per_seed = [d for (job_name, _), d in zip(jobs, done) if job_name == name]
        summary = summarise(name, per_seed, cfg)
        results["problems"][name] = summary
        results["evidence"] += evidence(name, summary, seeds)
    results["summary"] = {
        name: {m: {"in_distribution": r["in_distribution_mean"], "at_8L": r["accuracy_mean"][-1],
                   "mean_2L_to_8L": float(np.mean(r["out_of_distribution_mean"]))}
               for m, r in res["models"].items()}
        for name, res in results["problems"].items()
    }
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
