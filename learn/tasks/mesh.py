"""Mesh-topology sensitivity of neural simulators, and masked graph-autoencoder pretraining (issue 13).

A neural simulator reads a triangle mesh and predicts the radar-like response of
:mod:`physics.mesh` over K aspect directions. The response belongs to the *shape*, so a good
simulator should give the same answer for every triangulation of it. Models are trained on one
triangulation per shape ("canonical") and tested on held-out shapes in five triangulations.

Models (all: embedding -> aggregation -> decoder):
- ``face_mlp``: per-face MLP on (centroid, normal, relative area), pooled over faces.
- ``gnn``: message passing over the vertex graph (edges of the triangles), pooled over vertices.
- ``gnn_inv``: the same GNN on rotation-invariant inputs (lengths, normal dot products) with an
  equivariant readout that scores each vertex against each aspect direction via n.d and (x-c).d,
  so rotating the mesh and the directions together leaves the prediction unchanged.
- ``+pretrain``: the encoder first learns to reconstruct masked vertex features of unlabelled meshes
  in random triangulations (masked graph autoencoder), then the whole model is fine-tuned.

Metrics (held-out shapes): relative L2 error on the canonical and on the other triangulations, and
*topology sensitivity*: per shape, the RMS over directions of the std over triangulations of the
prediction, divided by the RMS of the true response. The physics' own spread (curved surfaces are
approximated differently by each triangulation) is reported as the floor.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from learn.io import save_figure
from physics.mesh import VARIANTS, RadarConfig, TriMesh, aspect_directions, radar_response, random_shape, triangulate


@dataclass(frozen=True)
class MeshTaskConfig:
    n_train_shapes: int = 128
    n_test_shapes: int = 40
    n_unlabelled: int = 320
    n_directions: int = 16
    hidden: int = 48
    layers: int = 3
    pooling: str = "mean"  # "mean" (uniform over nodes) or "area" (area-weighted)
    steps: int = 800
    pretrain_steps: int = 600
    batch_size: int = 8
    lr: float = 2e-3
    mask_ratio: float = 0.3
    seeds: tuple[int, ...] = (0, 1)


QUICK = MeshTaskConfig(n_train_shapes=64, n_test_shapes=24, n_unlabelled=128, steps=300, pretrain_steps=300, seeds=(0,))


# ----------------------------------------------------------------------------- mesh -> graph tensors
@dataclass
class MeshGraph:
    """Tensors a model reads from one mesh (vertex graph plus per-face arrays)."""

    pos: torch.Tensor  # (V, 3)
    normal: torch.Tensor  # (V, 3) area-weighted vertex normals
    area: torch.Tensor  # (V,) vertex area (a third of the incident faces)
    edges: torch.Tensor  # (2, E) directed, both ways
    face_centroid: torch.Tensor  # (F, 3)
    face_normal: torch.Tensor  # (F, 3)
    face_area: torch.Tensor  # (F,)


def mesh_graph(mesh: TriMesh) -> MeshGraph:
    normals, areas = mesh.face_normals_areas()
    v, f = mesh.vertices, mesh.faces
    vert_area = np.zeros(len(v))
    np.add.at(vert_area, f.ravel(), np.repeat(areas / 3, 3))
    vert_normal = np.zeros_like(v)
    np.add.at(vert_normal, f.ravel(), np.repeat(normals * areas[:, None], 3, axis=0))
    vert_normal /= np.linalg.norm(vert_normal, axis=1, keepdims=True)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0).T
    t = lambda x, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(x), dtype=dt)  # noqa: E731
    return MeshGraph(t(v), t(vert_normal), t(vert_area), t(e, torch.long), t(v[f].mean(1)), t(normals), t(areas))


@dataclass
class Batch:
    """Several meshes concatenated into one disconnected graph."""

    pos: torch.Tensor
    normal: torch.Tensor
    area: torch.Tensor
    edges: torch.Tensor
    node_graph: torch.Tensor  # (V,) mesh index of each vertex
    face_centroid: torch.Tensor
    face_normal: torch.Tensor
    face_area: torch.Tensor
    face_graph: torch.Tensor
    n_graphs: int


def collate(graphs: list[MeshGraph]) -> Batch:
    offsets = np.cumsum([0] + [len(g.pos) for g in graphs[:-1]])
    cat = lambda name: torch.cat([getattr(g, name) for g in graphs])  # noqa: E731
    return Batch(
        cat("pos"), cat("normal"), cat("area"),
        torch.cat([g.edges + int(o) for g, o in zip(graphs, offsets)], dim=1),
        torch.cat([torch.full((len(g.pos),), i) for i, g in enumerate(graphs)]),
        cat("face_centroid"), cat("face_normal"), cat("face_area"),
        torch.cat([torch.full((len(g.face_area),), i) for i, g in enumerate(graphs)]),
        len(graphs),
    )


def _segment_sum(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros((n,) + x.shape[1:], dtype=x.dtype).index_add_(0, index, x)


def _pool(x: torch.Tensor, weight: torch.Tensor, graph: torch.Tensor, n: int, pooling: str) -> torch.Tensor:
    """Per-mesh mean of ``x`` (uniform or area-weighted)."""
    w = weight if pooling == "area" else torch.ones_like(weight)
    return _segment_sum(x * w.unsqueeze(-1), graph, n) / _segment_sum(w, graph, n).unsqueeze(-1)


def _relative_log_area(area: torch.Tensor, graph: torch.Tensor, n: int) -> torch.Tensor:
    """log(area / mean area in its mesh): tells a model how much surface an element stands for."""
    mean = _segment_sum(area, graph, n) / _segment_sum(torch.ones_like(area), graph, n)
    return torch.log(area / mean[graph]).clamp(-4, 4)


# Input gains: raw coordinates (~0.3) and edge vectors (~0.1) sit where SiLU is almost linear, and a
# near-linear per-element map averages to nearly the same vector for every closed shape (mean normal
# ~ 0). Scaling them into the nonlinear range made a small model fit 8 shapes at all (loss 1.0 -> 0.12).
POS_GAIN, NORMAL_GAIN, EDGE_GAIN = 3.0, 3.0, 10.0


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


# ----------------------------------------------------------------------------- models
class FaceMLP(nn.Module):
    """Per-face MLP embedding, pooled over faces, then an MLP decoder (no mesh connectivity)."""

    def __init__(self, n_out: int, hidden: int = 64, pooling: str = "mean") -> None:
        super().__init__()
        self.pooling = pooling
        self.embed = mlp(7, hidden, hidden)
        self.decode = mlp(hidden, hidden, n_out)

    def forward(self, b: Batch) -> torch.Tensor:
        rel = _relative_log_area(b.face_area, b.face_graph, b.n_graphs)
        h = self.embed(torch.cat([POS_GAIN * b.face_centroid, NORMAL_GAIN * b.face_normal, rel.unsqueeze(-1)], dim=-1))
        return self.decode(_pool(h, b.face_area, b.face_graph, b.n_graphs, self.pooling))


class MessagePassing(nn.Module):
    """h_i <- LayerNorm(h_i + MLP(h_i, mean_j SiLU(A h_i + B h_j + C e_ij))) over neighbours j of i.

    The message's first layer is split per input so the matrix products run per vertex and only
    a gather-add-SiLU runs per edge (the CPU cost is in the edges: ~6 per vertex, both ways).
    """

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
        deg = _segment_sum(torch.ones_like(dst, dtype=h.dtype), dst, len(h)).clamp(min=1)
        agg = _segment_sum(m, dst, len(h)) / deg.unsqueeze(-1)
        return self.norm(h + self.update(torch.cat([h, agg], dim=-1)))


class MeshGNN(nn.Module):
    """Vertex-graph GNN simulator; ``invariant=True`` gives rotation-invariant inputs and an equivariant readout."""

    def __init__(self, n_out: int, hidden: int = 64, layers: int = 4, pooling: str = "mean",
                 invariant: bool = False) -> None:
        super().__init__()
        self.invariant, self.pooling = invariant, pooling
        self.node_dim, edge_dim = (3, 4) if invariant else (7, 4)
        self.embed = mlp(self.node_dim, hidden, hidden)
        self.mask_token = nn.Parameter(torch.zeros(self.node_dim))
        self.blocks = nn.ModuleList([MessagePassing(hidden, edge_dim + 1) for _ in range(layers)])
        self.reconstruct = mlp(hidden, hidden, self.node_dim)  # used by masked pretraining only
        if invariant:
            # score(i, k) = w . SiLU(A h_i + B [n_i.d_k, r_i.d_k]) + b, split so A h_i runs once per vertex
            self.readout_node = mlp(hidden, hidden, hidden)
            self.readout_query = nn.Linear(2, hidden, bias=False)
            self.readout_out = nn.Linear(hidden, 1)
        else:
            self.decode = mlp(hidden, hidden, n_out)
        self.register_buffer("directions", torch.zeros(n_out, 3))

    def _centre(self, b: Batch) -> torch.Tensor:
        return _pool(b.pos, b.area, b.node_graph, b.n_graphs, "area")[b.node_graph]

    def node_features(self, b: Batch) -> torch.Tensor:
        rel = _relative_log_area(b.area, b.node_graph, b.n_graphs).unsqueeze(-1)
        if not self.invariant:
            return torch.cat([POS_GAIN * b.pos, NORMAL_GAIN * b.normal, rel], dim=-1)
        r = b.pos - self._centre(b)
        dist = r.norm(dim=-1, keepdim=True)
        cos = (b.normal * r).sum(-1, keepdim=True) / dist.clamp(min=1e-6)
        return torch.cat([POS_GAIN * dist, NORMAL_GAIN * cos, rel], dim=-1)

    def edge_features(self, b: Batch) -> torch.Tensor:
        src, dst = b.edges
        dp = EDGE_GAIN * (b.pos[src] - b.pos[dst])
        length = dp.norm(dim=-1, keepdim=True)
        if not self.invariant:
            return torch.cat([dp, length], dim=-1)
        n_s, n_d = b.normal[src], b.normal[dst]
        return torch.cat([length, NORMAL_GAIN * (n_s * n_d).sum(-1, keepdim=True), (n_d * dp).sum(-1, keepdim=True),
                          (n_s * dp).sum(-1, keepdim=True)], dim=-1)

    def encode(self, b: Batch, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Vertex embeddings; vertices in ``mask`` see a learned token instead of their features."""
        x, e = self.node_features(b), self.edge_features(b)
        flag = torch.zeros(len(e), 1)
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_token.expand_as(x), x)
            hidden_edge = (mask[b.edges[0]] | mask[b.edges[1]]).unsqueeze(-1)
            e = torch.where(hidden_edge, torch.zeros_like(e), e)  # an edge would leak a masked position
            flag = hidden_edge.float()
        h = self.embed(x)
        e = torch.cat([e, flag], dim=-1)
        for block in self.blocks:
            h = block(h, b.edges, e)
        return h

    def forward(self, b: Batch) -> torch.Tensor:
        h = self.encode(b)
        if not self.invariant:
            return self.decode(_pool(h, b.area, b.node_graph, b.n_graphs, self.pooling))
        # Score every vertex against every aspect direction with rotation-invariant dot products.
        r = b.pos - self._centre(b)
        q = torch.stack([NORMAL_GAIN * b.normal @ self.directions.T, POS_GAIN * r @ self.directions.T], dim=-1)  # (V, K, 2)
        z = nn.functional.silu(self.readout_node(h).unsqueeze(1) + self.readout_query(q))  # (V, K, H)
        s = self.readout_out(z).squeeze(-1)
        return _pool(s, b.area, b.node_graph, b.n_graphs, self.pooling)


