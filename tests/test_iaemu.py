"""IAEmu emulator: transforms, losses, the paper model (Conv1d decoders, MC dropout, beta schedule), the
MLP ensemble, caching, calibration, inverse fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symgym.learn.tasks.iaemu import data as iaemu_data, eval as iaemu_eval, models as iaemu_models
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
    PAPER_BETAS,
    FusedEnsemble,
    IAEmuNet,
    IAEmulator,
    TrainSettings,
    beta_nll,
    ensemble_predict,
    mc_dropout_predict,
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


def _toy_data(n: int, seed: int, n_real: int = 1):
    """Targets (n, n_real, 3, 20) in standardised space whose noise grows with mu_sat: tests the aleatoric head."""
    rng = np.random.default_rng(seed)
    theta = sample_params(n, seed=seed)
    x = (theta - PARAM_LOW) / (PARAM_HIGH - PARAM_LOW)
    clean = np.sin(2 * x[:, None, None, :1] + np.linspace(0, 1, 20)) * np.array([1.0, 0.5, 0.2])[:, None]
    noise_sd = 0.05 + 0.5 * x[:, 6]
    y = clean + noise_sd[:, None, None, None] * rng.normal(size=(n, n_real, 3, 20))
    return theta, y.astype(np.float32), noise_sd


def test_heteroscedastic_head_learns_noise_level():
    theta, y, _ = _toy_data(600, 0)
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


def test_ensemble_epistemic_grows_outside_training_box():
    theta, y, _ = _toy_data(400, 2)
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


# --------------------------------------------------------------------------- the paper's model
def test_dataset_blocks_are_shared_between_workers_and_the_full_set(tmp_path, monkeypatch):
    halos = HaloCatalogueConfig(n_halos=1500, box_size=50.0, n_clusters=60)
    part = generate_dataset(5, 2, seed=0, halo_config=halos, cache_dir=tmp_path, progress=False, block_size=3,
                            blocks=[1])  # a worker that only simulates the second block
    assert part["theta"].shape == (2, 7) and len(list(tmp_path.glob("iaemu_*.npz"))) == 1
    full = generate_dataset(5, 2, seed=0, halo_config=halos, cache_dir=tmp_path, progress=False, block_size=3)
    assert full["stats"].shape == (5, 2, 3, 20) and len(list(tmp_path.glob("iaemu_*.npz"))) == 2
    np.testing.assert_array_equal(full["stats"][3:], part["stats"])  # the worker's block is reused, not redone
    assert len(np.unique(full["theta"][:, 0])) == 5  # blocks draw different parameters
    with pytest.raises(ValueError, match="block 7"):
        generate_dataset(5, 2, seed=0, halo_config=halos, cache_dir=tmp_path, block_size=3, blocks=[7])


@pytest.mark.parametrize("n_bins", [20, 12])
def test_paper_model_shapes_dropout_and_gradients(n_bins):
    torch.manual_seed(0)
    model = IAEmuNet(PARAM_LOW, PARAM_HIGH, n_bins=n_bins, hidden=32, width=0.25)
    theta = torch.as_tensor(sample_params(6, seed=0), dtype=torch.float32)
    model.train()
    model(theta)  # one training-mode pass so that batch-norm has running statistics
    mean, log_var = model.mc_dropout(False)(theta)
    assert mean.shape == log_var.shape == (6, 3, n_bins)
    again, _ = model(theta)
    torch.testing.assert_close(mean, again)  # dropout off: deterministic
    single, _ = model(theta[:1])
    torch.testing.assert_close(single, mean[:1])  # batch-norm in eval: a query does not depend on its batch
    pred = mc_dropout_predict(model, theta, n_passes=16)
    assert pred["epistemic"].min() > 0  # dropout on: the sampled means differ
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.Dropout))  # switched back off
    sampled = model.mc_dropout_layers()  # encoder (5) and the first four convolutions of each of 3 decoders
    assert len(sampled) == 5 + 3 * 4 < sum(isinstance(m, torch.nn.Dropout) for m in model.modules())
    model.mc_dropout(True)
    assert all(m.training for m in sampled) and not model.decoders[0].inp[-1].training
    model.mc_dropout(False)
    x = theta.clone().requires_grad_(True)
    model(x)[0][:, 1].sum().backward()  # differentiable in the parameters (inverse problems)
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="n_passes"):
        mc_dropout_predict(model, theta, n_passes=1)


def test_beta_nll_per_statistic_beta_matches_separate_losses():
    torch.manual_seed(1)
    mean, target, log_var = torch.randn(16, 3, 20), torch.randn(16, 3, 20), torch.randn(16, 3, 20)
    betas = torch.tensor(PAPER_BETAS)
    joint = beta_nll(mean, log_var, target, betas)
    separate = torch.stack([beta_nll(mean[:, s], log_var[:, s], target[:, s], float(betas[s])) for s in range(3)])
    assert joint.item() == pytest.approx(separate.mean().item(), rel=1e-6)
    assert PAPER_BETAS == (0.9, 0.5, 0.5)


def test_paper_schedule_uses_beta_one_during_warmup(monkeypatch):
    seen = []
    original = iaemu_models.beta_nll

    def spy(mean, log_var, target, beta):
        seen.append(beta if isinstance(beta, float) else tuple(torch.as_tensor(beta).tolist()))
        return original(mean, log_var, target, beta)

    monkeypatch.setattr(iaemu_models, "beta_nll", spy)
    theta, y, _ = _toy_data(40, 5, n_real=2)
    model = IAEmuNet(PARAM_LOW, PARAM_HIGH, hidden=16, width=0.25)
    train_network(model, theta[:32], y[:32], theta[32:], y[32:], TrainSettings(epochs=5, batch_size=16,
                  warmup_fraction=0.4), seed=0, kind="paper")
    per_epoch = len(seen) // 5
    assert seen[: 2 * per_epoch] == [1.0] * (2 * per_epoch)  # warm-up: 2 of 5 epochs at beta = 1
    assert all(b == pytest.approx(PAPER_BETAS) for b in seen[2 * per_epoch:])


def test_paper_model_learns_noise_level_and_mc_dropout_grows_outside_box():
    theta, y, _ = _toy_data(500, 3, n_real=2)
    model = IAEmuNet(PARAM_LOW, PARAM_HIGH, hidden=64, width=0.25)
    model = train_network(model, theta[:440], y[:440], theta[440:], y[440:],
                          TrainSettings(epochs=40, batch_size=64, lr=1e-2), seed=0, kind="paper")
    probe = sample_params(200, seed=1)
    with torch.no_grad():
        pred = mc_dropout_predict(model, torch.as_tensor(probe, dtype=torch.float32), n_passes=20)
        outside = iaemu_eval.outside_params(200, np.random.default_rng(4), expand=1.0)
        out = mc_dropout_predict(model, torch.as_tensor(outside, dtype=torch.float32), n_passes=20)
    pred_sd = pred["aleatoric"].sqrt().mean((1, 2)).numpy()
    true_sd = 0.05 + 0.5 * (probe[:, 6] - PARAM_LOW[6]) / (PARAM_HIGH[6] - PARAM_LOW[6])
    assert np.corrcoef(pred_sd, true_sd)[0, 1] > 0.7
    assert out["epistemic"].mean() > 1.5 * pred["epistemic"].mean()


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


def test_seed_parts_are_cached_and_the_paper_model_can_skip_seeds(tmp_path):
    from symgym.learn.tasks.iaemu import task as iaemu_task

    cfg = IAEmuConfig(n_train_params=40, n_test_params=10, n_realisations=2, n_test_realisations=4, hidden=8,
                      ensemble_size=2, epochs=2, paper_epochs=1, mc_passes=2, paper_seeds=1, n_seeds=2)
    rng = np.random.default_rng(0)

    def fake(n, r):
        return {"theta": sample_params(n, seed=n), "stats": rng.normal(1.0, 0.1, (n, r, 3, 20))}

    train, test = fake(40, 2), fake(10, 4)
    norm = Standardiser.fit(to_model_space(train["stats"]))
    z = norm.forward(to_model_space(train["stats"]))

    def job(k):
        parts = iaemu_task._parts(cfg, k)
        paths = {p: iaemu_task.seed_cache_path(cfg, k, tmp_path, p) for p in parts}
        return cfg, k, parts, train, test, z, norm, paths

    _, _, first = iaemu_task._seed_job(job(0))
    assert set(first["err_over_scatter"]) == {"paper", "ensemble", "mse_mlp", "knn_5"}
    assert first["err_over_scatter_vs_floor"]["n_realisations"] == 4  # scored against the test targets' floor
    assert not any(first["parts_loaded_from_cache"].values())
    _, _, again = iaemu_task._seed_job(job(0))
    assert all(again["parts_loaded_from_cache"].values())
    assert again["err_over_scatter"]["ensemble"] == first["err_over_scatter"]["ensemble"]  # the same trained models
    _, _, baselines_only = iaemu_task._seed_job(job(1))  # beyond paper_seeds: no paper model
    assert set(baselines_only["err_over_scatter"]) == {"ensemble", "mse_mlp", "knn_5"}
    assert set(baselines_only["calibration"]) == {"ensemble"}
    # a change of config that shapes training is a different cache entry; the seed count is not
    assert iaemu_task.seed_cache_path(cfg, 0, tmp_path, "paper") != iaemu_task.seed_cache_path(
        IAEmuConfig(**{**cfg.__dict__, "paper_epochs": 2}), 0, tmp_path, "paper")
    for unrelated in ({"n_seeds": 5}, {"epochs": 9}, {"n_test_realisations": 16}):  # run size, baselines, test set
        assert iaemu_task.seed_cache_path(cfg, 0, tmp_path, "paper") == iaemu_task.seed_cache_path(
            IAEmuConfig(**{**cfg.__dict__, **unrelated}), 0, tmp_path, "paper")


@pytest.mark.parametrize("flag,value", [("--paper-width", "0"), ("--paper-epochs", "-5")])
def test_seed_worker_rejects_a_non_positive_paper_size_before_training(flag, value, tmp_path, capsys):
    from symgym.learn.tasks.iaemu.task import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0", flag, value, "--out-dir", str(tmp_path)])
    assert exit_info.value.code != 0 and flag in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_full_width_paper_model_is_cached_under_its_own_key_and_the_baselines_under_theirs(tmp_path):
    from dataclasses import replace

    from symgym.learn.tasks.iaemu.task import seed_cache_path

    small = replace(IAEmuConfig(), paper_width=0.25, paper_epochs=200)  # the earlier pilot's size
    full = replace(IAEmuConfig(), paper_width=1.0, paper_epochs=500)
    assert seed_cache_path(small, 0, tmp_path, "paper") != seed_cache_path(full, 0, tmp_path, "paper")
    assert seed_cache_path(small, 0, tmp_path, "baselines") == seed_cache_path(full, 0, tmp_path, "baselines")
    # a paper seed outlasts a sitting and a fresh checkout keeps only what git tracks: it lives in carry/, not cache/
    assert seed_cache_path(full, 0, tmp_path, "paper").parent == tmp_path / "carry" / "iaemu-seeds"
    assert seed_cache_path(full, 0, tmp_path, "baselines").parent == tmp_path / "cache" / "iaemu-seeds"


def test_training_interrupted_at_a_checkpoint_ends_where_an_uninterrupted_run_does(tmp_path):
    """The paper model's training state survives a sitting: stopped after a checkpoint and resumed, it ends with
    the same weights, bit for bit (optimiser, schedule, both random generators and the best state restored)."""
    from symgym.learn.tasks.iaemu.models import IAEmuNet, TrainSettings, train_network

    rng = np.random.default_rng(0)
    low, high = np.zeros(7), np.ones(7)
    theta, y = rng.uniform(size=(24, 7)), rng.normal(size=(24, 2, 3, 5))
    vtheta, vy = theta, y  # validation on the training data: the best state is the last one, after the resume
    settings = TrainSettings(epochs=6, batch_size=8, lr=1e-2, eval_every=1)

    def net():
        torch.manual_seed(1)
        return IAEmuNet(low, high, 5, width=0.25)

    reference = train_network(net(), theta, y, vtheta, vy, settings, seed=3, kind="paper")
    ckpt = tmp_path / "paper.partial.pt"

    class Stop(Exception):
        pass

    import symgym.learn.tasks.iaemu.models as models_module
    real_save = models_module.save_torch

    def save_then_stop(obj, path):
        real_save(obj, path)
        raise Stop

    models_module.save_torch = save_then_stop
    try:
        with pytest.raises(Stop):
            train_network(net(), theta, y, vtheta, vy, settings, seed=3, kind="paper", checkpoint=ckpt, checkpoint_every=3)
    finally:
        models_module.save_torch = real_save
    assert ckpt.exists()
    resumed = train_network(net(), theta, y, vtheta, vy, settings, seed=3, kind="paper", checkpoint=ckpt,
                            checkpoint_every=3)
    assert not ckpt.exists()
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_pilot_check_trains_on_tuning_seeds_only_caches_each_run_and_picks_the_lowest_mean_cell(tmp_path, capsys):
    from dataclasses import replace

    from symgym.learn.tasks.iaemu.pilot_check import table
    from symgym.learn.tasks.iaemu.tuning import main, tune_run

    cfg = replace(IAEmuConfig(), paper_width=0.25, paper_batch_size=16)
    rng = np.random.default_rng(0)
    train = {"theta": sample_params(40, seed=1), "stats": rng.normal(1.0, 0.1, (40, 2, 3, 20))}
    z = Standardiser.fit(to_model_space(train["stats"])).forward(to_model_space(train["stats"]))
    with pytest.raises(ValueError, match="comparison seed"):
        tune_run(cfg, 0, 16, 1e-2, 2, train, z, cache=tmp_path)
    cells = ((16, 1e-3), (16, 1e-1), (8, 1e-3))
    runs = {(s, b, lr): tune_run(cfg, s, b, lr, 2, train, z, cache=tmp_path) for s in (100, 101) for b, lr in cells}
    assert len(list(tmp_path.glob("*.json"))) == 6 and not list(tmp_path.glob("*.partial.pt"))
    score = {key: run["validation_score"] for key, run in runs.items()}
    assert runs[100, 8, 1e-3]["batch"] == 8 and score[100, 8, 1e-3] != score[100, 16, 1e-3]  # the batch reached training
    assert tune_run(cfg, 100, 16, 1e-3, 2, train, z, cache=tmp_path) == runs[100, 16, 1e-3]  # read back, not retrained
    partial = table(2, cache=tmp_path, cells=cells + ((32, 1e-2),))  # a cell has not run: no choice yet
    assert not partial["complete"] and partial["chosen"] is None and partial["agrees"] is None
    got = table(2, cache=tmp_path, configured=(16, 1e-1), cells=cells)
    mean = {c: np.mean([runs[(s, *c)]["validation_score"] for s in (100, 101)]) for c in cells}
    assert got["seeds_complete"] == [100, 101] and tuple(got["chosen"]) == min(mean, key=mean.get)
    assert got["agrees"] == (tuple(got["chosen"]) == (16, 1e-1))
    from symgym.learn.tasks.iaemu.plots import plot_pilot_check

    plot_pilot_check(tmp_path / "pilot.png", got)
    assert (tmp_path / "pilot.png").stat().st_size > 10_000
    assert table(3, cache=tmp_path) is None  # another schedule: no runs
    with pytest.raises(SystemExit) as exit_info:  # a comparison seed is refused before anything is trained
        main(["run", "--seeds", "2"])
    assert exit_info.value.code != 0 and "got [2]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # so is a malformed cell
        main(["run", "--cells", "128-1e-2"])
    assert exit_info.value.code != 0 and "'128-1e-2'" in capsys.readouterr().err
