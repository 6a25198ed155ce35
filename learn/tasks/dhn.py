"""Task ``dhn``: Denoising Hamiltonian Network vs HNN vs a plain network on simulated systems.

Data: one Hamiltonian system from ``physics/hamiltonian.py`` (default: the pendulum, with
mass and length varied per trajectory). Training trajectories are observed in full; each
*test* trajectory is unseen and only its first ``prefix`` steps are used to fit its code.

Every model (DHN, HNN, plain MLP; see ``dhn_models.py``) gets a per-trajectory latent code
learned auto-decoder style: an ``nn.Embedding`` with one row per training trajectory,
optimised jointly with the network; for a test trajectory the network is frozen and a fresh
code is fitted to the observed prefix with the model's own training loss.

Three tasks, one metric each, all three models in the same run:

1. forward simulation: roll out ``horizon`` steps after the prefix; MSE vs horizon (in
   normalised units) and relative energy drift ``|E(x_t) - E_0| / E_0`` under the *true*
   energy function with the trajectory's true parameters;
2. parameter inference: a ridge probe from codes to log-parameters, fitted on the training
   codes and scored (R^2) on the fitted test codes; chance = the same probe on random codes;
3. super-resolution: keep every ``interp_stride``-th state after the prefix and fill in the
   rest; MSE on the filled states vs linear interpolation.
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

from learn.io import save_figure
from learn.tasks.dhn_models import DHN, HNN, PlainMLP, initial_guess, interpolate, n_parameters, rollout
from physics.hamiltonian import TrajectoryDataset, get_system, make_dataset

MODELS = ("dhn", "hnn", "plain")


@dataclass
class DHNConfig:
    """Everything a run depends on; saved into the results JSON under ``settings``.

    ``system`` is any name in ``physics.hamiltonian.SYSTEMS``; pass a config to :func:`run`
    to use the mass-spring or double pendulum instead of the default pendulum.
    """

    system: str = "pendulum"
    n_train: int = 128
    n_test: int = 48
    train_length: int = 100  # observed steps per training trajectory
    prefix: int = 40  # observed steps of each test trajectory, used to fit its code
    horizon: int = 200  # rollout length after the prefix
    dt: float = 0.1
    substeps: int = 10
    obs_noise: float = 0.0
    block_size: int = 9
    context: int = 4  # known states at the start of each DHN rollout block
    n_iter: int = 8  # DHN denoising passes per block (Picard iterations; 3 left 5-step gaps unconverged)
    interp_stride: int = 4
    latent_dim: int = 8
    train_iters: int = 1000
    fit_iters: int = 200
    batch: int = 64
    lr: float = 5e-3
    code_lr: float = 1e-2
    code_reg: float = 1e-3
    hidden: int = 128  # baselines' MLP width, chosen so the parameter counts are similar

    @classmethod
    def quick(cls) -> "DHNConfig":
        return cls(n_train=64, n_test=24, train_length=60, horizon=120, train_iters=400, fit_iters=150)

    def validate(self) -> None:
        if (self.block_size - 1) % self.interp_stride:
            raise ValueError(f"interp_stride {self.interp_stride} must divide block_size - 1 = {self.block_size - 1}")
        if not 1 <= self.context < self.block_size:
            raise ValueError(f"context must be in [1, block_size), got {self.context}")
        if self.prefix < self.block_size or self.train_length < self.block_size:
            raise ValueError(f"prefix ({self.prefix}) and train_length ({self.train_length}) must be >= block_size")


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
        return DHN(state_dim, cfg.latent_dim, cfg.block_size)
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
    history = []
    for _ in range(iters):
        batch = torch.randint(0, len(windows), (min(cfg.batch, len(windows)),), generator=generator)
        z = codes(index[batch])
        loss = model.training_loss(windows[batch], z, generator)
        total = loss + cfg.code_reg * (z**2).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        schedule.step()
        history.append(loss.item())
    model.requires_grad_(True)
    return history


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


def evaluate(
    models: dict[str, nn.Module],
    test_codes: dict[str, torch.Tensor],
    train_codes: dict[str, np.ndarray],
    train: TrajectoryDataset,
    test: TrajectoryDataset,
    norm: Normaliser,
    cfg: DHNConfig,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """All three metrics for every model; also returns curves for the figure under ``curves``."""
    observed = norm.encode(test.observations)
    truth = test.states[:, cfg.prefix - 1 : cfg.prefix + cfg.horizon]
    truth_n = norm.encode(truth).numpy()
    e0 = get_system(cfg.system).energy(truth[:, 0], test.params)
    out: dict[str, Any] = {"rollout": {}, "energy": {}, "probe": {}, "interpolation": {}}
    curves: dict[str, Any] = {"rollout_mse": {}, "energy_error": {}, "probe": {}, "example": {}}
    curves["energy_error"]["true simulator"] = relative_energy_error(cfg.system, truth, test.params, e0).mean(0)

    # super-resolution inputs: every stride-th observed state from the rollout start on
    n_sparse = cfg.horizon // cfg.interp_stride + 1
    sparse_index = cfg.prefix - 1 + cfg.interp_stride * np.arange(n_sparse)
    sparse = observed[:, sparse_index]
    dense_truth = norm.encode(test.states[:, sparse_index[0] : sparse_index[-1] + 1]).numpy()
    hidden = np.ones(dense_truth.shape[1], dtype=bool)
    hidden[:: cfg.interp_stride] = False
    known = torch.zeros(dense_truth.shape[:2], dtype=torch.bool)
    known[:, :: cfg.interp_stride] = True
    dense_sparse = torch.zeros(dense_truth.shape, dtype=torch.float32)
    dense_sparse[:, :: cfg.interp_stride] = sparse
    linear = initial_guess(dense_sparse, known).numpy()
    out["interpolation"]["linear_mse"] = float(((linear - dense_truth)[:, hidden] ** 2).mean())

    log_train, log_test = np.log(train.params), np.log(test.params)
    for name, model in models.items():
        z = test_codes[name]
        context = observed[:, cfg.prefix - (cfg.context if name == "dhn" else 1) : cfg.prefix]
        pred = rollout(model, context, z, cfg.horizon, cfg.n_iter)
        mse_curve = ((pred.numpy() - truth_n) ** 2).mean(axis=(0, 2))
        energy_curve = relative_energy_error(cfg.system, norm.decode(pred), test.params, e0).mean(0)
        curves["rollout_mse"][name], curves["energy_error"][name] = mse_curve, energy_curve
        curves["example"][name] = pred[0].numpy()
        quarter = max(cfg.horizon // 4, 1)
        out["rollout"][name] = {
            "mse_final": float(mse_curve[-1]),
            "mse_mean": float(mse_curve[1:].mean()),
            "mse_last_quarter": float(mse_curve[-quarter:].mean()),
            "mse_first_quarter": float(mse_curve[1 : quarter + 1].mean()),
        }
        out["energy"][name] = {
            "drift_final": float(energy_curve[-1]),
            "drift_last_quarter": float(energy_curve[-quarter:].mean()),
        }
        probe_pred = linear_probe(train_codes[name], log_train, z.numpy())
        r2 = r2_score(probe_pred, log_test)
        out["probe"][name] = {"r2_mean": float(r2.mean()), **{f"r2_{p}": float(v) for p, v in zip(train.param_names, r2)}}
        curves["probe"][name] = probe_pred
        filled = interpolate(model, sparse, z, cfg.interp_stride, cfg.n_iter).numpy()
        out["interpolation"][f"{name}_mse"] = float(((filled - dense_truth)[:, hidden] ** 2).mean())
    random_r2 = r2_score(
        linear_probe(rng.standard_normal((len(train), cfg.latent_dim)), log_train, rng.standard_normal((len(test), cfg.latent_dim))),
        log_test,
    )
    out["probe"]["random_codes"] = {"r2_mean": float(random_r2.mean())}
    curves["example"]["truth"] = truth_n[0]
    curves["log_params"] = log_test
    out["curves"] = curves
    return out


def ratios(metrics: dict[str, Any]) -> dict[str, float]:
    """DHN/HNN, DHN/plain and HNN/plain for long-horizon error, energy drift and interpolation."""
    pairs = [("dhn", "hnn"), ("dhn", "plain"), ("hnn", "plain")]
    out = {}
    for a, b in pairs:
        out[f"rollout_mse_last_quarter_{a}_over_{b}"] = metrics["rollout"][a]["mse_last_quarter"] / metrics["rollout"][b]["mse_last_quarter"]
        out[f"energy_drift_last_quarter_{a}_over_{b}"] = metrics["energy"][a]["drift_last_quarter"] / metrics["energy"][b]["drift_last_quarter"]
        out[f"interpolation_mse_{a}_over_{b}"] = metrics["interpolation"][f"{a}_mse"] / metrics["interpolation"][f"{b}_mse"]
    for name in MODELS:
        out[f"interpolation_mse_{name}_over_linear"] = metrics["interpolation"][f"{name}_mse"] / metrics["interpolation"]["linear_mse"]
    return out


def plot_results(curves: dict[str, Any], results: dict[str, Any], cfg: DHNConfig):
    """Six panels: rollout error, energy drift, an example rollout, probe, interpolation, losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"dhn": "C3", "hnn": "C0", "plain": "C2", "true simulator": "k", "linear": "C7", "random codes": "C7"}
    labels = {"dhn": "DHN", "hnn": "HNN", "plain": "plain MLP"}
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    steps = np.arange(cfg.horizon + 1)

    ax = axes[0, 0]
    for name in MODELS:
        ax.semilogy(steps[1:], curves["rollout_mse"][name][1:], color=colours[name], label=labels[name])
    ax.set(title=f"forward simulation ({cfg.system}, unseen trajectories)", xlabel="steps after prefix", ylabel="MSE (normalised)")
    ax.legend()

    ax = axes[0, 1]
    for name, curve in curves["energy_error"].items():
        ax.semilogy(steps[1:], curve[1:], color=colours[name], label=labels.get(name, name), ls="--" if name == "true simulator" else "-")
    ax.set(title="energy drift under the true H", xlabel="steps after prefix", ylabel="|E(t) - E(0)| / E(0)")
    ax.legend()

    ax = axes[0, 2]
    ax.plot(curves["example"]["truth"][:, 0], color="k", lw=2.5, alpha=0.4, label="truth")
    for name in MODELS:
        ax.plot(curves["example"][name][:, 0], color=colours[name], label=labels[name])
    ax.set(title="example rollout, first coordinate q", xlabel="steps after prefix", ylabel="q (normalised)")
    ax.legend()

    ax = axes[1, 0]
    # show the parameter DHN's codes carry best; all R^2 values are in the JSON
    param_names = results["param_names"]
    best = int(np.argmax([results["probe"]["dhn"][f"r2_{p}"] for p in param_names]))
    target = curves["log_params"][:, best]
    for name in MODELS:
        r2 = results["probe"][name][f"r2_{param_names[best]}"]
        ax.scatter(target, curves["probe"][name][:, best], s=12, color=colours[name], label=f"{labels[name]} (R2={r2:.2f})")
    chance = results["probe"]["random_codes"]["r2_mean"]
    ax.plot([target.min(), target.max()], [target.min(), target.max()], "k:", label=f"ideal; random codes mean R2={chance:.2f}")
    ax.set(title="parameter inference: linear probe on fitted codes", xlabel=f"true log {param_names[best]}", ylabel="probe prediction")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    names = ["linear", *MODELS]
    values = [results["interpolation"][f"{n}_mse"] for n in names]
    ax.bar([labels.get(n, n) for n in names], values, color=[colours[n] for n in names])
    ax.set_yscale("log")
    ax.set(title=f"super-resolution x{cfg.interp_stride}: MSE on filled states", ylabel="MSE (normalised)")

    ax = axes[1, 2]
    for name in MODELS:
        info = results["models"][name]
        ax.bar(labels[name], info["train_loss_end"] / info["train_loss_start"], color=colours[name])
        ax.text(labels[name], info["train_loss_end"] / info["train_loss_start"], f"{info['parameters']} params", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set(title="training loss: last / first 10% of iterations", ylabel="ratio")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the task


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), config: DHNConfig | None = None) -> dict:
    """Train DHN, HNN and the plain network on one system; evaluate the three tasks; plot."""
    torch.set_num_threads(1)
    cfg = config or (DHNConfig.quick() if quick else DHNConfig())
    cfg.validate()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)

    common = dict(dt=cfg.dt, substeps=cfg.substeps, obs_noise=cfg.obs_noise)
    train = make_dataset(cfg.system, cfg.n_train, cfg.train_length, seed=seed, **common)
    test = make_dataset(cfg.system, cfg.n_test, cfg.prefix + cfg.horizon, seed=seed + 10_000, **common)
    dof = get_system(cfg.system).dof
    norm = Normaliser.fit(train.observations, dof)
    train_windows, train_index = make_windows(norm.encode(train.observations), cfg.block_size)
    prefix_windows, prefix_index = make_windows(norm.encode(test.observations), cfg.block_size, last=cfg.prefix)

    models, train_codes, test_codes, info = {}, {}, {}, {}
    for name in MODELS:
        start = time.perf_counter()
        model = build_model(name, 2 * dof, cfg)
        codes = new_codes(cfg.n_train, cfg.latent_dim)
        history = optimise(model, codes, train_windows, train_index, cfg.train_iters, cfg, generator)
        fitted = new_codes(cfg.n_test, cfg.latent_dim)
        fit_history = optimise(model, fitted, prefix_windows, prefix_index, cfg.fit_iters, cfg, generator, False)
        model.eval()
        models[name] = model
        train_codes[name] = codes.weight.detach().numpy().copy()
        test_codes[name] = fitted.weight.detach().clone()
        window = max(len(history) // 10, 1)
        info[name] = {
            "parameters": n_parameters(model),
            "train_loss_start": float(np.mean(history[:window])),
            "train_loss_end": float(np.mean(history[-window:])),
            "code_fit_loss_end": float(np.mean(fit_history[-max(len(fit_history) // 10, 1):])),
            "train_seconds": round(time.perf_counter() - start, 1),
        }

    metrics = evaluate(models, test_codes, train_codes, train, test, norm, cfg, rng)
    curves = metrics.pop("curves")
    results = {
        "system": cfg.system,
        "param_names": list(train.param_names),
        "settings": dataclasses.asdict(cfg),
        "models": info,
        **metrics,
        "ratios": ratios(metrics),
        "claims": {
            "hnn_conserves_energy_better_than_plain": metrics["energy"]["hnn"]["drift_last_quarter"]
            < metrics["energy"]["plain"]["drift_last_quarter"],
            "dhn_probe_beats_chance": metrics["probe"]["dhn"]["r2_mean"]
            > metrics["probe"]["random_codes"]["r2_mean"] + 0.2,
            "dhn_beats_hnn_long_horizon": metrics["rollout"]["dhn"]["mse_last_quarter"]
            < metrics["rollout"]["hnn"]["mse_last_quarter"],
            "dhn_beats_linear_interpolation": metrics["interpolation"]["dhn_mse"] < metrics["interpolation"]["linear_mse"],
        },
    }
    figure = plot_results(curves, results, cfg)
    save_figure(figure, Path(out_dir) / "dhn.png")
    results["figure"] = str(Path(out_dir) / "dhn.png")
    return results
