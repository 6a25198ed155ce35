"""``symgym report SWEEP_OR_SPEC``: aggregate a sweep's trial summaries into ``OUT/NAME.json`` and PNGs.

Aggregates come from rliable (Agarwal et al., 2021): per group of trials (every grid cell but the seed) the
interquartile mean (IQM) of each metric over seeds with a stratified-bootstrap 95% CI; the probability of
improvement of each claim's method over its baseline; performance profiles of the first metric; learning
curves (IQM and CI band per point) where trials logged one. The claims of the spec become the results
JSON's ``evidence`` list (:func:`symgym.learn.evidence.ledger.claim`: paired per-seed differences where method and
baseline share seeds) and ``--markdown`` prints it as the README's tables.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from symgym.learn.io import save_figure, write_json
from symgym.learn.evidence.ledger import claim, summarize
from symgym.learn.evidence.sweep import SweepSpec, expand, expand_claims, load_spec, select, trials_dir

#: bootstrap repetitions (arch resamples in a Python loop: 2000 keep a sweep's report to about a minute here)
BOOTSTRAP_REPS = 2_000
PROFILE_REPS = 500
#: a claim needs this many seeds (a side) before it can hold or fail
MIN_SEEDS_FOR_VERDICT = 3


def _rliable():
    from symgym.agents.registry import require

    require("rliable")
    import warnings

    from rliable import library as rly
    from rliable import metrics

    # rliable 1.2 hands arch a RandomState, which arch 7 deprecates (still honoured: results are seeded)
    warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)

    return rly, metrics


def resolve_sweep(source: str, out: str | Path) -> SweepSpec:
    """A spec file, the name of a sweep already run under ``OUT/trials/``, or a shipped spec name
    (``NAME-quick`` for its quick grid)."""
    if Path(source).is_file():
        return load_spec(source)
    saved = trials_dir(out, source) / "sweep.json"
    if saved.is_file():
        return load_spec(json.loads(saved.read_text())["spec"])
    if source.endswith("-quick"):
        return load_spec(source[: -len("-quick")], quick=True)
    return load_spec(source)


def load_summaries(spec: SweepSpec, out: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The finished trials of ``spec`` (those in its current grid) and the keys still missing."""
    d = trials_dir(out, spec.name)
    found, missing = [], []
    for t in expand(spec, Path(out)):
        path = d / f"{t.key}.json"
        if path.is_file():
            found.append(json.loads(path.read_text()))
        else:
            missing.append(t.key)
    return found, missing


def iqm_with_ci(values: np.ndarray, reps: int | None = None, seed: int = 0) -> tuple[float, list[float]]:
    """IQM of a (seeds,) or (seeds, tasks) array and rliable's percentile stratified-bootstrap 95% CI."""
    rly, metrics = _rliable()
    reps = reps or BOOTSTRAP_REPS
    scores = np.asarray(values, dtype=np.float64)
    scores = scores[:, None] if scores.ndim == 1 else scores
    point, ci = rly.get_interval_estimates({"x": scores}, lambda x: np.array([metrics.aggregate_iqm(x)]),
                                           reps=reps, random_state=np.random.RandomState(seed))
    return float(point["x"][0]), [float(ci["x"][0, 0]), float(ci["x"][1, 0])]


def probability_of_improvement(method: np.ndarray, baseline: np.ndarray, higher_is_better: bool = True,
                               reps: int | None = None, seed: int = 0) -> tuple[float, list[float]]:
    """P(a method run beats a baseline run) with its bootstrap 95% CI (rliable)."""
    rly, metrics = _rliable()
    reps = reps or BOOTSTRAP_REPS
    sign = 1.0 if higher_is_better else -1.0
    x = sign * np.asarray(method, np.float64)[:, None]
    y = sign * np.asarray(baseline, np.float64)[:, None]
    point, ci = rly.get_interval_estimates({"p": [x, y]}, metrics.probability_of_improvement, reps=reps,
                                           random_state=np.random.RandomState(seed))
    return float(np.ravel(point["p"])[0]), [float(np.ravel(ci["p"])[0]), float(np.ravel(ci["p"])[1])]


def _values(summaries: list[dict], metric: str) -> tuple[list[int], list[float]]:
    pairs = sorted((s["labels"]["seed"], s["metrics"].get(metric)) for s in summaries)
    pairs = [(sd, v) for sd, v in pairs if v is not None and math.isfinite(v)]
    return [sd for sd, _ in pairs], [float(v) for _, v in pairs]


