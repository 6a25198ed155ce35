"""Transporter Networks for top-down pick-and-place, plain and C_n-equivariant (escnn).

``make_fcn`` builds a dilated fully-convolutional net either from plain convolutions or from escnn steerable
convolutions over C_n (regular hidden fields, scalar in/out fields), so the equivariant and plain agents
differ only in this one switch. With zero padding and odd kernels the steerable net is exactly equivariant
to rotations by multiples of 90 degrees on the pixel grid (and approximately to the other C_n angles).
Trained by imitation from oracle demonstrations (``learn.run.demos``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from symgym.agents.base import Agent, EnvInfo
from symgym.envs.tabletop.base import transform_action
from symgym.envs.tabletop.camera import Grid
from symgym.envs.tabletop.scene import WORKSPACE_HALF, wrap_angle
from symgym.equivariance.escnn_nets import SteerableFCN
from symgym.equivariance.groups import CyclicGroup, SE2Element

WEIGHTS_FILE = "transporter.pt"
IN_CHANNELS = 4  # RGB + height
#: pick heatmaps, one per primitive of an episode (the last serves every later step): the pick is conditioned
#: on the step index, so stacking's colour order (red, then green, then blue) is learnable from the demos
PICK_STEPS = 4
HEIGHT_SCALE = 0.1  # metres per unit of the height channel
#: receptive field 47 px; escnn's R2Conv measurably stops being 90-degree equivariant at dilations > 8
DILATIONS = (1, 2, 4, 8, 8)


def obs_to_tensor(obs: dict) -> torch.Tensor:
    """Observation dict -> (4, S, S) float tensor: centred colour and scaled height."""
    color = torch.as_tensor(np.asarray(obs["color"]), dtype=torch.float32).permute(2, 0, 1) / 255.0 - 0.5
    height = torch.as_tensor(np.asarray(obs["height"]), dtype=torch.float32).permute(2, 0, 1) / HEIGHT_SCALE
    if color.shape[1:] != height.shape[1:]:
        raise ValueError(f"colour {tuple(color.shape)} and height {tuple(height.shape)} images differ in size")
    return torch.cat([color, height], 0)


class PlainFCN(nn.Module):
    """Dilated FCN (receptive field 47 px) with plain convolutions."""

    def __init__(self, in_ch: int, out_ch: int, width: int = 24, dilations=DILATIONS):
        super().__init__()
        layers, c = [], in_ch
        for d in dilations:
            layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d), nn.ReLU()]
            c = width
        layers.append(nn.Conv2d(c, out_ch, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_fcn(in_ch: int, out_ch: int, equivariant: bool, width: int = 24, n: int = 8, fields: int = 3) -> nn.Module:
    """The dilated FCN: escnn-steerable over C_n (regular hidden fields, scalar in/out; the one escnn builder
    and weight-cache policy of ``symgym.equivariance.escnn_nets``) or plain convolutions."""
    if equivariant:
        return SteerableFCN(CyclicGroup(n), in_ch, out_ch, fields=fields, dilations=DILATIONS)
    return PlainFCN(in_ch, out_ch, width)


def rotate_images(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate (B, C, H, W) images counter-clockwise *in the world* (x right, y up) by ``angles`` (B,) radians.

    Matches ``equivariance.transforms.transform_image``: a rotation by pi/2 equals ``np.rot90`` over the
    spatial axes (tested). Bilinear, zero fill outside.
    """
    c, s = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(c)
    # output pixel (u, v) (v pointing down) samples the input at R(-angle) in world coordinates
    theta = torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_at(x: torch.Tensor, rc, size: int) -> torch.Tensor:
    """(C, S, S) -> (C, size, size) crop centred on pixel ``rc`` (odd ``size``), zero-padded at the border."""
    if size % 2 == 0:
        raise ValueError(f"crop size must be odd so that it has a centre pixel, got {size}")
    r = size // 2
    padded = F.pad(x, (r, r, r, r))
    row, col = int(rc[0]), int(rc[1])
    return padded[:, row:row + size, col:col + size]


def rotation_angles(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)


