"""``symgym bench sac``: the five SAC agents of the approx-sac study (issue #29) as a sweep, plus what makes the
comparison fair: parameter counts and wall time per env step at the sweep's widths.

* The grid, the budget, the tuned values and the claims live in ``specs/approx-sac.yaml`` (the tuning grid in
  ``specs/approx-sac-tune.yaml``; the previous three-agent spec ``specs/sac.yaml`` stays readable with its trials).
  :func:`run` runs that sweep (resuming: finished trials are skipped), reports it with rliable and adds the
  parameter table and, for the seed-0 runs of the symmetric agents, the actor/critic symmetry errors after training.
* :func:`parameter_table`: actor and critic parameter counts of every method of a spec, per env (matched within
  1.25x: tested).
* :func:`throughput`: wall time per 1k env steps of every method against sac, interleaved rounds in one process
  (issue #28.3). ``python -m symgym.learn.bench.sac throughput`` writes ``results/sac-throughput.json`` + PNG.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

# the learning-curve helpers every train-eval trial uses (kept importable from here)
from symgym.learn.evidence.trials import _curve, _first_crossing  # noqa: F401

SPEC = "approx-sac"
SYMMETRIC_AGENTS = ("equi-sac", "approx-sac", "approx-sac-frozen")


def _methods(spec_name: str) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """(spec, the method bundles with their full agent_kwargs, the env ids) of a shipped spec."""
    from symgym.learn.evidence.sweep import _merge, load_spec

    spec = load_spec(spec_name)
    base = spec.params.get("agent_kwargs", {})
    methods = [{**m, "agent_kwargs": _merge(base, m.get("agent_kwargs", {}))} for m in spec.raw["grid"]["method"]]
    envs = [e["env"] if isinstance(e, dict) else e for e in spec.raw["grid"].get("env", [spec.params.get("env")])]
    return spec, methods, list(dict.fromkeys(envs))


def parameter_table(spec_name: str = SPEC) -> dict[str, dict[str, dict[str, int]]]:
    """``{env: {method: {"actor": n, "critic": n}}}``: trainable parameters (critic: both Q-nets, no target)."""
    import gymnasium as gym

    import symgym.envs  # noqa: F401
    from symgym.agents import EnvInfo, agent_class

    _, methods, envs = _methods(spec_name)
    out: dict[str, dict[str, dict[str, int]]] = {}
    for env_id in envs:
        env = gym.make(env_id)
        info = EnvInfo.of(env)
        env.close()
        out[env_id] = {m["name"]: agent_class(m["agent"]).build(info, m["agent_kwargs"]).parameter_counts()
                       for m in methods}
    return out


def throughput(spec_name: str = SPEC, env_id: str = "SymPush-v0", rounds: int = 9, steps: int = 300,
               warmup: int = 1100) -> dict[str, Any]:
    """Wall time per 1k env steps (each step one gradient step, SAC's ``train_freq=1``) of every method of the
    spec at its widths, in ``rounds`` interleaved rounds after a warm-up that is not timed; ratios to sac per
    round (the same load for both), median and spread. One torch thread, as in the sweep."""
    import gymnasium as gym
    import torch

    import symgym.envs  # noqa: F401
    from symgym.agents import EnvInfo, agent_class

    torch.set_num_threads(1)
    _, methods, _ = _methods(spec_name)
    env = gym.make(env_id)
    info = EnvInfo.of(env)
    agents = {}
    for m in methods:
        kwargs = {k: v for k, v in m["agent_kwargs"].items() if not k.startswith("early_stop")}
        agent = agent_class(m["agent"]).build(info, {**kwargs, "learning_starts": 1000}, seed=0)
        agent.learn(env, warmup)  # fills the buffer past learning_starts: the timed steps all train
        agents[m["name"]] = agent
    ms: dict[str, list[float]] = {name: [] for name in agents}
    loads = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name, agent in agents.items():
            start = time.perf_counter()
            agent.learn(env, steps)
            ms[name].append((time.perf_counter() - start) / steps * 1e3 * 1e3)
    env.close()
    base = np.array(ms["sac"])
    rows = {}
    for name, values in ms.items():
        ratio = np.array(values) / base
        rows[name] = {"ms_per_1k_steps": [round(v, 1) for v in values], "median_ms_per_1k_steps": float(np.median(values)),
                      "ratio_to_sac": [round(float(r), 3) for r in ratio], "median_ratio_to_sac": float(np.median(ratio)),
                      "ratio_range": [float(ratio.min()), float(ratio.max())]}
    return {"env": env_id, "rounds": rounds, "steps_per_round": steps, "warmup_steps": warmup,
            "torch_threads": torch.get_num_threads(), "load_average_1min": loads, "cpu_count": os.cpu_count(),
            "target": "equi-sac and approx-sac <= 1.5x sac at matched parameter counts (issue #28.3)", "agents": rows}


def plot_throughput(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symgym.learn.io import save_figure

    names = list(result["agents"])
    fig, ax = plt.subplots(figsize=(6, 3))
    for i, name in enumerate(names):
        r = result["agents"][name]["ratio_to_sac"]
        ax.scatter([i] * len(r), r, color="C0", s=12)
        ax.plot([i - 0.3, i + 0.3], [np.median(r)] * 2, color="k")
    ax.axhline(1.5, color="C3", ls="--", lw=1, label="target 1.5x")
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("wall time / sac's (per env step)")
    ax.set_title(f"SAC variants at matched parameters, {result['env']}, {result['rounds']} interleaved rounds")
    ax.legend()
    return save_figure(fig, path)


def symmetry_errors(run_dir: str | Path) -> dict[str, float]:
    """Actor equivariance / critic invariance errors on D4 of a saved equi-sac or approx-sac(-frozen) run."""
    from symgym.agents.equi_sac import policy_symmetry_errors, relaxed_weight_errors
    from symgym.equivariance import DihedralGroup, Symmetry
    from symgym.equivariance.layers import restrict_rep
    from symgym.learn.run.runs import load_run, make_env

    agent, config = load_run(run_dir)
    d4 = DihedralGroup(4)
    env = make_env(config.env, **config.env_kwargs).unwrapped
    sym = Symmetry(d4, restrict_rep(env.symmetry.obs, d4), restrict_rep(env.symmetry.action, d4))
    obs = [env.reset(seed=500 + i)[0] for i in range(8)]
    out = policy_symmetry_errors(agent.model, sym, obs, d4.elements())
    if config.agent.startswith("approx-sac"):
        w = relaxed_weight_errors(agent.model.policy)
        out.update({"actor_relaxed_weight_error": w["actor"], "critic_relaxed_weight_error": w["critic"]})
    env.close()
    return {k: float(v) for k, v in out.items()}


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0, sweep: bool = True,
        allow_mixed_code: bool = False) -> dict[str, Any]:
    from symgym.learn.evidence.report import sweep_and_report
    from symgym.learn.evidence.sweep import expand, load_spec

    results = sweep_and_report(SPEC, out_dir, quick=quick, seed=seed, sweep=sweep, plot_name="sac",
                               allow_mixed_code=allow_mixed_code)
    results["parameter_counts"] = parameter_table(SPEC)
    results["tuning"] = tuning_choice(out_dir)
    from symgym.learn.bench.sac_graded import run as graded_run

    # effect against each env's measured break (x: one task-space metric for planar and arm envs)
    results["graded_breaking"] = graded_run(Path(out_dir), quick=quick, seed=seed)
    results["drift_vs_break"] = drift_vs_break(out_dir, sweeps=(results.get("sweep", SPEC), "approx-sac-graded"),
                                               breaks=results["graded_breaking"]["breaks"])
    results["sac_solvable"] = solvable(out_dir)
    results["compute"] = compute_spent(out_dir)
    spec = load_spec(SPEC, quick=quick)
    first_seed = min(spec.raw["grid"]["seed"]) + seed
    errors = {}
    for t in expand(spec, Path(out_dir)):
        # a finished trial (its summary written), whose run dir is on this machine (run dirs are not committed)
        done = (Path(out_dir) / "trials" / spec.name / f"{t.key}.json").is_file() and \
            (Path(t.run_dir) / "checkpoint.json").is_file()
        if t.params["agent"] in SYMMETRIC_AGENTS and t.labels["seed"] == first_seed and done:
            errors[f"{t.labels['method']} {t.labels['env']}"] = symmetry_errors(t.run_dir)
    results["symmetry_errors_after_training"] = {
        "group": "D4", "seed": first_seed, "runs": errors,
        "note": "runs of this machine only (run directories are not committed)"}
    return results


def compute_spent(out_dir: str | Path = "results",
                  sweeps: tuple[str, ...] = ("approx-sac-tune", "approx-sac-solvable", SPEC, "approx-sac-graded")
                  ) -> dict[str, Any]:
    """What the study has cost so far: per sweep, finished trials and the sum of their wall times in hours. Every
    trial runs one torch thread in one process, so its wall time is about one CPU's time (two trials share the two
    cores of the machine this ran on)."""
    import json

    rows = {}
    for sweep in sweeps:
        walls = [json.loads(p.read_text()).get("wall_s") or 0.0
                 for p in sorted((Path(out_dir) / "trials" / sweep).glob("*.json")) if p.name != "sweep.json"]
        rows[sweep] = {"trials": len(walls), "cpu_hours": round(sum(walls) / 3600, 2)}
    return {"per_sweep": rows, "cpu_hours": round(sum(r["cpu_hours"] for r in rows.values()), 2),
            "note": "sum of trial wall times at one torch thread per trial (about one CPU each)"}


def tuning_choice(out_dir: str | Path = "results", sweep: str = "approx-sac-tune") -> dict[str, Any]:
    """The tuning grid's finished trials per agent and the chosen values: the best ``success_auc`` (ties: held-out
    ``success_rate``, then the lower learning rate). Agents with unfinished cells are marked ``complete: False``."""
    import json

    from symgym.learn.evidence.sweep import expand, load_spec

    spec = load_spec(sweep)
    cells = expand(spec, Path(out_dir))
    out: dict[str, Any] = {}
    for t in cells:
        agent = t.params["agent"]
        path = Path(out_dir) / "trials" / sweep / f"{t.key}.json"
        row = {"method": t.labels["method"], "learning_rate": t.params["agent_kwargs"]["learning_rate"],
               "finished": path.is_file()}
        if path.is_file():
            m = json.loads(path.read_text())["metrics"]
            row.update({k: m.get(k) for k in ("success_auc", "success_rate", "steps_to_success", "stopped_at",
                                              "train_seconds")})
        out.setdefault(agent, {"cells": []})["cells"].append(row)
    for agent, entry in out.items():
        done = [c for c in entry["cells"] if c["finished"]]
        entry["complete"] = len(done) == len(entry["cells"])
        if done:
            best = max(done, key=lambda c: (c["success_auc"] or 0.0, c["success_rate"] or 0.0, -c["learning_rate"]))
            entry["chosen"] = {"method": best["method"], "learning_rate": best["learning_rate"]}
    return out


def drift_vs_break(out_dir: str | Path = "results", sweeps: tuple[str, ...] = (SPEC, "approx-sac-graded"),
                   agents: tuple[str, ...] = ("approx-sac", "approx-sac-frozen"),
                   breaks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per env cell and seed, how far the relaxed agents' learned weights drifted from equivariance
    (``actor_drift``/``critic_drift``), beside the env cell's measured break: ``breaks`` from
    :func:`symgym.learn.bench.sac_graded.measured_breaks` (one task-space metric for every cell and wind level)."""
    import json

    out_dir = Path(out_dir)
    breaks = breaks or {}
    cells: dict[str, Any] = {}
    for sweep in sweeps:
        for path in sorted((out_dir / "trials" / sweep).glob("*.json")):
            summary = json.loads(path.read_text())
            params = summary.get("params", {})
            if path.name == "sweep.json" or params.get("agent") not in agents:
                continue
            kwargs = params.get("env_kwargs") or {}
            cell = params["env"] + "".join(f" {k}={v}" for k, v in sorted(kwargs.items()))
            entry = cells.setdefault(cell, {"env": params["env"], "env_kwargs": kwargs, "seeds": {},
                                            "measured_break": breaks.get(cell, {}).get("break")})
            m = summary["metrics"]
            entry["seeds"].setdefault(params["agent"], {})[str(params["seed"])] = {
                "actor_drift": m.get("actor_drift"), "critic_drift": m.get("critic_drift")}
    return {"metric": "|W - P(W)| / |W| over the relaxed layers (P: Reynolds projection onto equivariant maps)",
            "break_metric": "mean task-space |obs(g.s, g.a) - g.obs(s, a)| (symgym.learn.bench.sac_graded)",
            "cells": cells}