def build_model(name: str, n_out: int, cfg: MeshTaskConfig, directions: np.ndarray) -> nn.Module:
    base = name.removesuffix("+pretrain")
    pooling = "area" if base.endswith("_area") else cfg.pooling
    base = base.removesuffix("_area")
    if base == "face_mlp":
        if name.endswith("+pretrain"):
            raise ValueError(f"model {name!r}: a per-face MLP has no neighbours to pretrain a masked graph autoencoder on")
        return FaceMLP(n_out, cfg.hidden, pooling)
    if base in ("gnn", "gnn_inv"):
        model = MeshGNN(n_out, cfg.hidden, cfg.layers, pooling, invariant=base == "gnn_inv")
        model.directions.copy_(torch.as_tensor(directions, dtype=torch.float32))
        return model
    raise ValueError(f"unknown model {name!r}; expected face_mlp[_area], gnn[_area][+pretrain] or gnn_inv[+pretrain]")


# ----------------------------------------------------------------------------- data
@dataclass
class MeshData:
    directions: np.ndarray  # (K, 3)
    train: list[MeshGraph]  # canonical triangulation of each training shape
    y_train: np.ndarray  # (N, K)
    test: dict[str, list[MeshGraph]]  # variant -> one graph per test shape
    y_test: np.ndarray  # (M, K) the shape's response (finest triangulation)
    y_test_variants: np.ndarray  # (V, M, K) the physics evaluated on each test triangulation
    unlabelled: list[MeshGraph]
    test_kinds: list[str]


