"""``symgym report SWEEP_OR_SPEC``: aggregate a sweep's trial summaries into ``OUT/NAME.json`` and PNGs.

Aggregates come from rliable (Agarwal et al., 2021): per group of trials (every grid cell but the seed) the
interquartile mean (IQM) of each metric over seeds with a stratified-bootstrap 95% CI; the probability of
improvement of each claim's method over its baseline; performance profiles of the first metric; learning
curves (IQM and CI band per point) where trials logged one. These aggregates are descriptive: rliable's
percentile bootstrap over five seeds covers less than its nominal 95%. The claims of the spec become the results
JSON's ``evidence`` list (:func:`symgym.learn.evidence.ledger.claim`: t-intervals on paired per-seed differences,
Fieller for ratios, two-sided t-tests, Holm across the sweep's claims, saturated and censored metrics handled)
and ``--markdown`` prints it as the README's tables (:mod:`symgym.learn.evidence.report_markdown`).

Provenance: each trial summary records the code it ran (the files and their hashes,
:mod:`symgym.learn.evidence.provenance`). A claim whose trials ran different code (a file both recorded, with two
hashes) is refused (one-line error) unless ``allow_mixed_code``; trials recorded before provenance existed
("unrecorded") are allowed but flagged. The report lists every stale trial (code missing or no longer on disk);
``symgym sweep SPEC --rerun-stale`` re-runs exactly those.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from symgym.learn.io import save_figure, write_json
from symgym.learn.evidence import ledger as ledger_mod
from symgym.learn.evidence.ledger import adjust, claim, summarize
from symgym.learn.evidence.provenance import code_conflicts, fingerprint_of
from symgym.learn.evidence.report_markdown import ledger_markdown
from symgym.learn.evidence.sweep import SweepSpec, expand, expand_claims, load_spec, select, stale_keys, trials_dir

#: bootstrap repetitions (arch resamples in a Python loop: 2000 keep a sweep's report to about a minute here)
BOOTSTRAP_REPS = 2_000
PROFILE_REPS = 500
#: metrics recorded as the budget when a threshold is never reached (older summaries lack a "censoring" block)
CENSORED_METRICS = ("steps_to_success",)


def _rliable():
    from symgym.agents.registry import require

    require("rliable")
    import warnings

    from rliable import library as rly
    from rliable import metrics

    # rliable 1.2 hands arch a RandomState, which arch 7 deprecates (still honoured: results are seeded)
    warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)

    return rly, metrics


@contextlib.contextmanager
def _seeded(seed: int):
    """rliable 1.2 resamples with ``np.random.choice`` (the global generator) and ignores the ``random_state``
    it hands arch, so its intervals changed on every report: seed the global generator around each call (and
    put it back as it was)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def resolve_sweep(source: str, out: str | Path) -> SweepSpec:
    """A spec file, a results JSON (its embedded spec as run), the name of a sweep already run under
    ``OUT/trials/``, or a shipped spec name (``NAME-quick`` for its quick grid)."""
    if Path(source).is_file():
        if Path(source).suffix == ".json":
            data = json.loads(Path(source).read_text())
            if isinstance(data, dict) and "evidence" in data:
                if "spec" not in data:
                    raise ValueError(f"{source} is a report from before reports embedded their spec; "
                                     f"report the sweep by name or spec file")
                return load_spec(data["spec"])
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
    with _seeded(seed):
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
    with _seeded(seed):
        point, ci = rly.get_interval_estimates({"p": [x, y]}, metrics.probability_of_improvement, reps=reps,
                                               random_state=np.random.RandomState(seed))
    return float(np.ravel(point["p"])[0]), [float(np.ravel(ci["p"])[0]), float(np.ravel(ci["p"])[1])]


def metric_bounds(spec: SweepSpec, metric: str) -> tuple[float | None, float | None] | None:
    """The spec's declared bounds of ``metric``, else [0, 1] for success rates and fractions."""
    declared = (spec.raw.get("bounds") or {}).get(metric)
    if declared is not None:
        return tuple(declared)
    base = metric.split(".")[0]
    return (0.0, 1.0) if "success" in base and not base.startswith("steps_to") else None


def censoring_of(summary: dict[str, Any], metric: str) -> dict[str, Any] | None:
    """``{"budget", "reached"}`` of a censored metric in one summary. Summaries from before trials recorded it
    are read from their curve: the threshold is reached (and held) exactly when the last curve point is at or
    above it (see ``trials._first_crossing``)."""
    recorded = (summary.get("censoring") or {}).get(metric)
    if recorded is not None:
        return recorded
    if metric not in CENSORED_METRICS or "curve" not in summary:
        return None
    last = summary["curve"]["success"][-1]
    threshold = summary["params"].get("success_threshold")
    reached = last is not None and threshold is not None and math.isfinite(last) and last >= threshold
    return {"budget": int(summary["params"]["steps"]), "reached": bool(reached)}


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


