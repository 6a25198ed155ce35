"""The claims ledger: one entry per claim, with its interval method, raw and adjusted p-values and a reasoned verdict.

Every results JSON carries an ``evidence`` list of :func:`claim` entries (see docs/design.md, "Evidence"). An entry
says that *method* beats *baseline* on one metric over seeds:

* ``effect="difference"``: method - baseline. Paired by seed when both sides ran the same seeds: a Student t
  interval on the per-seed differences (df n-1); otherwise Welch's t interval. No effect is 0.
* ``effect="ratio"``: mean(method) / mean(baseline), with Fieller's interval (exact under normality for paired
  seeds, Welch degrees of freedom when unpaired). No effect is 1. Its p-value is that of the difference test:
  the ratio is 1 exactly when the difference is 0, and Fieller's interval excludes 1 exactly when that test
  rejects (paired case).

Where the data have no spread (every paired difference equal, or both sides constant) a t statistic is 0 or
unbounded; the p-value is then the exact permutation test's (:func:`exact_p`), whose floor at five paired seeds is
0.0625: a 0/1 outcome that differs the same way on every seed is not significant at five seeds, as it should not be.

Why not the percentile bootstrap this module used before: over five seeds there are only 126 distinct resamples,
and its 95% interval of a mean covers the truth about 84% of the time on normal data (``tests/test_ledger.py``
simulates both). The t-intervals hold their level at n = 5 under normal seed-to-seed noise; they are the
textbook choice at this n (BCa needs more seeds than five to estimate its acceleration).

p-values are **two-sided** (a significant effect in the wrong direction makes the claim false, not merely not
shown). :func:`adjust` applies Holm–Bonferroni across a sweep's claim family; ``holds`` uses the adjusted value:

* ``True`` / ``False``: adjusted p < alpha and the effect (and the whole interval) on the claimed / other side;
* ``"inconclusive"``: adjusted p >= alpha;
* ``"untestable"``: every value on both sides sits at the same bound of the metric (saturated: all successes 1.0,
  all 0.0, or a censored time never reached by anyone), so the data cannot tell the sides apart;
* ``"underpowered"``: fewer than :data:`MIN_SEEDS` seeds on a side (no verdict, whatever the p-value).

Every entry carries a ``reason``. **Censored metrics** (a time to a threshold, recorded as the budget when never
reached) are compared on the restricted mean time (each run's time capped at the budget: the mean of the recorded
values), as a difference, never as a ratio; the entry's ``censored`` block gives each side's fraction of seeds
reaching the threshold and its restricted mean. This module needs only numpy and scipy, so every task can write
entries; ``symgym report`` adds rliable's aggregates (IQM, performance profiles) on top.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import numpy as np
from scipy import stats

Effect = Literal["difference", "ratio"]
LEVEL = 0.95
ALPHA = 0.05
#: fewer seeds than this on a side: "underpowered", no verdict
MIN_SEEDS = 5
VERDICTS = (True, False, "inconclusive", "untestable", "underpowered")


# -- intervals and tests ----------------------------------------------------------------------------------
def paired_t(d: np.ndarray, level: float = LEVEL) -> tuple[tuple[float, float], float]:
    """Student t interval of mean(d) (df n-1) and the two-sided p-value of mean(d) = 0."""
    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:  # no seed-to-seed variation: t is 0 or unbounded, so the sign-flip test decides (see exact_p)
        return (mean, mean), exact_p(d)
    se = sd / math.sqrt(n)
    q = stats.t.ppf(0.5 + level / 2, n - 1)
    p = 2 * stats.t.sf(abs(mean) / se, n - 1)
    return (mean - q * se, mean + q * se), float(p)


def exact_p(m: np.ndarray, b: np.ndarray | None = None) -> float:
    """Two-sided exact permutation p-value of no difference, for data with no spread, where a t statistic is 0 or
    unbounded: paired differences ``m`` (``b`` None) by flipping the signs of every seed's difference, two samples
    by reassigning the pooled values to the sides. Its floor is the test's own: ``2 / 2**n`` for ``n`` paired seeds
    (0.0625 at five), ``2 / C(n_m + n_b, n_m)`` for equal unpaired sides, so 0/1 outcomes that differ the same way
    on every seed get the p-value their count supports, not 0."""
    if b is None:
        if not np.any(m):
            return 1.0
        res = stats.permutation_test((m,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                     alternative="two-sided")
    else:
        if np.mean(m) == np.mean(b):
            return 1.0
        res = stats.permutation_test((m, b), lambda x, y: np.mean(x) - np.mean(y), permutation_type="independent",
                                     n_resamples=np.inf, alternative="two-sided")
    return float(min(1.0, res.pvalue))


def welch_t(m: np.ndarray, b: np.ndarray, level: float = LEVEL) -> tuple[tuple[float, float], float]:
    """Welch's t interval of mean(m) - mean(b) (Satterthwaite df) and its two-sided p-value."""
    diff = float(m.mean() - b.mean())
    if m.std(ddof=1) == 0.0 and b.std(ddof=1) == 0.0:
        return (diff, diff), exact_p(m, b)
    res = stats.ttest_ind(m, b, equal_var=False)
    ci = res.confidence_interval(level)
    return (float(ci.low), float(ci.high)), float(res.pvalue)


