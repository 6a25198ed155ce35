"""Neural radar simulators on triangle meshes: face embeddings, a direction-query readout, graph-autoencoder pretraining.

Following arXiv 2501.09597 a simulator is *face embedding -> aggregation -> decoder*. Three face embeddings:

- ``direct``: an MLP on each face's own geometry (no connectivity);
- ``graph``: message passing over the face-adjacency graph (faces that share an edge);
- ``token``: the graph embedding quantised to the nearest of ``n_codes`` learned codebook vectors
  (vector quantisation with a straight-through gradient, as in tokenised mesh models).

All inputs are rotation invariant (areas, edge lengths, distances, dot products of normals). The readout
scores every face against every aspect direction ``d_k`` from its embedding and the dot products
``n_f . d_k`` and ``(c_f - c) . d_k``, and aggregates with an area-weighted log-sum-exp over faces::

    pred_k = alpha * log sum_f (A_f / A) exp(s_fk) + beta

a soft, incoherent sum of face contributions in the log (dB) domain. Rotating the mesh and the directions
together therefore leaves the prediction unchanged (tested), and splitting a face into pieces with equal
scores leaves the sum unchanged: what is left to the embedding is to score pieces consistently.

Face features (:func:`face_graph`) are normalised per mesh (face area over the mesh's mean face area, triangle
shape, discrete curvature) so that they do not move when the same surface is meshed at another resolution.

Pretraining (``pretrain_gae``) is a graph autoencoder on unlabelled meshes in random triangulations and
resolutions: the embedding must (a) tell adjacent faces from random pairs of the same mesh by an inner product
of their embeddings (link prediction, Kipf & Welling's GAE) and (b) reconstruct the features of masked faces
(masked autoencoding). The simulator is then fine-tuned end to end.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from symgym.physics.mesh import TriMesh

EMBEDDINGS = ("direct", "graph", "token")
N_FACE_FEATURES, N_EDGE_FEATURES = 7, 4


# ----------------------------------------------------------------------------- mesh -> face graph
@dataclass
class FaceGraph:
    """Tensors a simulator reads from one mesh; lengths are in wavelengths."""

    feat: torch.Tensor  # (F, 7) rotation-invariant face features
    normal: torch.Tensor  # (F, 3)
    rel_centroid: torch.Tensor  # (F, 3) centroid - area-weighted surface centre, in wavelengths
    log_weight: torch.Tensor  # (F,) log(A_f / A)
    edges: torch.Tensor  # (2, E) face adjacency, both directions
    edge_feat: torch.Tensor  # (E, 4)


def face_adjacency(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge, (2, E) with both directions, and that edge's two vertices (E, 2).

    Non-manifold edges (not shared by exactly two faces) are skipped.
    """
    corner = np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1).reshape(-1, 2)
    unique, inverse, counts = np.unique(np.sort(corner, axis=1), axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    owner = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(inverse, kind="stable")
    shared = counts[inverse[order]] == 2
    pairs = owner[order][shared].reshape(-1, 2)
    edge_vertices = unique[inverse[order][shared][::2]]
    return np.concatenate([pairs, pairs[:, ::-1]]).T, np.concatenate([edge_vertices, edge_vertices])


FEATURES = ("normalised", "absolute")


def face_graph(mesh: TriMesh, wavelength: float, features: str = "normalised") -> FaceGraph:
    """Face and edge features of one triangulation (lengths in wavelengths).

    ``features="normalised"`` (default) describes the *surface* in ways that do not change when the same surface
    is triangulated at another resolution; a simulator trained on one resolution then meets no new feature values
    on a coarser or finer mesh (the labels are the converged response, so the resolution carries no information):

    - face: ``log(A_f / mean face area)`` (a face's size *relative to its mesh*: 0 on a uniform mesh at any
      resolution; split or jittered faces stand out), its three sorted edge lengths divided by its perimeter
      (the triangle's shape, scale-free), the centroid's distance from the surface centre and the cosine between
      the normal and that offset (where on the surface the face is), and ``0.5 log(total area)`` (the object's
      size; the total area changes by a few per cent at most between resolutions: ~6 % for a coarse ellipsoid);
    - edge (between faces i, j sharing an edge): ``n_i . n_j`` (bounded; a crease stays a crease), the discrete
      normal curvature ``angle(n_i, n_j) / |c_i - c_j|`` in 1/wavelength (converges as a smooth surface is
      refined, where the centroid gap and the angle each halve per subdivision), and the edge length and the
      centroid gap divided by their mesh means (log; 0 on a uniform mesh at any resolution).

    What stays resolution dependent: on smooth patches ``n_i . n_j`` drifts towards 1 (bounded), and at a crease
    the curvature estimate doubles per subdivision (a crease has none); the weights ``A_f / A`` of the readout
    are fractions, so they sum to one at every resolution.

    ``features="absolute"`` are the features before issue 35 (``log A_f`` and edge lengths in wavelengths, the
    raw centroid gap and edge length): a finer mesh puts ``log A_f`` ~1.4 below anything seen in training on the
    canonical resolution, a coarser one ~1.4 above. Kept as the ablation ``graph-absolute``.
    """
    if features not in FEATURES:
        raise ValueError(f"unknown face features {features!r}; expected one of {FEATURES}")
    v, f = mesh.vertices / wavelength, mesh.faces
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    normal = cross / (2 * area[:, None])
    centroid = (a + b + c) / 3
    centre = (centroid * area[:, None]).sum(0) / area.sum()
    rel = centroid - centre
    dist = np.linalg.norm(rel, axis=1)
    lengths = np.sort(np.stack([np.linalg.norm(b - c, axis=1), np.linalg.norm(c - a, axis=1),
                                np.linalg.norm(a - b, axis=1)], 1), axis=1)
    place = [0.5 * dist, (normal * rel).sum(1) / np.maximum(dist, 1e-9), np.full(len(f), 0.5 * np.log(area.sum()))]
    edges, edge_vertices = face_adjacency(f)
    src, dst = edges
    gap = np.linalg.norm(centroid[src] - centroid[dst], axis=1)
    edge_len = np.linalg.norm(v[edge_vertices[:, 0]] - v[edge_vertices[:, 1]], axis=1)
    cos = (normal[src] * normal[dst]).sum(1)
    if features == "normalised":
        feat = np.column_stack([np.log(area / area.mean()), lengths / lengths.sum(1, keepdims=True), *place])
        curvature = np.arccos(np.clip(cos, -1.0, 1.0)) / np.maximum(gap, 1e-9)
        edge_feat = np.column_stack([cos, curvature, np.log(gap / gap.mean()), np.log(edge_len / edge_len.mean())])
    else:
        feat = np.column_stack([np.log(area), lengths, *place])
        edge_feat = np.column_stack([cos, gap, ((centroid[src] - centroid[dst]) * normal[dst]).sum(1),
                                     np.log(edge_len)])
    t = lambda x, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(x), dtype=dt)  # noqa: E731
    return FaceGraph(t(feat), t(normal), t(rel), t(np.log(area / area.sum())), t(edges, torch.long), t(edge_feat))


