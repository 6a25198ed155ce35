"""AtlasD downstream: per-model learning rates, their tuning on a separate seed, and merging the tuned runs."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from symgym.learn.tasks.atlasd import downstream
from symgym.learn.tasks.atlasd.downstream import ConvergenceRule

torch.set_num_threads(1)

TINY_RULE = ConvergenceRule(eval_every=2, patience=2, lr_patience=1, max_steps=4, n_val=1)


def _tiny_cfg():
    from symgym.learn.tasks.atlasd.config import AtlasDConfig

    return replace(AtlasDConfig.quick(), downstream_sizes=(1, 2), downstream_rule=TINY_RULE, downstream_fields=1, downstream_test=2)


def _sim_and_group():
    from symgym.learn.tasks.atlasd.task import _planar_from_name
    from symgym.physics.pde import HeatObstacleSim

    return HeatObstacleSim(_tiny_cfg().pde), _planar_from_name("D4")


def test_rule_resolves_each_models_rate_and_rejects_bad_ones():
    rule = ConvergenceRule(lr=1e-2, lr_by_model={"steerable": 3e-3})
    assert rule.lr_for("steerable_D4") == 3e-3 and rule.lr_for("cnn") == 1e-2  # not in the mapping: the shared rate
    own = rule.for_model("steerable_C4")
    assert own.lr == 3e-3 and own.lr_by_model == {} and replace(own, lr=rule.lr, lr_by_model=rule.lr_by_model) == rule
    with pytest.raises(ValueError, match="mlp"):
        ConvergenceRule(lr_by_model={"mlp": 1e-3})
    with pytest.raises(ValueError, match="-0.1"):
        ConvergenceRule(lr_by_model={"cnn": -0.1})
    with pytest.raises(ValueError, match="'unet'"):
        rule.lr_for("unet")
    with pytest.raises(ValueError, match="for_model"):  # an unresolved per-model rule cannot train a model
        downstream.fit_to_convergence(torch.nn.Linear(1, 1), *[torch.zeros(2, 1, 1)] * 4, rule, batch=1, seed=0)


def test_per_model_rates_reach_each_models_optimiser(monkeypatch):
    seen, current = [], {}
    real_fit, real_adam = downstream.fit_to_convergence, torch.optim.Adam

    def fit(model, *args, **kw):
        current["model"] = type(model).__name__
        return real_fit(model, *args, **kw)

    def adam(params, lr):
        seen.append((current["model"], lr))
        return real_adam(params, lr=lr)

    monkeypatch.setattr(downstream, "fit_to_convergence", fit)
    monkeypatch.setattr(torch.optim, "Adam", adam)
    sim, group = _sim_and_group()
    rule = replace(TINY_RULE, lr_by_model={"steerable": 3e-3, "cnn": 3e-2})
    res = downstream.run_downstream(sim, group, (1, 2), (0,), rule, n_test=2, fields=1, data_seed=0)
    assert sorted(set(seen)) == [("MaskedCNN", 3e-2), ("SteerableTendencyCNN", 3e-3)] and len(seen) == 4
    assert res["models"]["steerable_D4"]["lr"] == 3e-3 and res["models"]["cnn"]["lr"] == 3e-2
    assert res["rule"]["lr_by_model"] == {"steerable": 3e-3, "cnn": 3e-2}  # recorded with the rule
    assert np.shape(res["models"]["cnn"]["best_val_relative_mse"]) == (1, 2)


def test_tuning_never_draws_test_fields_and_refuses_a_comparison_seed(monkeypatch):
    from symgym.learn.tasks.atlasd.tuning import tune_run, tuning_table

    def no_test(*args, **kw):
        raise AssertionError("tuning drew the test fields")

    monkeypatch.setattr(downstream, "draw_test_set", no_test)
    sim, group = _sim_and_group()
    cfg = _tiny_cfg()
    parts = [tune_run(sim, group, cfg, m, lr) for m in ("steerable", "cnn") for lr in (3e-3, 3e-2)]
    assert all(p["seeds"] == [100] and not any("test" in k for m in p["models"].values() for k in m) for p in parts)
    table = tuning_table(parts)
    for kind in ("steerable", "cnn"):
        rows = table["models"][kind]["rows"]
        assert [r["lr"] for r in rows] == [3e-3, 3e-2] and all(len(r["val_relative_mse"]) == 2 for r in rows)
        assert table["chosen_lr_by_model"][kind] == min(rows, key=lambda r: r["mean_val_relative_mse"])["lr"]
    with pytest.raises(ValueError, match="got 0"):
        tune_run(sim, group, cfg, "cnn", 1e-2, seed=0)


def _tune_part(kind, lr, val, test=None, seed=100):
    name = "steerable_D4" if kind == "steerable" else "cnn"
    model = {"parameters": 10, "lr": lr, "best_step": [[50, 100]], "best_val_relative_mse": [val],
             "last_step": [[550, 600]], "stopped_by": [["patience", "patience"]]}
    if test is not None:
        model["test_relative_mse"] = [test]
    rule = {"lr": 0.01, "lr_by_model": {kind: lr}, "eval_every": 50, "patience": 10, "max_steps": 8000}
    return {"group": "D4", "n_train": [1, 4], "seeds": [seed], "rule": rule, "models": {name: model},
            "model": kind, "lr": lr, "cpu_s": 2.0}


def test_table_chooses_the_lowest_mean_validation_error_and_extends_an_edge_once():
    from symgym.learn.tasks.atlasd.tuning import extension, tuning_table

    parts = [_tune_part("cnn", 3e-3, [0.5, 0.10]), _tune_part("cnn", 1e-2, [0.3, 0.12]), _tune_part("cnn", 3e-2, [0.4, 0.02]),
             _tune_part("steerable", 3e-3, [0.2, 0.01]), _tune_part("steerable", 1e-2, [0.3, 0.02]),
             _tune_part("steerable", 3e-2, [0.4, 0.03]), _tune_part("steerable", 1e-3, [0.25, 0.01])]
    table = tuning_table(parts)
    # cnn: 1e-2 has the best mean (0.21), though 3e-2 is best at 4 fields (per-size minima are not the rule)
    assert table["chosen_lr_by_model"] == {"cnn": 1e-2, "steerable": 3e-3}
    assert table["models"]["steerable"]["grid_extended_to"] == [1e-3] and not table["models"]["steerable"]["chosen_on_grid_edge"]
    assert table["cpu_s"] == 14.0 and table["seeds"] == [100] and "lr" not in table["rule"]
    assert extension([3e-3, 1e-2, 3e-2], 3e-3) == 1e-3 and extension([3e-3, 1e-2, 3e-2], 3e-2) == 1e-1
    assert extension([3e-3, 1e-2, 3e-2], 1e-2) is None
    with pytest.raises(ValueError, match="0.005"):
        extension([3e-3, 5e-3], 3e-3)
    with pytest.raises(ValueError, match="test"):  # a run that looked at test data cannot be a tuning run
        tuning_table(parts + [_tune_part("cnn", 1e-1, [0.1, 0.1], test=[0.1, 0.1])])


def test_table_averages_the_tuning_seeds_that_ran_every_rate():
    from symgym.learn.tasks.atlasd.tuning import tuning_table

    # seed 100 alone would pick 1e-2 (0.2 vs 0.3); with seed 101 the mean over both seeds picks 3e-3 (0.25 vs 0.3);
    # seed 102 ran only 1e-2 (an unfinished seed): it must not count, or its low error would pull 1e-2 ahead
    parts = [_tune_part("cnn", 3e-3, [0.3, 0.3], seed=100), _tune_part("cnn", 1e-2, [0.2, 0.2], seed=100),
             _tune_part("cnn", 3e-3, [0.2, 0.2], seed=101), _tune_part("cnn", 1e-2, [0.4, 0.4], seed=101),
             _tune_part("cnn", 1e-2, [0.01, 0.01], seed=102)]
    table = tuning_table(parts)
    cnn = table["models"]["cnn"]
    assert cnn["seeds"] == [100, 101] and table["seeds"] == [100, 101] and cnn["chosen_lr"] == 3e-3
    assert [r["mean_val_relative_mse"] for r in cnn["rows"]] == [0.25, 0.3]
    assert cnn["rows"][0]["val_relative_mse_per_seed"] == {"100": [0.3, 0.3], "101": [0.2, 0.2]}
    assert tuning_table(parts[:2])["models"]["cnn"]["chosen_lr"] == 1e-2
    with pytest.raises(ValueError, match="no tuning seed has run every rate"):
        tuning_table([parts[0], parts[3]])


def test_tuning_cli_refuses_a_comparison_seed_before_training(capsys):
    from symgym.learn.tasks.atlasd.tuning import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--model", "cnn", "--seeds", "100,3"])
    assert exit_info.value.code != 0 and "got 3\n" in capsys.readouterr().err


def _downstream_cache(cache, rates, n_seeds=5, capped=("cnn",)):
    from symgym.learn.io import write_json

    cache.mkdir()
    rule = {"lr": 0.01, "lr_by_model": rates, "eval_every": 50, "patience": 10, "max_steps": 8000}
    for s in range(n_seeds):
        for name, v in (("steerable_D4", 0.1), ("cnn", 0.3)):
            stop = "max_steps" if name in capped and s == 0 else "patience"
            model = {"parameters": 10, "lr": rates["cnn" if name == "cnn" else "steerable"],
                     "test_relative_mse": [[v + 0.01 * s]], "test_relative_mse_mean": [v], "best_step": [[50]],
                     "best_val_relative_mse": [[v]], "last_step": [[100]], "stopped_by": [[stop]],
                     "curves": [[{"steps": [0, 50, 100], "val_relative_mse": [1.0, v, v]}]]}
            write_json(cache / f"downstream_{s}_{name[:3]}.json", {"group": "D4", "n_train": [4], "seeds": [s], "rule": rule,
                                                                  "models": {name: model}, "cpu_s": 3.0})


def _results_with_converged_downstream(path):
    from symgym.learn.io import write_json

    old = {"group": "D4", "n_train": [4], "seeds": [0, 1, 2, 3, 4], "rule": {"lr": 0.01, "max_steps": 3000},
           "models": {"steerable_D4": {"parameters": 10, "test_relative_mse": [[0.2]] * 5},
                      "cnn": {"parameters": 10, "test_relative_mse": [[0.3]] * 5}}}
    write_json(path, {
        "pde_exact_simulator": {"seeds": [0, 1, 2], "local_loss_best": [0.001] * 3, "global_loss_best": [2.0, 1.5, 2.1]},
        "lorentz": {"runs": [{"seed": 0, "true_n_generators": 6, "group": "so(1,3)", "losses_by_k": [0.01] * 6,
                              "comparison_at_true_size": {"max_principal_angle_deg": 1.0},
                              "random_subspace_max_angle_deg": {"mean": 80.0}}]},
        "downstream": old, "downstream_previous": {"steps": 200}, "lorentz_cosets": {"kept": True}, "atlasd_config": {}})
    return old


def test_merge_attaches_the_tuning_table_and_runs_at_the_chosen_rates(tmp_path):
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd import seeds as seeds_mod

    tune = tmp_path / "tune"
    tune.mkdir()
    for p in (_tune_part("cnn", 1e-2, [0.3, 0.1]), _tune_part("cnn", 3e-2, [0.4, 0.2]),
              _tune_part("steerable", 3e-3, [0.2, 0.01]), _tune_part("steerable", 1e-2, [0.3, 0.02])):
        write_json(tune / f"tune_{p['model']}_lr{p['lr']:g}.json", p)
    chosen = {"steerable": 3e-3, "cnn": 1e-2}
    _downstream_cache(tmp_path / "cache", chosen)
    path = tmp_path / "atlasd.json"
    old = _results_with_converged_downstream(path)
    out = seeds_mod.merge(path, tmp_path / "cache", tuning_cache=tune)
    assert out["downstream_tuning"]["chosen_lr_by_model"] == chosen
    assert [r["lr"] for r in out["downstream_tuning"]["models"]["steerable"]["rows"]] == [3e-3, 1e-2]
    assert out["downstream"]["rule"]["lr_by_model"] == chosen == out["atlasd_config"]["downstream_rule"]["lr_by_model"]
    assert out["downstream"]["models"]["steerable_D4"]["lr"] == 3e-3 and out["downstream"]["models"]["cnn"]["lr"] == 1e-2
    assert out["downstream"]["stopped_at_cap"] == {"steerable_D4": 0, "cnn": 1, "total": 1, "runs": 10}
    assert out["downstream"]["cpu_s"] == 30.0
    # the replaced comparison (another rule) and the other stored parts are kept, out of the ledger
    assert out["downstream_previous_rule"]["rule"] == old["rule"] and out["downstream_previous"] == {"steps": 200}
    assert out["lorentz_cosets"] == {"kept": True}
    ev = [e for e in out["evidence"] if e["claim"].startswith("AtlasD downstream")]
    assert len(ev) == 1 and ev[0]["n_seeds"] == 5 and ev[0]["adjustment"] == f"Holm over {len(out['evidence'])} claims"
    assert (tmp_path / "atlasd_downstream_tuning.png").exists() and out == json.loads(path.read_text())
    # runs trained at other rates than tuning chose cannot be merged with that table
    _downstream_cache(tmp_path / "other", {"steerable": 1e-2, "cnn": 1e-2})
    with pytest.raises(ValueError, match="rerun it under the tuned rule"):
        seeds_mod.merge(path, tmp_path / "other", tuning_cache=tune)


def test_cached_downstream_run_under_another_rule_is_not_reused(tmp_path, monkeypatch):
    from symgym.learn.tasks.atlasd import seeds as seeds_mod
    from symgym.learn.tasks.atlasd import task

    def no_training(*args, **kw):
        raise AssertionError("a cached piece was trained again")

    monkeypatch.setattr(task, "_downstream_job", no_training)
    _downstream_cache(tmp_path / "cache", {"steerable": 1e-2, "cnn": 1e-2}, n_seeds=1)
    (tmp_path / "cache" / "downstream_0_ste.json").rename(tmp_path / "cache" / "downstream_0_steerable.json")
    with pytest.raises(ValueError, match="use another --cache"):
        seeds_mod._downstream([0], ("steerable",), tmp_path / "cache")
