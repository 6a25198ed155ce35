"""IAEmu: a neural emulator of galaxy intrinsic-alignment statistics with uncertainty (arXiv 2504.05235).

The simulator (:mod:`physics.galaxies`) maps 7 parameters (Zheng07 HOD + central and satellite
alignment strengths, kappa = tan(pi mu / 2) as in halotools) to three noisy correlation functions
xi, omega, eta in 20 radial bins. Emulators, all trained on the same cached data set
(:mod:`learn.tasks.iaemu.data`), over several training seeds:

- ``paper``: the IAEmu architecture (residual encoder, Conv1d decoders) with beta-NLL and the
  paper's beta schedule; Monte Carlo dropout gives the epistemic uncertainty
  (:mod:`learn.tasks.iaemu.models`);
- ``ensemble``: a deep ensemble of beta-NLL MLPs, whose disagreement is the epistemic uncertainty;
- ``mse_mlp``: one MSE-trained MLP on realisation means (no uncertainty);
- ``knn``: inverse-distance k nearest neighbours (no uncertainty).

Reported: held-out relative errors, each beside the noise floor of the test targets (every target is
the mean of ``n_test_realisations`` mocks; a perfect emulator scores the floor,
:mod:`learn.tasks.iaemu.floor`), calibration of the predicted intervals on new realisations,
epistemic growth outside the training box, single-query speed against the simulator at the
training catalogue size and at a realistic one (same run), an inverse problem (recover the
alignment strengths of held-out mocks through the emulator, :mod:`learn.tasks.iaemu.inverse`), and
claims-ledger entries over seeds (Holm-adjusted as one family), restated in units of the floor.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from symgym.learn.evidence.ledger import adjust, claim
from symgym.learn.io import save_torch
from symgym.learn.tasks.iaemu.config import QUICK, IAEmuConfig
from symgym.learn.tasks.iaemu.data import (
    PARAM_HIGH,
    PARAM_LOW,
    TEST_SEED_OFFSET,
    Standardiser,
    from_model_space,
    generate_dataset,
    sample_params,
    to_model_space,
)
from symgym.learn.tasks.iaemu.eval import (
    NOMINAL_1SIGMA,
    calibration_error,
    coverage,
    epistemic_inflation,
    knn_predict,
    model_values,
    outside_params,
    relative_errors,
    scored_against_floor,
)
from symgym.learn.tasks.iaemu.floor import (  # noqa: F401  (attach_noise_floor: re-exported for old callers)
    attach_noise_floor,
    floor_evidence,
    noise_floor_summary,
    relative_error_floor,
)
from symgym.learn.tasks.iaemu.inverse import fit_alignment, inverse_coverage, residual_covariance
from symgym.learn.tasks.iaemu.pilot_check import CACHE as PILOT_CACHE, CHECK_EPOCHS, attach as attach_pilot_check
from symgym.learn.tasks.iaemu.pilot_check import table as pilot_check_table
from symgym.learn.tasks.iaemu.models import (
    IAEmuNet,
    IAEmulator,
    TrainSettings,
    ensemble_predict,
    mc_dropout_predict,
    train_network,
)
from symgym.learn.tasks.iaemu.plots import plot_accuracy, plot_curves, plot_inverse, plot_uncertainty
from symgym.learn.tasks.iaemu.speed import paper_epoch_cost, speed_report
from symgym.physics.galaxies import PARAM_NAMES, REALISTIC_HALOS_KWARGS, STAT_NAMES, radial_bins

UNCERTAIN_MODELS = ("paper", "ensemble")
PARTS = ("baselines", "paper")  # trained and cached separately per seed
PART_FOLDERS = {"baselines": "cache", "paper": "carry"}  # under out_dir: ignored cache, tracked carry (seed_cache_path)
SEED_CACHE_VERSION = 2  # bump when training changes (evaluation is recomputed from the cached models)
#: config fields that do not change what one seed trains or how it is scored
_RUN_ONLY_FIELDS = ("n_seeds", "paper_seeds", "parallel_seeds", "max_workers", "price_full_width", "n_speed_repeats",
                    "n_inverse", "n_test_params", "n_test_realisations", "mc_passes", "knn_k")
#: fields that shape only the other part's training
_OTHER_PART_FIELDS = {"paper": ("epochs", "lr", "beta", "hidden", "ensemble_size", "batch_size"),
                      "baselines": ("paper_width", "paper_epochs", "paper_lr", "paper_batch_size")}


def _predict(models: dict, name: str, theta: np.ndarray, mc_passes: int) -> dict[str, np.ndarray]:
    x = torch.as_tensor(theta, dtype=torch.float32)
    with torch.no_grad():
        if name == "paper":
            out = mc_dropout_predict(models["paper"], x, mc_passes)
        else:
            out = ensemble_predict(models["ensemble"], x)
    return {k: v.numpy() for k, v in out.items()}


def validation_split(cfg: IAEmuConfig, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation, fit) indices of one seed's split of the ``n`` training sets."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(2, int(cfg.val_fraction * n))
    return perm[:n_val], perm[n_val:]


def train_part(cfg: IAEmuConfig, seed: int, part: str, train: dict, z_train: np.ndarray,
                checkpoint: Path | None = None) -> tuple[dict, dict, dict]:
    """One seed's ``part`` of the emulators: "paper" (the paper model) or "baselines" (the deep ensemble and the
    MSE MLP); returns (models, wall seconds, CPU seconds) per model. ``checkpoint``: where the paper model's
    training state is kept between sittings (see :func:`train_network`); the wall and CPU seconds then count
    this sitting only."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    val_idx, fit_idx = validation_split(cfg, seed, len(z_train))
    fx, fy, vx, vy = train["theta"][fit_idx], z_train[fit_idx], train["theta"][val_idx], z_train[val_idx]
    n_bins = z_train.shape[-1]
    member = TrainSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, beta=cfg.beta)
    paper = TrainSettings(epochs=cfg.paper_epochs, batch_size=cfg.paper_batch_size, lr=cfg.paper_lr)
    models, wall, cpu = {}, {}, {}

    def timed(name, fn):
        t0, c0 = time.perf_counter(), time.process_time()
        models[name] = fn()
        wall[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0

    torch.manual_seed(seed)
    if part == "paper":
        timed("paper", lambda: train_network(IAEmuNet(PARAM_LOW, PARAM_HIGH, n_bins, width=cfg.paper_width),
                                             fx, fy, vx, vy, paper, seed=seed * 1000 + 500, kind="paper",
                                             checkpoint=checkpoint))
        return models, wall, cpu
    timed("ensemble", lambda: [
        train_network(IAEmulator(PARAM_LOW, PARAM_HIGH, n_bins, hidden=cfg.hidden), fx, fy, vx, vy, member,
                      seed=seed * 1000 + k, kind="ensemble")
        for k in range(cfg.ensemble_size)])
    timed("mse_mlp", lambda: train_network(
        IAEmulator(PARAM_LOW, PARAM_HIGH, n_bins, hidden=cfg.hidden, heteroscedastic=False),
        fx, fy.mean(1, keepdims=True), vx, vy.mean(1, keepdims=True), member, seed=seed * 1000 + 999, kind="mse"))
    return models, wall, cpu


def _evaluate_seed(cfg, models, val_idx, train, test, z_train, norm) -> dict:
    """Accuracy and calibration of every model on the held-out parameter sets (standardised z)."""
    R = test["stats"].shape[1]
    y_test = to_model_space(test["stats"])
    z_test = norm.forward(y_test)
    truth = from_model_space(y_test.mean(1))  # geometric mean for xi: every model predicts in log(1+xi)
    sem = test["stats"].std(1, ddof=1) / np.sqrt(R)
    scatter = y_test.std(1, ddof=1)
    means, out = {}, {"accuracy": {}, "err_over_scatter": {}, "calibration": {}}
    uncertain = [m for m in UNCERTAIN_MODELS if m in models]
    preds = {name: _predict(models, name, test["theta"], cfg.mc_passes) for name in uncertain}
    for name in uncertain:
        means[name] = preds[name]["mean"]
    with torch.no_grad():
        means["mse_mlp"] = models["mse_mlp"](torch.as_tensor(test["theta"], dtype=torch.float32))[0].numpy()
    means[f"knn_{cfg.knn_k}"] = knn_predict(train["theta"], z_train.mean(1), test["theta"], cfg.knn_k)
    for name, mean in means.items():
        y_pred = norm.inverse(mean)
        out["accuracy"][name] = relative_errors(from_model_space(y_pred), truth, sem)
        out["err_over_scatter"][name] = {
            s: float(np.median(np.abs(y_pred - y_test.mean(1))[:, k] / scatter[:, k]))
            for k, s in enumerate(STAT_NAMES)}
    out["err_over_scatter_vs_floor"] = scored_against_floor(out["err_over_scatter"], R)
    z_all = {}
    for name in uncertain:
        p = preds[name]
        z = (z_test - p["mean"][:, None]) / np.sqrt(p["aleatoric"] + p["epistemic"])[:, None]
        val = _predict(models, name, train["theta"][val_idx], cfg.mc_passes)
        inflation = epistemic_inflation(z_train[val_idx], val)
        z_recal = (z_test - p["mean"][:, None]) / np.sqrt(p["aleatoric"] + inflation[:, None] * p["epistemic"])[:, None]
        z_alea = (z_test - p["mean"][:, None]) / np.sqrt(p["aleatoric"])[:, None]
        out["calibration"][name] = {
            "total": coverage(z), "aleatoric_only": coverage(z_alea), "recalibrated": coverage(z_recal),
            "epistemic_inflation_from_validation": dict(zip(STAT_NAMES, inflation.tolist())),
            "calibration_error_total": calibration_error(z),
            "calibration_error_recalibrated": calibration_error(z_recal),
            "epistemic_share_of_variance": float(np.median(p["epistemic"] / (p["aleatoric"] + p["epistemic"]))),
        }
        z_all[name] = (z, z_recal)
    return {**out, "_preds": preds, "_z": z_all}


def _epistemic_in_out(cfg, models, seed) -> dict:
    inside = sample_params(300, seed=seed + 31)
    outside = outside_params(300, np.random.default_rng(seed + 37))
    out = {}
    for name in [m for m in UNCERTAIN_MODELS if m in models]:
        e_in = np.sqrt(_predict(models, name, inside, cfg.mc_passes)["epistemic"]).mean((1, 2))
        e_out = np.sqrt(_predict(models, name, outside, cfg.mc_passes)["epistemic"]).mean((1, 2))
        out[name] = {"inside_median": float(np.median(e_in)), "outside_median": float(np.median(e_out)),
                     "ratio_outside_inside": float(np.median(e_out) / np.median(e_in)),
                     "_in": e_in, "_out": e_out}
    return out


def _inverse(cfg, models, val_idx, train, test, z_train, norm) -> dict:
    """Recover (mu_cen, mu_sat) of held-out mocks through the recalibrated ensemble (full-covariance likelihood).
    A mock averages the first ``n_realisations`` of a test set's realisations (as many as a training set has)."""
    R = min(cfg.n_realisations, test["stats"].shape[1])
    z_test = norm.forward(to_model_space(test["stats"][:, :R]))
    members = models["ensemble"]
    val = _predict(models, "ensemble", train["theta"][val_idx], cfg.mc_passes)
    infl = torch.as_tensor(epistemic_inflation(z_train[val_idx], val), dtype=torch.float32)[:, None]
    with torch.no_grad():
        alea = ensemble_predict(members, torch.as_tensor(train["theta"], dtype=torch.float32))["aleatoric"]
    noise_cov, shrinkage = residual_covariance(z_train.reshape(*z_train.shape[:2], -1),
                                               alea.sqrt().numpy().reshape(len(z_train), -1))

    def predict(theta):
        p = ensemble_predict(members, theta)
        member_means = torch.stack([m(theta)[0] for m in members], 1)
        factors = (member_means - member_means.mean(1, keepdim=True)) * (infl / len(members)).sqrt()
        return {**p, "epistemic": p["epistemic"] * infl, "epistemic_factors": factors}

    fits = []
    for i in tqdm(range(min(cfg.n_inverse, len(z_test))), desc="iaemu: inverse fits"):
        obs = torch.as_tensor(z_test[i].mean(0), dtype=torch.float32)
        fits.append(fit_alignment(predict, test["theta"][i], obs, 1.0 / R, noise_cov=noise_cov, grid=41))
    z = np.array([f["z"] for f in fits])
    return {
        "cases": [{k: f[k] for k in ("truth", "fit", "sigma", "sigma_source", "z")} for f in fits],
        "fraction_within_1sigma": float((np.abs(z) < 1).all(1).mean()),
        "fraction_within_2sigma": float((np.abs(z) < 2).all(1).mean()),
        "median_abs_error": float(np.median(np.abs([f["fit"] - f["truth"] for f in fits]))),
        "n_mocks": len(fits), "realisations_per_mock": R, "per_coordinate": inverse_coverage(fits),
        "noise_covariance_shrinkage": shrinkage,
        "likelihood": "full Gaussian: pooled bin-to-bin noise covariance (shrunk) x aleatoric sd / R "
                      "+ inflated ensemble covariance across bins (recalibrated deep ensemble)",
        "_fits": fits,
    }


def _seed_job(job: tuple) -> tuple[dict, np.ndarray, dict]:
    """Train (or load) and evaluate one seed's emulators (a top-level function, so a worker process can run it).
    ``paths`` maps each part to its cache file (or None): a trained part is stored there and reused."""
    cfg, s, parts, train, test, z_train, norm, paths = job
    torch.set_num_threads(1)
    models, wall, cpu, cached = {}, {}, {}, {}
    for part in parts:
        path = paths.get(part)
        cached[part] = path is not None and Path(path).exists()
        out = (torch.load(path, weights_only=False) if cached[part] else
               train_part(cfg, s, part, train, z_train, checkpoint=None if path is None else partial_path(Path(path))))
        if path is not None and not cached[part]:
            save_torch(out, path)
        for d, new in zip((models, wall, cpu), out):
            d.update(new)
    val_idx, _ = validation_split(cfg, s, len(z_train))
    result = _evaluate_seed(cfg, models, val_idx, train, test, z_train, norm)
    result["epistemic_std"] = _epistemic_in_out(cfg, models, s)
    result.update(train_seconds=wall, train_cpu_seconds=cpu, parts_loaded_from_cache=cached)
    return models, val_idx, result


def seed_cache_path(cfg: IAEmuConfig, seed: int, out_dir: Path, part: str) -> Path:
    """Where one seed's trained ``part`` is kept: keyed by every config field that shapes its training (what is
    only evaluated, e.g. the test set, is recomputed from the kept models). The baselines (minutes a seed) go to the
    ignored ``out_dir/cache``; the paper model (~1 CPU-hour a seed, more than a sitting holds for five) goes to the
    tracked ``out_dir/carry``, because a fresh checkout holds only what git holds: its finished models are committed,
    and an unfinished one's checkpoint at the end of a sitting, so the next sitting continues it."""
    key = {k: v for k, v in asdict(cfg).items() if k not in _RUN_ONLY_FIELDS + _OTHER_PART_FIELDS[part]}
    key.update(version=SEED_CACHE_VERSION, part=part)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return out_dir / PART_FOLDERS[part] / "iaemu-seeds" / f"{digest}_{part}_seed{seed}.pt"


def partial_path(path: Path) -> Path:
    """Where a seed part's unfinished training state is kept (beside the part's cache file)."""
    return path.with_name(path.stem + ".partial.pt")


def _parts(cfg: IAEmuConfig, k: int) -> tuple[str, ...]:
    return ("baselines", "paper") if cfg.trains_paper(k) else ("baselines",)


def _seed_metric(per_seed: list[dict], seeds: list[int], model: str, stat: str,
                 key: str = "median_rel_err_significant_bins") -> tuple[list, list[int]]:
    return model_values(per_seed, seeds, model, lambda r: r["accuracy"][model][stat][key])


def _evidence(per_seed: list[dict], seeds: list[int], knn: str) -> list[dict]:
    ev = []
    claim = _claim_if_data
    for stat, key in (("xi", "median_rel_err"), ("omega", "median_rel_err_significant_bins")):
        metric = f"{stat} median relative error ({'all' if key == 'median_rel_err' else 'significant'} bins)"
        for method, baseline in (("paper", "mse_mlp"), ("ensemble", "mse_mlp"), ("paper", "ensemble"),
                                 ("paper", knn)):
            (mv, ms), (bv, bs) = (_seed_metric(per_seed, seeds, m, stat, key) for m in (method, baseline))
            ev.append(claim(f"{method} emulates {stat} more accurately than {baseline}", metric, method, baseline,
                            mv, bv, higher_is_better=False, method_seeds=ms, baseline_seeds=bs))
    cal = {m: model_values(per_seed, seeds, m, lambda r, m=m: r["calibration"][m]["calibration_error_total"])
           for m in UNCERTAIN_MODELS}
    rec = {m: model_values(per_seed, seeds, m, lambda r, m=m: r["calibration"][m]["calibration_error_recalibrated"])
           for m in UNCERTAIN_MODELS}
    metric = "mean |empirical - nominal| coverage of 1 and 2 sigma, held-out realisations"
    ev.append(claim("paper (MC dropout) is better calibrated than the deep ensemble", metric, "paper", "ensemble",
                    cal["paper"][0], cal["ensemble"][0], higher_is_better=False, method_seeds=cal["paper"][1],
                    baseline_seeds=cal["ensemble"][1]))
    ev.append(claim("paper (MC dropout) after validation recalibration is better calibrated than before", metric,
                    "paper_recalibrated", "paper", rec["paper"][0], cal["paper"][0], higher_is_better=False,
                    method_seeds=rec["paper"][1], baseline_seeds=cal["paper"][1]))
    # calibration against an absolute target: a model is called calibrated when within 0.05 of nominal
    for m in UNCERTAIN_MODELS:
        ev.append(claim(f"{m}: total-sigma coverage error is below 0.05", "calibration error minus 0.05", m,
                        "tolerance_0.05", cal[m][0], [0.05] * len(cal[m][0]), higher_is_better=False))
    return [e for e in ev if e is not None]


def _claim_if_data(text, metric, method, baseline, method_values, baseline_values, **kw) -> dict:
    """A ledger entry, or ``None`` when a side has no seeds (a model that was not trained); dropped below."""
    if not len(method_values) or not len(baseline_values):
        return None
    return claim(text, metric, method, baseline, method_values, baseline_values, **kw)


def load_training_set(cfg: IAEmuConfig, cache: Path) -> dict:
    return generate_dataset(cfg.n_train_params, cfg.n_realisations, cfg.data_seed, cfg.halo_config(), cache,
                            halo_seed=cfg.data_seed,
                            blocks=list(cfg.train_blocks) if cfg.train_blocks is not None else None)


def standardised_targets(train: dict) -> tuple[Standardiser, np.ndarray]:
    """The training set's statistics in model space, standardised: the fitted standardiser and the targets z."""
    y = to_model_space(train["stats"])
    norm = Standardiser.fit(y)
    return norm, norm.forward(y)


def _load_data(cfg: IAEmuConfig, cache: Path) -> tuple[dict, dict]:
    """Training and test sets; they share the halo catalogue but use disjoint parameter draws and HOD seeds."""
    halo_cfg = cfg.halo_config()
    train = load_training_set(cfg, cache)
    # each test target is the mean of n_test_realisations mocks (more than in training: a lower noise floor)
    test = generate_dataset(cfg.n_test_params, cfg.n_test_realisations, cfg.data_seed + TEST_SEED_OFFSET, halo_cfg,
                            cache, halo_seed=cfg.data_seed)
    return train, test


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), config: IAEmuConfig | None = None,
        cache_seeds: bool | None = None) -> dict:
    """Simulate (or load) the data, train every emulator for ``n_seeds`` seeds, evaluate, plot; returns results.

    ``cache_seeds`` (default: on for the full task, off for ``quick``) stores each finished seed's parts
    (:func:`seed_cache_path`) and reuses them, so seeds can be trained by separate workers (:func:`main`)."""
    torch.set_num_threads(1)
    cfg = config or (QUICK if quick else IAEmuConfig())
    out_dir = Path(out_dir)
    cache, halo_cfg = out_dir / "cache", cfg.halo_config()
    cache_seeds = (not quick) if cache_seeds is None else cache_seeds
    train, test = _load_data(cfg, cache)
    z_train_norm, z_train = standardised_targets(train)
    seeds = [seed + k for k in range(cfg.n_seeds)]
    jobs = [(cfg, s, _parts(cfg, k), train, test, z_train, z_train_norm,
             {p: seed_cache_path(cfg, s, out_dir, p) for p in _parts(cfg, k)} if cache_seeds else {})
            for k, s in enumerate(seeds)]
    if cfg.parallel_seeds and len(seeds) > 1:
        workers = min(len(seeds), cfg.max_workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            outcomes = list(pool.map(_seed_job, jobs))
    else:
        outcomes = [_seed_job(job) for job in jobs]
    per_seed = [result for _, _, result in outcomes]
    first = outcomes[0][:2]
    models, val_idx = first
    speed = speed_report(cfg, models, test, REALISTIC_HALOS_KWARGS if not quick else {"n_halos": 20000,
                                                                                        "box_size": 126.0,
                                                                                        "n_clusters": 800})
    inverse = _inverse(cfg, models, val_idx, train, test, z_train, z_train_norm)
    knn = f"knn_{cfg.knn_k}"

    def strip(d):  # drop private arrays from a per-seed record
        return {k: ({kk: {x: y for x, y in vv.items() if not x.startswith("_")} for kk, vv in v.items()}
                    if k == "epistemic_std" else v) for k, v in d.items() if not k.startswith("_")}

    def mean_over_seeds(model, stat, key):
        vals, with_model = _seed_metric(per_seed, seeds, model, stat, key)
        kept = [(v, s) for v, s in zip(vals, with_model) if v is not None]
        return {"mean": float(np.mean([v for v, _ in kept])), "std": float(np.std([v for v, _ in kept])),
                "per_seed": [v for v, _ in kept], "seeds": [s for _, s in kept]}

    trained = [m for m in ("paper", "ensemble", "mse_mlp", knn) if m in per_seed[0]["err_over_scatter"]]
    summary = {
        model: {stat: {key: mean_over_seeds(model, stat, key)
                       for key in ("median_rel_err", "median_rel_err_significant_bins")} for stat in STAT_NAMES}
        for model in trained}
    calib_summary = {
        m: {kind: {stat: {w: float(np.mean([r["calibration"][m][kind][stat][w] for r in per_seed
                                            if m in r["calibration"]]))
                          for w in ("within_1sigma", "within_2sigma")} for stat in STAT_NAMES}
            for kind in ("total", "aleatoric_only", "recalibrated")}
        for m in UNCERTAIN_MODELS if m in trained}
    results = {
        "data": {"n_train_params": len(train["theta"]), "n_test_params": len(test["theta"]),
                 "n_realisations": cfg.n_realisations, "n_test_realisations": int(test["stats"].shape[1]),
                 "halo_catalogue": asdict(halo_cfg),
                 "n_bins": int(len(train["r"])), "r_range_mpc_h": [float(radial_bins()[0]), float(radial_bins()[-1])],
                 "param_names": list(PARAM_NAMES), "param_low": PARAM_LOW, "param_high": PARAM_HIGH,
                 "simulator_s_per_realisation_during_generation": float(train["seconds"]),
                 "kappa_mapping": "kappa = tan(pi mu / 2) (halotools)"},
        "config": asdict(cfg), "seeds": seeds,
        "summary_median_rel_err": summary,
        "summary_calibration": {**calib_summary, "nominal": {"within_1sigma": NOMINAL_1SIGMA, "within_2sigma": 0.954}},
        "per_seed": [strip(r) for r in per_seed],
        "speed": speed,
        "inverse": {k: v for k, v in inverse.items() if not k.startswith("_")},
    }
    # one claim family, Holm-adjusted together: accuracy, the same comparisons in units of the noise floor, calibration
    results["evidence"] = adjust(_evidence(per_seed, seeds, knn) + floor_evidence(per_seed, seeds, knn))
    results["noise_floor"] = noise_floor_summary(results, relative_error_floor(test["stats"]))
    results["models_per_seed"] = {s: sorted(r["err_over_scatter"]) for s, r in zip(seeds, per_seed)}
    # learn.tasks.iaemu.tuning's runs, when the cache holds them
    pilot_check = pilot_check_table(CHECK_EPOCHS, out_dir / PILOT_CACHE.name, (cfg.paper_batch_size, cfg.paper_lr))
    if pilot_check is not None:
        results = attach_pilot_check(results, pilot_check, out_dir)
    if cfg.price_full_width:  # one epoch at each width: the paper's full configuration priced on this machine
        fit_idx = np.setdiff1d(np.arange(len(z_train)), val_idx)
        results["paper_epoch_cost"] = paper_epoch_cost(cfg, train["theta"][fit_idx], z_train[fit_idx],
                                                       train["theta"][val_idx], z_train[val_idx])
    r0 = per_seed[0]
    shown = "paper" if "paper" in r0["_preds"] else "ensemble"
    plot_curves(out_dir / "iaemu_curves.png", train["r"], test, z_train_norm, r0["_preds"][shown], label=shown)
    plot_uncertainty(out_dir / "iaemu_uncertainty.png", r0["_z"],
                     {m: (r0["epistemic_std"][m]["_in"], r0["epistemic_std"][m]["_out"]) for m in r0["_z"]})
    plot_accuracy(out_dir / "iaemu_accuracy.png", summary,
                  {m: {s: [r["err_over_scatter_vs_floor"]["ratio_to_floor"][m][s] for r in per_seed
                           if m in r["err_over_scatter"]] for s in STAT_NAMES} for m in summary},
                  results["noise_floor"]["test_target_realisations"])
    plot_inverse(out_dir / "iaemu_inverse.png", inverse["_fits"])
    return results


def main(argv: list[str] | None = None) -> None:
    """Seed worker: ``python -m symgym.learn.tasks.iaemu.task --seeds 0 2 4 [--parts baselines]`` trains and caches
    those seeds' parts (default config; ``--paper-width``/``--paper-epochs`` train the paper model at another size,
    cached under that size's key); ``symgym task iaemu`` then evaluates and assembles them without retraining."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out-dir", default="results")
    parser.add_argument("--paper-width", type=float, default=None,
                        help="paper model width (default: the config's); 1.0 is the paper's")
    parser.add_argument("--paper-epochs", type=int, default=None,
                        help="paper model epochs (default: the config's); 500 is the paper's")
    args = parser.parse_args(argv)
    for flag, value in (("--paper-width", args.paper_width), ("--paper-epochs", args.paper_epochs)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be > 0, got {value}")
    torch.set_num_threads(1)
    cfg, cache = IAEmuConfig(), Path(args.out_dir) / "cache"
    cfg = replace(cfg, **{k: v for k, v in (("paper_width", args.paper_width), ("paper_epochs", args.paper_epochs))
                          if v is not None})
    train = load_training_set(cfg, cache)
    _, z_train = standardised_targets(train)
    for s in args.seeds:  # seed s is the s-th seed of the default run (which starts at seed 0)
        for part in args.parts:
            path = seed_cache_path(cfg, s, Path(args.out_dir), part)
            if path.exists():
                continue
            t0 = time.process_time()
            save_torch(train_part(cfg, s, part, train, z_train, checkpoint=partial_path(path)), path)
            print(f"iaemu seed {s} {part}: {time.process_time() - t0:.0f} CPU-s", flush=True)


if __name__ == "__main__":
    main()
