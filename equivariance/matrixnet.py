"""MatrixNet: learned matrix representations of group elements.

Each generator ``g_i`` of a finitely presented group gets a learned algebra element
``A_i`` (a d x d matrix) and is represented by ``rho(g_i) = exp(A_i)``; its inverse is
``rho(g_i^{-1}) = exp(-A_i)``, which is the *exact* inverse, so ``g g^{-1} = 1`` holds by
construction. A word ``w_1 ... w_T`` is represented by the ordered product
``rho(w_1) @ ... @ rho(w_T)``. Since the map is multiplicative, a head that reads the
task from ``rho(w)`` sees the same input for every word of the same group element, which
is what lets the model generalise to words longer than those seen in training.

Parametrisations of the generator matrices:

* ``parametrisation="mlp"``: the paper's non-linear matrix block (Laird et al. 2025, arXiv
  2501.09571; the ``tanh`` matrix block of the authors' code): a generator is encoded as a *signed* one-hot vector (``g_i -> e_i``,
  ``g_i^{-1} -> -e_i``), mapped by a bias-free two-layer linear map followed by ``tanh`` to a
  d x d matrix ``A`` and exponentiated. ``tanh`` is odd and there are no biases, so
  ``A(g_i^{-1}) = -A(g_i)`` and ``exp`` again gives exact inverses. The matrices are unconstrained
  (GL(d)) and words are multiplied without rescaling, as in the paper.

Numerical stability for long words (``orthogonal`` and ``general``):

* ``parametrisation="orthogonal"`` (default): ``A_i`` is skew-symmetric, so every
  ``rho(g)`` lies in SO(d) and products of any length keep unit operator norm. Every
  representation of a finite group is equivalent to an orthogonal one, so nothing is lost
  for finite groups (or finite quotients of infinite ones).
* ``parametrisation="general"``: ``A_i`` is unconstrained (GL(d)). Products are formed
  by a balanced binary tree (depth ``log2 T``) and every partial product is rescaled to unit
  RMS entry size, with the discarded log-scale accumulated and returned separately.

Token convention (shared with ``learn.tasks.matrixnet.group_words``): ``0`` is padding (identity),
``1..k`` the generators and ``k+1..2k`` their inverses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

PARAMETRISATIONS = ("orthogonal", "general", "mlp")


def ordered_product(mats: torch.Tensor, normalise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered product ``mats[:, 0] @ mats[:, 1] @ ... @ mats[:, T-1]`` by tree reduction.

    Args:
        mats: (B, T, d, d) factors.
        normalise: rescale every partial product to unit RMS entry, accumulating the
            log of the removed scale; keeps long products of non-orthogonal matrices finite.

    Returns:
        ``(product, log_scale)``: (B, d, d) and (B,). The true product is
        ``product * exp(log_scale)`` (``log_scale`` is zero when ``normalise`` is False).
    """
    if mats.ndim != 4 or mats.shape[-1] != mats.shape[-2]:
        raise ValueError(f"mats must be (B, T, d, d), got shape {tuple(mats.shape)}")
    batch, length, dim, _ = mats.shape
    log_scale = mats.new_zeros(batch, max(length, 1))
    if length == 0:
        return torch.eye(dim, dtype=mats.dtype, device=mats.device).expand(batch, dim, dim).clone(), log_scale[:, 0]
    while mats.shape[1] > 1:
        if mats.shape[1] % 2:  # pad with the identity on the right: does not change the product
            eye = torch.eye(dim, dtype=mats.dtype, device=mats.device).expand(batch, 1, dim, dim)
            mats = torch.cat([mats, eye], dim=1)
            log_scale = torch.cat([log_scale, log_scale.new_zeros(batch, 1)], dim=1)
        pairs = mats.reshape(batch, -1, 2, dim, dim)
        mats = pairs[:, :, 0] @ pairs[:, :, 1]
        log_scale = log_scale.reshape(batch, -1, 2).sum(-1)
        if normalise:
            rms = mats.pow(2).mean(dim=(-1, -2)).sqrt().clamp_min(1e-30)
            mats = mats / rms[..., None, None]
            log_scale = log_scale + rms.log()
    product, log_scale = mats[:, 0], log_scale[:, 0]
    if normalise and length == 1:  # the loop never ran: still honour the unit-RMS contract
        rms = product.pow(2).mean(dim=(-1, -2)).sqrt().clamp_min(1e-30)
        product, log_scale = product / rms[..., None, None], log_scale + rms.log()
    return product, log_scale


