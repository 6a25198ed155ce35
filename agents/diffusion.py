"""Action-chunk heads for HEP's low level: a denoising diffusion head (DDPM training, DDIM sampling, noise
schedules from ``diffusers``) and a deterministic MSE head with the same interface, for comparing them.

Both heads map a condition vector ``c`` (B, C) to an action chunk (B, H, D). The diffusion head trains a noise
predictor ``eps(x_t, t, c)`` with ``diffusers.DDPMScheduler.add_noise`` and samples with
``diffusers.DDIMScheduler`` from a start noise drawn from a generator seeded per call (``noise_seed``), so a
trained policy is a deterministic function of its input: its equivariance can be tested exactly with the noise
fixed. The chunk lives in whatever frame the caller expresses it in; sampling never looks at world coordinates.
"""
from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn


def mlp(n_in: int, n_out: int, hidden: int, layers: int = 3, act=nn.Mish) -> nn.Sequential:
    mods, c = [], n_in
    for _ in range(layers - 1):
        mods += [nn.Linear(c, hidden), act()]
        c = hidden
    mods.append(nn.Linear(c, n_out))
    return nn.Sequential(*mods)


def timestep_embedding(t: torch.Tensor, dim: int = 32) -> torch.Tensor:
    """Sinusoidal embedding of integer diffusion timesteps (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], 1)


class MSEHead(nn.Module):
    """Deterministic regression of the chunk: averages the modes of multimodal demonstrations."""

    kind = "mse"

    def __init__(self, cond_dim: int, horizon: int, action_dim: int, hidden: int):
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim
        self.net = mlp(cond_dim, horizon * action_dim, hidden)

    def loss(self, cond: torch.Tensor, chunk: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        return ((self.net(cond).view_as(chunk) - chunk) ** 2).mean()

    def sample(self, cond: torch.Tensor, noise_seed: int = 0) -> torch.Tensor:
        return self.net(cond).view(len(cond), self.horizon, self.action_dim)


class DiffusionHead(nn.Module):
    """Conditional DDPM over flattened chunks; an MLP noise predictor (chunks are short: H x D <= ~40 numbers).

    Args:
        train_steps: diffusion timesteps of the DDPM schedule (squared-cosine betas, as Diffusion Policy uses).
        sample_steps: DDIM steps at inference.
        clip: chunks are clipped to ``[-clip, clip]`` while denoising (the caller scales chunks to about unit size).
    """

    kind = "diffusion"

    def __init__(self, cond_dim: int, horizon: int, action_dim: int, hidden: int, train_steps: int = 100,
                 sample_steps: int = 10, clip: float = 2.0, t_dim: int = 32, prediction: str = "epsilon"):
        super().__init__()
        self.horizon, self.action_dim, self.sample_steps, self.t_dim = horizon, action_dim, sample_steps, t_dim
        n = horizon * action_dim
        self.net = mlp(n + t_dim + cond_dim, n, hidden, layers=4)
        kw = dict(num_train_timesteps=train_steps, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                  clip_sample_range=clip, prediction_type=prediction)
        self.train_scheduler = DDPMScheduler(**kw)
        self.sample_scheduler = DDIMScheduler(**kw)

    def _eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), timestep_embedding(t, self.t_dim).to(x.dtype), cond], 1))

    def loss(self, cond: torch.Tensor, chunk: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        B = len(chunk)
        noise = torch.randn(chunk.shape, generator=gen, dtype=chunk.dtype)
        t = torch.randint(0, self.train_scheduler.config.num_train_timesteps, (B,), generator=gen)
        noisy = self.train_scheduler.add_noise(chunk, noise, t)
        target = noise if self.train_scheduler.config.prediction_type == "epsilon" else chunk
        return ((self._eps(noisy, t, cond) - target.flatten(1)) ** 2).mean()

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise_seed: int = 0) -> torch.Tensor:
        """DDIM (eta = 0) from noise seeded by ``noise_seed``: the same condition gives the same chunk."""
        gen = torch.Generator().manual_seed(int(noise_seed))
        x = torch.randn((len(cond), self.horizon, self.action_dim), generator=gen, dtype=cond.dtype)
        sched = self.sample_scheduler
        sched.set_timesteps(self.sample_steps)
        for t in sched.timesteps:
            eps = self._eps(x, t.repeat(len(cond)), cond).view_as(x)
            x = sched.step(eps, t, x).prev_sample
        return x


def make_head(kind: str, cond_dim: int, horizon: int, action_dim: int, hidden: int, **kwargs) -> nn.Module:
    if kind == "diffusion":
        return DiffusionHead(cond_dim, horizon, action_dim, hidden, **kwargs)
    if kind == "mse":
        return MSEHead(cond_dim, horizon, action_dim, hidden)
    raise ValueError(f"head must be 'diffusion' or 'mse', got {kind!r}")
