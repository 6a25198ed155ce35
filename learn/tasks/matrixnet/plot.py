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


def _panels(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(problem, score) per curve panel: accuracy for every problem, balanced accuracy too for class labels."""
    out = []
    for name, res in results["problems"].items():
        out.append((name, "accuracy"))
        if res["kind"] != "regression":
            out.append((name, "balanced_accuracy"))
    return out


def plot_results(results: dict[str, Any], path: Path) -> Path:
    """Per problem, mean +- std over seeds vs length (up to 8x the training length) with the majority-label rate;
    for class labels a balanced-accuracy panel beside it; then a bar panel of in-distribution accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(results["problems"])
    panels = _panels(results)
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.6 * (len(panels) + 1), 4.0))
    for ax, (name, score) in zip(axes, panels):
        res = results["problems"][name]
        lengths = res["eval_lengths"]
        for model, r in res["models"].items():
            color, ls, marker = STYLES.get(model, ("k", "-", "."))
            mean, std = np.array(r[f"{score}_mean"]), np.array(r[f"{score}_std"])
            ax.plot(lengths, mean, color=color, ls=ls, marker=marker, ms=4, label=model)
            ax.fill_between(lengths, mean - std, mean + std, color=color, alpha=0.12)
        if score == "accuracy":
            ax.plot(lengths, res["constant_predictor_accuracy"], color="gray", ls=":",
                    label="majority-label rate (constant predictor)")
        else:
            ax.plot(lengths, res["chance_balanced_accuracy"], color="gray", ls=":", label="any constant predictor")
        ax.axvline(res["train_max_len"], color="k", lw=0.8, alpha=0.5)
        n_seeds = len(res.get("seeds", results["seeds"]))
        ax.set_title(f"{res['description']} ({n_seeds} seeds)", fontsize=7.5)
        ax.set_xlabel(f"word length (trained on <= {res['train_max_len']})")
        ax.set_ylabel({"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy (mean per-class recall)"}[score]
                      + (" (all 6 outputs exact)" if res["kind"] == "regression" else ""))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    n_seeds = len(results["seeds"])

    ax = axes[-1]
    models = list(dict.fromkeys(m for p in problems for m in results["problems"][p]["models"]))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        color = STYLES.get(model, ("k",))[0]
        vals = [results["problems"][p]["models"].get(model, {}).get("in_distribution_mean", np.nan) for p in problems]
        hatch = {"matrixnet-orthogonal-conj": "//", "matrixnet-orthogonal": ".."}.get(model)
        ax.bar(np.arange(len(problems)) + (i - (len(models) - 1) / 2) * width, vals, width, color=color,
               hatch=hatch, alpha=0.8, label=model)
    if "tuning" in results:
        ax.axhline(results["tuning"]["fit_threshold"], color="k", ls="--", lw=0.8, label="fit threshold")
    rates = [results["problems"][p].get("in_distribution_majority_label_rate", np.nan) for p in problems]
    ax.hlines(rates, np.arange(len(problems)) - 0.45, np.arange(len(problems)) + 0.45, color="gray", ls=":",
              label="majority-label rate")
    ax.set_xticks(np.arange(len(problems)), problems)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("in-distribution accuracy (lengths 1..L)")
    ax.set_title(f"fit in distribution (mean over seeds, {n_seeds} planned)", fontsize=9)
    ax.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_tuning(results: dict[str, Any], path: Path) -> Path:
    """One panel per problem: validation accuracy of every tuning run (grid points by learning rate and
    width, then the more-steps ladder), the chosen configuration (star), the in-distribution accuracy
    of the multi-seed evaluation with that configuration (bar) and the fit threshold. Grid points at the
    learning rates added at an edge of the grid sit among the others, by learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tuning = results["tuning"]
    problems = list(tuning["table"])
    fig, axes = plt.subplots(1, len(problems), figsize=(6.4 * len(problems), 4.9), squeeze=False)
    for ax, name in zip(axes[0], problems):
        models = list(tuning["table"][name]["models"])
        lrs = sorted({r["lr"] for m in models for r in tuning["table"][name]["models"][m]["rows"]})
        widths = sorted({r["hidden"] for m in models for r in tuning["table"][name]["models"][m]["rows"]})
        for i, model in enumerate(models):
            color = STYLES.get(model, ("k",))[0]
            evaluated = results["problems"][name]["models"].get(model, {}).get("in_distribution_mean", np.nan)
            ax.bar(i, evaluated, 0.8, color=color, alpha=0.25, label="evaluation, chosen config (seed mean)" if i == 0 else None)
            n_points = len(lrs) * len(widths)
            for row in tuning["table"][name]["models"][model]["rows"]:
                if row["stage"] in ("grid", "edge"):  # lr outer, width inner, left to right
                    x = i - 0.36 + 0.5 * (lrs.index(row["lr"]) * len(widths) + widths.index(row["hidden"])) / max(1, n_points - 1)
                    ax.plot(x, row["val_accuracy"], "o", color=color, mfc=color if widths.index(row["hidden"]) else "none", ms=4)
                else:
                    x = i + 0.3
                    ax.plot(x, row["val_accuracy"], "^", color=color, ms=4)
                    ax.annotate(f"{row['steps']}", (x + 0.03, row["val_accuracy"] - 0.02), fontsize=5)
                if row["chosen"]:
                    ax.plot(x, row["val_accuracy"], "*", color="k", ms=10, mfc="none")
        ax.axhline(tuning["fit_threshold"], color="k", ls="--", lw=0.8, label=f"fit threshold {tuning['fit_threshold']}")
        ax.plot([], [], "o", color="gray", mfc="none", label=f"grid, width {widths[0]} (lr {lrs[0]:g}..{lrs[-1]:g} left to right)")
        if len(widths) > 1:
            ax.plot([], [], "o", color="gray", label=f"grid, width {widths[-1]}")
        ax.plot([], [], "^", color="gray", label="more steps (number = steps)")
        ax.plot([], [], "*", color="k", mfc="none", label="chosen (best validation)")
        ax.set_xticks(range(len(models)), [m.replace("matrixnet-", "mn-") for m in models], rotation=20, fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("in-distribution accuracy (lengths 1..L)")
        ax.set_title(f"tuning on {name}: validation accuracy per run", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return save_figure(fig, path)
