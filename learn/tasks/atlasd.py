"""AtlasD task: discover local symmetries from chart predictors, then use them downstream.

1. Heat diffusion with a heated obstacle (``physics.pde.HeatObstacleSim``). One CNN per chart
   (patches away from the obstacle) learns the one-step tendency ``u_{t+1} - u_t``; AtlasD learns
   a Lie generator and discrete components that make all chart predictors equivariant. The
   global baseline is one CNN on the whole domain (it knows the obstacle through a fixed mask
   channel) with the group acting about the domain centre: the obstacle breaks that symmetry.
2. Synthetic chart functions with an O(1, 1) symmetry (four connected components): MLP chart
   predictors, discovery of the boost generator and of the components, plus the global baseline.
3. Downstream: the discovered group, named as C4/D4 (a square grid's exact part of O(2)), is the
   fibre group of an escnn steerable CNN for the full-domain tendency; compared with a plain CNN
   at small training-set sizes.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from equivariance.discovery import (
    DiscreteDiscoveryConfig,
    FieldAction,
    LieDiscoveryConfig,
    VectorAction,
    cosine_similarity_up_to_sign,
    discover_group,
    evaluate_group,
    match_components,
    to_planar_group,
)
from learn.io import save_figure
from physics.pde import ChartFunctionFamily, HeatObstacleConfig, HeatObstacleSim, extract_patches

SO2 = np.array([[0.0, -1.0], [1.0, 0.0]])


# --------------------------------------------------------------------------- models


def _static_channels(mask: torch.Tensor) -> torch.Tensor:
    """Obstacle mask and a constant-one channel: zero padding turns the latter into a border marker."""
    return torch.stack([mask.float(), torch.ones_like(mask, dtype=torch.float32)])[None]


class MaskedCNN(nn.Module):
    """Tendency CNN on a scalar field; a fixed obstacle mask (and a ones channel) ride along as inputs.

    The mask belongs to the predictor (its chart), not to the input, so a group element acting
    on the input field leaves it where it is: that is how an obstacle breaks the symmetry.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 16, layers: int = 4):
        super().__init__()
        self.register_buffer("static", _static_channels(mask))
        chans = [3] + [hidden] * (layers - 1)
        body: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            body += [nn.Conv2d(a, b, 3, padding=1), nn.Tanh()]  # tanh: ReLU fits of this near-linear map often stall
        self.net = nn.Sequential(*body, nn.Conv2d(chans[-1], 1, 3, padding=1))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([u, self.static.expand(u.shape[0], -1, -1, -1)], dim=1))


