"""The noise floor of the IAEmu test targets, and every model scored against it.

Each held-out target is the mean of R simulator realisations, so even a perfect emulator (one that
predicts the true mean) misses it by the target's own standard error. Two floors follow:

- err/scatter (median |pred - target| / realisation scatter): closed form t_{0.75,R-1}/sqrt(R)
  (:func:`learn.tasks.iaemu.eval.err_over_scatter_floor`; 0.383 at R = 4, 0.121 at R = 32);
- median relative error: depends on each bin's signal-to-noise, so it is estimated by scoring the
  targets themselves perturbed by one draw of their standard error (:func:`relative_error_floor`).

A model's score in units of its floor (ratio; 1 = indistinguishable from perfect on these targets) or
its excess over it is what the ledger compares (:func:`floor_evidence`).
"""
from __future__ import annotations

import numpy as np

from symgym.learn.evidence.ledger import claim
from symgym.learn.tasks.iaemu.data import from_model_space, to_model_space
from symgym.learn.tasks.iaemu.eval import err_over_scatter_floor, model_values, relative_errors, scored_against_floor
from symgym.physics.galaxies import STAT_NAMES

#: a model is called "on the floor" when its err/scatter is within this factor of the perfect-emulator floor
FLOOR_TOLERANCE = 1.1
ACCURACY_KEYS = ("median_rel_err", "median_rel_err_significant_bins")


def relative_error_floor(stats: np.ndarray, n_draws: int = 8, seed: int = 0) -> dict[str, dict[str, float]]:
    """Median relative error a perfect emulator scores against targets that are means of R realisations.

    ``stats`` (P, R, 3, B) physical statistics. The perfect prediction differs from the R-mean target by
    the target's own error, drawn here as t_{R-1} s / sqrt(R) in model space (log(1 + xi) for xi, s the sample
    scatter of the R realisations: a Student t rather than a normal draw, because s itself is noisy at small R and
    under-states sigma more often than not); it is then scored exactly as the models are (:func:`relative_errors`,
    same significant-bin mask), and the medians are averaged over ``n_draws`` draws.
    """
    R = stats.shape[1]
    if R < 2:
        raise ValueError(f"need >= 2 realisations per target for a scatter, got {R}")
    y = to_model_space(stats)
    mean, scatter = y.mean(1), y.std(1, ddof=1)
    truth = from_model_space(mean)
    sem = stats.std(1, ddof=1) / np.sqrt(R)
    rng = np.random.default_rng(seed)
    draws = [relative_errors(from_model_space(mean + scatter / np.sqrt(R) * rng.standard_t(R - 1, mean.shape)),
                             truth, sem) for _ in range(n_draws)]
    out = {}
    for stat in STAT_NAMES:
        out[stat] = {}
        for key in ACCURACY_KEYS:
            vals = [d[stat][key] for d in draws if d[stat][key] is not None]
            out[stat][key] = float(np.mean(vals)) if vals else None
    return out


def target_realisations(results: dict) -> int:
    """Realisations behind each test target (results written before the split only name ``n_realisations``)."""
    data = results["data"]
    return int(data.get("n_test_realisations", data["n_realisations"]))


def noise_floor_summary(results: dict, rel_floor: dict | None = None) -> dict:
    """Per model and statistic: mean err/scatter over seeds beside the perfect-emulator floor of the test targets,
    its ratio to and excess over the floor, and (with ``rel_floor``) the median relative errors in floor units."""
    per_seed = results["per_seed"]
    R = target_realisations(results)
    floor = err_over_scatter_floor(R)
    models = per_seed[0]["err_over_scatter"]  # the first seed trains every model; later ones may skip the paper's
    mean = {m: {s: float(np.mean([r["err_over_scatter"][m][s] for r in per_seed if m in r["err_over_scatter"]]))
                for s in models[m]} for m in models}
    out = {"test_target_realisations": R, "err_over_scatter_floor": floor,
           "err_over_scatter_floor_at_4_realisations": err_over_scatter_floor(4),
           "err_over_scatter_mean": mean,
           "ratio_to_floor": {m: {s: v / floor for s, v in d.items()} for m, d in mean.items()},
           "excess_over_floor": {m: {s: v - floor for s, v in d.items()} for m, d in mean.items()},
           "note": "a perfect emulator scores the floor (ratio 1); the floor falls as 1/sqrt(R) with the "
                   "realisations behind each test target, so a model's own error shows once it is well above it"}
    if rel_floor is not None:
        summary = results["summary_median_rel_err"]
        out["median_rel_err_floor"] = rel_floor
        out["median_rel_err_ratio_to_floor"] = {
            m: {s: {k: (summary[m][s][k]["mean"] / rel_floor[s][k] if rel_floor[s][k] else None)
                    for k in ACCURACY_KEYS} for s in STAT_NAMES} for m in summary}
        out["median_rel_err_floor_note"] = ("estimated: the targets scored against themselves perturbed by one "
                                            "draw of their error (t_{R-1} x standard error), mean of 8 draws")
    return out


def _ratios(per_seed: list[dict], seeds: list[int], model: str, stat: str) -> tuple[list[float], list[int]]:
    """Per-seed ratios to the floor over the seeds that trained ``model``, and those seeds."""
    return model_values(per_seed, seeds, model, lambda r: r["err_over_scatter_vs_floor"]["ratio_to_floor"][model][stat])


def floor_evidence(per_seed: list[dict], seeds: list[int], knn: str) -> list[dict]:
    """Ledger entries on the floor basis: model pairs compared on err/scatter in units of the floor, and
    whether each emulator's err/scatter is within :data:`FLOOR_TOLERANCE` of the floor."""
    R = per_seed[0]["err_over_scatter_vs_floor"]["n_realisations"]
    ev = []
    for stat in ("xi", "omega"):
        metric = f"{stat} median |err|/scatter in units of the perfect-emulator floor ({R}-realisation targets)"
        for method, baseline in (("paper", "mse_mlp"), ("ensemble", "mse_mlp"), ("paper", "ensemble"),
                                 ("paper", knn)):
            (mv, ms), (bv, bs) = (_ratios(per_seed, seeds, m, stat) for m in (method, baseline))
            if not mv or not bv:  # a model that was not trained
                continue
            ev.append(claim(f"{method} is closer to the noise floor on {stat} than {baseline}", metric, method,
                            baseline, mv, bv, higher_is_better=False, method_seeds=ms, baseline_seeds=bs))
        for m in ("paper", "ensemble", "mse_mlp"):
            vals, _ = _ratios(per_seed, seeds, m, stat)
            if not vals:
                continue
            ev.append(claim(f"{m}: {stat} err/scatter is within {FLOOR_TOLERANCE:g}x the noise floor", metric, m,
                            f"floor_x{FLOOR_TOLERANCE:g}", vals, [FLOOR_TOLERANCE] * len(vals),
                            higher_is_better=False))
    return ev


def attach_noise_floor(path="results/iaemu.json") -> dict:
    """Add the floor (per seed and summarised) to a stored ``iaemu.json`` without retraining."""
    import json
    from pathlib import Path

    from symgym.learn.io import write_json

    results = json.loads(Path(path).read_text())
    R = target_realisations(results)
    for r in results["per_seed"]:
        r["err_over_scatter_vs_floor"] = scored_against_floor(r["err_over_scatter"], R)
    results["noise_floor"] = noise_floor_summary(results)
    write_json(path, results)
    return results
