"""IAEmu networks and their training: the paper's model, the MLP ensemble member, losses and predictive moments.

- :class:`IAEmuNet` follows arXiv 2504.05235 (IAEmu): a residual MLP encoder (Linear, LeakyReLU,
  BatchNorm, Dropout; two skip connections) into a bottleneck, and one 1-D convolutional decoder per
  statistic (a linear map to 7 channels x 5 n_bins positions, six Conv1d layers with two skip
  connections, a stride-5 Conv1d to (mean, variance) per bin). Trained with the beta-NLL loss and the
  paper's schedule (beta = 1 for every statistic during a warm-up, then 0.9 for xi and 0.5 for omega
  and eta), AdamW with weight decay 1e-4, a x0.1 step decay of the learning rate at 1/3 and 2/3 of the
  epochs, gradient clipping at 10, and model selection on 0.7 MSE + 0.3 NLL on validation data.
  Epistemic uncertainty is Monte Carlo dropout: at prediction time the dropout of the encoder and of
  each decoder's first four convolutions stays on, as in the reference implementation (the decoder's
  input layer and its last two convolutions predict deterministically); batch-norm uses its running
  statistics, and the spread of the sampled means is the epistemic variance.
- :class:`IAEmulator` is a plain SiLU MLP with one (mean, log-variance) head per statistic; several of
  them trained from different seeds form a deep ensemble, and one trained with MSE on realisation
  means is the no-uncertainty baseline.

Every network reads box-normalised parameters and predicts standardised targets (see
:class:`Standardiser` in :mod:`learn.tasks.iaemu.task`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from symgym.learn.io import save_torch

#: beta-NLL exponents after the warm-up, per statistic (xi, omega, eta), as in the IAEmu training code
PAPER_BETAS = (0.9, 0.5, 0.5)
#: validation selection score = VAL_MSE_WEIGHT * MSE + (1 - VAL_MSE_WEIGHT) * NLL
VAL_MSE_WEIGHT = 0.7


def box_normalise(theta: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    return 2.0 * (theta - low) / (high - low) - 1.0


# --------------------------------------------------------------------------- MLP (ensemble member, MSE baseline)
class IAEmulator(nn.Module):
    """Shared SiLU encoder + one (mean, log-variance) head per statistic."""

    def __init__(self, low: np.ndarray, high: np.ndarray, n_bins: int = 20, n_stats: int = 3, hidden: int = 128,
                 heteroscedastic: bool = True):
        super().__init__()
        n_params = len(low)
        self.n_bins, self.n_stats, self.heteroscedastic = n_bins, n_stats, heteroscedastic
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
        self.encoder = nn.Sequential(
            nn.Linear(n_params, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
        )
        out = 2 * n_bins if heteroscedastic else n_bins
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out)) for _ in range(n_stats)
        )

    def forward(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised (mean, log_var), each (B, n_stats, n_bins); log_var is zeros when not heteroscedastic."""
        h = self.encoder(box_normalise(theta, self.low, self.high))
        outs = torch.stack([head(h) for head in self.heads], dim=1)
        if not self.heteroscedastic:
            return outs, torch.zeros_like(outs)
        mean, raw = outs.split(self.n_bins, dim=-1)
        # a soft bound keeps the variance away from 0 and inf early in training
        return mean, 6.0 * torch.tanh(raw / 6.0) - 2.0


# --------------------------------------------------------------------------- the paper's model
def _dense(n_in: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.LeakyReLU(), nn.BatchNorm1d(n_out), nn.Dropout(dropout))


def _conv(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, 3, padding=1), nn.LeakyReLU(), nn.BatchNorm1d(c_out),
                         nn.Dropout(dropout))


