"""Data, training and read-outs of the ``relaxed-e3`` task, shared by its single-seed problems
(:mod:`learn.tasks.relaxed_e3.task`) and its multi-seed stretch sweep (:mod:`learn.tasks.relaxed_e3.sweep`)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from e3nn import o3

from symgym.equivariance.relaxed_e3 import (
    RelaxedE3Config,
    RelaxedE3Net,
    axis_angle_deg,
    equivariance_error_o3,
    irrep_part,
    irrep_quadrupole,
    irrep_vector,
    quadrupole_axis,
)

# A graph batch: node features, positions, graph index of each node, target node features.
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

CUBE_CORNERS = torch.tensor([[sx, sy, sz] for sx in (-1.0, 1.0) for sy in (-1.0, 1.0) for sz in (-1.0, 1.0)])


@dataclass
class RelaxedE3TaskConfig:
    """Sizes and optimisation settings (``quick`` shrinks ``steps``)."""

    steps: int = 1200
    quick_steps: int = 300
    lr: float = 5e-3
    breaking_penalty: float = 1e-2  # prefer the least symmetry breaking the data allows
    train_graphs: int = 16
    test_graphs: int = 16
    stretch: float = 1.5  # prism: length factor along the stretch axis
    grow: float = 1.0  # prism: uniform scale applied too (>1 keeps the target non-zero at stretch 1, the cube)
    top_shrink: float = 0.5  # frustum: top face side factor
    particles_per_graph: int = 8
    field_graphs: int = 64
    equivariance_rotations: int = 8


# --------------------------------------------------------------------------------------------
# Data


def random_cubes(n: int, orientation: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` cubes sharing one orientation, random half-side in [0.8, 1.2] and centre in [-2, 2]^3.

    Returns world positions (n*8, 3), the corners in the cube frame scaled (n*8, 3), and the batch index.
    """
    half = 0.8 + 0.4 * torch.rand(n, 1, 1, generator=gen)
    centre = 4.0 * torch.rand(n, 1, 3, generator=gen) - 2.0
    local = (CUBE_CORNERS[None] * half).reshape(-1, 3)
    pos = (local @ orientation.T).reshape(n, 8, 3) + centre
    batch = torch.arange(n).repeat_interleave(8)
    return pos.reshape(-1, 3), local, batch


def deformation_data(kind: str, n: int, orientation: torch.Tensor, cfg: RelaxedE3TaskConfig,
                     gen: torch.Generator) -> Batch:
    """Cubes and the vertex displacements that turn them into a prism or a frustum.

    The cube frame's z axis (``orientation[:, 2]``) is the axis the symmetry is broken along.
    """
    pos, local, batch = random_cubes(n, orientation, gen)
    if kind == "prism":
        # to the cuboid with sides (g, g, g * stretch): an O_h-invariant part (g - 1) plus the l = 2 stretch
        disp_local = (cfg.grow - 1.0) * local
        disp_local[:, 2] += cfg.grow * (cfg.stretch - 1.0) * local[:, 2]
    elif kind == "frustum":
        top = (local[:, 2] > 0).to(local.dtype)
        disp_local = torch.zeros_like(local)
        disp_local[:, :2] = -(1.0 - cfg.top_shrink) * local[:, :2] * top[:, None]
    else:
        raise ValueError(f"unknown deformation kind {kind!r}; expected 'prism' or 'frustum'")
    x = torch.ones(len(pos), 1)
    return x, pos, batch, disp_local @ orientation.T


def lorentz_acceleration(v: torch.Tensor, e_field: torch.Tensor, b_field: torch.Tensor) -> torch.Tensor:
    """Acceleration of a unit charge/mass particle: ``E + v x B``."""
    return e_field + torch.linalg.cross(v, b_field.expand_as(v))


