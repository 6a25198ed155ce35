"""Exactly equivariant network blocks built with escnn from a declared :class:`Symmetry`.

* :class:`EquivariantMLP`: vector features in one representation -> vector features in another, with
  hidden layers made of regular-representation fields (ReLU acts pointwise on them, so it commutes with
  the group's permutations).
* :class:`SteerableImageEncoder`: a steerable CNN over a top-down image (channels are scalars) that
  ends in a global average pool, so its output is a vector of regular fields of the group.

Both are :class:`~symgym.equivariance.escnn_nets.EscnnNetwork` s: they take and return plain ``torch.Tensor`` s
(escnn's ``GeometricTensor`` stays inside), follow the one weight-cache policy documented in ``escnn_nets``
(weights-only ``state_dict`` in any mode, dense filters memoised for no-grad inference, never saved), and
``export()`` to plain torch modules with the expanded weights copied in.

Only finite planar groups are supported (the hidden layers use the regular representation). For an
O(2)-symmetric env, pick a finite subgroup with :func:`restrict_rep`, e.g. D4.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from escnn import nn as enn
from torch import nn

from symgym.equivariance.escnn_bridge import field_type, gspace_for, vector_gspace
from symgym.equivariance.escnn_nets import EscnnNetwork, regular_fields, scalar_fields
from symgym.equivariance.groups import PlanarGroup
from symgym.equivariance.representations import Representation, irrep, regular, sign, standard, trivial

_PART_BUILDERS = {"trivial": trivial, "sign": sign, "standard": standard, "regular": regular}


def rep_from_names(names: Sequence[str], group: PlanarGroup) -> Representation:
    """Direct sum of named building blocks (``"trivial"``, ``"sign"``, ``"standard"``, ``"regular"``,
    ``"irrepK"``) over ``group``: lets representations travel through saved configs as plain strings."""
    parts = []
    for name in names:
        if name in _PART_BUILDERS:
            parts.append(_PART_BUILDERS[name](group))
        elif name.startswith("irrep") and name[len("irrep"):].isdigit():
            parts.append(irrep(group, int(name[len("irrep"):])))
        else:
            raise ValueError(f"unknown representation part {name!r} (for {group.name})")
    if not parts:
        raise ValueError("a representation needs at least one part")
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def restrict_rep(rep: Representation, group: PlanarGroup) -> Representation:
    """The same representation (same building blocks, in order) on another planar group, usually a subgroup.

    An env declares e.g. ``7 * standard(O(2))``; an agent that works with D4 needs ``7 * standard(D4)``.
    """
    return rep_from_names([p.name for p in rep.parts], group)


def _check_finite(group: PlanarGroup) -> None:
    if not isinstance(group, PlanarGroup) or not group.finite:
        raise ValueError(f"equivariant layers need a finite planar group (Cn or Dn), got {group!r}")


class EquivariantMLP(EscnnNetwork):
    """An MLP with ``f(rho_in(g) x) = rho_out(g) f(x)`` for every element of a finite planar group.

    Args:
        in_rep: representation of the input vectors (e.g. ``7 * standard(D4)``).
        out_rep: representation of the outputs (``trivial`` for an invariant value, ``standard`` for an
            equivariant planar vector, or a sum of those).
        hidden: number of regular-representation fields per hidden layer (each has ``|G|`` channels).
    """

    def __init__(self, in_rep: Representation, out_rep: Representation, hidden: Sequence[int] = (16, 16)):
        if in_rep.group != out_rep.group:
            raise ValueError(f"in_rep is over {in_rep.group.name} but out_rep is over {out_rep.group.name}")
        _check_finite(in_rep.group)
        if any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {list(hidden)}")
        gs = vector_gspace(in_rep.group)
        in_type = field_type(gs, in_rep)
        layers: list[enn.EquivariantModule] = []
        current = in_type
        for h in hidden:
            hidden_type = regular_fields(gs, h)
            layers += [enn.Linear(current, hidden_type), enn.ReLU(hidden_type)]
            current = hidden_type
        layers.append(enn.Linear(current, field_type(gs, out_rep)))
        super().__init__(enn.SequentialModule(*layers), in_type)
        self.group, self.in_rep, self.out_rep = in_rep.group, in_rep, out_rep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_type.size:
            raise ValueError(f"expected inputs with {self.in_type.size} features ({self.in_rep.name}), got {tuple(x.shape)}")
        return self.body(x)


class SteerableImageEncoder(EscnnNetwork):
    """Steerable CNN: a channels-first image whose channels are scalars -> ``out_rep`` vector features.

    Rotations by multiples of 90 degrees (and the reflections of D4) act exactly on a square pixel grid, so
    equivariance is exact only for subgroups of D4. Spatial size halves after every conv block with 2x2
    average pooling (exact under those rotations for even sizes); a global average pool at the end leaves a
    vector of ``channels[-1]`` regular fields: ``out_rep = channels[-1] * regular(group)``.

    The image convention is :func:`equivariance.transforms.transform_image`'s: pixel (row, col) is world
    ``(x = col, y = H - 1 - row)``; the image is re-indexed to ``[..., x, y]`` before the convolutions so
    that escnn's grid axes line up with world x and y.
    """

    def __init__(self, group: PlanarGroup, in_channels: int = 3, channels: Sequence[int] = (8, 16, 16),
                 kernel_size: int = 5):
        _check_finite(group)
        if group.n not in (1, 2, 4):
            raise ValueError(f"image equivariance on a pixel grid needs a subgroup of D4, got {group.name}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (centred kernels), got {kernel_size}")
        gs = gspace_for(group)
        in_type = scalar_fields(gs, in_channels)
        layers: list[enn.EquivariantModule] = []
        current = in_type
        for i, c in enumerate(channels):
            hidden = regular_fields(gs, c)
            k = kernel_size if i == 0 else 3
            layers += [enn.R2Conv(current, hidden, k, padding=k // 2), enn.ReLU(hidden),
                       enn.PointwiseAvgPool2D(hidden, 2)]
            current = hidden
        super().__init__(enn.SequentialModule(*layers), in_type)
        self.group = group
        self.out_rep = regular(group) if len(channels) == 0 else int(channels[-1]) * regular(group)
        self.out_dim = current.size

    @staticmethod
    def _to_grid(x: torch.Tensor) -> torch.Tensor:
        # transform_image puts world +y up the picture (row = H-1-y, col = x); escnn's grid is indexed
        # [..., x, y] (checked by tests/test_layers.py), so reverse rows and swap the two axes.
        return torch.flip(x, dims=(-2,)).transpose(-2, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_type.size:
            raise ValueError(f"expected (B, {self.in_type.size}, H, W) images, got {tuple(x.shape)}")
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"expected square images, got {tuple(x.shape[-2:])}")
        return self.body(self._to_grid(x)).mean(dim=(-2, -1))

    def export(self) -> nn.Module:
        return _ExportedImageEncoder(super().export())


class _ExportedImageEncoder(nn.Module):
    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(SteerableImageEncoder._to_grid(x)).mean(dim=(-2, -1))


def count_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def group_element_matrices(rep: Representation) -> np.ndarray:
    """``rho(g)`` for every element of the (finite) group, stacked ``(|G|, d, d)``."""
    _check_finite(rep.group)
    return np.stack([rep(g) for g in rep.group.elements()])


__all__ = ["EquivariantMLP", "SteerableImageEncoder", "restrict_rep", "rep_from_names", "count_parameters", "group_element_matrices"]
