"""IAEmu evaluation: accuracy, calibration, epistemic recalibration, k-NN baseline, out-of-box parameters."""
from __future__ import annotations

import numpy as np

from symgym.learn.tasks.iaemu.data import ALIGN, PARAM_HIGH, PARAM_LOW
from symgym.physics.galaxies import STAT_NAMES

NOMINAL_1SIGMA, NOMINAL_2SIGMA = 0.683, 0.954


def err_over_scatter_floor(n_realisations: int) -> float:
    """What a *perfect* emulator (predicting the true mean) scores on median |pred - target| / scatter when each
    target is the mean of ``n_realisations`` Gaussian realisations and scatter is their sample std (ddof 1):
    (mean_R - mu) / (s_R / sqrt(R)) is Student t with R - 1 df, so the median is t_{0.75, R-1} / sqrt(R)
    (0.383 at R = 4, 0.173 at 16, 0.121 at 32). No model can score below it; differences near it are noise."""
    from scipy import stats

    if n_realisations < 2:
        raise ValueError(f"n_realisations must be >= 2 for a scatter, got {n_realisations}")
    return float(stats.t.ppf(0.75, n_realisations - 1) / np.sqrt(n_realisations))


def scored_against_floor(err_over_scatter: dict[str, dict[str, float]], n_realisations: int) -> dict[str, object]:
    """Every model's err/scatter beside the floor: its ratio to the floor and its excess over it."""
    floor = err_over_scatter_floor(n_realisations)
    return {"n_realisations": n_realisations, "floor": floor,
            "ratio_to_floor": {m: {s: v / floor for s, v in d.items()} for m, d in err_over_scatter.items()},
            "excess_over_floor": {m: {s: v - floor for s, v in d.items()} for m, d in err_over_scatter.items()}}


def relative_errors(pred: np.ndarray, truth: np.ndarray, sem: np.ndarray) -> dict[str, dict[str, float]]:
    """Median |pred - truth| / |truth| per statistic, over all bins and over bins where the
    truth differs from zero by more than two standard errors (omega and eta vanish at mu=0)."""
    out = {}
    for s, name in enumerate(STAT_NAMES):
        rel = np.abs(pred[:, s] - truth[:, s]) / np.maximum(np.abs(truth[:, s]), 1e-12)
        significant = np.abs(truth[:, s]) > 2.0 * sem[:, s]
        out[name] = {
            "median_rel_err": float(np.median(rel)),
            "median_rel_err_significant_bins": float(np.median(rel[significant])) if significant.any() else None,
            "fraction_significant_bins": float(significant.mean()),
        }
    return out


def coverage(z: np.ndarray) -> dict[str, dict[str, float]]:
    """Fraction of held-out realisations within 1 and 2 predicted sigma, per statistic (z: P, R, 3, B)."""
    return {name: {"within_1sigma": float((np.abs(z[:, :, s]) < 1).mean()),
                   "within_2sigma": float((np.abs(z[:, :, s]) < 2).mean())}
            for s, name in enumerate(STAT_NAMES)}


def epistemic_inflation(z: np.ndarray, pred: dict, target: float = 0.683) -> np.ndarray:
    """Per-statistic factor c >= 1 such that a fraction ``target`` of the (validation) realisations ``z``
    (P, R, 3, B) fall within one sigma of ``sqrt(aleatoric + c * epistemic)``.

    A small ensemble under-estimates its own error where data are scarce; scaling the epistemic
    variance on held-out validation data (never the test set) is a standard post-hoc recalibration.
    """
    resid = np.abs(z - pred["mean"][:, None])
    factors = []
    for s in range(z.shape[2]):
        a, e, r = pred["aleatoric"][:, None, s], pred["epistemic"][:, None, s], resid[:, :, s]

        def cover(c: float) -> float:
            return float((r < np.sqrt(a + c * e)).mean())

        lo, hi = 0.0, 12.0  # bisection in log10(c)
        if cover(1.0) >= target:
            factors.append(1.0)
            continue
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cover(10**mid) < target else (lo, mid)
        factors.append(10**hi)
    return np.array(factors)


def outside_params(n: int, rng: np.random.Generator, expand: float = 0.5) -> np.ndarray:
    """Parameter sets outside the training box (HOD dims widened by ``expand`` x width; mu stays in [-1, 1])."""
    width = PARAM_HIGH - PARAM_LOW
    low, high = PARAM_LOW - expand * width, PARAM_HIGH + expand * width
    low[ALIGN], high[ALIGN] = -1.0, 1.0
    low[1] = max(low[1], 0.02)  # sigma_log_m must stay positive
    out = np.empty((0, len(PARAM_LOW)))
    while len(out) < n:
        cand = rng.uniform(low, high, size=(4 * n, len(low)))
        inside = np.all((cand >= PARAM_LOW) & (cand <= PARAM_HIGH), axis=1)
        out = np.concatenate([out, cand[~inside]])
    return out[:n]


def calibration_error(z: np.ndarray) -> float:
    """Mean |empirical - nominal| coverage of the 1 and 2 sigma intervals over the statistics (z: P, R, 3, B)."""
    cov = coverage(z)
    return float(np.mean([abs(c["within_1sigma"] - NOMINAL_1SIGMA) + abs(c["within_2sigma"] - NOMINAL_2SIGMA)
                          for c in cov.values()]) / 2.0)


def knn_predict(train_theta: np.ndarray, train_y: np.ndarray, theta: np.ndarray, k: int) -> np.ndarray:
    """Inverse-distance-weighted k nearest neighbours in box-normalised parameter space."""
    scale = PARAM_HIGH - PARAM_LOW
    d = np.linalg.norm((theta[:, None] - train_theta[None]) / scale, axis=-1)
    nearest = np.argsort(d, axis=1)[:, :k]
    w = 1.0 / (np.take_along_axis(d, nearest, 1) + 1e-6)
    return np.einsum("pk,pk...->p...", w / w.sum(1, keepdims=True), train_y[nearest])


def model_values(per_seed: list[dict], seeds: list[int], model: str, get) -> tuple[list, list[int]]:
    """``get(record)`` over the seeds whose record holds ``model`` (the paper model may train on fewer seeds)."""
    kept = [(get(r), s) for r, s in zip(per_seed, seeds) if model in r["err_over_scatter"]]
    return [v for v, _ in kept], [s for _, s in kept]
