"""Relaxed E(3)-equivariant graph convolutions on e3nn.

An exactly E(3)-equivariant network cannot map a symmetric input to a less symmetric
output (Curie's principle). Following the relaxed-weights idea, every layer carries one
learnable feature ``w`` in a direct sum of O(3) irreps (``0e + 1o + 1e + 2e`` by default).
It is initialised to the scalar 1 with every ``l > 0`` part 0, and it is tensor-multiplied
with the edge spherical harmonics to build the filter:

    filter_ij = TP(Y(r_ij), w)         message_ij = TP_radial(|r_ij|)(x_j, filter_ij)

Because ``w`` does not rotate with the input, a non-zero ``l > 0`` part is a fixed tensor in
space that breaks the symmetry -- and it breaks it *only* to the stabiliser of ``w``:
rotations that leave ``w`` unchanged remain exact symmetries of the layer. Reading the
learned ``w`` back (:func:`irrep_vector`, :func:`irrep_quadrupole`) says which symmetry the
data broke. The strict counterpart (``relaxed=False``) masks ``w`` down to its scalar part,
which makes the layer exactly O(3)-equivariant whatever is trained.

No torch_scatter/torch_cluster: neighbourhoods come from :func:`torch.cdist`, aggregation
from :meth:`torch.Tensor.index_add_`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn

DEFAULT_RELAXED_IRREPS = "0e + 1o + 1e + 2e"


def radius_graph(pos: torch.Tensor, batch: torch.Tensor, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed edges ``(src, dst)`` between distinct nodes of the same graph closer than ``cutoff``."""
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape (num_nodes, 3), got {tuple(pos.shape)}")
    if batch.shape != pos.shape[:1]:
        raise ValueError(f"batch must have shape ({pos.shape[0]},), got {tuple(batch.shape)}")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    dist = torch.cdist(pos, pos)
    same_graph = batch[:, None] == batch[None, :]
    not_self = ~torch.eye(len(pos), dtype=torch.bool, device=pos.device)
    dst, src = torch.nonzero((dist < cutoff) & same_graph & not_self, as_tuple=True)
    return src, dst


def _reachable_filter_irreps(irreps_sh: o3.Irreps, irreps_relaxed: o3.Irreps, lmax: int) -> o3.Irreps:
    """One copy of every irrep (l <= lmax) that ``Y (x) w`` can produce."""
    found = set()
    for _, ir_sh in irreps_sh:
        for _, ir_w in irreps_relaxed:
            for ir in ir_sh * ir_w:
                if ir.l <= lmax:
                    found.add((ir.l, ir.p))
    return o3.Irreps([(1, ir) for ir in sorted(found, key=lambda lp: (lp[0], -lp[1]))])