def make_data(cfg: MeshTaskConfig, seed: int) -> MeshData:
    """Shapes, triangulations and responses; train/test/unlabelled shapes use separate random streams."""
    directions = aspect_directions(cfg.n_directions)
    radar = RadarConfig()
    rng_train, rng_test, rng_unl = (np.random.default_rng([seed, i]) for i in range(3))
    train_shapes = [random_shape(rng_train) for _ in range(cfg.n_train_shapes)]
    test_shapes = [random_shape(rng_test) for _ in range(cfg.n_test_shapes)]
    # The label belongs to the shape: use its finest triangulation, the closest to the true surface.
    y_train = np.stack([radar_response(triangulate(s, "fine"), directions, radar) for s in train_shapes])
    train = [mesh_graph(triangulate(s, "canonical")) for s in train_shapes]
    test: dict[str, list[MeshGraph]] = {v: [] for v in VARIANTS}
    y_var = np.zeros((len(VARIANTS), len(test_shapes), cfg.n_directions))
    for j, s in enumerate(test_shapes):
        for i, v in enumerate(VARIANTS):
            mesh = triangulate(s, v, seed=seed * 7919 + j)
            test[v].append(mesh_graph(mesh))
            y_var[i, j] = radar_response(mesh, directions, radar)
    y_test = y_var[VARIANTS.index("fine")]
    unl_variants = rng_unl.choice(len(VARIANTS), size=cfg.n_unlabelled)
    unlabelled = [mesh_graph(triangulate(random_shape(rng_unl), VARIANTS[v], seed=int(rng_unl.integers(2**31))))
                  for v in unl_variants]
    return MeshData(directions, train, y_train, test, y_test, y_var, unlabelled, [s.kind for s in test_shapes])