def _side(summaries: list[dict], metric: str) -> tuple[list[int], list[float], list[dict | None], list[str | None]]:
    """Seeds, values, censoring and code fingerprints of one side of a claim, ordered by seed."""
    rows = sorted((s["labels"]["seed"], s) for s in summaries)
    rows = [(sd, s) for sd, s in rows if s["metrics"].get(metric) is not None and math.isfinite(s["metrics"][metric])]
    return ([sd for sd, _ in rows], [float(s["metrics"][metric]) for _, s in rows],
            [censoring_of(s, metric) for _, s in rows], [s.get("provenance") for _, s in rows])


def _claim_provenance(text: str, provs: list[dict | None], allow_mixed: bool) -> dict[str, Any]:
    fps = [(p or {}).get("fingerprint") for p in provs]
    recorded = sorted({f for f in fps if f is not None})
    conflicts = code_conflicts(provs)
    if conflicts and not allow_mixed:
        raise ValueError(f"claim {text!r} compares trials that ran different code ({', '.join(conflicts[:3])}"
                         f"{' ...' if len(conflicts) > 3 else ''}); re-run the stale ones (symgym sweep SPEC "
                         f"--rerun-stale) or pass --allow-mixed-code")
    return {"fingerprints": recorded, "unrecorded": sum(f is None for f in fps), "mixed": bool(conflicts),
            **({"differing": conflicts} if conflicts else {})}


def ledger(spec: SweepSpec, summaries: list[dict[str, Any]], allow_mixed_code: bool = False,
           rliable_extras: bool = True) -> list[dict[str, Any]]:
    """One :func:`claim` entry per (unrolled) claim of the spec, Holm-adjusted across them, with rliable's IQMs
    and P(improvement) (``rliable_extras``). Raises ValueError for a claim mixing code fingerprints unless
    ``allow_mixed_code``."""
    evidence = []
    for c in expand_claims(spec):
        sides = {}
        for side in ("method", "baseline"):
            sides[side] = _side(select(summaries, {**c["where"], spec.compare: c[side]}), c["metric"])
        (ms, mv, mc, mf), (bs, bv, bc, bf) = sides["method"], sides["baseline"]
        higher = bool(c.get("higher_is_better", True))
        where = {k: v for k, v in c["where"].items()}
        if not mv or not bv:
            evidence.append({"claim": c["claim"], "metric": c["metric"], "higher_is_better": higher,
                             "method": c["method"], "baseline": c["baseline"], "n_seeds": 0,
                             "method_value": None, "baseline_value": None,
                             "effect": c.get("effect", "difference"), "effect_value": None, "interval": "none",
                             "ci95": [None, None], "p_value": None, "p_adjusted": None, "holds": "underpowered",
                             "reason": "no finished trials on one side yet", "where": where})
            continue
        prov = _claim_provenance(c["claim"], mf + bf, allow_mixed_code)
        censoring = None
        if all(x is not None for x in mc + bc):
            censoring = {"budget": max(x["budget"] for x in mc + bc),
                         "method_reached": [x["reached"] for x in mc], "baseline_reached": [x["reached"] for x in bc]}
        entry = claim(c["claim"], c["metric"], c["method"], c["baseline"], mv, bv, higher_is_better=higher,
                      effect=c.get("effect", "difference"), method_seeds=ms, baseline_seeds=bs,
                      bounds=metric_bounds(spec, c["metric"]), censoring=censoring, where=where, provenance=prov)
        if rliable_extras and len(mv) > 1 and len(bv) > 1:
            _, metrics = _rliable()
            entry["method_iqm"] = float(metrics.aggregate_iqm(np.array(mv)[:, None]))
            entry["baseline_iqm"] = float(metrics.aggregate_iqm(np.array(bv)[:, None]))
            p, pci = probability_of_improvement(np.array(mv), np.array(bv), higher)
            entry["probability_of_improvement"], entry["probability_of_improvement_ci95"] = p, pci
        evidence.append(entry)
    adjust(evidence)
    for e in evidence:
        if (e.get("provenance") or {}).get("mixed"):
            files = e["provenance"].get("differing", [])
            e["reason"] += (f"; mixes code fingerprints (--allow-mixed-code): {', '.join(files[:4])}"
                            f"{' ...' if len(files) > 4 else ''} differ between its trials")
        elif (e.get("provenance") or {}).get("unrecorded"):
            e["reason"] += f"; {e['provenance']['unrecorded']} trials ran before provenance was recorded"
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
    with _seeded(0):
        profiles, cis = rly.create_performance_profile(scores, taus, reps=PROFILE_REPS)
    return {"metric": metric, "tau": taus.tolist(), "seeds_per_task": n, "tasks": tasks,
            "profiles": {m: np.asarray(p).tolist() for m, p in profiles.items()},
            "ci95": {m: np.asarray(c).tolist() for m, c in cis.items()}}


