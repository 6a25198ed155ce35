"""HEP as the paper builds it (arXiv 2502.05728): rendered point cloud -> 3-D keypose -> diffusion action chunk
in the keypose frame; the flat diffusion policy and the ablations beside it.

Inputs: the unlabelled rendered cloud of ``obs_mode="depth_cloud"`` (``obs["points"]``, (N, 6): x, y, z and
normals) and proprioception only: the end-effector position and the suction flag from ``obs["vector"]`` (object
and target positions in the vector are never read, except as training labels through ``keypose_label``).

High level (:class:`KeyposeNet`): a keypose ``(x, y, z, yaw)``. Equivariant version: every point gets features
that are SE(2)-invariant (its height and normal's z, invariants of its k nearest neighbours' offsets and normals,
the end-effector's offset from it); the translation is a softmax-weighted mean of the points (plus a per-point
height offset), the yaw the angle of a weighted sum of in-plane offsets and normals: exactly equivariant to every
rotation about a vertical axis and every planar translation. Plain version: the same network on world
coordinates, yaw regressed as (cos, sin). At inference the translation is the weighted mean within
``keypose_window`` of the best-scoring point (a few mean-shift steps from it), the heatmap argmax of the paper
made soft only locally: where two alike objects both score (the two cylinders of HepPandaTwoStagePlace-v0) the
whole-cloud mean would land between them, where nothing can be picked.

Low level: the cloud and end-effector are expressed in the keypose frame (translated to the keypose; rotated by
its yaw when ``equivariant``), a PointNet encodes them, and a head (:mod:`symgym.agents.diffusion`: DDPM/DDIM
diffusion, or MSE) outputs a chunk of actions in that frame, rotated back to the world. Canonicalising by an
equivariant keypose makes the low level exactly SE(2)-equivariant (the noise is drawn in the frame, seeded).

Switches (``agent_kwargs``): ``frame_transfer=False``: the frame stays at the world origin (rotated by the yaw
when equivariant) and the keypose is an input; ``equivariant=False``: plain high level, frame not rotated, yaw
an input; ``hierarchical=False`` (agent ``flat-diffusion``): no keypose, the world-frame cloud in. All train with
random SE(2) augmentation (``augment``) of cloud, proprioception, keypose label and actions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from symgym.agents.base import EnvInfo
from symgym.agents.diffusion import make_head, mlp
from symgym.agents.hep import _ChunkQueue, _seed, _train_loop
from symgym.envs.closed_loop import ATTACHED, EE_POS, keypose_label

WEIGHTS_FILE = "hep3d.pt"
POS_SCALE = 10.0   # metres -> decimetres


def rotate(xy: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate (..., 2) vectors by per-batch angles (B,) (broadcast over the middle dimensions)."""
    c, s = torch.cos(angle), torch.sin(angle)
    while c.dim() < xy.dim() - 1:
        c, s = c[:, None], s[:, None]
    return torch.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], -1)


def se2_apply(angle, shift, cloud, ee, keypose=None, actions=None):
    """Apply per-sample SE(2) elements (rotation ``angle`` (B,), then ``shift`` (B, 2)) to a batch."""
    cloud = cloud.clone()
    cloud[..., :2] = rotate(cloud[..., :2], angle) + shift[:, None]
    cloud[..., 3:5] = rotate(cloud[..., 3:5], angle)
    ee = ee.clone()
    ee[:, :2] = rotate(ee[:, :2], angle) + shift
    out = [cloud, ee]
    if keypose is not None:
        keypose = keypose.clone()
        keypose[:, :2] = rotate(keypose[:, :2], angle) + shift
        keypose[:, 3] = keypose[:, 3] + angle
        out.append(keypose)
    if actions is not None:
        actions = actions.clone()
        actions[..., :2] = rotate(actions[..., :2], angle)
        out.append(actions)
    return out


