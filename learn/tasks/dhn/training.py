"""Cached data and resumable training for the full-scale DHN study (``full.py``).

A *unit* is one (system, model, seed, learning rate). Its training keeps a checkpoint (network, codes, Adam and
cosine-schedule state, the batch generator's state, every per-iteration loss and the learning curve) that is
rewritten atomically every ``checkpoint_every`` iterations, so a killed process restarted later continues from
the last checkpoint and ends with the same weights, bit for bit, as one that was never stopped (one thread).

The learning curve records, every ``eval_every`` iterations, the mean training loss since the previous point and
a held-out metric: fresh codes fitted to the first ``prefix`` states of ``n_val`` validation trajectories (never
trained on), then a rollout over ``train_length`` steps scored by its RMS error and valid prediction time. That
metric also picks the learning rate on the tuning seed. Its randomness comes from its own seeded generators (and
a forked global RNG, which the DHN's denoising draws from), so evaluating never changes the training run.

Datasets are generated once per (system, seed, data settings) and kept as ``.npz`` under the cache directory;
test, validation and training sets use seeds ``seed + 10_000``, ``seed + 20_000`` and ``seed`` (the first and
last as :func:`symgym.learn.tasks.dhn.task.run_seed` does).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from symgym.learn.io import atomic_path, save_torch, write_json
from symgym.learn.tasks.dhn.models import n_parameters, rollout
from symgym.learn.tasks.dhn.task import (
    DHNConfig, Normaliser, build_model, evaluate_seed, make_windows, new_codes, optimise, train_step,
    valid_prediction_time,
)
from symgym.physics.hamiltonian import TrajectoryDataset, get_system, make_dataset

CHECKPOINT_FORMAT = 1
VAL_SEED_OFFSET, TEST_SEED_OFFSET = 20_000, 10_000
#: a rollout error above this (or non-finite) is scored at it: one diverged trajectory must not make a mean infinite
RMSE_CAP = 1e3
#: config fields that do not change what a unit trains (the learning rate is part of the unit's own name)
_NOT_TRAINING = ("systems", "n_seeds", "lr")


@dataclass
class CurveSettings:
    """How often a unit checkpoints and measures itself, and on how many held-out trajectories."""

    checkpoint_every: int = 200
    """iterations between checkpoints (and the most work a kill can lose)"""
    eval_every: int = 400
    """iterations between learning-curve points (a held-out evaluation each); the last iteration always gets one"""
    n_val: int = 32
    """held-out validation trajectories per seed (their own seed; never trained on, never the test set)"""
    fit_iters: int = 50
    """code-fitting iterations on the validation prefixes at every curve point"""

    def validate(self) -> None:
        for name in ("checkpoint_every", "eval_every", "n_val", "fit_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def config_key(cfg: DHNConfig) -> str:
    """A short hash of everything in ``cfg`` that changes training (not the lr, not the systems/seeds lists)."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_TRAINING}
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:8]


def lr_tag(lr: float) -> str:
    """``3e-4`` for 0.0003, ``2.5e-4`` for 0.00025: the learning rate in file names (distinct rates, distinct tags)."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


# ----------------------------------------------------------------------------- data


@dataclass
class SeedData:
    """One system and seed: training, validation and (for evaluation seeds) test trajectories."""

    system: str
    seed: int
    train: TrajectoryDataset
    val: TrajectoryDataset
    test: TrajectoryDataset | None

    @property
    def norm(self) -> Normaliser:
        return Normaliser.fit(self.train.observations, get_system(self.system).dof)


def _dataset(path: Path, system: str, n: int, length: int, seed: int, cfg: DHNConfig) -> TrajectoryDataset:
    """Load ``path`` or generate the dataset once and store it there (atomically)."""
    if path.exists():
        with np.load(path) as f:
            return TrajectoryDataset(system, f["states"], f["observations"], f["params"],
                                     tuple(str(n) for n in f["param_names"]), float(f["dt"]))
    data = make_dataset(system, n, length, dt=cfg.dt, substeps=cfg.substeps, seed=seed, obs_noise=cfg.obs_noise)
    with atomic_path(path) as tmp:
        np.savez(tmp, states=data.states, observations=data.observations, params=data.params,
                 param_names=np.array(data.param_names), dt=data.dt)
    return data


def load_data(cache: Path, system: str, seed: int, cfg: DHNConfig, n_val: int, with_test: bool = True) -> SeedData:
    """The seed's datasets, from ``cache/data`` when generated before (same system, seed and data settings)."""
    common = f"dt{cfg.dt:g}_sub{cfg.substeps}_noise{cfg.obs_noise:g}"
    folder = Path(cache) / "data"
    train = _dataset(folder / f"{system}_s{seed}_train_n{cfg.n_train}_T{cfg.train_length}_{common}.npz", system,
                     cfg.n_train, cfg.train_length, seed, cfg)
    val = _dataset(folder / f"{system}_s{seed}_val_n{n_val}_T{cfg.prefix + cfg.train_length}_{common}.npz", system,
                   n_val, cfg.prefix + cfg.train_length, seed + VAL_SEED_OFFSET, cfg)
    test = None
    if with_test:
        test = _dataset(folder / f"{system}_s{seed}_test_n{cfg.n_test}_T{cfg.prefix + cfg.horizon}_{common}.npz",
                        system, cfg.n_test, cfg.prefix + cfg.horizon, seed + TEST_SEED_OFFSET, cfg)
    return SeedData(system, seed, train, val, test)