def curves(summaries: list[dict[str, Any]], compare: str | None = None) -> dict[str, Any]:
    """IQM and 95% CI band, per point, of the training success curves of each group (where logged). With
    ``compare`` (the spec's method axis) each group also names its method and its cell (the other labels), so a plot
    can draw one panel per cell."""
    rly, metrics = _rliable()
    grouped: dict[str, list[dict]] = {}
    parts: dict[str, dict[str, str]] = {}
    for s in summaries:
        if "curve" in s:
            label = _group_label(s["labels"])
            grouped.setdefault(label, []).append(s["curve"])
            if compare is not None and compare in s["labels"]:
                rest = {a: v for a, v in s["labels"].items() if a not in ("seed", compare)}
                parts[label] = {"method": str(s["labels"][compare]), "cell": " ".join(f"{v}" for v in rest.values())}
    out = {}
    for label, cs in grouped.items():
        out[label] = dict(parts.get(label, {}))
        steps = cs[0]["steps"]
        rows = np.array([np.nan_to_num(np.asarray(c["success"], float), nan=0.0) for c in cs
                         if c["steps"] == steps])
        if len(rows) < 2:
            out[label].update({"steps": steps, "iqm": rows[0].tolist(), "ci95": None, "n_seeds": len(rows)})
            continue
        with _seeded(0):
            point, ci = rly.get_interval_estimates(
                {"c": rows}, lambda x: np.array([metrics.aggregate_iqm(x[:, j]) for j in range(x.shape[1])]),
                reps=PROFILE_REPS, random_state=np.random.RandomState(0))
        out[label].update({"steps": steps, "iqm": point["c"].tolist(), "ci95": ci["c"].tolist(), "n_seeds": len(rows)})
    return out


def statistics_block(n_claims: int) -> dict[str, Any]:
    """What the report computed, by name (the JSON's ``statistics``)."""
    return {
        "groups": {"aggregate": "IQM (rliable)", "ci": "percentile stratified bootstrap, 95% (rliable; "
                   "descriptive: under-covers at 5 seeds)", "reps": BOOTSTRAP_REPS, "seed": 0},
        "probability_of_improvement": {"ci": "percentile stratified bootstrap, 95% (rliable)",
                                       "reps": BOOTSTRAP_REPS, "seed": 0},
        "performance_profile": {"ci": "percentile stratified bootstrap (rliable)", "reps": PROFILE_REPS, "seed": 0},
        "curves": {"aggregate": "IQM per point (rliable)", "reps": PROFILE_REPS, "seed": 0},
        "claims": {"function": "symgym.learn.evidence.ledger.claim",
                   "difference": "paired t interval on per-seed differences (df n-1); Welch t when unpaired",
                   "ratio": "Fieller interval (paired; Welch df when unpaired); p-value of the difference test",
                   "censored": "restricted mean time (capped at the budget) as a difference; fraction reaching "
                               "the threshold per side",
                   "level": ledger_mod.LEVEL, "test": "t-test, two-sided",
                   "multiplicity": f"Holm-Bonferroni over the sweep's {n_claims} claims", "alpha": ledger_mod.ALPHA,
                   "min_seeds": ledger_mod.MIN_SEEDS,
                   "verdicts": "true/false: adjusted p < alpha, sign of the effect; inconclusive: adjusted p >= "
                               "alpha; untestable: every run of both sides at one bound of the metric; "
                               "underpowered: fewer than min_seeds seeds a side"}}


def provenance_block(spec: SweepSpec, summaries: list[dict[str, Any]], out: str | Path,
                     allow_mixed_code: bool) -> dict[str, Any]:
    from symgym.learn.evidence.provenance import compute_fingerprint, current_file_hashes

    files = current_file_hashes()  # the code on disk, i.e. what a re-run would run
    counts: dict[str, int] = {}
    for s in summaries:
        key = fingerprint_of(s) or "unrecorded"
        counts[key] = counts.get(key, 0) + 1
    stale = stale_keys(out, spec, files)
    return {"current": compute_fingerprint(), "fingerprints": counts, "stale": sorted(stale),
            "unrecorded": sorted(k for k, fp in stale.items() if fp is None), "allow_mixed_code": allow_mixed_code,
            "rerun": f"symgym sweep {spec.name} --rerun-stale"}


