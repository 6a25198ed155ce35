"""How many generators: grow the Lie-algebra basis one generator at a time until the loss jumps.

Generators are orthonormal (see :mod:`symgym.equivariance.discovery`), so the equivariance loss of
the best ``k``-dimensional basis cannot drop when ``k`` grows; while every new direction is a
symmetry it stays at the noise floor the predictors' fit errors set, and the first direction that
is not a symmetry makes it jump. :class:`GeneratorCountConfig` states the rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from symgym.equivariance.discovery import GroupAction, LieDiscoveryConfig, Predictor, discover_lie_algebra


@dataclass
class GeneratorCountConfig:
    """Stopping rule of :func:`discover_generator_count`.

    ``k`` generators are accepted when the held-out loss ``L_k`` of the best ``k``-dimensional
    basis satisfies ``L_k <= accept_max`` and ``L_k <= jump_ratio * L_{k-1} + jump_floor``
    (``L_0 = 0``). The count is the last accepted ``k``: the search stops at the first ``k`` whose
    new direction cannot be made a symmetry, i.e. when adding a generator stops keeping the loss
    at the noise floor the predictors' fit errors set.
    """

    max_generators: int = 4
    #: first restart of each k starts from the linearised condition (the rest from random directions)
    linear_start: bool = True
    jump_ratio: float = 3.0
    jump_floor: float = 0.02
    accept_max: float = 0.1


@dataclass
class GeneratorCountResult:
    n_generators: int
    generators: np.ndarray  # (n, d, d) basis of the accepted algebra (empty if n = 0)
    losses: list[float]  # L_1, L_2, ... as far as the search went
    thresholds: list[float]  # the bound each L_k was held to
    bases: list[np.ndarray] = field(default_factory=list)  # the best basis found for every k tried


def discover_generator_count(
    predictors: Sequence[Predictor],
    inputs: Sequence[torch.Tensor],
    action: GroupAction,
    lie: LieDiscoveryConfig | None = None,
    count: GeneratorCountConfig | None = None,
) -> GeneratorCountResult:
    """Add generators one at a time (warm-started from the previous basis) until the loss jumps."""
    lie, count = lie or LieDiscoveryConfig(), count or GeneratorCountConfig()
    if count.max_generators < 1:
        raise ValueError(f"max_generators must be >= 1, got {count.max_generators}")
    losses, thresholds, bases = [], [], []
    accepted = np.zeros((0, action.dim, action.dim))
    previous = 0.0
    for k in range(1, count.max_generators + 1):
        res = discover_lie_algebra(predictors, inputs, action, replace(lie, n_generators=k, seed=lie.seed + k), init=accepted, linear_start=count.linear_start)
        bound = min(count.accept_max, count.jump_ratio * previous + count.jump_floor)
        losses.append(res.loss)
        thresholds.append(bound)
        bases.append(res.generators)
        if res.loss > bound:
            break
        accepted, previous = res.generators, res.loss
    return GeneratorCountResult(len(accepted), accepted, losses, thresholds, bases)
