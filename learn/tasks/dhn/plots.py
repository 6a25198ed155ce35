"""Figure for the DHN task: one row per system (rollout error, energy drift, VPT, super-resolution, probe)."""
from __future__ import annotations

from typing import Any

import numpy as np

COLOURS = {"dhn": "C3", "dhn-midpoint": "C1", "hnn": "C0", "plain": "C2", "true simulator": "k", "linear": "C7"}
LABELS = {"dhn": "DHN (H+/H-)", "dhn-midpoint": "DHN midpoint (ablation)", "hnn": "HNN", "plain": "plain MLP",
          "true simulator": "true simulator", "linear": "linear"}


def _bars(ax, names, table, key, log=False, reference=None):
    """Seed means as bars, single seeds as dots."""
    for i, name in enumerate(names):
        entry = table[name][key]
        ax.bar(i, entry["mean"], color=COLOURS[name], alpha=0.7)
        ax.scatter([i] * len(entry["per_seed"]), entry["per_seed"], color="k", s=10, zorder=3)
    if reference is not None:
        ax.axhline(reference[1], color="C7", ls="--", label=reference[0])
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(names)), [LABELS[n].split(" (")[0] for n in names], rotation=20, fontsize=8)
    if log:
        ax.set_yscale("log")


def plot_overview(per_system: dict[str, dict], summary: dict[str, Any], cfg, models: tuple[str, ...]):
    """One row per system; ``models`` in the order of the legend and bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    MODELS = models  # noqa: N806

    systems = list(per_system)
    fig, axes = plt.subplots(len(systems), 5, figsize=(24, 4.2 * len(systems)), squeeze=False)
    steps = np.arange(cfg.horizon + 1)
    n_seeds = len(next(iter(per_system.values()))["seeds"])
    for row, system in enumerate(systems):
        curves, table = per_system[system]["curves"], summary[system]
        ax = axes[row, 0]
        for name in MODELS:
            ax.semilogy(steps[1:], curves["rmse"][name][1:], color=COLOURS[name], label=LABELS[name])
        ax.axhline(cfg.vpt_threshold, color="k", ls=":", label="VPT threshold")
        ax.axvline(cfg.train_length, color="C7", ls="--", lw=0.8)
        ax.set(title=f"{system}: rollout RMS error (mean of {n_seeds} seeds)", xlabel="steps after prefix",
               ylabel="RMS error (normalised)")
        ax.legend(fontsize=7)
        ax = axes[row, 1]
        for name, curve in curves["energy"].items():
            ax.semilogy(steps[1:], np.maximum(curve[1:], 1e-8), color=COLOURS[name], label=LABELS[name],
                        ls="--" if name == "true simulator" else "-")
        ax.axvspan(cfg.horizon - cfg.horizon // cfg.horizon_factor, cfg.horizon, color="C7", alpha=0.15)
        ax.set(title=f"energy drift |E-E0|/E0, true H (shaded: scored, 9-10x train horizon)",
               xlabel="steps after prefix")
        ax.legend(fontsize=7)
        ax = axes[row, 2]
        _bars(ax, MODELS, table, "vpt_steps")
        ax.set(title=f"valid prediction time (RMS err < {cfg.vpt_threshold})", ylabel="steps")
        ax = axes[row, 3]
        _bars(ax, MODELS, table, "interp_mse", log=True, reference=("linear interpolation", table["linear_interp_mse"]))
        ax.set(title=f"super-resolution x{cfg.interp_stride}: MSE on filled states", ylabel="MSE (normalised)")
        ax = axes[row, 4]
        _bars(ax, MODELS, table, "probe_r2", reference=("random codes", table["random_codes_probe_r2"]))
        ax.set(title="parameter probe R^2 on fitted codes (log params)", ylabel="R^2 (axis cut at -1)")
        ax.set_ylim(bottom=max(ax.get_ylim()[0], -1.0), top=1.0)
    fig.tight_layout()
    return fig


def plot_learning_curves(curves: dict[str, dict[str, dict[str, Any]]], chosen: dict[str, dict[str, float]]):
    """Learning curves of the full-scale study: one row per system.

    ``curves[system][model]`` holds ``"seeds"`` (a list of curves, one per evaluation seed) and ``"tuning"``
    (learning rate -> curve on the tuning seed); a curve is a list of points with ``iteration``,
    ``train_loss`` and ``val_rmse``. ``chosen[system][model]`` is the learning rate tuning picked.
    Columns: training loss and held-out rollout error over iterations (evaluation seeds), and the tuning
    seed's final held-out error against the learning rate (the chosen one ringed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(curves)
    fig, axes = plt.subplots(len(systems), 3, figsize=(16, 3.8 * len(systems)), squeeze=False)
    for row, system in enumerate(systems):
        for name, entry in curves[system].items():
            colour, label = COLOURS.get(name, "C7"), LABELS.get(name, name)
            for i, curve in enumerate(entry.get("seeds", [])):
                it = [p["iteration"] for p in curve]
                axes[row, 0].semilogy(it, [p["train_loss"] for p in curve], color=colour, alpha=0.8,
                                      label=label if i == 0 else None)
                axes[row, 1].semilogy(it, [p["val_rmse"] for p in curve], color=colour, alpha=0.8,
                                      label=label if i == 0 else None)
            tuning = entry.get("tuning", {})
            if tuning:
                lrs = sorted(tuning)
                finals = [tuning[lr][-1]["val_rmse"] if tuning[lr] else np.nan for lr in lrs]
                axes[row, 2].loglog(lrs, finals, "o-", color=colour, label=label)
                best = chosen.get(system, {}).get(name)
                if best in tuning and tuning[best]:
                    axes[row, 2].scatter([best], [tuning[best][-1]["val_rmse"]], s=160, facecolors="none",
                                         edgecolors=colour, linewidths=2)
        axes[row, 0].set(title=f"{system}: training loss (evaluation seeds)", xlabel="iteration")
        axes[row, 1].set(title="held-out rollout RMS error (validation trajectories)", xlabel="iteration")
        axes[row, 2].set(title="tuning seed: final held-out error vs learning rate", xlabel="learning rate")
        for ax in axes[row]:
            if ax.has_data():
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