class MatrixRepresentation(nn.Module):
    """Learned representation ``rho``: generator tokens -> d x d matrices, words -> products."""

    def __init__(
        self,
        n_generators: int,
        dim: int = 8,
        parametrisation: str = "orthogonal",
        init_scale: float = 1.0,
        conjugate_generators: bool = False,
        block_hidden: int = 32,
    ) -> None:
        super().__init__()
        if n_generators < 1:
            raise ValueError(f"n_generators must be positive, got {n_generators}")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"unknown parametrisation {parametrisation!r}; choose from {PARAMETRISATIONS}")
        self.n_generators = n_generators
        self.dim = dim
        self.parametrisation = parametrisation
        # scale 1/sqrt(d) keeps exp(A) O(1) away from the identity, so words are distinguishable at init
        raw_algebra = torch.randn(n_generators, dim, dim) * init_scale / dim**0.5
        if parametrisation == "mlp":  # the block below produces A_i; keep the tensor only for dtype/device
            self.register_buffer("raw_algebra", raw_algebra)
        else:
            self.raw_algebra = nn.Parameter(raw_algebra)
        # Optional inductive bias for groups whose generators are all conjugate (adjacent
        # transpositions of S_n, Artin generators of B_n, the reflections of D_m for odd m):
        # A_i = U_i B U_i^T with one shared algebra element B and orthogonal U_i, so the learned
        # generators share a spectrum. Without it, the relation loss can drive generators to
        # mutually inconsistent solutions (e.g. involutions with different numbers of
        # pi-rotation planes) that no continuous path connects.
        self.conjugate_generators = conjugate_generators
        if conjugate_generators:
            if parametrisation != "orthogonal":
                raise ValueError("conjugate_generators=True needs parametrisation='orthogonal'")
            self.raw_shared = nn.Parameter(torch.randn(dim, dim) * init_scale / dim**0.5)
            self.raw_frames = nn.Parameter(torch.randn(n_generators, dim, dim) * init_scale / dim**0.5)
        if parametrisation == "mlp":
            if block_hidden < 1:
                raise ValueError(f"block_hidden must be positive, got {block_hidden}")
            # the paper's matrix block: signed one-hot -> Linear -> Linear -> tanh (all bias-free)
            self.block = nn.Sequential(
                nn.Linear(n_generators, block_hidden, bias=False),
                nn.Linear(block_hidden, dim * dim, bias=False),
                nn.Tanh(),
            )

    @property
    def normalises_products(self) -> bool:
        """Only ``general`` rescales partial products; ``mlp`` multiplies plainly, like the paper."""
        return self.parametrisation == "general"

    @property
    def vocab_size(self) -> int:
        return 2 * self.n_generators + 1

    def algebra(self) -> torch.Tensor:
        """Algebra elements ``A_i`` (k, d, d); skew-symmetric for the orthogonal parametrisation."""
        if self.parametrisation == "mlp":
            signed_onehot = torch.eye(self.n_generators, dtype=self.raw_algebra.dtype, device=self.raw_algebra.device)
            return self.block(signed_onehot).reshape(self.n_generators, self.dim, self.dim)
        if self.conjugate_generators:
            shared = self.raw_shared - self.raw_shared.T
            frames = torch.linalg.matrix_exp(self.raw_frames - self.raw_frames.transpose(-1, -2))
            return frames @ shared @ frames.transpose(-1, -2)
        if self.parametrisation == "orthogonal":
            return self.raw_algebra - self.raw_algebra.transpose(-1, -2)
        return self.raw_algebra

    @torch.no_grad()
    def set_algebra(self, algebra: torch.Tensor) -> None:
        """Set ``A_i`` exactly (e.g. to a known representation); skew input for ``orthogonal``."""
        if self.conjugate_generators or self.parametrisation == "mlp":
            raise ValueError("set_algebra is not available with conjugate_generators=True or parametrisation='mlp'")
        algebra = torch.as_tensor(algebra, dtype=self.raw_algebra.dtype)
        if algebra.shape != self.raw_algebra.shape:
            raise ValueError(f"algebra must have shape {tuple(self.raw_algebra.shape)}, got {tuple(algebra.shape)}")
        if self.parametrisation == "orthogonal":
            if not torch.allclose(algebra, -algebra.transpose(-1, -2), atol=1e-6):
                raise ValueError("orthogonal parametrisation needs skew-symmetric algebra elements")
            self.raw_algebra.copy_(algebra / 2)  # W - W^T = A/2 + A/2 = A
        else:
            self.raw_algebra.copy_(algebra)

    def generator_matrices(self) -> torch.Tensor:
        """(2k+1, d, d): the identity (padding), ``exp(A_i)``, then ``exp(-A_i)``."""
        algebra = self.algebra()
        eye = torch.eye(self.dim, dtype=algebra.dtype, device=algebra.device)[None]
        return torch.cat([eye, torch.linalg.matrix_exp(algebra), torch.linalg.matrix_exp(-algebra)])

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Represent words: tokens (B, T) -> ``(rho(w), log_scale)`` of shapes (B, d, d), (B,)."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be (B, T), got shape {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(
                f"token ids must be in [0, {self.vocab_size}), got range [{int(tokens.min())}, {int(tokens.max())}]"
            )
        mats = self.generator_matrices()[tokens]
        return ordered_product(mats, normalise=self.normalises_products)

    def relation_errors(self, relators: Sequence[Sequence[int]]) -> torch.Tensor:
        """Per relator ``r`` (a word equal to 1): ``||rho(r) - I||_F / sqrt(d)``.

        The product is taken without normalisation, so a scale drift counts as an error.
        """
        if len(relators) == 0:
            raise ValueError("relators is empty")
        longest = max(len(r) for r in relators)
        tokens = torch.zeros(len(relators), longest, dtype=torch.long, device=self.raw_algebra.device)
        for row, relator in enumerate(relators):
            tokens[row, : len(relator)] = torch.as_tensor(list(relator), dtype=torch.long)
        mats = self.generator_matrices()[tokens]
        product, _ = ordered_product(mats, normalise=False)
        eye = torch.eye(self.dim, dtype=product.dtype, device=product.device)
        return torch.linalg.matrix_norm(product - eye) / self.dim**0.5

    def relation_loss(self, relators: Sequence[Sequence[int]]) -> torch.Tensor:
        """Relation regulariser: mean squared relation error."""
        return self.relation_errors(relators).pow(2).mean()


