"""``symgym sweep SPEC.yaml``: a grid of trials on Ray Tune, resumable, one summary JSON per finished trial.

A spec (YAML) names the grid, the metrics and the claims it tests::

    name: sac                       # trial summaries go to OUT/trials/sac/, the report to OUT/sac.json
    trial: train-eval               # what one trial runs (symgym.learn.evidence.trials.TRIAL_KINDS)
    params: {steps: 15000, episodes: 20, env_kwargs: {success_radius: 0.08}}   # every trial
    grid:                           # the product of these axes; a mapping value is a named bundle of params
      method:
        - {name: sac, agent: sac, agent_kwargs: {net_arch: [64, 64]}}
        - {name: equi-sac, agent: equi-sac}
      env: [SymPush-v0, SymPushWind-v0]
      seed: [0, 1, 2, 3, 4]
    metrics: [success_rate, train_success]
    claims:                         # ledger entries ``symgym report`` computes
      - {claim: "equi-sac beats sac on {env}", for_each: [env], metric: train_success,
         method: equi-sac, baseline: sac}
    quick: {grid: {seed: [0, 1]}, params: {steps: 300}}   # --quick: a tiny grid (tests), sweep NAME-quick
    bounds: {mean_return: [null, 0]}  # attainable extremes of a metric (default [0, 1] for success metrics):
                                      # a claim whose runs all sit at one bound on both sides is untestable
    overrides:                      # params of the cells whose labels match (after the axes; in order)
      - {where: {env: SymPushWind-v0, method: equi-sac}, params: {agent_kwargs.learning_rate: 0.003}}

An override sets params per cell where an axis value cannot: a setting tuned per (env, method) pair, say. A cell it
does not match keeps its params, and so its key and any finished summary.

Everything in a spec is checked before Ray starts (unknown key, agent or env; non-integer seed; a claim on a
metric the spec does not record), each with a one-line error. Resuming: each finished trial leaves
``OUT/trials/NAME/KEY.json``; re-running the spec (or ``--resume``) runs only the trials without one, so a
sweep can finish over several sittings and machines. The key hashes the trial's parameters, so editing a spec
makes new trials instead of mixing old numbers in. A key does not hash the code: each summary records the
fingerprint of the code it ran (:mod:`symgym.learn.evidence.provenance`), and ``--rerun-stale`` re-runs the
finished trials whose fingerprint is missing or differs from the current code's.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symgym.learn.io import write_json
from symgym.learn.evidence.trials import DICT_PARAMS, REQUIRED, TRIAL_KINDS, TrialKind

SPEC_DIR = Path(__file__).parents[1] / "bench" / "specs"
SPEC_KEYS = ("name", "description", "trial", "grid", "params", "metrics", "claims", "compare", "quick", "bounds",
             "overrides")
START_ATTEMPTS = 3  # ray.init retries: Ray allows its raylet 30 s to register, too little on an overloaded box
CLAIM_KEYS = ("claim", "metric", "method", "baseline", "where", "for_each", "higher_is_better", "effect")


@dataclass
class Trial:
    sweep: str
    kind: str
    key: str
    labels: dict[str, Any]
    params: dict[str, Any]
    run_dir: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"sweep": self.sweep, "kind": self.kind, "key": self.key, "labels": self.labels,
                "params": self.params, "run_dir": self.run_dir}


@dataclass
class SweepSpec:
    name: str
    kind: TrialKind
    axes: list[tuple[str, list[Any]]]
    params: dict[str, Any]
    metrics: list[str]
    claims: list[dict[str, Any]]
    compare: str
    description: str = ""
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)

    def axis_names(self) -> list[str]:
        return [a for a, _ in self.axes]


# -- loading and checking -------------------------------------------------------------------------
def resolve_spec_path(source: str | Path) -> Path:
    """A spec file, or the name of a spec shipped in ``symgym/learn/bench/specs``."""
    path = Path(source)
    if path.is_file():
        return path
    shipped = SPEC_DIR / f"{source}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in SPEC_DIR.glob("*.yaml")))
    raise ValueError(f"no sweep spec {str(source)!r}: not a file and not a shipped spec ({known})")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_spec(source: str | Path | dict[str, Any], quick: bool = False) -> SweepSpec:
    """Read and check a spec (a path, a shipped name or an already-parsed mapping)."""
    import yaml

    if isinstance(source, dict):
        raw, where = copy.deepcopy(source), "<spec>"
    else:
        path = resolve_spec_path(source)
        where = str(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"spec {where} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"spec {where} must be a mapping of {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in spec {where}; known keys: {', '.join(SPEC_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"spec {where}: name must be a plain word (letters, digits, . _ -), got {name!r}")
    full_grid = raw.get("grid") if isinstance(raw.get("grid"), dict) else {}  # overrides name cells of the full grid
    if quick:
        q = raw.get("quick") or {}
        if not isinstance(q, dict) or set(q) - {"grid", "params"}:
            raise ValueError(f"spec {where}: quick must be a mapping with grid and/or params")
        raw = {**raw, "grid": {**(raw.get("grid") or {}), **(q.get("grid") or {})},
               "params": _merge(raw.get("params") or {}, q.get("params") or {}), "name": f"{name}-quick"}
    kind_name = raw.get("trial", "train-eval")
    if kind_name not in TRIAL_KINDS:
        raise ValueError(f"spec {where}: unknown trial kind {kind_name!r}; known: {', '.join(TRIAL_KINDS)}")
    kind = TRIAL_KINDS[kind_name]
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"spec {where}: params must be a mapping")
    for k in params:
        _check_param_key(k, kind, where, "params")
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"spec {where}: grid must be a non-empty mapping of axis -> list of values")
    axes = []
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"spec {where}: grid axis {axis!r} must be a non-empty list, got {values!r}")
        for v in values:
            if isinstance(v, dict):
                if "name" not in v:
                    raise ValueError(f"spec {where}: grid axis {axis!r}: a mapping value needs a name: {v!r}")
                for k in v:
                    if k != "name":
                        _check_param_key(k, kind, where, f"grid axis {axis!r}")
            else:
                _check_param_key(axis, kind, where, "grid", hint=" (or give mapping values with a name)")
        axes.append((str(axis), values))
    metrics = raw.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise ValueError(f"spec {where}: metrics must be a non-empty list of metric names")
    compare = raw.get("compare") or ("method" if "method" in grid else "agent")
    _check_bounds(raw.get("bounds"), [str(m) for m in metrics], where)
    known = {a: [*(full_grid.get(a) or []), *v] for a, v in axes}
    overrides = _check_overrides(raw.get("overrides"), known, kind, where)
    spec = SweepSpec(name=raw["name"], kind=kind, axes=axes, params=params, metrics=[str(m) for m in metrics],
                     claims=list(raw.get("claims") or []), compare=compare, description=raw.get("description", ""),
                     source=where, raw=raw, overrides=overrides)
    trials = expand(spec, Path("."))
    if quick:  # the tiny grid tests only the claims whose methods and cells it still has
        labels = {a: {t.labels[a] for t in trials} for a in trials[0].labels}
        spec.claims = [c for c in spec.claims if isinstance(c, dict)
                       and {c.get("method"), c.get("baseline")} <= labels.get(spec.compare, set())
                       and all(v in labels.get(a, ()) for a, v in (c.get("where") or {}).items())]
    _check_metrics(spec, trials)
    _check_claims(spec, trials)
    spec.raw = {**{k: v for k, v in raw.items() if k != "quick"}, "claims": spec.claims}  # as run (sweep.json)
    return spec


def _check_bounds(bounds: Any, metrics: list[str], where: str) -> None:
    if bounds is None:
        return
    if not isinstance(bounds, dict):
        raise ValueError(f"spec {where}: bounds must be a mapping of metric -> [low, high], got {bounds!r}")
    for m, b in bounds.items():
        if m not in metrics:
            raise ValueError(f"spec {where}: bounds for {m!r}, which is not among the spec's metrics")
        ok = isinstance(b, list) and len(b) == 2 and all(x is None or (isinstance(x, (int, float))
                                                                       and not isinstance(x, bool)) for x in b)
        if not ok:
            raise ValueError(f"spec {where}: bounds.{m} must be [low, high] (numbers or null), got {b!r}")


def _check_overrides(overrides: Any, axes: dict[str, list[Any]], kind: TrialKind, where: str) -> list[dict[str, Any]]:
    """The spec's ``overrides``: each a ``where`` (axis -> label of one of its values) and ``params`` to set."""
    if overrides is None:
        return []
    if not isinstance(overrides, list):
        raise ValueError(f"spec {where}: overrides must be a list of {{where: {{AXIS: LABEL}}, params: {{...}}}}")
    for i, o in enumerate(overrides):
        if not isinstance(o, dict) or set(o) != {"where", "params"} or not isinstance(o["where"], dict) \
                or not o["where"] or not isinstance(o["params"], dict) or not o["params"]:
            raise ValueError(f"spec {where}: overrides[{i}] must be {{where: {{AXIS: LABEL}}, params: {{...}}}}, "
                             f"got {o!r}")
        for axis, label in o["where"].items():
            labels = [v["name"] if isinstance(v, dict) else v for v in axes.get(axis, [])]
            if label not in labels:
                raise ValueError(f"spec {where}: overrides[{i}] matches no cell: {axis}={label!r} is not a value of "
                                 + (f"axis {axis!r} ({', '.join(map(str, labels))})" if axis in axes
                                    else f"an axis ({', '.join(axes)})"))
        for k in o["params"]:
            _check_param_key(k, kind, where, f"overrides[{i}]")
    return overrides