# ----------------------------------------------------------------------------- held-out metric


def context_length(name: str, cfg: DHNConfig) -> int:
    """Known states a model's rollout starts from."""
    return {"dhn": cfg.dhn_block, "dhn-midpoint": cfg.context}.get(name, 1)


def heldout_metrics(model: nn.Module, name: str, data: SeedData, cfg: DHNConfig, fit_iters: int, seed: int) -> dict:
    """Fit codes to the validation prefixes (network frozen), roll out ``train_length`` steps, score the rollout."""
    norm = data.norm
    observed = norm.encode(data.val.observations)
    windows, index = make_windows(observed, cfg.block_size, last=cfg.prefix)
    truth = norm.encode(data.val.states[:, cfg.prefix - 1 : cfg.prefix + cfg.train_length]).numpy()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fitted = new_codes(len(data.val), cfg.latent_dim)
        optimise(model, fitted, windows, index, fit_iters, cfg, torch.Generator().manual_seed(seed), False)
        n_context = context_length(name, cfg)
        pred = rollout(model, observed[:, cfg.prefix - n_context : cfg.prefix], fitted.weight.detach(),
                       cfg.train_length, cfg.n_iter).numpy()
    rmse = np.sqrt(((pred - truth) ** 2).mean(-1))[:, 1:]
    rmse = np.where(np.isfinite(rmse), np.minimum(rmse, RMSE_CAP), RMSE_CAP)
    return {"val_rmse": float(rmse.mean()),
            "val_vpt_steps": float(valid_prediction_time(pred, truth, cfg.vpt_threshold).mean())}


# ----------------------------------------------------------------------------- resumable training


@dataclass
class Unit:
    """One training run: a model on one system and seed at one learning rate, stored under ``folder``."""

    system: str
    model: str
    seed: int
    lr: float
    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    @property
    def progress_path(self) -> Path:
        return self.folder / "progress.json"

    def progress(self) -> dict[str, Any]:
        """``{"iteration", "train_iters", "done", "train_seconds", "curve"}`` as of the last checkpoint (or zeros)."""
        if not self.progress_path.exists():
            return {"iteration": 0, "done": False, "train_seconds": 0.0, "curve": []}
        return json.loads(self.progress_path.read_text())


@dataclass
class Trained:
    """What a finished unit hands to evaluation."""

    model: nn.Module
    codes: nn.Embedding
    losses: list[float]
    curve: list[dict[str, float]]
    train_seconds: float


def _seed_for(unit: Unit, purpose: int) -> int:
    """Distinct, stable seeds per unit and purpose (0: initial weights, 1: batches, 2+: evaluations)."""
    model_index = sum(ord(c) * 31**i for i, c in enumerate(unit.model)) % 10_007
    return (unit.seed * 1_000_003 + model_index * 101 + purpose) % 2**62