# ----------------------------------------------------------------------------- training
def pretrain_masked(model: MeshGNN, graphs: list[MeshGraph], cfg: MeshTaskConfig, seed: int) -> list[float]:
    """Masked graph autoencoder: hide a fraction of vertices (and their edges), reconstruct their inputs."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for _ in range(cfg.pretrain_steps):
        idx = torch.randint(len(graphs), (cfg.batch_size,), generator=gen)
        b = collate([graphs[i] for i in idx])
        target = model.node_features(b).detach()
        mask = torch.rand(len(target), generator=gen) < cfg.mask_ratio
        pred = model.reconstruct(model.encode(b, mask))
        loss = ((pred[mask] - target[mask]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def fit(model: nn.Module, graphs: list[MeshGraph], y: np.ndarray, scale: tuple[float, float], cfg: MeshTaskConfig,
        seed: int) -> list[float]:
    """Supervised training on standardised responses (one scalar mean/std so the readout stays equivariant)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    target = torch.as_tensor((y - scale[0]) / scale[1], dtype=torch.float32)
    losses = []
    for _ in range(cfg.steps):
        idx = torch.randint(len(graphs), (cfg.batch_size,), generator=gen)
        loss = ((model(collate([graphs[i] for i in idx])) - target[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def predict(model: nn.Module, graphs: list[MeshGraph], scale: tuple[float, float], batch: int = 16) -> np.ndarray:
    model.eval()
    out = [model(collate(graphs[i:i + batch])).numpy() for i in range(0, len(graphs), batch)]
    model.train()
    return np.concatenate(out) * scale[1] + scale[0]


def topology_sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over shapes of RMS_k std_t pred[t, s, k] / RMS_k truth[s, k]; ``pred`` is (T, S, K)."""
    spread = np.sqrt((pred.std(axis=0) ** 2).mean(-1))
    return float(np.mean(spread / np.sqrt((truth ** 2).mean(-1))))


def relative_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over shapes of ||pred - truth|| / ||truth|| (over the K directions)."""
    return float(np.mean(np.linalg.norm(pred - truth, axis=-1) / np.linalg.norm(truth, axis=-1)))


def evaluate(pred: dict[str, np.ndarray], data: MeshData) -> dict[str, Any]:
    stack = np.stack([pred[v] for v in VARIANTS])
    others = [v for v in VARIANTS if v != "canonical"]
    return {
        "test_rel_error_canonical": relative_error(pred["canonical"], data.y_test),
        "test_rel_error_other_triangulations": float(np.mean([relative_error(pred[v], data.y_test) for v in others])),
        "test_rel_error_by_variant": {v: relative_error(pred[v], data.y_test) for v in VARIANTS},
        "topology_sensitivity": topology_sensitivity(stack, data.y_test),
        "deviation_from_canonical_by_variant": {
            v: relative_error(pred[v] - pred["canonical"] + data.y_test, data.y_test) for v in others},
    }


# ----------------------------------------------------------------------------- the task
MODELS = ("face_mlp", "face_mlp_area", "gnn", "gnn+pretrain", "gnn_inv", "gnn_inv+pretrain")


def train_model(name: str, data: MeshData, cfg: MeshTaskConfig, seed: int) -> tuple[nn.Module, dict[str, list[float]]]:
    """Build, optionally pretrain (masked graph autoencoder on unlabelled meshes), then fine-tune."""
    torch.manual_seed(seed)
    model = build_model(name, data.y_train.shape[1], cfg, data.directions)
    curves: dict[str, list[float]] = {}
    if name.endswith("+pretrain"):
        curves["pretrain"] = pretrain_masked(model, data.unlabelled, cfg, seed)
    scale = (float(data.y_train.mean()), float(data.y_train.std()))
    curves["train"] = fit(model, data.train, data.y_train, scale, cfg, seed)
    return model, curves


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"), config: MeshTaskConfig | None = None,
        models: tuple[str, ...] = MODELS) -> dict[str, Any]:
    """Generate meshes, train every model over ``cfg.seeds`` (offset by ``seed``), evaluate, plot."""
    torch.set_num_threads(1)
    cfg = config or (QUICK if quick else MeshTaskConfig())
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    data = make_data(cfg, seed)
    scale = (float(data.y_train.mean()), float(data.y_train.std()))
    physics = evaluate({v: data.y_test_variants[i] for i, v in enumerate(VARIANTS)}, data)
    per_model: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    curves: dict[str, dict[str, list[float]]] = {}
    for s in cfg.seeds:
        for name in models:
            start = time.perf_counter()
            model, curve = train_model(name, data, cfg, seed + s)
            pred = {v: predict(model, data.test[v], scale) for v in VARIANTS}
            metrics = evaluate(pred, data)
            metrics["train_rel_error"] = relative_error(predict(model, data.train, scale), data.y_train)
            metrics["train_seconds"] = round(time.perf_counter() - start, 1)
            per_model[name].append(metrics)
            curves.setdefault(name, curve)
            print(f"mesh: seed {seed + s} {name:18s} err canon {metrics['test_rel_error_canonical']:.3f} "
                  f"other {metrics['test_rel_error_other_triangulations']:.3f} "
                  f"sensitivity {metrics['topology_sensitivity']:.4f} ({metrics['train_seconds']}s)", flush=True)
    summary = {name: _summarise(runs) for name, runs in per_model.items()}
    results = {
        "task_config": {**asdict(cfg), "seed": seed, "models": list(models), "radar": asdict(RadarConfig())},
        "data": {"n_train_shapes": len(data.train), "n_test_shapes": len(data.y_test), "variants": list(VARIANTS),
                 "mean_vertices": {v: float(np.mean([len(g.pos) for g in data.test[v]])) for v in VARIANTS},
                 "n_unlabelled_meshes": len(data.unlabelled)},
        "physics_floor": {"topology_sensitivity": physics["topology_sensitivity"],
                          "rel_error_by_variant": physics["test_rel_error_by_variant"]},
        "models": summary,
        "per_seed": per_model,
        "findings": _findings(summary, physics),
        "data_seconds": round(time.perf_counter() - t0, 1),
    }
    _plot_results(summary, physics, out_dir / "mesh.png")
    _plot_curves(curves, out_dir / "mesh_curves.png")
    _plot_triangulations(seed, out_dir / "mesh_triangulations.png")
    return results


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["test_rel_error_canonical", "test_rel_error_other_triangulations", "topology_sensitivity", "train_rel_error"]
    out: dict[str, Any] = {}
    for k in keys:
        vals = np.array([r[k] for r in runs])
        out[k] = float(vals.mean())
        out[k + "_std"] = float(vals.std())
    out["test_rel_error_by_variant"] = {v: float(np.mean([r["test_rel_error_by_variant"][v] for r in runs]))
                                        for v in VARIANTS}
    return out


def _findings(summary: dict[str, Any], physics: dict[str, Any]) -> dict[str, Any]:
    """Ratios the README can quote; >1 means the named change *reduced* the quantity."""
    out: dict[str, Any] = {"physics_sensitivity_floor": physics["topology_sensitivity"]}
    for base in ("gnn", "gnn_inv"):
        if base in summary and base + "+pretrain" in summary:
            a, b = summary[base], summary[base + "+pretrain"]
            out[f"{base}: sensitivity ratio no-pretrain / pretrain"] = a["topology_sensitivity"] / b["topology_sensitivity"]
            out[f"{base}: other-triangulation error ratio no-pretrain / pretrain"] = (
                a["test_rel_error_other_triangulations"] / b["test_rel_error_other_triangulations"])
    if "gnn+pretrain" in summary and "gnn_inv+pretrain" in summary:
        out["pretrained: sensitivity ratio gnn / gnn_inv (rotation-invariant features)"] = (
            summary["gnn+pretrain"]["topology_sensitivity"] / summary["gnn_inv+pretrain"]["topology_sensitivity"])
    if "face_mlp" in summary and "face_mlp_area" in summary:
        out["face_mlp: sensitivity ratio mean-pool / area-pool"] = (
            summary["face_mlp"]["topology_sensitivity"] / summary["face_mlp_area"]["topology_sensitivity"])
    return out


# ----------------------------------------------------------------------------- figures
def _plot_results(summary: dict[str, Any], physics: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for off, key, label in ((-0.2, "test_rel_error_canonical", "canonical triangulation"),
                            (0.2, "test_rel_error_other_triangulations", "other triangulations")):
        axes[0].bar(x + off, [summary[n][key] for n in names], 0.4, yerr=[summary[n][key + "_std"] for n in names],
                    label=label)
    axes[0].set_title("held-out shapes: relative L2 error")
    axes[1].bar(x, [summary[n]["topology_sensitivity"] for n in names],
                yerr=[summary[n]["topology_sensitivity_std"] for n in names], color="tab:red")
    axes[1].axhline(physics["topology_sensitivity"], color="k", ls="--", label="physics floor (curved shapes)")
    axes[1].set_title("topology sensitivity (std over triangulations / |response|)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xticks(x, names, rotation=25, ha="right")
        ax.legend()
    save_figure(fig, path)


def _plot_curves(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    smooth = lambda y: np.convolve(y, np.ones(20) / 20, mode="valid")  # noqa: E731
    for name, c in curves.items():
        axes[0].plot(smooth(c["train"]), label=name)
        if "pretrain" in c:
            axes[1].plot(smooth(c["pretrain"]), label=name)
    axes[0].set(title="fine-tuning loss (standardised MSE)", xlabel="step", yscale="log")
    axes[1].set(title="masked graph-autoencoder loss", xlabel="step", yscale="log")
    for ax in axes:
        ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_triangulations(seed: int, path: Path) -> None:
    """One composite shape in every triangulation, with its response per direction."""
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    shape = random_shape(np.random.default_rng([seed, 99]), "composite")
    directions = aspect_directions(16)
    fig = plt.figure(figsize=(3.2 * len(VARIANTS), 6.4))
    responses = {}
    for i, v in enumerate(VARIANTS):
        mesh = triangulate(shape, v, seed=seed)
        responses[v] = radar_response(mesh, directions)
        ax = fig.add_subplot(2, len(VARIANTS), i + 1, projection="3d")
        normals, _ = mesh.face_normals_areas()
        shade = 0.35 + 0.6 * np.clip(normals @ np.array([0.4, 0.3, 0.86]), 0, 1)
        ax.add_collection3d(Poly3DCollection(mesh.vertices[mesh.faces], facecolors=plt.cm.Blues(shade),
                                             edgecolors="k", linewidths=0.15))
        ax.set(xlim=(-0.8, 0.8), ylim=(-0.8, 0.8), zlim=(-0.8, 0.8), title=f"{v}: {len(mesh.faces)} faces")
        ax.set_axis_off()
    ax = fig.add_subplot(2, 1, 2)
    for v, r in responses.items():
        ax.plot(r, marker="o", ms=3, label=v)
    ax.set(xlabel="aspect direction index", ylabel="response sigma(d)", title="same shape, five triangulations")
    ax.legend(ncol=5, fontsize=8)
    save_figure(fig, path)