def _check_param_key(key: str, kind: TrialKind, where: str, context: str, hint: str = "") -> None:
    base, dot, _ = key.partition(".")
    if base not in kind.params or (dot and base not in DICT_PARAMS):
        raise ValueError(f"spec {where}: unknown key {key!r} in {context}{hint}; "
                         f"{kind.name} trials take {', '.join(kind.params)}")


def _set(params: dict[str, Any], key: str, value: Any) -> None:
    base, dot, sub = key.partition(".")
    if dot:
        params[base] = {**params.get(base, {}), sub: copy.deepcopy(value)}
    elif base in DICT_PARAMS and isinstance(value, dict):
        params[base] = _merge(params.get(base, {}), value)
    else:
        params[base] = copy.deepcopy(value)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _trial_key(labels: dict[str, Any], params: dict[str, Any]) -> str:
    parts = [f"s{v}" if a == "seed" else str(v) for a, v in labels.items()]
    readable = re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(parts))[:120]
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def expand(spec: SweepSpec, out: Path) -> list[Trial]:
    """Every cell of the grid as a checked :class:`Trial` (absolute run directories under ``out``)."""
    import gymnasium as gym

    import symgym.envs  # noqa: F401  (registers ids)
    from symgym.agents import AGENTS

    out = Path(out).resolve()
    defaults = {k: v for k, v in spec.kind.params.items()}
    trials, seen = [], {}
    for combo in itertools.product(*[values for _, values in spec.axes]):
        params = _merge({k: v for k, v in defaults.items() if v is not REQUIRED}, {})
        for k, v in spec.params.items():
            _set(params, k, v)
        labels: dict[str, Any] = {}
        for (axis, _), value in zip(spec.axes, combo):
            if isinstance(value, dict):
                for k, v in value.items():
                    if k != "name":
                        _set(params, k, v)
                labels[axis] = value["name"]
            else:
                _set(params, axis, value)
                labels[axis] = value
        for o in spec.overrides:
            if all(labels.get(a) == v for a, v in o["where"].items()):
                for k, v in o["params"].items():
                    _set(params, k, v)
        missing = [k for k, v in spec.kind.params.items() if v is REQUIRED and k not in params]
        if missing:
            raise ValueError(f"spec {spec.source}: trial {labels} has no {missing[0]!r} (set it in params or grid)")
        _check_values(spec, params, labels, AGENTS, gym.registry)
        labels.setdefault("seed", params["seed"])
        labels.setdefault(spec.compare, params.get(spec.compare))
        key = _trial_key(labels, params)
        if key in seen:
            raise ValueError(f"spec {spec.source}: two grid cells make the same trial {labels}")
        seen[key] = True
        params["cache"] = str(out / "cache")
        trials.append(Trial(spec.name, spec.kind.name, key, labels, params,
                            run_dir=str(out / "cache" / "sweeps" / spec.name / key)))
    return trials