def solvable(out_dir: str | Path = "results", threshold: float = 0.8) -> dict[str, Any]:
    """Whether plain SAC at the approx-sac sweep's width reached ``threshold`` held-out success on the tuning seed
    (``approx-sac-solvable`` sweep), with every width's result."""
    import json

    from symgym.learn.evidence.sweep import expand, load_spec

    _, methods, _ = _methods(SPEC)
    width = next(m["agent_kwargs"]["net_arch"] for m in methods if m["agent"] == "sac")
    rows = {}
    for t in expand(load_spec("approx-sac-solvable"), Path(out_dir)):
        path = Path(out_dir) / "trials" / "approx-sac-solvable" / f"{t.key}.json"
        m = json.loads(path.read_text())["metrics"] if path.is_file() else {}
        rows[str(t.params["agent_kwargs"]["net_arch"])] = m.get("success_rate")
    got = rows.get(str(width))
    ok = got is not None and got >= threshold
    solved_at = [w for w, v in rows.items() if v is not None and v >= threshold]
    message = (f"sac {width} reached {got} held-out success on SymPush-v0 (tuning seed, {threshold} needed); "
               f"widths that did: {solved_at or 'none'}; move the approx-sac specs to a level where sac solves "
               f"(matched widths in specs/approx-sac-solvable.yaml) and re-run the campaign")
    return {"ok": ok, "width": width, "success_rate": rows, "message": message}


