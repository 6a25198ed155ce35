"""HEP's networks (the agent is in :mod:`symgym.agents.hep`): the top-down rasteriser and C4-steerable heatmap FCN of
the high level, and the invariant-feature chunk network of the low level.

See :mod:`symgym.agents.hep` for how they compose and what the whole policy is equivariant to.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from symgym.envs.closed_loop import ATTACHED, EE_POS, OBJ_POS, TARGET_POS
from symgym.equivariance.escnn_nets import SteerableFCN
from symgym.equivariance.groups import CyclicGroup

POS_SCALE = 10.0   # metres -> decimetres: network inputs of order one
RASTER_CHANNELS = 7  # occupancy x 3 labels, height x 3 labels, suction flag
N_SCALARS = 3       # low-level invariant inputs: end-effector height, object height, suction flag


# ---------------------------------------------------------------------------------------------------------
# High level: rasterise -> heatmap -> keypose
# ---------------------------------------------------------------------------------------------------------
def rasterize(points: torch.Tensor, attached: torch.Tensor, grid: int, pixel: float) -> torch.Tensor:
    """Bilinear splat of (B, N, 4) labelled points onto a (B, 7, grid, grid) top-down image.

    Pixel (row, col) has its centre at world ``x = (col + 0.5 - grid/2) * pixel``,
    ``y = (grid/2 - row - 0.5) * pixel``, so a 90-degree world rotation is an exact ``rot90`` of the image.
    """
    B, N, _ = points.shape
    half = grid * pixel / 2
    u = (points[..., 0] + half) / pixel - 0.5
    v = (half - points[..., 1]) / pixel - 0.5
    label = points[..., 3].round().long().clamp(0, 2)
    c0, r0 = torch.floor(u), torch.floor(v)
    fu, fv = u - c0, v - r0
    img = torch.zeros(B, RASTER_CHANNELS * grid * grid, dtype=points.dtype)
    batch = torch.arange(B)[:, None].expand(B, N)
    for dr, dc, w in ((0, 0, (1 - fv) * (1 - fu)), (0, 1, (1 - fv) * fu), (1, 0, fv * (1 - fu)), (1, 1, fv * fu)):
        r, c = (r0 + dr).long(), (c0 + dc).long()
        ok = (r >= 0) & (r < grid) & (c >= 0) & (c < grid)
        pix = (r * grid + c).clamp(0, grid * grid - 1)
        for channel, value in ((label, 0.25 * w), (label + 3, w * points[..., 2] * POS_SCALE)):
            idx = channel * grid * grid + pix
            img.index_put_((batch[ok], idx[ok]), value[ok], accumulate=True)
    img = img.view(B, RASTER_CHANNELS, grid, grid)
    img[:, 6] = attached.view(B, 1, 1)
    return img


def pixel_centres(grid: int, pixel: float) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(grid, dtype=torch.float64)
    return (idx + 0.5 - grid / 2) * pixel, (grid / 2 - idx - 0.5) * pixel   # x of columns, y of rows


def mask_to_support(logits: torch.Tensor, raster: torch.Tensor) -> torch.Tensor:
    """Keep logits only where points landed (dilated by one pixel): a keypose lies on an observed surface.

    Besides being a useful prior, this removes the flat plateau an FCN produces over empty floor, where an
    argmax would have to break exact ties (which no rule can do equivariantly).
    """
    occupied = (raster[:, :3].sum(1, keepdim=True) > 0).float()
    support = F.max_pool2d(occupied, 3, stride=1, padding=1)[:, 0] > 0
    return logits.masked_fill(~support, -1e4)


def keypose_from_heatmap(logits: torch.Tensor, pixel: float) -> torch.Tensor:
    """(B, G, G) logits -> (B, 2) world x, y: argmax, then a softmax-weighted mean over its 3x3 window."""
    B, G, _ = logits.shape
    flat = logits.reshape(B, -1).argmax(1)
    r, c = flat // G, flat % G
    xs, ys = pixel_centres(G, pixel)
    out = torch.zeros(B, 2, dtype=torch.float64)
    for b in range(B):
        rows = torch.arange(max(0, int(r[b]) - 1), min(G, int(r[b]) + 2))
        cols = torch.arange(max(0, int(c[b]) - 1), min(G, int(c[b]) + 2))
        w = torch.softmax(logits[b][rows][:, cols].double().flatten(), 0).view(len(rows), len(cols))
        out[b, 0] = (w.sum(0) * xs[cols]).sum()
        out[b, 1] = (w.sum(1) * ys[rows]).sum()
    return out


def heatmap_target(keypose: torch.Tensor, grid: int, pixel: float) -> torch.Tensor:
    """(B, 2) keyposes -> (B, G*G) bilinear target distributions over pixels (sub-pixel labels)."""
    half = grid * pixel / 2
    u = ((keypose[:, 0] + half) / pixel - 0.5).clamp(0, grid - 1 - 1e-6)
    v = ((half - keypose[:, 1]) / pixel - 0.5).clamp(0, grid - 1 - 1e-6)
    c0, r0 = torch.floor(u).long(), torch.floor(v).long()
    fu, fv = u - c0, v - r0
    target = torch.zeros(len(keypose), grid * grid)
    rows = torch.arange(len(keypose))
    for dr, dc, w in ((0, 0, (1 - fv) * (1 - fu)), (0, 1, (1 - fv) * fu), (1, 0, fv * (1 - fu)), (1, 1, fv * fu)):
        target[rows, ((r0 + dr).clamp(max=grid - 1)) * grid + (c0 + dc).clamp(max=grid - 1)] += w.float()
    return target


class HeatmapNet(nn.Module):
    """Dilated FCN, circular padding, raster -> one logit per pixel; C4-steerable (escnn) or plain.

    ELU rather than ReLU: dead ReLUs make exactly flat regions of the heatmap whose argmax is a tie.
    """

    def __init__(self, equivariant: bool, fields: int = 6, dilations=(1, 2, 4, 1)):
        super().__init__()
        self.equivariant = equivariant
        if equivariant:
            # the one escnn builder (and weight-cache policy) of symgym.equivariance.escnn_nets
            self.net = SteerableFCN(CyclicGroup(4), RASTER_CHANNELS, 1, fields=fields, dilations=dilations,
                                    nonlinearity="elu", padding_mode="circular")
        else:
            layers, c = [], RASTER_CHANNELS
            for d in dilations:
                layers += [nn.Conv2d(c, 4 * fields, 3, padding=d, dilation=d, padding_mode="circular"), nn.ELU()]
                c = 4 * fields
            layers.append(nn.Conv2d(c, 1, 1))
            self.net = nn.Sequential(*layers)

    def portable_state(self) -> dict[str, torch.Tensor]:
        """A copy of the weights; the escnn part's state_dict never holds expanded filters, in any mode."""
        return {k: v.clone() for k, v in self.state_dict().items()}

    def load_portable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)
        self.eval()

    def forward(self, raster: torch.Tensor) -> torch.Tensor:
        return self.net(raster)[:, 0]