@dataclass
class MatrixNetConfig:
    """Hyper-parameters of :class:`MatrixNet` (``n_outputs``: classes, or regression targets)."""

    n_generators: int
    n_outputs: int
    dim: int = 8
    parametrisation: str = "orthogonal"
    hidden: int = 128
    init_scale: float = 1.0
    conjugate_generators: bool = False
    block_hidden: int = 32


class MatrixNet(nn.Module):
    """Learned representation ``rho`` followed by an MLP head on ``rho(w)`` (logits or regression outputs)."""

    def __init__(self, config: MatrixNetConfig) -> None:
        super().__init__()
        if config.n_outputs < 1:
            raise ValueError(f"n_outputs must be positive, got {config.n_outputs}")
        self.config = config
        self.representation = MatrixRepresentation(
            config.n_generators, config.dim, config.parametrisation, config.init_scale, config.conjugate_generators,
            config.block_hidden,
        )
        features = config.dim**2 + (1 if self.representation.normalises_products else 0)
        self.head = nn.Sequential(
            nn.Linear(features, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.n_outputs),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Outputs (B, n_outputs) for words tokens (B, T)."""
        product, log_scale = self.representation(tokens)
        features = product.flatten(1)
        if self.representation.normalises_products:
            features = torch.cat([features, log_scale[:, None]], dim=1)
        return self.head(features)

    def relation_loss(self, relators: Sequence[Sequence[int]]) -> torch.Tensor:
        return self.representation.relation_loss(relators)