def apply_tuning(out_dir: str | Path = "results", specs: tuple[str, ...] = (SPEC, "approx-sac-graded"),
                 spec_dir: Path | None = None) -> dict[str, float]:
    """Write the tuning grid's chosen learning rate of every agent into the method bundles of ``specs`` (comments and
    layout kept). Refuses while any agent's tuning cells are unfinished. Returns ``{agent: learning_rate}``."""
    import re

    from symgym.learn.evidence.sweep import SPEC_DIR, load_spec
    from symgym.learn.io import write_text

    choice = tuning_choice(out_dir)
    missing = sorted(a for a, e in choice.items() if not e["complete"])
    if missing:
        raise ValueError(f"tuning grid unfinished for {missing[0]!r} (and {len(missing) - 1} more): "
                         f"run `symgym sweep approx-sac-tune` first")
    chosen = {a: float(e["chosen"]["learning_rate"]) for a, e in choice.items()}
    for name in specs:
        path = Path(spec_dir or SPEC_DIR) / f"{name}.yaml"
        text = path.read_text()
        for agent, lr in chosen.items():
            # the bundle "{name: AGENT, agent: AGENT, ...learning_rate: X...}" (possibly over two lines)
            pattern = re.compile(r"(\{name: " + re.escape(agent) + r", agent: " + re.escape(agent)
                                 + r",[^}]*?learning_rate: )([0-9.eE+-]+)", re.DOTALL)
            text, n = pattern.subn(lambda m: m.group(1) + repr(lr), text)
            if n != 1:
                raise ValueError(f"spec {path}: found {n} bundles for agent {agent!r}, expected one")
        write_text(path, text)
        load_spec(str(path))  # still a valid spec
    # the solvability check tests plain SAC at its tuned rate (one learning_rate, in the spec's params)
    path = Path(spec_dir or SPEC_DIR) / "approx-sac-solvable.yaml"
    text, n = re.subn(r"(learning_rate: )([0-9.eE+-]+)", lambda m: m.group(1) + repr(chosen["sac"]), path.read_text())
    if n != 1:
        raise ValueError(f"spec {path}: found {n} learning rates, expected one")
    write_text(path, text)
    load_spec(str(path))
    return chosen


