"""Figures of the AtlasD task (domain, discovery, Lorentz algebra, downstream)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symgym.learn.io import save_figure
from symgym.physics.pde import HeatObstacleSim


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_domain(sim: HeatObstacleSim, sample: dict, path: Path, patch: int) -> None:
    plt = _plt()
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    half = patch // 2
    for ax, img, title in zip(axes, [sample["field"], sample["tendency"]], ["field $u_t$", "tendency $u_{t+1}-u_t$"]):
        im = ax.imshow(img, cmap="RdBu_r", vmin=-abs(img).max(), vmax=abs(img).max())
        ax.contour(sim.obstacle_mask, levels=[0.5], colors="k", linewidths=1.5)
        for k, (r, c) in enumerate(list(sample["centres"]) + [sample["obstacle_centre"]]):
            free = k < len(sample["centres"])
            ax.add_patch(Rectangle((c - half - 0.5, r - half - 0.5), patch, patch, fill=False, ec="tab:green" if free else "tab:red", lw=1.5))
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Heat diffusion with a heated obstacle (black); charts used for discovery (green), chart at the obstacle (red)")
    save_figure(fig, path)




def plot_discovery(out: dict, landscape: dict, path: Path) -> None:
    """PDE: loss landscape, per-chart loss, count search; local vs global with matched / exact fits."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    ax.plot(np.degrees(landscape["phi"]), landscape["local"], "o-", label="local (trained charts)")
    ax.plot(np.degrees(landscape["phi"]), landscape["global"], "s-", label="global (trained)")
    ax.set_xlabel("generator $L(\\varphi)=\\cos\\varphi\\,J+\\sin\\varphi\\,\\mathrm{diag}(1,-1)$  [deg]")
    ax.set_ylabel("equivariance loss")
    ax.set_yscale("log")
    ax.set_title("PDE: loss along a circle in gl(2); so(2) at 0 and 180 deg", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    for key, style in [("pde_local", "o-"), ("pde_global", "s--")]:
        r = out[key]
        k = np.arange(1, len(r["count_losses_by_k"]) + 1)
        ax.plot(k, r["count_losses_by_k"], style, label=f"{key}: loss of best k-dim basis")
        ax.plot(k, r["count_thresholds_by_k"], "_:" if key == "pde_local" else "_-.", color="k", ms=14, lw=1, label=f"{key}: acceptance bound")
    ax.set_yscale("log")
    ax.set_xlabel("number of generators k")
    ax.set_title(f"PDE: generator count (local found {out['pde_local']['n_generators']}, global {out['pde_global']['n_generators']})", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[2]
    ex = out["pde_exact_simulator"]
    labels = ["trained\nlocal", "trained\nglobal", "exact sim\nlocal", "exact sim\nglobal"]
    vals = [out["pde_local"]["equivariance_loss_true_generator"], out["pde_global"]["equivariance_loss_true_generator"],
            float(np.mean(ex["local_loss_true_generator"])), float(np.mean(ex["global_loss_true_generator"]))]
    fits = [np.mean(out["pde_local"]["predictor_relative_mse"][:-1]), out["pde_global"]["predictor_relative_mse_chart_windows"], 0.0, 0.0]
    x = np.arange(4)
    ax.bar(x - 0.2, vals, 0.4, label="equivariance loss of so(2)")
    ax.bar(x[:2] + 0.2, fits[:2], 0.4, label="predictor relative MSE (held out, chart pixels)")
    for i in (2, 3):
        ax.text(x[i] + 0.2, vals[i], "fit error 0", rotation=90, va="bottom", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(x, labels)
    ax.set_title("local vs global: so(2) loss and fit error\n(exact sim: no fit error at all)", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_lorentz(runs: list[dict], path: Path) -> None:
    """so(1,3) from jets: loss of the best k-dim basis vs k (per seed), and principal angles."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for i, r in enumerate(runs):
        k = np.arange(1, len(r["losses_by_k"]) + 1)
        ax.plot(k, r["losses_by_k"], "o-", color=f"C{i}", label=f"seed {r['seed']}: found {r['discovered_n_generators']}")
        ax.plot(k, r["thresholds_by_k"], "_:", color=f"C{i}", lw=1, ms=12)
    ax.axvline(runs[0]["true_n_generators"], color="k", lw=0.8, ls="--", label=f"dim {runs[0]['group']}")
    ax.set_yscale("log")
    ax.set_xlabel("number of generators k")
    ax.set_ylabel("held-out equivariance loss (dotted: acceptance bound)")
    ax.set_title("generator count: add until the loss jumps", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, r in enumerate(runs):
        ang = r["comparison_at_true_size"]["principal_angles_deg"]
        ax.plot(np.arange(1, len(ang) + 1), np.maximum(ang, 1e-3), "o-", color=f"C{i}", label=f"seed {r['seed']}")
    ax.axhline(runs[0]["random_subspace_max_angle_deg"]["mean"], color="gray", ls="--", label="random subspace (max angle)")
    ax.set_yscale("log")
    ax.set_xlabel("principal angle index")
    ax.set_ylabel(f"angle to {runs[0]['group']} [deg]")
    ax.set_title("discovered algebra vs the true one", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_downstream(res: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for k, (name, r) in enumerate(res["models"].items()):
        vals = np.asarray(r["test_relative_mse"])
        mean, lo, hi = vals.mean(0), vals.min(0), vals.max(0)
        lr = f", lr {r['lr']:g}" if "lr" in r else ""
        ax.errorbar(res["n_train"], mean, yerr=[mean - lo, hi - mean], fmt="o-", color=f"C{k}", capsize=3,
                    label=f"{name} ({r['parameters']} params{lr})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training fields")
    ax.set_ylabel("test relative MSE of the tendency")
    trained = "early stopping on validation fields" if "rule" in res else f"{res.get('steps')} steps"
    ax.set_title(f"downstream: discovered {res['group']} vs plain CNN ({trained})\n(mean, min-max over {len(res['seeds'])} seeds)",
                 fontsize=10)
    ax.legend()
    save_figure(fig, path)


def plot_downstream_curves(res: dict, path: Path) -> None:
    """Validation curves of both downstream models, one panel per training-set size (every seed; dots: kept checkpoints)."""
    if not all("curves" in r for r in res["models"].values()):
        return
    plt = _plt()
    sizes = res["n_train"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3.2), sharey=True, squeeze=False)
    for j, (ax, n) in enumerate(zip(axes[0], sizes)):
        for k, (name, r) in enumerate(res["models"].items()):
            for i, row in enumerate(r["curves"]):
                c = row[j]
                ax.plot(c["steps"], c["val_relative_mse"], color=f"C{k}", lw=0.8, alpha=0.7, label=name if i == 0 else None)
                best = r["best_step"][i][j]
                ax.plot(best, c["val_relative_mse"][c["steps"].index(best)], "o", color=f"C{k}", ms=3)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{n} training field{'s' if n > 1 else ''}", fontsize=10)
    axes[0][0].set_ylabel("validation relative MSE")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"downstream training to convergence (early stopping, {len(res['seeds'])} seeds)", fontsize=10)
    save_figure(fig, path)


def plot_tuning(table: dict, path: Path) -> None:
    """Learning-rate tuning: validation error against the rate, one line per training-set size (chosen: star)."""
    plt = _plt()
    models = table["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4), sharey=True, squeeze=False)
    for ax, (kind, m) in zip(axes[0], models.items()):
        rates = [r["lr"] for r in m["rows"]]
        for j, n in enumerate(table["n_train"]):
            ax.plot(rates, [r["val_relative_mse"][j] for r in m["rows"]], "o-", color=f"C{j}", label=f"{n} fields")
        ax.plot(rates, [r["mean_val_relative_mse"] for r in m["rows"]], "k--", label="mean over sizes")
        best = next(r for r in m["rows"] if r["lr"] == m["chosen_lr"])
        ax.plot(best["lr"], best["mean_val_relative_mse"], "k*", ms=14)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(rates, [f"{r:g}" for r in rates])  # the grid itself: log minor labels would crowd a short axis
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("initial learning rate")
        ax.set_title(f"{kind}: chosen lr {m['chosen_lr']:g}", fontsize=10)
    axes[0][0].set_ylabel("validation relative MSE (kept checkpoint)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"downstream learning-rate tuning on seeds {table['seeds']} (validation fields only)", fontsize=10)
    save_figure(fig, path)
