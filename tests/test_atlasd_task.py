"""AtlasD's task pieces: the exact heat predictor, the matched downstream models, the per-seed and downstream
claims, the coset search on jets, training to convergence, and merging cached parts into the results."""
import numpy as np
import pytest
import torch

from symgym.physics.jets import JetFamily

torch.set_num_threads(1)


def test_exact_heat_predictor_is_the_simulator_step():
    from symgym.learn.tasks.atlasd.models import ExactHeatTendency
    from symgym.physics.pde import HeatObstacleConfig, HeatObstacleSim

    sim = HeatObstacleSim(HeatObstacleConfig(size=24, obstacle=(4, 9, 14, 20)))
    u = sim.random_initial(np.random.default_rng(0), 3)
    pred = ExactHeatTendency(sim, torch.from_numpy(sim.obstacle_mask))
    out = pred(torch.from_numpy(u).float()[:, None])[:, 0].double().numpy()
    np.testing.assert_allclose(out, sim.step(u) - u, atol=1e-5)


def test_plain_cnn_width_matches_steerable_parameter_count():
    from symgym.equivariance.groups import PlanarGroup
    from symgym.learn.tasks.atlasd.models import MaskedCNN, SteerableTendencyCNN, count_parameters, matched_cnn_hidden

    mask = torch.zeros(16, 16)
    target = count_parameters(SteerableTendencyCNN(mask, PlanarGroup(4, reflections=True), fields=6))
    plain = count_parameters(MaskedCNN(mask, hidden=matched_cnn_hidden(target, mask)))
    assert abs(plain - target) / target < 0.05


def test_steerable_model_is_equivariant_on_random_group_elements():
    """Random elements of D4 (the grid-exact part of the discovered O(2)), with several widths."""
    from symgym.equivariance.groups import PlanarGroup
    from symgym.learn.tasks.atlasd.models import SteerableTendencyCNN

    rng = np.random.default_rng(5)
    for fields in (1, 3):
        mask = torch.from_numpy((rng.random((15, 15)) < 0.1).astype(np.float32))
        model = SteerableTendencyCNN(mask, PlanarGroup(4, reflections=True), fields=fields).eval()
        u, m = torch.randn(2, 1, 15, 15), mask[None, None].expand(2, 1, 15, 15)
        with torch.no_grad():
            y = model.forward_with_mask(u, m)
            for _ in range(4):
                k, flip = int(rng.integers(4)), bool(rng.integers(2))
                act = lambda t: torch.rot90(t.flip(-1) if flip else t, k, dims=(-2, -1))  # noqa: E731
                torch.testing.assert_close(model.forward_with_mask(act(u), act(m)), act(y), atol=1e-4, rtol=1e-4)


def test_downstream_claims_compare_matched_models_per_size():
    from symgym.learn.tasks.atlasd.downstream import downstream_claims

    steerable = [[0.1, 0.01], [0.12, 0.011], [0.11, 0.012], [0.1, 0.013], [0.13, 0.01]]
    cnn = [[0.3, 0.01], [0.32, 0.012], [0.31, 0.011], [0.29, 0.01], [0.33, 0.012]]

    def result(n_seeds):
        return {"n_train": [1, 4], "seeds": list(range(n_seeds)),
                "models": {"steerable_D4": {"parameters": 100, "test_relative_mse": steerable[:n_seeds]},
                           "cnn": {"parameters": 104, "test_relative_mse": cnn[:n_seeds]}}}

    claims = downstream_claims(result(5))
    assert [c["n_train"] for c in claims] == [1, 4]
    assert claims[0]["holds"] is True and claims[0]["n_seeds"] == 5
    assert claims[1]["holds"] == "inconclusive"
    # the ledger gives no verdict from fewer than 5 seeds a side
    assert downstream_claims(result(3))[0]["holds"] == "underpowered"


def test_merge_downstream_stacks_seed_and_model_parts():
    from symgym.learn.tasks.atlasd.task import merge_downstream

    def part(seed, name, v):
        return {"group": "D4", "n_train": [1, 4], "seeds": [seed], "models": {name: {"parameters": 10, "test_relative_mse": [[v, v / 2]],
                "test_relative_mse_bulk": [[v, v]], "test_relative_mse_mean": [v, v / 2]}}}

    merged = merge_downstream([part(1, "cnn", 0.4), part(0, "steerable_D4", 0.1), part(0, "cnn", 0.2), part(1, "steerable_D4", 0.3)])
    assert merged["seeds"] == [0, 1]
    assert merged["models"]["cnn"]["test_relative_mse"] == [[0.2, 0.1], [0.4, 0.2]]  # seed order, not arrival order
    np.testing.assert_allclose(merged["models"]["steerable_D4"]["test_relative_mse_mean"], [0.2, 0.1])