def yaw_to_bin(yaw: float, n: int) -> int:
    return int(round((yaw % (2 * math.pi)) / (2 * math.pi / n))) % n


def correlate(scene_features: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Cross-correlate (D, S, S) scene features with (R, D, k, k) rotated object kernels -> (R, S, S) logits."""
    k = kernels.shape[-1]
    return F.conv2d(scene_features[None], kernels, padding=k // 2)[0]


# ---------------------------------------------------------------------------------------------------------
# The agents
# ---------------------------------------------------------------------------------------------------------
@dataclass
class TransporterConfig:
    """Hyper-parameters (override through ``TrainConfig.agent_kwargs``).

    Args:
        n_rotations: place yaw bins (16 -> 22.5 degrees; must be a multiple of 4 for exact 90-degree tests).
        crop: side of the square crop around the pick (odd, pixels).
        feature_dim: channels of the key/query features that are cross-correlated.
        width: hidden channels of the plain FCNs.
        group_order, fields: C_n and regular fields per layer of the steerable FCNs.
        lr, batch: Adam learning rate and transitions per gradient step.
        augment: Ravens-style random SE(2) augmentation of every training transition: a uniform rotation
            about the workspace centre and a shift of up to ``augment_shift`` pixels, applied to both images
            and to the pick and place poses (redrawn until both stay inside the image).
        augment_shift: largest augmentation shift (pixels).
        yaw_refine: sub-bin yaw candidates tried at the chosen place pixel after the coarse (bin, pixel)
            argmax (1: none). Training rotates the object by the label's sub-bin residual first, so the
            demonstrated yaw falls exactly on a bin and the scores learn exact alignment, not rounding.
    """

    n_rotations: int = 16
    crop: int = 17
    feature_dim: int = 8
    width: int = 24
    group_order: int = 8
    fields: int = 3
    lr: float = 1e-3
    batch: int = 1
    augment: bool = False
    augment_shift: int = 8
    image_size: int = 64
    yaw_refine: int = 5


def load_demos(path: str | Path) -> list[dict]:
    """Transitions ``{"color", "height", "action", "step"}`` from a ``learn.run.demos`` file (``step``: the
    transition's index inside its episode, from the file's ``episode`` array; 0 when a file has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"demos file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        color, height, action = data["color"], data["height"], data["action"]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a symgym demos file (needs color/height/action arrays): {e}") from e
    if len(color) == 0:
        raise ValueError(f"demos file {path} holds no transitions")
    episode = data["episode"] if "episode" in data.files else np.arange(len(action))
    # index within the episode: steps of one episode are stored consecutively
    starts = np.r_[True, episode[1:] != episode[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(episode)), 0))
    steps = np.arange(len(episode)) - first
    return [{"color": c, "height": h, "action": a, "step": int(k)} for c, h, a, k in zip(color, height, action, steps)]