def _check_values(spec: SweepSpec, params: dict[str, Any], labels: dict, agents, registry) -> None:
    where = f"spec {spec.source}"
    if "agent" in params and params["agent"] not in agents:
        raise ValueError(f"{where}: unknown agent {params['agent']!r}; known agents: {', '.join(sorted(agents))}")
    if "env" in params and params["env"] not in registry:
        raise ValueError(f"{where}: unknown env id {params['env']!r} (see `symgym envs`)")
    for k in ("seed", "eval_seed", "steps", "episodes", "curve_points"):
        if k in params and (not _is_int(params[k]) or params[k] < (1 if k in ("episodes", "curve_points") else 0)):
            raise ValueError(f"{where}: {k} must be a {'positive' if k in ('episodes', 'curve_points') else 'non-negative'}"
                             f" integer, got {params[k]!r} in trial {labels}")
    if params.get("demos") is not None and (not _is_int(params["demos"]) or params["demos"] < 1):
        raise ValueError(f"{where}: demos must be a positive integer (number of oracle demos), got {params['demos']!r}")
    for k in DICT_PARAMS:
        if k in params and not isinstance(params[k], dict):
            raise ValueError(f"{where}: {k} must be a mapping, got {params[k]!r}")
    for name, kw in params.get("eval_variants", {}).items():
        if not isinstance(kw, dict):
            raise ValueError(f"{where}: eval_variants.{name} must be a mapping of env kwargs, got {kw!r}")