class RelaxedE3Conv(nn.Module):
    """Graph convolution whose filter is ``TP(Y(r_ij), w)`` with a learnable relaxed weight ``w``.

    Args:
        irreps_in / irreps_out: node feature irreps before and after the layer.
        irreps_relaxed: irreps of ``w``; must contain ``0e`` (the initial value is that scalar = 1).
        lmax: highest degree of the edge spherical harmonics and of the filter.
        cutoff: radius of the neighbourhood (radial weights vanish smoothly there).
        relaxed: ``False`` gives the strict counterpart (``w`` masked to its scalar part).
        avg_num_neighbors: messages are summed and divided by ``sqrt`` of this.
    """

    def __init__(
        self,
        irreps_in: str | o3.Irreps,
        irreps_out: str | o3.Irreps,
        irreps_relaxed: str | o3.Irreps = DEFAULT_RELAXED_IRREPS,
        lmax: int = 2,
        cutoff: float = 3.0,
        num_radial: int = 8,
        radial_hidden: int = 32,
        relaxed: bool = True,
        avg_num_neighbors: float = 4.0,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_relaxed = o3.Irreps(irreps_relaxed).simplify()
        if o3.Irrep("0e") not in self.irreps_relaxed:
            raise ValueError(f"irreps_relaxed must contain a 0e scalar to start equivariant, got {self.irreps_relaxed}")
        if lmax < 0:
            raise ValueError(f"lmax must be >= 0, got {lmax}")
        if not cutoff > 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        self.cutoff = float(cutoff)
        self.num_radial = num_radial
        self.relaxed = relaxed
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.irreps_filter = _reachable_filter_irreps(self.irreps_sh, self.irreps_relaxed, lmax)

        # w starts as the scalar 1: Y (x) w is then a (learned) linear map of Y, exactly equivariant.
        init = torch.zeros(self.irreps_relaxed.dim)
        scalar_slice = self.irreps_relaxed.slices()[self._scalar_index()]
        init[scalar_slice.start] = 1.0
        self.relaxed_weight = nn.Parameter(init)
        mask = torch.ones(self.irreps_relaxed.dim) if relaxed else (init != 0).to(init.dtype)
        self.register_buffer("weight_mask", mask)

        self.filter_tp = o3.FullyConnectedTensorProduct(self.irreps_sh, self.irreps_relaxed, self.irreps_filter)
        self.conv_tp = o3.FullyConnectedTensorProduct(
            self.irreps_in, self.irreps_filter, self.irreps_out, shared_weights=False, internal_weights=False
        )
        self.radial = FullyConnectedNet([num_radial, radial_hidden, self.conv_tp.weight_numel], torch.nn.functional.silu)
        # The node's own feature enters through the filter at r = 0, where only Y_0 survives,
        # so the self-interaction also sees w: a constant field (E) or a cross product (v x B)
        # can act on a node without any neighbour.
        self.self_tp = o3.FullyConnectedTensorProduct(self.irreps_in, self.irreps_filter, self.irreps_out)
        sh_at_origin = torch.zeros(self.irreps_sh.dim)
        sh_at_origin[0] = 1.0
        self.register_buffer("sh_at_origin", sh_at_origin)

    def _scalar_index(self) -> int:
        return [i for i, (_, ir) in enumerate(self.irreps_relaxed) if ir == o3.Irrep("0e")][0]

    def weight(self) -> torch.Tensor:
        """The relaxed weight as used in the forward pass (masked to the scalar when strict)."""
        return self.relaxed_weight * self.weight_mask

    def breaking_norm(self) -> torch.Tensor:
        """Sum over ``l > 0`` irreps of the norm of ``w``'s part: 0 iff the layer is exactly equivariant."""
        w = self.weight()
        norms = [w[s].norm() for s, (_, ir) in zip(self.irreps_relaxed.slices(), self.irreps_relaxed) if ir.l > 0]
        return torch.stack(norms).sum() if norms else w.new_zeros(())

    def forward(self, x: torch.Tensor, pos: torch.Tensor, edge_src: torch.Tensor, edge_dst: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.irreps_in.dim:
            raise ValueError(f"x must have shape (num_nodes, {self.irreps_in.dim}) for {self.irreps_in}, got {tuple(x.shape)}")
        w = self.weight()
        edge_vec = pos[edge_src] - pos[edge_dst]
        sh = o3.spherical_harmonics(self.irreps_sh, edge_vec, normalize=True, normalization="component")
        edge_filter = self.filter_tp(sh, w.expand(len(sh), -1))
        length_basis = soft_one_hot_linspace(
            edge_vec.norm(dim=1), 0.0, self.cutoff, self.num_radial, basis="smooth_finite", cutoff=True
        ) * math.sqrt(self.num_radial)
        messages = self.conv_tp(x[edge_src], edge_filter, self.radial(length_basis))
        out = x.new_zeros(len(x), self.irreps_out.dim).index_add_(0, edge_dst, messages)
        out = out / math.sqrt(self.avg_num_neighbors)
        self_filter = self.filter_tp(self.sh_at_origin[None], w[None])
        return out + self.self_tp(x, self_filter.expand(len(x), -1))


@dataclass
class RelaxedE3Config:
    """Architecture of :class:`RelaxedE3Net`."""

    irreps_in: str = "1x0e"
    irreps_out: str = "1x1o"
    irreps_hidden: str = "16x0e + 8x1o + 8x1e + 4x2e + 4x2o"
    irreps_relaxed: str = DEFAULT_RELAXED_IRREPS
    num_layers: int = 2
    lmax: int = 2
    cutoff: float = 3.0
    num_radial: int = 8
    radial_hidden: int = 32
    avg_num_neighbors: float = 4.0
    relaxed: bool = True


class RelaxedE3Net(nn.Module):
    """Stack of :class:`RelaxedE3Conv` layers with gated nonlinearities; node features in, node features out."""

    def __init__(self, config: RelaxedE3Config) -> None:
        super().__init__()
        if config.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {config.num_layers}")
        self.config = config
        hidden = o3.Irreps(config.irreps_hidden).simplify()
        scalars = o3.Irreps([(mul, ir) for mul, ir in hidden if ir == o3.Irrep("0e")])
        gated = o3.Irreps([(mul, ir) for mul, ir in hidden if ir.l > 0])
        layer_kwargs = dict(
            irreps_relaxed=config.irreps_relaxed,
            lmax=config.lmax,
            cutoff=config.cutoff,
            num_radial=config.num_radial,
            radial_hidden=config.radial_hidden,
            relaxed=config.relaxed,
            avg_num_neighbors=config.avg_num_neighbors,
        )
        self.convs = nn.ModuleList()
        self.gates = nn.ModuleList()
        irreps = o3.Irreps(config.irreps_in)
        for _ in range(config.num_layers - 1):
            gate = Gate(
                scalars, [torch.nn.functional.silu],
                o3.Irreps(f"{gated.num_irreps}x0e"), [torch.sigmoid],
                gated,
            )
            self.convs.append(RelaxedE3Conv(irreps, gate.irreps_in, **layer_kwargs))
            self.gates.append(gate)
            irreps = gate.irreps_out
        self.convs.append(RelaxedE3Conv(irreps, config.irreps_out, **layer_kwargs))
        self.irreps_in = o3.Irreps(config.irreps_in)
        self.irreps_out = o3.Irreps(config.irreps_out)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        if batch is None:
            batch = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
        edge_src, edge_dst = radius_graph(pos, batch, self.config.cutoff)
        for i, conv in enumerate(self.convs):
            x = conv(x, pos, edge_src, edge_dst)
            if i < len(self.gates):
                x = self.gates[i](x)
        return x

    def relaxed_weights(self) -> list[torch.Tensor]:
        """The (masked) relaxed weight of every layer, detached."""
        return [conv.weight().detach().clone() for conv in self.convs]

    def breaking_penalty(self) -> torch.Tensor:
        """Group-lasso penalty on the ``l > 0`` parts: prefer breaking as little symmetry as the data allows."""
        return torch.stack([conv.breaking_norm() for conv in self.convs]).sum()


# ---------------------------------------------------------------------------------------------
# Reading relaxed weights back as geometry


def irrep_part(irreps: str | o3.Irreps, w: torch.Tensor, irrep: str) -> torch.Tensor:
    """The components of ``w`` belonging to ``irrep`` (e.g. ``"2e"``); empty if absent."""
    irreps = o3.Irreps(irreps)
    if w.shape[-1] != irreps.dim:
        raise ValueError(f"weight has {w.shape[-1]} components but {irreps} has dimension {irreps.dim}")
    target = o3.Irrep(irrep)
    parts = [w[..., s] for s, (_, ir) in zip(irreps.slices(), irreps) if ir == target]
    return torch.cat(parts, dim=-1) if parts else w.new_zeros(w.shape[:-1] + (0,))


def irrep_vector(irreps: str | o3.Irreps, w: torch.Tensor, irrep: str = "1o") -> torch.Tensor:
    """The l=1 part of ``w`` as a Cartesian 3-vector (e3nn's l=1 basis is x, y, z)."""
    part = irrep_part(irreps, w, irrep)
    if part.shape[-1] != 3:
        raise ValueError(f"expected one copy of {irrep} in {irreps}, found {part.shape[-1] // 3}")
    return part


def irrep_quadrupole(irreps: str | o3.Irreps, w: torch.Tensor, irrep: str = "2e") -> torch.Tensor:
    """The l=2 part of ``w`` as a symmetric traceless 3x3 Cartesian tensor ``T`` (``D_2(R) w <-> R T R^T``)."""
    part = irrep_part(irreps, w, irrep)
    if part.shape[-1] != 5:
        raise ValueError(f"expected one copy of {irrep} in {irreps}, found {part.shape[-1] // 5}")
    c = o3.wigner_3j(1, 1, 2, dtype=part.dtype, device=part.device)
    return torch.einsum("abm,...m->...ab", c, part) * math.sqrt(5.0)


def quadrupole_axis(t: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Unique axis of a (nearly uniaxial) symmetric tensor and how uniaxial it is.

    Returns the eigenvector whose eigenvalue lies furthest from the other two, and the
    uniaxiality ``1 - gap_small / gap_large`` in [0, 1] (1 = perfectly uniaxial).
    """
    evals, evecs = torch.linalg.eigh(t)
    gap_low, gap_high = float(evals[1] - evals[0]), float(evals[2] - evals[1])
    idx = 0 if gap_low > gap_high else 2
    big, small = max(gap_low, gap_high), min(gap_low, gap_high)
    uniaxiality = 1.0 - small / big if big > 0 else 0.0
    return evecs[:, idx], uniaxiality


def axis_angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two axes in degrees, ignoring sign (an axis and its negative are the same axis)."""
    a, b = a.double(), b.double()
    cos = torch.abs(torch.dot(a, b)) / (a.norm() * b.norm()).clamp_min(1e-300)
    return float(torch.rad2deg(torch.arccos(cos.clamp(max=1.0))))


def spherical_signal(irreps: str | o3.Irreps, w: torch.Tensor, directions: torch.Tensor, min_l: int = 0,
                     only: str | None = None) -> torch.Tensor:
    """Evaluate ``sum_lm w_lm Y_lm(n)`` on unit ``directions`` (..., 3), over irreps with ``l >= min_l``
    (or just the irrep ``only``). Parity only matters under reflection, so ``1e`` is drawn like ``1o``."""
    irreps = o3.Irreps(irreps)
    if w.shape[-1] != irreps.dim:
        raise ValueError(f"weight has {w.shape[-1]} components but {irreps} has dimension {irreps.dim}")
    out = directions.new_zeros(directions.shape[:-1])
    for s, (_, ir) in zip(irreps.slices(), irreps):
        if ir.l < min_l or (only is not None and ir != o3.Irrep(only)):
            continue
        y = o3.spherical_harmonics(ir.l, directions, normalize=True, normalization="component")
        out = out + (y * w[s].to(y.dtype)).sum(-1)
    return out


def equivariance_error_o3(model: RelaxedE3Net, x: torch.Tensor, pos: torch.Tensor, rotation: torch.Tensor,
                          batch: torch.Tensor | None = None) -> float:
    """Max relative error ``|f(D_in x, R pos) - D_out f(x, pos)| / max|f|`` for one O(3) matrix ``rotation``."""
    d_in = model.irreps_in.D_from_matrix(rotation).to(x.dtype)
    d_out = model.irreps_out.D_from_matrix(rotation).to(x.dtype)
    with torch.no_grad():
        out = model(x, pos, batch)
        out_rot = model(x @ d_in.T, pos @ rotation.T.to(pos.dtype), batch)
    scale = out.abs().max().clamp_min(1e-12)
    return float((out_rot - out @ d_out.T).abs().max() / scale)
