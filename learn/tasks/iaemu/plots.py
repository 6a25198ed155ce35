"""Figures for the IAEmu task (:mod:`learn.tasks.iaemu.task`): curves with bands, calibration, inverse posteriors."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symgym.learn.io import save_figure
from symgym.physics.galaxies import STAT_NAMES


def plot_curves(path: Path, r: np.ndarray, test: dict, norm, pred: dict, n_cases: int = 3,
                label: str = "paper") -> None:
    """Simulated realisations vs the emulator mean with 1 and 2 sigma (total) bands, held-out parameters."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, n_cases, figsize=(4.2 * n_cases, 9), squeeze=False)
    for c in range(n_cases):
        mean = norm.inverse(pred["mean"][c])
        sd = np.sqrt(pred["aleatoric"][c] + pred["epistemic"][c]) * norm.std
        theta = test["theta"][c]
        for s, name in enumerate(STAT_NAMES):
            ax = axes[s, c]
            for k in (2, 1):
                band = [mean[s] - k * sd[s], mean[s] + k * sd[s]]
                if s == 0:
                    band = [np.exp(b) - 1.0 for b in band]
                ax.fill_between(r, *band, color="C0", alpha=0.15 * (3 - k), lw=0, label=f"emulator {k}$\\sigma$")
            centre = np.exp(mean[0]) - 1.0 if s == 0 else mean[s]
            ax.plot(r, centre, color="C0", lw=1.5, label="emulator mean")
            for j, real in enumerate(test["stats"][c][:8]):  # the first 8 realisations of the target
                ax.plot(r, real[s], color="k", lw=0.6, alpha=0.5, marker=".", ms=3,
                        label="simulated realisations" if j == 0 else None)
            ax.set_xscale("log")
            if s == 0:
                ax.set_yscale("log")
            else:
                ax.axhline(0.0, color="grey", lw=0.5)
            ax.set_ylabel(f"{name}(r)")
            if s == 2:
                ax.set_xlabel("r [Mpc/h]")
            if s == 0:
                ax.set_title(f"mu_cen={theta[5]:.2f}, mu_sat={theta[6]:.2f}, logMmin={theta[0]:.2f}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"IAEmu on held-out parameters: simulator realisations vs the {label} model (total sigma)")
    save_figure(fig, path)


def plot_uncertainty(path: Path, z: dict, epistemic: dict) -> None:
    """Reliability of the predicted intervals per model (raw and recalibrated), and epistemic spread
    inside vs outside the training box. ``z[model] = (z_raw, z_recal)`` (P, R, 3, B);
    ``epistemic[model] = (inside, outside)`` per-parameter-set mean epistemic std."""
    import matplotlib.pyplot as plt
    from scipy.stats import norm as gauss

    fig, axes = plt.subplots(1, 1 + len(epistemic), figsize=(5 * (1 + len(epistemic)), 4))
    nominal = np.linspace(0.05, 0.99, 40)
    half_width = gauss.ppf(0.5 + nominal / 2)
    ax1 = axes[0]
    for m, (name, (z_raw, z_recal)) in enumerate(z.items()):
        for s, stat in enumerate(STAT_NAMES):
            ax1.plot(nominal, [(np.abs(z_raw[:, :, s]) < w).mean() for w in half_width], f"C{s}",
                     ls=("-", "--")[m % 2], label=f"{name} {stat}")
    ax1.plot([0, 1], [0, 1], "k:", lw=0.8, label="ideal")
    ax1.set(xlabel="nominal coverage", ylabel="empirical coverage (held-out realisations)",
            title="calibration of total predicted sigma (seed 0)")
    ax1.legend(fontsize=7)
    for ax, (name, (e_in, e_out)) in zip(axes[1:], epistemic.items()):
        bins = np.geomspace(min(e_in.min(), e_out.min()), max(e_in.max(), e_out.max()), 40)
        ax.hist(e_in, bins=bins, alpha=0.6, label="inside training range")
        ax.hist(e_out, bins=bins, alpha=0.6, label="outside training range")
        ax.set(xscale="log", xlabel="epistemic std (standardised units, bin mean)", ylabel="parameter sets",
               title=f"epistemic uncertainty: {name}")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_accuracy(path: Path, summary: dict, floor_ratios: dict | None = None, n_target: int | None = None) -> None:
    """Median relative error per statistic and model (top) and, with ``floor_ratios`` ({model: {stat: per-seed
    values}}), err/scatter in units of the perfect-emulator floor of ``n_target``-realisation targets (bottom)."""
    import matplotlib.pyplot as plt

    rows = 1 if floor_ratios is None else 2
    fig, axes = plt.subplots(rows, len(STAT_NAMES), figsize=(4.5 * len(STAT_NAMES), 4.2 * rows), squeeze=False)
    fig.subplots_adjust(hspace=0.45, wspace=0.3)
    models = list(summary)
    for ax, stat in zip(axes[0], STAT_NAMES):
        key = "median_rel_err" if stat == "xi" else "median_rel_err_significant_bins"
        _bars(ax, models, [summary[m][stat][key]["per_seed"] for m in models])
        ax.set(ylabel="median relative error", title=f"{stat} ({'all' if stat == 'xi' else 'significant'} bins)")
    if floor_ratios is not None:
        for ax, stat in zip(axes[1], STAT_NAMES):
            _bars(ax, models, [floor_ratios[m][stat] for m in models])
            ax.axhline(1.0, color="k", ls=":", lw=1, label="perfect emulator (floor)")
            ax.set(ylabel="err/scatter in units of the floor", title=f"{stat}: {n_target}-realisation targets")
            ax.legend(fontsize=7)
    fig.suptitle("held-out accuracy over training seeds (bars: mean, dots: seeds)")
    save_figure(fig, path)


def _bars(ax, models: list[str], per_seed: list[list[float]]) -> None:
    ax.bar(range(len(models)), [np.mean(v) for v in per_seed], yerr=[np.std(v) for v in per_seed], capsize=4,
           color=[f"C{i}" for i in range(len(models))])
    for i, v in enumerate(per_seed):
        ax.plot([i] * len(v), v, "k.", ms=4)
    ax.set_xticks(range(len(models)), models, rotation=20)


def plot_inverse(path: Path, fits: list[dict]) -> None:
    """Grid posteriors of (mu_cen, mu_sat) through the emulator, with truth, gradient fit and Laplace 2 sigma."""
    import matplotlib.pyplot as plt

    n = len(fits)
    cols = min(n, 5)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, f in zip(axes.flat, fits):
        ax.contourf(*f["grid_axes"], f["grid_posterior"].T, levels=20, cmap="Blues")
        ax.plot(*f["truth"], "r*", ms=12, label="truth")
        ax.errorbar(*f["fit"], xerr=2 * f["sigma"][0], yerr=2 * f["sigma"][1], fmt="ko", ms=4,
                    capsize=3, label="gradient fit $\\pm 2\\sigma$")
        box = [(min(g[0], t) - 0.02, max(g[-1], t) + 0.02) for g, t in zip(f["grid_axes"], f["truth"])]
        ax.set(xlim=box[0], ylim=box[1], xlabel="mu_cen", ylabel="mu_sat")
        ax.set_title(f"|z| = {abs(f['z'][0]):.1f}, {abs(f['z'][1]):.1f} ({f['sigma_source']})", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("inverse problem on held-out mocks: posterior of alignment strengths through the emulator "
                 "(full-covariance likelihood, recalibrated deep ensemble)")
    save_figure(fig, path)


def plot_pilot_check(path: Path, check: dict) -> None:
    """The pilot check (:mod:`learn.tasks.iaemu.pilot_check`): validation score against learning rate, one line per
    batch size (mean over the tuning seeds; each seed's runs dashed); the chosen and configured cells marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    batches = sorted({b for b, _ in check["cells"]})
    for i, batch in enumerate(batches):
        means = sorted((row["lr"], row["score"]) for row in check["mean_validation_score"] if row["batch"] == batch)
        ax.plot(*zip(*means), color=f"C{i}", marker="o", lw=1.5, label=f"batch {batch} (mean of seeds)")
        for seed in check["seeds_complete"]:  # each seed's runs, thin: the seeds differ more than the cells
            runs = sorted((r["lr"], r["validation_score"]) for r in check["runs"]
                          if r.get("batch") == batch and r["seed"] == seed)
            ax.plot(*zip(*runs), color=f"C{i}", marker=".", ms=4, lw=0.6, ls="--", alpha=0.6)
    for cell, marker, label in ((check.get("chosen"), "*", "chosen"), (check.get("configured"), "s", "configured")):
        if cell is not None:
            score = next((row["score"] for row in check["mean_validation_score"]
                          if [row["batch"], row["lr"]] == list(cell)), None)
            if score is not None:
                ax.scatter([cell[1]], [score], marker=marker, s=160, facecolor="none", edgecolor="k", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation score (lower is better)")
    ax.set_title(f"IAEmu paper model, full width, {check['epochs']} epochs, tuning seeds {check['seeds_complete']}")
    ax.legend(fontsize=8)
    save_figure(fig, path)