def knn_gather(points: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N, C) -> (B, N, k, C): each point's k nearest neighbours (in x, y, z), itself excluded."""
    d = torch.cdist(points[..., :3], points[..., :3])
    idx = d.topk(k + 1, largest=False).indices[..., 1:]
    B, N, _ = idx.shape
    return torch.gather(points[:, None].expand(B, N, N, points.shape[-1]), 2,
                        idx[..., None].expand(B, N, k, points.shape[-1]))


class KeyposeNet(nn.Module):
    """Cloud (B, N, 6) + end-effector (B, 3) + suction flag (B,) -> keypose (B, 4) = x, y, z, yaw."""

    def __init__(self, equivariant: bool, hidden: int = 64, k: int = 12, window: float = 0.0):
        super().__init__()
        self.equivariant, self.k = equivariant, k
        #: eval mode: average the weights only within this distance (m) of the mode (0: over the whole cloud)
        self.window = float(window)
        n_edge, n_point = (7, 6) if equivariant else (12, 10)
        self.edge = mlp(n_edge, hidden, hidden, layers=2)
        self.point = mlp(hidden + n_point, hidden, hidden, layers=2)
        # per point: translation score, height offset, yaw score and two yaw coefficients (equivariant head)
        self.head = mlp(2 * hidden, 5, hidden, layers=2)
        if not equivariant:
            self.yaw = mlp(hidden, 2, hidden, layers=2)

    def forward(self, cloud: torch.Tensor, ee: torch.Tensor, attached: torch.Tensor) -> torch.Tensor:
        p, n = cloud[..., :3] * POS_SCALE, cloud[..., 3:6]
        e = ee * POS_SCALE
        nb = knn_gather(torch.cat([p, n], -1), self.k)
        r = nb[..., :3] - p[:, :, None]
        held = attached[:, None, None].expand(-1, p.shape[1], 1)
        if self.equivariant:
            nxy, r_xy, to_ee = n[..., None, :2], r[..., :2], e[:, None, :2] - p[..., :2]
            edge = torch.cat([r_xy.norm(dim=-1, keepdim=True), r[..., 2:3], nb[..., 5:6],
                              (nxy * nb[..., 3:5]).sum(-1, keepdim=True), (r_xy * nxy).sum(-1, keepdim=True),
                              nxy[..., 0:1] * r_xy[..., 1:2] - nxy[..., 1:2] * r_xy[..., 0:1],
                              nxy[..., 0:1] * nb[..., 4:5] - nxy[..., 1:2] * nb[..., 3:4]], -1)
            own = torch.cat([p[..., 2:3], n[..., 2:3], to_ee.norm(dim=-1, keepdim=True),
                             e[:, None, 2:3] - p[..., 2:3], (to_ee * n[..., :2]).sum(-1, keepdim=True), held], -1)
        else:
            edge = torch.cat([r, nb[..., 3:6], p[:, :, None].expand_as(r), n[:, :, None].expand_as(r)], -1)
            own = torch.cat([p, n, e[:, None].expand_as(p), held], -1)
        h = self.point(torch.cat([self.edge(edge).max(2).values, own], -1))
        g = h.max(1).values
        out = self.head(torch.cat([h, g[:, None].expand_as(h)], -1))
        w = torch.softmax(out[..., 0], 1)
        if self.window > 0 and not self.training:
            w = self._local(w, p[..., :2], self.window * POS_SCALE)
        xy = (w[..., None] * p[..., :2]).sum(1)
        z = (w * (p[..., 2] + out[..., 1])).sum(1)
        if self.equivariant:
            wy = torch.softmax(out[..., 2], 1)[..., None]
            vec = (wy * (out[..., 3:4] * (p[..., :2] - xy[:, None]) + out[..., 4:5] * n[..., :2])).sum(1)
        else:
            vec = self.yaw(g)
        yaw = torch.atan2(vec[:, 1], vec[:, 0])
        return torch.cat([xy / POS_SCALE, z[:, None] / POS_SCALE, yaw[:, None]], 1)

    @staticmethod
    def _local(w: torch.Tensor, xy: torch.Tensor, radius: float, iters: int = 3) -> torch.Tensor:
        """Weights (B, N) restricted to the points within ``radius`` (in the plane) of a centre that starts at the
        best-scoring point and moves to the restricted weights' mean ``iters`` times (mean shift); renormalised.
        Distances and weights are invariant, so the result keeps the keypose equivariant."""
        centre = torch.gather(xy, 1, w.argmax(1)[:, None, None].expand(-1, 1, 2))[:, 0]
        local = torch.zeros_like(w).scatter_(1, w.argmax(1, keepdim=True), 1.0)
        for _ in range(iters):
            near = w * ((xy - centre[:, None]).norm(dim=-1) < radius)
            total = near.sum(1, keepdim=True)
            # (the window about the first centre holds the best point; a later one that held none keeps the last)
            local = torch.where(total > 0, near / total.clamp_min(1e-30), local)
            centre = (local[..., None] * xy).sum(1)
        return local