def filtered_spec(spec_name: str, envs: list[str]) -> dict[str, Any]:
    """The spec with its ``env`` axis cut to ``envs`` and the claims about other envs dropped. Same name, same trial
    keys (a key hashes a trial's labels and params, not the grid), so sweeping it runs a subset of the full sweep
    and the full spec later runs only what is missing (e.g. PandaPush-v0 after the Panda fixes)."""
    from symgym.learn.evidence.sweep import load_spec

    load_spec(spec_name)  # the full spec must be valid
    raw = _raw_yaml(spec_name)
    known = [e["name"] if isinstance(e, dict) else e for e in raw["grid"]["env"]]
    unknown = [e for e in envs if e not in known]
    if unknown or not envs:
        raise ValueError(f"env {unknown[0] if unknown else None!r} is not in spec {spec_name}'s env axis {known}")
    raw["grid"]["env"] = [e for e in raw["grid"]["env"] if (e["name"] if isinstance(e, dict) else e) in envs]
    raw["claims"] = [c for c in raw.get("claims", []) if (c.get("where") or {}).get("env", envs[0]) in envs]
    raw.pop("quick", None)
    return raw


def _raw_yaml(spec_name: str) -> dict[str, Any]:
    import yaml

    from symgym.learn.evidence.sweep import resolve_spec_path

    return yaml.safe_load(resolve_spec_path(spec_name).read_text())


#: sweep stages of :func:`campaign`, in the issue's priority: exact and wind, then the Panda arm, then the obstacle
STAGES = (("SymPush-v0", "SymPushWind-v0"), ("SymPush-v0", "SymPushWind-v0", "PandaPush-v0"),
          ("SymPush-v0", "SymPushWind-v0", "PandaPush-v0", "SymPushObstacle-v0"))


