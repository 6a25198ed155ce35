"""Task ``dhn``: the Denoising Hamiltonian Network vs HNN vs a plain network, several systems and seeds.

Models (``MODELS``): ``dhn`` is the paper's operator (block-wise discrete Hamiltonians H+ / H-
with a stride, masked denoising at noise-level-valued masks, progressive super-resolution;
``dhn_block.py``); ``dhn-midpoint`` the earlier single-H implicit-midpoint variant kept as an
ablation; ``hnn`` a Hamiltonian Neural Network stepped with RK4; ``plain`` a residual MLP step
(``dhn_models.py``). Every model gets a per-trajectory latent code learned auto-decoder style:
an ``nn.Embedding`` row per training trajectory, optimised jointly with the network; for an
unseen test trajectory the network is frozen and a fresh code is fitted to its first
``prefix`` observed steps with the model's own training loss. All models train on the same
windows of ``block_size`` states for the same number of iterations (the training budget).

Systems: ``pendulum``, ``double_pendulum`` and ``spring_chain`` (``physics/hamiltonian.py``),
with physical parameters varied per trajectory. Metrics, chosen not to saturate:

* valid prediction time (VPT): steps after the prefix until a trajectory's RMS error (in
  normalised units, where every coordinate has unit spread) first exceeds ``vpt_threshold``;
* energy drift: ``|E(x_t) - E_0| / E_0`` under the true energy with the true parameters,
  averaged over the last tenth of a rollout ``horizon_factor`` (10) times the training
  trajectories' length, i.e. over steps 9x-10x the training horizon;
* parameter probe R^2: a ridge probe from codes to log-parameters, fitted on training codes,
  scored on the fitted test codes (chance: the probe on random codes);
* super-resolution: keep every ``interp_stride``-th (4th) true state after the prefix and fill
  the rest; MSE on the filled states (linear interpolation as a reference).

Ledger (``evidence``): per system and metric, DHN vs HNN and DHN vs plain (and DHN vs its
midpoint ablation), over seeds, with the ledger's intervals (``symgym.learn.evidence.ledger.claim``),
Holm-adjusted across the family. The full-scale study (reference width and data, tuned learning rates,
resumable) is ``full.py``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from symgym.learn.io import save_figure
from symgym.learn.evidence.ledger import adjust, claim
from symgym.learn.tasks.dhn.block import BlockDHN
from symgym.learn.tasks.dhn.plots import plot_overview
from symgym.learn.tasks.dhn.models import HNN, MidpointDHN, PlainMLP, initial_guess, interpolate, n_parameters, rollout
from symgym.physics.hamiltonian import SYSTEMS, get_system, make_dataset

MODELS = ("dhn", "dhn-midpoint", "hnn", "plain")
SYSTEM_NAMES = ("pendulum", "double_pendulum", "spring_chain")
#: metric -> (key in the per-seed results, higher is better, ledger effect)
METRICS = {
    "vpt_steps": (True, "difference"),
    "energy_drift": (False, "ratio"),
    "probe_r2": (True, "difference"),
    "interp_mse": (False, "ratio"),
}


@dataclass
class DHNConfig:
    """Everything a run depends on; saved into the results JSON under ``settings``."""

    systems: tuple[str, ...] = SYSTEM_NAMES
    n_seeds: int = 3
    n_train: int = 48
    n_test: int = 16
    train_length: int = 30  # observed steps per training trajectory: the training horizon
    prefix: int = 20  # observed steps of each test trajectory, used to fit its code
    horizon_factor: int = 10  # rollouts run horizon_factor x train_length steps
    dt: float = 0.1
    substeps: int = 10
    obs_noise: float = 0.0
    block_size: int = 9  # training-window length for every model; also dhn-midpoint's block
    context: int = 4  # dhn-midpoint: known states at the start of each rollout block
    n_iter: int = 8  # dhn-midpoint: denoising passes per block
    dhn_block: int = 4  # dhn: states per block (the paper's kernel)
    dhn_stride: int = 2  # dhn: block stride (states generated per rollout step)
    dhn_width: int = 32
    n_denoise: int = 5  # dhn: denoising passes per block at inference (levels 0, 1/5, .., 1; trained on 10 bins)
    interp_stride: int = 4
    interp_length: int = 32  # steps after the prefix used for super-resolution
    vpt_threshold: float = 0.1
    latent_dim: int = 8
    train_iters: int = 300
    fit_iters: int = 50
    batch: int = 48
    lr: float = 3e-3
    code_lr: float = 1e-2
    code_reg: float = 1e-3
    hidden: int = 128  # baselines' MLP width (parameter counts similar to the DHN's two transformers)
    midpoint_width: int = 48  # dhn-midpoint: transformer width
    midpoint_ff: int = 64  # dhn-midpoint: transformer feed-forward width
    midpoint_local_hidden: int = 64  # dhn-midpoint: width of its per-midpoint (local) Hamiltonian MLP

    @classmethod
    def reference(cls) -> "DHNConfig":
        """The reference implementation's scale (FlyingGiraffe/dhn, ``configs/sinpend_kernel4_stride2.py``).

        There: transformers of width 128 (4 heads, 2 layers), 128-d codes for 1,000 trajectories, Adam at
        lr 1e-4 for 200 epochs of 32 batches (6,400 iterations). Here the same width, code size, trajectory
        count and iteration count; the learning rate is tuned per model by ``full.py`` (this 1e-4 is the
        reference's own). The baselines' MLP width (500) and the midpoint ablation's widths are chosen so that
        every model has 0.57M parameters (within 1%). A batch is 256 windows of ``block_size`` states (the
        reference batches 32 whole 129-state trajectories, every block of each: ~8x more pairs per step);
        64 test trajectories.
        """
        return cls(n_train=1000, n_test=64, dhn_width=128, latent_dim=128, train_iters=6400, lr=1e-4,
                   batch=256, fit_iters=100, hidden=500, midpoint_width=128, midpoint_ff=256,
                   midpoint_local_hidden=470)

    @classmethod
    def quick(cls) -> "DHNConfig":
        return cls(systems=("pendulum",), n_seeds=2, n_train=8, n_test=4, train_length=12, prefix=10,
                   horizon_factor=2, interp_length=8, train_iters=6, fit_iters=2, n_denoise=2, batch=16,
                   dhn_width=16, hidden=32)

    @property
    def horizon(self) -> int:
        return self.horizon_factor * self.train_length

    def validate(self) -> None:
        for name in self.systems:
            if name not in SYSTEMS:
                raise ValueError(f"unknown Hamiltonian system {name!r}; known: {', '.join(SYSTEMS)}")
        if (self.block_size - 1) % self.interp_stride:
            raise ValueError(f"interp_stride {self.interp_stride} must divide block_size - 1 = {self.block_size - 1}")
        if self.interp_stride & (self.interp_stride - 1) or self.interp_stride < 2:
            raise ValueError(f"interp_stride {self.interp_stride} must be a power of two (progressive super-resolution)")
        if self.interp_length % self.interp_stride:
            raise ValueError(f"interp_length {self.interp_length} must be a multiple of interp_stride {self.interp_stride}")
        if not 1 <= self.context < self.block_size:
            raise ValueError(f"context must be in [1, block_size), got {self.context}")
        if self.block_size < max(self.dhn_block + self.dhn_stride, self.interp_stride + 1):
            raise ValueError(f"block_size {self.block_size} too short for a DHN pair ({self.dhn_block}+{self.dhn_stride})")
        if self.prefix < max(self.block_size, self.dhn_block) or self.train_length < self.block_size:
            raise ValueError(f"prefix ({self.prefix}) and train_length ({self.train_length}) must be >= block_size")
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")


# ----------------------------------------------------------------------------- data


@dataclass
class Normaliser:
    """Scale q and p by one scalar each: a canonical transformation up to a time rescaling."""

    q_scale: float
    p_scale: float
    dof: int

    @classmethod
    def fit(cls, states: np.ndarray, dof: int) -> "Normaliser":
        return cls(float(states[..., :dof].std()), float(states[..., dof:].std()), dof)

    def scale(self) -> np.ndarray:
        return np.array([self.q_scale] * self.dof + [self.p_scale] * self.dof)

    def encode(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x / self.scale(), dtype=torch.float32)

    def decode(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().numpy().astype(np.float64) * self.scale()


def make_windows(trajectories: torch.Tensor, length: int, last: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All windows of ``length`` consecutive states (within the first ``last`` states), with their trajectory index."""
    data = trajectories[:, :last] if last else trajectories
    windows = data.unfold(1, length, 1).permute(0, 1, 3, 2)  # (n, n_windows, length, D)
    index = torch.arange(data.shape[0])[:, None].expand(windows.shape[:2])
    return windows.reshape(-1, length, data.shape[-1]), index.reshape(-1)


# ----------------------------------------------------------------------------- training


def build_model(name: str, state_dim: int, cfg: DHNConfig) -> nn.Module:
    if name == "dhn":
        return BlockDHN(state_dim, cfg.latent_dim, cfg.dhn_block, cfg.dhn_stride, width=cfg.dhn_width,
                        ff=2 * cfg.dhn_width, max_interp_stride=cfg.interp_stride, n_denoise=cfg.n_denoise)
    if name == "dhn-midpoint":
        return MidpointDHN(state_dim, cfg.latent_dim, cfg.block_size, width=cfg.midpoint_width, ff=cfg.midpoint_ff,
                           local_hidden=cfg.midpoint_local_hidden)
    if name == "hnn":
        return HNN(state_dim, cfg.latent_dim, cfg.hidden)
    if name == "plain":
        return PlainMLP(state_dim, cfg.latent_dim, cfg.hidden)
    raise ValueError(f"unknown model {name!r}; known: {MODELS}")



def optimise(
    model: nn.Module,
    codes: nn.Embedding,
    windows: torch.Tensor,
    index: torch.Tensor,
    iters: int,
    cfg: DHNConfig,
    generator: torch.Generator,
    train_network: bool = True,
) -> list[float]:
    """Minimise the model's loss over random batches of windows; returns the loss history.

    With ``train_network=False`` only the codes move (test-time code fitting).
    """
    groups = [{"params": codes.parameters(), "lr": cfg.code_lr}]
    if train_network:
        groups.append({"params": model.parameters(), "lr": cfg.lr})
    model.requires_grad_(train_network)
    optimizer = torch.optim.Adam(groups)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(iters, 1))
    history = [train_step(model, codes, optimizer, schedule, windows, index, cfg, generator) for _ in range(iters)]
    model.requires_grad_(True)
    return history