@dataclass
class Batch:
    """Several face graphs concatenated into one disconnected graph."""

    feat: torch.Tensor
    normal: torch.Tensor
    rel_centroid: torch.Tensor
    log_weight: torch.Tensor
    edges: torch.Tensor
    edge_feat: torch.Tensor
    graph: torch.Tensor  # (F,) mesh index of each face
    n_graphs: int


def collate(graphs: list[FaceGraph]) -> Batch:
    offsets = np.cumsum([0] + [len(g.feat) for g in graphs[:-1]])
    cat = lambda name: torch.cat([getattr(g, name) for g in graphs])  # noqa: E731
    return Batch(cat("feat"), cat("normal"), cat("rel_centroid"), cat("log_weight"),
                 torch.cat([g.edges + int(o) for g, o in zip(graphs, offsets)], dim=1), cat("edge_feat"),
                 torch.cat([torch.full((len(g.feat),), i) for i, g in enumerate(graphs)]), len(graphs))


# ----------------------------------------------------------------------------- building blocks
def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


def segment_sum(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros((n,) + x.shape[1:], dtype=x.dtype).index_add_(0, index, x)


def segment_logsumexp(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """log sum_i exp(x_i) within each segment; x is (N, K)."""
    idx = index.unsqueeze(-1).expand_as(x)
    top = torch.full((n, x.shape[1]), -torch.inf).scatter_reduce(0, idx, x.detach(), "amax")
    return top + torch.log(segment_sum(torch.exp(x - top[index]), index, n))


class MessagePassing(nn.Module):
    """h_i <- LayerNorm(h_i + MLP(h_i, mean_j SiLU(A h_i + B h_j + C e_ij))) over the neighbours j of i."""

    def __init__(self, hidden: int, edge_dim: int) -> None:
        super().__init__()
        self.to_dst = nn.Linear(hidden, hidden)
        self.to_src = nn.Linear(hidden, hidden, bias=False)
        self.from_edge = nn.Linear(edge_dim, hidden, bias=False)
        self.update = mlp(2 * hidden, hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, edges: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        src, dst = edges
        m = nn.functional.silu(self.to_dst(h)[dst] + self.to_src(h)[src] + self.from_edge(e))
        deg = segment_sum(torch.ones_like(dst, dtype=h.dtype), dst, len(h)).clamp(min=1)
        return self.norm(h + self.update(torch.cat([h, segment_sum(m, dst, len(h)) / deg.unsqueeze(-1)], dim=-1)))


# ----------------------------------------------------------------------------- face embeddings
class FaceEmbedding(nn.Module):
    """``direct`` (per-face MLP), ``graph`` (face-adjacency message passing) or ``token`` (graph + codebook)."""

    RESTART_EVERY = 20

    def __init__(self, kind: str, hidden: int, layers: int, n_codes: int = 64) -> None:
        super().__init__()
        if kind not in EMBEDDINGS:
            raise ValueError(f"unknown face embedding {kind!r}; expected one of {EMBEDDINGS}")
        self.kind = kind
        self.embed = mlp(N_FACE_FEATURES, hidden, hidden)
        self.mask_token = nn.Parameter(torch.zeros(N_FACE_FEATURES))
        n_layers = 0 if kind == "direct" else layers
        self.blocks = nn.ModuleList([MessagePassing(hidden, N_EDGE_FEATURES) for _ in range(n_layers)])
        self.codebook = nn.Parameter(torch.randn(n_codes, hidden)) if kind == "token" else None
        self.register_buffer("usage", torch.zeros(n_codes, dtype=torch.long))  # calls since each code was last used
        self.vq_loss = torch.zeros(())
        self.codes_used = 0

    def forward(self, b: Batch, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = b.feat if mask is None else torch.where(mask.unsqueeze(-1), self.mask_token.expand_as(b.feat), b.feat)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, b.edges, b.edge_feat)
        if self.codebook is None:
            return h
        return self._quantise(h)

    def _quantise(self, h: torch.Tensor) -> torch.Tensor:
        """Nearest codebook vector, straight-through gradient; VQ-VAE codebook + 0.25 commitment loss.

        While training, codes unused for ``RESTART_EVERY`` calls are moved onto random current embeddings
        (dead-code restart); without it the codebook collapses onto one or two codes within a few steps.
        """
        code = torch.cdist(h.detach(), self.codebook).argmin(dim=1)
        q = self.codebook[code]
        self.vq_loss = ((q - h.detach()) ** 2).mean() + 0.25 * ((h - q.detach()) ** 2).mean()
        self.codes_used = int(code.unique().numel())
        if self.training:
            self.usage[code.unique()] = 0
            self.usage += 1
            dead = self.usage > self.RESTART_EVERY
            if dead.any():
                with torch.no_grad():
                    pick = torch.randint(len(h), (int(dead.sum()),))
                    self.codebook[dead] = h.detach()[pick]
                self.usage[dead] = 0
        return h + (q - h).detach()

    @torch.no_grad()
    def init_codebook(self, b: Batch, generator: torch.Generator) -> None:
        """Codebook vectors start at embeddings of random faces (no dead codes at the start)."""
        if self.codebook is None:
            return
        h = self.embed(b.feat)
        for block in self.blocks:
            h = block(h, b.edges, b.edge_feat)
        pick = torch.randint(len(h), (len(self.codebook),), generator=generator)
        self.codebook.copy_(h[pick] + 1e-3 * torch.randn(self.codebook.shape, generator=generator))


# ----------------------------------------------------------------------------- the simulator
class RadarSimulator(nn.Module):
    """Face embedding -> per-(face, direction) score -> area-weighted log-sum-exp -> dB response."""

    def __init__(self, embedding: str, directions: np.ndarray, hidden: int = 48, layers: int = 3,
                 n_codes: int = 64, readout_hidden: int = 16) -> None:
        super().__init__()
        self.embedding = FaceEmbedding(embedding, hidden, layers, n_codes)
        self.readout_face = mlp(hidden, hidden, hidden)
        self.readout_query = nn.Linear(4, hidden, bias=False)
        # score = MLP(SiLU(A h_f + B q_fk)); A h_f runs once per face, the rest per (face, direction)
        self.readout_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, readout_hidden), nn.SiLU(), nn.Linear(readout_hidden, 1))
        self.out_scale = nn.Parameter(torch.ones(()))
        self.out_bias = nn.Parameter(torch.zeros(()))
        # GAE heads, used only while pretraining
        self.reconstruct = mlp(hidden, hidden, N_FACE_FEATURES)
        self.link_project = nn.Linear(hidden, hidden)
        self.link_scale = nn.Parameter(torch.tensor(1.0))
        self.link_bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("directions", torch.as_tensor(directions, dtype=torch.float32))

    def forward(self, b: Batch) -> torch.Tensor:
        h = self.embedding(b)
        nd = b.normal @ self.directions.T  # (F, K)
        rd = b.rel_centroid @ self.directions.T
        # angle off specular, linear and logarithmic: a lobe of width ~ lambda / L is sharp in n.d but smooth here
        angle = torch.arccos(nd.clamp(-1 + 1e-6, 1 - 1e-6))
        q = torch.stack([nd, angle, torch.log(angle + 0.02), 0.5 * rd], dim=-1)  # (F, K, 4)
        z = self.readout_face(h).unsqueeze(1) + self.readout_query(q)
        s = self.readout_out(z).squeeze(-1) + b.log_weight.unsqueeze(-1)
        return self.out_scale * segment_logsumexp(s, b.graph, b.n_graphs) + self.out_bias


def build_simulator(name: str, directions: np.ndarray, hidden: int, layers: int, n_codes: int = 64) -> RadarSimulator:
    """``name`` is an embedding kind, optionally with ``+pretrain`` (graph and token embeddings only)."""
    base = name.removesuffix("+pretrain")
    if base not in EMBEDDINGS:
        raise ValueError(f"unknown model {name!r}; expected one of {EMBEDDINGS}, optionally with '+pretrain'")
    if name.endswith("+pretrain") and base == "direct":
        raise ValueError(f"model {name!r}: a direct face embedding has no graph for a graph autoencoder")
    return RadarSimulator(base, directions, hidden, layers, n_codes)


# ----------------------------------------------------------------------------- graph-autoencoder pretraining
def gae_loss(model: RadarSimulator, b: Batch, mask_ratio: float, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Link prediction (adjacent faces vs random same-mesh pairs) + masked face-feature reconstruction."""
    mask = torch.rand(len(b.feat), generator=generator) < mask_ratio
    h = model.embedding(b, mask)
    src, dst = b.edges
    # negatives: random faces of the same mesh as src (offset within its own segment)
    counts = torch.bincount(b.graph, minlength=b.n_graphs)
    start = torch.cumsum(counts, 0) - counts
    neg = start[b.graph[src]] + (torch.rand(len(src), generator=generator) * counts[b.graph[src]]).long()
    # inner-product decoder on projected embeddings, centred per mesh and normalised (a cosine similarity)
    z = model.link_project(h)
    z = z - (segment_sum(z, b.graph, b.n_graphs) / counts.unsqueeze(-1))[b.graph]
    z = nn.functional.normalize(z, dim=-1)
    pos_logit = model.link_scale * (z[src] * z[dst]).sum(-1) + model.link_bias
    neg_logit = model.link_scale * (z[src] * z[neg]).sum(-1) + model.link_bias
    bce = nn.functional.binary_cross_entropy_with_logits
    link = bce(pos_logit, torch.ones_like(pos_logit)) + bce(neg_logit, torch.zeros_like(neg_logit))
    recon = ((model.reconstruct(h[mask]) - b.feat[mask]) ** 2).mean() if mask.any() else torch.zeros(())
    loss = link + recon + model.embedding.vq_loss
    accuracy = 0.5 * ((pos_logit > 0).float().mean() + (neg_logit < 0).float().mean())
    return loss, {"link": link.item(), "recon": recon.item(), "link_accuracy": accuracy.item()}


def pretrain_gae(model: RadarSimulator, graphs: list[FaceGraph], steps: int, batch_size: int, lr: float,
                 mask_ratio: float, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    model.embedding.init_codebook(collate(graphs[:batch_size]), gen)
    heads = [model.reconstruct, model.link_project]
    params = list(model.embedding.parameters()) + [p for m in heads for p in m.parameters()] + [model.link_scale,
                                                                                                 model.link_bias]
    opt = torch.optim.Adam(params, lr=lr)
    log = []
    for _ in range(steps):
        idx = torch.randint(len(graphs), (batch_size,), generator=gen)
        loss, parts = gae_loss(model, collate([graphs[i] for i in idx]), mask_ratio, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.append({"loss": loss.item(), **parts})
    return log