class _ExactJetObservable(torch.nn.Module):
    """The chart's true observable as a predictor (Minkowski products only: O(1,3)-invariant everywhere),
    except that it is only trusted on positive-energy jets, as a predictor trained on real jets would be."""

    def __init__(self, fam: JetFamily, chart: int):
        super().__init__()
        self.fam, self.chart = fam, chart

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, w, b, e = (float(v) for v in self.fam.params[self.chart])
        eta = torch.tensor(self.fam.eta, dtype=x.dtype)
        dot = lambda u, v: torch.einsum("ni,ij,nj->n", u, eta, v)  # noqa: E731
        total = x.sum(1)
        y = a * torch.sin(w * dot(x[:, 0], x[:, 1])) + b * dot(x[:, 0], x[:, 2]) + e * dot(total, total) / x.shape[1]
        return torch.where(x[:, :, 0].min(1).values > 0, y, y + 10.0)  # off the domain: nothing like f


def test_coset_search_finds_parity_and_not_time_reversal_on_positive_energy_jets():
    from symgym.learn.tasks.atlasd.cosets import COSETS, CosetConfig, invariance_loss, search_coset

    fam = JetFamily(1, 3, 3, seed=0)
    probe = torch.tensor(fam.sample(0, 128, np.random.default_rng(0)), dtype=torch.float32)
    f = _ExactJetObservable(fam, 0)
    cfg = CosetConfig(restarts=1, steps=1)
    losses = {name: search_coset(f, probe, torch.diag(torch.tensor(d, dtype=torch.float32)), cfg, 0)["loss"]
              for name, d in COSETS.items()}
    assert losses["I"] < 1e-10 and losses["P"] < 1e-8  # parity keeps every Minkowski product and E > 0
    assert losses["T"] > 1.0 and losses["PT"] > 1.0  # time reversal leaves the positive-energy domain
    assert invariance_loss([f], [probe], torch.eye(4)) == 0.0
    exact = torch.tensor(fam.observable(0, probe.double().numpy()), dtype=torch.float32)
    assert torch.allclose(f(probe), exact, atol=1e-4)  # the torch observable is the simulator's


# -- training to convergence, several PDE seeds, merging the pieces --------------------------------------------------
def _tiny_regression(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=gen)
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    vx = torch.randn(32, 3, generator=gen)
    # shaped like fields (batch, 1, ...) as the downstream models' outputs are
    return x[:, None], (x @ w)[:, None], vx[:, None], (vx @ w)[:, None]


def test_fit_to_convergence_stops_on_a_plateau_and_keeps_the_best_checkpoint():
    from symgym.learn.tasks.atlasd.downstream import ConvergenceRule, fit_to_convergence, relative_mse

    x, y, vx, vy = _tiny_regression()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    rule = ConvergenceRule(lr=0.05, eval_every=10, patience=3, lr_patience=1, max_steps=5000)
    fit = fit_to_convergence(model, x, y, vx, vy, rule, batch=8, seed=0)
    assert fit["stopped_by"] == "patience" and fit["last_step"] < rule.max_steps  # an exact fit plateaus
    assert fit["steps"][0] == 0 and np.all(np.diff(fit["steps"]) == rule.eval_every)
    assert len(fit["steps"]) == len(fit["val_relative_mse"])
    best = min(fit["val_relative_mse"])
    assert fit["val_relative_mse"][fit["steps"].index(fit["best_step"])] == best < 1e-3
    sq, ref = relative_mse(model, vx, vy)
    assert float(sq.mean() / ref.mean()) == pytest.approx(best, rel=1e-3, abs=1e-6)  # the best checkpoint is loaded
    # a budget too short to plateau: the cap is what stops it, and is reported as such
    capped = fit_to_convergence(torch.nn.Linear(3, 1), x, y, vx, vy, ConvergenceRule(lr=1e-3, eval_every=10, max_steps=30), 8, 0)
    assert capped["stopped_by"] == "max_steps" and capped["last_step"] == 30


def _seed_run(seed, local_loss, global_loss, local_k=1, global_k=0):
    def side(loss, k, comps, cos):
        return {"n_generators": k, "count_losses_by_k": [loss], "cosine_to_truth": cos, "equivariance_loss": loss,
                "equivariance_loss_true_generator": loss, "n_components": comps, "true_components_found": comps,
                "n_true_components": 2, "spurious": 0}
    loc = side(local_loss, local_k, 2, 0.99 + 0.001 * seed)
    loc["predictor_relative_mse"] = [0.01, 0.03, 0.5]  # the last is the obstacle chart: not in the mean
    glo = side(global_loss, global_k, 1, 0.7 + 0.01 * seed)
    glo["predictor_relative_mse_chart_windows"] = 0.01
    return {"seed": seed, "local": loc, "global": glo}