class ResidualEncoder(nn.Module):
    """params -> h -> h -> 2h (+ linear skip) -> 2h (+ identity skip) -> bottleneck."""

    def __init__(self, n_params: int, hidden: int = 128, bottleneck: int = 128, dropout: float = 0.2):
        super().__init__()
        self.layer1, self.layer2 = _dense(n_params, hidden, dropout), _dense(hidden, hidden, dropout)
        self.skip = nn.Linear(hidden, 2 * hidden)
        self.layer3, self.layer4 = _dense(hidden, 2 * hidden, dropout), _dense(2 * hidden, 2 * hidden, dropout)
        self.out = _dense(2 * hidden, bottleneck, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = self.layer2(self.layer1(x))
        x3 = self.layer3(x2) + self.skip(x2)
        return self.out(self.layer4(x3) + x3)


class ConvDecoder(nn.Module):
    """bottleneck -> (7 channels, 5 n_bins) -> Conv1d stack with two identity skips -> (mean, variance) per bin."""

    def __init__(self, bottleneck: int = 128, n_bins: int = 20, width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        self.length = 5 * n_bins
        c = [7] + [max(1, int(round(k * width))) for k in (14, 28, 28, 56, 112, 112)]
        self.inp = _dense(bottleneck, 7 * self.length, dropout)
        self.convs = nn.ModuleList(_conv(c[i], c[i + 1], dropout) for i in range(6))
        # kernel 5, stride 5, padding 1 maps 5 n_bins positions onto n_bins outputs
        self.head = nn.Conv1d(c[-1], 2, kernel_size=5, stride=5, padding=1)
        with torch.no_grad():
            self.head.bias[1] = 1.0  # start with a variance of ~softplus(1), as the reference code

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inp(h).view(h.shape[0], 7, self.length)
        x = self.convs[1](self.convs[0](x))
        x = self.convs[2](x) + x
        x = self.convs[4](self.convs[3](x))
        x = self.convs[5](x) + x
        out = self.head(x)
        return out[:, 0], F.softplus(out[:, 1]) + 1e-6


class IAEmuNet(nn.Module):
    """The IAEmu architecture: residual encoder + one convolutional (mean, variance) decoder per statistic."""

    def __init__(self, low: np.ndarray, high: np.ndarray, n_bins: int = 20, n_stats: int = 3, hidden: int = 128,
                 width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
        self.encoder = ResidualEncoder(len(low), hidden, hidden, dropout)
        self.decoders = nn.ModuleList(ConvDecoder(hidden, n_bins, width, dropout) for _ in range(n_stats))

    def forward(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised (mean, log_var), each (B, n_stats, n_bins)."""
        h = self.encoder(box_normalise(theta, self.low, self.high))
        means, variances = zip(*(dec(h) for dec in self.decoders))
        return torch.stack(means, 1), torch.stack(variances, 1).log()

    def mc_dropout_layers(self) -> list[nn.Dropout]:
        """The dropout layers sampled at prediction time: the encoder's and each decoder's first four convolutions'."""
        blocks = [self.encoder] + [conv for dec in self.decoders for conv in dec.convs[:4]]
        return [m for block in blocks for m in block.modules() if isinstance(m, nn.Dropout)]

    def mc_dropout(self, on: bool = True) -> "IAEmuNet":
        """Evaluation mode with the Monte Carlo dropout layers switched on (``on``) or off; batch-norm stays in eval."""
        self.eval()
        for m in self.mc_dropout_layers():
            m.train(on)
        return self


def mc_dropout_predict(model: IAEmuNet, theta: torch.Tensor, n_passes: int = 30, seed: int | None = 0,
                       chunk: int = 32) -> dict[str, torch.Tensor]:
    """Predictive moments from ``n_passes`` dropout samples, evaluated ``chunk`` passes to a batch.

    mean: average sampled mean; aleatoric: average predicted variance; epistemic: variance of the
    sampled means (all in standardised units). The dropout masks come from ``seed`` in a forked RNG, so
    the same model, queries and ``chunk`` give the same moments whatever ran before, and the caller's random
    stream is left as it was; ``seed=None`` draws them from the global stream instead. (``chunk`` bounds the
    memory; it also orders the draws, so another chunk gives other masks.)
    """
    if n_passes < 2:
        raise ValueError(f"n_passes must be >= 2 for an epistemic variance, got {n_passes}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    means, variances = [], []
    # seed=None must advance the global stream (forking would replay the same masks on every call)
    with contextlib.nullcontext() if seed is None else torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model.mc_dropout(True)
        try:
            for start in range(0, n_passes, chunk):
                k = min(chunk, n_passes - start)
                mean, log_var = model(theta.repeat(k, 1))
                means.append(mean.view(k, len(theta), *mean.shape[1:]))
                variances.append(log_var.exp().view_as(means[-1]))
        finally:
            model.mc_dropout(False)
    mean, var = torch.cat(means), torch.cat(variances)
    return {"mean": mean.mean(0), "aleatoric": var.mean(0), "epistemic": mean.var(0, unbiased=False)}


def ensemble_predict(models: list[nn.Module], theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mixture moments of a deep ensemble (standardised space): mean, aleatoric and epistemic variance."""
    means, log_vars = zip(*(m(theta) for m in models))
    means, variances = torch.stack(means), torch.stack(log_vars).exp()
    epistemic = means.var(0, unbiased=False) if len(models) > 1 else torch.zeros_like(means[0])
    return {"mean": means.mean(0), "aleatoric": variances.mean(0), "epistemic": epistemic}


# --------------------------------------------------------------------------- losses and training
def beta_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, beta) -> torch.Tensor:
    """beta-NLL (Seitzer et al. 2022): the Gaussian NLL with each point weighted by stop-grad(var**beta).

    ``beta`` is a float or a per-statistic tensor broadcastable to (n_stats, 1). Mean over all entries.
    """
    var = log_var.exp()
    nll = 0.5 * (log_var + (target - mean) ** 2 / var)
    beta = torch.as_tensor(beta, dtype=var.dtype)
    if beta.ndim == 1:
        beta = beta[:, None]
    return (nll * var.detach() ** beta).mean()


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 100
    batch_size: int = 128
    lr: float = 2e-3
    beta: float = 0.5  # MLP members: one beta throughout
    warmup_fraction: float = 0.2  # paper model: beta = 1 for this fraction of the epochs
    weight_decay: float = 1e-4
    eval_every: int = 5

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


def _validation_tensors(val_theta: np.ndarray, val_y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Every realisation of every validation set as one row: (P_val * R, d) inputs, (P_val * R, ...) targets."""
    vx = torch.as_tensor(np.repeat(val_theta, val_y.shape[1], axis=0), dtype=torch.float32)
    return vx, torch.as_tensor(val_y.reshape(-1, *val_y.shape[2:]), dtype=torch.float32)


def validation_score(model: nn.Module, val_theta: np.ndarray, val_y: np.ndarray, kind: str) -> float:
    """The score :func:`train_network` selects its kept state by (lower is better), on (P_val, R, ...) targets."""
    model.eval()
    return _val_score(model, *_validation_tensors(val_theta, val_y), kind)


def _val_score(model: nn.Module, vx: torch.Tensor, vy: torch.Tensor, kind: str) -> float:
    with torch.no_grad():
        mean, log_var = model(vx)
        mse = ((mean - vy) ** 2).mean()
        if kind == "mse":
            return mse.item()
        nll = 0.5 * (log_var + (vy - mean) ** 2 / log_var.exp()).mean()
        return (VAL_MSE_WEIGHT * mse + (1 - VAL_MSE_WEIGHT) * nll).item() if kind == "paper" else nll.item()


def train_network(model: nn.Module, theta: np.ndarray, y: np.ndarray, val_theta: np.ndarray, val_y: np.ndarray,
                  settings: TrainSettings, seed: int, kind: str, checkpoint: Path | None = None,
                  checkpoint_every: int = 10) -> nn.Module:
    """Train on parameter sets ``theta`` (P, d) and standardised targets ``y`` (P, R, n_stats, n_bins).

    An epoch visits every parameter set once, each time with one of its R realisations drawn at
    random, so the realisation-to-realisation scatter is the aleatoric signal and the cost of an epoch
    does not grow with R. Validation uses every realisation of ``val_y`` (P_val, R, ...); the best
    validation state is kept.

    ``kind``: "paper" (beta-NLL with the warm-up / per-statistic beta schedule, AdamW, step decay,
    clipping, 0.7 MSE + 0.3 NLL selection), "ensemble" (beta-NLL with a fixed beta, Adam, cosine decay,
    NLL selection) or "mse" (MSE, Adam, cosine decay, MSE selection; pass realisation means, R = 1).

    ``checkpoint``: a file that every ``checkpoint_every`` epochs receives the whole training state (model,
    optimiser, schedule, both random generators, the best validation state); a run that finds it continues from
    there, and ends where an uninterrupted run would, bit for bit (a long training survives the end of a sitting).
    The file is removed when training finishes.
    """
    if kind not in ("paper", "ensemble", "mse"):
        raise ValueError(f"kind must be 'paper', 'ensemble' or 'mse', got {kind!r}")
    torch.manual_seed(seed)
    if y.ndim != 4 or val_y.ndim != 4 or len(y) != len(theta) or len(val_y) != len(val_theta):
        raise ValueError(f"targets must be (P, R, n_stats, n_bins) matching theta, got {y.shape} and {val_y.shape}")
    x_t, y_t = torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    n_real = y_t.shape[1]
    vx, vy = _validation_tensors(val_theta, val_y)
    gen = torch.Generator().manual_seed(seed)
    epochs = settings.epochs
    if kind == "paper":
        opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [epochs // 3, 2 * epochs // 3], gamma=0.1)
        warmup = int(settings.warmup_fraction * epochs)
        late_beta = torch.tensor(PAPER_BETAS[: y.shape[-2]], dtype=torch.float32)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)

    def loss_fn(epoch: int, mean, log_var, target):
        if kind == "mse":
            return ((mean - target) ** 2).mean()
        if kind == "ensemble":
            return beta_nll(mean, log_var, target, settings.beta)
        return beta_nll(mean, log_var, target, 1.0 if epoch < warmup else late_beta)

    best, best_state, start = float("inf"), None, 0
    if checkpoint is not None and Path(checkpoint).exists():
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])  # dropout draws from the global generator
        best, best_state, start = saved["best"], saved["best_state"], saved["epoch"]
    for epoch in range(start, epochs):
        model.train()
        pick = torch.randint(n_real, (len(x_t),), generator=gen)
        for idx in torch.randperm(len(x_t), generator=gen).split(settings.batch_size):
            if len(idx) < 2:  # batch-norm needs two samples
                continue
            loss = loss_fn(epoch, *model(x_t[idx]), y_t[idx, pick[idx]])
            opt.zero_grad()
            loss.backward()
            if kind == "paper":
                nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
        sched.step()
        if epoch % settings.eval_every == settings.eval_every - 1 or epoch == epochs - 1:
            model.eval()
            score = _val_score(model, vx, vy, kind)
            if score < best:
                best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
        if checkpoint is not None and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < epochs:
            save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "best": best,
                        "best_state": best_state, "epoch": epoch + 1}, checkpoint)
    model.load_state_dict(best_state)
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    return model.eval()


class FusedEnsemble(nn.Module):
    """The members of a deep ensemble of :class:`IAEmulator` stacked into batched matrix products.

    Same numbers as :func:`ensemble_predict` with a few large operations instead of one set per
    member: what a single query costs when the ensemble is served as one network.
    """

    def __init__(self, members: list[IAEmulator]):
        super().__init__()
        if not members or not all(m.heteroscedastic for m in members):
            raise ValueError("FusedEnsemble needs at least one heteroscedastic IAEmulator member")
        first = members[0]
        self.n_bins, self.n_stats = first.n_bins, first.n_stats
        self.register_buffer("low", first.low.clone())
        self.register_buffer("high", first.high.clone())
        enc = [[m.encoder[i] for m in members] for i in (0, 2, 4)]
        self.enc_w = nn.ParameterList(nn.Parameter(torch.stack([l.weight.T for l in layer])) for layer in enc)
        self.enc_b = nn.ParameterList(nn.Parameter(torch.stack([l.bias[None] for l in layer])) for layer in enc)
        # heads: (member, statistic) pairs flattened into one batch dimension
        heads = [[m.heads[s][i] for m in members for s in range(self.n_stats)] for i in (0, 2)]
        self.head_w = nn.ParameterList(nn.Parameter(torch.stack([l.weight.T for l in layer])) for layer in heads)
        self.head_b = nn.ParameterList(nn.Parameter(torch.stack([l.bias[None] for l in layer])) for layer in heads)
        self.n_members = len(members)

    def forward(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        x = box_normalise(theta, self.low, self.high).expand(self.n_members, -1, -1)
        for w, b in zip(self.enc_w, self.enc_b):
            x = F.silu(torch.baddbmm(b, x, w))
        x = x.repeat_interleave(self.n_stats, 0)  # (E * S, B, H)
        x = torch.baddbmm(self.head_b[1], F.silu(torch.baddbmm(self.head_b[0], x, self.head_w[0])), self.head_w[1])
        x = x.view(self.n_members, self.n_stats, len(theta), 2 * self.n_bins).transpose(1, 2)
        mean, raw = x.split(self.n_bins, dim=-1)
        var = (6.0 * torch.tanh(raw / 6.0) - 2.0).exp()
        epistemic = mean.var(0, unbiased=False) if self.n_members > 1 else torch.zeros_like(mean[0])
        return {"mean": mean.mean(0), "aleatoric": var.mean(0), "epistemic": epistemic}
