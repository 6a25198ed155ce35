"""Models of the AtlasD heat-diffusion task: chart/global CNNs, the exact simulator as a predictor,
and the downstream steerable CNN with its parameter-matched plain CNN."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from symgym.physics.pde import HeatObstacleSim


def _static_channels(mask: torch.Tensor) -> torch.Tensor:
    """Obstacle mask and a constant-one channel: zero padding turns the latter into a border marker."""
    return torch.stack([mask.float(), torch.ones_like(mask, dtype=torch.float32)])[None]


class MaskedCNN(nn.Module):
    """Tendency CNN on a scalar field; a fixed obstacle mask (and a ones channel) ride along as inputs.

    The mask belongs to the predictor (its chart), not to the input, so a group element acting
    on the input field leaves it where it is: that is how an obstacle breaks the symmetry.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 16, layers: int = 4):
        super().__init__()
        self.register_buffer("static", _static_channels(mask))
        chans = [3] + [hidden] * (layers - 1)
        body: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            body += [nn.Conv2d(a, b, 3, padding=1), nn.Tanh()]  # tanh: ReLU fits of this near-linear map often stall
        self.net = nn.Sequential(*body, nn.Conv2d(chans[-1], 1, 3, padding=1))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([u, self.static.expand(u.shape[0], -1, -1, -1)], dim=1))


class SteerableTendencyCNN(nn.Module):
    """escnn steerable CNN over a planar group; inputs (field, obstacle mask) are scalar fields.

    Equivariant to transforming field *and* mask together, which is the local symmetry: the same
    rule applies at every point, the obstacle only enters through where it is.
    """

    def __init__(self, mask: torch.Tensor, group, fields: int = 4, layers: int = 4):
        super().__init__()
        from escnn import nn as enn

        from symgym.equivariance.escnn_bridge import gspace_for

        gs = gspace_for(group)
        self.in_type = enn.FieldType(gs, 3 * [gs.trivial_repr])  # field, obstacle mask, ones
        hidden = enn.FieldType(gs, fields * [gs.regular_repr])
        blocks: list = [enn.R2Conv(self.in_type, hidden, 3, padding=1), enn.PointwiseNonLinearity(hidden, "p_tanh")]
        for _ in range(layers - 2):
            blocks += [enn.R2Conv(hidden, hidden, 3, padding=1), enn.PointwiseNonLinearity(hidden, "p_tanh")]
        blocks.append(enn.R2Conv(hidden, enn.FieldType(gs, [gs.trivial_repr]), 3, padding=1))
        self.net = enn.SequentialModule(*blocks)
        self.register_buffer("mask", mask.float()[None, None])

    def forward_with_mask(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from escnn import nn as enn

        x = torch.cat([u, mask, torch.ones_like(u)], dim=1)
        return self.net(enn.GeometricTensor(x, self.in_type)).tensor

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_with_mask(u, self.mask.expand(u.shape[0], -1, -1, -1))


def make_mlp(hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def fit_regressor(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, crop: int, seed: int, lr: float = 3e-3
) -> float:
    """Adam + cosine schedule on MSE; ``crop`` trims image borders whose targets the input cannot determine.

    Returns the relative MSE on the training data.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    sl = (Ellipsis, slice(crop, -crop), slice(crop, -crop)) if crop else (Ellipsis,)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        loss = ((model(x[idx]) - y[idx])[sl] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 64]) for i in range(0, x.shape[0], 64)])
    return float(((pred - y)[sl] ** 2).mean() / (y[sl] ** 2).mean())




def matched_cnn_hidden(target_parameters: int, mask: torch.Tensor, layers: int = 4) -> int:
    """Width of the :class:`MaskedCNN` whose parameter count is closest to ``target_parameters``."""
    return min(range(2, 64), key=lambda h: abs(count_parameters(MaskedCNN(mask, hidden=h, layers=layers)) - target_parameters))


class ExactHeatTendency(nn.Module):
    """The simulator's own one-step tendency on a window (zero outside it), as a torch predictor.

    It has no fit error, so discovery on it (local windows vs the whole domain) separates the
    effect of the obstacle from the effect of how well a network fits the dynamics.
    """

    def __init__(self, sim: HeatObstacleSim, mask: torch.Tensor):
        super().__init__()
        from symgym.physics.pde import _LAPLACIAN_9PT

        self.alpha_dt, self.substeps, self.value = sim.config.alpha_dt, sim.config.substeps, sim.config.obstacle_value
        self.register_buffer("stencil", torch.tensor(_LAPLACIAN_9PT, dtype=torch.float32)[None, None])
        self.register_buffer("mask", mask.bool()[None, None])

    def _clamp(self, u: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, torch.full_like(u, self.value), u)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        v = self._clamp(u)
        for _ in range(self.substeps):
            v = self._clamp(v + self.alpha_dt * F.conv2d(v, self.stencil, padding=1))
        return v - u