def test_pde_seed_table_and_claims_pair_local_and_global_by_seed():
    from symgym.learn.tasks.atlasd.pde import pde_seed_claims, pde_seed_table, recovers_group

    runs = [_seed_run(s, 0.001 * (1 + s % 2), 1.0 + 0.1 * s) for s in (3, 0, 4, 1, 2)]
    table = pde_seed_table(runs)
    assert table["seeds"] == [0, 1, 2, 3, 4]
    assert table["global"]["best_one_generator_loss"] == [1.0, 1.1, 1.2, 1.3, 1.4]
    assert table["local"]["predictor_relative_mse"] == [0.02] * 5
    assert table["local"]["recovers_group"] == [True] * 5 and table["global"]["recovers_group"] == [False] * 5
    claims = pde_seed_claims(table)
    assert all(c["paired"] and c["n_seeds"] == 5 for c in claims)
    assert [c["holds"] for c in claims] == [True, True]   # group recovery stays a count, not a claim
    assert not recovers_group({**runs[0]["local"], "spurious": 1})
    assert not recovers_group({**runs[0]["local"], "n_generators": 2})
    # three seeds: values recorded, no verdict
    assert {c["holds"] for c in pde_seed_claims(pde_seed_table(runs[:3]))} == {"underpowered"}


def _write_cache(cache, n_seeds, pde=True):
    from symgym.learn.io import write_json

    cache.mkdir()
    for s in range(n_seeds):
        if pde:
            write_json(cache / f"pde_seed{s}.json", _seed_run(s, 0.001, 1.0 + 0.1 * s))
        for name, v in (("steerable_D4", 0.1), ("cnn", 0.3)):
            model = {"parameters": 10, "test_relative_mse": [[v + 0.01 * s]], "test_relative_mse_mean": [v],
                     "best_step": [[50]], "last_step": [[100]], "stopped_by": [["patience"]],
                     "curves": [[{"steps": [0, 50, 100], "val_relative_mse": [1.0, v, v]}]]}
            write_json(cache / f"downstream_{s}_{name[:3]}.json",
                       {"group": "D4", "n_train": [4], "seeds": [s], "rule": {"max_steps": 100}, "models": {name: model}})
    write_json(cache / f"downstream_{n_seeds}_ste.json", {"group": "D4", "n_train": [4], "seeds": [n_seeds], "models": {}})


def _stored_results(path):
    from symgym.learn.io import write_json

    old = {"group": "D4", "n_train": [4], "seeds": [0, 1, 2], "steps": 200,
           "models": {"steerable_D4": {"parameters": 10, "test_relative_mse": [[0.2], [0.2], [0.3]]},
                      "cnn": {"parameters": 10, "test_relative_mse": [[0.3], [0.4], [0.5]]}}}
    write_json(path, {
        "pde_exact_simulator": {"seeds": [0, 1, 2], "local_loss_best": [0.001] * 3, "global_loss_best": [2.0, 1.5, 2.1]},
        "lorentz": {"runs": [{"seed": 0, "true_n_generators": 6, "group": "so(1,3)", "losses_by_k": [0.01] * 6,
                              "comparison_at_true_size": {"max_principal_angle_deg": 1.0},
                              "random_subspace_max_angle_deg": {"mean": 80.0}}]},
        "downstream": old, "atlasd_config": {"downstream_steps": 200}})
    return old


def test_merge_attaches_seeds_and_downstream_and_remakes_the_ledger(tmp_path):
    import json

    from symgym.learn.tasks.atlasd import seeds as seeds_mod

    _write_cache(tmp_path / "cache", 5)  # plus a seed with one model only: left out
    _write_cache(tmp_path / "other", 2, pde=False)  # another convergence rule's runs: attached for comparison
    path = tmp_path / "atlasd.json"
    _stored_results(path)
    out = seeds_mod.merge(path, tmp_path / "cache", tmp_path / "other")
    assert out["downstream_other_rule"]["seeds"] == [0, 1]
    assert out["pde_seeds"]["seeds"] == [0, 1, 2, 3, 4] and len(out["pde_seeds"]["runs"]) == 5
    assert out["downstream"]["seeds"] == [0, 1, 2, 3, 4]
    assert out["downstream"]["models"]["cnn"]["stopped_by"] == [["patience"]] * 5
    assert out["downstream_previous"]["steps"] == 200  # the short-trained result is kept, out of the ledger
    assert "downstream_steps" not in out["atlasd_config"] and "downstream_rule" in out["atlasd_config"]
    assert out["atlasd_config"]["pde_seeds"] == [0, 1, 2, 3, 4]
    ev = {e["claim"]: e for e in out["evidence"]}
    assert all(e["adjustment"] == f"Holm over {len(ev)} claims" for e in ev.values())
    assert sum("trained CNN predictors" in c for c in ev) == 2
    assert sum(c.startswith("AtlasD downstream") and e["n_seeds"] == 5 for c, e in ev.items()) == 1
    assert (tmp_path / "atlasd_downstream_curves.png").exists()
    assert out == json.loads(path.read_text())