def train_step(model: nn.Module, codes: nn.Embedding, optimizer: torch.optim.Optimizer, schedule, windows: torch.Tensor,
               index: torch.Tensor, cfg: DHNConfig, generator: torch.Generator) -> float:
    """One optimiser step on a random batch of windows (all randomness from ``generator``); returns the loss."""
    batch = torch.randint(0, len(windows), (min(cfg.batch, len(windows)),), generator=generator)
    z = codes(index[batch])
    loss = model.training_loss(windows[batch], z, generator)
    total = loss + cfg.code_reg * (z**2).sum(-1).mean()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    schedule.step()
    return loss.item()


def new_codes(n: int, dim: int) -> nn.Embedding:
    codes = nn.Embedding(n, dim)
    nn.init.normal_(codes.weight, std=0.01)
    return codes


# ----------------------------------------------------------------------------- metrics


def r2_score(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column."""
    residual = ((pred - target) ** 2).sum(0)
    total = ((target - target.mean(0)) ** 2).sum(0)
    return 1.0 - residual / np.maximum(total, 1e-12)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Ridge regression on standardised features (fitted on the training set)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    a = np.c_[(train_x - mean) / std, np.ones(len(train_x))]
    weights = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ train_y)
    return np.c_[(test_x - mean) / std, np.ones(len(test_x))] @ weights


def relative_energy_error(system_name: str, states: np.ndarray, params: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``|E(x_t) - E_ref| / E_ref`` per trajectory and time, with the true parameters."""
    system = get_system(system_name)
    energy = system.energy(states, params[:, None, :])
    return np.abs(energy - reference[:, None]) / np.abs(reference[:, None])


# ----------------------------------------------------------------------------- evaluation


def valid_prediction_time(pred: np.ndarray, truth: np.ndarray, threshold: float) -> np.ndarray:
    """Per trajectory: steps before the RMS error (over coordinates) first exceeds ``threshold``.

    ``pred, truth (n, T + 1, D)`` with index 0 the shared start; a non-finite prediction counts
    as exceeding; a trajectory that never exceeds it gets ``T`` (the horizon: a censored value).
    """
    rmse = np.sqrt(((pred - truth) ** 2).mean(-1))[:, 1:]
    exceeded = ~(rmse <= threshold)  # NaN counts as exceeded
    first = np.where(exceeded.any(1), exceeded.argmax(1), rmse.shape[1])
    return first.astype(float)


def evaluate_seed(models, test_codes, train_codes, train, test, norm, cfg: DHNConfig, rng) -> tuple[dict, dict]:
    """All metrics for every model on one seed's test set; returns ``(metrics, curves)``."""
    observed = norm.encode(test.observations)
    truth = test.states[:, cfg.prefix - 1 : cfg.prefix + cfg.horizon]
    truth_n = norm.encode(truth).numpy()
    e0 = get_system(train.system).energy(truth[:, 0], test.params)
    last_tenth = max(cfg.horizon // cfg.horizon_factor, 1)

    sparse_index = cfg.prefix - 1 + cfg.interp_stride * np.arange(cfg.interp_length // cfg.interp_stride + 1)
    sparse = observed[:, sparse_index]
    dense_truth = norm.encode(test.states[:, sparse_index[0] : sparse_index[-1] + 1]).numpy()
    hidden = np.ones(dense_truth.shape[1], dtype=bool)
    hidden[:: cfg.interp_stride] = False
    known = torch.zeros(dense_truth.shape[:2], dtype=torch.bool)
    known[:, :: cfg.interp_stride] = True
    dense_sparse = torch.zeros(dense_truth.shape, dtype=torch.float32)
    dense_sparse[:, :: cfg.interp_stride] = sparse
    linear = initial_guess(dense_sparse, known).numpy()
    log_train, log_test = np.log(train.params), np.log(test.params)
    random_r2 = r2_score(linear_probe(rng.standard_normal((len(train), cfg.latent_dim)), log_train,
                                      rng.standard_normal((len(test), cfg.latent_dim))), log_test)
    metrics: dict[str, Any] = {
        "linear_interp_mse": float(((linear - dense_truth)[:, hidden] ** 2).mean()),
        "random_codes_probe_r2": float(random_r2.mean()),
    }
    curves: dict[str, Any] = {"rmse": {}, "energy": {}}
    for name, model in models.items():
        z = test_codes[name]
        n_context = {"dhn": cfg.dhn_block, "dhn-midpoint": cfg.context}.get(name, 1)
        start = time.perf_counter()
        pred = rollout(model, observed[:, cfg.prefix - n_context : cfg.prefix], z, cfg.horizon, cfg.n_iter).numpy()
        rollout_seconds = time.perf_counter() - start
        rmse = np.sqrt(((pred - truth_n) ** 2).mean(-1))
        energy = relative_energy_error(train.system, norm.decode(torch.as_tensor(pred)), test.params, e0)
        # a diverged rollout (non-finite, or energy off by more than 1000x) is scored at the cap
        energy = np.where(np.isfinite(energy), np.minimum(energy, 1e3), 1e3)
        vpt = valid_prediction_time(pred, truth_n, cfg.vpt_threshold)
        probe = r2_score(linear_probe(train_codes[name], log_train, z.numpy()), log_test)
        filled = interpolate(model, sparse, z, cfg.interp_stride, cfg.n_iter).numpy()
        metrics[name] = {
            "vpt_steps": float(vpt.mean()),
            "vpt_censored_fraction": float((vpt >= cfg.horizon).mean()),
            "energy_drift": float(energy[:, -last_tenth:].mean()),
            "energy_drift_first_tenth": float(energy[:, 1 : last_tenth + 1].mean()),
            "rmse_at_train_horizon": float(np.nanmean(rmse[:, min(cfg.train_length, cfg.horizon)])),
            "probe_r2": float(probe.mean()),
            **{f"probe_r2_{p}": float(v) for p, v in zip(train.param_names, probe)},
            "interp_mse": float(((filled - dense_truth)[:, hidden] ** 2).mean()),
            "rollout_seconds": round(rollout_seconds, 2),
        }
        curves["rmse"][name] = np.nanmean(np.where(np.isfinite(rmse), rmse, np.nan), 0)
        curves["energy"][name] = energy.mean(0)
    curves["energy"]["true simulator"] = relative_energy_error(train.system, truth, test.params, e0).mean(0)
    return metrics, curves


def run_seed(system: str, seed: int, cfg: DHNConfig) -> tuple[dict, dict]:
    """Train every model on one system and seed, then evaluate; returns ``(results, curves)``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    common = dict(dt=cfg.dt, substeps=cfg.substeps, obs_noise=cfg.obs_noise)
    train = make_dataset(system, cfg.n_train, cfg.train_length, seed=seed, **common)
    test = make_dataset(system, cfg.n_test, cfg.prefix + cfg.horizon, seed=seed + 10_000, **common)
    dof = get_system(system).dof
    norm = Normaliser.fit(train.observations, dof)
    train_windows, train_index = make_windows(norm.encode(train.observations), cfg.block_size)
    prefix_windows, prefix_index = make_windows(norm.encode(test.observations), cfg.block_size, last=cfg.prefix)
    models, train_codes, test_codes, info = {}, {}, {}, {}
    for name in MODELS:
        start = time.perf_counter()
        model = build_model(name, 2 * dof, cfg)
        codes = new_codes(cfg.n_train, cfg.latent_dim)
        history = optimise(model, codes, train_windows, train_index, cfg.train_iters, cfg, generator)
        train_seconds = time.perf_counter() - start
        fitted = new_codes(cfg.n_test, cfg.latent_dim)
        optimise(model, fitted, prefix_windows, prefix_index, cfg.fit_iters, cfg, generator, False)
        model.eval()
        models[name], train_codes[name] = model, codes.weight.detach().numpy().copy()
        test_codes[name] = fitted.weight.detach().clone()
        window = max(len(history) // 10, 1)
        info[name] = {
            "parameters": n_parameters(model),
            "train_iters": cfg.train_iters,
            "train_seconds": round(train_seconds, 1),
            "code_fit_seconds": round(time.perf_counter() - start - train_seconds, 1),
            "train_loss_start": float(np.mean(history[:window])),
            "train_loss_end": float(np.mean(history[-window:])),
        }
    metrics, curves = evaluate_seed(models, test_codes, train_codes, train, test, norm, cfg, rng)
    for name in MODELS:
        metrics[name].update(info[name])
    metrics["param_names"] = list(train.param_names)
    return metrics, curves


def run_system(system: str, seeds: list[int], cfg: DHNConfig) -> dict[str, Any]:
    """Every seed on one system: per-seed results and seed-mean curves (numpy arrays)."""
    per_seed, curves = {}, []
    for seed in seeds:
        per_seed[seed], seed_curves = run_seed(system, seed, cfg)
        curves.append(seed_curves)
    mean_curves = {kind: {name: np.mean([c[kind][name] for c in curves], 0) for name in curves[0][kind]}
                   for kind in ("rmse", "energy")}
    return {"system": system, "seeds": list(seeds), "per_seed": per_seed, "curves": mean_curves}


def summarise(per_system: dict[str, dict], cfg: DHNConfig, models: tuple[str, ...] = MODELS) -> tuple[dict, list]:
    """Seed means / stds per system, model and metric, and the ledger entries (DHN vs every other model)."""
    summary, evidence = {}, []
    for system, result in per_system.items():
        seeds = result["seeds"]
        rows = [result["per_seed"][s] for s in seeds]
        table = {}
        for name in models:
            table[name] = {}
            for key in [*METRICS, "vpt_censored_fraction", "rmse_at_train_horizon", "train_seconds", "parameters"]:
                values = [row[name][key] for row in rows]
                table[name][key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}
        table["linear_interp_mse"] = float(np.mean([row["linear_interp_mse"] for row in rows]))
        table["random_codes_probe_r2"] = float(np.mean([row["random_codes_probe_r2"] for row in rows]))
        summary[system] = table
        for metric, (higher, effect) in METRICS.items():
            for baseline in [m for m in ("hnn", "plain", "dhn-midpoint") if m in models]:
                evidence.append(claim(
                    f"{system}: DHN (H+/H- blocks) beats {baseline} on {metric}",
                    metric=f"{system}/{metric}", method="dhn", baseline=baseline,
                    method_values=table["dhn"][metric]["per_seed"], baseline_values=table[baseline][metric]["per_seed"],
                    higher_is_better=higher, effect=effect, method_seeds=seeds, baseline_seeds=seeds, system=system,
                ))
    return summary, adjust(evidence)  # one family: Holm across every system, metric and baseline


def assemble(per_system: dict[str, dict], cfg: DHNConfig, out_dir: Path, models: tuple[str, ...] = MODELS) -> dict:
    """The results dict (summary, ledger, per-seed numbers) and the figures."""
    summary, evidence = summarise(per_system, cfg, models)
    figure = plot_overview(per_system, summary, cfg, models)
    path = Path(out_dir) / "dhn.png"
    save_figure(figure, path)
    verdicts = {f"{e['metric']} dhn vs {e['baseline']}": e["holds"] for e in evidence}
    return {
        "systems": list(per_system),
        "models": list(models),
        "settings": {**dataclasses.asdict(cfg), "horizon": cfg.horizon},
        "budget": {
            "train_iters_per_model": cfg.train_iters, "batch": cfg.batch, "code_fit_iters": cfg.fit_iters,
            "note": "every model sees the same windows for the same number of iterations; wall-clock per model in summary",
        },
        "summary": summary,
        "holds": verdicts,
        "evidence": evidence,
        "per_seed": {s: {str(k): v for k, v in r["per_seed"].items()} for s, r in per_system.items()},
        "figure": str(path),
    }


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), config: DHNConfig | None = None) -> dict:
    """Train and evaluate every model on every system for ``n_seeds`` seeds from ``seed``; plot; ledger."""
    torch.set_num_threads(1)
    cfg = config or (DHNConfig.quick() if quick else DHNConfig())
    cfg.validate()
    seeds = [seed + i for i in range(cfg.n_seeds)]
    per_system = {system: run_system(system, seeds, cfg) for system in cfg.systems}
    return assemble(per_system, cfg, Path(out_dir))
