"""Figures of the mesh-topology task: errors and sensitivity, training curves, PO convergence, triangulations."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from symgym.learn.io import save_figure
from symgym.physics.mesh import VARIANTS, random_shape, triangulate
from symgym.physics.mesh_po import aspect_directions, po_response


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(summary: dict[str, Any], models: tuple[str, ...], path: Path) -> None:
    """Errors on the training and other triangulations, and the sensitivity split into same-resolution
    re-triangulation and resolution change (mean and std over seeds)."""
    plt = _plt()
    names = ["area", "shape_constant_oracle", "physics_on_mesh", *models]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
    panels = ((axes[0], "held-out shapes: RMS error (dB)",
               ((-0.2, "rmse_db_canonical", "training triangulation (canonical)", None),
                (0.2, "rmse_db_other_triangulations", "other triangulations", None))),
              (axes[1], "triangulation sensitivity: std of the prediction over triangulations (dB)",
               ((-0.27, "sensitivity_db_same_resolution", "same resolution (canonical, flipped, remeshed)", "tab:green"),
                (0.0, "sensitivity_db_resolution", "resolution change (coarse, canonical, fine)", "tab:red"),
                (0.27, "sensitivity_db", "all five", "tab:gray"))))
    for ax, title, bars in panels:
        width = 0.8 / len(bars)
        for off, key, label, color in bars:
            ax.bar(x + off, [summary[n][key] for n in names], width, yerr=[summary[n][key + "_std"] for n in names],
                   label=label, color=color)
        ax.set(title=title, ylabel="dB")
        ax.set_xticks(x, names, rotation=25, ha="right")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_curves(curves: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    smooth = lambda y: np.convolve(y, np.ones(20) / 20, mode="valid") if len(y) >= 20 else np.asarray(y)  # noqa: E731
    for name, c in curves.items():
        axes[0].plot(smooth(c["train"]), label=name)
        if "pretrain" in c:
            axes[1].plot(smooth([p["loss"] for p in c["pretrain"]]), label=f"{name}: loss")
            axes[1].plot(smooth([p["link_accuracy"] for p in c["pretrain"]]), ls="--", label=f"{name}: link accuracy")
    axes[0].set(title="fine-tuning loss (standardised MSE)", xlabel="step", yscale="log")
    axes[1].set(title="graph-autoencoder pretraining", xlabel="step")
    for ax in axes:
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_convergence(conv: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].loglog(conv["sphere"]["faces"], conv["sphere"]["max_relative_error_vs_closed_form"], "o-")
    axes[0].set(title=f"sphere r={conv['sphere_radius']}, lambda={conv['wavelength']}: PO vs closed form",
                xlabel="faces", ylabel="max relative RCS error")
    for kind in ("ellipsoid", "cylinder"):
        axes[1].loglog(conv[kind]["faces"], conv[kind]["rmse_db_vs_finest_level"], "o-", label=kind)
    axes[1].set(title="band-averaged PO (dB) vs the finest level", xlabel="faces", ylabel="RMS error (dB)")
    axes[1].legend()
    save_figure(fig, path)


def plot_triangulations(seed: int, path: Path) -> None:
    """One ellipsoid in every triangulation, with the PO response computed on each."""
    plt = _plt()
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    shape = random_shape(np.random.default_rng([seed, 99]), "ellipsoid")
    directions = aspect_directions(16)
    fig = plt.figure(figsize=(3.2 * len(VARIANTS), 6.4))
    responses = {}
    for i, v in enumerate(VARIANTS):
        mesh = triangulate(shape, v, seed=seed)
        responses[v] = po_response(mesh, directions)
        ax = fig.add_subplot(2, len(VARIANTS), i + 1, projection="3d")
        normals, _ = mesh.face_normals_areas()
        shade = 0.35 + 0.6 * np.clip(normals @ np.array([0.4, 0.3, 0.86]), 0, 1)
        ax.add_collection3d(Poly3DCollection(mesh.vertices[mesh.faces], facecolors=plt.cm.Blues(shade),
                                             edgecolors="k", linewidths=0.15))
        ax.set(xlim=(-0.8, 0.8), ylim=(-0.8, 0.8), zlim=(-0.8, 0.8), title=f"{v}: {len(mesh.faces)} faces")
        ax.set_axis_off()
    ax = fig.add_subplot(2, 1, 2)
    for v, r in responses.items():
        ax.plot(r, marker="o", ms=3, label=v)
    ax.set(xlabel="aspect direction index", ylabel="PO RCS (dB)", title="same ellipsoid, five triangulations")
    ax.legend(ncol=5, fontsize=8)
    save_figure(fig, path)