def _group_label(labels: dict[str, Any]) -> str:
    return " ".join(f"{v}" for a, v in labels.items() if a != "seed")


def aggregate(spec: SweepSpec, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per group (grid cell but the seed): IQM, 95% CI, mean, seeds and values of every metric."""
    groups: dict[str, dict[str, Any]] = {}
    for s in summaries:
        label = _group_label(s["labels"])
        groups.setdefault(label, {"labels": {a: v for a, v in s["labels"].items() if a != "seed"}, "members": []})
        groups[label]["members"].append(s)
    out = {}
    for label, g in groups.items():
        entry = {"labels": g["labels"], "metrics": {}}
        for m in spec.metrics:
            seeds, vals = _values(g["members"], m)
            if not vals:
                continue
            iqm, ci = iqm_with_ci(np.array(vals)) if len(vals) > 1 else (vals[0], [float("nan")] * 2)
            entry["metrics"][m] = {"iqm": iqm, "ci95": ci, "mean": float(np.mean(vals)), "n_seeds": len(vals),
                                   "seeds": seeds, "values": vals}
        out[label] = entry
    return out


def ledger(spec: SweepSpec, summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One :func:`claim` entry per (unrolled) claim of the spec, with rliable's IQMs and P(improvement)."""
    evidence = []
    for c in expand_claims(spec):
        sides = {}
        for side in ("method", "baseline"):
            sides[side] = _values(select(summaries, {**c["where"], spec.compare: c[side]}), c["metric"])
        (ms, mv), (bs, bv) = sides["method"], sides["baseline"]
        higher = bool(c.get("higher_is_better", True))
        where = {k: v for k, v in c["where"].items()}
        if not mv or not bv:
            evidence.append({"claim": c["claim"], "metric": c["metric"], "higher_is_better": higher,
                             "method": c["method"], "baseline": c["baseline"], "n_seeds": 0,
                             "method_value": None, "baseline_value": None,
                             "effect": c.get("effect", "difference"), "effect_value": None,
                             "ci95": [None, None], "holds": "inconclusive", "where": where,
                             "note": "no finished trials on one side yet"})
            continue
        entry = claim(c["claim"], c["metric"], c["method"], c["baseline"], mv, bv, higher_is_better=higher,
                      effect=c.get("effect", "difference"), method_seeds=ms, baseline_seeds=bs, where=where)
        if entry["n_seeds"] < MIN_SEEDS_FOR_VERDICT and entry["holds"] != "inconclusive":
            # a bootstrap over two seeds only spans the two values: no 95% interval, so no verdict
            entry["holds"] = "inconclusive"
            entry["note"] = f"fewer than {MIN_SEEDS_FOR_VERDICT} seeds: no verdict"
        if len(mv) > 1 and len(bv) > 1:
            _, metrics = _rliable()
            entry["method_iqm"] = float(metrics.aggregate_iqm(np.array(mv)[:, None]))
            entry["baseline_iqm"] = float(metrics.aggregate_iqm(np.array(bv)[:, None]))
            p, pci = probability_of_improvement(np.array(mv), np.array(bv), higher)
            entry["probability_of_improvement"], entry["probability_of_improvement_ci95"] = p, pci
        evidence.append(entry)
    return evidence


def performance_profiles(spec: SweepSpec, summaries: list[dict[str, Any]], metric: str, points: int = 41):
    """rliable score-distribution profiles of ``metric`` per compared method, runs pooled over other cells."""
    rly, _ = _rliable()
    by_method: dict[str, dict[str, list[float]]] = {}
    for s in summaries:
        v = s["metrics"].get(metric)
        if v is None or not math.isfinite(v):
            continue
        task = _group_label({a: x for a, x in s["labels"].items() if a != spec.compare})
        by_method.setdefault(str(s["labels"][spec.compare]), {}).setdefault(task, []).append(float(v))
    tasks = sorted(set.intersection(*[set(t) for t in by_method.values()])) if by_method else []
    if not tasks:
        return None
    n = min(len(by_method[m][t]) for m in by_method for t in tasks)
    if n < 2:
        return None
    scores = {m: np.array([[by_method[m][t][i] for t in tasks] for i in range(n)]) for m in by_method}
    lo = min(float(x.min()) for x in scores.values())
    hi = max(float(x.max()) for x in scores.values())
    taus = np.linspace(lo, hi if hi > lo else lo + 1.0, points)
    profiles, cis = rly.create_performance_profile(scores, taus, reps=PROFILE_REPS)
    return {"metric": metric, "tau": taus.tolist(), "seeds_per_task": n, "tasks": tasks,
            "profiles": {m: np.asarray(p).tolist() for m, p in profiles.items()},
            "ci95": {m: np.asarray(c).tolist() for m, c in cis.items()}}


def curves(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """IQM and 95% CI band, per point, of the training success curves of each group (where logged)."""
    rly, metrics = _rliable()
    grouped: dict[str, list[dict]] = {}
    for s in summaries:
        if "curve" in s:
            grouped.setdefault(_group_label(s["labels"]), []).append(s["curve"])
    out = {}
    for label, cs in grouped.items():
        steps = cs[0]["steps"]
        rows = np.array([np.nan_to_num(np.asarray(c["success"], float), nan=0.0) for c in cs
                         if c["steps"] == steps])
        if len(rows) < 2:
            out[label] = {"steps": steps, "iqm": rows[0].tolist(), "ci95": None, "n_seeds": len(rows)}
            continue
        point, ci = rly.get_interval_estimates(
            {"c": rows}, lambda x: np.array([metrics.aggregate_iqm(x[:, j]) for j in range(x.shape[1])]),
            reps=PROFILE_REPS, random_state=np.random.RandomState(0))
        out[label] = {"steps": steps, "iqm": point["c"].tolist(), "ci95": ci["c"].tolist(), "n_seeds": len(rows)}
    return out


def build_report(spec: SweepSpec, out: str | Path = "results") -> dict[str, Any]:
    summaries, missing = load_summaries(spec, out)
    if not summaries:
        raise ValueError(f"sweep {spec.name!r} has no finished trials under {trials_dir(out, spec.name)}; "
                         f"run: symgym sweep {spec.source}")
    evidence = ledger(spec, summaries)
    return {"sweep": spec.name, "description": spec.description, "source": spec.source,
            "trials": {"finished": len(summaries), "missing": len(missing), "missing_keys": missing},
            "metrics": spec.metrics, "compare": spec.compare, "groups": aggregate(spec, summaries),
            "performance_profile": performance_profiles(spec, summaries, spec.metrics[0]),
            "curves": curves(summaries), "evidence": evidence, "evidence_summary": summarize(evidence),
            "statistics": {"aggregate": "IQM (rliable)", "ci": "percentile stratified bootstrap, 95%",
                           "reps": BOOTSTRAP_REPS, "profile_reps": PROFILE_REPS, "claims": "symgym.learn.evidence.ledger.claim (paired where seeds match)"}}


def plot_report(report: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    """``NAME.png`` (IQM and CI per group and metric), ``NAME_profile.png``, ``NAME_curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    metrics, groups = report["metrics"], report["groups"]
    labels = sorted(groups)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.35 * len(labels) + 1.6),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, g in enumerate(labels):
            e = groups[g]["metrics"].get(m)
            if e is None:
                continue
            lo, hi = e["ci95"]
            if lo is not None and math.isfinite(lo):
                ax.plot([lo, hi], [i, i], color="C0", lw=3, alpha=0.5)
            ax.plot(e["iqm"], i, "o", color="C0")
            ax.plot(e["values"], [i] * len(e["values"]), "|", color="k", alpha=0.5)
        ax.set_yticks(range(len(labels)), labels if ax is axes[0, 0] else [""] * len(labels), fontsize=7)
        ax.set(title=f"{m} (IQM, 95% CI)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / f"{name}.png"))
    prof = report.get("performance_profile")
    if prof:
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        tau = np.array(prof["tau"])
        for i, (m, p) in enumerate(prof["profiles"].items()):
            ax.plot(tau, p, color=f"C{i}", label=m)
            ci = np.array(prof["ci95"][m])
            ax.fill_between(tau, ci[0], ci[1], color=f"C{i}", alpha=0.2)
        ax.set(xlabel=f"{prof['metric']} threshold tau", ylabel="fraction of runs > tau",
               title=f"performance profile ({prof['seeds_per_task']} seeds x {len(prof['tasks'])} cells)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"{name}_profile.png"))
    if report.get("curves"):
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for i, (g, c) in enumerate(sorted(report["curves"].items())):
            ax.plot(c["steps"], c["iqm"], color=f"C{i % 10}", label=f"{g} ({c['n_seeds']})")
            if c["ci95"] is not None:
                ax.fill_between(c["steps"], c["ci95"][0], c["ci95"][1], color=f"C{i % 10}", alpha=0.15)
        ax.set(xlabel="env steps", ylabel="training success (IQM, 95% CI)", ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"{name}_curves.png"))
    return paths


def sweep_and_report(name: str, out_dir: str | Path = "results", quick: bool = False, seed: int = 0,
                     log=print, **sweep_kwargs) -> dict[str, Any]:
    """What ``symgym bench NAME`` runs for a benchmark ported to a sweep spec: the sweep (resuming), then the
    report, whose PNGs go to ``out_dir``; the bench runner writes the returned dict to ``out_dir/NAME.json``.
    ``seed`` shifts every seed of the grid."""
    from symgym.learn.evidence.sweep import run_sweep

    spec = load_spec(name, quick=quick)
    if seed:
        raw = copy.deepcopy(spec.raw)
        raw["grid"]["seed"] = [s + seed for s in raw["grid"].get("seed", [0])]
        raw["name"] = f"{spec.name}-seed{seed}"
        spec = load_spec(raw)
    run = run_sweep(spec, out=out_dir, log=log, **sweep_kwargs)
    report = build_report(spec, out_dir)
    report["plots"] = [str(p) for p in plot_report(report, Path(out_dir), name)]
    report["sweep_run"] = run
    return report


# -- markdown ---------------------------------------------------------------------------------------
def _fmt(x: Any, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = float(x)
    s = f"{x:+.3g}" if signed else f"{x:.3g}"
    return f"{x:+.0f}" if signed and abs(x) >= 1000 else f"{x:.0f}" if abs(x) >= 1000 else s


def ledger_markdown(report: dict[str, Any]) -> str:
    """The README's tables for one results JSON: the claims ledger, then IQMs per group."""
    name = report["sweep"]
    lines = [f"Claims ledger of sweep `{name}` ({report['trials']['finished']} trials finished, "
             f"{report['trials']['missing']} missing; `symgym report {name} --markdown`):", "",
             "| claim | metric | seeds | method | baseline | effect | 95% CI | holds |",
             "|---|---|---|---|---|---|---|---|"]
    for e in report["evidence"]:
        arrow = "higher" if e["higher_is_better"] else "lower"
        lo, hi = e["ci95"]
        verdict = {True: "yes", False: "no"}.get(e["holds"], "inconclusive") if isinstance(e["holds"], bool) \
            else "inconclusive"
        lines.append(f"| {e['claim']} | {e['metric']} ({arrow} is better) | {e['n_seeds']} | "
                     f"{e['method']} {_fmt(e['method_value'])} | {e['baseline']} {_fmt(e['baseline_value'])} | "
                     f"{e['effect']} {_fmt(e['effect_value'], signed=e['effect'] == 'difference')} | "
                     f"[{_fmt(lo)}, {_fmt(hi)}] | {verdict} |")
    metrics = report["metrics"]
    lines += ["", "| group | " + " | ".join(f"{m} IQM [95% CI]" for m in metrics) + " | seeds |",
              "|---|" + "---|" * len(metrics) + "---|"]
    for g in sorted(report["groups"]):
        ms = report["groups"][g]["metrics"]
        cells = []
        for m in metrics:
            e = ms.get(m)
            cells.append("n/a" if e is None else f"{_fmt(e['iqm'])} [{_fmt(e['ci95'][0])}, {_fmt(e['ci95'][1])}]")
        n = max((e["n_seeds"] for e in ms.values()), default=0)
        lines.append(f"| {g} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines) + "\n"


def report_main(args) -> int:
    spec = resolve_sweep(args.sweep, args.out)
    report = build_report(spec, args.out)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report["plots"] = [str(p) for p in plot_report(report, out_dir, spec.name)]
    path = out_dir / f"{spec.name}.json"
    if path.is_file():  # keep what a bench added beside the report (e.g. mppi's planner equivariance, throughput)
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            previous = {}
        report = {**{k: v for k, v in previous.items() if k not in report}, **report}
    write_json(path, report)
    if args.markdown:
        print(ledger_markdown(report), end="")
    else:
        s = report["evidence_summary"]
        print(f"{spec.name}: {report['trials']['finished']} trials ({report['trials']['missing']} missing); "
              f"claims: {s['holds']} hold, {s['fails']} fail, {s['inconclusive']} inconclusive; "
              f"results: {out_dir / (spec.name + '.json')}")
    return 0