class CloudEncoder(nn.Module):
    """PointNet: per-point MLP of (position, normal), max-pooled."""

    def __init__(self, width: int):
        super().__init__()
        self.net = mlp(6, width, width, layers=3)

    def forward(self, cloud: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([cloud[..., :3] * POS_SCALE, cloud[..., 3:6]], -1)).max(1).values


def frame_of(keypose: torch.Tensor | None, frame_transfer: bool, equivariant: bool, B: int):
    """Origin (B, 3) and yaw (B,) of the low level's frame."""
    origin, yaw = torch.zeros(B, 3), torch.zeros(B)
    if keypose is not None:
        if frame_transfer:
            origin = keypose[:, :3]
        if equivariant:
            yaw = keypose[:, 3]
    return origin, yaw


@dataclass
class HEP3DConfig:
    """Hyper-parameters (``TrainConfig.agent_kwargs``). ``steps`` of ``learn`` sets ``low_steps``.

    Args:
        hierarchical / frame_transfer / equivariant: the method switches (module docstring).
        head: ``"diffusion"`` or ``"mse"``. chunk / execute: actions per plan / executed before re-planning.
        sample_steps / train_timesteps: DDIM steps at inference / DDPM timesteps in training.
        prediction: what the denoiser predicts, ``"sample"`` (the clean chunk) or ``"epsilon"`` (the noise). On
            HepPushAroundDepth-v0 from 10 demos and 1500 steps, epsilon-prediction solved 0 of 6 episodes and
            sample-prediction 5 of 5 (a small CPU budget: the clean chunk is the easier target to learn).
        n_points: points of the cloud the networks read (the first ``n_points``: the env samples them at random;
            fewer points make training on a shared CPU affordable; a different random subset per training batch).
        augment, aug_shift: random SE(2) augmentation of every batch (rotation any angle, shift up to m).
        keypose_noise, yaw_noise: noise on the keypose labels the low level trains with (m, rad).
        high_lr: the high level's Adam learning rate (cosine-annealed over ``high_steps``). At 2e-3 and 400 steps
            the keypose of HepPandaTwoStagePlace-v0 (10 demos) stayed on the plateau of the labels' mean (training
            error 7.9 cm, seeds 0-2); 5e-3 left it (1.5-3.4 cm) and also lowered HepPickPlaceDepth-v0's (7.3 to
            4.6 mm, seed 0).
        keypose_window: at inference, the keypose's translation averages the point weights only within this
            distance (m) of the best-scoring point (:meth:`KeyposeNet._local`); 0 averages the whole cloud, as in
            training.
    """

    hierarchical: bool = True
    frame_transfer: bool = True
    equivariant: bool = True
    head: str = "diffusion"
    chunk: int = 8
    execute: int = 4
    hidden: int = 256
    width: int = 64
    high_hidden: int = 48
    knn: int = 8
    n_points: int = 128
    sample_steps: int = 10
    train_timesteps: int = 100
    prediction: str = "sample"
    high_steps: int = 1000
    low_steps: int = 3000
    high_batch: int = 16
    batch: int = 64
    high_lr: float = 5e-3
    lr: float = 1e-3
    augment: bool = True
    aug_shift: float = 0.1
    keypose_noise: float = 0.01
    yaw_noise: float = 0.1
    keypose_window: float = 0.04
    max_step: float = 0.02
    seed: int = 0


