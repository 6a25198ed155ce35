"""Graded symmetry breaking for the approx-sac study (issue #29): the effect of relaxation against how much each env
breaks the symmetry, measured in one metric.

* :func:`measured_breaks`: per env cell (an env id and its kwargs: SymPush-v0, SymPushWind-v0 at wind 0.1 / 0.3 /
  0.5, SymPushObstacle-v0, PandaPush-v0), the task-space break of
  :func:`symgym.learn.bench.equivariance.check_task_space`: ``|obs(g.s, g.a) - rho(g) obs(s, a)|`` in observation
  units over a contact-rich action sequence, averaged over start states and then over random O(2) elements. The
  same metric on the planar and the arm envs, so their breaks share an axis (the full-state metric of
  ``results/equivariance.json`` does not exist for the arm).
* :func:`graded_effects`: per cell and agent pair (approx-sac against equi-sac, sac, sac-aug and its frozen
  control), the mean paired difference in ``success_auc`` over the seeds both sides finished, with a 95% paired-t
  interval. Cells come from the ``approx-sac`` sweep (default wind 0.3) and ``approx-sac-graded`` (wind 0.1, 0.5).
* :func:`plot_graded`: effect against break, one line per pair, interval bars.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: (label, env id, env kwargs) of every cell on the graded axis, in order of the sweeps' priority
CELLS = (("SymPush-v0", "SymPush-v0", {}), ("SymPushWind-v0 wind=0.1", "SymPushWind-v0", {"wind": 0.1}),
         ("SymPushWind-v0", "SymPushWind-v0", {}), ("SymPushWind-v0 wind=0.5", "SymPushWind-v0", {"wind": 0.5}),
         ("SymPushObstacle-v0", "SymPushObstacle-v0", {}), ("PandaPush-v0", "PandaPush-v0", {}))
#: (method, baseline) pairs plotted against the break
PAIRS = (("approx-sac", "equi-sac"), ("approx-sac", "sac"), ("approx-sac", "sac-aug"),
         ("approx-sac", "approx-sac-frozen"))
SWEEPS = ("approx-sac", "approx-sac-graded")


def measured_breaks(seed: int = 0, quick: bool = False) -> dict[str, dict[str, Any]]:
    """``{cell label: {"break": mean task-space obs error, "break_max": worst element, ...}}``."""
    from symgym.learn.bench.equivariance import check_task_space

    n_random, steps, starts = (2, 10, 1) if quick else (8, 40, 4)
    out = {}
    for label, env_id, kwargs in CELLS:
        r = check_task_space(env_id, seed, n_random, steps, n_starts=starts, env_kwargs=kwargs)
        means = [v["obs_error"]["mean"] for v in r["per_element"].values()]
        out[label] = {"env": env_id, "env_kwargs": kwargs, "break": float(np.mean(means)),
                      "break_max": float(r["max_error"]), "elements": len(means), "start_states": starts,
                      "steps": steps}
    return out


def _cell_label(params: dict[str, Any]) -> str:
    kwargs = params.get("env_kwargs") or {}
    return params["env"] + "".join(f" {k}={v}" for k, v in sorted(kwargs.items()))


def _auc_by_cell(out_dir: Path) -> dict[str, dict[str, dict[int, float]]]:
    """``{cell: {method: {seed: success_auc}}}`` from the finished trials of :data:`SWEEPS`."""
    table: dict[str, dict[str, dict[int, float]]] = {}
    for sweep in SWEEPS:
        for path in sorted((out_dir / "trials" / sweep).glob("*.json")):
            if path.name == "sweep.json":
                continue
            s = json.loads(path.read_text())
            value = s["metrics"].get("success_auc")
            if value is None:
                continue
            table.setdefault(_cell_label(s["params"]), {}).setdefault(s["labels"]["method"], {})[
                int(s["labels"]["seed"])] = float(value)
    return table


def graded_effects(out_dir: str | Path, breaks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (cell, pair) with at least two paired seeds: mean difference, 95% paired-t interval, seeds."""
    from scipy import stats

    table = _auc_by_cell(Path(out_dir))
    rows = []
    for label, *_ in CELLS:
        methods = table.get(label, {})
        for method, baseline in PAIRS:
            seeds = sorted(set(methods.get(method, {})) & set(methods.get(baseline, {})))
            if len(seeds) < 2:
                continue
            d = np.array([methods[method][s] - methods[baseline][s] for s in seeds])
            half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
            rows.append({"cell": label, "method": method, "baseline": baseline, "seeds": seeds,
                         "break": breaks.get(label, {}).get("break"), "effect": float(d.mean()),
                         "ci95": [float(d.mean() - half), float(d.mean() + half)]})
    return rows


def plot_graded(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symgym.learn.io import save_figure

    cells = sorted({(r["cell"], r["break"]) for r in rows if r["break"] is not None}, key=lambda c: c[1])
    fig, axes = plt.subplots(1, len(PAIRS), figsize=(3.1 * len(PAIRS), 3.8), sharey=True, squeeze=False)
    drawn = False
    for ax, (method, baseline) in zip(axes[0], PAIRS):
        pts = {r["cell"]: r for r in rows if r["method"] == method and r["baseline"] == baseline
               and r["break"] is not None}
        # the wind family (SymPush is its wind-0 member) is one continuum: joined by a line; other envs stand alone
        wind = sorted((r["break"], r["effect"]) for c, r in pts.items() if c.startswith(("SymPush-", "SymPushWind")))
        if len(wind) > 1:
            ax.plot(*zip(*wind), color="tab:blue", lw=0.8, alpha=0.6)
        for cell, r in pts.items():
            lo, hi = r["ci95"]
            colour = "tab:blue" if cell.startswith(("SymPush-", "SymPushWind")) else "tab:orange"
            ax.errorbar([r["break"]], [r["effect"]], yerr=[[r["effect"] - lo], [hi - r["effect"]]], marker="o",
                        ls="none", capsize=3, color=colour, ms=4 + len(r["seeds"]) / 2)
            drawn = True
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks([b for _, b in cells])
        ax.set_xticklabels([f"{c.replace('-v0', '').replace('SymPushWind wind=', 'wind ')}  {b:.2f}"
                            for c, b in cells], rotation=90, fontsize=6)
        ax.set_xlim(-0.05, max([b for _, b in cells] or [1.0]) + 0.05)
        ax.set_title(f"{method} - {baseline}", fontsize=9)
    axes[0][0].set_ylabel("difference in success AUC\n(95% paired-t CI; bigger marker: more seeds)")
    fig.suptitle("approx-sac against each baseline, by how much the env breaks O(2)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.text(0.5, 0.01, "measured break (x): mean task-space |obs(g.s, g.a) - g.obs(s, a)| (obs units); "
             "blue: SymPush and its wind family, orange: obstacle, Panda", ha="center", fontsize=8)
    if not drawn:
        axes[0][0].text(0.5, 0.5, "no cell with two paired seeds yet", ha="center", transform=axes[0][0].transAxes)
    return save_figure(fig, path)


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Breaks of every cell, effects from the finished trials, the PNG; JSON written by the bench runner."""
    breaks = measured_breaks(seed, quick)
    rows = graded_effects(out_dir, breaks)
    plot_graded(rows, Path(out_dir) / "sac_graded.png")
    return {"metric": "success_auc difference, paired by seed (95% paired-t CI)",
            "break_metric": "mean over start states and random O(2) elements of max_t task-space obs error",
            "breaks": breaks, "effects": rows}