def build_report(spec: SweepSpec, out: str | Path = "results", allow_mixed_code: bool = False) -> dict[str, Any]:
    summaries, missing = load_summaries(spec, out)
    if not summaries:
        raise ValueError(f"sweep {spec.name!r} has no finished trials under {trials_dir(out, spec.name)}; "
                         f"run: symgym sweep {spec.source}")
    evidence = ledger(spec, summaries, allow_mixed_code)
    # the spec as run rides along, so that the ledger recomputes from the trial files even after the shipped
    # spec (or the trials directory's sweep.json) moved on to a new design
    return {"sweep": spec.name, "description": spec.description, "source": spec.source, "spec": spec.raw,
            "trials": {"finished": len(summaries), "missing": len(missing), "missing_keys": missing},
            "metrics": spec.metrics, "compare": spec.compare, "groups": aggregate(spec, summaries),
            "performance_profile": performance_profiles(spec, summaries, spec.metrics[0]),
            "curves": curves(summaries, spec.compare), "evidence": evidence, "evidence_summary": summarize(evidence),
            "statistics": statistics_block(len(evidence)),
            "provenance": provenance_block(spec, summaries, out, allow_mixed_code)}


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
        paths.append(_plot_curves(report["curves"], out_dir / f"{name}_curves.png"))
    return paths


def _plot_curves(curves_: dict[str, Any], path: Path) -> Path:
    """Training-success curves (IQM, 95% CI band): one panel per cell, one colour per method (the same colour in
    every panel); a single panel with every group when the groups do not name their cells."""
    import matplotlib.pyplot as plt

    cells = sorted({c.get("cell", "") for c in curves_.values()})
    methods = sorted({c.get("method", g) for g, c in curves_.items()})
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    cols = min(3, len(cells))
    rows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False, sharey=True)
    for ax, cell in zip(axes.flat, cells):
        for g, c in sorted(curves_.items()):
            if c.get("cell", "") != cell:
                continue
            m = c.get("method", g)
            ax.plot(c["steps"], c["iqm"], color=colour[m], label=f"{m} ({c['n_seeds']})")
            if c["ci95"] is not None:
                ax.fill_between(c["steps"], c["ci95"][0], c["ci95"][1], color=colour[m], alpha=0.15)
        ax.set(title=cell or None, xlabel="env steps", ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("training success (IQM, 95% CI)")
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def sweep_and_report(name: str, out_dir: str | Path = "results", quick: bool = False, seed: int = 0,
                     log=print, sweep: bool = True, plot_name: str | None = None, allow_mixed_code: bool = False,
                     **sweep_kwargs) -> dict[str, Any]:
    """What ``symgym bench NAME`` runs for a benchmark ported to a sweep spec: the sweep (resuming), then the
    report, whose PNGs go to ``out_dir``; the bench runner writes the returned dict to ``out_dir/NAME.json``.
    ``seed`` shifts every seed of the grid. ``sweep=False`` reports the trials finished so far (a sweep that runs
    for many sittings) without running the missing ones. ``plot_name``: the PNGs' stem (default ``name``), e.g. the
    bench's name when its JSON is not named after its spec. ``allow_mixed_code``: flag claims whose trials ran
    different code (each entry lists the differing files) instead of refusing."""
    from symgym.learn.evidence.sweep import run_sweep

    spec = load_spec(name, quick=quick)
    if seed:
        raw = copy.deepcopy(spec.raw)
        raw["grid"]["seed"] = [s + seed for s in raw["grid"].get("seed", [0])]
        raw["name"] = f"{spec.name}-seed{seed}"
        spec = load_spec(raw)
    run = run_sweep(spec, out=out_dir, log=log, **sweep_kwargs) if sweep else None
    report = build_report(spec, out_dir, allow_mixed_code=allow_mixed_code)
    report["plots"] = [str(p) for p in plot_report(report, Path(out_dir), plot_name or name)]
    report["sweep_run"] = run
    return report


# -- command line -----------------------------------------------------------------------------------
def report_main(args) -> int:
    spec = resolve_sweep(args.sweep, args.out)
    report = build_report(spec, args.out, allow_mixed_code=getattr(args, "allow_mixed_code", False))
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
              f"claims: {s['holds']} hold, {s['fails']} fail, {s['inconclusive']} inconclusive, "
              f"{s['untestable']} untestable, {s['underpowered']} underpowered; "
              f"{len(report['provenance']['stale'])} stale trials; results: {out_dir / (spec.name + '.json')}")
    return 0
