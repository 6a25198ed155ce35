"""Building blocks of the ``matrixnet`` task: problems, models, configuration, training, data, accuracy.

Shared by the task (:mod:`learn.tasks.matrixnet.task`: seeds, summaries, ledger) and its tuning stage
(:mod:`learn.tasks.matrixnet.tuning`), which both import from here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from symgym.equivariance.matrixnet import MatrixNet, MatrixNetConfig
from symgym.learn.tasks.matrixnet.group_words import SymmetricWords
from symgym.learn.tasks.matrixnet.baselines import LSTMClassifier, OneHotMLP, TransformerClassifier
from symgym.learn.tasks.matrixnet.braid import BraidJordanHolderWords

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
class TuningConfig:
    """The tuning stage (:mod:`learn.tasks.matrixnet.tuning`): the same grid and step ladder for every model."""

    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # the base grid, tried for every model
    #: tried in turn (every width) while a model's best learning rate is the largest tried: no edge choices
    lrs_above: tuple[float, ...] = (3e-2, 1e-1)
    #: tried in turn while a model's best learning rate is the smallest tried
    lrs_below: tuple[float, ...] = (3e-4,)
    hidden: tuple[int, ...] = (128, 256)  # MatrixNet head width / baseline hidden size
    steps: dict[str, int] = field(default_factory=lambda: {"symmetric": 1000, "braid-jh": 500})
    max_steps: dict[str, int] = field(default_factory=lambda: {"symmetric": 4000, "braid-jh": 2000})
    fit_threshold: float = 0.95  # "fits in distribution": validation accuracy at least this
    n_val: int = 1000
    seed: int = 1000  # tuning seed: none of the evaluation seeds


@dataclass
class TaskConfig:
    """Everything a run depends on (saved into the results)."""

    problems: tuple[str, ...] = tuple(PROBLEMS)
    models: tuple[str, ...] = MODELS
    n_seeds: int = 5  # the ledger gives a verdict from 5 seeds a side (fewer: "underpowered")
    train_max_len: dict[str, int] = field(default_factory=lambda: {"symmetric": 10, "braid-jh": 6})
    eval_multipliers: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    n_train: int | None = None  # None: fresh words, steps x batch of them (each drawn once)
    steps: int = 1200  # used (with lr, baseline_hidden) only when tuning is None
    batch_size: int = 128
    n_eval: int = 200  # words per test length
    n_eval_in_distribution: int = 1000  # fresh words of lengths 1..L (the fit check)
    matrix_dim: dict[str, int] = field(default_factory=lambda: {"symmetric": 12, "braid-jh": 8})
    relation_weight: float = 0.1
    relation_warmup: float = 0.5
    lr: dict[str, float] = field(default_factory=lambda: {
        PAPER_MODEL: 3e-3, "matrixnet-orthogonal-conj": 3e-3, "matrixnet-orthogonal": 3e-3,
        "mlp": 1e-3, "lstm": 3e-3, "transformer": 1e-3,
    })
    baseline_hidden: int = 128
    log_every: int = 100
    workers: int = 1  # (problem, seed) jobs run in parallel processes
    tuning: TuningConfig | None = field(default_factory=TuningConfig)

    def eval_lengths(self, problem: str) -> list[int]:
        return [m * self.train_max_len[problem] for m in self.eval_multipliers]


def quick_config() -> TaskConfig:
    tiny = TuningConfig(lrs=(1e-3, 3e-3), lrs_above=(1e-2,), lrs_below=(), hidden=(32,),
                        steps={"symmetric": 8, "braid-jh": 8}, max_steps={"symmetric": 16, "braid-jh": 8}, n_val=60)
    return TaskConfig(n_seeds=2, n_train=500, steps=15, n_eval=40, n_eval_in_distribution=40, eval_multipliers=(1, 2, 8),
                      log_every=5, workers=1,
                      matrix_dim={"symmetric": 6, "braid-jh": 4}, tuning=tiny)


def default_hparams(cfg: TaskConfig) -> dict[str, dict[str, Any]]:
    """Per-model ``lr``, ``hidden``, ``steps`` when the tuning stage is off."""
    return {m: {"lr": cfg.lr[m], "hidden": cfg.baseline_hidden, "steps": cfg.steps} for m in cfg.models}


def training_pool_size(cfg: TaskConfig, steps: int) -> int:
    """Training words to sample: ``cfg.n_train``, or steps x batch (fresh words, each drawn once)."""
    return cfg.n_train if cfg.n_train is not None else steps * cfg.batch_size


# --------------------------------------------------------------------------- models --
def build_model(name: str, problem: Any, cfg: TaskConfig, hidden: int | None = None) -> nn.Module:
    """Instantiate model ``name`` for ``problem`` (outputs: classes or regression targets); ``hidden``:
    the MatrixNet head width / baseline width (default ``cfg.baseline_hidden``)."""
    n_out, dim = problem.n_outputs, cfg.matrix_dim[problem.name]
    hidden = cfg.baseline_hidden if hidden is None else hidden
    if name == PAPER_MODEL:
        return MatrixNet(MatrixNetConfig(problem.n_generators, n_out, dim=dim, parametrisation="mlp", hidden=hidden))
    if name in ABLATIONS:
        return MatrixNet(MatrixNetConfig(
            problem.n_generators, n_out, dim=dim, conjugate_generators=name == "matrixnet-orthogonal-conj", hidden=hidden
        ))
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
    generator solutions); returns the loss curve. Batches walk through random permutations of the
    first ``min(len(tokens), steps * batch_size)`` words, so with a pool of steps x batch words
    every word is drawn exactly once (fresh words) and the first words of any pool are trained on."""
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    curve: dict[str, list[float]] = {"step": [], "loss": [], "relation": []}
    loss_acc, rel_acc, count = 0.0, 0.0, 0
    model.train()
    n_used = min(len(tokens), steps * batch_size)
    order, pos = torch.randperm(n_used, generator=gen), 0
    for step in range(1, steps + 1):
        if pos + batch_size > n_used:
            order, pos = torch.randperm(n_used, generator=gen), 0
        idx, pos = order[pos : pos + batch_size], pos + batch_size
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