def _check_metrics(spec: SweepSpec, trials: list[Trial]) -> None:
    variants = {v for t in trials for v in t.params.get("eval_variants", {})}
    for m in spec.metrics:
        base, dot, variant = m.partition(".")
        ok = base in spec.kind.metrics and (not dot or variant in variants)
        if not ok:
            raise ValueError(f"spec {spec.source}: unknown metric {m!r}; {spec.kind.name} trials record "
                             f"{', '.join(spec.kind.metrics)}" + (f" (+ .VARIANT for {sorted(variants)})"
                                                                  if variants else ""))


def expand_claims(spec: SweepSpec) -> list[dict[str, Any]]:
    """Claims with ``for_each`` unrolled over axis labels and ``{axis}`` placeholders filled."""
    out = []
    for c in spec.claims:
        each = c.get("for_each") or []
        each = [each] if isinstance(each, str) else list(each)
        label_lists = [[v["name"] if isinstance(v, dict) else v for v in dict(spec.axes)[a]] for a in each]
        for combo in itertools.product(*label_lists):
            fill = dict(zip(each, combo))
            where = {**(c.get("where") or {}), **fill}
            try:
                text = c["claim"].format(**{**where, "method": c["method"], "baseline": c["baseline"]})
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"spec {spec.source}: claim {c['claim']!r} has a placeholder {e} that is not "
                                 f"a for_each/where axis") from e
            out.append({**{k: v for k, v in c.items() if k != "for_each"}, "claim": text, "where": where})
    return out


def _check_claims(spec: SweepSpec, trials: list[Trial]) -> None:
    where = f"spec {spec.source}"
    labels = {a: {t.labels[a] for t in trials} for a in trials[0].labels}
    for i, c in enumerate(spec.claims):
        if not isinstance(c, dict):
            raise ValueError(f"{where}: claim {i} must be a mapping with {', '.join(CLAIM_KEYS)}")
        bad = sorted(set(c) - set(CLAIM_KEYS))
        if bad:
            raise ValueError(f"{where}: unknown key {bad[0]!r} in claim {i}; known: {', '.join(CLAIM_KEYS)}")
        for k in ("claim", "metric", "method", "baseline"):
            if k not in c:
                raise ValueError(f"{where}: claim {i} has no {k!r}")
        if c["metric"] not in spec.metrics:
            raise ValueError(f"{where}: claim {i} uses metric {c['metric']!r}, which is not among the spec's "
                             f"metrics ({', '.join(spec.metrics)})")
        if c.get("effect", "difference") not in ("difference", "ratio"):
            raise ValueError(f"{where}: claim {i}: effect must be 'difference' or 'ratio', got {c['effect']!r}")
        each = c.get("for_each") or []
        for a in ([each] if isinstance(each, str) else each):
            if a not in dict(spec.axes):
                raise ValueError(f"{where}: claim {i} loops over unknown axis {a!r}")
        for side in ("method", "baseline"):
            if c[side] not in labels[spec.compare]:
                raise ValueError(f"{where}: claim {i}: unknown {side} {c[side]!r}; {spec.compare} values: "
                                 f"{', '.join(map(str, sorted(labels[spec.compare], key=str)))}")
        for a, v in (c.get("where") or {}).items():
            if a not in labels or v not in labels[a]:
                raise ValueError(f"{where}: claim {i}: where {a}={v!r} matches no trial")
    for c in expand_claims(spec):
        for side in ("method", "baseline"):
            match = select(trials, {**c["where"], spec.compare: c[side]}, key=lambda t: t.labels)
            seeds = [t.labels["seed"] for t in match]
            if len(seeds) != len(set(seeds)):
                free = [a for a in labels if a not in c["where"] and a not in ("seed", spec.compare)
                        and len(labels[a]) > 1]
                raise ValueError(f"{where}: claim {c['claim']!r} matches several trials per seed; "
                                 f"pin {', '.join(free)} in where or for_each")


