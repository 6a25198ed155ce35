"""Task ``matrixnet``: learned matrix representations and length generalisation, at the paper's scope.

Two word problems from Laird et al. 2025 (MatrixNet, arXiv 2501.09571):

* ``symmetric``: S_10 from its 9 adjacent transpositions; label: the element order (16 classes),
  from the cycle type (:mod:`learn.tasks.group_words`).
* ``braid-jh``: the infinite braid group B_3; regression of the six Jordan–Hölder multiplicities
  of the stable objects in beta(P_1), beta(P_2) of the 2-CY A_2 category, generated exactly from the
  reduced Burau representation at generic t (:mod:`learn.tasks.matrixnet_braid`, which cites the
  construction and how it was checked against the authors' data).

Models, all trained with the same steps, batch and data on words of length <= L:

* ``matrixnet-paper``: the paper's MatrixNet with the non-linear (tanh MLP) matrix block, general
  GL(d) matrices, plain products, and the relation regulariser;
* ablations ``matrixnet-orthogonal-conj`` (skew-symmetric algebra elements, generators tied to be
  conjugate, relation regulariser: this project's earlier version) and ``matrixnet-orthogonal``
  (skew-symmetric, untied);
* baselines on the same tokens (:mod:`learn.tasks.matrixnet_baselines`): MLP on padded one-hot
  words, LSTM, Transformer.

Accuracy (regression: all six rounded outputs exact) is measured on fresh words of exactly
L, 2L, ..., 8L letters and in distribution (lengths 1..L), over several seeds; ledger entries
compare the paper model with each baseline (and each ablation) on mean accuracy over 2L..8L.
Outputs: ``results/matrixnet.json`` (via ``symgym task matrixnet``) and ``results/matrixnet.png``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from symgym.equivariance.matrixnet import MatrixNet, MatrixNetConfig
from symgym.learn.ledger import claim
from symgym.learn.tasks.group_words import SymmetricWords
from symgym.learn.tasks.matrixnet_baselines import LSTMClassifier, OneHotMLP, TransformerClassifier
from symgym.learn.tasks.matrixnet_braid import OUTPUT_NAMES, BraidJordanHolderWords

PAPER_MODEL = "matrixnet-paper"
ABLATIONS = ("matrixnet-orthogonal-conj", "matrixnet-orthogonal")
BASELINES = ("mlp", "lstm", "transformer")
MODELS = (PAPER_MODEL,) + ABLATIONS + BASELINES
PROBLEMS: dict[str, Callable[[], Any]] = {
    "symmetric": lambda: SymmetricWords(n=10),
    "braid-jh": BraidJordanHolderWords,
}
DESCRIPTIONS = {
    "symmetric": "S_10 (adjacent transpositions); label: element order, 16 classes",
    "braid-jh": "B_3; regression of the 6 Jordan-Holder multiplicities of beta(P_1), beta(P_2) (2-CY A_2)",
}


@dataclass
class TaskConfig:
    """Everything a run depends on (saved into the results)."""

    problems: tuple[str, ...] = tuple(PROBLEMS)
    models: tuple[str, ...] = MODELS
    n_seeds: int = 3
    train_max_len: dict[str, int] = field(default_factory=lambda: {"symmetric": 10, "braid-jh": 6})
    eval_multipliers: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    n_train: int = 20000
    steps: int = 1200
    batch_size: int = 128
    n_eval: int = 200
    matrix_dim: dict[str, int] = field(default_factory=lambda: {"symmetric": 12, "braid-jh": 8})
    relation_weight: float = 0.1
    relation_warmup: float = 0.5
    lr: dict[str, float] = field(default_factory=lambda: {
        PAPER_MODEL: 3e-3, "matrixnet-orthogonal-conj": 3e-3, "matrixnet-orthogonal": 3e-3,
        "mlp": 1e-3, "lstm": 3e-3, "transformer": 1e-3,
    })
    baseline_hidden: int = 128
    log_every: int = 100
    workers: int = 2  # (problem, seed) jobs run in parallel processes

    def eval_lengths(self, problem: str) -> list[int]:
        return [m * self.train_max_len[problem] for m in self.eval_multipliers]


def quick_config() -> TaskConfig:
    return TaskConfig(n_seeds=2, n_train=500, steps=15, n_eval=40, eval_multipliers=(1, 2, 8), log_every=5, workers=1)


# --------------------------------------------------------------------------- models --
def build_model(name: str, problem: Any, cfg: TaskConfig) -> nn.Module:
    """Instantiate model ``name`` for ``problem`` (outputs: classes or regression targets)."""
    n_out, dim = problem.n_outputs, cfg.matrix_dim[problem.name]
    if name == PAPER_MODEL:
        return MatrixNet(MatrixNetConfig(problem.n_generators, n_out, dim=dim, parametrisation="mlp"))
    if name in ABLATIONS:
        return MatrixNet(MatrixNetConfig(
            problem.n_generators, n_out, dim=dim, conjugate_generators=name == "matrixnet-orthogonal-conj"
        ))
    hidden = cfg.baseline_hidden
    if name == "mlp":
        return OneHotMLP(problem.vocab_size, max(cfg.eval_lengths(problem.name)), n_out, hidden=2 * hidden)
    if name == "lstm":
        return LSTMClassifier(problem.vocab_size, n_out, embed=32, hidden=hidden)
    if name == "transformer":
        return TransformerClassifier(problem.vocab_size, n_out, width=hidden // 2, layers=2)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def _loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.dtype == torch.long:
        return F.cross_entropy(outputs, targets)
    return F.mse_loss(outputs, targets)


# ------------------------------------------------------------------------- training --
def train_model(
    model: nn.Module,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    regulariser: Callable[[], torch.Tensor] | None = None,
    relation_weight: float = 0.0,
    relation_warmup: float = 0.0,
    log_every: int = 50,
) -> dict[str, list[float]]:
    """Adam + cosine schedule on cross-entropy (long targets) or MSE (float targets),
    plus ``relation_weight * regulariser()`` ramped up over the first ``relation_warmup`` of the steps
    (letting the task loss shape the representation first avoids mutually inconsistent
    generator solutions); returns the loss curve."""
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    curve: dict[str, list[float]] = {"step": [], "loss": [], "relation": []}
    loss_acc, rel_acc, count = 0.0, 0.0, 0
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(tokens), (batch_size,), generator=gen)
        batch = tokens[idx]
        batch = batch[:, : int((batch != 0).sum(1).max())]  # drop all-padding columns
        task_loss = _loss(model(batch), targets[idx])
        loss, rel = task_loss, torch.zeros(())
        if regulariser is not None:
            rel = regulariser()
            ramp = min(1.0, step / (relation_warmup * steps)) if relation_warmup > 0 else 1.0
            loss = loss + ramp * relation_weight * rel
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        loss_acc, rel_acc, count = loss_acc + task_loss.item(), rel_acc + rel.item(), count + 1
        if step % log_every == 0 or step == steps:
            curve["step"].append(step)
            curve["loss"].append(loss_acc / count)
            curve["relation"].append(rel_acc / count)
            loss_acc, rel_acc, count = 0.0, 0.0, 0
    model.eval()
    return curve


@torch.no_grad()
def correct_mask(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """Per word: class predicted right, or (regression) every rounded output equal to its target.
    Non-finite outputs (overflowing products) count as wrong."""
    model.eval()
    masks = []
    for start in range(0, len(tokens), chunk):
        out = model(tokens[start : start + chunk])
        tgt = targets[start : start + chunk]
        if tgt.dtype == torch.long:
            masks.append(out.argmax(1) == tgt)
        else:
            masks.append((torch.isfinite(out) & (out.round() == tgt)).all(1))
    return torch.cat(masks)


def accuracy(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> float:
    return float(correct_mask(model, tokens, targets).float().mean())


def constant_predictor_accuracy(targets: np.ndarray) -> float:
    """Accuracy of always predicting the most common label (row) of ``targets``."""
    _, counts = np.unique(targets.reshape(len(targets), -1), axis=0, return_counts=True)
    return float(counts.max() / len(targets))


# ---------------------------------------------------------------------------- run --
def make_data(problem: Any, rng: np.random.Generator, n: int, min_len: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, _ = problem.sample_words(rng, n, min_len, max_len)
    if problem.kind == "regression":
        return torch.from_numpy(tokens), torch.from_numpy(problem.targets(tokens)).float()
    return torch.from_numpy(tokens), torch.from_numpy(problem.labels(tokens))


def run_seed(problem_name: str, cfg: TaskConfig, seed: int) -> dict[str, Any]:
    """Train every model on one problem with one seed; accuracy vs length, in distribution, relations."""
    torch.set_num_threads(1)  # also in worker processes
    problem = PROBLEMS[problem_name]()
    rng = np.random.default_rng(seed)
    length = cfg.train_max_len[problem_name]
    train = make_data(problem, rng, cfg.n_train, 1, length)
    evals = {n: make_data(problem, rng, cfg.n_eval, n, n) for n in cfg.eval_lengths(problem_name)}
    in_dist = make_data(problem, rng, cfg.n_eval, 1, length)
    relators = problem.relations()
    out: dict[str, Any] = {
        "seed": seed,
        "constant_predictor_accuracy": [constant_predictor_accuracy(evals[n][1].numpy()) for n in evals],
        "max_target": [float(evals[n][1].max()) for n in evals] if problem.kind == "regression" else None,
        "models": {},
    }
    for offset, name in enumerate(cfg.models):
        torch.manual_seed(seed * 1000 + offset)
        model = build_model(name, problem, cfg)
        is_matrixnet = isinstance(model, MatrixNet)
        with torch.no_grad():
            rel_init = float(model.representation.relation_errors(relators).mean()) if is_matrixnet else None
        start = time.perf_counter()
        curve = train_model(
            model, *train, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr[name], seed=seed + offset,
            regulariser=(lambda m=model: m.relation_loss(relators)) if is_matrixnet else None,
            relation_weight=cfg.relation_weight, relation_warmup=cfg.relation_warmup, log_every=cfg.log_every,
        )
        train_time = time.perf_counter() - start
        acc = [accuracy(model, *evals[n]) for n in evals]
        result: dict[str, Any] = {
            "accuracy": acc,
            "in_distribution_accuracy": accuracy(model, *in_dist),
            "out_of_distribution_mean": float(np.mean(acc[1:])) if len(acc) > 1 else acc[0],
            "loss_curve": curve,
            "train_time_s": round(train_time, 2),
            "n_params": sum(p.numel() for p in model.parameters()),
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
    """Train the MatrixNet variants and baselines on S_10 orders and B_3 multiplicities over seeds."""
    from symgym.learn.tasks.matrixnet_plot import plot_results

    torch.set_num_threads(1)  # shared CPUs: parallelism only adds contention for these small models
    cfg = config or (quick_config() if quick else TaskConfig())
    unknown = [p for p in cfg.problems if p not in PROBLEMS] + [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown problem(s)/model(s) {unknown}; problems: {list(PROBLEMS)}, models: {list(MODELS)}")
    if cfg.n_seeds < 1:
        raise ValueError(f"n_seeds must be positive, got {cfg.n_seeds}")
    seeds = [seed + i for i in range(cfg.n_seeds)]
    results: dict[str, Any] = {"task_config": asdict(cfg), "seeds": seeds, "problems": {}, "evidence": []}
    jobs = [(name, s + 101 * i) for i, name in enumerate(cfg.problems) for s in seeds]
    if cfg.workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(cfg.workers) as pool:
            done = list(pool.map(run_seed, [j[0] for j in jobs], [cfg] * len(jobs), [j[1] for j in jobs]))
    else:
        done = [run_seed(name, cfg, s) for name, s in jobs]
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
    results["figure"] = str(plot_results(results, Path(out_dir) / "matrixnet.png"))
    return results
