"""The claims ledger: one entry per claim, with seeds, a bootstrap 95% CI and whether it holds.

Every results JSON carries an ``evidence`` list of :func:`claim` entries (see DESIGN.md, "Evidence").
An entry compares a *method* with a *baseline* on one metric over seeds:

* ``effect="difference"``: method - baseline (paired per seed when both ran the same seeds, else the
  difference of means); no effect is 0.
* ``effect="ratio"``: mean(method) / mean(baseline); no effect is 1.

``holds`` is ``True`` when the whole CI lies on the side the claim predicts, ``False`` when the whole CI
lies on the other side, and ``"inconclusive"`` when it spans no effect. With fewer than two seeds a side
there is no CI and the claim is inconclusive. This module needs only numpy, so every task can write
entries; ``symgym report`` adds rliable's aggregates (IQM, performance profiles) on top.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

Effect = Literal["difference", "ratio"]
N_BOOTSTRAP = 10_000


def bootstrap_ci(stat, samples: Sequence[np.ndarray], n_boot: int = N_BOOTSTRAP, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat(*resampled)``; each array in ``samples`` is resampled on its own
    (pass one array of paired differences to resample pairs together)."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    draws = np.empty(n_boot)
    for b in range(n_boot):
        draws[b] = stat(*[a[rng.integers(len(a), size=len(a))] for a in arrays])
    lo, hi = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _verdict(ci: tuple[float, float], null: float, better_above: bool) -> bool | str:
    lo, hi = ci
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if lo > null:
        return better_above
    if hi < null:
        return not better_above
    return "inconclusive"


def claim(text: str, metric: str, method: str, baseline: str, method_values: Sequence[float],
          baseline_values: Sequence[float], higher_is_better: bool = True, effect: Effect = "difference",
          method_seeds: Sequence[int] | None = None, baseline_seeds: Sequence[int] | None = None,
          aggregate: str = "mean", seed: int = 0, **extra: Any) -> dict[str, Any]:
    """One ledger entry. The claim is that ``method`` is better than ``baseline`` on ``metric``.

    ``method_seeds``/``baseline_seeds`` name the seeds behind each value; where both are given the values
    are matched by seed and a ``difference`` is bootstrapped over paired per-seed differences.
    """
    if effect not in ("difference", "ratio"):
        raise ValueError(f"effect must be 'difference' or 'ratio', got {effect!r}")
    m = np.asarray(method_values, dtype=np.float64)
    b = np.asarray(baseline_values, dtype=np.float64)
    if m.size == 0 or b.size == 0:
        raise ValueError(f"claim {text!r}: no values for {'method' if m.size == 0 else 'baseline'}")
    paired = False
    if method_seeds is not None and baseline_seeds is not None:
        common = sorted(set(method_seeds) & set(baseline_seeds))
        if len(common) >= 2:
            mi = {s: v for s, v in zip(method_seeds, m)}
            bi = {s: v for s, v in zip(baseline_seeds, b)}
            m = np.array([mi[s] for s in common])
            b = np.array([bi[s] for s in common])
            paired = True
    n_seeds = int(min(m.size, b.size))
    if effect == "difference":
        value = float(m.mean() - b.mean())
        if n_seeds < 2:
            ci = (float("nan"), float("nan"))
        elif paired:
            ci = bootstrap_ci(np.mean, [m - b], seed=seed)
        else:
            ci = bootstrap_ci(lambda x, y: x.mean() - y.mean(), [m, b], seed=seed)
        null = 0.0
    else:
        value = float(m.mean() / b.mean()) if b.mean() != 0 else float("nan")
        if n_seeds < 2:
            ci = (float("nan"), float("nan"))
        elif paired:
            idx = np.arange(m.size)
            ci = bootstrap_ci(lambda i: m[i.astype(int)].mean() / b[i.astype(int)].mean(), [idx], seed=seed)
        else:
            ci = bootstrap_ci(lambda x, y: x.mean() / y.mean(), [m, b], seed=seed)
        null = 1.0
    return {
        "claim": text, "metric": metric, "higher_is_better": bool(higher_is_better),
        "method": method, "baseline": baseline, "n_seeds": n_seeds,
        "method_value": float(m.mean()), "baseline_value": float(b.mean()), "aggregate": aggregate,
        "effect": effect, "effect_value": value, "paired": paired,
        "ci95": [ci[0], ci[1]], "holds": _verdict(ci, null, better_above=higher_is_better), **extra,
    }


def summarize(evidence: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many claims hold, fail and are inconclusive."""
    out = {"holds": 0, "fails": 0, "inconclusive": 0}
    for e in evidence:
        key = "holds" if e["holds"] is True else "fails" if e["holds"] is False else "inconclusive"
        out[key] += 1
    return out
