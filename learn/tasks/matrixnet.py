"""Task ``matrixnet``: learned matrix representations and length generalisation.

For three word problems (S_5 element order, D_7 element identity, B_4 Burau-trace mod 3;
see :mod:`learn.tasks.group_words`) we train, on words of length <= L,

* MatrixNet with the relation regulariser,
* MatrixNet without it,
* baselines on the same tokens: an MLP on padded one-hot words, an LSTM and a small
  Transformer (sinusoidal positions, so it accepts any length),

then measure accuracy on words of exactly length L, ..., 4L, and how far MatrixNet's
learned generator matrices are from satisfying the group's defining relations.
Outputs: ``results/matrixnet.json`` (via ``symgym task matrixnet``) and ``results/matrixnet.png``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from equivariance.matrixnet import MatrixNet, MatrixNetConfig
from learn.io import save_figure
from learn.tasks.group_words import WordProblem, make_problem

MODELS = ("matrixnet", "matrixnet-noreg", "mlp", "lstm", "transformer")
GROUPS: dict[str, dict[str, Any]] = {
    "symmetric": {"n": 5},
    "dihedral": {"m": 7},
    "braid": {"n": 4, "p": 3, "t": 2},
}
DESCRIPTIONS = {
    "symmetric": "S_5 by adjacent transpositions; label: element order",
    "dihedral": "D_7 as Coxeter group of two reflections; label: the element (14 classes)",
    "braid": "B_4 (Artin generators); label: trace of reduced Burau matrix at t=2 over F_3",
}


@dataclass
class TaskConfig:
    """Everything a run depends on (saved into the results)."""

    train_max_len: int = 10
    n_train: int = 20000
    steps: int = 2500
    batch_size: int = 128
    eval_multipliers: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
    n_eval: int = 1000
    matrix_dim: int = 12
    relation_weight: float = 0.1
    relation_warmup: float = 0.5
    conjugate_generators: bool = True  # all three problems have conjugate generators (D_m: m odd)
    lr_matrixnet: float = 3e-3
    lr_baseline: float = 1e-3
    log_every: int = 50
    groups: tuple[str, ...] = tuple(GROUPS)
    models: tuple[str, ...] = MODELS
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def eval_lengths(self) -> list[int]:
        return sorted({int(round(m * self.train_max_len)) for m in self.eval_multipliers})

    @property
    def max_len(self) -> int:
        return max(self.eval_lengths)


def quick_config() -> TaskConfig:
    return TaskConfig(steps=600, n_train=8000, n_eval=400, eval_multipliers=(1.0, 2.0, 3.0, 4.0))


# ------------------------------------------------------------------------ baselines --
class OneHotMLP(nn.Module):
    """MLP on one-hot tokens padded to a fixed maximum length (positions never seen stay untrained)."""

    def __init__(self, vocab_size: int, max_len: int, n_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.net = nn.Sequential(
            nn.Linear(vocab_size * max_len, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"word length {tokens.shape[1]} exceeds the MLP's max_len={self.max_len}")
        tokens = F.pad(tokens, (0, self.max_len - tokens.shape[1]))
        return self.net(F.one_hot(tokens, self.vocab_size).float().flatten(1))


class LSTMClassifier(nn.Module):
    """LSTM reading the word left to right; the state after the last real token is classified."""

    def __init__(self, vocab_size: int, n_classes: int, embed: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != 0).sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.head(h[-1])


class TransformerClassifier(nn.Module):
    """Small pre-norm Transformer encoder with a CLS token and sinusoidal positions."""

    def __init__(self, vocab_size: int, n_classes: int, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(vocab_size + 1, width)  # last id is CLS
        self.cls_id = vocab_size
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_classes))

    def positions(self, length: int) -> torch.Tensor:
        pos = torch.arange(length, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, self.width, 2, dtype=torch.float32) * (-math.log(1e4) / self.width))
        enc = torch.zeros(length, self.width)
        enc[:, 0::2], enc[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        return enc

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = torch.full((tokens.shape[0], 1), self.cls_id, dtype=tokens.dtype, device=tokens.device)
        seq = torch.cat([cls, tokens], dim=1)
        x = self.embed(seq) + self.positions(seq.shape[1]).to(tokens.device)
        out = self.encoder(x, src_key_padding_mask=seq == 0)
        return self.head(out[:, 0])


def build_model(name: str, problem: WordProblem, cfg: TaskConfig) -> nn.Module:
    """Instantiate model ``name`` for ``problem``."""
    if name in ("matrixnet", "matrixnet-noreg"):
        return MatrixNet(MatrixNetConfig(
            problem.n_generators, problem.n_classes, dim=cfg.matrix_dim, conjugate_generators=cfg.conjugate_generators
        ))
    if name == "mlp":
        return OneHotMLP(problem.vocab_size, cfg.max_len, problem.n_classes)
    if name == "lstm":
        return LSTMClassifier(problem.vocab_size, problem.n_classes)
    if name == "transformer":
        return TransformerClassifier(problem.vocab_size, problem.n_classes)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


# ------------------------------------------------------------------------- training --
def train_classifier(
    model: nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    regulariser: Callable[[], torch.Tensor] | None = None,
    relation_weight: float = 0.0,
    relation_warmup: float = 0.0,
    log_every: int = 50,
) -> dict[str, list[float]]:
    """Adam on cross-entropy (+ ``relation_weight * regulariser()``); returns the loss curve.

    ``relation_warmup``: fraction of the steps over which the relation weight ramps up from 0.
    Starting at full weight pulls each generator to the nearest involution/relation solution
    independently, and in SO(d) those can be mutually inconsistent (local minima); letting the
    cross-entropy shape the representation first avoids that.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    curve: dict[str, list[float]] = {"step": [], "ce": [], "relation": []}
    ce_acc, rel_acc, count = 0.0, 0.0, 0
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(tokens), (batch_size,), generator=gen)
        batch = tokens[idx]
        batch = batch[:, : int((batch != 0).sum(1).max())]  # drop all-padding columns
        ce = F.cross_entropy(model(batch), labels[idx])
        loss = ce
        rel = torch.zeros(())
        if regulariser is not None:
            rel = regulariser()
            ramp = min(1.0, step / (relation_warmup * steps)) if relation_warmup > 0 else 1.0
            loss = loss + ramp * relation_weight * rel
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        ce_acc, rel_acc, count = ce_acc + ce.item(), rel_acc + rel.item(), count + 1
        if step % log_every == 0 or step == steps:
            curve["step"].append(step)
            curve["ce"].append(ce_acc / count)
            curve["relation"].append(rel_acc / count)
            ce_acc, rel_acc, count = 0.0, 0.0, 0
    model.eval()
    return curve


