"""``Symmetry``: what an environment or task declares about its symmetry.

An env's observation is usually a flat vector whose layout is a direct sum of
representations (e.g. ``7 * standard``), a top-down image, or a dict of those. The
``Symmetry`` knows how a group element acts on each, so agents and tests never need to
know the env's internals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from symgym.equivariance.groups import Group
from symgym.equivariance.representations import Representation
from symgym.equivariance.transforms import transform_image, transform_points

#: how one observation component transforms: a Representation (vector), or "image", "points", "invariant"
ObsAction = Representation | str | Callable[[Any, np.ndarray], np.ndarray]


def _apply(spec: ObsAction, g, x):
    if isinstance(spec, Representation):
        return spec.act(g, x)
    if spec == "image":
        return transform_image(g, x)
    if spec == "points":
        return transform_points(g, x)
    if spec == "invariant":
        return np.array(x, copy=True)
    if callable(spec):
        return spec(g, x)
    raise ValueError(f"unknown observation transform {spec!r}")


@dataclass
class Symmetry:
    """A declared symmetry.

    Args:
        group: the group acting on the task.
        obs: how the observation transforms: a ``Representation`` for flat vectors,
            ``"image"`` for (H, W, C) top-down images, ``"points"`` for (N, 3+) clouds,
            a callable ``f(g, obs)``, or a mapping from dict keys to any of those.
        action: how the action transforms (a ``Representation`` or callable).
        exact: False when the task is only approximately symmetric.
        breaking: what breaks the symmetry when ``exact`` is False (e.g. ``{"wind": [0.3, 0.0]}``).
    """

    group: Group
    obs: ObsAction | Mapping[str, ObsAction]
    action: ObsAction
    exact: bool = True
    breaking: dict = field(default_factory=dict)

    def transform_obs(self, g, obs):
        if isinstance(self.obs, Mapping):
            if not isinstance(obs, Mapping):
                raise ValueError(f"this symmetry expects dict observations with keys {sorted(self.obs)}")
            return {k: _apply(self.obs[k], g, v) for k, v in obs.items()}
        return _apply(self.obs, g, obs)

    def transform_action(self, g, action):
        return _apply(self.action, g, action)

    def describe(self) -> str:
        kind = "exact" if self.exact else f"approximate (broken by {', '.join(self.breaking) or 'unspecified'})"
        return f"{self.group.name}, {kind}"
