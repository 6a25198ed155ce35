"""Figure for the ``matrixnet`` task: accuracy vs word length per problem, in-distribution accuracy."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from symgym.learn.io import save_figure

STYLES = {
    "matrixnet-paper": ("C0", "-", "o"),
    "matrixnet-orthogonal-conj": ("C0", "--", "s"),
    "matrixnet-orthogonal": ("C0", ":", "x"),
    "mlp": ("C1", "-", "^"),
    "lstm": ("C2", "-", "v"),
    "transformer": ("C3", "-", "D"),
}


def plot_results(results: dict[str, Any], path: Path) -> Path:
    """One panel per problem (mean +- std over seeds vs length, up to 8x the training length)
    and a bar panel of in-distribution accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(results["problems"])
    fig, axes = plt.subplots(1, len(problems) + 1, figsize=(4.6 * (len(problems) + 1), 4.0))
    n_seeds = len(results["seeds"])
    for ax, name in zip(axes, problems):
        res = results["problems"][name]
        lengths = res["eval_lengths"]
        for model, r in res["models"].items():
            color, ls, marker = STYLES.get(model, ("k", "-", "."))
            mean, std = np.array(r["accuracy_mean"]), np.array(r["accuracy_std"])
            ax.plot(lengths, mean, color=color, ls=ls, marker=marker, ms=4, label=model)
            ax.fill_between(lengths, mean - std, mean + std, color=color, alpha=0.12)
        ax.plot(lengths, res["constant_predictor_accuracy"], color="gray", ls=":", label="constant predictor")
        ax.axvline(res["train_max_len"], color="k", lw=0.8, alpha=0.5)
        ax.set_title(res["description"], fontsize=7.5)
        ax.set_xlabel(f"word length (trained on <= {res['train_max_len']})")
        ax.set_ylabel("accuracy" + (" (all 6 outputs exact)" if res["kind"] == "regression" else ""))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")

    ax = axes[-1]
    models = list(results["problems"][problems[0]]["models"])
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        color = STYLES.get(model, ("k",))[0]
        vals = [results["problems"][p]["models"][model]["in_distribution_mean"] for p in problems]
        hatch = {"matrixnet-orthogonal-conj": "//", "matrixnet-orthogonal": ".."}.get(model)
        ax.bar(np.arange(len(problems)) + (i - (len(models) - 1) / 2) * width, vals, width, color=color,
               hatch=hatch, alpha=0.8, label=model)
    ax.set_xticks(np.arange(len(problems)), problems)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("in-distribution accuracy (lengths 1..L)")
    ax.set_title(f"fit in distribution (mean of {n_seeds} seeds)", fontsize=9)
    ax.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)