def charged_particle_data(n_graphs: int, per_graph: int, e_field: torch.Tensor, b_field: torch.Tensor,
                          gen: torch.Generator, dt: float = 0.05, max_steps: int = 40,
                          spacing: float = 1.5) -> Batch:
    """Snapshots of particles whose velocities are integrated with RK4 in uniform E, B fields.

    Each graph is ``per_graph`` independent (non-interacting) particles at one instant, placed on
    a cubic lattice ``spacing`` apart: in uniform fields the position plays no role, and keeping
    particles further apart than the model's cutoff stops a network from fitting noise through
    neighbours that do not interact. Node features are ``[1 (0e), v (1o)]``; the target is the
    acceleration ``E + v x B`` (1o).
    """
    if per_graph < 1 or n_graphs < 1:
        raise ValueError(f"need at least one graph and one particle, got n_graphs={n_graphs}, per_graph={per_graph}")
    count = n_graphs * per_graph
    vel = torch.randn(count, 3, generator=gen)
    steps = torch.randint(0, max_steps + 1, (count,), generator=gen)

    def accel(v: torch.Tensor) -> torch.Tensor:
        return lorentz_acceleration(v, e_field, b_field)

    for k in range(max_steps):
        k1 = accel(vel)
        k2 = accel(vel + 0.5 * dt * k1)
        k3 = accel(vel + 0.5 * dt * k2)
        k4 = accel(vel + dt * k3)
        moving = (steps > k).to(vel.dtype)[:, None]  # each particle stops at its own snapshot time
        vel = vel + moving * dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    side = math.ceil(per_graph ** (1 / 3) - 1e-9)
    grid = torch.stack(torch.meshgrid(*[torch.arange(side, dtype=vel.dtype)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = (spacing * grid[:per_graph]).repeat(n_graphs, 1)
    x = torch.cat([torch.ones(count, 1), vel], dim=1)
    batch = torch.arange(n_graphs).repeat_interleave(per_graph)
    return x, pos, batch, accel(vel)


# --------------------------------------------------------------------------------------------
# Training and evaluation


def relative_mse(model: RelaxedE3Net, data: Batch) -> float:
    x, pos, batch, target = data
    with torch.no_grad():
        pred = model(x, pos, batch)
    return float(((pred - target) ** 2).mean() / (target**2).mean())


def train(model: RelaxedE3Net, data: Batch, steps: int, lr: float, penalty: float,
          log_every: int = 10) -> list[float]:
    """Full-batch Adam on MSE (+ breaking penalty); returns the relative MSE every ``log_every`` steps."""
    x, pos, batch, target = data
    scale = (target**2).mean()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.02)
    curve = []
    for step in range(steps):
        opt.zero_grad()
        mse = ((model(x, pos, batch) - target) ** 2).mean() / scale
        loss = mse + penalty * model.breaking_penalty()
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            curve.append(mse.item())
    return curve


def weight_summary(model: RelaxedE3Net) -> list[dict[str, float]]:
    """Per layer: the norm of each irrep part of the learned relaxed weight."""
    irreps = model.convs[0].irreps_relaxed
    out = []
    for w in model.relaxed_weights():
        out.append({str(ir): float(irrep_part(irreps, w, str(ir)).norm()) for _, ir in irreps})
    return out


def _strongest_layer(model: RelaxedE3Net, irrep: str) -> tuple[int, torch.Tensor]:
    irreps = model.convs[0].irreps_relaxed
    weights = model.relaxed_weights()
    norms = [float(irrep_part(irreps, w, irrep).norm()) for w in weights]
    layer = int(np.argmax(norms))
    return layer, weights[layer]


def axis_report(model: RelaxedE3Net, irrep: str, true_axis: torch.Tensor) -> dict[str, float | int]:
    """Angle between ``true_axis`` and the direction the relaxed weights encode in ``irrep``.

    Uses the layer where that part is largest; ``l = 1`` parts are vectors, ``l = 2`` parts are
    read as the unique axis of their quadrupole tensor.
    """
    irreps = model.convs[0].irreps_relaxed
    layer, w = _strongest_layer(model, irrep)
    ir = o3.Irrep(irrep)
    report: dict[str, float | int] = {"layer": layer, "norm": float(irrep_part(irreps, w, irrep).norm())}
    if ir.l == 1:
        report["angle_deg"] = axis_angle_deg(irrep_vector(irreps, w, irrep), true_axis)
    elif ir.l == 2:
        axis, uniaxiality = quadrupole_axis(irrep_quadrupole(irreps, w, irrep))
        report["angle_deg"] = axis_angle_deg(axis, true_axis)
        report["uniaxiality"] = uniaxiality
    else:
        raise ValueError(f"axis_report needs an l=1 or l=2 irrep, got {irrep}")
    return report


def equivariance_report(model: RelaxedE3Net, data: Batch, gen: torch.Generator, n: int,
                        axis: torch.Tensor | None = None) -> dict[str, float]:
    """Mean equivariance error on random O(3) elements and, if ``axis`` is given, on rotations about it."""
    x, pos, batch, _ = data
    random_errors, axis_errors = [], []
    for _ in range(n):
        rot = o3.rand_matrix(dtype=pos.dtype)
        if torch.rand(1, generator=gen) < 0.5:
            rot = -rot  # improper element: O(3), not just SO(3)
        random_errors.append(equivariance_error_o3(model, x, pos, rot, batch))
        if axis is not None:
            angle = 2 * math.pi * float(torch.rand(1, generator=gen))
            axis_errors.append(equivariance_error_o3(model, x, pos, o3.axis_angle_to_matrix(axis, torch.tensor(angle)), batch))
    out = {"random_o3": float(np.mean(random_errors))}
    if axis is not None:
        out["about_true_axis"] = float(np.mean(axis_errors))
    return out