def select(items: list, where: dict[str, Any], key=lambda s: s["labels"]) -> list:
    return [x for x in items if all(key(x).get(a) == v for a, v in where.items())]


# -- running ----------------------------------------------------------------------------------------
def trials_dir(out: str | Path, sweep: str) -> Path:
    return Path(out).resolve() / "trials" / sweep


def finished_keys(out: str | Path, sweep: str) -> set[str]:
    d = trials_dir(out, sweep)
    return {p.stem for p in d.glob("*.json") if p.name != "sweep.json"} if d.is_dir() else set()


def stale_keys(out: str | Path, spec: SweepSpec, now: dict[str, str] | None = None) -> dict[str, str | None]:
    """Finished trials of ``spec`` whose recorded code is missing (``None``: recorded before provenance existed) or
    no longer on disk (:func:`~symgym.learn.evidence.provenance.is_current`; ``now``: the current file hashes),
    key -> recorded fingerprint."""
    from symgym.learn.evidence.provenance import current_file_hashes, is_current

    now = current_file_hashes() if now is None else now
    d, out_keys = trials_dir(out, spec.name), {}
    for t in expand(spec, Path(out)):
        path = d / f"{t.key}.json"
        if path.is_file():
            prov = json.loads(path.read_text()).get("provenance") or {}
            if not is_current(prov, now):
                out_keys[t.key] = prov.get("fingerprint")
    return out_keys


def _tune_trainable(config: dict[str, Any]) -> None:
    """What a Ray worker runs: one trial, its summary reported back to the driver (which writes it)."""
    import torch
    from ray import tune

    from symgym.learn.evidence.trials import run_trial

    torch.set_num_threads(1)
    summary = run_trial(config["trial"])
    summary["pid"] = os.getpid()  # which worker process ran it (the sweep-overhead bench checks its warm-up)
    tune.report({"summary_json": json.dumps(summary, default=str), "trial_key": summary["key"]})


