"""Sequence baselines for the MatrixNet word problems: MLP on one-hot words, LSTM, Transformer.

All read the same integer tokens as MatrixNet (``0`` padding, ``1..k`` generators, ``k+1..2k``
inverses) and output ``n_outputs`` numbers (class logits or regression targets).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class OneHotMLP(nn.Module):
    """MLP on one-hot tokens padded to a fixed maximum length (positions never seen stay untrained)."""

    def __init__(self, vocab_size: int, max_len: int, n_outputs: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        dims = [vocab_size * max_len] + [hidden] * layers
        blocks: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(d_in, d_out), nn.GELU()]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, n_outputs))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"word length {tokens.shape[1]} exceeds the MLP's max_len={self.max_len}")
        tokens = F.pad(tokens, (0, self.max_len - tokens.shape[1]))
        return self.net(F.one_hot(tokens, self.vocab_size).float().flatten(1))


class LSTMClassifier(nn.Module):
    """LSTM reading the word left to right; the state after the last real token is read out."""

    def __init__(self, vocab_size: int, n_outputs: int, embed: int = 32, hidden: int = 128, layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n_outputs))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != 0).sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.head(h[-1])


class TransformerClassifier(nn.Module):
    """Small pre-norm Transformer encoder with a CLS token and sinusoidal positions."""

    def __init__(self, vocab_size: int, n_outputs: int, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(vocab_size + 1, width)  # last id is CLS
        self.cls_id = vocab_size
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_outputs))

    def positions(self, length: int) -> torch.Tensor:
        pos = torch.arange(length, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, self.width, 2, dtype=torch.float32) * (-math.log(1e4) / self.width))
        enc = torch.zeros(length, self.width)
        enc[:, 0::2], enc[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        return enc

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = torch.full((tokens.shape[0], 1), self.cls_id, dtype=tokens.dtype, device=tokens.device)
        seq = torch.cat([cls, tokens], dim=1)
        x = self.embed(seq) + self.positions(seq.shape[1]).to(tokens.device)
        out = self.encoder(x, src_key_padding_mask=seq == 0)
        return self.head(out[:, 0])