def train_unit(unit: Unit, data: SeedData, cfg: DHNConfig, curve: CurveSettings,
               on_iteration: Callable[[int], None] | None = None) -> Trained:
    """Train ``unit`` to ``cfg.train_iters`` iterations, resuming from its checkpoint if there is one.

    ``on_iteration(i)`` is called after iteration ``i`` (1-based) is done and recorded (tests use it to simulate a
    kill). A checkpoint written with other training settings is refused with a one-line error.
    """
    torch.set_num_threads(1)
    curve.validate()
    cfg = dataclasses.replace(cfg, lr=unit.lr)
    key = config_key(cfg)
    dof = get_system(unit.system).dof
    torch.manual_seed(_seed_for(unit, 0))
    model = build_model(unit.model, 2 * dof, cfg)
    codes = new_codes(cfg.n_train, cfg.latent_dim)
    optimizer = torch.optim.Adam([{"params": codes.parameters(), "lr": cfg.code_lr},
                                  {"params": model.parameters(), "lr": cfg.lr}])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(cfg.train_iters, 1))
    generator = torch.Generator().manual_seed(_seed_for(unit, 1))
    start, losses, points, seconds = 0, [], [], 0.0
    if unit.checkpoint.exists():
        state = torch.load(unit.checkpoint, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("config_key") != key:
            raise ValueError(f"checkpoint {unit.checkpoint} has config key {state.get('config_key')!r}, this run "
                             f"{key!r}: delete it or restore the settings it was trained with")
        model.load_state_dict(state["model"])
        codes.load_state_dict(state["codes"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        start, losses, points, seconds = state["iteration"], state["losses"], state["curve"], state["train_seconds"]

    def save(iteration: int) -> None:
        save_torch({"format": CHECKPOINT_FORMAT, "config_key": key, "iteration": iteration,
                    "model": model.state_dict(), "codes": codes.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "generator": generator.get_state(), "losses": losses,
                    "curve": points, "train_seconds": seconds}, unit.checkpoint)
        write_json(unit.progress_path, {"iteration": iteration, "train_iters": cfg.train_iters,
                                        "done": iteration >= cfg.train_iters, "train_seconds": round(seconds, 1),
                                        "curve": points, "config_key": key})

    norm = data.norm
    windows, index = make_windows(norm.encode(data.train.observations), cfg.block_size)
    model.train()
    tick = time.perf_counter()
    for iteration in range(start + 1, cfg.train_iters + 1):
        losses.append(train_step(model, codes, optimizer, schedule, windows, index, cfg, generator))
        if iteration % curve.eval_every == 0 or iteration == cfg.train_iters:
            since = points[-1]["iteration"] if points else 0
            metrics = heldout_metrics(model, unit.model, data, cfg, curve.fit_iters, _seed_for(unit, 2 + iteration))
            points.append({"iteration": iteration, "train_loss": float(np.mean(losses[since:iteration])), **metrics})
        if iteration % curve.checkpoint_every == 0 or iteration == cfg.train_iters:
            seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            save(iteration)
        if on_iteration is not None:
            on_iteration(iteration)
    return Trained(model, codes, losses, points, seconds)


# ----------------------------------------------------------------------------- final evaluation


def evaluate_unit(unit: Unit, trained: Trained, data: SeedData, cfg: DHNConfig) -> tuple[dict, dict]:
    """Test metrics of one trained model (the task's :func:`evaluate_seed` on a one-model dict) and its curves."""
    if data.test is None:
        raise ValueError(f"seed {data.seed} of {data.system} was loaded without its test set")
    cfg = dataclasses.replace(cfg, lr=unit.lr)
    norm = data.norm
    prefix_windows, prefix_index = make_windows(norm.encode(data.test.observations), cfg.block_size, last=cfg.prefix)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_for(unit, 1))
        fitted = new_codes(cfg.n_test, cfg.latent_dim)
        optimise(trained.model, fitted, prefix_windows, prefix_index, cfg.fit_iters, cfg,
                 torch.Generator().manual_seed(_seed_for(unit, 1)), False)
        trained.model.eval()
        fit_seconds = time.perf_counter() - start
        metrics, curves = evaluate_seed({unit.model: trained.model}, {unit.model: fitted.weight.detach().clone()},
                                        {unit.model: trained.codes.weight.detach().numpy().copy()}, data.train,
                                        data.test, norm, cfg, np.random.default_rng(unit.seed))
    window = max(len(trained.losses) // 10, 1)
    metrics[unit.model].update({
        "parameters": n_parameters(trained.model), "train_iters": cfg.train_iters, "lr": unit.lr,
        "train_seconds": round(trained.train_seconds, 1), "code_fit_seconds": round(fit_seconds, 1),
        "eval_seconds": round(time.perf_counter() - start, 1),
        "train_loss_start": float(np.mean(trained.losses[:window])),
        "train_loss_end": float(np.mean(trained.losses[-window:])),
    })
    metrics["param_names"] = list(data.train.param_names)
    return metrics, curves
