"""AtlasD downstream: the discovered group as the fibre group of a steerable CNN vs a plain CNN.

Both learn the full-domain heat tendency (obstacle included) from 1/4/16/64 training fields, over
several seeds. The plain CNN's width is chosen so that its parameter count matches the steerable
model's (within a few per cent), so a difference is due to the symmetry, not to model size.

Both are trained to convergence by one rule (:class:`ConvergenceRule`): Adam, validation error on
held-out fields (neither training nor test fields) every ``eval_every`` steps, the learning rate halved
after ``lr_patience`` evaluations without a ``min_improvement`` relative gain, training stopped after
``patience`` such evaluations (or at ``max_steps``), and the best validation checkpoint kept. Each
run's validation curve, stopping step and reason are recorded. Only the initial learning rate may
differ per model (``lr_by_model``, tuned on a separate seed's validation error by
:mod:`learn.tasks.atlasd.tuning`).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from symgym.equivariance.discovery import to_planar_group
from symgym.learn.evidence.ledger import claim
from symgym.learn.tasks.atlasd.models import MaskedCNN, SteerableTendencyCNN, count_parameters, matched_cnn_hidden
from symgym.physics.pde import HeatObstacleSim


#: the downstream models, as ``only`` and ``lr_by_model`` name them (a model's full name starts with one)
MODEL_KINDS = ("steerable", "cnn")


@dataclass
class ConvergenceRule:
    """Early stopping on a validation set, the same for every model (see the module docstring)."""

    #: Adam's initial learning rate, for every model not in ``lr_by_model``
    lr: float = 1e-2
    #: per-model initial learning rates ("steerable"/"cnn" -> rate): each model's own tuned rate, the rest of
    #: the rule shared (a rate tuned for one architecture need not suit the other)
    lr_by_model: dict[str, float] = field(default_factory=dict)
    eval_every: int = 50
    min_improvement: float = 0.01  # relative gain of the best validation error that counts as progress
    lr_patience: int = 3  # evaluations without progress before the learning rate halves
    #: evaluations without progress before training stops (6, tried first, stopped the plain CNN's noisy
    #: curves early: results/atlasd.json ``downstream_other_rule``)
    patience: int = 10
    #: a cap for the shared 2-core machine; ``stopped_by`` says where it bound (the task's config sets its own)
    max_steps: int = 3000
    n_val: int = 8  # validation fields (drawn apart from training and test fields)

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.lr_by_model.items() if k not in MODEL_KINDS or not float(v) > 0}
        if bad:
            raise ValueError(f"lr_by_model takes positive rates for {MODEL_KINDS}, got {bad}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def lr_for(self, model: str) -> float:
        """The initial learning rate of ``model`` (a full name such as "steerable_D4", or a kind)."""
        kind = next((k for k in MODEL_KINDS if model.startswith(k)), None)
        if kind is None:
            raise ValueError(f"model must start with one of {MODEL_KINDS}, got {model!r}")
        return float(self.lr_by_model.get(kind, self.lr))

    def for_model(self, model: str) -> "ConvergenceRule":
        """This rule as ``model`` is trained under it: its own rate as ``lr``, nothing per model left."""
        return replace(self, lr=self.lr_for(model), lr_by_model={})


def relative_mse(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel squared error (of ``model(x) * scale`` against ``t``) and squared target, batch by batch."""
    with torch.no_grad():
        pred = torch.cat([model(x[k : k + 16]) for k in range(0, len(x), 16)]) * scale
    return ((pred - t) ** 2)[:, 0], (t**2)[:, 0]