@torch.no_grad()
def accuracy(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, chunk: int = 1000) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(tokens), chunk):
        logits = model(tokens[start : start + chunk])
        correct += int((logits.argmax(1) == labels[start : start + chunk]).sum())
    return correct / len(tokens)


def _relation_summary(errors: torch.Tensor) -> dict[str, float]:
    return {"mean": float(errors.mean()), "max": float(errors.max())}


# ---------------------------------------------------------------------------- run --
def run_group(group: str, cfg: TaskConfig, seed: int) -> dict[str, Any]:
    """Train every model on one word problem and evaluate accuracy vs length."""
    problem = make_problem(group, **GROUPS[group])
    rng = np.random.default_rng(seed)
    train_tok, _ = problem.sample_words(rng, cfg.n_train, 1, cfg.train_max_len)
    train_lab = problem.labels(train_tok)
    evals = {}
    for length in cfg.eval_lengths:
        tok, _ = problem.sample_words(rng, cfg.n_eval, length, length)
        evals[length] = (torch.from_numpy(tok), torch.from_numpy(problem.labels(tok)))
    id_tok, _ = problem.sample_words(rng, cfg.n_eval, 1, cfg.train_max_len)
    id_eval = (torch.from_numpy(id_tok), torch.from_numpy(problem.labels(id_tok)))
    train = (torch.from_numpy(train_tok), torch.from_numpy(train_lab))
    relators = problem.relations()

    out: dict[str, Any] = {
        "description": DESCRIPTIONS[group],
        "n_classes": problem.n_classes,
        "n_relators": len(relators),
        "majority_class_accuracy": [
            float(np.bincount(evals[n][1].numpy(), minlength=problem.n_classes).max() / cfg.n_eval)
            for n in cfg.eval_lengths
        ],
        "models": {},
        "relation_error": {},
    }
    for offset, name in enumerate(cfg.models):
        torch.manual_seed(seed * 1000 + offset)
        model = build_model(name, problem, cfg)
        is_matrixnet = name.startswith("matrixnet")
        if is_matrixnet and "at_init" not in out["relation_error"]:
            with torch.no_grad():
                out["relation_error"]["at_init"] = _relation_summary(model.representation.relation_errors(relators))
        use_reg = name == "matrixnet"
        start = time.perf_counter()
        curve = train_classifier(
            model, *train, steps=cfg.steps, batch_size=cfg.batch_size,
            lr=cfg.lr_matrixnet if is_matrixnet else cfg.lr_baseline, seed=seed + offset,
            regulariser=(lambda m=model: m.relation_loss(relators)) if use_reg else None,
            relation_weight=cfg.relation_weight, relation_warmup=cfg.relation_warmup, log_every=cfg.log_every,
        )
        train_time = time.perf_counter() - start
        result = {
            "accuracy": [accuracy(model, *evals[n]) for n in cfg.eval_lengths],
            "in_distribution_accuracy": accuracy(model, *id_eval),
            "train_ce_first": curve["ce"][0],
            "train_ce_last": curve["ce"][-1],
            "loss_curve": curve,
            "train_time_s": round(train_time, 2),
            "n_params": sum(p.numel() for p in model.parameters()),
        }
        if is_matrixnet:
            with torch.no_grad():
                errors = model.representation.relation_errors(relators)
            key = "with_regulariser" if use_reg else "without_regulariser"
            out["relation_error"][key] = _relation_summary(errors)
            result["relation_error"] = out["relation_error"][key]
        out["models"][name] = result
        print(f"[matrixnet] {group:9s} {name:16s} id-acc {result['in_distribution_accuracy']:.3f} "
              f"acc@{cfg.eval_lengths[-1]} {result['accuracy'][-1]:.3f} ({train_time:.0f}s)", flush=True)
    return out


