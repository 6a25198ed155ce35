"""More seeds for AtlasD's trained-predictor parts, computed piece by piece and merged into results/atlasd.json.

``symgym task atlasd`` computes everything in one run (16 worker processes); on a shared machine the
multi-seed parts can instead be run here one piece at a time (each piece cached as a JSON file, so a
cut-short sitting resumes), then attached to an existing ``results/atlasd.json`` with ``merge``:

    python -m symgym.learn.tasks.atlasd.seeds pde --seeds 0,1,2,3,4
    python -m symgym.learn.tasks.atlasd.seeds exact --seeds 0,1,2,3,4     # the exact-simulator control
    python -m symgym.learn.tasks.atlasd.seeds lorentz --seeds 0,1,2,3,4   # so(1,3) on jets
    python -m symgym.learn.tasks.atlasd.seeds downstream --seeds 0,2,4   # both models, seed by seed
    python -m symgym.learn.tasks.atlasd.seeds downstream --seeds 1,3      # (a second process, if cores allow)
    python -m symgym.learn.tasks.atlasd.seeds merge [--compare-cache DIR] [--tuning-cache DIR]

(results/atlasd.json of 2026-12-07: ``merge --compare-cache results/cache/atlasd-seeds-rule-p6``, the latter
from ``downstream --rule patience=6,lr_patience=2,max_steps=2000``, the rule tried first. Then, with per-model
learning rates tuned on seed 100 (:mod:`learn.tasks.atlasd.tuning`, cache ``results/cache/atlasd-tune``) and
the cap raised to 8000 steps: ``downstream --cache results/cache/atlasd-seeds-tuned`` and ``merge --cache
results/cache/atlasd-seeds-tuned --tuning-cache results/cache/atlasd-tune``. Next, with 32 validation fields, two
tuning seeds and 10 comparison seeds: ``tuning run --model steerable`` and ``--model cnn`` (cache
``results/cache/atlasd-tune2``; ``extend`` where a choice sits on an edge), the chosen rates written into
``AtlasDConfig.downstream_rule``, then ``downstream --seeds 0,2,4,6,8 --cache results/cache/atlasd-seeds-nval32``
(and ``1,3,5,7,9`` in a second process) and ``merge --cache results/cache/atlasd-seeds-nval32 --tuning-cache
results/cache/atlasd-tune2``. The exact-simulator control and the jets algebra went from 3 to 5 seeds in a full
``symgym task atlasd`` run whose two blocks were copied into the stored results (``merged_parts`` there); ``exact``
and ``lorentz`` here compute the same blocks piece by piece, and ``merge`` replaces them.)

A cache holds runs of one rule: a cached piece run under another rule than the config's is an error, not reused.

Both paths call the same functions with the same :class:`AtlasDConfig` (the full, non-quick one), so a
merged result is what the full run would write for these parts (the steerable CNN's downstream runs excepted:
a second run did not reproduce them, results/atlasd.json ``downstream_replicate``). ``merge`` replaces
``pde_seeds``, ``pde_exact_simulator`` and ``lorentz`` where the cache has their pieces, and ``downstream`` (the
stored short-trained ``downstream`` is kept as ``downstream_previous``, a stored one trained to convergence under
another rule as ``downstream_previous_rule``; with fewer than ``MIN_LEDGER_SEEDS`` seeds trained with both models
the new runs are attached as ``downstream_converged_partial`` instead and the stored comparison stays), then
re-makes every ledger entry from the stored values and applies Holm over the whole family (as
:mod:`learn.tasks.atlasd.cosets` does).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from symgym.learn.tasks.atlasd.downstream import ConvergenceRule

CACHE = Path("results/cache/atlasd-seeds")
#: the converged downstream comparison replaces the stored one only with at least this many seeds (both models)
MIN_LEDGER_SEEDS = 3


def _missing_pieces(cache: Path, stem: str, seeds: list[int]) -> list[tuple[int, Path]]:
    """(seed, path) of each seed whose piece ``cache/{stem}{seed}.json`` is not cached yet."""
    paths = [(s, cache / f"{stem}{s}.json") for s in seeds]
    return [(s, path) for s, path in paths if not path.exists()]


def _pde(seeds: list[int], cache: Path) -> None:
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd.pde import run_pde_seed
    from symgym.learn.tasks.atlasd.config import AtlasDConfig

    for s, path in _missing_pieces(cache, "pde_seed", seeds):
        res = run_pde_seed(AtlasDConfig(), s)
        write_json(path, res)
        loc, glo = res["local"], res["global"]
        print(f"[pde] seed {s}: local k={loc['n_generators']} cos={loc['cosine_to_truth']} L1={loc['count_losses_by_k'][0]} "
              f"comps={loc['true_components_found']} | global k={glo['n_generators']} cos={glo['cosine_to_truth']} "
              f"L1={glo['count_losses_by_k'][0]}", flush=True)


def _exact(seeds: list[int], cache: Path) -> None:
    """The exact-simulator control, one seed per piece (the full run loops over ``exact_seeds`` the same way)."""
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd.config import AtlasDConfig
    from symgym.learn.tasks.atlasd.pde import make_pde_data, run_exact_simulator_control

    missing = _missing_pieces(cache, "exact_seed", seeds)
    if not missing:
        return
    cfg = AtlasDConfig()
    data = make_pde_data(cfg)
    for s, path in missing:
        write_json(path, run_exact_simulator_control(replace(cfg, exact_seeds=(s,)), data.sim, data.centres))


def _lorentz(seeds: list[int], cache: Path) -> None:
    """so(1,3) discovery on jets, one seed per piece."""
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd.config import AtlasDConfig
    from symgym.learn.tasks.atlasd.lorentz import run_lorentz

    for s, path in _missing_pieces(cache, "lorentz_seed", seeds):
        write_json(path, run_lorentz(AtlasDConfig().lorentz, s))


def _merge_exact_and_lorentz(results: dict, cache: Path, config: dict) -> list[dict]:
    """Replace ``pde_exact_simulator`` and ``lorentz`` by the cached pieces, where there are any; returns the
    Lorentz runs merged (to redraw their figure)."""
    from symgym.learn.tasks.atlasd.task import lorentz_summary

    exact = sorted((json.loads(p.read_text()) for p in cache.glob("exact_seed*.json")), key=lambda r: r["seeds"][0])
    if exact:
        results["pde_exact_simulator"] = {k: [v for r in exact for v in r[k]] for k in exact[0]}
        config["exact_seeds"] = results["pde_exact_simulator"]["seeds"]
    lorentz = [json.loads(p.read_text()) for p in cache.glob("lorentz_seed*.json")]
    if lorentz:
        results["lorentz"] = lorentz_summary(lorentz)
        config["lorentz_seeds"] = [r["seed"] for r in results["lorentz"]["runs"]]
    return results["lorentz"]["runs"] if lorentz else []


def _downstream(seeds: list[int], models: tuple[str, ...], cache: Path, rule: dict | None = None) -> None:
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd.task import AtlasDConfig, _downstream_job, _planar_from_name
    from symgym.physics.pde import HeatObstacleSim

    cfg = AtlasDConfig()
    if rule:  # a rule other than the config's (both models still share it): keep its runs in their own cache
        cfg = replace(cfg, downstream_rule=replace(cfg.downstream_rule, **rule))
    group = _planar_from_name(cfg.downstream_expected_group)
    sim = HeatObstacleSim(cfg.pde)
    for s in seeds:
        for model in models:
            path = cache / f"downstream_{s}_{model}.json"
            if path.exists():
                cached = json.loads(path.read_text()).get("rule")
                if cached != asdict(cfg.downstream_rule):
                    raise ValueError(f"{path} was run under rule {cached}, not {asdict(cfg.downstream_rule)}: use another --cache")
                continue
            clock = time.process_time()
            res = _downstream_job(sim, group, cfg, s, model)
            res["cpu_s"] = round(time.process_time() - clock, 1)
            write_json(path, res)
            name = next(iter(res["models"]))
            print(f"[downstream] seed {s} {name}: test {res['models'][name]['test_relative_mse'][0]} "
                  f"best step {res['models'][name]['best_step'][0]} stopped {res['models'][name]['stopped_by'][0]}", flush=True)


def _complete_downstream(cache: Path) -> list[dict]:
    """The cached downstream pieces of the seeds that have both models."""
    by_seed: dict[int, list[dict]] = {}
    for path in sorted(cache.glob("downstream_*.json")):
        part = json.loads(path.read_text())
        by_seed.setdefault(part["seeds"][0], []).append(part)
    return [p for s in sorted(by_seed) if len(by_seed[s]) == 2 for p in by_seed[s]]


def _tuning(tuning_cache: Path, complete: list[dict]) -> dict:
    """The tuning table; an error if the downstream runs to merge were not trained at the rates it chose."""
    from symgym.learn.tasks.atlasd.tuning import load_parts, tuning_table

    table = tuning_table(load_parts(tuning_cache))
    for part in complete:
        used = part["rule"].get("lr_by_model", {})
        if used != table["chosen_lr_by_model"]:
            raise ValueError(f"downstream seed {part['seeds'][0]} was trained with lr_by_model={used}, but tuning chose "
                             f"{table['chosen_lr_by_model']}: rerun it under the tuned rule")
    return table


def merge(results_path: Path, cache: Path, compare_cache: Path | None = None, tuning_cache: Path | None = None) -> dict:
    """Attach the cached pieces to ``results_path`` (see the module docstring); returns the new results.

    ``compare_cache``: downstream runs under another convergence rule, attached as ``downstream_other_rule``
    (a check of how much the comparison depends on the rule; not in the ledger). ``tuning_cache``: the
    learning-rate tuning runs (:mod:`learn.tasks.atlasd.tuning`), attached as ``downstream_tuning``; the merged
    downstream runs must use the rates it chose."""
    from symgym.learn.evidence.ledger import adjust
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd.cosets import evidence as coset_evidence
    from symgym.learn.tasks.atlasd.pde import pde_seed_table
    from symgym.learn.tasks.atlasd.plots import plot_downstream, plot_downstream_curves, plot_lorentz, plot_tuning
    from symgym.learn.tasks.atlasd.task import _evidence, merge_downstream

    results = json.loads(results_path.read_text())
    pde_runs = [json.loads(p.read_text()) for p in sorted(cache.glob("pde_seed*.json"))]
    if pde_runs:
        results["pde_seeds"] = {**pde_seed_table(pde_runs), "runs": sorted(pde_runs, key=lambda r: r["seed"]),
                                "source": "merged from separately run seeds (learn.tasks.atlasd.seeds); pde_local and "
                                          "pde_global above are the stored main run's, whose chart CNNs were initialised "
                                          "from the worker's inherited RNG state, not from the seed, so its seed-0 values "
                                          "differ from seed 0 here"}
    complete = _complete_downstream(cache)
    config = results.setdefault("atlasd_config", {})
    if tuning_cache is not None:
        results["downstream_tuning"] = _tuning(tuning_cache, complete)
    if complete:
        merged = merge_downstream(complete)
        if len(merged["seeds"]) >= MIN_LEDGER_SEEDS:
            old = results.get("downstream")
            if old is not None and "rule" not in old:  # the stored short-trained comparison (a fixed budget)
                results["downstream_previous"] = {**old, "note": "the earlier short training (a fixed step budget, "
                                                  "cosine schedule): kept for comparison, not in the ledger"}
            elif old is not None and old["rule"] != merged["rule"]:  # trained to convergence under another rule
                results["downstream_previous_rule"] = {
                    **{k: v for k, v in old.items() if k != "note"},
                    "note": "the comparison this one replaced, trained to convergence under another rule (its 'rule'; "
                            "one learning rate for both models unless it has lr_by_model): kept for comparison, not in the ledger"}
            results["downstream"] = merged
            results.pop("downstream_converged_partial", None)
            config.pop("downstream_steps", None)
            config.update(downstream_rule=merged["rule"], downstream_seeds=merged["seeds"])
        else:  # too few seeds to replace the ledger's downstream comparison: attached, not claimed
            results["downstream_converged_partial"] = {**merged, "note": f"trained to convergence, but fewer than "
                                                       f"{MIN_LEDGER_SEEDS} seeds: not in the ledger (downstream is)"}
    other = _complete_downstream(compare_cache) if compare_cache is not None else []
    if other:
        results["downstream_other_rule"] = {**merge_downstream(other), "note": "the same comparison trained under "
                                            "another convergence rule (its 'rule'): how much the result depends on "
                                            "the rule; not in the ledger"}
    if pde_runs:
        config["pde_seeds"] = results["pde_seeds"]["seeds"]
    lorentz_runs = _merge_exact_and_lorentz(results, cache, config)
    runs = results.get("lorentz_cosets", {}).get("runs", [])
    results["evidence"] = adjust(_evidence(results) + (coset_evidence(runs) if runs else []))
    write_json(results_path, results)
    out_dir = results_path.parent
    plot_downstream(results["downstream"], out_dir / "atlasd_downstream.png")
    plot_downstream_curves(results.get("downstream_converged_partial", results["downstream"]),
                           out_dir / "atlasd_downstream_curves.png")
    if "downstream_tuning" in results:
        plot_tuning(results["downstream_tuning"], out_dir / "atlasd_downstream_tuning.png")
    if lorentz_runs:
        plot_lorentz(lorentz_runs, out_dir / "atlasd_lorentz.png")
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("pde", "exact", "lorentz", "downstream", "merge"))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--model", choices=("steerable", "cnn", "both"), default="both")
    ap.add_argument("--cache", default=str(CACHE))
    ap.add_argument("--results", default="results/atlasd.json")
    ap.add_argument("--compare-cache", default=None, help="merge: downstream runs under another rule, attached for comparison")
    ap.add_argument("--tuning-cache", default=None, help="merge: the learning-rate tuning runs, attached as downstream_tuning")
    ap.add_argument("--rule", default="", help="downstream: override ConvergenceRule fields, e.g. patience=10,max_steps=3000")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.part == "pde":
        _pde(seeds, cache)
    elif args.part == "exact":
        _exact(seeds, cache)
    elif args.part == "lorentz":
        _lorentz(seeds, cache)
    elif args.part == "downstream":
        pairs = [kv.split("=") for kv in args.rule.split(",") if kv]
        if any(k == "lr_by_model" for k, _ in pairs):  # a mapping does not fit k=v: per-model rates come from the config
            raise ValueError(f"--rule cannot set lr_by_model (got {args.rule!r}); set it in AtlasDConfig.downstream_rule")
        rule = {k: type(getattr(ConvergenceRule(), k))(v) for k, v in pairs}
        _downstream(seeds, ("steerable", "cnn") if args.model == "both" else (args.model,), cache, rule)
    else:
        merge(Path(args.results), cache, Path(args.compare_cache) if args.compare_cache else None,
              Path(args.tuning_cache) if args.tuning_cache else None)


if __name__ == "__main__":
    main()