def train_task_model(
    model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], relators: Any, cfg: TaskConfig, lr: float, steps: int,
    seed: int, log_every: int,
) -> tuple[dict[str, list[float]], float]:
    """:func:`train_model` with the task's batch and relation settings (the relation loss only for a
    MatrixNet); returns the loss curve and the wall time in seconds."""
    regulariser = (lambda: model.relation_loss(relators)) if isinstance(model, MatrixNet) else None
    start = time.perf_counter()
    curve = train_model(model, *train, steps=steps, batch_size=cfg.batch_size, lr=lr, seed=seed,
                        regulariser=regulariser, relation_weight=cfg.relation_weight,
                        relation_warmup=cfg.relation_warmup, log_every=log_every)
    return curve, time.perf_counter() - start


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


def majority_label(target: np.ndarray) -> int:
    """The most frequent class of ``target`` (the smallest on ties)."""
    values, counts = np.unique(target, return_counts=True)
    return int(values[np.argmax(counts)])


def balanced_accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean recall over the classes present in ``target`` (a constant predictor scores 1 / #classes)."""
    classes = np.unique(target)
    return float(np.mean([(pred[target == c] == c).mean() for c in classes]))


def non_majority_accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Accuracy on the words whose label is not ``target``'s majority class (0 for the majority-label predictor);
    NaN if every word has the majority label."""
    rest = target != majority_label(target)
    return float((pred[rest] == target[rest]).mean()) if rest.any() else float("nan")


@torch.no_grad()
def word_scores(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor, chunk: int = 1000) -> dict[str, float]:
    """``accuracy`` (as :func:`accuracy`); for class labels also ``balanced_accuracy``, ``non_majority_accuracy``
    and the ``majority_label_rate`` of ``targets`` (what always answering the most frequent label scores)."""
    out = {"majority_label_rate": constant_predictor_accuracy(targets.numpy())}
    if targets.dtype != torch.long:
        return {"accuracy": accuracy(model, tokens, targets), **out}
    model.eval()  # class labels: one forward pass gives every score (accuracy as correct_mask counts it)
    pred = torch.cat([model(tokens[i : i + chunk]).argmax(1) for i in range(0, len(tokens), chunk)])
    out = {"accuracy": float((pred == targets).float().mean()), **out}
    out["balanced_accuracy"] = balanced_accuracy(pred.numpy(), targets.numpy())
    out["non_majority_accuracy"] = non_majority_accuracy(pred.numpy(), targets.numpy())
    return out


def constant_predictor_accuracy(targets: np.ndarray) -> float:
    """Accuracy of always predicting the most common label (row) of ``targets``."""
    _, counts = np.unique(targets.reshape(len(targets), -1), axis=0, return_counts=True)
    return float(counts.max() / len(targets))


# --------------------------------------------------------------------------- data --
def make_data(
    problem: Any, rng: np.random.Generator, n: int, min_len: int, max_len: int, chunk: int = 50000
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random words with lengths in [min_len, max_len] and their exact labels (computed in chunks)."""
    tokens, _ = problem.sample_words(rng, n, min_len, max_len)
    label = problem.targets if problem.kind == "regression" else problem.labels
    targets = np.concatenate([label(tokens[i : i + chunk]) for i in range(0, n, chunk)])
    targets_t = torch.from_numpy(targets)
    return torch.from_numpy(tokens), targets_t.float() if problem.kind == "regression" else targets_t
