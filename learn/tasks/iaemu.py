"""IAEmu: a neural emulator of galaxy intrinsic-alignment statistics with uncertainty.

The simulator (:mod:`physics.galaxies`) maps 7 parameters (Zheng07 HOD + central and
satellite alignment strengths) to three noisy correlation functions xi, omega, eta in 20
radial bins. The emulator replaces it with a network:

- a shared MLP encoder of the (box-normalised) parameters, one head per statistic that
  predicts a mean and a log-variance per bin (aleatoric: the realisation-to-realisation
  scatter), trained with the beta-NLL loss (Seitzer et al. 2022) on individual
  realisations, with xi log-transformed (log(1+xi)) and every output standardised;
- a deep ensemble of such networks whose disagreement is the epistemic uncertainty;
- baselines with no uncertainty: one MSE-trained MLP on realisation means, and a k-NN
  interpolator;
- an inverse problem: recover (mu_cen, mu_sat) of a held-out mock by gradient descent on
  the Gaussian likelihood through the differentiable emulator, with a Laplace (Hessian)
  uncertainty, checked against a grid posterior.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import qmc
from torch import nn
from tqdm.auto import tqdm

from learn.io import atomic_path
from learn.tasks.iaemu_plots import plot_curves, plot_inverse, plot_uncertainty
from physics.galaxies import (
    PARAM_NAMES,
    STAT_NAMES,
    HaloCatalogueConfig,
    HODParams,
    make_halo_catalogue,
    radial_bins,
    simulate,
)

#: training prior: a box in (log_m_min, sigma_log_m, log_m0, log_m1, alpha, mu_cen, mu_sat)
PARAM_LOW = np.array([11.5, 0.1, 11.0, 12.8, 0.8, -1.0, -1.0])
PARAM_HIGH = np.array([12.3, 0.5, 12.0, 13.8, 1.2, 1.0, 1.0])
ALIGN = [PARAM_NAMES.index("mu_cen"), PARAM_NAMES.index("mu_sat")]
XI_FLOOR = 1e-2  # 1 + xi is floored before the log so an empty bin cannot give -inf
CACHE_VERSION = 2


@dataclass(frozen=True)
class IAEmuConfig:
    n_train_params: int = 480
    n_test_params: int = 60
    n_realisations: int = 4
    n_halos: int = 10000
    ensemble_size: int = 5
    hidden: int = 128
    epochs: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    beta: float = 0.5  # beta-NLL exponent: 0 is plain NLL, 1 behaves like MSE for the mean
    val_fraction: float = 0.1
    knn_k: int = 5
    n_inverse: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train_params", "n_test_params", "n_realisations", "ensemble_size", "epochs", "n_inverse"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_realisations < 2:
            raise ValueError(f"n_realisations must be >= 2 to measure scatter, got {self.n_realisations}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")


QUICK = IAEmuConfig(n_train_params=200, n_test_params=40, n_realisations=3, ensemble_size=3, epochs=250, n_inverse=6)


# --------------------------------------------------------------------------- data
def sample_params(n: int, seed: int, low: np.ndarray = PARAM_LOW, high: np.ndarray = PARAM_HIGH) -> np.ndarray:
    """``n`` Latin-hypercube parameter sets in the box [low, high]."""
    unit = qmc.LatinHypercube(d=len(low), seed=seed).random(n)
    return low + unit * (high - low)


def generate_dataset(
    n_params: int,
    n_realisations: int,
    seed: int,
    halo_config: HaloCatalogueConfig = HaloCatalogueConfig(),
    cache_dir: str | Path | None = "results/cache",
    progress: bool = True,
    halo_seed: int = 0,
) -> dict[str, np.ndarray]:
    """Simulate ``n_realisations`` mocks at each of ``n_params`` sampled parameter sets.

    ``seed`` draws the parameters and HOD realisations; ``halo_seed`` fixes the halo catalogue, which
    train and test sets must share (the emulator models one simulation box, not cosmic variance).
    Returns ``theta`` (P, 7), ``stats`` (P, R, 3, n_bins), ``r`` (bin centres) and ``seconds``
    (simulator wall time per realisation). Cached under ``cache_dir`` keyed by a hash of
    everything that determines the data.
    """
    edges = radial_bins()
    key = {
        "version": CACHE_VERSION, "n_params": n_params, "n_realisations": n_realisations, "seed": seed,
        "halo_seed": halo_seed,
        "halos": asdict(halo_config), "edges": edges.round(8).tolist(),
        "low": PARAM_LOW.tolist(), "high": PARAM_HIGH.tolist(),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"iaemu_{digest}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}

    halos = make_halo_catalogue(halo_config, seed=halo_seed)  # one fixed catalogue, like one N-body box
    theta = sample_params(n_params, seed=seed + 1)
    stats = np.empty((n_params, n_realisations, len(STAT_NAMES), len(edges) - 1))
    start = time.perf_counter()
    for i in tqdm(range(n_params), desc=f"iaemu: simulating {n_params}x{n_realisations} mocks", disable=not progress):
        stats[i] = simulate(halos, HODParams.from_array(theta[i]), edges, n_realisations, seed=seed * 100_003 + i)
    data = {
        "theta": theta, "stats": stats, "r": np.sqrt(edges[1:] * edges[:-1]),
        "seconds": np.array((time.perf_counter() - start) / (n_params * n_realisations)),
    }
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **data)
    return data


def to_model_space(stats: np.ndarray) -> np.ndarray:
    """(…, 3, n_bins) physical statistics -> network targets: xi becomes log(1 + xi)."""
    out = np.array(stats, dtype=float, copy=True)
    out[..., 0, :] = np.log(np.maximum(1.0 + out[..., 0, :], XI_FLOOR))
    return out


def from_model_space(y: np.ndarray) -> np.ndarray:
    out = np.array(y, dtype=float, copy=True)
    out[..., 0, :] = np.exp(out[..., 0, :]) - 1.0
    return out


@dataclass
class Standardiser:
    """Per-(statistic, bin) affine map fitted on training targets."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, y: np.ndarray) -> "Standardiser":
        flat = y.reshape(-1, *y.shape[-2:])
        return cls(flat.mean(0), flat.std(0) + 1e-8)

    def forward(self, y: np.ndarray) -> np.ndarray:
        return (y - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean


# --------------------------------------------------------------------------- model
class IAEmulator(nn.Module):
    """Shared encoder + one (mean, log-variance) head per statistic."""

    def __init__(self, n_params: int = 7, n_bins: int = 20, n_stats: int = 3, hidden: int = 128,
                 heteroscedastic: bool = True):
        super().__init__()
        self.n_bins, self.n_stats, self.heteroscedastic = n_bins, n_stats, heteroscedastic
        self.register_buffer("low", torch.as_tensor(PARAM_LOW[:n_params], dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(PARAM_HIGH[:n_params], dtype=torch.float32))
        self.encoder = nn.Sequential(
            nn.Linear(n_params, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
        )
        out = 2 * n_bins if heteroscedastic else n_bins
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out)) for _ in range(n_stats)
        )

    def forward(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised (mean, log_var), each (B, n_stats, n_bins); log_var is zeros when not heteroscedastic."""
        h = self.encoder(2.0 * (theta - self.low) / (self.high - self.low) - 1.0)
        outs = torch.stack([head(h) for head in self.heads], dim=1)
        if not self.heteroscedastic:
            return outs, torch.zeros_like(outs)
        mean, raw = outs.split(self.n_bins, dim=-1)
        # a soft bound keeps the variance away from 0 and inf early in training
        return mean, 6.0 * torch.tanh(raw / 6.0) - 2.0


def beta_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """beta-NLL: the Gaussian NLL with each point weighted by stop-grad(var**beta)."""
    var = log_var.exp()
    nll = 0.5 * (log_var + (target - mean) ** 2 / var)
    return (nll * var.detach() ** beta).mean() if beta > 0 else nll.mean()


def train_member(theta: np.ndarray, y: np.ndarray, val_theta: np.ndarray, val_y: np.ndarray,
                 cfg: IAEmuConfig, seed: int, heteroscedastic: bool = True) -> IAEmulator:
    """Train one network on (theta, standardised target) pairs; keeps the best validation state."""
    torch.manual_seed(seed)
    model = IAEmulator(theta.shape[1], y.shape[-1], y.shape[-2], cfg.hidden, heteroscedastic)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    x_t, y_t = torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    vx, vy = torch.as_tensor(val_theta, dtype=torch.float32), torch.as_tensor(val_y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)

    def loss_fn(mean, log_var, target, beta):
        return beta_nll(mean, log_var, target, beta) if heteroscedastic else ((mean - target) ** 2).mean()

    best, best_state = float("inf"), None
    for epoch in range(cfg.epochs):
        model.train()
        for idx in torch.randperm(len(x_t), generator=gen).split(cfg.batch_size):
            loss = loss_fn(*model(x_t[idx]), y_t[idx], cfg.beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if epoch % 10 == 9 or epoch == cfg.epochs - 1:
            model.eval()
            with torch.no_grad():
                val = loss_fn(*model(vx), vy, 0.0).item()  # plain NLL judges mean and variance together
            if val < best:
                best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model.eval()


def ensemble_predict(models: list[IAEmulator], theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mixture moments of a deep ensemble (standardised space): mean, aleatoric and epistemic variance."""
    means, log_vars = zip(*(m(theta) for m in models))
    means, variances = torch.stack(means), torch.stack(log_vars).exp()
    epistemic = means.var(0, unbiased=False) if len(models) > 1 else torch.zeros_like(means[0])
    return {"mean": means.mean(0), "aleatoric": variances.mean(0), "epistemic": epistemic}


def knn_predict(train_theta: np.ndarray, train_y: np.ndarray, theta: np.ndarray, k: int) -> np.ndarray:
    """Inverse-distance-weighted k nearest neighbours in box-normalised parameter space."""
    scale = PARAM_HIGH - PARAM_LOW
    d = np.linalg.norm((theta[:, None] - train_theta[None]) / scale, axis=-1)
    nearest = np.argsort(d, axis=1)[:, :k]
    w = 1.0 / (np.take_along_axis(d, nearest, 1) + 1e-6)
    return np.einsum("pk,pk...->p...", w / w.sum(1, keepdims=True), train_y[nearest])


# --------------------------------------------------------------------------- inverse problem
def residual_covariance(samples: np.ndarray, scale: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Bin-to-bin noise covariance pooled over parameter sets, with Ledoit-Wolf-type shrinkage.

    ``samples`` (P, R, D): R repeated realisations at each of P parameter sets (D = flattened
    statistics x bins). The residuals of realisations around their own set's mean are pooled across
    sets; dividing them by ``scale`` (P, D), e.g. the emulator's aleatoric sd at each set, first
    makes the noise of differently noisy sets comparable, so the result is the covariance in units
    of that sd (close to a correlation matrix when the scale is calibrated). Neighbouring bins share
    galaxy pairs, hence the off-diagonal terms. The off-diagonal part is shrunk towards zero with the
    Schaefer-Strimmer intensity ``lambda = sum Var(s_ij) / sum s_ij^2`` (i != j), which is small
    when the pooled sample is large. Returns ``(covariance (D, D), lambda)``.
    """
    samples = np.asarray(samples, dtype=float)
    if samples.ndim != 3 or samples.shape[1] < 2:
        raise ValueError(f"samples must be (P, R>=2, D), got shape {samples.shape}")
    P, R, D = samples.shape
    # sqrt(R/(R-1)) undoes the shrinkage of residuals around a mean estimated from the same R draws
    resid = (samples - samples.mean(1, keepdims=True)) * np.sqrt(R / (R - 1))
    if scale is not None:
        scale = np.asarray(scale, dtype=float)
        if scale.shape != (P, D) or np.any(scale <= 0):
            raise ValueError(f"scale must be positive with shape {(P, D)}, got shape {scale.shape}")
        resid = resid / scale[:, None]
    e = resid.reshape(P * R, D)
    n = len(e)
    sample_cov = e.T @ e / n
    w_sq_mean = np.einsum("ni,nj->ij", e**2, e**2) / n  # mean of (e_i e_j)^2 over samples
    var_s = np.maximum(w_sq_mean - sample_cov**2, 0.0) / max(n - 1, 1)  # variance of each entry's estimate
    off = ~np.eye(D, dtype=bool)
    denom = float((sample_cov[off] ** 2).sum())
    lam = float(np.clip(var_s[off].sum() / denom, 0.0, 1.0)) if denom > 0 else 1.0
    shrunk = sample_cov * (1.0 - lam)
    np.fill_diagonal(shrunk, np.diag(sample_cov))
    return shrunk, lam


def _gaussian_nll(residual: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Full Gaussian negative log-likelihood (up to a constant) of (N, D) residuals under (N, D, D) covariances."""
    chol = torch.linalg.cholesky(cov)
    white = torch.linalg.solve_triangular(chol, residual.unsqueeze(-1), upper=False).squeeze(-1)
    return 0.5 * (white**2).sum(-1) + torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)


def fit_alignment(predict, theta_true: np.ndarray, observed: torch.Tensor, noise_var_scale: float,
                  noise_cov: np.ndarray | None = None,
                  starts=((-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)), steps: int = 300,
                  grid: int = 81) -> dict:
    """Recover (mu_cen, mu_sat) with the other parameters fixed at ``theta_true``.

    ``predict(theta) -> dict(mean, aleatoric, epistemic)`` in the space of ``observed``. The
    likelihood is Gaussian. With ``noise_cov=None`` its covariance is diagonal,
    ``aleatoric * noise_var_scale + epistemic`` (``noise_var_scale = 1/R`` when the observation
    averages R realisations), i.e. every bin independent. With ``noise_cov`` (D, D) over the
    flattened statistics -- the bin-to-bin noise covariance in units of the aleatoric sd, see
    :func:`residual_covariance` -- the noise part becomes ``S K S * noise_var_scale`` with
    ``S = diag(sqrt(aleatoric))``, plus the epistemic variance on the diagonal. Bins that share
    galaxies then no longer count as independent evidence.

    Gradient descent from several starts (run as one batch) through ``mu = tanh(u)``; the Laplace
    covariance is the inverse Hessian of the negative log-likelihood in mu at the optimum. A grid
    posterior (flat prior) checks it.
    """
    base = torch.as_tensor(theta_true, dtype=torch.float32)
    obs_flat = observed.reshape(-1)
    if noise_cov is not None:
        noise_cov = np.asarray(noise_cov)
        if noise_cov.shape != (obs_flat.numel(), obs_flat.numel()):
            raise ValueError(f"noise_cov must be {(obs_flat.numel(),) * 2}, got shape {noise_cov.shape}")
        k_mat = torch.as_tensor(noise_cov, dtype=torch.float64)

    def nll(mu: torch.Tensor) -> torch.Tensor:
        theta = base.expand(mu.shape[0], -1).clone()
        theta[:, ALIGN] = mu
        p = predict(theta)
        resid = (obs_flat - p["mean"].flatten(1)).double()
        alea, epi = p["aleatoric"].flatten(1).double(), p["epistemic"].flatten(1).double()
        if noise_cov is None:
            var = alea * noise_var_scale + epi
            return 0.5 * ((resid**2 / var) + var.log()).sum(1)
        sd = alea.sqrt()
        cov = sd[:, :, None] * k_mat * sd[:, None, :] * noise_var_scale
        if "epistemic_factors" in p:  # (N, E, D): the ensemble's errors are smooth across bins, not independent
            factors = p["epistemic_factors"].flatten(2).double()
            return _gaussian_nll(resid, cov + factors.transpose(1, 2) @ factors)
        cov = cov + torch.diag_embed(epi)
        return _gaussian_nll(resid, cov)

    # Adam is elementwise and the rows of nll are independent, so a batch of starts equals separate runs
    u = torch.atanh(torch.tensor(starts, dtype=torch.float32) * 0.99).requires_grad_(True)
    opt = torch.optim.Adam([u], lr=0.05)
    for _ in range(steps):
        loss = nll(torch.tanh(u)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        finals = nll(torch.tanh(u))
    best_mu = torch.tanh(u).detach()[int(torch.argmin(finals))]

    hessian = torch.autograd.functional.hessian(lambda m: nll(m[None])[0], best_mu).double().numpy()
    # Laplace needs an interior optimum with a positive-definite Hessian; on the [-1, 1] boundary
    # (or a flat direction) the grid posterior's spread is the honest uncertainty
    interior = bool(np.all(np.abs(best_mu.numpy()) < 0.98) and np.all(np.linalg.eigvalsh(hessian) > 0))
    laplace = np.sqrt(np.diag(np.linalg.inv(hessian))) if interior else None

    # grid posterior (flat prior on [-1, 1]^2), zoomed on the optimum so that a narrow peak is resolved
    half = np.clip(6.0 * laplace, 0.05, 1.0) if interior else np.ones(2)
    lo, hi = np.clip(best_mu.numpy() - half, -1, 1), np.clip(best_mu.numpy() + half, -1, 1)
    axes = [np.linspace(lo[k], hi[k], grid) for k in range(2)]
    mesh = torch.as_tensor(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2), dtype=torch.float32)
    with torch.no_grad():  # chunked: a full covariance per grid point is (chunk, D, D)
        log_post = -torch.cat([nll(chunk) for chunk in mesh.split(1024)]).numpy().reshape(grid, grid)
    post = np.exp(log_post - log_post.max())
    post /= post.sum()
    marg = [post.sum(1), post.sum(0)]
    gmean = np.array([(marg[k] * axes[k]).sum() for k in range(2)])
    gstd = np.sqrt(np.maximum(np.array([(marg[k] * axes[k] ** 2).sum() for k in range(2)]) - gmean**2, 0.0))
    sigma = laplace if interior else gstd
    truth = np.asarray(theta_true)[ALIGN]
    return {
        "truth": truth, "fit": best_mu.numpy().astype(float), "sigma": sigma,
        "sigma_source": "laplace" if interior else "grid", "grid_mean": gmean, "grid_std": gstd,
        "grid_axes": axes, "grid_posterior": post, "z": (best_mu.numpy() - truth) / np.maximum(sigma, 1e-9),
    }


# --------------------------------------------------------------------------- evaluation
def relative_errors(pred: np.ndarray, truth: np.ndarray, sem: np.ndarray) -> dict[str, dict[str, float]]:
    """Median |pred - truth| / |truth| per statistic, over all bins and over bins where the
    truth differs from zero by more than two standard errors (omega and eta vanish at mu=0)."""
    out = {}
    for s, name in enumerate(STAT_NAMES):
        rel = np.abs(pred[:, s] - truth[:, s]) / np.maximum(np.abs(truth[:, s]), 1e-12)
        significant = np.abs(truth[:, s]) > 2.0 * sem[:, s]
        out[name] = {
            "median_rel_err": float(np.median(rel)),
            "median_rel_err_significant_bins": float(np.median(rel[significant])) if significant.any() else None,
            "fraction_significant_bins": float(significant.mean()),
        }
    return out


def coverage(z: np.ndarray) -> dict[str, dict[str, float]]:
    """Fraction of held-out realisations within 1 and 2 predicted sigma, per statistic (z: P, R, 3, B)."""
    return {name: {"within_1sigma": float((np.abs(z[:, :, s]) < 1).mean()),
                   "within_2sigma": float((np.abs(z[:, :, s]) < 2).mean())}
            for s, name in enumerate(STAT_NAMES)}


def epistemic_inflation(z: np.ndarray, pred: dict, target: float = 0.683) -> np.ndarray:
    """Per-statistic factor c >= 1 such that a fraction ``target`` of the (validation) realisations ``z``
    (P, R, 3, B) fall within one sigma of ``sqrt(aleatoric + c * epistemic)``.

    A small ensemble under-estimates its own error where data are scarce; scaling the epistemic
    variance on held-out validation data (never the test set) is a standard post-hoc recalibration.
    """
    resid = np.abs(z - pred["mean"][:, None])
    factors = []
    for s in range(z.shape[2]):
        a, e, r = pred["aleatoric"][:, None, s], pred["epistemic"][:, None, s], resid[:, :, s]

        def cover(c: float) -> float:
            return float((r < np.sqrt(a + c * e)).mean())

        lo, hi = 0.0, 12.0  # bisection in log10(c)
        if cover(1.0) >= target:
            factors.append(1.0)
            continue
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cover(10**mid) < target else (lo, mid)
        factors.append(10**hi)
    return np.array(factors)


def inverse_coverage(fits: list[dict]) -> dict[str, dict[str, float]]:
    """Per alignment coordinate: fraction of fits whose truth lies within 1 and 2 reported sigma, and median |z|."""
    z = np.abs(np.array([f["z"] for f in fits]))
    return {name: {"within_1sigma": float((z[:, k] < 1).mean()), "within_2sigma": float((z[:, k] < 2).mean()),
                   "median_abs_z": float(np.median(z[:, k]))}
            for k, name in enumerate(("mu_cen", "mu_sat"))}


def _outside_params(n: int, rng: np.random.Generator, expand: float = 0.5) -> np.ndarray:
    """Parameter sets outside the training box (HOD dims widened by ``expand`` x width; mu stays in [-1, 1])."""
    width = PARAM_HIGH - PARAM_LOW
    low, high = PARAM_LOW - expand * width, PARAM_HIGH + expand * width
    low[ALIGN], high[ALIGN] = -1.0, 1.0
    low[1] = max(low[1], 0.02)  # sigma_log_m must stay positive
    out = np.empty((0, len(PARAM_LOW)))
    while len(out) < n:
        cand = rng.uniform(low, high, size=(4 * n, len(low)))
        inside = np.all((cand >= PARAM_LOW) & (cand <= PARAM_HIGH), axis=1)
        out = np.concatenate([out, cand[~inside]])
    return out[:n]


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), config: IAEmuConfig | None = None) -> dict:
    """Simulate, train the ensemble and baselines, evaluate, plot; returns the results dict."""
    torch.set_num_threads(1)
    cfg = replace(config or (QUICK if quick else IAEmuConfig()), seed=seed)
    out_dir = Path(out_dir)
    halo_cfg = replace(HaloCatalogueConfig(), n_halos=cfg.n_halos)
    cache = out_dir / "cache"
    # train and test share the halo catalogue (seed) but use disjoint parameter draws and HOD seeds
    train = generate_dataset(cfg.n_train_params, cfg.n_realisations, seed, halo_cfg, cache, halo_seed=seed)
    test = generate_dataset(cfg.n_test_params, cfg.n_realisations, seed + 7919, halo_cfg, cache, halo_seed=seed)
    if not np.allclose(train["r"], test["r"]):
        raise ValueError("train and test radial bins differ")

    y_train = to_model_space(train["stats"])  # (P, R, 3, B)
    norm = Standardiser.fit(y_train)
    z_train = norm.forward(y_train)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(cfg.val_fraction * cfg.n_train_params))
    perm = rng.permutation(cfg.n_train_params)
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    R = cfg.n_realisations

    def per_realisation(idx):  # every realisation is one (theta, y) sample: the scatter is the aleatoric signal
        return np.repeat(train["theta"][idx], R, axis=0), z_train[idx].reshape(-1, *z_train.shape[-2:])

    fx, fy = per_realisation(fit_idx)
    vx, vy = per_realisation(val_idx)
    t0 = time.perf_counter()
    members = [train_member(fx, fy, vx, vy, cfg, seed=seed * 1000 + k)
               for k in tqdm(range(cfg.ensemble_size), desc="iaemu: ensemble")]
    train_seconds = time.perf_counter() - t0
    mse_model = train_member(train["theta"][fit_idx], z_train[fit_idx].mean(1), train["theta"][val_idx],
                             z_train[val_idx].mean(1), cfg, seed=seed * 1000 + 999, heteroscedastic=False)

    # ---- held-out accuracy
    theta_test = torch.as_tensor(test["theta"], dtype=torch.float32)
    with torch.no_grad():
        pred = {k: v.numpy() for k, v in ensemble_predict(members, theta_test).items()}
        mse_mean = mse_model(theta_test)[0].numpy()
    y_test = to_model_space(test["stats"])
    truth = from_model_space(y_test.mean(1))  # geometric mean for xi: every model predicts in log(1+xi)
    sem = test["stats"].std(1, ddof=1) / np.sqrt(R)
    knn = knn_predict(train["theta"], z_train.mean(1), test["theta"], cfg.knn_k)
    accuracy = {
        "ensemble_beta_nll": relative_errors(from_model_space(norm.inverse(pred["mean"])), truth, sem),
        "mse_mlp": relative_errors(from_model_space(norm.inverse(mse_mean)), truth, sem),
        f"knn_{cfg.knn_k}": relative_errors(from_model_space(norm.inverse(knn)), truth, sem),
    }
    # errors in units of one realisation's scatter: how far the emulator is compared with the simulator's own noise
    scatter = y_test.std(1, ddof=1)
    err_over_scatter = {
        name: float(np.median(np.abs(norm.inverse(pred["mean"]) - y_test.mean(1))[:, s] / scatter[:, s]))
        for s, name in enumerate(STAT_NAMES)
    }

    # ---- calibration of a new realisation against total (aleatoric + epistemic) predicted variance
    z_test = norm.forward(y_test)
    total_sd = np.sqrt(pred["aleatoric"] + pred["epistemic"])
    z = (z_test - pred["mean"][:, None]) / total_sd[:, None]
    z_alea = (z_test - pred["mean"][:, None]) / np.sqrt(pred["aleatoric"])[:, None]
    with torch.no_grad():
        val_pred = {k: v.numpy() for k, v in
                    ensemble_predict(members, torch.as_tensor(train["theta"][val_idx], dtype=torch.float32)).items()}
    inflation = epistemic_inflation(z_train[val_idx], val_pred)
    infl = torch.as_tensor(inflation, dtype=torch.float32)[:, None]
    recal_sd = np.sqrt(pred["aleatoric"] + inflation[:, None] * pred["epistemic"])
    z_recal = (z_test - pred["mean"][:, None]) / recal_sd[:, None]

    # ---- epistemic uncertainty inside vs outside the training box
    inside = torch.as_tensor(sample_params(500, seed=seed + 31), dtype=torch.float32)
    outside = torch.as_tensor(_outside_params(500, np.random.default_rng(seed + 37)), dtype=torch.float32)
    with torch.no_grad():
        epi_in = ensemble_predict(members, inside)["epistemic"].sqrt().mean((1, 2)).numpy()
        epi_out = ensemble_predict(members, outside)["epistemic"].sqrt().mean((1, 2)).numpy()

    # ---- speed: simulator vs emulator on this CPU, same run
    halos = make_halo_catalogue(halo_cfg, seed=seed)
    n_time = min(8, cfg.n_test_params)
    t0 = time.perf_counter()
    for i in range(n_time):
        simulate(halos, HODParams.from_array(test["theta"][i]), radial_bins(), 1, seed=i)
    sim_s = (time.perf_counter() - t0) / n_time
    with torch.no_grad():
        t0 = time.perf_counter()
        for i in range(100):
            ensemble_predict(members, theta_test[i % len(theta_test)][None])
        emu_single_s = (time.perf_counter() - t0) / 100
        batch = inside.repeat(2, 1)
        t0 = time.perf_counter()
        ensemble_predict(members, batch)
        emu_batch_s = (time.perf_counter() - t0) / len(batch)

    # ---- inverse problem on held-out mocks, observation = mean of their R realisations
    # bin-to-bin noise covariance from the training realisations, in units of the emulator's aleatoric sd
    with torch.no_grad():
        train_alea = ensemble_predict(members, torch.as_tensor(train["theta"], dtype=torch.float32))["aleatoric"]
    noise_cov, shrinkage = residual_covariance(z_train.reshape(cfg.n_train_params, R, -1),
                                               train_alea.sqrt().numpy().reshape(cfg.n_train_params, -1))

    def predict(theta):  # the recalibrated ensemble: epistemic variance inflated as fitted on validation data
        p = ensemble_predict(members, theta)
        member_means = torch.stack([m(theta)[0] for m in members], 1)  # (N, E, 3, B)
        # E * factors^T factors is the ensemble's (inflated) covariance across all 60 outputs
        factors = (member_means - member_means.mean(1, keepdim=True)) * (infl / len(members)).sqrt()
        return {**p, "epistemic": p["epistemic"] * infl, "epistemic_factors": factors}

    def predict_diagonal(theta):  # the previous likelihood: independent bins, for the before/after comparison
        p = ensemble_predict(members, theta)
        return {**p, "epistemic": p["epistemic"] * infl}

    inverse, inverse_diag = [], []
    for i in tqdm(range(min(cfg.n_inverse, cfg.n_test_params)), desc="iaemu: inverse fits"):
        obs = torch.as_tensor(z_test[i].mean(0), dtype=torch.float32)
        inverse.append(fit_alignment(predict, test["theta"][i], obs, 1.0 / R, noise_cov=noise_cov))
        inverse_diag.append(fit_alignment(predict_diagonal, test["theta"][i], obs, 1.0 / R))
    inv_z = np.array([f["z"] for f in inverse])
    corr = noise_cov / np.sqrt(np.outer(np.diag(noise_cov), np.diag(noise_cov)))
    n_bins = len(train["r"])
    adjacent = {name: float(np.diag(corr[s * n_bins:(s + 1) * n_bins, s * n_bins:(s + 1) * n_bins], 1).mean())
                for s, name in enumerate(STAT_NAMES)}

    results = {
        "data": {
            "n_train_params": cfg.n_train_params, "n_test_params": cfg.n_test_params,
            "n_realisations": R, "n_halos": cfg.n_halos, "n_bins": int(len(train["r"])),
            "r_range_mpc_h": [float(radial_bins()[0]), float(radial_bins()[-1])],
            "param_names": list(PARAM_NAMES), "param_low": PARAM_LOW, "param_high": PARAM_HIGH,
        },
        "model": {"ensemble_size": cfg.ensemble_size, "hidden": cfg.hidden, "epochs": cfg.epochs,
                  "beta": cfg.beta, "train_seconds_ensemble": round(train_seconds, 1)},
        "accuracy": accuracy,
        "median_abs_err_over_realisation_scatter": err_over_scatter,
        "calibration_total": coverage(z),
        "calibration_aleatoric_only": coverage(z_alea),
        "calibration_recalibrated": coverage(z_recal),
        "epistemic_inflation_from_validation": dict(zip(STAT_NAMES, inflation.tolist())),
        "calibration_expected": {"within_1sigma": 0.683, "within_2sigma": 0.954},
        "epistemic_std": {
            "inside_median": float(np.median(epi_in)), "outside_median": float(np.median(epi_out)),
            "ratio_outside_inside": float(np.median(epi_out) / np.median(epi_in)),
            "fraction_outside_above_inside_median": float((epi_out > np.median(epi_in)).mean()),
        },
        "speed": {
            "simulator_s_per_realisation": sim_s,
            "simulator_s_per_param_set_generation": float(train["seconds"]) * R,
            "emulator_s_per_param_set_single": emu_single_s,
            "emulator_s_per_param_set_batched": emu_batch_s,
            "speedup_single": sim_s / emu_single_s, "speedup_batched": sim_s / emu_batch_s,
        },
        "inverse": {
            "cases": [{k: f[k] for k in ("truth", "fit", "sigma", "sigma_source", "grid_mean", "grid_std", "z")}
                      for f in inverse],
            "fraction_within_1sigma": float((np.abs(inv_z) < 1).all(1).mean()),
            "fraction_within_2sigma": float((np.abs(inv_z) < 2).all(1).mean()),
            "median_abs_error": float(np.median(np.abs([f["fit"] - f["truth"] for f in inverse]))),
            "n_mocks": len(inverse),
            "likelihood": "full Gaussian: pooled bin-to-bin noise covariance (shrunk) x aleatoric sd / R "
                          "+ inflated ensemble covariance across bins",
            "per_coordinate": inverse_coverage(inverse),
            "expected": {"within_1sigma": 0.683, "within_2sigma": 0.954},
            "noise_covariance": {"shrinkage": shrinkage, "mean_adjacent_bin_correlation": adjacent,
                                 "n_residual_samples": cfg.n_train_params * R},
            "diagonal_likelihood_same_mocks": {
                "per_coordinate": inverse_coverage(inverse_diag),
                "median_abs_error": float(np.median(np.abs([f["fit"] - f["truth"] for f in inverse_diag]))),
            },
        },
    }
    plot_curves(out_dir / "iaemu_curves.png", train["r"], test, norm, pred)
    plot_uncertainty(out_dir / "iaemu_uncertainty.png", z, z_recal, epi_in, epi_out)
    plot_inverse(out_dir / "iaemu_inverse.png", inverse)
    return results