def test_merge_keeps_the_stored_downstream_when_too_few_seeds_converged(tmp_path):
    from symgym.learn.tasks.atlasd import seeds as seeds_mod

    _write_cache(tmp_path / "cache", 2, pde=False)
    path = tmp_path / "atlasd.json"
    old = _stored_results(path)
    out = seeds_mod.merge(path, tmp_path / "cache")
    assert out["downstream"] == old and "pde_seeds" not in out
    assert out["downstream_converged_partial"]["seeds"] == [0, 1]
    assert out["atlasd_config"] == {"downstream_steps": 200}
    claims = [e for e in out["evidence"] if e["claim"].startswith("AtlasD downstream")]
    assert len(claims) == 1 and claims[0]["n_seeds"] == 3


def _lorentz_run(seed, angle):
    return {"seed": seed, "group": "so(1,3)", "true_n_generators": 6, "discovered_n_generators": 6, "count_correct": True,
            "losses_by_k": [0.01] * 6 + [0.2], "thresholds_by_k": [0.05] * 7,
            "comparison_at_true_size": {"max_principal_angle_deg": angle, "principal_angles_deg": [angle / 2, angle]},
            "random_subspace_max_angle_deg": {"mean": 85.0, "min": 80.0}}


def test_merge_replaces_the_exact_control_and_the_jets_algebra_by_cached_pieces(tmp_path):
    """One piece per seed, merged in seed order; the 3-seed claims of the stored results get their verdicts."""
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd import seeds as seeds_mod

    cache = tmp_path / "cache"
    _write_cache(cache, 5, pde=False)
    for s in (4, 0, 3, 1, 2):  # written out of order
        write_json(cache / f"exact_seed{s}.json", {"seeds": [s], "local_loss_best": [0.001 + 1e-4 * s],
                                                   "global_loss_best": [2.0 + 0.1 * s]})
        write_json(cache / f"lorentz_seed{s}.json", _lorentz_run(s, 1.5 + 0.1 * s))
    path = tmp_path / "atlasd.json"
    _stored_results(path)
    before = {e["claim"]: e["holds"] for e in seeds_mod.merge(path, tmp_path / "empty")["evidence"]}
    _stored_results(path)
    out = seeds_mod.merge(path, cache)
    assert out["pde_exact_simulator"]["seeds"] == [0, 1, 2, 3, 4]
    assert out["pde_exact_simulator"]["global_loss_best"] == [2.0, 2.1, 2.2, 2.3, 2.4]
    assert [r["seed"] for r in out["lorentz"]["runs"]] == [0, 1, 2, 3, 4]
    assert out["lorentz"]["max_principal_angle_deg_at_true_size"] == [1.5, 1.6, 1.7, 1.8, 1.9]
    assert out["atlasd_config"]["exact_seeds"] == out["atlasd_config"]["lorentz_seeds"] == [0, 1, 2, 3, 4]
    after = {e["claim"]: e["holds"] for e in out["evidence"]}
    exact = next(c for c in after if "exact simulator" in c)
    algebra = next(c for c in after if "closer to so(1,3)" in c)
    assert before[exact] == before[algebra] == "underpowered"
    assert after[exact] is True and after[algebra] is True
    assert (tmp_path / "atlasd_lorentz.png").exists()


def test_exact_and_lorentz_pieces_compute_only_the_seeds_not_cached(tmp_path, monkeypatch):
    from symgym.learn.io import write_json
    from symgym.learn.tasks.atlasd import lorentz, pde, seeds as seeds_mod

    write_json(tmp_path / "lorentz_seed0.json", _lorentz_run(0, 1.0))
    ran = []
    monkeypatch.setattr(lorentz, "run_lorentz", lambda cfg, s: ran.append(s) or _lorentz_run(s, 2.0))
    seeds_mod._lorentz([0, 1, 2], tmp_path)
    assert ran == [1, 2] and (tmp_path / "lorentz_seed2.json").exists()

    for s in (0, 1):
        write_json(tmp_path / f"exact_seed{s}.json", {"seeds": [s]})
    monkeypatch.setattr(pde, "make_pde_data", lambda cfg: (_ for _ in ()).throw(AssertionError("no data needed")))
    seeds_mod._exact([0, 1], tmp_path)  # everything cached: the PDE data is not even built