def start_ray(address: str | None = None, num_cpus: int | None = None):
    """Attach to ``address`` (or ``$RAY_ADDRESS``), else start an embedded local Ray with one CPU per core."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from symgym.agents.registry import require

    ray = require("ray")
    require("ray.tune")
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = ({"address": address} if address else
              {"num_cpus": num_cpus or os.cpu_count() or 1, "include_dashboard": False})
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(log_to_driver=False, configure_logging=False, **kwargs)
            return ray
        except ConnectionError:
            raise
        except Exception as e:  # Ray gives up if its raylet has not registered within 30 s (overloaded machine)
            ray.shutdown()
            if attempt == START_ATTEMPTS:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise ConnectionError(f"could not start {where} after {START_ATTEMPTS} tries: "
                                      f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    return ray


def _storage_path(ray, storage: str | None, out: Path) -> str:
    if "://" in (storage or ""):
        return storage
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and storage is None:
        raise ValueError("this Ray cluster has several nodes: pass --storage with a shared file system path or an "
                         "object store URI (s3://, gs://); Ray 2.60 refuses a head-local storage path on multi-node "
                         "clusters")
    return str(Path(storage).resolve() if storage else out / "cache" / "tune")


def run_sweep(spec: SweepSpec, out: str | Path = "results", address: str | None = None, storage: str | None = None,
              max_concurrent: int | None = None, resume: bool = False, num_cpus: int | None = None,
              rerun_stale: bool = False, log=print) -> dict[str, Any]:
    """Run every trial of ``spec`` without a summary under ``OUT/trials/NAME/`` (and, with ``rerun_stale``, every
    finished one whose code fingerprint is missing or not the current code's); returns counts and errors."""
    out = Path(out).resolve()
    trials = expand(spec, out)
    done_dir = trials_dir(out, spec.name)
    done = finished_keys(out, spec.name)
    stale = set(stale_keys(out, spec)) if rerun_stale else set()
    done -= stale  # a stale summary is overwritten when its trial finishes again
    if resume and not done and not done_dir.is_dir():
        raise ValueError(f"nothing to resume: no trial summaries of sweep {spec.name!r} under {done_dir}")
    # seed-major, then cell by cell with every compared method together: a sweep stopped part-way leaves
    # complete, paired comparisons (the same seeds for method and baseline) rather than half of many
    position = {a: {(v["name"] if isinstance(v, dict) else v): i for i, v in enumerate(values)}
                for a, values in spec.axes}
    cells = [a for a, _ in spec.axes if a not in ("seed", spec.compare)]
    pending = sorted((t for t in trials if t.key not in done),
                     key=lambda t: (t.labels["seed"], [position[a][t.labels[a]] for a in cells]))
    if pending:  # without the sweep extra, stop before writing anything
        from symgym.agents.registry import require

        require("ray")
    write_json(done_dir / "sweep.json", {"name": spec.name, "source": spec.source, "spec": spec.raw,
                                         "trials": len(trials)})
    log(f"sweep {spec.name}: {len(trials)} trials, {len(trials) - len(pending)} already finished, "
        f"{len(pending)} to run" + (f" ({len(stale)} of them stale)" if stale else ""))
    report = {"sweep": spec.name, "trials": len(trials), "skipped": len(trials) - len(pending), "ran": 0,
              "errors": [], "ray_start_s": None, "wall_s": 0.0, "stale_rerun": sorted(stale), "arrivals_s": {}}
    if not pending:
        return report
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no experiment table; progress lines come from here
    start = time.perf_counter()
    ray = start_ray(address, num_cpus)
    report["ray_start_s"] = round(time.perf_counter() - start, 2)
    from ray import tune

    class WriteSummaries(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "summary_json" in result:
                summary = json.loads(result["summary_json"])
                write_json(done_dir / f"{summary['key']}.json", summary)
                report["arrivals_s"][summary["key"]] = round(time.perf_counter() - t0, 3)  # since fit() began
                report["ran"] += 1
                shown = ", ".join(f"{m}={summary['metrics'].get(m)}" for m in spec.metrics[:3])
                log(f"[{report['ran']}/{len(pending)}] {summary['key']}: {shown} ({summary['wall_s']:.1f} s)")

    cpus = int(ray.cluster_resources().get("CPU", 1))
    tuner = tune.Tuner(
        tune.with_resources(_tune_trainable, {"cpu": 1}),
        param_space={"trial": tune.grid_search([t.as_dict() for t in pending])},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or cpus, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=_storage_path(ray, storage, out), callbacks=[WriteSummaries()],
                                  verbose=0, failure_config=tune.FailureConfig(max_failures=0)))
    t0 = time.perf_counter()
    grid = tuner.fit()
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    for r in grid:
        if r.error is not None:
            first = str(r.error).strip().splitlines()
            report["errors"].append(f"{r.config['trial']['key']}: {first[-1] if first else type(r.error).__name__}")
    return report


def sweep_main(args) -> int:
    spec = load_spec(args.spec, quick=args.quick)
    result = run_sweep(spec, out=args.out, address=args.address, storage=args.storage,
                       max_concurrent=args.max_concurrent, resume=args.resume,
                       rerun_stale=getattr(args, "rerun_stale", False))
    for e in result["errors"]:
        print(f"trial failed: {e}")
    done = len(finished_keys(args.out, spec.name) & {t.key for t in expand(spec, Path(args.out))})
    print(f"sweep {spec.name}: {done}/{result['trials']} trials finished; summaries in "
          f"{trials_dir(args.out, spec.name)}; next: symgym report {spec.name} --out {args.out}")
    return 1 if result["errors"] else 0
