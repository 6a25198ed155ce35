"""AtlasD task: discover local symmetries from chart predictors, then use them downstream.

1. Heat diffusion with a heated obstacle (``physics.pde.HeatObstacleSim``). One CNN per chart
   (patches away from the obstacle) learns the one-step tendency ``u_{t+1} - u_t``; AtlasD finds
   how many Lie generators make all chart predictors equivariant (:func:`discover_generator_count`),
   the generators themselves and the discrete components. The global baseline is one CNN on the
   whole domain, trained until its fit on the chart pixels is as good as the charts' own (both fit
   errors reported), with the group acting about the domain centre; the obstacle breaks that
   symmetry. A control repeats local vs global discovery with the exact simulator as predictor
   (no fit error at all), over several data seeds.
2. Synthetic chart functions with an O(1, 1) symmetry (four connected components), in 2-D.
3. so(1, 3) from jet observables in 4-D (``atlasd_lorentz``): generator count and the discovered
   algebra vs the true one (principal angles, structure constants), over several seeds.
4. Downstream (``atlasd_downstream``): the discovered group, named as D4/C4 (a square grid's exact
   part of O(2)), is the fibre group of an escnn steerable CNN; vs a parameter-matched plain CNN
   at 1/4/16/64 training fields over several seeds.

Generator-count criterion (stated in ``GeneratorCountConfig``): ``k`` generators are accepted
while the held-out loss of the best ``k``-dim basis stays ``<= min(0.1, 3 L_{k-1} + 0.02)``;
the count is the last accepted ``k``.
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from symgym.equivariance.discovery_count import GeneratorCountConfig, discover_generator_count
from symgym.equivariance.discovery import (
    DiscoveredGroup,
    DiscreteDiscoveryConfig,
    FieldAction,
    LieDiscoveryConfig,
    VectorAction,
    cosine_similarity_up_to_sign,
    discover_discrete,
    evaluate_group,
    match_components,
    to_planar_group,
)
from symgym.learn.io import write_json
from symgym.learn.evidence.ledger import claim
from symgym.learn.tasks.atlasd.downstream import downstream_claims, run_downstream
from symgym.learn.tasks.atlasd.lorentz import LorentzConfig, run_lorentz
from symgym.learn.tasks.atlasd.models import (  # noqa: F401  (re-exported: the task's models)
    ExactHeatTendency,
    MaskedCNN,
    SteerableTendencyCNN,
    count_parameters,
    fit_regressor,
    make_mlp,
)
from symgym.learn.tasks.atlasd.plots import plot_discovery, plot_domain, plot_downstream, plot_lorentz
from symgym.physics.pde import ChartFunctionFamily, HeatObstacleConfig, HeatObstacleSim, extract_patches

SO2 = np.array([[0.0, -1.0], [1.0, 0.0]])
REFLECTION = [np.eye(2), np.diag([1.0, -1.0])]
LANDSCAPE_PHI = np.linspace(0, np.pi, 13)


@dataclass
class AtlasDConfig:
    pde: HeatObstacleConfig = field(default_factory=HeatObstacleConfig)
    patch: int = 21
    n_charts: int = 4
    n_pairs: int = 300
    predictor_steps: int = 300
    predictor_batch: int = 16
    #: the global CNN trains in rounds of this many steps until its chart-pixel fit matches the charts'
    global_round_steps: int = 400
    global_max_rounds: int = 5
    global_hidden: int = 24
    lie: LieDiscoveryConfig = field(default_factory=lambda: LieDiscoveryConfig(steps=60, restarts=1, batch=16))
    count: GeneratorCountConfig = field(default_factory=lambda: GeneratorCountConfig(max_generators=3))
    discrete: DiscreteDiscoveryConfig = field(default_factory=lambda: DiscreteDiscoveryConfig(n_candidates=6, steps=60, batch=8))
    global_batch: int = 4
    #: the global CNN stops training once its chart-pixel fit is this good (about the charts' own)
    global_target_fit: float = 0.015
    exact_seeds: tuple[int, ...] = (0, 1, 2)
    synthetic_charts: int = 3
    synthetic_steps: int = 2000
    synthetic_candidates: int = 10  # MLP charts are cheap: enough discrete starts to hit all 4 components
    synthetic_discrete_steps: int = 200
    lorentz: LorentzConfig = field(default_factory=lambda: LorentzConfig(fit_steps=2500, lie=LieDiscoveryConfig(steps=60, restarts=1, batch=64, coef_std=0.5)))
    lorentz_seeds: tuple[int, ...] = (0, 1, 2)
    downstream_sizes: tuple[int, ...] = (1, 4, 16, 64)
    downstream_seeds: tuple[int, ...] = (0, 1, 2)
    downstream_steps: int = 200
    downstream_fields: int = 3
    downstream_test: int = 24
    #: the downstream models start at once for this planar group and are used only if discovery names
    #: the same group (else they are rerun with the discovered one); None: start after discovery
    downstream_expected_group: str | None = "D4"
    workers: int = 16
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "AtlasDConfig":
        return cls(
            n_charts=2,
            n_pairs=96,
            predictor_steps=150,
            global_round_steps=150,
            global_max_rounds=1,
            global_hidden=16,
            lie=LieDiscoveryConfig(steps=30, restarts=1, batch=8),
            count=GeneratorCountConfig(max_generators=2),
            discrete=DiscreteDiscoveryConfig(n_candidates=2, steps=20, batch=8),
            global_batch=2,
            exact_seeds=(0, 1),
            synthetic_charts=2,
            synthetic_steps=300,
            synthetic_candidates=4,
            synthetic_discrete_steps=30,
            lorentz=LorentzConfig.quick(),
            lorentz_seeds=(0,),
            downstream_sizes=(1, 4),
            downstream_seeds=(0, 1),
            downstream_steps=40,
            downstream_fields=2,
            downstream_test=8,
            downstream_expected_group=None,
            workers=2,
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


def run_synthetic_discovery(cfg: AtlasDConfig) -> dict:
    """O(1, 1)-invariant chart functions: MLP chart predictors, local vs global discovery."""
    torch.set_num_threads(1)
    out: dict = {}
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
    disc_cfg = replace(cfg.discrete, seed=cfg.seed, coef_std=0.5, steps=cfg.synthetic_discrete_steps, n_candidates=cfg.synthetic_candidates)
    count = replace(cfg.count, max_generators=min(cfg.count.max_generators, 2))
    found = discover_with_count(predictors, inputs, action, lie_cfg, count, disc_cfg)
    truth = evaluate_group(predictors, inputs, action, fam.true_generator / np.sqrt(2), coef_std=0.5)
    out["synthetic_local"] = _summarise(found, fam.true_generator, fam.true_components, truth)
    out["synthetic_local"]["predictor_relative_mse"] = [round(e, 5) for e in fit_errors]

    # global: the nearest-chart field on the whole domain, symmetric about each chart centre only
    centres = np.array([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, fam.n_charts, endpoint=False)]) * 1.5
    xs = torch.rand(8192, 2, generator=gen) * 6 - 3
    ys = torch.from_numpy(fam.global_function(xs.numpy(), centres)).float()[:, None]
    global_model = make_mlp(hidden=128)
    global_fit = fit_regressor(global_model, xs, ys, 2 * cfg.synthetic_steps, batch=256, crop=0, seed=cfg.seed)
    global_model.eval().requires_grad_(False)
    g_inputs = [torch.rand(1024, 2, generator=gen) * 3.6 - 1.8]
    g_found = discover_with_count([global_model], g_inputs, action, lie_cfg, count, disc_cfg)
    g_truth = evaluate_group([global_model], g_inputs, action, fam.true_generator / np.sqrt(2), coef_std=0.5)
    out["synthetic_global"] = _summarise(g_found, fam.true_generator, fam.true_components, g_truth)
    out["synthetic_global"]["predictor_relative_mse"] = round(global_fit, 5)
    return out


def _lorentz_job(cfg: LorentzConfig, seed: int) -> dict:
    torch.set_num_threads(1)
    return run_lorentz(cfg, seed)


def _downstream_job(sim, group, cfg: AtlasDConfig, seed: int, model: str) -> dict:
    torch.set_num_threads(1)
    return run_downstream(sim, group, cfg.downstream_sizes, (seed,), cfg.downstream_steps, cfg.downstream_test,
                          cfg.downstream_fields, data_seed=cfg.seed, only=model)


def _planar_from_name(name: str | None):
    """A downstream group given by name ("D4", "C4"), as the discovered group would be named."""
    if name is None:
        return None
    if name[0] not in "CD" or not name[1:].isdigit():
        raise ValueError(f"downstream_expected_group must look like 'D4' or 'C4', got {name!r}")
    return DiscoveredGroup(SO2[None] / np.sqrt(2), np.stack(REFLECTION if name[0] == "D" else REFLECTION[:1]), 0.0, [])


def _save_part(folder: Path, name: str, value) -> None:
    write_json(folder / f"{name}.json", {k: v for k, v in value.items() if not k.startswith("_")} if isinstance(value, dict) else value)


def _part_job(folder: Path, name: str, fn, *args):
    """Run ``fn(*args)`` and also save its result as ``folder/name.json`` (kept if the run is cut short)."""
    result = fn(*args)
    _save_part(folder, name, result)
    return result


def merge_downstream(parts: list[dict]) -> dict:
    """One downstream result from single-seed, single-model results (rows stacked in seed order)."""
    merged = {k: v for k, v in parts[0].items() if k != "models"}
    merged["seeds"] = sorted({s for r in parts for s in r["seeds"]})
    merged["models"] = {}
    names = list(dict.fromkeys(name for r in parts for name in r["models"]))
    for name in names:
        mine = sorted((r for r in parts if name in r["models"]), key=lambda r: r["seeds"][0])
        first = mine[0]["models"][name]
        rows = {k: [row for r in mine for row in r["models"][name][k]] for k in first if k.startswith("test_relative_mse") and not k.endswith("_mean")}
        merged["models"][name] = {"parameters": first["parameters"], "seeds": [r["seeds"][0] for r in mine], **rows,
                                  "test_relative_mse_mean": np.round(np.mean(rows["test_relative_mse"], axis=0), 6).tolist()}
    return merged



def _evidence(out: dict) -> list[dict]:
    ev = []
    ex = out["pde_exact_simulator"]
    ev.append(claim(
        "AtlasD, heat with obstacle, exact simulator as predictor (no fit error): the best one-generator symmetry "
        "is closer to exact on local charts than on the whole domain",
        metric="held-out equivariance loss of the best 1-generator basis", method="local charts", baseline="global (one chart)",
        method_values=ex["local_loss_best"], baseline_values=ex["global_loss_best"], higher_is_better=False, effect="ratio",
        method_seeds=ex["seeds"], baseline_seeds=ex["seeds"],
    ))
    runs = out["lorentz"]["runs"]
    seeds = [r["seed"] for r in runs]
    ev.append(claim(
        f"AtlasD, jets: the discovered {runs[0]['true_n_generators']}-dim algebra is closer to {runs[0]['group']} than a random subspace",
        metric="max principal angle to the true algebra [deg]", method="AtlasD", baseline="random subspace",
        method_values=[r["comparison_at_true_size"]["max_principal_angle_deg"] for r in runs],
        baseline_values=[r["random_subspace_max_angle_deg"]["mean"] for r in runs], higher_is_better=False,
        method_seeds=seeds, baseline_seeds=seeds,
    ))
    jumped = [r for r in runs if len(r["losses_by_k"]) > r["true_n_generators"]]
    if jumped:
        n = runs[0]["true_n_generators"]
        ev.append(claim(
            f"AtlasD, jets: {n} generators fit the symmetry, a {n + 1}th does not (the loss jumps)",
            metric="held-out equivariance loss of the best k-dim basis", method=f"k={n}", baseline=f"k={n + 1}",
            method_values=[r["losses_by_k"][n - 1] for r in jumped], baseline_values=[r["losses_by_k"][n] for r in jumped],
            higher_is_better=False, effect="ratio", method_seeds=[r["seed"] for r in jumped], baseline_seeds=[r["seed"] for r in jumped],
        ))
    return ev + downstream_claims(out["downstream"])


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results")) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = AtlasDConfig.quick(seed) if quick else AtlasDConfig(seed=seed)
    out: dict = {"count_criterion": " ".join(GeneratorCountConfig.__doc__.split("\n\n")[1].split())}
    timings = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    # independent parts run in parallel worker processes (fork: they inherit the loaded modules)
    d = make_pde_data(cfg)
    parts = Path(out_dir) / ".atlasd_parts"  # each part is also saved as it finishes
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=multiprocessing.get_context("fork")) as pool:
        charts = [pool.submit(_fit_chart_job, cfg, c) for c in range(len(d.centres) + 1)]
        expected = _planar_from_name(cfg.downstream_expected_group)
        downstream = [pool.submit(_part_job, parts, f"downstream_{s}_{m}", _downstream_job, d.sim, expected, cfg, s, m)
                      for s in cfg.downstream_seeds for m in ("steerable", "cnn")] if expected else []
        glob = pool.submit(_part_job, parts, "pde_global", run_pde_global, cfg)
        exact = pool.submit(_part_job, parts, "pde_exact_simulator", run_exact_simulator_control, cfg, d.sim, d.centres)
        synthetic = pool.submit(_part_job, parts, "synthetic", run_synthetic_discovery, cfg)
        lorentz = [pool.submit(_part_job, parts, f"lorentz_{s}", _lorentz_job, cfg.lorentz, s) for s in cfg.lorentz_seeds]
        group = run_pde_local(cfg, d, [job.result() for job in charts], out)
        _save_part(parts, "pde_local", out["pde_local"])
        lap("pde_local")
        discovered = to_planar_group(group)
        discovered_name = None if discovered is None else discovered.name
        out["downstream_group_check"] = {"started_with": cfg.downstream_expected_group, "discovered": discovered_name,
                                         "kept": bool(downstream) and discovered_name == cfg.downstream_expected_group}
        if not out["downstream_group_check"]["kept"]:  # discovery named another group: use that one
            for job in downstream:
                job.cancel()
            downstream = [pool.submit(_downstream_job, d.sim, group, cfg, s, m) for s in cfg.downstream_seeds for m in ("steerable", "cnn")]
        out["pde_global"] = glob.result()
        out["_landscape"]["global"] = out["pde_global"].pop("_landscape")
        local_fit = float(np.mean(out["pde_local"]["predictor_relative_mse"][:-1]))
        out["pde_global"]["local_mean_relative_mse"] = round(local_fit, 5)
        out["pde_global"]["fit_at_least_as_good_as_local"] = bool(out["pde_global"]["predictor_relative_mse_chart_windows"] <= local_fit)
        out["pde_exact_simulator"] = exact.result()
        out.update(synthetic.result())
        runs = [job.result() for job in lorentz]
        lap("global_exact_synthetic_lorentz_wait")
        out["downstream"] = merge_downstream([job.result() for job in downstream])
        lap("downstream_wait")
    out["lorentz"] = {
        "runs": runs,
        "count_correct": [r["count_correct"] for r in runs],
        "max_principal_angle_deg_at_true_size": [r["comparison_at_true_size"]["max_principal_angle_deg"] for r in runs],
    }
    out["timings_s"] = timings
    out["evidence"] = _evidence(out)
    out_dir = Path(out_dir)
    plot_domain(d.sim, out.pop("_sample"), out_dir / "atlasd_domain.png", cfg.patch)
    landscape = out.pop("_landscape")
    out["pde_landscape"] = {k: [round(float(v), 6) for v in vals] for k, vals in landscape.items()}  # to redraw the figure
    plot_discovery(out, landscape, out_dir / "atlasd_discovery.png")
    plot_lorentz(runs, out_dir / "atlasd_lorentz.png")
    plot_downstream(out["downstream"], out_dir / "atlasd_downstream.png")
    out["atlasd_config"] = asdict(cfg)
    return out
