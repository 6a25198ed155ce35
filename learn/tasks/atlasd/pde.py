"""AtlasD on the heat equation with an obstacle: chart predictors, local vs global discovery.

Moved out of :mod:`learn.tasks.atlasd.task` (which imports from here); :func:`run_pde_seed` repeats the
trained-predictor local and global discovery for one seed (data, network initialisation and discovery
seeds all follow it), :func:`pde_seed_table` and :func:`pde_seed_claims` put the seeds side by side
and into the ledger.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from symgym.equivariance.discovery import (
    DiscoveredGroup,
    DiscreteDiscoveryConfig,
    FieldAction,
    LieDiscoveryConfig,
    cosine_similarity_up_to_sign,
    discover_discrete,
    evaluate_group,
    match_components,
)
from symgym.equivariance.discovery_count import GeneratorCountConfig, discover_generator_count
from symgym.learn.tasks.atlasd.models import ExactHeatTendency, MaskedCNN, fit_regressor
from symgym.physics.pde import HeatObstacleSim, extract_patches

if TYPE_CHECKING:
    from symgym.learn.tasks.atlasd.config import AtlasDConfig

SO2 = np.array([[0.0, -1.0], [1.0, 0.0]])
REFLECTION = [np.eye(2), np.diag([1.0, -1.0])]
LANDSCAPE_PHI = np.linspace(0, np.pi, 13)


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


def discover_with_count(predictors, inputs, action, lie: LieDiscoveryConfig, count: GeneratorCountConfig, discrete: DiscreteDiscoveryConfig) -> dict:
    """Generator count, then discrete components modulo the accepted identity component."""
    res = discover_generator_count(predictors, inputs, action, lie, count)
    disc = discover_discrete(predictors, inputs, action, res.generators, discrete)
    comp_losses = [evaluate_group(predictors, inputs, action, res.generators, c, lie.coef_std) for c in disc.components]
    lie_loss = res.losses[res.n_generators - 1] if res.n_generators else res.losses[0]
    group = DiscoveredGroup(res.generators, disc.components, lie_loss, comp_losses)
    return {"group": group, "count": res, "discrete": disc}


def _summarise(found: dict, true_gen: np.ndarray, true_components, loss_true_generator: float) -> dict:
    group, res, disc = found["group"], found["count"], found["discrete"]
    first = res.bases[0][0]  # best single generator, whether or not it was accepted
    return {
        "n_generators": res.n_generators,
        "count_losses_by_k": [round(x, 6) for x in res.losses],
        "count_thresholds_by_k": [round(x, 6) for x in res.thresholds],
        "generator": np.round(first, 4).tolist(),
        "cosine_to_truth": round(cosine_similarity_up_to_sign(first, true_gen), 4),
        "generator_accepted": bool(res.n_generators),
        "equivariance_loss": round(group.lie_loss, 6),
        "equivariance_loss_true_generator": round(loss_true_generator, 6),
        "candidate_losses": [round(x, 4) for x in disc.losses],
        "accept_threshold": round(disc.threshold, 4),
        "n_components": len(group.components),
        "components": np.round(group.components, 3).tolist(),
        "component_losses": [round(x, 5) for x in group.component_losses],
        **match_components(group.components, true_components, true_gen[None]),
    }


def _relative_mse(model, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 32]) for i in range(0, len(x), 32)])
    w = torch.ones_like(y[:1]) if mask is None else mask.to(y)[None, None]
    return float((((pred - y) ** 2) * w).sum() / ((y**2) * w).sum())


def _chart_window_mask(size: int, centres, patch: int, margin: int) -> torch.Tensor:
    """The pixels the chart predictors are fitted on (each window minus its ``margin`` rim)."""
    m = torch.zeros(size, size, dtype=torch.bool)
    half = patch // 2 - margin
    for r, c in centres:
        m[r - half : r + half + 1, c - half : c + half + 1] = True
    return m


@dataclass
class PDEData:
    """Everything the PDE parts share; rebuilt identically (seeded) in every worker process."""

    sim: HeatObstacleSim
    centres: list  # free chart centres used for discovery
    obstacle_centre: tuple
    x: np.ndarray
    tendency: np.ndarray  # unit-scale targets (discovery's loss is scale-free)
    hx: np.ndarray
    h_tendency: np.ndarray
    scale: float
    margin: int


def make_pde_data(cfg: AtlasDConfig) -> PDEData:
    rng = np.random.default_rng(cfg.seed)
    sim = HeatObstacleSim(cfg.pde)
    centres = _pick_charts(sim, cfg.patch, cfg.n_charts)
    x, y = sim.generate_pairs(cfg.n_pairs, rng)
    hx, hy = sim.generate_pairs(max(cfg.n_pairs // 4, 8), rng)  # held out: fit errors are measured here
    scale = float(np.std(y - x))
    return PDEData(sim, centres, sim.obstacle_chart_centre(), x, (y - x) / scale, hx, (hy - hx) / scale, scale, sim.stencil_radius)


def _patches(d: PDEData, fields: np.ndarray, cfg: AtlasDConfig) -> torch.Tensor:
    return torch.from_numpy(extract_patches(fields, d.centres + [d.obstacle_centre], cfg.patch))[:, :, None]


def _fit_chart_job(cfg: AtlasDConfig, chart: int) -> tuple[dict, float]:
    """Train chart ``chart``'s CNN (the last chart is the one next to the obstacle); state + held-out fit."""
    torch.set_num_threads(1)
    d = make_pde_data(cfg)
    px, pt, hpx, hpt = (_patches(d, f, cfg)[chart] for f in (d.x, d.tendency, d.hx, d.h_tendency))
    inner = torch.zeros(cfg.patch, cfg.patch, dtype=torch.bool)
    inner[d.margin : -d.margin, d.margin : -d.margin] = True
    torch.manual_seed(1000 * cfg.seed + chart)  # the initialisation follows the seed, whichever process fits it
    model = MaskedCNN(_obstacle_patches(d, cfg)[chart])
    fit_regressor(model, px, pt, cfg.predictor_steps, batch=cfg.predictor_batch, crop=d.margin, seed=cfg.seed + chart)
    return model.state_dict(), _relative_mse(model.eval(), hpx, hpt, inner)