def campaign(out_dir: str | Path = "results") -> None:
    """The whole study, resumable (re-running skips finished trials): the tuning grid, the
    tuned learning rates written into the specs (:func:`apply_tuning`), the check that plain SAC solves SymPush-v0
    at the sweep's width (:func:`solvable`; the campaign stops here if not), then :data:`STAGES` of the approx-sac
    sweep and the graded-wind sweep. Each sweep is its own ``symgym sweep`` process (one Ray session each).
    A stage is a subset of the full spec under the same name and keys, so ``symgym sweep approx-sac`` afterwards
    runs exactly the trials still missing."""
    import subprocess

    import yaml

    out = Path(out_dir)

    def sweep(spec: str) -> None:
        subprocess.run([sys.executable, "-m", "symgym.learn.cli", "sweep", spec, "--out", str(out)], check=True)

    sweep("approx-sac-tune")
    print("tuned learning rates:", apply_tuning(out), flush=True)
    sweep("approx-sac-solvable")  # plain SAC at its tuned rate
    solved = solvable(out)
    if not solved["ok"]:
        sys.exit(f"stopping before the main sweep: {solved['message']}")
    for i, envs in enumerate(STAGES, 1):
        path = out / "cache" / f"{SPEC}-stage{i}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(filtered_spec(SPEC, list(envs)), sort_keys=False))
        sweep(str(path))
    sweep("approx-sac-graded")


def throughput_run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """A bench ``run``: :func:`throughput` (quick: 2 short rounds, for tests) + PNG + the parameter table."""
    res = throughput(rounds=2, steps=50, warmup=1050) if quick else throughput()
    res["plot"] = str(plot_throughput(res, Path(out_dir) / "sac-throughput.png"))
    res["parameter_counts"] = parameter_table(SPEC)
    return res


#: what the bench registry needs for ``symgym bench sac-throughput`` ("symgym.learn.bench.sac:THROUGHPUT")
THROUGHPUT = SimpleNamespace(run=throughput_run)


def throughput_main(out_dir: Path = Path("results"), quick: bool = False) -> dict[str, Any]:
    """``OUT_DIR/sac-throughput.json`` + PNG, as ``symgym bench sac-throughput`` would write them."""
    from symgym.learn.io import run_and_record

    return run_and_record("bench", "sac-throughput", throughput_run, out_dir, quick, 0)


if __name__ == "__main__":
    # python -m symgym.learn.bench.sac throughput [--quick] [OUT_DIR]
    # python -m symgym.learn.bench.sac filter-spec SPEC --envs ENV [ENV ...]   (YAML on stdout)
    if len(sys.argv) >= 2 and sys.argv[1] == "throughput":
        rest = [a for a in sys.argv[2:] if a != "--quick"]
        throughput_main(Path(rest[0]) if rest else Path("results"), quick="--quick" in sys.argv)
    elif len(sys.argv) >= 2 and sys.argv[1] == "tuning":
        import json

        print(json.dumps(tuning_choice(), indent=1))
    elif len(sys.argv) >= 2 and sys.argv[1] == "report":
        # results/sac.json from the trials finished so far (the campaign keeps running): what `symgym bench sac`
        # writes, without running the missing trials. A sweep over many sittings spans edits to files its trials
        # load (the env registry, the run layer): claims that mix code are flagged with the differing files
        from symgym.learn.io import run_and_record

        run_and_record("bench", "sac", lambda out_dir, quick, seed: run(out_dir, quick, seed, sweep=False,
                                                                        allow_mixed_code=True),
                       Path(sys.argv[2] if len(sys.argv) > 2 else "results"), False, 0)
    elif len(sys.argv) >= 2 and sys.argv[1] == "campaign":
        campaign(sys.argv[2] if len(sys.argv) > 2 else "results")
    elif len(sys.argv) >= 2 and sys.argv[1] == "apply-tuning":
        print(apply_tuning())
    elif len(sys.argv) >= 5 and sys.argv[1] == "filter-spec" and sys.argv[3] == "--envs":
        import yaml

        sys.stdout.write(yaml.safe_dump(filtered_spec(sys.argv[2], sys.argv[4:]), sort_keys=False))
    else:
        sys.exit("usage: python -m symgym.learn.bench.sac throughput [--quick] [OUT_DIR]\n"
                 "       python -m symgym.learn.bench.sac tuning | apply-tuning | campaign | report [OUT_DIR]\n"
                 "       python -m symgym.learn.bench.sac filter-spec SPEC --envs ENV [ENV ...]")