def chunk_actions(actions: np.ndarray, episode: np.ndarray, chunk: int) -> np.ndarray:
    """Per step t the next ``chunk`` actions (T, chunk, 4), the robot holding still past the episode's end."""
    T = len(actions)
    a = np.asarray(actions, np.float32).copy()
    a[:, 3] = np.where(a[:, 3] > 0, 1.0, -1.0)
    out = np.zeros((T, chunk, 4), np.float32)
    for t in range(T):
        last = a[t]
        for k in range(chunk):
            j = t + k
            if j < T and episode[j] == episode[t]:
                last = a[j]
                out[t, k] = last
            else:
                out[t, k, 3] = last[3]
    return out


class HEP3DAgent(_ChunkQueue):
    """Hierarchical equivariant policy on rendered clouds with a diffusion low level (or its ablations)."""

    name = "hep3d"
    config_class = HEP3DConfig

    def __init__(self, config: HEP3DConfig | None = None, seed: int = 0, info: EnvInfo | None = None):
        super().__init__(config, seed, info)
        c = self.config
        if not 1 <= c.execute <= c.chunk:
            raise ValueError(f"execute must be in 1..chunk={c.chunk}, got {c.execute}")
        if not c.keypose_window >= 0:
            raise ValueError(f"keypose_window must be >= 0 m (0: the whole cloud), got {c.keypose_window!r}")
        _seed(c.seed)
        self.high = KeyposeNet(c.equivariant, c.high_hidden, c.knn, c.keypose_window) if c.hierarchical else None
        self.encoder = CloudEncoder(c.width)
        cond = c.width + 4 + self._n_extra()
        kw = ({"train_steps": c.train_timesteps, "sample_steps": c.sample_steps, "prediction": c.prediction}
              if c.head == "diffusion" else {})
        self.head = make_head(c.head, cond, c.chunk, 4, c.hidden, **kw)
        self.reset()

    def _n_extra(self) -> int:
        c = self.config
        if not c.hierarchical:
            return 0
        return (0 if c.frame_transfer else 3) + (0 if c.equivariant else 2)

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.high, self.encoder, self.head) if m is not None]

    def n_parameters(self) -> int:
        return sum(p.numel() for m in self.modules() for p in m.parameters())

    # -- the low level's condition -----------------------------------------------------------
    def condition(self, cloud, ee, attached, keypose):
        """Condition vector (B, C) and the frame yaw (B,) the chunk is expressed in."""
        c, B = self.config, len(cloud)
        origin, yaw = frame_of(keypose if c.hierarchical else None, c.frame_transfer, c.equivariant, B)
        local = cloud.clone()
        local[..., :3] = local[..., :3] - origin[:, None]
        local[..., :2] = rotate(local[..., :2], -yaw)
        local[..., 3:5] = rotate(local[..., 3:5], -yaw)
        e = ee - origin
        e = torch.cat([rotate(e[:, :2], -yaw), e[:, 2:]], 1)
        parts = [self.encoder(local), e * POS_SCALE, attached[:, None]]
        if c.hierarchical and not c.frame_transfer:
            parts.append(torch.cat([rotate(keypose[:, :2], -yaw), keypose[:, 2:3]], 1) * POS_SCALE)
        if c.hierarchical and not c.equivariant:
            parts.append(torch.stack([torch.cos(keypose[:, 3]), torch.sin(keypose[:, 3])], 1))
        return torch.cat(parts, 1), yaw

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def plan(self, obs: dict) -> tuple[np.ndarray | None, np.ndarray]:
        """(keypose (4,) or None, actions (chunk, 4)) for one observation; deterministic (seeded noise)."""
        for m in self.modules():
            m.eval()
        vec = torch.as_tensor(np.asarray(obs["vector"], np.float32))[None]
        cloud = torch.as_tensor(np.asarray(obs["points"], np.float32))[None, :self.config.n_points]
        if cloud.shape[-1] != 6:
            raise ValueError(f"{self.name} reads rendered clouds (N, 6); got points of shape {tuple(cloud.shape[1:])}"
                             " (make the env with obs_mode='depth_cloud', e.g. HepPickPlaceDepth-v0)")
        ee, held = vec[:, EE_POS], vec[:, ATTACHED.start]
        kp = self.high(cloud, ee, held) if self.high is not None else None
        cond, yaw = self.condition(cloud, ee, held, kp)
        chunk = self.head.sample(cond, noise_seed=self.config.seed)
        chunk[..., :2] = rotate(chunk[..., :2], yaw)
        acts = chunk[0].double().numpy()
        acts[:, 2] = np.clip(acts[:, 2], -1, 1)   # dx, dy: the env's disc clip (rotation-equivariant) applies
        acts[:, 3] = np.where(acts[:, 3] > 0, 1.0, -1.0)
        return (None if kp is None else kp[0].double().numpy()), acts

    # -- training ----------------------------------------------------------------------------
    def _augment(self, gen, cloud, ee, keypose, actions):
        if not self.config.augment:
            return cloud, ee, keypose, actions
        B = len(cloud)
        angle = torch.rand(B, generator=gen) * 2 * np.pi
        r = self.config.aug_shift * torch.rand(B, generator=gen).sqrt()
        phi = torch.rand(B, generator=gen) * 2 * np.pi
        shift = torch.stack([r * torch.cos(phi), r * torch.sin(phi)], 1)
        return se2_apply(angle, shift, cloud, ee, keypose, actions)

    def learn(self, source: dict[str, np.ndarray], steps: int | None = None, callback: Any = None,
              progress: bool = False) -> dict[str, Any]:
        torch.set_num_threads(1)
        c = self.config
        if steps is not None:
            c.low_steps = int(steps)
        cloud = torch.as_tensor(np.asarray(source["points"], np.float32))
        if cloud.shape[-1] != 6:
            raise ValueError(f"{self.name} learns from rendered clouds (N, 6); the demos hold points of shape "
                             f"{tuple(cloud.shape[1:])}: record them from a *Depth-v0 env")
        vec = np.asarray(source["vector"], np.float32)
        ee = torch.as_tensor(vec[:, EE_POS])
        held = torch.as_tensor(vec[:, ATTACHED.start])
        label = torch.as_tensor(keypose_label(vec), dtype=torch.float32)
        actions = torch.as_tensor(chunk_actions(source["action"], source["episode"], c.chunk))
        T, gen = len(cloud), _seed(c.seed)
        N = cloud.shape[1]

        def subset(i):
            """A random n_points of each sampled frame's cloud (order-free: the networks pool over points)."""
            j = torch.rand(len(i), N, generator=gen).argsort(1)[:, :c.n_points]
            return torch.gather(cloud[i], 1, j[..., None].expand(-1, -1, cloud.shape[-1]))
        out: dict[str, Any] = {"frames": T}
        if self.high is not None:
            self.high.train()

            def high_loss():
                i = torch.randint(T, (min(c.high_batch, T),), generator=gen)
                cl, e, kp, _ = self._augment(gen, subset(i), ee[i], label[i], actions[i])
                pred = self.high(cl, e, held[i])
                return (((pred[:, :3] - kp[:, :3]) * POS_SCALE) ** 2).sum(1).mean() \
                    + (1 - torch.cos(pred[:, 3] - kp[:, 3])).mean()

            out["high_loss"] = _train_loop(self.high.parameters(), high_loss, c.high_steps, c.high_lr)[-1]
        self.encoder.train()
        self.head.train()

        def low_loss():
            i = torch.randint(T, (min(c.batch, T),), generator=gen)
            kp = label[i].clone()
            kp[:, :3] += c.keypose_noise * torch.randn(len(i), 3, generator=gen)
            kp[:, 3] += c.yaw_noise * torch.randn(len(i), generator=gen)
            cl, e, kp, a = self._augment(gen, subset(i), ee[i], kp, actions[i])
            cond, yaw = self.condition(cl, e, held[i], kp)
            a = a.clone()
            a[..., :2] = rotate(a[..., :2], -yaw)
            return self.head.loss(cond, a, gen)

        params = list(self.encoder.parameters()) + list(self.head.parameters())
        out["low_loss"] = _train_loop(params, low_loss, c.low_steps, c.lr)[-1]
        if self.high is not None:
            out["train_keypose_error_m"], out["train_yaw_error_rad"] = self.keypose_errors(
                cloud[:, :c.n_points], ee, held, label)
        return out

    @torch.no_grad()
    def keypose_errors(self, cloud, ee, held, label) -> tuple[float, float]:
        """Mean translation error (m) and mean absolute yaw error (rad) of the high level on a set of frames."""
        self.high.eval()
        pred = torch.cat([self.high(cloud[j:j + 128], ee[j:j + 128], held[j:j + 128])
                          for j in range(0, len(cloud), 128)])
        dyaw = torch.atan2(torch.sin(pred[:, 3] - label[:, 3]), torch.cos(pred[:, 3] - label[:, 3]))
        return float((pred[:, :3] - label[:, :3]).norm(dim=1).mean()), float(dyaw.abs().mean())

    # -- persistence -------------------------------------------------------------------------
    def checkpoint_files(self) -> dict[str, tuple[str, Any]]:
        state = {"encoder": self.encoder.state_dict(), "head": self.head.state_dict()}
        if self.high is not None:
            state["high"] = self.high.state_dict()
        return {"weights": (WEIGHTS_FILE, lambda p: torch.save(state, p))}

    def restore_files(self, files, state: dict[str, Any]) -> None:
        def restore(path: Path) -> None:
            weights = torch.load(path, weights_only=True)
            self.encoder.load_state_dict(weights["encoder"])
            self.head.load_state_dict(weights["head"])
            if self.high is not None:
                self.high.load_state_dict(weights["high"])

        files.load("weights", restore)