def fieller(m: np.ndarray, b: np.ndarray, paired: bool, level: float = LEVEL) -> tuple[float, float]:
    """Fieller's interval for mean(m) / mean(b): the ratios rho whose t-test of mean(m) - rho mean(b) = 0 does
    not reject. Unbounded (``-inf, inf``) when mean(b) is not itself distinguishable from 0."""
    am, ab = float(m.mean()), float(b.mean())
    if paired:
        n = m.size
        cov = np.cov(m, b, ddof=1)
        vmm, vbb, vmb, df = cov[0, 0] / n, cov[1, 1] / n, cov[0, 1] / n, n - 1
    else:
        vmm, vbb, vmb = m.var(ddof=1) / m.size, b.var(ddof=1) / b.size, 0.0
        # Welch-Satterthwaite df of mean(m) - rho mean(b) at the point estimate
        rho = am / ab if ab != 0 else 0.0
        num = (vmm + rho ** 2 * vbb) ** 2
        den = vmm ** 2 / (m.size - 1) + (rho ** 2 * vbb) ** 2 / (b.size - 1)
        df = num / den if den > 0 else m.size + b.size - 2
    q = stats.t.ppf(0.5 + level / 2, df) ** 2
    a2 = ab ** 2 - q * vbb
    b1 = am * ab - q * vmb
    c0 = am ** 2 - q * vmm
    disc = b1 ** 2 - a2 * c0
    if a2 <= 0 or disc < 0:
        return float("-inf"), float("inf")
    root = math.sqrt(disc)
    return (b1 - root) / a2, (b1 + root) / a2


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values; ``None`` (no test possible) counts as p = 1 in the family size."""
    p = np.array([1.0 if v is None else v for v in p_values], dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return [None if v is None else float(a) for v, a in zip(p_values, out)]


# -- entries ----------------------------------------------------------------------------------------------
def _saturated(m: np.ndarray, b: np.ndarray, bounds: Sequence[float] | None) -> float | None:
    """The bound every value on both sides sits at, if any."""
    if bounds is None:
        return None
    for bound in bounds:
        if bound is not None and np.all(m == bound) and np.all(b == bound):
            return float(bound)
    return None


def _decide(e: dict[str, Any], alpha: float = ALPHA) -> tuple[bool | str, str]:
    """Verdict and reason of an entry from its seeds, saturation, interval and (adjusted) p-value."""
    n_m, n_b = e["n_method"], e["n_baseline"]
    if min(n_m, n_b) < e.get("min_seeds", MIN_SEEDS):
        return "underpowered", (f"{min(n_m, n_b)} seeds on the {'method' if n_m <= n_b else 'baseline'} side; "
                                f"a verdict needs at least {e.get('min_seeds', MIN_SEEDS)} a side")
    if e.get("saturated_at") is not None:
        return "untestable", (f"saturated: every run on both sides scored {e['saturated_at']:g}, the metric's "
                              f"bound, so the data cannot separate them")
    p = e["p_adjusted"]
    null = 0.0 if e["effect"] == "difference" else 1.0
    lo = -math.inf if e["ci95"][0] is None else e["ci95"][0]  # null: unbounded (Fieller) or no interval
    hi = math.inf if e["ci95"][1] is None else e["ci95"][1]
    better_above = e["higher_is_better"]
    if p is None or not math.isfinite(p):
        return "inconclusive", "no test possible"
    if p >= alpha:
        return "inconclusive", (f"adjusted p = {p:.3g} >= {alpha:g} ({e['adjustment']}); "
                                f"raw p = {e['p_value']:.3g}, interval [{lo:.4g}, {hi:.4g}]")
    above = lo > null
    below = hi < null
    if not (above or below):  # the adjusted test rejects but the interval spans no effect: cannot happen for t
        return "inconclusive", f"adjusted p = {p:.3g} but the {e['interval']} interval [{lo:.4g}, {hi:.4g}] spans {null:g}"
    good = above == better_above
    side = "in the claimed direction" if good else "against the claim"
    return good, (f"effect {e['effect_value']:.4g} {side}: adjusted p = {p:.3g} < {alpha:g} ({e['adjustment']}), "
                  f"interval [{lo:.4g}, {hi:.4g}] excludes {null:g}")


def claim(text: str, metric: str, method: str, baseline: str, method_values: Sequence[float],
          baseline_values: Sequence[float], higher_is_better: bool = True, effect: Effect = "difference",
          method_seeds: Sequence[int] | None = None, baseline_seeds: Sequence[int] | None = None,
          aggregate: str = "mean", bounds: Sequence[float] | None = None, censoring: dict[str, Any] | None = None,
          min_seeds: int = MIN_SEEDS, **extra: Any) -> dict[str, Any]:
    """One ledger entry: the claim that ``method`` is better than ``baseline`` on ``metric``.

    ``method_seeds``/``baseline_seeds`` name the seeds behind each value; where both are given and share at least
    two seeds the values are matched by seed (paired). ``bounds`` are the metric's attainable extremes (e.g.
    ``(0, 1)`` for a success rate): all values of both sides at one bound make the claim untestable.
    ``censoring`` marks a censored time: ``{"budget": B, "method_reached": [bool per value],
    "baseline_reached": [...]}``; the comparison is then the difference of restricted mean times. Until
    :func:`adjust` runs over a family, ``p_adjusted`` is the raw p-value (a family of one).
    """
    if effect not in ("difference", "ratio"):
        raise ValueError(f"effect must be 'difference' or 'ratio', got {effect!r}")
    m = np.asarray(method_values, dtype=np.float64)
    b = np.asarray(baseline_values, dtype=np.float64)
    if m.size == 0 or b.size == 0:
        raise ValueError(f"claim {text!r}: no values for {'method' if m.size == 0 else 'baseline'}")
    reached_m = reached_b = None
    if censoring is not None:
        reached_m = np.asarray(censoring["method_reached"], bool)
        reached_b = np.asarray(censoring["baseline_reached"], bool)
    paired = False
    if method_seeds is not None and baseline_seeds is not None:
        common = sorted(set(method_seeds) & set(baseline_seeds))
        if len(common) >= 2:
            mi = {s: i for i, s in enumerate(method_seeds)}
            bi = {s: i for i, s in enumerate(baseline_seeds)}
            im, ib = [mi[s] for s in common], [bi[s] for s in common]
            m, b = m[im], b[ib]
            if censoring is not None:
                reached_m, reached_b = reached_m[im], reached_b[ib]
            paired = True
    requested = effect
    note = None
    if censoring is not None:
        budget = float(censoring["budget"])
        bounds = (budget,)  # everyone censored at the budget on both sides: nothing to compare
        if effect == "ratio":
            effect, note = "difference", "censored metric: compared as a difference of restricted means, not a ratio"
    n_seeds = int(m.size if paired else min(m.size, b.size))
    entry: dict[str, Any] = {
        "claim": text, "metric": metric, "higher_is_better": bool(higher_is_better),
        "method": method, "baseline": baseline, "n_seeds": n_seeds, "n_method": int(m.size),
        "n_baseline": int(b.size), "method_value": float(m.mean()), "baseline_value": float(b.mean()),
        "aggregate": aggregate if censoring is None else "restricted mean (censored at the budget)",
        "effect": effect, "paired": paired, "min_seeds": int(min_seeds)}
    pct = f"{LEVEL:.0%}"
    if effect == "difference":
        entry["effect_value"] = float(m.mean() - b.mean())
        if min(m.size, b.size) < 2:
            ci, p, method_name = (float("nan"), float("nan")), None, "none (fewer than 2 seeds a side)"
        elif paired:
            ci, p = paired_t(m - b)
            method_name = f"paired t, {pct}"
        else:
            ci, p = welch_t(m, b)
            method_name = f"Welch t, {pct}"
    else:
        entry["effect_value"] = float(m.mean() / b.mean()) if b.mean() != 0 else float("nan")
        if min(m.size, b.size) < 2:
            ci, p, method_name = (float("nan"), float("nan")), None, "none (fewer than 2 seeds a side)"
        else:
            ci = fieller(m, b, paired)
            # the ratio is 1 exactly when the difference is 0: one test for both
            p = (paired_t(m - b) if paired else welch_t(m, b))[1]
            method_name = f"Fieller ({'paired' if paired else 'Welch df'}), {pct}"
    # strict JSON: an unbounded (Fieller) or missing interval end is null, not Infinity/NaN
    entry.update({"interval": method_name, "ci95": [float(x) if math.isfinite(x) else None for x in ci],
                  "test": ("paired t-test" if paired else "Welch t-test") + ", two-sided",
                  "p_value": p, "p_adjusted": p, "adjustment": "none (family of 1)",
                  "saturated_at": _saturated(m, b, bounds)})
    if bounds is not None:
        entry["bounds"] = [None if x is None else float(x) for x in bounds]
    if censoring is not None:
        entry["censored"] = {
            "budget": budget, "compared_on": "restricted mean time (capped at the budget), paired difference"
            if paired else "restricted mean time (capped at the budget), Welch difference",
            "method_reached": float(reached_m.mean()), "baseline_reached": float(reached_b.mean()),
            "method_restricted_mean": float(np.minimum(m, budget).mean()),
            "baseline_restricted_mean": float(np.minimum(b, budget).mean())}
        if requested == "ratio":
            entry["requested_effect"] = "ratio"
    if note:
        entry["note"] = note
    entry["holds"], entry["reason"] = _decide(entry)
    entry.update(extra)
    return entry


def adjust(evidence: list[dict[str, Any]], alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Holm–Bonferroni across ``evidence`` (one sweep's claim family, in place); verdicts and reasons follow the
    adjusted p-values. Entries without a p-value (no data, one seed) still count in the family size."""
    adjusted = holm([e.get("p_value") for e in evidence])
    for e, p in zip(evidence, adjusted):
        e["p_adjusted"] = p
        e["adjustment"] = f"Holm over {len(evidence)} claims"
        if "n_method" in e:  # entries without data keep their verdict
            e["holds"], e["reason"] = _decide(e, alpha)
    return evidence


def summarize(evidence: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many claims hold, fail, are inconclusive, untestable or underpowered."""
    out = {"holds": 0, "fails": 0, "inconclusive": 0, "untestable": 0, "underpowered": 0}
    for e in evidence:
        h = e["holds"]
        out["holds" if h is True else "fails" if h is False else h if h in out else "inconclusive"] += 1
    return out