class SteerableTendencyCNN(nn.Module):
    """escnn steerable CNN over a planar group; inputs (field, obstacle mask) are scalar fields.

    Equivariant to transforming field *and* mask together, which is the local symmetry: the same
    rule applies at every point, the obstacle only enters through where it is.
    """

    def __init__(self, mask: torch.Tensor, group, fields: int = 4, layers: int = 4):
        super().__init__()
        from escnn import nn as enn

        from equivariance.escnn_bridge import gspace_for

        gs = gspace_for(group)
        self.in_type = enn.FieldType(gs, 3 * [gs.trivial_repr])  # field, obstacle mask, ones
        hidden = enn.FieldType(gs, fields * [gs.regular_repr])
        blocks: list = [enn.R2Conv(self.in_type, hidden, 3, padding=1), enn.PointwiseNonLinearity(hidden, "p_tanh")]
        for _ in range(layers - 2):
            blocks += [enn.R2Conv(hidden, hidden, 3, padding=1), enn.PointwiseNonLinearity(hidden, "p_tanh")]
        blocks.append(enn.R2Conv(hidden, enn.FieldType(gs, [gs.trivial_repr]), 3, padding=1))
        self.net = enn.SequentialModule(*blocks)
        self.register_buffer("mask", mask.float()[None, None])

    def forward_with_mask(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from escnn import nn as enn

        x = torch.cat([u, mask, torch.ones_like(u)], dim=1)
        return self.net(enn.GeometricTensor(x, self.in_type)).tensor

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_with_mask(u, self.mask.expand(u.shape[0], -1, -1, -1))


def make_mlp(hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def fit_regressor(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, crop: int, seed: int, lr: float = 3e-3
) -> float:
    """Adam + cosine schedule on MSE; ``crop`` trims image borders whose targets the input cannot determine.

    Returns the relative MSE on the training data.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    sl = (Ellipsis, slice(crop, -crop), slice(crop, -crop)) if crop else (Ellipsis,)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        loss = ((model(x[idx]) - y[idx])[sl] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 64]) for i in range(0, x.shape[0], 64)])
    return float(((pred - y)[sl] ** 2).mean() / (y[sl] ** 2).mean())


@dataclass
class AtlasDConfig:
    pde: HeatObstacleConfig = field(default_factory=HeatObstacleConfig)
    patch: int = 21
    n_charts: int = 4
    n_pairs: int = 400
    predictor_steps: int = 800
    predictor_batch: int = 16
    global_predictor_steps: int = 600
    lie: LieDiscoveryConfig = field(default_factory=lambda: LieDiscoveryConfig(steps=250, restarts=3, batch=24))
    discrete: DiscreteDiscoveryConfig = field(default_factory=lambda: DiscreteDiscoveryConfig(n_candidates=8, steps=120, batch=16))
    global_batch: int = 8
    synthetic_charts: int = 4
    synthetic_steps: int = 4000
    downstream_sizes: tuple[int, ...] = (1, 4, 16)
    downstream_steps: int = 600
    downstream_test: int = 64
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "AtlasDConfig":
        return cls(
            n_charts=3,
            n_pairs=200,
            predictor_steps=300,
            predictor_batch=16,
            global_predictor_steps=300,
            lie=LieDiscoveryConfig(steps=120, restarts=2, batch=16),
            discrete=DiscreteDiscoveryConfig(n_candidates=6, steps=80, batch=16),
            global_batch=4,
            synthetic_charts=3,
            synthetic_steps=2000,
            downstream_sizes=(1, 4),
            downstream_steps=400,
            downstream_test=32,
            seed=seed,
        )


def _pick_charts(sim: HeatObstacleSim, patch: int, n: int) -> list[tuple[int, int]]:
    """``n`` free chart centres spread over the free region (farthest-point order)."""
    free = sim.free_chart_centres(patch, stride=3)
    if len(free) < n:
        raise ValueError(f"only {len(free)} obstacle-free charts of size {patch} fit; asked for {n}")
    pts = np.array(free, dtype=float)
    chosen = [int(np.argmin(((pts - sim.size / 2) ** 2).sum(1)))]
    while len(chosen) < n:
        d = np.min(((pts[:, None] - pts[chosen][None]) ** 2).sum(-1), axis=1)
        chosen.append(int(np.argmax(d)))
    return [free[i] for i in chosen]


def _summarise(group, lie_res, disc_res, true_gen, true_components, action_loss_truth) -> dict:
    return {
        "generator": np.round(lie_res.generators[0], 4).tolist(),
        "cosine_to_truth": round(cosine_similarity_up_to_sign(lie_res.generators[0], true_gen), 4),
        "generator_accepted": bool(len(group.generators)),
        "equivariance_loss": round(group.lie_loss, 5),
        "equivariance_loss_true_generator": round(action_loss_truth, 5),
        "restart_losses": [round(x, 5) for x in lie_res.restart_losses],
        "candidate_losses": [round(x, 4) for x in disc_res.losses],
        "accept_threshold": round(disc_res.threshold, 4),
        "n_components": len(group.components),
        "components": np.round(group.components, 3).tolist(),
        "component_losses": [round(x, 5) for x in group.component_losses],
        **match_components(group.components, true_components, true_gen[None]),
    }


def run_pde_discovery(cfg: AtlasDConfig, out: dict) -> tuple[HeatObstacleSim, object]:
    rng = np.random.default_rng(cfg.seed)
    sim = HeatObstacleSim(cfg.pde)
    centres = _pick_charts(sim, cfg.patch, cfg.n_charts)
    obstacle_centre = sim.obstacle_chart_centre()
    x, y = sim.generate_pairs(cfg.n_pairs, rng)
    tendency = y - x
    reach = sim.stencil_radius
    margin = reach  # the target is determined by the input only `reach` cells inside the patch

    # ---- local: one predictor per chart (+ one next to the obstacle, not used for discovery)
    all_centres = centres + [obstacle_centre]
    px = torch.from_numpy(extract_patches(x, all_centres, cfg.patch))[:, :, None]
    pt = torch.from_numpy(extract_patches(tendency, all_centres, cfg.patch))[:, :, None]
    obstacle_patch = torch.from_numpy(extract_patches(sim.obstacle_mask[None].astype(np.float32), all_centres, cfg.patch))[:, 0]
    predictors, fit_errors = [], []
    for c in range(len(all_centres)):
        model = MaskedCNN(obstacle_patch[c])
        fit_errors.append(fit_regressor(model, px[c], pt[c], cfg.predictor_steps, batch=cfg.predictor_batch, crop=margin, seed=cfg.seed + c))
        predictors.append(model.eval().requires_grad_(False))
    action = FieldAction(cfg.patch, compare_radius=cfg.patch // 2 - reach - 1)
    local_inputs = [px[c] for c in range(len(centres))]
    lie_cfg = replace(cfg.lie, seed=cfg.seed)
    group, lie_res, disc_res = discover_group(predictors[: len(centres)], local_inputs, action, lie_cfg, replace(cfg.discrete, seed=cfg.seed))
    truth_loss = evaluate_group(predictors[: len(centres)], local_inputs, action, SO2 / np.sqrt(2), coef_std=lie_cfg.coef_std)
    reflection = [np.eye(2), np.diag([1.0, -1.0])]
    out["pde_local"] = _summarise(group, lie_res, disc_res, SO2, reflection, truth_loss)
    out["pde_local"]["chart_centres"] = centres
    out["pde_local"]["predictor_relative_mse"] = [round(e, 5) for e in fit_errors]
    # the discovered group checked chart by chart, including the chart next to the obstacle
    per_chart = []
    for c in range(len(all_centres)):
        per_chart.append(round(evaluate_group([predictors[c]], [px[c]], action, group.generators, coef_std=lie_cfg.coef_std), 5))
    out["pde_local"]["per_chart_loss"] = {"free_charts": per_chart[:-1], "obstacle_chart": per_chart[-1], "obstacle_chart_centre": obstacle_centre}

    # ---- global baseline: one predictor on the whole domain, group acting about its centre
    gx, gt = torch.from_numpy(x)[:, None], torch.from_numpy(tendency)[:, None]
    global_model = MaskedCNN(torch.from_numpy(sim.obstacle_mask.astype(np.float32)))
    global_fit = fit_regressor(global_model, gx, gt, cfg.global_predictor_steps, batch=8, crop=0, seed=cfg.seed)
    global_model.eval().requires_grad_(False)
    global_action = FieldAction(sim.size, compare_radius=sim.size // 2 - reach - 1)
    g_lie = replace(cfg.lie, seed=cfg.seed, batch=cfg.global_batch)
    g_disc = replace(cfg.discrete, seed=cfg.seed, batch=cfg.global_batch)
    g_group, g_lie_res, g_disc_res = discover_group([global_model], [gx], global_action, g_lie, g_disc)
    g_truth = evaluate_group([global_model], [gx], global_action, SO2 / np.sqrt(2), coef_std=lie_cfg.coef_std, n=32)
    out["pde_global"] = _summarise(g_group, g_lie_res, g_disc_res, SO2, reflection, g_truth)
    out["pde_global"]["predictor_relative_mse"] = round(global_fit, 5)

    # loss along a circle in gl(2) through the rotation generator, for the figure
    stretch = np.diag([1.0, -1.0])
    phis = np.linspace(0, np.pi, 13)
    landscape = {"phi": phis.tolist(), "local": [], "global": []}
    for phi in phis:
        L = (np.cos(phi) * SO2 + np.sin(phi) * stretch) / np.sqrt(2)
        landscape["local"].append(evaluate_group(predictors[: len(centres)], local_inputs, action, L, n=64))
        landscape["global"].append(evaluate_group([global_model], [gx], global_action, L, n=16))
    out["_landscape"] = landscape
    out["_sample"] = {"field": x[0], "tendency": tendency[0], "centres": centres, "obstacle_centre": obstacle_centre}
    return sim, group


def run_synthetic_discovery(cfg: AtlasDConfig, out: dict) -> None:
    """O(1, 1)-invariant chart functions: MLP chart predictors, local vs global discovery."""
    fam = ChartFunctionFamily("minkowski", cfg.synthetic_charts, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    predictors, inputs, fit_errors = [], [], []
    for c in range(fam.n_charts):
        xs = torch.rand(4096, 2, generator=gen) * 3 - 1.5  # train wider than we probe: boosts move points out
        ys = torch.from_numpy(fam(c, xs.numpy())).float()[:, None]
        model = make_mlp()
        fit_errors.append(fit_regressor(model, xs, ys, cfg.synthetic_steps, batch=256, crop=0, seed=cfg.seed + c))
        predictors.append(model.eval().requires_grad_(False))
        inputs.append(torch.rand(1024, 2, generator=gen) * 1.2 - 0.6)
    action = VectorAction(2, output="trivial")
    lie_cfg = replace(cfg.lie, seed=cfg.seed, coef_std=0.5)
    # MLP predictors are cheap, so the discrete search can afford enough starts to hit all 4 components
    disc_cfg = replace(cfg.discrete, seed=cfg.seed, coef_std=0.5, steps=max(cfg.discrete.steps, 200), n_candidates=max(cfg.discrete.n_candidates, 10))
    group, lie_res, disc_res = discover_group(predictors, inputs, action, lie_cfg, disc_cfg)
    truth = evaluate_group(predictors, inputs, action, fam.true_generator / np.sqrt(2), coef_std=0.5)
    out["synthetic_local"] = _summarise(group, lie_res, disc_res, fam.true_generator, fam.true_components, truth)
    out["synthetic_local"]["predictor_relative_mse"] = [round(e, 5) for e in fit_errors]

    # global: the nearest-chart field on the whole domain, symmetric about each chart centre only
    centres = np.array([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, fam.n_charts, endpoint=False)]) * 1.5
    xs = torch.rand(8192, 2, generator=gen) * 6 - 3
    ys = torch.from_numpy(fam.global_function(xs.numpy(), centres)).float()[:, None]
    global_model = make_mlp(hidden=128)
    global_fit = fit_regressor(global_model, xs, ys, 2 * cfg.synthetic_steps, batch=256, crop=0, seed=cfg.seed)
    global_model.eval().requires_grad_(False)
    g_inputs = [torch.rand(1024, 2, generator=gen) * 3.6 - 1.8]
    g_group, g_lie_res, g_disc_res = discover_group([global_model], g_inputs, action, lie_cfg, disc_cfg)
    g_truth = evaluate_group([global_model], g_inputs, action, fam.true_generator / np.sqrt(2), coef_std=0.5)
    out["synthetic_global"] = _summarise(g_group, g_lie_res, g_disc_res, fam.true_generator, fam.true_components, g_truth)
    out["synthetic_global"]["predictor_relative_mse"] = round(global_fit, 5)


def run_downstream(cfg: AtlasDConfig, sim: HeatObstacleSim, group, out: dict) -> None:
    """Full-domain tendency with the discovered group (steerable CNN) vs a plain CNN."""
    planar = to_planar_group(group)
    rng = np.random.default_rng(cfg.seed + 1000)
    test_x, test_y = sim.generate_pairs(cfg.downstream_test, rng)
    train_x, train_y = sim.generate_pairs(max(cfg.downstream_sizes), rng)
    mask = torch.from_numpy(sim.obstacle_mask.astype(np.float32))
    tx, tt = torch.from_numpy(test_x)[:, None], torch.from_numpy(test_y - test_x)[:, None]
    results = {"group": None if planar is None else planar.name, "n_train": list(cfg.downstream_sizes), "models": {}}
    # error regions: the bulk (>= 5 cells from obstacle and border) and the obstacle's neighbourhood
    from scipy.ndimage import binary_dilation

    near = torch.from_numpy(binary_dilation(sim.obstacle_mask, iterations=5))
    bulk = torch.zeros_like(near)
    bulk[5:-5, 5:-5] = True
    bulk &= ~near
    makers = {"cnn": lambda: MaskedCNN(mask)}
    if planar is not None:
        makers[f"steerable_{planar.name}"] = lambda: SteerableTendencyCNN(mask, planar)
    # targets are ~1e-2: train on unit-scale targets, rescale predictions
    scale = float(np.std(train_y - train_x))
    for name, make in makers.items():
        errs: dict[str, list[float]] = {"all": [], "bulk": [], "near_obstacle": []}
        for n in cfg.downstream_sizes:
            torch.manual_seed(cfg.seed)
            model = make()
            xs = torch.from_numpy(train_x[:n])[:, None]
            ts = torch.from_numpy(train_y[:n] - train_x[:n])[:, None] / scale
            fit_regressor(model, xs, ts, cfg.downstream_steps, batch=min(n, 4), crop=0, seed=cfg.seed, lr=1e-2)
            model.eval()
            with torch.no_grad():
                sq = ((model(tx) * scale - tt) ** 2)[:, 0]
            ref = (tt**2)[:, 0]
            errs["all"].append(float(sq.mean() / ref.mean()))
            errs["bulk"].append(float(sq[:, bulk].mean() / ref[:, bulk].mean()))
            errs["near_obstacle"].append(float(sq[:, near].mean() / ref[:, near].mean()))
        results["models"][name] = {
            "test_relative_mse": [round(e, 6) for e in errs["all"]],
            "test_relative_mse_bulk": [round(e, 6) for e in errs["bulk"]],
            "test_relative_mse_near_obstacle": [round(e, 6) for e in errs["near_obstacle"]],
            "parameters": count_parameters(make()),
        }
    if planar is not None:
        cnn, eq = results["models"]["cnn"]["test_relative_mse"], results["models"][f"steerable_{planar.name}"]["test_relative_mse"]
        results["error_ratio_cnn_over_steerable"] = [round(a / max(b, 1e-12), 3) for a, b in zip(cnn, eq)]
    out["downstream"] = results


# --------------------------------------------------------------------------- figures


def plot_domain(sim: HeatObstacleSim, sample: dict, path: Path, patch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    ax.plot(np.degrees(landscape["phi"]), landscape["local"], "o-", label="local (charts)")
    ax.plot(np.degrees(landscape["phi"]), landscape["global"], "s-", label="global (one chart)")
    ax.set_xlabel("generator $L(\\varphi)=\\cos\\varphi\\,J+\\sin\\varphi\\,\\mathrm{diag}(1,-1)$  [deg]")
    ax.set_ylabel("equivariance loss")
    ax.set_title("PDE: loss along a circle in gl(2)\nso(2) at 0 and 180 deg", fontsize=10)
    ax.legend()
    ax = axes[1]
    per = out["pde_local"]["per_chart_loss"]
    vals = per["free_charts"] + [per["obstacle_chart"], out["pde_global"]["equivariance_loss_true_generator"]]
    labels = [f"chart {i}" for i in range(len(per["free_charts"]))] + ["obstacle\nchart", "global\n(so(2))"]
    colors = ["tab:green"] * len(per["free_charts"]) + ["tab:red", "tab:gray"]
    ax.bar(labels, vals, color=colors)
    ax.set_yscale("log")
    ax.set_title("PDE: loss of the discovered so(2) per chart\n(global: so(2) about the domain centre)", fontsize=10)
    ax = axes[2]
    keys = ["pde_local", "pde_global", "synthetic_local", "synthetic_global"]
    cos = [out[k]["cosine_to_truth"] for k in keys]
    loss = [out[k]["equivariance_loss"] for k in keys]
    x = np.arange(len(keys))
    ax.bar(x - 0.2, cos, 0.4, label="|cos| to true generator")
    ax.bar(x + 0.2, np.minimum(loss, 2.0), 0.4, label="equivariance loss")
    for i, k in enumerate(keys):
        r = out[k]
        ax.text(i, 1.05, f"{r['true_components_found']}/{r['n_true_components']} comps\n+{r['spurious']} spurious", ha="center", fontsize=8)
    ax.set_xticks(x, [k.replace("_", "\n") for k in keys])
    ax.set_ylim(0, 1.35)
    ax.set_title("discovered vs true group\nPDE: O(2) (2 comps); synthetic: O(1,1) (4 comps)", fontsize=10)
    ax.legend(loc="center right", fontsize=8)
    save_figure(fig, path)


def plot_downstream(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, (name, r) in enumerate(res["models"].items()):
        color = f"C{k}"
        ax.plot(res["n_train"], r["test_relative_mse"], "o-", color=color, label=f"{name} ({r['parameters']} params): all")
        ax.plot(res["n_train"], r["test_relative_mse_bulk"], "s--", color=color, label=f"{name}: bulk")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training fields")
    ax.set_ylabel("test relative MSE of the tendency")
    ax.set_title(f"downstream: discovered group {res['group']} vs plain CNN")
    ax.legend()
    save_figure(fig, path)


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results")) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = AtlasDConfig.quick(seed) if quick else AtlasDConfig(seed=seed)
    out: dict = {}
    timings = {}
    start = time.perf_counter()
    sim, group = run_pde_discovery(cfg, out)
    timings["pde_discovery"] = time.perf_counter() - start
    run_synthetic_discovery(cfg, out)
    timings["synthetic_discovery"] = time.perf_counter() - start - sum(timings.values())
    run_downstream(cfg, sim, group, out)
    timings["downstream"] = time.perf_counter() - start - sum(timings.values())
    out["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    out_dir = Path(out_dir)
    plot_domain(sim, out.pop("_sample"), out_dir / "atlasd_domain.png", cfg.patch)
    plot_discovery(out, out.pop("_landscape"), out_dir / "atlasd_discovery.png")
    plot_downstream(out["downstream"], out_dir / "atlasd_downstream.png")
    out["atlasd_config"] = asdict(cfg)
    return out
