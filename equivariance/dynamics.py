"""Checking a declared symmetry against the simulator: ``step(g.s, g.a) == g.step(s, a)``.

Works for any env exposing ``get_state``, ``set_state``, ``transform_state(g, state)`` and a
``symmetry`` (every planar MuJoCo env in ``envs/``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def rollout_states(env, state: np.ndarray, actions: Sequence[np.ndarray]) -> np.ndarray:
    """Restore ``state``, apply ``actions`` and return the final full state."""
    env.set_state(state)
    for a in actions:
        env.step(np.asarray(a, dtype=np.float64))  # float64: float32 rounding of g.a alone moves states ~1e-8
    return env.get_state()


def dynamics_equivariance_errors(env, state: np.ndarray, actions: Sequence[np.ndarray], elements: Sequence) -> list[float]:
    """Max-abs difference between rolling out a transformed state/actions and transforming the rollout, per element.

    The env must be ``env.unwrapped`` (no TimeLimit between calls) and actions are applied as given
    (``symmetry.transform_action`` maps them for the transformed rollout).
    """
    sym = env.symmetry
    final = rollout_states(env, state, actions)
    errors = []
    for g in elements:
        moved = rollout_states(env, env.transform_state(g, state), [sym.transform_action(g, a) for a in actions])
        errors.append(float(np.abs(moved - env.transform_state(g, final)).max()))
    return errors


def contact_rich_actions(env, n: int, rng: np.random.Generator, aim=None, noise: float = 0.3) -> list[np.ndarray]:
    """Actions that drive toward ``aim`` (e.g. the puck) with noise, so the check includes contact."""
    if aim is None:
        return [rng.uniform(-1, 1, size=env.action_space.shape) for _ in range(n)]
    d = np.asarray(aim, dtype=float)
    d = d / (np.linalg.norm(d) + 1e-9)
    return [d + noise * rng.normal(size=d.shape) for _ in range(n)]
