"""AtlasD downstream: the discovered group as the fibre group of a steerable CNN vs a plain CNN.

Both learn the full-domain heat tendency (obstacle included) from 1/4/16/64 training fields, over
several seeds. The plain CNN's width is chosen so that its parameter count matches the steerable
model's (within a few per cent), so a difference is due to the symmetry, not to model size.
"""
from __future__ import annotations

import numpy as np
import torch

from symgym.equivariance.discovery import to_planar_group
from symgym.learn.evidence.ledger import claim
from symgym.learn.tasks.atlasd.models import MaskedCNN, SteerableTendencyCNN, count_parameters, fit_regressor, matched_cnn_hidden
from symgym.physics.pde import HeatObstacleSim


def _regions(sim: HeatObstacleSim, width: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The bulk (>= ``width`` cells from obstacle and border) and the obstacle's neighbourhood."""
    from scipy.ndimage import binary_dilation

    near = torch.from_numpy(binary_dilation(sim.obstacle_mask, iterations=width))
    bulk = torch.zeros_like(near)
    bulk[width:-width, width:-width] = True
    return bulk & ~near, near


def run_downstream(
    sim: HeatObstacleSim, group, sizes: tuple[int, ...], seeds: tuple[int, ...], steps: int, n_test: int, fields: int, data_seed: int,
    only: str | None = None,
) -> dict:
    """Test relative MSE of each model per training-set size and seed; ``only`` ("steerable"/"cnn") runs one."""
    if only not in (None, "steerable", "cnn"):
        raise ValueError(f"only must be None, 'steerable' or 'cnn', got {only!r}")
    planar = to_planar_group(group)
    rng = np.random.default_rng(data_seed + 1000)
    test_x, test_y = sim.generate_pairs(n_test, rng)
    mask = torch.from_numpy(sim.obstacle_mask.astype(np.float32))
    tx, tt = torch.from_numpy(test_x)[:, None], torch.from_numpy(test_y - test_x)[:, None]
    bulk, near = _regions(sim)
    result: dict = {"group": None if planar is None else planar.name, "n_train": list(sizes), "seeds": list(seeds), "steps": steps, "models": {}}
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
        errs = {"all": np.zeros((len(seeds), len(sizes))), "bulk": np.zeros((len(seeds), len(sizes))), "near_obstacle": np.zeros((len(seeds), len(sizes)))}
        for i, seed in enumerate(seeds):
            train_x, train_y = sim.generate_pairs(max(sizes), np.random.default_rng(data_seed + 2000 + seed))
            scale = float(np.std(train_y - train_x))  # targets ~1e-2: train on unit scale, rescale predictions
            for j, n in enumerate(sizes):
                torch.manual_seed(seed)
                model = make()
                xs = torch.from_numpy(train_x[:n])[:, None]
                ts = torch.from_numpy(train_y[:n] - train_x[:n])[:, None] / scale
                fit_regressor(model, xs, ts, steps, batch=min(n, 4), crop=0, seed=seed, lr=1e-2)
                with torch.no_grad():
                    sq = ((torch.cat([model(tx[k : k + 16]) for k in range(0, len(tx), 16)]) * scale - tt) ** 2)[:, 0]
                ref = (tt**2)[:, 0]
                errs["all"][i, j] = float(sq.mean() / ref.mean())
                errs["bulk"][i, j] = float(sq[:, bulk].mean() / ref[:, bulk].mean())
                errs["near_obstacle"][i, j] = float(sq[:, near].mean() / ref[:, near].mean())
        result["models"][name] = {
            "parameters": count_parameters(make()),
            **{f"test_relative_mse{'' if k == 'all' else '_' + k}": np.round(v, 6).tolist() for k, v in errs.items()},
            "test_relative_mse_mean": np.round(errs["all"].mean(0), 6).tolist(),
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
