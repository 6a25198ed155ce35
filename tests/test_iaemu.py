"""IAEmu emulator: transforms, losses, the MLP ensemble, calibration, the noise floor, inverse fit (the paper's
model and the training runs are in ``test_iaemu_paper.py``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symgym.learn.tasks.iaemu import data as iaemu_data, eval as iaemu_eval
from symgym.learn.tasks.iaemu.task import IAEmuConfig
from symgym.learn.tasks.iaemu.data import (
    ALIGN,
    PARAM_HIGH,
    PARAM_LOW,
    Standardiser,
    from_model_space,
    generate_dataset,
    sample_params,
    to_model_space,
)
from symgym.learn.tasks.iaemu.eval import knn_predict
from symgym.learn.tasks.iaemu.inverse import fit_alignment, residual_covariance
from symgym.learn.tasks.iaemu.models import (
    FusedEnsemble,
    IAEmulator,
    TrainSettings,
    beta_nll,
    ensemble_predict,
    train_network,
)
from symgym.physics.galaxies import HaloCatalogueConfig

torch.set_num_threads(1)


def test_transform_roundtrip_and_log_xi():
    rng = np.random.default_rng(0)
    stats = rng.normal(size=(4, 2, 3, 20))
    stats[..., 0, :] = np.exp(rng.normal(size=(4, 2, 20))) - 0.5  # xi > -1
    y = to_model_space(stats)
    np.testing.assert_allclose(y[..., 0, :], np.log1p(stats[..., 0, :]))
    np.testing.assert_array_equal(y[..., 1:, :], stats[..., 1:, :])  # omega, eta untouched
    np.testing.assert_allclose(from_model_space(y), stats, atol=1e-12)
    empty = np.zeros((3, 20))
    empty[0] = -1.0  # an empty xi bin: must stay finite
    assert np.isfinite(to_model_space(empty)).all()
    norm = Standardiser.fit(y)
    z = norm.forward(y).reshape(-1, 3, 20)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-6)
    np.testing.assert_allclose(norm.inverse(norm.forward(y)), y, atol=1e-10)


def test_emulator_shapes_and_gradients_to_parameters():
    model = IAEmulator(PARAM_LOW, PARAM_HIGH, hidden=32)
    theta = torch.as_tensor(sample_params(5, seed=0), dtype=torch.float32).requires_grad_(True)
    mean, log_var = model(theta)
    assert mean.shape == log_var.shape == (5, 3, 20)
    mean[:, 1].sum().backward()  # differentiable in the inputs: what the inverse problem relies on
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_beta_nll_weights_and_limits():
    torch.manual_seed(0)
    mean, target = torch.randn(64, 3, 20), torch.randn(64, 3, 20)
    log_var = torch.randn(64, 3, 20).requires_grad_(True)
    plain = 0.5 * (log_var + (target - mean) ** 2 / log_var.exp())
    assert beta_nll(mean, log_var, target, 0.0).item() == pytest.approx(plain.mean().item(), rel=1e-6)
    weighted = (plain * log_var.exp().detach() ** 0.5).mean()
    assert beta_nll(mean, log_var, target, 0.5).item() == pytest.approx(weighted.item(), rel=1e-6)
    # beta=1: the mean's gradient equals the MSE gradient (up to the 1/2), independent of the variance
    m = mean.clone().requires_grad_(True)
    beta_nll(m, log_var.detach(), target, 1.0).backward()
    np.testing.assert_allclose(m.grad.numpy(), ((m - target) / m.numel()).detach().numpy(), atol=1e-7)


def test_heteroscedastic_head_learns_noise_level(iaemu_toy_data):
    theta, y, _ = iaemu_toy_data(600, 0)
    settings = TrainSettings(epochs=60, batch_size=64)
    model = train_network(IAEmulator(PARAM_LOW, PARAM_HIGH, hidden=48), theta[:500], y[:500], theta[500:],
                          y[500:], settings, seed=0, kind="ensemble")
    probe = sample_params(200, seed=1)
    with torch.no_grad():
        _, log_var = model(torch.as_tensor(probe, dtype=torch.float32))
    pred_sd = log_var.exp().sqrt().mean((1, 2)).numpy()
    true_sd = 0.05 + 0.5 * (probe[:, 6] - PARAM_LOW[6]) / (PARAM_HIGH[6] - PARAM_LOW[6])
    assert np.corrcoef(pred_sd, true_sd)[0, 1] > 0.8
    assert np.median(np.abs(np.log(pred_sd / true_sd))) < 0.5


def test_ensemble_epistemic_grows_outside_training_box(iaemu_toy_data):
    theta, y, _ = iaemu_toy_data(400, 2)
    settings = TrainSettings(epochs=30, batch_size=64)
    members = [train_network(IAEmulator(PARAM_LOW, PARAM_HIGH, hidden=48), theta[:350], y[:350], theta[350:],
                             y[350:], settings, seed=s, kind="ensemble") for s in range(3)]
    inside = torch.as_tensor(sample_params(200, seed=3), dtype=torch.float32)
    outside = torch.as_tensor(iaemu_eval.outside_params(200, np.random.default_rng(4), expand=1.0),
                              dtype=torch.float32)
    with torch.no_grad():
        pin, pout = ensemble_predict(members, inside), ensemble_predict(members, outside)
    assert pout["epistemic"].mean() > 2 * pin["epistemic"].mean()
    assert ensemble_predict(members[:1], inside)["epistemic"].abs().max() == 0  # one member: no disagreement


def test_outside_params_are_outside():
    pts = iaemu_eval.outside_params(300, np.random.default_rng(0))
    inside = np.all((pts >= PARAM_LOW) & (pts <= PARAM_HIGH), axis=1)
    assert not inside.any()
    assert np.all(np.abs(pts[:, ALIGN]) <= 1.0)


def test_knn_reproduces_training_points():
    theta = sample_params(30, seed=0)
    y = np.random.default_rng(0).normal(size=(30, 3, 20))
    np.testing.assert_allclose(knn_predict(theta, y, theta[:5], k=3), y[:5], atol=1e-4)


def test_dataset_is_cached_and_reloaded(tmp_path, monkeypatch):
    halos = HaloCatalogueConfig(n_halos=1500, box_size=50.0, n_clusters=60)
    first = generate_dataset(4, 2, seed=0, halo_config=halos, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("iaemu_*.npz"))
    assert len(files) == 1
    assert first["stats"].shape == (4, 2, 3, 20) and first["theta"].shape == (4, 7)
    assert np.all((first["theta"] >= PARAM_LOW) & (first["theta"] <= PARAM_HIGH))

    def no_simulation(*args, **kwargs):
        raise AssertionError("cache hit must not simulate")

    monkeypatch.setattr(iaemu_data, "simulate", no_simulation)
    again = generate_dataset(4, 2, seed=0, halo_config=halos, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again["stats"], first["stats"])
    with pytest.raises(AssertionError, match="must not simulate"):  # a different seed is a different key
        generate_dataset(4, 2, seed=1, halo_config=halos, cache_dir=tmp_path, progress=False)


class _Analytic:
    """A known differentiable 'emulator': the alignment strengths enter two statistics linearly."""

    def __init__(self, noise: float):
        self.noise = noise
        self.basis = torch.linspace(0.2, 1.0, 20)

    def __call__(self, theta):
        mu_c, mu_s = theta[:, 5:6], theta[:, 6:7]
        mean = torch.stack([theta[:, :1] * self.basis, mu_c * self.basis + mu_s * 0.3, mu_s * self.basis.flip(0)], 1)
        var = torch.full_like(mean, self.noise**2)
        return {"mean": mean, "aleatoric": var, "epistemic": torch.zeros_like(mean)}


def test_inverse_fit_recovers_alignment_with_calibrated_sigma():
    emu = _Analytic(noise=0.3)
    rng = np.random.default_rng(0)
    z_scores = []
    for k in range(8):
        theta = sample_params(1, seed=k)[0]
        theta[ALIGN] = rng.uniform(-0.6, 0.6, 2)
        clean = emu(torch.as_tensor(theta[None], dtype=torch.float32))["mean"][0]
        observed = clean + 0.3 * torch.as_tensor(rng.normal(size=clean.shape), dtype=torch.float32)
        fit = fit_alignment(emu, theta, observed, noise_var_scale=1.0, steps=200, grid=61)
        assert fit["sigma_source"] == "laplace"
        np.testing.assert_allclose(fit["fit"], fit["grid_mean"], atol=0.03)  # Laplace agrees with the grid
        np.testing.assert_allclose(fit["sigma"], fit["grid_std"], rtol=0.15)
        z_scores.append(fit["z"])
    z = np.abs(np.array(z_scores))
    assert np.all(z < 4) and np.mean(z < 2) > 0.8


def test_bad_config_names_the_value():
    with pytest.raises(ValueError, match="n_realisations.*1"):
        IAEmuConfig(n_realisations=1)
    with pytest.raises(ValueError, match="n_test_realisations.*1"):
        IAEmuConfig(n_test_realisations=1)
    with pytest.raises(ValueError, match="max_workers.*0"):
        IAEmuConfig(max_workers=0)
    with pytest.raises(ValueError, match="paper_seeds.*-1"):
        IAEmuConfig(paper_seeds=-1)
    assert [IAEmuConfig(paper_seeds=2).trains_paper(k) for k in range(4)] == [True, True, False, False]
    assert IAEmuConfig(paper_seeds=None).trains_paper(7)
    with pytest.raises(ValueError, match="beta.*1.5"):
        IAEmuConfig(beta=1.5)
    with pytest.raises(ValueError, match="mc_passes.*1"):
        IAEmuConfig(mc_passes=1)
    with pytest.raises(ValueError, match="kind.*'adam'"):
        train_network(IAEmulator(PARAM_LOW, PARAM_HIGH), np.zeros((4, 7)), np.zeros((4, 1, 3, 20)),
                      np.zeros((2, 7)), np.zeros((2, 1, 3, 20)), TrainSettings(epochs=1), 0, kind="adam")
    with pytest.raises(ValueError, match="targets"):
        train_network(IAEmulator(PARAM_LOW, PARAM_HIGH), np.zeros((4, 7)), np.zeros((4, 3, 20)),
                      np.zeros((2, 7)), np.zeros((2, 1, 3, 20)), TrainSettings(epochs=1), 0, kind="mse")


def test_epistemic_inflation_restores_one_sigma_coverage():
    rng = np.random.default_rng(0)
    shape = (50, 3, 3, 20)
    # the true error has sd 1 (noise) + 0.5 (model error) but the ensemble only claims 0.1 for the latter
    mean = np.zeros(shape[:1] + shape[2:])
    z = rng.normal(size=shape) + 0.5 * rng.normal(size=shape[:1] + (1,) + shape[2:])
    pred = {"mean": mean, "aleatoric": np.ones_like(mean), "epistemic": np.full_like(mean, 0.01)}
    c = iaemu_eval.epistemic_inflation(z, pred)
    assert np.all(c > 10)
    np.testing.assert_allclose(c * 0.01, 0.25, rtol=0.3)  # recovers the missing variance
    honest = {**pred, "epistemic": np.full_like(mean, 0.25)}
    c_honest = iaemu_eval.epistemic_inflation(z, honest)
    assert np.all(c_honest >= 1.0) and np.all(c_honest < 1.4)  # already calibrated: (nearly) left alone


def _ar1_corr(d: int, rho: float) -> np.ndarray:
    idx = np.arange(d)
    return rho ** np.abs(idx[:, None] - idx[None])


def test_residual_covariance_recovers_correlated_noise_despite_heteroscedastic_scale():
    rng = np.random.default_rng(0)
    P, R, D = 300, 4, 12
    corr = _ar1_corr(D, 0.6)  # neighbouring bins share galaxies: correlated noise
    scale = np.exp(rng.normal(size=(P, D)))  # every parameter set has its own noise level
    means = rng.normal(size=(P, 1, D)) * 5.0  # large set-to-set signal must not leak into the noise estimate
    noise = rng.multivariate_normal(np.zeros(D), corr, size=(P, R)) * scale[:, None]
    cov, lam = residual_covariance(means + noise, scale)
    assert 0.0 <= lam < 0.2  # 1200 samples for 12 dims: little shrinkage needed
    np.testing.assert_allclose(cov, corr, atol=0.12)
    assert np.linalg.eigvalsh(cov).min() > 0
    # without the per-set scale the pooled matrix is dominated by the noisiest sets, not the correlation
    raw, _ = residual_covariance(means + noise)
    assert np.abs(raw - corr).max() > 0.3


def test_residual_covariance_shrinks_more_with_few_samples_and_rejects_bad_input():
    rng = np.random.default_rng(1)
    corr = _ar1_corr(20, 0.5)
    few, lam_few = residual_covariance(rng.multivariate_normal(np.zeros(20), corr, size=(6, 2)))  # 12 samples
    _, lam_many = residual_covariance(rng.multivariate_normal(np.zeros(20), corr, size=(400, 2)))
    assert lam_few > 2 * lam_many and lam_few > 0.2 and lam_many < 0.1  # real correlations survive with data
    assert np.linalg.eigvalsh(few).min() > 0  # shrinkage makes a rank-deficient estimate usable
    with pytest.raises(ValueError, match="R>=2"):
        residual_covariance(rng.normal(size=(5, 1, 3)))
    with pytest.raises(ValueError, match="scale"):
        residual_covariance(rng.normal(size=(5, 2, 3)), np.ones((5, 4)))


def test_full_covariance_likelihood_is_calibrated_where_diagonal_is_overconfident():
    """Strongly correlated noise: treating bins as independent shrinks sigma; the full covariance does not."""
    emu = _Analytic(noise=0.1)  # posterior well inside [-1, 1]: Laplace is valid
    corr_one = _ar1_corr(20, 0.9)
    corr = np.kron(np.eye(3), corr_one)  # bins correlated within each statistic
    chol = np.linalg.cholesky(corr)
    rng = np.random.default_rng(3)
    z_full, z_diag = [], []
    for k in range(12):
        theta = sample_params(1, seed=k)[0]
        theta[ALIGN] = rng.uniform(-0.6, 0.6, 2)
        clean = emu(torch.as_tensor(theta[None], dtype=torch.float32))["mean"][0]
        noise = 0.1 * (chol @ rng.normal(size=60)).reshape(3, 20)
        observed = clean + torch.as_tensor(noise, dtype=torch.float32)
        full = fit_alignment(emu, theta, observed, 1.0, noise_cov=corr, steps=150, grid=41)
        diag = fit_alignment(emu, theta, observed, 1.0, steps=150, grid=41)
        np.testing.assert_allclose(full["sigma"], full["grid_std"], rtol=0.15)  # Laplace agrees with the grid
        assert np.all(full["sigma"] > 1.5 * diag["sigma"])  # correlated bins carry less information
        z_full.append(full["z"])
        z_diag.append(diag["z"])
    z_full, z_diag = np.abs(np.array(z_full)), np.abs(np.array(z_diag))
    assert np.mean(z_full < 2) > 0.8 and np.all(z_full < 4)
    assert np.median(z_diag) > 1.3 * np.median(z_full)
    with pytest.raises(ValueError, match="noise_cov"):
        fit_alignment(emu, theta, observed, 1.0, noise_cov=np.eye(5))



def test_calibration_error_is_zero_for_gaussian_z_and_large_for_overconfident():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 4, 3, 20))
    assert iaemu_eval.calibration_error(z) < 0.01
    assert iaemu_eval.calibration_error(3.0 * z) > 0.3


def test_kappa_follows_halotools_mapping():
    from symgym.physics.galaxies import alignment_kappa

    assert alignment_kappa(0.5) == pytest.approx(1.0)  # tan(pi/4), not 3 tan(pi/4)
    assert alignment_kappa(-0.5) == pytest.approx(-1.0)
    assert alignment_kappa(0.0) == 0.0


def test_fused_ensemble_matches_member_by_member_prediction():
    torch.manual_seed(2)
    members = [IAEmulator(PARAM_LOW, PARAM_HIGH, hidden=24) for _ in range(4)]
    theta = torch.as_tensor(sample_params(7, seed=3), dtype=torch.float32)
    with torch.no_grad():
        ref, fused = ensemble_predict(members, theta), FusedEnsemble(members)(theta)
    for key in ("mean", "aleatoric", "epistemic"):
        torch.testing.assert_close(fused[key], ref[key], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="heteroscedastic"):
        FusedEnsemble([IAEmulator(PARAM_LOW, PARAM_HIGH, heteroscedastic=False)])


@pytest.mark.parametrize("n_realisations", [4, 16])
def test_noise_floor_is_what_a_perfect_emulator_scores(n_realisations):
    from symgym.learn.tasks.iaemu.eval import err_over_scatter_floor, scored_against_floor

    rng = np.random.default_rng(n_realisations)
    mu, sigma = 2.0, 0.3
    draws = mu + sigma * rng.standard_normal((20000, n_realisations))
    perfect = np.median(np.abs(mu - draws.mean(1)) / draws.std(1, ddof=1))  # the task's err/scatter, true mean
    assert perfect == pytest.approx(err_over_scatter_floor(n_realisations), rel=0.03)
    scored = scored_against_floor({"m": {"xi": 2 * err_over_scatter_floor(n_realisations)}}, n_realisations)
    assert scored["ratio_to_floor"]["m"]["xi"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="n_realisations must be >= 2"):
        err_over_scatter_floor(1)


def _synthetic_targets(n_realisations, n_params=400, seed=0):
    """(P, R, 3, B) statistics around known means: xi > 0, omega and eta near zero in half of the bins."""
    rng = np.random.default_rng(seed)
    mu = np.stack([np.full((n_params, 20), 3.0), np.tile(np.linspace(0.0, 0.2, 20), (n_params, 1)),
                   np.tile(np.linspace(0.0, 0.05, 20), (n_params, 1))], 1)
    sigma = np.array([0.2, 0.05, 0.05])[:, None]
    return mu, mu[:, None] + sigma * rng.standard_normal((n_params, n_realisations, 3, 20))


def test_relative_error_floor_is_what_a_perfect_emulator_scores_and_falls_with_realisations():
    from symgym.learn.tasks.iaemu.eval import relative_errors
    from symgym.learn.tasks.iaemu.floor import relative_error_floor

    floors = {}
    for n_realisations in (4, 32):
        mu, stats = _synthetic_targets(n_realisations)
        truth = from_model_space(to_model_space(stats).mean(1))  # the task's target: the R-mean (log 1+xi for xi)
        perfect = relative_errors(mu, truth, stats.std(1, ddof=1) / np.sqrt(n_realisations))  # knows the true mean
        floors[n_realisations] = floor = relative_error_floor(stats)
        for stat in ("xi", "omega"):
            for key in ("median_rel_err", "median_rel_err_significant_bins"):
                assert floor[stat][key] == pytest.approx(perfect[stat][key], rel=0.15)
    assert floors[32]["xi"]["median_rel_err"] == pytest.approx(floors[4]["xi"]["median_rel_err"] / np.sqrt(8), rel=0.2)
    with pytest.raises(ValueError, match=">= 2 realisations"):
        relative_error_floor(_synthetic_targets(1)[1])


def _per_seed_records(ratios: dict[str, float], n_seeds: int = 5, n_realisations: int = 32):
    from symgym.learn.tasks.iaemu.eval import err_over_scatter_floor, scored_against_floor

    floor = err_over_scatter_floor(n_realisations)
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n_seeds):
        eos = {m: {s: floor * (v + 0.01 * rng.standard_normal()) for s in ("xi", "omega", "eta")}
               for m, v in ratios.items()}
        out.append({"err_over_scatter": eos, "err_over_scatter_vs_floor": scored_against_floor(eos, n_realisations)})
    return out


def test_floor_claims_rank_models_by_their_distance_from_the_floor():
    from symgym.learn.tasks.iaemu.floor import floor_evidence

    per_seed = _per_seed_records({"paper": 1.6, "ensemble": 1.02, "mse_mlp": 1.3, "knn_5": 3.0})
    ev = {e["claim"]: e for e in floor_evidence(per_seed, list(range(5)), "knn_5")}
    assert ev["ensemble is closer to the noise floor on xi than mse_mlp"]["holds"] is True
    assert ev["paper is closer to the noise floor on omega than ensemble"]["holds"] is False
    assert ev["paper is closer to the noise floor on xi than knn_5"]["holds"] is True
    assert ev["ensemble: xi err/scatter is within 1.1x the noise floor"]["holds"] is True
    assert ev["mse_mlp: omega err/scatter is within 1.1x the noise floor"]["holds"] is False
    assert "32-realisation targets" in ev["paper: xi err/scatter is within 1.1x the noise floor"]["metric"]
    # three seeds: no verdict, whatever the effect
    assert {e["holds"] for e in floor_evidence(per_seed[:3], list(range(3)), "knn_5")} == {"underpowered"}
    for r in per_seed[2:]:  # the paper model trained on the first two seeds only: its claims pair those two
        for block in (r["err_over_scatter"], r["err_over_scatter_vs_floor"]["ratio_to_floor"]):
            del block["paper"]
    ev = {e["claim"]: e for e in floor_evidence(per_seed, list(range(5)), "knn_5")}
    paper = ev["paper is closer to the noise floor on xi than ensemble"]
    assert paper["holds"] == "underpowered" and paper["n_seeds"] == 2
    assert ev["ensemble is closer to the noise floor on xi than mse_mlp"]["holds"] is True


def test_noise_floor_summary_uses_the_test_targets_realisations():
    from symgym.learn.tasks.iaemu.eval import err_over_scatter_floor
    from symgym.learn.tasks.iaemu.floor import noise_floor_summary

    per_seed = _per_seed_records({"paper": 2.0, "ensemble": 1.0})
    summary = {m: {s: {k: {"mean": 0.1} for k in ("median_rel_err", "median_rel_err_significant_bins")}
                   for s in ("xi", "omega", "eta")} for m in ("paper", "ensemble")}
    rel_floor = {s: {"median_rel_err": 0.05, "median_rel_err_significant_bins": 0.02} for s in ("xi", "omega", "eta")}
    results = {"data": {"n_realisations": 4, "n_test_realisations": 32}, "per_seed": per_seed,
               "summary_median_rel_err": summary}
    out = noise_floor_summary(results, rel_floor)
    assert out["test_target_realisations"] == 32  # not the 4 realisations of each training set
    assert out["err_over_scatter_floor"] == pytest.approx(err_over_scatter_floor(32))
    assert out["ratio_to_floor"]["paper"]["xi"] == pytest.approx(2.0, abs=0.05)
    assert out["excess_over_floor"]["ensemble"]["omega"] == pytest.approx(0.0, abs=0.01)
    assert out["median_rel_err_ratio_to_floor"]["paper"]["xi"]["median_rel_err_significant_bins"] == pytest.approx(5)
    del per_seed[1]["err_over_scatter"]["paper"]  # a seed without the paper model: averaged over the others
    assert noise_floor_summary(results)["ratio_to_floor"]["paper"]["xi"] == pytest.approx(2.0, abs=0.05)
