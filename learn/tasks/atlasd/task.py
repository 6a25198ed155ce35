"""AtlasD task: discover local symmetries from chart predictors, then use them downstream.

1. Heat diffusion with a heated obstacle (``physics.pde.HeatObstacleSim``). One CNN per chart
   (patches away from the obstacle) learns the one-step tendency ``u_{t+1} - u_t``; AtlasD finds
   how many Lie generators make all chart predictors equivariant (:func:`discover_generator_count`),
   the generators themselves and the discrete components. The global baseline is one CNN on the
   whole domain, trained until its fit on the chart pixels is as good as the charts' own (both fit
   errors reported), with the group acting about the domain centre; the obstacle breaks that
   symmetry. A control repeats local vs global discovery with the exact simulator as predictor
   (no fit error at all), over several data seeds. The trained-predictor local and global discovery
   is repeated over ``pde_seeds`` (data, network initialisation and discovery all follow the seed;
   ``pde_seeds`` in the JSON, ledger claims in :func:`learn.tasks.atlasd.pde.pde_seed_claims`).
   The PDE part lives in :mod:`learn.tasks.atlasd.pde`.
2. Synthetic chart functions with an O(1, 1) symmetry (four connected components), in 2-D.
3. so(1, 3) from jet observables in 4-D (``atlasd_lorentz``): generator count and the discovered
   algebra vs the true one (principal angles, structure constants), over several seeds.
4. Downstream (``atlasd_downstream``): the discovered group, named as D4/C4 (a square grid's exact
   part of O(2)), is the fibre group of an escnn steerable CNN; vs a parameter-matched plain CNN
   at 1/4/16/64 training fields over several seeds, both trained to convergence by one early-stopping
   rule (:class:`learn.tasks.atlasd.downstream.ConvergenceRule`; validation curves in the JSON), each from
   its own initial learning rate, tuned on a separate seed's validation error (:mod:`learn.tasks.atlasd.tuning`).

The multi-seed parts can also be run piece by piece and merged into an existing results file
(:mod:`learn.tasks.atlasd.seeds`), as the Lorentz coset search is (:mod:`learn.tasks.atlasd.cosets`).

Generator-count criterion (stated in ``GeneratorCountConfig``): ``k`` generators are accepted
while the held-out loss of the best ``k``-dim basis stays ``<= min(0.1, 3 L_{k-1} + 0.02)``;
the count is the last accepted ``k``.
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from symgym.equivariance.discovery import (
    DiscoveredGroup,
    VectorAction,
    evaluate_group,
    to_planar_group,
)
from symgym.equivariance.discovery_count import GeneratorCountConfig
from symgym.learn.io import write_json
from symgym.learn.evidence.ledger import claim
from symgym.learn.tasks.atlasd.config import AtlasDConfig
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
from symgym.learn.tasks.atlasd.plots import plot_discovery, plot_domain, plot_downstream, plot_downstream_curves, plot_lorentz
from symgym.learn.tasks.atlasd.pde import (  # noqa: F401  (re-exported: the PDE part lives in pde.py)
    REFLECTION,
    SO2,
    _fit_chart_job,
    discover_with_count,
    make_pde_data,
    run_exact_simulator_control,
    run_pde_global,
    run_pde_local,
    run_pde_seed,
    pde_seed_claims,
    pde_seed_table,
    _summarise,
)
from symgym.physics.pde import ChartFunctionFamily


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
    return run_downstream(sim, group, cfg.downstream_sizes, (seed,), cfg.downstream_rule, cfg.downstream_test,
                          cfg.downstream_fields, data_seed=cfg.seed, only=model)


def lorentz_summary(runs: list[dict]) -> dict:
    """The stored ``lorentz`` block: the per-seed runs (in seed order) and two per-seed columns."""
    runs = sorted(runs, key=lambda r: r["seed"])
    return {
        "runs": runs,
        "count_correct": [r["count_correct"] for r in runs],
        "max_principal_angle_deg_at_true_size": [r["comparison_at_true_size"]["max_principal_angle_deg"] for r in runs],
    }


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


#: per-(seed, size) records of a downstream model besides its test errors (stacked by seed like them)
PER_RUN_KEYS = ("best_step", "best_val_relative_mse", "last_step", "stopped_by", "curves")


def merge_downstream(parts: list[dict]) -> dict:
    """One downstream result from single-seed, single-model results (rows stacked in seed order).

    Adds ``stopped_at_cap``: how many runs (seed x size) of each model stopped at the rule's ``max_steps``
    rather than by early stopping, and ``cpu_s``, the parts' CPU time summed (where they recorded it).
    """
    merged = {k: v for k, v in parts[0].items() if k not in ("models", "cpu_s")}
    merged["seeds"] = sorted({s for r in parts for s in r["seeds"]})
    merged["models"] = {}
    names = list(dict.fromkeys(name for r in parts for name in r["models"]))
    for name in names:
        mine = sorted((r for r in parts if name in r["models"]), key=lambda r: r["seeds"][0])
        first = mine[0]["models"][name]
        rates = {r["models"][name].get("lr") for r in mine}
        if len(rates) > 1:
            raise ValueError(f"{name}: the parts were trained at different learning rates {sorted(rates, key=str)}")
        rows = {k: [row for r in mine for row in r["models"][name][k]] for k in first
                if k.startswith("test_relative_mse") and not k.endswith("_mean") or k in PER_RUN_KEYS}
        merged["models"][name] = {"parameters": first["parameters"], **({"lr": first["lr"]} if "lr" in first else {}),
                                  "seeds": [r["seeds"][0] for r in mine], **rows,
                                  "test_relative_mse_mean": np.round(np.mean(rows["test_relative_mse"], axis=0), 6).tolist()}
    if all("stopped_by" in m for m in merged["models"].values()):
        capped = {name: sum(s == "max_steps" for row in m["stopped_by"] for s in row) for name, m in merged["models"].items()}
        merged["stopped_at_cap"] = {**capped, "total": sum(capped.values()),
                                    "runs": sum(len(row) for m in merged["models"].values() for row in m["stopped_by"])}
    if any("cpu_s" in r for r in parts):
        merged["cpu_s"] = round(sum(r.get("cpu_s", 0.0) for r in parts), 1)
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
    if "pde_seeds" in out:
        ev += pde_seed_claims(out["pde_seeds"])
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
        pde_seeds = [pool.submit(_part_job, parts, f"pde_seed_{s}", run_pde_seed, cfg, s) for s in cfg.pde_seeds if s != cfg.seed]
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
        seed_runs = [job.result() for job in pde_seeds]
        if cfg.seed in cfg.pde_seeds:  # the main run is that seed's run
            seed_runs.append({"seed": cfg.seed, "local": out["pde_local"], "global": out["pde_global"]})
        out["pde_seeds"] = {**pde_seed_table(seed_runs), "runs": sorted(seed_runs, key=lambda r: r["seed"])}
        lap("global_exact_synthetic_lorentz_wait")
        out["downstream"] = merge_downstream([job.result() for job in downstream])
        lap("downstream_wait")
    out["lorentz"] = lorentz_summary(runs)
    out["timings_s"] = timings
    out["evidence"] = _evidence(out)
    out_dir = Path(out_dir)
    plot_domain(d.sim, out.pop("_sample"), out_dir / "atlasd_domain.png", cfg.patch)
    landscape = out.pop("_landscape")
    out["pde_landscape"] = {k: [round(float(v), 6) for v in vals] for k, vals in landscape.items()}  # to redraw the figure
    plot_discovery(out, landscape, out_dir / "atlasd_discovery.png")
    plot_lorentz(runs, out_dir / "atlasd_lorentz.png")
    plot_downstream(out["downstream"], out_dir / "atlasd_downstream.png")
    plot_downstream_curves(out["downstream"], out_dir / "atlasd_downstream_curves.png")
    out["atlasd_config"] = asdict(cfg)
    return out