class TransporterAgent(Agent):
    """Transporter Network: pick heatmap FCN; place by cross-correlating rotated crop features with the scene.

    Pick: softmax over pixels of an FCN on the top-down image. Place: the crop around the pick pixel is
    rotated by each of ``n_rotations`` angles, mapped by the query FCN, and cross-correlated with the key FCN's
    scene features; the argmax over (rotation, pixel) gives the place position and the object's yaw change.
    The place height is read off the heightmap (place surface + picked object's height), as in Transporter.
    """

    name = "transporter"
    learns_from = "demos"
    equivariant = False

    config_class = TransporterConfig

    def __init__(self, config: TransporterConfig | None = None, seed: int = 0, info: EnvInfo | None = None):
        super().__init__(config, seed, info)
        if self.config.n_rotations < 1 or self.config.crop % 2 == 0:
            raise ValueError(f"need n_rotations >= 1 and an odd crop, got {self.config.n_rotations}, {self.config.crop}")
        if self.config.yaw_refine < 1:
            raise ValueError(f"yaw_refine must be >= 1 candidate, got {self.config.yaw_refine}")
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.grid = Grid(self.config.image_size, WORKSPACE_HALF)
        c = self.config
        self.pick_net = make_fcn(IN_CHANNELS, PICK_STEPS, self.equivariant, c.width, c.group_order, c.fields)
        self.episode_step = 0  # primitives this agent has chosen since the episode began (``reset``)
        self.key_net = make_fcn(IN_CHANNELS, c.feature_dim, self.equivariant, c.width, c.group_order, c.fields)
        self.query_net = make_fcn(IN_CHANNELS, c.feature_dim, self.equivariant, c.width, c.group_order, c.fields)
        self.extra_modules: dict[str, nn.Module] = {}
        self.train_time_s = 0.0
        self.loss_curve: list[float] = []

    # -- the parts the Keyframe Transporter overrides -------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"pick": self.pick_net, "key": self.key_net, "query": self.query_net, **self.extra_modules}

    def object_crop(self, x: torch.Tensor, pick_rc, pick_yaw: float) -> torch.Tensor:
        """What gets rotated and correlated: here the scene crop around the pick, in the world frame."""
        return crop_at(x, pick_rc, self.config.crop)

    def place_yaw_label(self, action: np.ndarray) -> float:
        """The rotation the place head predicts: here the object's yaw change."""
        return float(action[6] - action[2])

    def place_height(self, x: torch.Tensor, pick_rc, place_rc, obj: torch.Tensor, yaw: float) -> float:
        """Heightmap rule: the surface under the place pixel plus the picked object's height, 3 mm above."""
        h = x[3] * HEIGHT_SCALE
        return float(h[place_rc[0], place_rc[1]] + h[pick_rc[0], pick_rc[1]] + 0.003)

    def extra_loss(self, x, pick_rc, place_rc, obj, action) -> torch.Tensor | None:
        return None

    def _eval_mode(self) -> None:
        # switch only modules still training: eval() under no_grad reuses the memoised dense filters
        for m in self.modules().values():
            if m.training:
                m.eval()

    # -- forward passes ---------------------------------------------------------------------
    def pick_logits(self, x: torch.Tensor, step: int = 0) -> torch.Tensor:
        """(S, S) pick logits for a (4, S, S) observation tensor at the episode's ``step`` (0: the first pick)."""
        return self.pick_net(x[None])[0, min(int(step), PICK_STEPS - 1)]

    def place_logits(self, x: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """(R, S, S) place logits: object crop rotated by each bin angle, correlated with the scene features."""
        n = self.config.n_rotations
        rotated = rotate_images(obj[None].expand(n, -1, -1, -1), rotation_angles(n))
        kernels = self.query_net(rotated)
        return correlate(self.key_net(x[None])[0], kernels) / math.sqrt(kernels[0].numel())

    def yaw_offsets(self) -> torch.Tensor:
        """Sub-bin yaw offsets tried by ``refine_yaw``: evenly spaced inside one bin, centred on 0."""
        k, step = self.config.yaw_refine, 2 * math.pi / self.config.n_rotations
        return (torch.arange(k, dtype=torch.float32) - (k - 1) / 2) * (step / k)

    def refine_yaw_scores(self, x: torch.Tensor, obj: torch.Tensor, rot: int, place_rc) -> torch.Tensor:
        """Place scores at one pixel for the object turned by bin ``rot`` plus each of ``yaw_offsets()``."""
        angles = rotation_angles(self.config.n_rotations)[rot] + self.yaw_offsets()
        kernels = self.query_net(rotate_images(obj[None].expand(len(angles), -1, -1, -1), angles))
        keys = crop_at(self.key_net(x[None])[0], place_rc, kernels.shape[-1])
        return (kernels * keys[None]).sum((1, 2, 3)) / math.sqrt(kernels[0].numel())

    def refine_yaw(self, x: torch.Tensor, obj: torch.Tensor, rot: int, place_rc) -> float:
        """Coarse-to-fine yaw: the best sub-bin angle around bin ``rot`` at the chosen place pixel."""
        base = float(rotation_angles(self.config.n_rotations)[rot])
        if self.config.yaw_refine == 1:
            return base
        scores = self.refine_yaw_scores(x, obj, rot, place_rc)
        return base + float(self.yaw_offsets()[int(scores.argmax())])

    # -- acting ---------------------------------------------------------------------------------
    def plan(self, obs: dict, step: int | None = None) -> dict[str, Any]:
        """Everything the agent decides for one observation (the action plus its heatmaps); ``step``: the
        primitive's index in the episode (None: this agent's own count, ``episode_step``)."""
        step = self.episode_step if step is None else int(step)
        self._eval_mode()
        with torch.no_grad():
            x = obs_to_tensor(obs)
            if x.shape[-1] != self.grid.size:
                raise ValueError(f"agent expects {self.grid.size}x{self.grid.size} images, got {tuple(x.shape[1:])}")
            pick = self.pick_logits(x, step)
            pick_rc = np.unravel_index(int(pick.argmax()), pick.shape)
            pick_yaw = 0.0  # suction: any gripper yaw works; the place yaw is relative to it
            obj = self.object_crop(x, pick_rc, pick_yaw)
            place = self.place_logits(x, obj)
            rot, row, col = np.unravel_index(int(place.argmax()), place.shape)
            yaw = self.refine_yaw(x, obj, int(rot), (int(row), int(col)))
            z = self.place_height(x, pick_rc, (row, col), obj, yaw)
        pick_xy, place_xy = self.grid.pix_to_xy(pick_rc), self.grid.pix_to_xy((row, col))
        action = np.array([pick_xy[0], pick_xy[1], pick_yaw, place_xy[0], place_xy[1], z,
                           wrap_angle(pick_yaw + yaw)], np.float32)
        return {"action": action, "pick_logits": pick, "place_logits": place, "pick_rc": pick_rc,
                "place_rc": (row, col), "rotation_bin": int(rot), "yaw": yaw, "object": obj}

    def reset(self) -> None:
        self.episode_step = 0

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        action = self.plan(obs)["action"]
        self.episode_step += 1
        return action

    # -- learning ---------------------------------------------------------------------------------
    def _augment(self, x: torch.Tensor, action: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """A random SE(2) element acting on the observation tensor and the action (as Ravens augments)."""
        lim = self.grid.half - 2 * self.grid.pixel
        for _ in range(10):
            angle = float(self.rng.uniform(0, 2 * math.pi))
            dr, dc = (int(v) for v in self.rng.integers(-self.config.augment_shift, self.config.augment_shift + 1, 2))
            g = SE2Element(angle, dc * self.grid.pixel, -dr * self.grid.pixel)
            moved = transform_action(g, action)
            if np.all(np.abs(moved[[0, 1, 3, 4]]) < lim):
                break
        else:
            return x, action
        out = rotate_images(x[None], torch.tensor([angle], dtype=torch.float32))[0]
        out = torch.roll(out, (dr, dc), dims=(1, 2))
        # zero what rolled in from the opposite edge (the world beyond the workspace is unseen)
        if dr > 0:
            out[:, :dr] = 0
        elif dr < 0:
            out[:, dr:] = 0
        if dc > 0:
            out[:, :, :dc] = 0
        elif dc < 0:
            out[:, :, dc:] = 0
        return out, moved

    def loss(self, transitions: list[dict]) -> torch.Tensor:
        n = self.config.n_rotations
        total = torch.zeros(())
        for t in transitions:
            x, action = obs_to_tensor(t), np.asarray(t["action"], np.float64)
            if self.config.augment:
                x, action = self._augment(x, action)
            pick_rc = self.grid.xy_to_pix(action[0:2])
            place_rc = self.grid.xy_to_pix(action[3:5])
            pick = self.pick_logits(x, t.get("step", 0)).reshape(1, -1)
            total = total + F.cross_entropy(pick, torch.tensor([pick_rc[0] * self.grid.size + pick_rc[1]]))
            obj = self.object_crop(x, pick_rc, float(action[2]))
            label = self.place_yaw_label(action)
            rot = yaw_to_bin(label, n)
            residual = wrap_angle(label - rot * 2 * math.pi / n)
            turned = obj
            if self.config.yaw_refine > 1 and abs(residual) > 1e-6:
                # turn the object by the sub-bin residual so that bin ``rot`` is the exact demonstrated yaw
                turned = rotate_images(obj[None], torch.tensor([residual], dtype=torch.float32))[0]
            place = self.place_logits(x, turned).reshape(1, -1)
            target = (rot * self.grid.size + place_rc[0]) * self.grid.size + place_rc[1]
            total = total + F.cross_entropy(place, torch.tensor([target]))
            extra = self.extra_loss(x, pick_rc, place_rc, obj, action)
            if extra is not None:
                total = total + extra
        return total / len(transitions)

    def learn(self, source: list[dict], steps: int, callback: Callable[[int, float], Any] | None = None,
              progress: bool = False) -> dict[str, Any]:
        """Imitation: ``steps`` Adam steps on random mini-batches of demonstrated transitions.

        ``callback(step, loss)`` is called after every step; returning ``False`` stops training early.
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if not source:
            raise ValueError("no demonstrations to learn from")
        torch.set_num_threads(1)
        params = [p for m in self.modules().values() for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=self.config.lr)
        for m in self.modules().values():
            m.train()
        losses, start = [], time.perf_counter()
        for step in tqdm(range(steps), desc=f"train {self.name}", disable=not progress, unit="step"):
            idx = self.rng.integers(len(source), size=min(self.config.batch, len(source)))
            loss = self.loss([source[i] for i in idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if callback is not None and callback(step, losses[-1]) is False:
                break
        self.train_time_s += time.perf_counter() - start
        if losses:  # the training curve: mean loss over each tenth of the run (kept in the checkpoint)
            self.loss_curve = [float(np.mean(c)) for c in np.array_split(np.array(losses), min(10, len(losses)))]
        return {"losses": losses, "final_loss": float(np.mean(losses[-20:])) if losses else None,
                "train_time_s": self.train_time_s, "steps": len(losses), "transitions": len(source)}

    @classmethod
    def read_demos(cls, path: str | Path) -> list[dict]:
        return load_demos(path)

    # -- persistence (the hooks of Agent.save / Agent.load) -------------------------------------------
    def checkpoint_files(self) -> dict[str, tuple[str, Any]]:
        # weights only: the escnn builder never puts expanded filters in state_dict (equivariance.escnn_nets)
        weights = {k: m.state_dict() for k, m in self.modules().items()}
        return {"weights": (WEIGHTS_FILE, lambda p: torch.save(weights, p))}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"train_time_s": self.train_time_s, "loss_curve": self.loss_curve}

    def restore_files(self, files, state: dict[str, Any]) -> None:
        def restore(path: Path) -> None:
            weights = torch.load(path, map_location="cpu", weights_only=True)
            for k, m in self.modules().items():
                m.eval()
                m.load_state_dict(weights[k])

        files.load("weights", restore)
        self.train_time_s = float(state.get("train_time_s", 0.0))
        self.loss_curve = [float(v) for v in state.get("loss_curve", [])]

    def extra_metrics(self) -> dict[str, float]:
        """The training curve as trial metrics: mean loss per tenth of training (``loss_t0`` ... ``loss_t9``)
        and the last tenth over the middle one (near 1 when training has converged)."""
        out = {f"loss_t{i}": v for i, v in enumerate(self.loss_curve)}
        if len(self.loss_curve) >= 2:
            mid = self.loss_curve[len(self.loss_curve) // 2]
            out["loss_final_over_mid"] = self.loss_curve[-1] / mid if mid > 0 else float("nan")
        return out

    def check_env(self, info: EnvInfo) -> None:
        if info.observation_space is not None and not isinstance(info.observation_space, gym.spaces.Dict):
            raise ValueError(f"{self.name} needs top-down colour/height observations (a Dict space), got "
                             f"{info.observation_space}")


class EquiTransporterAgent(TransporterAgent):
    """Transporter whose pick, key and query nets are escnn C_n-steerable FCNs (scalar outputs).

    Rotating the scene rotates the pick heatmap and the key features; the rotated query crops then make the
    place distribution shift in rotation by the same angle (exact for 90 degrees on the grid).
    """

    name = "equi-transporter"
    equivariant = True
