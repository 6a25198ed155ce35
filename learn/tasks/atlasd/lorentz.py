"""AtlasD in 4 dimensions: discover so(1, 3), and how many generators it has, from jet observables.

Charts are regions of jet phase space (``physics.jets.JetFamily``), each with its own Lorentz-
invariant observable; one MLP per chart learns it from raw four-momenta (it is told nothing about
the symmetry). :func:`discover_generator_count` then adds generators one at a time until the
held-out equivariance loss jumps, and the accepted algebra is compared with so(1, 3): principal
angles between the spans, structure constants of the true basis projected onto the found span,
closure of the bracket and the signature of the trace form (3 boosts +, 3 rotations -).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn

from symgym.equivariance.discovery_count import GeneratorCountConfig, discover_generator_count
from symgym.equivariance.discovery import (
    LieDiscoveryConfig,
    PointSetAction,
    compare_algebras,
    evaluate_group,
    linearised_symmetry_form,
    principal_angles,
)
from symgym.physics.jets import JetFamily


class JetMLP(nn.Module):
    """Plain MLP on the flattened four-momenta of a jet (no symmetry built in)."""

    def __init__(self, n_particles: int, dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_particles * dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1)
        )

    def forward(self, jets: torch.Tensor) -> torch.Tensor:
        return self.net(jets.flatten(1))[:, 0]


@dataclass
class LorentzConfig:
    n_charts: int = 3
    n_particles: int = 3
    spatial_dims: int = 3
    train_jets: int = 8192
    train_rapidity: float = 1.0  # training jets are spread this far along the group around the chart
    probe_jets: int = 512
    fit_steps: int = 4000
    hidden: int = 128
    lie: LieDiscoveryConfig = field(default_factory=lambda: LieDiscoveryConfig(steps=150, restarts=2, batch=64, coef_std=0.5))
    count: GeneratorCountConfig = field(default_factory=lambda: GeneratorCountConfig(max_generators=8))

    @classmethod
    def quick(cls) -> "LorentzConfig":
        return cls(
            n_charts=2, spatial_dims=2, train_jets=2048, fit_steps=600, hidden=64, probe_jets=256,
            lie=LieDiscoveryConfig(steps=40, restarts=1, batch=32, coef_std=0.5),
            count=GeneratorCountConfig(max_generators=5),
        )


def fit_jet_predictor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int, batch: int = 256) -> float:
    """Adam + cosine schedule on MSE; returns the relative MSE on held-out jets of the same chart."""
    gen = torch.Generator().manual_seed(seed)
    n_fit = int(0.9 * len(x))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for _ in range(steps):
        idx = torch.randint(0, n_fit, (batch,), generator=gen)
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        pred = model(x[n_fit:])
    return float(((pred - y[n_fit:]) ** 2).mean() / y[n_fit:].var())


def random_subspace_angles(dim: int, k: int, truth: np.ndarray, n: int, seed: int) -> list[float]:
    """Max principal angle between ``n`` random ``k``-dim subspaces of gl(dim) and the truth (chance level)."""
    rng = np.random.default_rng(seed)
    return [float(principal_angles(rng.normal(size=(k, dim, dim)), truth).max()) for _ in range(n)]


def train_chart_predictors(fam: JetFamily, cfg, rng: np.random.Generator, seed: int):
    """One frozen predictor per chart of ``fam`` fitted on its own jets, plus probe jets per chart; returns
    ``(predictors, probes, fit_errors)``. ``cfg`` needs n_charts, n_particles, train_jets, train_rapidity,
    probe_jets, hidden and fit_steps (the Lorentz discovery and the coset search share this stage)."""
    predictors, probes, fit_errors = [], [], []
    for c in range(cfg.n_charts):
        jets = fam.sample(c, cfg.train_jets, rng, max_rapidity=cfg.train_rapidity)
        x = torch.tensor(jets, dtype=torch.float32)
        y = torch.tensor(fam.observable(c, jets), dtype=torch.float32)
        model = JetMLP(cfg.n_particles, fam.dim, cfg.hidden)
        fit_errors.append(fit_jet_predictor(model, x, y, cfg.fit_steps, seed=seed * 100 + c))
        predictors.append(model.eval().requires_grad_(False))
        probes.append(torch.tensor(fam.sample(c, cfg.probe_jets, rng), dtype=torch.float32))
    return predictors, probes, fit_errors


def run_lorentz(cfg: LorentzConfig, seed: int) -> dict:
    torch.manual_seed(seed)
    fam = JetFamily(cfg.n_charts, cfg.n_particles, cfg.spatial_dims, seed=seed)
    rng = np.random.default_rng(seed)
    predictors, probes, fit_errors = train_chart_predictors(fam, cfg, rng, seed)
    action = PointSetAction(fam.dim, cfg.n_particles)
    lie = replace(cfg.lie, seed=seed)
    count = discover_generator_count(predictors, probes, action, lie, cfg.count)
    truth = fam.true_generators
    n_true = len(truth)
    spectrum = np.linalg.eigvalsh(linearised_symmetry_form(predictors, probes, action, seed=seed))
    true_loss = evaluate_group(predictors, probes, action, truth / np.sqrt(2), coef_std=lie.coef_std, n=4 * lie.batch, seed=seed + 1)
    # the best basis of the true size, whatever the count said (for the angle comparison)
    at_true_size = count.bases[n_true - 1] if len(count.bases) >= n_true else count.generators
    chance = random_subspace_angles(fam.dim, n_true, truth, 200, seed)
    return {
        "seed": seed,
        "group": f"so(1,{cfg.spatial_dims})",
        "true_n_generators": n_true,
        "discovered_n_generators": count.n_generators,
        "count_correct": count.n_generators == n_true,
        "losses_by_k": [round(v, 6) for v in count.losses],
        "thresholds_by_k": [round(v, 6) for v in count.thresholds],
        "loss_true_algebra": round(true_loss, 6),
        "predictor_relative_mse": [round(e, 6) for e in fit_errors],
        "linearised_spectrum": [float(f"{v:.4g}") for v in spectrum[: n_true + 3]],
        "comparison_accepted": compare_algebras(count.generators, truth) if count.n_generators else None,
        "comparison_at_true_size": compare_algebras(at_true_size, truth),
        "random_subspace_max_angle_deg": {"mean": round(float(np.mean(chance)), 2), "min": round(float(np.min(chance)), 2)},
        "generators": np.round(count.generators, 4).tolist(),
    }