def _obstacle_patches(d: PDEData, cfg: AtlasDConfig) -> torch.Tensor:
    return torch.from_numpy(extract_patches(d.sim.obstacle_mask[None].astype(np.float32), d.centres + [d.obstacle_centre], cfg.patch))[:, 0]


def _landscape(predictors, inputs, action, n: int) -> list[float]:
    """Loss along a circle in gl(2) through the rotation generator (so(2) at 0 and 180 deg)."""
    stretch = np.diag([1.0, -1.0])
    return [evaluate_group(predictors, inputs, action, (np.cos(p) * SO2 + np.sin(p) * stretch) / np.sqrt(2), n=n) for p in LANDSCAPE_PHI]


def run_pde_local(cfg: AtlasDConfig, d: PDEData, charts: list[tuple[dict, float]], out: dict) -> DiscoveredGroup:
    """Local discovery on the free charts' CNNs (trained by :func:`_fit_chart_job`)."""
    masks = _obstacle_patches(d, cfg)
    predictors, fit_errors = [], []
    for c, (state, err) in enumerate(charts):
        model = MaskedCNN(masks[c])
        model.load_state_dict(state)
        predictors.append(model.eval().requires_grad_(False))
        fit_errors.append(err)
    px = _patches(d, d.x, cfg)
    n = len(d.centres)
    action = FieldAction(cfg.patch, compare_radius=cfg.patch // 2 - d.margin - 1)
    inputs = [px[c] for c in range(n)]
    lie = replace(cfg.lie, seed=cfg.seed)
    found = discover_with_count(predictors[:n], inputs, action, lie, cfg.count, replace(cfg.discrete, seed=cfg.seed))
    truth_loss = evaluate_group(predictors[:n], inputs, action, SO2 / np.sqrt(2), coef_std=lie.coef_std)
    local = out["pde_local"] = _summarise(found, SO2, REFLECTION, truth_loss)
    local["chart_centres"] = d.centres
    local["predictor_relative_mse"] = [round(e, 5) for e in fit_errors]  # held out, chart interiors; last = obstacle chart
    per_chart = [round(evaluate_group([predictors[c]], [px[c]], action, SO2 / np.sqrt(2), coef_std=lie.coef_std), 5) for c in range(n + 1)]
    local["per_chart_loss_so2"] = {"free_charts": per_chart[:-1], "obstacle_chart": per_chart[-1], "obstacle_chart_centre": d.obstacle_centre}
    out["_landscape"] = {"phi": LANDSCAPE_PHI.tolist(), "local": _landscape(predictors[:n], inputs, action, 64)}
    out["_sample"] = {"field": d.x[0], "tendency": d.tendency[0] * d.scale, "centres": d.centres, "obstacle_centre": d.obstacle_centre}
    return found["group"]


def run_pde_global(cfg: AtlasDConfig) -> dict:
    """Global baseline: one CNN on the whole domain, the group acting about the domain centre.

    It trains for ``global_max_rounds`` rounds (decaying learning rate) or until its held-out fit
    on the charts' own pixels is as good as ``cfg.global_target_fit``; both fits are reported.
    """
    torch.set_num_threads(1)
    d = make_pde_data(cfg)
    gx, gt = torch.from_numpy(d.x)[:, None], torch.from_numpy(d.tendency)[:, None]
    hgx, hgt = torch.from_numpy(d.hx)[:, None], torch.from_numpy(d.h_tendency)[:, None]
    windows = _chart_window_mask(d.sim.size, d.centres, cfg.patch, d.margin)
    torch.manual_seed(1000 * cfg.seed + 999)
    model = MaskedCNN(torch.from_numpy(d.sim.obstacle_mask.astype(np.float32)), hidden=cfg.global_hidden)
    rounds = []
    for r in range(cfg.global_max_rounds):
        fit_regressor(model, gx, gt, cfg.global_round_steps, batch=cfg.global_batch, crop=0, seed=cfg.seed + 17 * r, lr=3e-3 / (1 + r))
        rounds.append(_relative_mse(model.eval(), hgx, hgt, windows))
        if rounds[-1] <= cfg.global_target_fit:
            break
    model.requires_grad_(False)
    action = FieldAction(d.sim.size, compare_radius=d.sim.size // 2 - d.margin - 1)
    lie = replace(cfg.lie, seed=cfg.seed, batch=cfg.global_batch)
    found = discover_with_count([model], [gx], action, lie, cfg.count, replace(cfg.discrete, seed=cfg.seed, batch=cfg.global_batch))
    truth = evaluate_group([model], [gx], action, SO2 / np.sqrt(2), coef_std=lie.coef_std, n=32)
    glob = _summarise(found, SO2, REFLECTION, truth)
    glob["predictor_relative_mse"] = round(_relative_mse(model, hgx, hgt), 5)  # held out, whole domain
    glob["predictor_relative_mse_chart_windows"] = round(rounds[-1], 5)  # held out, the charts' own pixels
    glob["fit_rounds"] = [round(v, 5) for v in rounds]
    glob["_landscape"] = _landscape([model], [gx], action, 16)
    return glob


def run_exact_simulator_control(cfg: AtlasDConfig, sim: HeatObstacleSim, centres) -> dict:
    """Local vs global discovery with the simulator itself as predictor (zero fit error), per data seed."""
    torch.set_num_threads(1)
    reach = sim.stencil_radius
    masks = extract_patches(sim.obstacle_mask[None].astype(np.float32), centres, cfg.patch)[:, 0]
    local_preds = [ExactHeatTendency(sim, torch.from_numpy(m)) for m in masks]
    global_pred = ExactHeatTendency(sim, torch.from_numpy(sim.obstacle_mask))
    action = FieldAction(cfg.patch, compare_radius=cfg.patch // 2 - reach - 1)
    global_action = FieldAction(sim.size, compare_radius=sim.size // 2 - reach - 1)
    keys = ["local_n_generators", "global_n_generators", "local_loss_best", "global_loss_best", "local_cosine", "global_cosine",
            "local_loss_true_generator", "global_loss_true_generator"]
    res: dict = {"seeds": list(cfg.exact_seeds), **{k: [] for k in keys}}
    for seed in cfg.exact_seeds:
        x, _ = sim.generate_pairs(max(cfg.n_pairs // 4, 16), np.random.default_rng(10_000 + seed))
        local_in = [torch.from_numpy(p)[:, None] for p in extract_patches(x, centres, cfg.patch)]
        global_in = [torch.from_numpy(x)[:, None]]
        for tag, preds, ins, act, batch in [("local", local_preds, local_in, action, cfg.lie.batch), ("global", [global_pred], global_in, global_action, cfg.global_batch)]:
            lie = replace(cfg.lie, seed=seed, batch=batch)
            cnt = discover_generator_count(preds, ins, act, lie, cfg.count)
            res[f"{tag}_n_generators"].append(cnt.n_generators)
            res[f"{tag}_loss_best"].append(round(cnt.losses[0], 6))
            res[f"{tag}_cosine"].append(round(cosine_similarity_up_to_sign(cnt.bases[0][0], SO2), 4))
            res[f"{tag}_loss_true_generator"].append(round(evaluate_group(preds, ins, act, SO2 / np.sqrt(2), coef_std=lie.coef_std, n=4 * batch, seed=seed), 6))
    return res


# -- several seeds of the trained-predictor discovery ------------------------------------------------------
#: per-seed values kept from each side's summary (the full summaries stay in ``runs``)
SEED_KEYS = ("n_generators", "cosine_to_truth", "equivariance_loss", "equivariance_loss_true_generator",
             "n_components", "true_components_found", "spurious")


def recovers_group(summary: dict) -> bool:
    """The whole true group: exactly one accepted generator (so(2)) and both components (the reflection), nothing spurious."""
    return bool(summary["n_generators"] == 1 and summary["true_components_found"] == summary["n_true_components"]
                and summary["spurious"] == 0)


def run_pde_seed(cfg: AtlasDConfig, seed: int) -> dict:
    """Local (chart CNNs) and global (one CNN) discovery, everything seeded by ``seed``; one process, one thread."""
    torch.set_num_threads(1)
    cfg = replace(cfg, seed=seed)
    d = make_pde_data(cfg)
    charts = [_fit_chart_job(cfg, c) for c in range(len(d.centres) + 1)]
    out: dict = {}
    run_pde_local(cfg, d, charts, out)
    glob = run_pde_global(cfg)
    glob.pop("_landscape")
    return {"seed": seed, "local": out["pde_local"], "global": glob}


def pde_seed_table(runs: list[dict]) -> dict:
    """Per-seed values side by side (seed order), with how often each side recovers the true group."""
    runs = sorted(runs, key=lambda r: r["seed"])
    table: dict = {"seeds": [r["seed"] for r in runs]}
    for side in ("local", "global"):
        table[side] = {k: [r[side][k] for r in runs] for k in SEED_KEYS}
        table[side]["best_one_generator_loss"] = [r[side]["count_losses_by_k"][0] for r in runs]
        table[side]["recovers_group"] = [recovers_group(r[side]) for r in runs]
    table["local"]["predictor_relative_mse"] = [round(float(np.mean(r["local"]["predictor_relative_mse"][:-1])), 5) for r in runs]
    table["global"]["predictor_relative_mse"] = [r["global"]["predictor_relative_mse_chart_windows"] for r in runs]
    table["fit_note"] = ("predictor_relative_mse: local = mean held-out relative MSE of the free charts' CNNs on their "
                         "interiors; global = the global CNN's held-out relative MSE on the same chart pixels")
    return table


def pde_seed_claims(table: dict) -> list[dict]:
    """Local charts vs the global chart over seeds (paired by seed). How often each side recovers the whole group
    (``recovers_group``, 1/0 per seed) stays a count in the table, not a claim: a 0/1 outcome that differs the same
    way on every seed has no spread, and a paired t-test would call it certain (a two-sided exact sign test on 5 seeds
    cannot go below p = 0.0625)."""
    from symgym.learn.evidence.ledger import claim

    seeds, loc, glo = table["seeds"], table["local"], table["global"]
    common = dict(method="local charts", baseline="global (one chart)", method_seeds=seeds, baseline_seeds=seeds)
    return [
        claim("AtlasD, heat with obstacle, trained CNN predictors: the best one-generator symmetry is closer to exact on "
              "local charts than on the whole domain", "held-out equivariance loss of the best 1-generator basis",
              method_values=loc["best_one_generator_loss"], baseline_values=glo["best_one_generator_loss"],
              higher_is_better=False, effect="ratio", **common),
        claim("AtlasD, heat with obstacle, trained CNN predictors: the generator found on local charts is closer to the "
              "true rotation generator than the one found on the whole domain", "|cosine| of the best generator to so(2)",
              method_values=loc["cosine_to_truth"], baseline_values=glo["cosine_to_truth"], higher_is_better=True,
              bounds=(0.0, 1.0), **common),
    ]