def plot_results(results: dict[str, Any], cfg: TaskConfig, path: Path) -> Path:
    """Accuracy vs word length per model and group, plus relation error with/without the regulariser."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(results["groups"])
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(4.2 * (len(groups) + 1), 3.8))
    styles = {"matrixnet": ("C0", "-", "o"), "matrixnet-noreg": ("C0", "--", "s"), "mlp": ("C1", "-", "^"),
              "lstm": ("C2", "-", "v"), "transformer": ("C3", "-", "D")}
    lengths = cfg.eval_lengths
    for ax, group in zip(axes, groups):
        res = results["groups"][group]
        for name, model_res in res["models"].items():
            color, ls, marker = styles.get(name, ("k", "-", "."))
            ax.plot(lengths, model_res["accuracy"], color=color, ls=ls, marker=marker, ms=4, label=name)
        ax.plot(lengths, res["majority_class_accuracy"], color="gray", ls=":", label="majority class")
        ax.axvline(cfg.train_max_len, color="k", lw=0.8, alpha=0.5)
        ax.set_title(res["description"], fontsize=8)
        ax.set_xlabel(f"word length (trained on <= {cfg.train_max_len})")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="lower left")

    ax = axes[-1]
    kinds = [("at_init", "at init"), ("without_regulariser", "trained, no reg."), ("with_regulariser", "trained, reg.")]
    width = 0.8 / len(kinds)
    for i, (key, label) in enumerate(kinds):
        vals = [results["groups"][g]["relation_error"].get(key, {}).get("mean", np.nan) for g in groups]
        ax.bar(np.arange(len(groups)) + (i - 1) * width, vals, width, label=label)
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 8)  # headroom for the legend
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(r"mean $\|\rho(r)-I\|_F/\sqrt{d}$ over relators")
    ax.set_title("MatrixNet relation error", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path)


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), config: TaskConfig | None = None) -> dict:
    """Train MatrixNet and baselines on all word problems; return accuracy-vs-length and relation errors."""
    torch.set_num_threads(1)  # shared CPUs: parallelism only adds contention for these small models
    cfg = config or (quick_config() if quick else TaskConfig())
    unknown = [g for g in cfg.groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; known: {', '.join(GROUPS)}")
    results: dict[str, Any] = {
        "train_max_len": cfg.train_max_len,
        "eval_lengths": cfg.eval_lengths,
        "task_config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "groups": {},
    }
    for i, group in enumerate(cfg.groups):
        results["groups"][group] = run_group(group, cfg, seed + 17 * i)
    results["summary_accuracy_at_4L"] = {
        g: {m: r["accuracy"][-1] for m, r in res["models"].items()} for g, res in results["groups"].items()
    }
    results["summary_relation_error_mean"] = {
        g: {k: v["mean"] for k, v in res["relation_error"].items()} for g, res in results["groups"].items()
    }
    results["figure"] = str(plot_results(results, cfg, Path(out_dir) / "matrixnet.png"))
    return results