@dataclass
class FlatDiffusionConfig(HEP3DConfig):
    """As :class:`HEP3DConfig`, without the hierarchy (the keypose switches have no effect)."""

    hierarchical: bool = False


class FlatDiffusionAgent(HEP3DAgent):
    """The flat diffusion policy: no keypose; the world-frame cloud and proprioception condition the chunk."""

    name = "flat-diffusion"
    config_class = FlatDiffusionConfig

    def __init__(self, config: FlatDiffusionConfig | None = None, seed: int = 0, info: EnvInfo | None = None):
        if config is not None and config.hierarchical:
            raise ValueError("flat-diffusion is the non-hierarchical policy; use agent hep3d for a hierarchy")
        super().__init__(config, seed, info)


def plan_vector(agent: HEP3DAgent, obs: dict) -> np.ndarray:
    """Keypose as (x, y, z, cos yaw, sin yaw) then the action chunk, flattened (for equivariance checks)."""
    kp, actions = agent.plan(obs)
    head = [] if kp is None else [kp[:3], [np.cos(kp[3]), np.sin(kp[3])]]
    return np.concatenate([*head, actions.ravel()])


def transform_plan(g, plan: np.ndarray, hierarchical: bool = True) -> np.ndarray:
    """How :func:`plan_vector` transforms under SE(2): keypose x, y by g, its yaw and every action's dx, dy by
    g's rotation; heights, dz and suction invariant."""
    from symgym.equivariance.groups import as_se2

    g = as_se2(g)
    R = g.rotation.matrix()
    out = np.array(plan, dtype=np.float64, copy=True)
    start = 0
    if hierarchical:
        out[:2] = g.apply(out[:2])
        out[3:5] = out[3:5] @ R.T
        start = 5
    acts = out[start:].reshape(-1, 4)
    acts[:, :2] = acts[:, :2] @ R.T
    out[start:] = acts.ravel()
    return out
