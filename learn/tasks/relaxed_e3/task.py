"""Task ``relaxed-e3``: relaxed E(3) graph networks learn which symmetry the data breaks.

Three problems, all generated here from a seed:

* ``prism``   -- a cube (random orientation, scale, position) is stretched along one of its face axes.
  The cube's symmetry O_h forces a strict O(3)-equivariant net to move every vertex along its
  own radius (a uniform scaling), so it plateaus; the stretch axis is an ``l = 2`` (quadrupole,
  inversion-even) direction, so the relaxed weights should grow a ``2e`` part along that axis
  and keep ``l = 1`` at ~0.
* ``frustum`` -- the top face of the cube shrinks (a truncated square pyramid). That shape has
  no inversion centre: "top" vs "bottom" needs a polar ``l = 1`` vector, so here ``1o`` matters.
* ``fields``  -- charged particles (q/m = 1) moving in fixed, uniform E and B fields; the network
  maps each particle's velocity to its acceleration ``E + v x B``. The particles do not
  interact, so they sit beyond the cutoff and only the self-interaction (filter at r = 0,
  which still carries the relaxed weight) acts. E is a polar vector (``1o``)
  and B an axial one (``1e``), so their directions are read from the corresponding parts of
  the learned relaxed weights and compared with the truth (angle errors, up to sign, because
  the following tensor product can absorb a sign).

For each problem a strict model (relaxed weights frozen to the scalar) and a relaxed model
are trained on the same data; the results report held-out relative MSE for both, what the
relaxed weights encode, and the trained models' equivariance errors.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from e3nn import o3

from symgym.equivariance.relaxed_e3 import (
    RelaxedE3Config,
    RelaxedE3Net,
    axis_angle_deg,
    equivariance_error_o3,
    irrep_part,
    irrep_quadrupole,
    irrep_vector,
    quadrupole_axis,
)

from symgym.learn.tasks.relaxed_e3.core import (  # noqa: F401  (the task's public names)
    CUBE_CORNERS,
    Batch,
    RelaxedE3TaskConfig,
    random_cubes,
    deformation_data,
    lorentz_acceleration,
    charged_particle_data,
    relative_mse,
    train,
    weight_summary,
    _strongest_layer,
    axis_report,
    equivariance_report,
)


# --------------------------------------------------------------------------------------------
# Problems


def _fit_pair(model_cfg: RelaxedE3Config, train_data: Batch, test_data: Batch, cfg: RelaxedE3TaskConfig,
              steps: int, seed: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, relaxed in (("strict", False), ("relaxed", True)):
        torch.manual_seed(seed)  # same initial network for both
        model = RelaxedE3Net(RelaxedE3Config(**{**asdict(model_cfg), "relaxed": relaxed}))
        curve = train(model, train_data, steps, cfg.lr, cfg.breaking_penalty)
        out[name] = {
            "model": model,
            "curve": curve,
            "train_rel_mse": relative_mse(model, train_data),
            "test_rel_mse": relative_mse(model, test_data),
        }
    return out


def _public(fit: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in fit.items() if k not in ("model", "curve")}


def deformation_problem(kind: str, cfg: RelaxedE3TaskConfig, steps: int, seed: int) -> dict[str, object]:
    gen = torch.Generator().manual_seed(seed)
    # a uniformly random rotation drawn from this problem's own generator (rand_matrix uses the global RNG)
    orientation = o3.quaternion_to_matrix(torch.nn.functional.normalize(torch.randn(4, generator=gen), dim=0))
    axis = orientation[:, 2]
    train_data = deformation_data(kind, cfg.train_graphs, orientation, cfg, gen)
    test_data = deformation_data(kind, cfg.test_graphs, orientation, cfg, gen)
    model_cfg = RelaxedE3Config(irreps_in="0e", irreps_out="1o", cutoff=5.0, avg_num_neighbors=7.0)
    fits = _fit_pair(model_cfg, train_data, test_data, cfg, steps, seed)
    relaxed = fits["relaxed"]["model"]
    result: dict[str, object] = {
        "true_axis": axis.tolist(),
        "strict": _public(fits["strict"]),
        "relaxed": _public(fits["relaxed"]),
        "relaxed_weight_norms": weight_summary(relaxed),
        "l2_axis": axis_report(relaxed, "2e", axis),
        "l1_axis": axis_report(relaxed, "1o", axis),
        "equivariance_error": {
            "strict": equivariance_report(fits["strict"]["model"], test_data, gen, cfg.equivariance_rotations),
            "relaxed": equivariance_report(relaxed, test_data, gen, cfg.equivariance_rotations, axis),
        },
    }
    l1 = max(w["1o"] + w["1e"] for w in result["relaxed_weight_norms"])
    l2 = max(w["2e"] for w in result["relaxed_weight_norms"])
    result["l1_over_l2_norm"] = l1 / max(l2, 1e-12)
    result["_fits"] = fits
    # the prism has an inversion centre, so only its quadrupole (2e) axis is a true breaking direction
    result["_axes"] = {"1o": axis, "2e": axis} if kind == "frustum" else {"2e": axis}
    return result


def fields_problem(cfg: RelaxedE3TaskConfig, steps: int, seed: int) -> dict[str, object]:
    gen = torch.Generator().manual_seed(seed + 1)
    e_field = torch.nn.functional.normalize(torch.randn(3, generator=gen), dim=0)
    b_field = torch.nn.functional.normalize(torch.randn(3, generator=gen), dim=0)
    train_data = charged_particle_data(cfg.field_graphs, cfg.particles_per_graph, e_field, b_field, gen)
    test_data = charged_particle_data(cfg.field_graphs, cfg.particles_per_graph, e_field, b_field, gen)
    model_cfg = RelaxedE3Config(irreps_in="0e + 1o", irreps_out="1o", cutoff=0.6, avg_num_neighbors=0.5)
    fits = _fit_pair(model_cfg, train_data, test_data, cfg, steps, seed)
    relaxed = fits["relaxed"]["model"]
    result: dict[str, object] = {
        "true_E": e_field.tolist(),
        "true_B": b_field.tolist(),
        "strict": _public(fits["strict"]),
        "relaxed": _public(fits["relaxed"]),
        "relaxed_weight_norms": weight_summary(relaxed),
        "E_from_1o": axis_report(relaxed, "1o", e_field),
        "B_from_1e": axis_report(relaxed, "1e", b_field),
        "equivariance_error": {
            "strict": equivariance_report(fits["strict"]["model"], test_data, gen, cfg.equivariance_rotations),
            "relaxed": equivariance_report(relaxed, test_data, gen, cfg.equivariance_rotations),
        },
    }
    result["_fits"] = fits
    result["_axes"] = {"1o": e_field, "1e": b_field}
    return result


# --------------------------------------------------------------------------------------------
# Figures


def plot_curves(fits: dict[str, dict[str, object]], path: Path) -> None:
    """Training curves (relative MSE) of strict vs relaxed models, one panel per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symgym.learn.io import save_figure

    fig, axes = plt.subplots(1, len(fits), figsize=(4.2 * len(fits), 3.4), squeeze=False)
    for ax, (name, pair) in zip(axes[0], fits.items()):
        for label, colour in (("strict", "tab:red"), ("relaxed", "tab:blue")):
            curve = np.asarray(pair[label]["curve"])
            steps = np.linspace(0, len(curve) * 10, len(curve))
            ax.semilogy(steps, curve, color=colour, label=f"{label} (test {pair[label]['test_rel_mse']:.1e})")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("relative MSE (train)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("strict O(3)-equivariant nets plateau where the target breaks symmetry; relaxed ones fit")
    fig.tight_layout()
    save_figure(fig, path)


def plot_weights(model: RelaxedE3Net, true_axes: dict[str, torch.Tensor], title: str, path: Path) -> None:
    """Each layer's learned relaxed weight, one ``l > 0`` irrep per column, drawn as a spherical signal.

    The radius is ``|f(n)|`` and the colour its sign (red +, blue -); a black line marks the true axis
    for that irrep where one exists. All panels share one radial scale, so a part that stayed ~0 shows
    as a dot; the panel title gives its norm.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symgym.equivariance.relaxed_e3 import spherical_signal
    from symgym.learn.io import save_figure

    irreps = model.convs[0].irreps_relaxed
    columns = [str(ir) for _, ir in irreps if ir.l > 0]
    theta, phi = np.meshgrid(np.linspace(0, np.pi, 48), np.linspace(0, 2 * np.pi, 96), indexing="ij")
    dirs = torch.tensor(np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1))
    weights = model.relaxed_weights()
    signals = [[spherical_signal(irreps, w.double(), dirs, only=irrep).numpy() for irrep in columns] for w in weights]
    peak = max(float(np.abs(f).max()) for row in signals for f in row)
    peak = peak if peak > 1e-12 else 1.0
    fig = plt.figure(figsize=(3.1 * len(columns), 3.0 * len(weights)))
    for row, w in enumerate(weights):
        for col, irrep in enumerate(columns):
            ax = fig.add_subplot(len(weights), len(columns), row * len(columns) + col + 1, projection="3d")
            f = signals[row][col]
            norm = float(irrep_part(irreps, w, irrep).norm())
            r = np.abs(f) / peak
            colours = plt.cm.coolwarm(0.5 + 0.5 * f / np.abs(f).max().clip(1e-30))
            xyz = dirs.numpy() * r[..., None]
            ax.plot_surface(xyz[..., 0], xyz[..., 1], xyz[..., 2], facecolors=colours, linewidth=0,
                            antialiased=False, shade=False, rstride=2, cstride=2)
            if irrep in true_axes:
                a = true_axes[irrep].numpy() * 1.3
                ax.plot([-a[0], a[0]], [-a[1], a[1]], [-a[2], a[2]], color="k", lw=2)
            for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
                setter(-1.1, 1.1)
            ax.set_box_aspect((1, 1, 1))
            ax.set_axis_off()
            ax.set_title(f"layer {row + 1}, {irrep}: |w|={norm:.2g}", fontsize=9)
    fig.suptitle(f"{title}: learned relaxed weights (l>0 parts) as spherical signals; black = true axis")
    save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Entry point


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results")) -> dict:
    """Train strict and relaxed models on the three problems (one seed), then the multi-seed stretch sweep
    (:mod:`learn.tasks.relaxed_e3.sweep`); write ``relaxed-e3*.png``."""
    torch.set_num_threads(1)
    cfg = RelaxedE3TaskConfig()
    steps = cfg.quick_steps if quick else cfg.steps
    problems: dict[str, Callable[[], dict[str, object]]] = {
        "prism": lambda: deformation_problem("prism", cfg, steps, seed),
        "frustum": lambda: deformation_problem("frustum", cfg, steps, seed + 100),
        "fields": lambda: fields_problem(cfg, steps, seed),
    }
    results: dict[str, object] = {"steps": steps, "settings": asdict(cfg)}
    private = {}
    for name, solve in problems.items():
        torch.manual_seed(seed)
        res = solve()
        private[name] = (res.pop("_fits"), res.pop("_axes"))
        results[name] = res
    results["summary"] = {
        **{f"{name}_test_rel_mse": {"strict": results[name]["strict"]["test_rel_mse"],
                                    "relaxed": results[name]["relaxed"]["test_rel_mse"]} for name in problems},
        "prism_l2_axis_angle_deg": results["prism"]["l2_axis"]["angle_deg"],
        "prism_l1_over_l2_norm": results["prism"]["l1_over_l2_norm"],
        "frustum_l1_axis_angle_deg": results["frustum"]["l1_axis"]["angle_deg"],
        "frustum_l2_axis_angle_deg": results["frustum"]["l2_axis"]["angle_deg"],
        "fields_E_angle_deg": results["fields"]["E_from_1o"]["angle_deg"],
        "fields_B_angle_deg": results["fields"]["B_from_1e"]["angle_deg"],
    }
    out_dir = Path(out_dir)
    from symgym.learn.tasks.relaxed_e3.sweep import attach

    attach(results, out_dir, quick)  # >= 5 seeds and the ledger live in the stretch sweep (cached, resumable)
    plot_curves({k: v[0] for k, v in private.items()}, out_dir / "relaxed-e3.png")
    for name, (fits, axes) in private.items():
        plot_weights(fits["relaxed"]["model"], axes, name, out_dir / f"relaxed-e3-{name}.png")
    return results