# ---------------------------------------------------------------------------------------------------------
# Low level: action chunk in the keypose frame
# ---------------------------------------------------------------------------------------------------------
def low_level_inputs(vector: torch.Tensor, keypose: torch.Tensor, frame_transfer: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 16) observation + (B, 2) keypose -> planar vectors (B, V, 2) and invariant scalars (B, 3).

    Velocities are left out on purpose: cloned from a handful of demos they feed back into the commands and
    make the end-effector oscillate; positions alone determine the oracle's action.
    """
    ee, obj, tgt = vector[:, EE_POS][:, :2], vector[:, OBJ_POS][:, :2], vector[:, TARGET_POS][:, :2]
    positions = [ee - keypose, obj - keypose, tgt - keypose] if frame_transfer else [ee, obj, tgt, keypose]
    vectors = torch.stack([p * POS_SCALE for p in positions], 1)
    scalars = torch.stack([vector[:, EE_POS.start + 2] * POS_SCALE, vector[:, OBJ_POS.start + 2] * POS_SCALE,
                           vector[:, ATTACHED.start]], 1)
    return vectors, scalars


def _mlp(n_in: int, n_out: int, hidden: int, layers: int = 3) -> nn.Sequential:
    mods, c = [], n_in
    for _ in range(layers - 1):
        mods += [nn.Linear(c, hidden), nn.SiLU()]
        c = hidden
    mods.append(nn.Linear(c, n_out))
    return nn.Sequential(*mods)


class ChunkNet(nn.Module):
    """(vectors, scalars) -> planar offsets (B, H, 2), height offsets (B, H), suction logits (B, H).

    ``equivariant=True``: exactly SO(2)-equivariant (invariant features in, equivariant basis out).
    """

    def __init__(self, n_vectors: int, chunk: int, hidden: int, equivariant: bool):
        super().__init__()
        self.n_vectors, self.chunk, self.equivariant = n_vectors, chunk, equivariant
        if equivariant:
            n_pairs = n_vectors * (n_vectors - 1) // 2
            n_inv = n_vectors * (n_vectors + 1) // 2 + n_pairs + n_vectors + N_SCALARS
            self.net = _mlp(n_inv, chunk * (4 * n_vectors + 2), hidden)
        else:
            self.net = _mlp(2 * n_vectors + N_SCALARS, chunk * 4, hidden)

    def forward(self, vectors: torch.Tensor, scalars: torch.Tensor):
        B, V, H = len(vectors), self.n_vectors, self.chunk
        if not self.equivariant:
            out = self.net(torch.cat([vectors.flatten(1), scalars], 1)).view(B, H, 4)
            return out[..., :2], out[..., 2], out[..., 3]
        iu = torch.triu_indices(V, V)
        ju = torch.triu_indices(V, V, offset=1)
        gram = vectors @ vectors.transpose(1, 2)                     # rotation invariant
        cross = vectors[..., 0, None] * vectors[:, None, :, 1] - vectors[..., 1, None] * vectors[:, None, :, 0]
        norms = vectors.norm(dim=-1)
        inv = torch.cat([gram[:, iu[0], iu[1]], cross[:, ju[0], ju[1]], norms, scalars], 1)
        out = self.net(inv).view(B, H, 4 * V + 2)
        unit = vectors / (norms[..., None] + 1e-2)
        turn = lambda x: torch.stack([-x[..., 1], x[..., 0]], -1)  # noqa: E731  (the 90-degree rotation J)
        basis = torch.stack([vectors, unit, turn(vectors), turn(unit)], 2).flatten(1, 2)   # (B, 4V, 2)
        planar = torch.einsum("bhk,bkd->bhd", out[..., :4 * V], basis)
        return planar, out[..., 4 * V], out[..., 4 * V + 1]
