"""IAEmu inverse problem: recover the alignment strengths of a mock through the differentiable emulator.

Gradient descent on a Gaussian likelihood (diagonal, or with the pooled bin-to-bin noise covariance
of :func:`residual_covariance`) from several starts, a Laplace (inverse-Hessian) uncertainty, and a
grid posterior that checks it.
"""
from __future__ import annotations

import numpy as np
import torch

from symgym.learn.tasks.iaemu.data import ALIGN


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


def inverse_coverage(fits: list[dict]) -> dict[str, dict[str, float]]:
    """Per alignment coordinate: fraction of fits whose truth lies within 1 and 2 reported sigma, and median |z|."""
    z = np.abs(np.array([f["z"] for f in fits]))
    return {name: {"within_1sigma": float((z[:, k] < 1).mean()), "within_2sigma": float((z[:, k] < 2).mean()),
                   "median_abs_z": float(np.median(z[:, k]))}
            for k, name in enumerate(("mu_cen", "mu_sat"))}