def fit_to_convergence(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor,
                       rule: ConvergenceRule, batch: int, seed: int) -> dict:
    """Train ``model`` on ``(x, y)`` under ``rule`` (validation on ``(vx, vy)``); loads the best checkpoint.

    Returns the validation curve (steps, relative MSE), the best validation error and its step, the last
    step, and why it stopped. ``rule.lr`` is the rate used (per-model rates: pass ``rule.for_model(name)``).
    """
    if rule.lr_by_model:  # a per-model rule must be resolved by the caller, who knows which model this is
        raise ValueError(f"fit_to_convergence needs a rule for one model (rule.for_model), got lr_by_model={rule.lr_by_model}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=rule.lr)

    def val() -> float:
        model.eval()
        sq, ref = relative_mse(model, vx, vy)
        model.train()
        return float(sq.mean() / ref.mean())

    steps, curve = [0], [val()]
    best, best_step, best_state, since = curve[0], 0, copy.deepcopy(model.state_dict()), 0
    stopped_by = "max_steps"
    model.train()
    for step in range(1, rule.max_steps + 1):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % rule.eval_every:
            continue
        v = val()
        steps.append(step)
        curve.append(v)
        if not np.isfinite(v):
            stopped_by = "diverged"
            break
        if v < best * (1 - rule.min_improvement):
            since = 0
        else:
            since += 1
            if since % rule.lr_patience == 0:
                for g in opt.param_groups:
                    g["lr"] /= 2
        if v < best:
            best, best_step, best_state = v, step, copy.deepcopy(model.state_dict())
        if since >= rule.patience:
            stopped_by = "patience"
            break
    model.load_state_dict(best_state)
    model.eval()
    return {"steps": steps, "val_relative_mse": [round(c, 6) for c in curve], "best_step": best_step,
            "best_val_relative_mse": round(best, 6), "last_step": steps[-1], "stopped_by": stopped_by}


def _regions(sim: HeatObstacleSim, width: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The bulk (>= ``width`` cells from obstacle and border) and the obstacle's neighbourhood."""
    from scipy.ndimage import binary_dilation

    near = torch.from_numpy(binary_dilation(sim.obstacle_mask, iterations=width))
    bulk = torch.zeros_like(near)
    bulk[width:-width, width:-width] = True
    return bulk & ~near, near


def draw_test_set(sim: HeatObstacleSim, n_test: int, data_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The test fields and their tendencies (the only place they are drawn: tuning never calls this)."""
    test_x, test_y = sim.generate_pairs(n_test, np.random.default_rng(data_seed + 1000))
    return torch.from_numpy(test_x)[:, None], torch.from_numpy(test_y - test_x)[:, None]


def run_downstream(
    sim: HeatObstacleSim, group, sizes: tuple[int, ...], seeds: tuple[int, ...], rule: ConvergenceRule, n_test: int, fields: int,
    data_seed: int, only: str | None = None, evaluate_test: bool = True,
) -> dict:
    """Test relative MSE of each model per training-set size and seed; ``only`` ("steerable"/"cnn") runs one.

    ``evaluate_test=False`` (learning-rate tuning): the test fields are neither drawn nor evaluated; only the validation
    error of the kept checkpoint (``best_val_relative_mse``) and the training records are returned.
    """
    if only not in (None, *MODEL_KINDS):
        raise ValueError(f"only must be None, 'steerable' or 'cnn', got {only!r}")
    planar = to_planar_group(group)
    val_x, val_y = sim.generate_pairs(rule.n_val, np.random.default_rng(data_seed + 3000))
    mask = torch.from_numpy(sim.obstacle_mask.astype(np.float32))
    tx, tt = draw_test_set(sim, n_test, data_seed) if evaluate_test else (None, None)
    bulk, near = _regions(sim)
    result: dict = {"group": None if planar is None else planar.name, "n_train": list(sizes), "seeds": list(seeds),
                    "rule": asdict(rule), "models": {}}
    makers = {}
    if planar is not None:
        steerable_params = count_parameters(SteerableTendencyCNN(mask, planar, fields=fields))
        hidden = matched_cnn_hidden(steerable_params, mask)
        makers[f"steerable_{planar.name}"] = lambda: SteerableTendencyCNN(mask, planar, fields=fields)
        makers["cnn"] = lambda: MaskedCNN(mask, hidden=hidden)
        result["cnn_hidden"] = hidden
    else:  # nothing discovered: only the plain model exists
        makers["cnn"] = lambda: MaskedCNN(mask)
    for name, make in makers.items():
        if only is not None and not name.startswith(only):
            continue
        own_rule = rule.for_model(name)
        errs = {"all": np.zeros((len(seeds), len(sizes))), "bulk": np.zeros((len(seeds), len(sizes))), "near_obstacle": np.zeros((len(seeds), len(sizes)))}
        fits: list[list[dict]] = []
        for i, seed in enumerate(seeds):
            train_x, train_y = sim.generate_pairs(max(sizes), np.random.default_rng(data_seed + 2000 + seed))
            scale = float(np.std(train_y - train_x))  # targets ~1e-2: train on unit scale, rescale predictions
            vx, vt = torch.from_numpy(val_x)[:, None], torch.from_numpy(val_y - val_x)[:, None] / scale
            fits.append([])
            for j, n in enumerate(sizes):
                torch.manual_seed(seed)
                model = make()
                xs = torch.from_numpy(train_x[:n])[:, None]
                ts = torch.from_numpy(train_y[:n] - train_x[:n])[:, None] / scale
                fits[-1].append(fit_to_convergence(model, xs, ts, vx, vt, own_rule, batch=min(n, 4), seed=seed))
                if not evaluate_test:
                    continue
                sq, ref = relative_mse(model, tx, tt, scale)
                errs["all"][i, j] = float(sq.mean() / ref.mean())
                errs["bulk"][i, j] = float(sq[:, bulk].mean() / ref[:, bulk].mean())
                errs["near_obstacle"][i, j] = float(sq[:, near].mean() / ref[:, near].mean())
        tested = {f"test_relative_mse{'' if k == 'all' else '_' + k}": np.round(v, 6).tolist() for k, v in errs.items()}
        result["models"][name] = {
            "parameters": count_parameters(make()), "lr": own_rule.lr,
            **(tested if evaluate_test else {}),
            **({"test_relative_mse_mean": np.round(errs["all"].mean(0), 6).tolist()} if evaluate_test else {}),
            **{k: [[f[k] for f in row] for row in fits] for k in ("best_step", "best_val_relative_mse", "last_step", "stopped_by")},
            "curves": [[{"steps": f["steps"], "val_relative_mse": f["val_relative_mse"]} for f in row] for row in fits],
        }
    return result


def downstream_claims(result: dict) -> list[dict]:
    """One claim per training-set size: the steerable model's test error is lower (ratio of means)."""
    steerable = [k for k in result["models"] if k.startswith("steerable")]
    if not steerable:
        return []
    eq, cnn = result["models"][steerable[0]], result["models"]["cnn"]
    seeds = result["seeds"]
    out = []
    for j, n in enumerate(result["n_train"]):
        out.append(claim(
            f"AtlasD downstream: a {steerable[0]} CNN using the discovered group has lower test error than a "
            f"parameter-matched plain CNN ({eq['parameters']} vs {cnn['parameters']} params) at {n} training fields",
            metric="test relative MSE of the heat tendency", method=steerable[0], baseline="cnn",
            method_values=[r[j] for r in eq["test_relative_mse"]], baseline_values=[r[j] for r in cnn["test_relative_mse"]],
            higher_is_better=False, effect="ratio", method_seeds=seeds, baseline_seeds=seeds, n_train=n,
        ))
    return out
