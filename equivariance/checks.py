"""Equivariance checks shared by every test and benchmark.

``equivariance_error(f, symmetry, inputs, elements)`` is the max over inputs and group
elements of ``|f(g.x) - g.f(x)| / (|g.f(x)| + eps)``: relative, so one tolerance works for
networks, planners and simulators alike.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from symgym.equivariance.symmetry import Symmetry


def _as_array(x: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, dict):
        return np.concatenate([np.ravel(_as_array(x[k])) for k in sorted(x)])
    return np.asarray(x, dtype=float)


def relative_error(a: Any, b: Any, eps: float = 1e-8) -> float:
    a, b = _as_array(a), _as_array(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return float(np.linalg.norm(a - b) / (np.linalg.norm(b) + eps))


def equivariance_error(f: Callable, symmetry: Symmetry, inputs: Iterable, elements: Sequence,
                       out: str = "action") -> float:
    """Max relative error of ``f(g.x)`` vs ``g.f(x)``.

    ``f`` maps an observation to an action (``out="action"``, transformed by
    ``symmetry.transform_action``) or to an observation (``out="obs"``).
    """
    transform_out = symmetry.transform_action if out == "action" else symmetry.transform_obs
    worst = 0.0
    for x in inputs:
        fx = f(x)
        for g in elements:
            worst = max(worst, relative_error(f(symmetry.transform_obs(g, x)), transform_out(g, fx)))
    return worst


def invariance_error(f: Callable, symmetry: Symmetry, inputs: Iterable, elements: Sequence) -> float:
    """Max relative error of ``f(g.x)`` vs ``f(x)`` (values, critics, costs)."""
    worst = 0.0
    for x in inputs:
        fx = f(x)
        for g in elements:
            worst = max(worst, relative_error(f(symmetry.transform_obs(g, x)), fx))
    return worst


def check_homomorphism(rep, g, h, atol: float = 1e-9) -> float:
    """|rho(gh) - rho(g) rho(h)|_max for one pair: representations must be group homomorphisms."""
    return float(np.abs(rep(rep.group.compose(g, h)) - rep(g) @ rep(h)).max())
