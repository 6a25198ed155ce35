"""Equivariant SAC (``equi-sac``) and approximately equivariant SAC (``approx-sac``) on Stable-Baselines3.

The networks are built from the env's declared :class:`~equivariance.Symmetry`:

* actor: ``obs_rep -> action_rep + trivial``; the first part is the Gaussian mean (equivariant), the
  trivial scalar is one log-std shared by both action axes (invariant). An isotropic Gaussian keeps the
  *policy distribution* equivariant, not just its mean.
* critics: ``obs_rep + action_rep -> trivial`` (invariant Q-values).

SB3 squashes sampled actions with ``tanh`` per axis, which commutes with a linear action transform only
when that transform is a signed permutation of the axes. So the agents use a finite subgroup of the env's
O(2) whose standard representation is a signed permutation: **D4 by default** (C4, D2, C2, D1, C1 also
work). ``equi-sac`` uses exactly equivariant escnn layers (:mod:`equivariance.layers`); ``approx-sac``
uses relaxed layers (:mod:`equivariance.relaxed`) that start equivariant and may learn a symmetry break,
with a penalty pulling them back towards equivariance; ``approx-sac-frozen`` is the same parametrisation with the
relaxation coefficients frozen at their equivariant initialisation (exactly equivariant: the mechanism control), and
approx-sac's ``extra_metrics()`` report how far the learned weights drifted from equivariance.

Cost: both layer kinds expand their weights (escnn filters, relaxed mixtures) at most once per parameter update
(:class:`equivariance.escnn_nets.ExpansionCache`), so acting between updates runs the current dense weights.

Image observations (``obs="image"``) go through a steerable CNN (``equi-sac`` only) whose pooled regular
fields feed the same heads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor, SACPolicy
from torch import nn

from symgym.agents.base import EnvInfo
from symgym.agents.sac import SACAgent, SACConfig
from symgym.equivariance import (PlanarGroup, Representation, Symmetry, equivariance_error, group_from_name,
                                 invariance_error, regular, trivial)
from symgym.equivariance.escnn_nets import IdentityModules
from symgym.equivariance.layers import EquivariantMLP, SteerableImageEncoder, rep_from_names
from symgym.equivariance.relaxed import RelaxedMLP, relaxation_drift, relaxed_modules

#: groups whose standard representation is a signed permutation, so tanh squashing stays equivariant
TANH_COMPATIBLE = ("C1", "C2", "C4", "D1", "D2", "D4")


def agent_group(name: str) -> PlanarGroup:
    """The finite group an equivariant SAC agent uses; rejects groups that do not commute with tanh."""
    if name not in TANH_COMPATIBLE:
        raise ValueError(f"group {name!r} does not commute with SAC's per-axis tanh squashing; "
                         f"use one of {', '.join(TANH_COMPATIBLE)}")
    return group_from_name(name)


class EquivariantImageExtractor(BaseFeaturesExtractor):
    """SB3 features extractor: steerable CNN over a channels-first image -> pooled regular fields."""

    def __init__(self, observation_space: spaces.Box, group: str = "D4", channels: Sequence[int] = (8, 16, 16)):
        encoder = SteerableImageEncoder(agent_group(group), observation_space.shape[0], channels)
        super().__init__(observation_space, encoder.out_dim)
        self.encoder = encoder

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations)


def _body(in_rep: Representation, out_rep: Representation, hidden: Sequence[int], relaxed: bool, penalty: float,
          num_kernels: int) -> nn.Module:
    if relaxed:
        return RelaxedMLP(in_rep, out_rep, hidden, num_kernels=num_kernels, penalty=penalty)
    return EquivariantMLP(in_rep, out_rep, hidden)


class EquivariantActor(IdentityModules, Actor):
    """SAC actor with an equivariant mean and an invariant, isotropic log-std."""

    def __init__(self, *args, feature_rep: Representation, action_rep: Representation, hidden: Sequence[int],
                 relaxed: bool, penalty: float, num_kernels: int, **kwargs):
        kwargs["net_arch"] = []
        super().__init__(*args, **kwargs)
        if self.use_sde:
            raise ValueError("equivariant SAC does not support gSDE (use_sde=True)")
        # SB3 built an unused linear head; the equivariant body replaces it.
        del self.mu, self.log_std
        self.latent_pi = nn.Identity()
        self.action_rep = action_rep
        self.body = _body(feature_rep, action_rep + trivial(action_rep.group), hidden, relaxed, penalty, num_kernels)

    def get_action_dist_params(self, obs):
        features = self.extract_features(obs, self.features_extractor)
        out = self.body(features)
        d = self.action_rep.size
        log_std = torch.clamp(out[:, d:d + 1], LOG_STD_MIN, LOG_STD_MAX).expand(-1, d)
        return out[:, :d], log_std, {}


class InvariantCritic(IdentityModules, ContinuousCritic):
    """SAC twin critics ``Q(s, a)`` invariant under the group acting on observations and actions together."""

    def __init__(self, *args, feature_rep: Representation, action_rep: Representation, hidden: Sequence[int],
                 relaxed: bool, penalty: float, num_kernels: int, **kwargs):
        kwargs["net_arch"] = []
        super().__init__(*args, **kwargs)
        in_rep = feature_rep + action_rep
        self.q_networks = []
        for idx in range(self.n_critics):
            q_net = _body(in_rep, trivial(in_rep.group), hidden, relaxed, penalty, num_kernels)
            self.add_module(f"qf{idx}", q_net)  # replaces SB3's plain head of the same name
            self.q_networks.append(q_net)


class EquiSACPolicy(SACPolicy):
    """SAC policy whose actor and critics are built from the env's declared representations.

    Extra args (all plain data so SB3 can save and reload them):
        group: finite subgroup used by the networks (see ``TANH_COMPATIBLE``).
        obs_parts / action_parts: the declared representation's building blocks by name, e.g.
            ``["standard"] * 7``; ``obs_parts=None`` means image observations.
        hidden: regular-representation fields per hidden layer.
        relaxed, penalty, num_kernels: use relaxed layers (approx-sac) and their regulariser.
    """

    def __init__(self, observation_space, action_space, lr_schedule, group: str = "D4",
                 obs_parts: Sequence[str] | None = None, action_parts: Sequence[str] = ("standard",),
                 hidden: Sequence[int] = (16, 16), relaxed: bool = False, penalty: float = 0.0, num_kernels: int = 2,
                 image_channels: Sequence[int] = (8, 16, 16), frozen: bool = False, **kwargs):
        if frozen and not relaxed:
            raise ValueError("frozen=True freezes relaxed layers' coefficients: it needs relaxed=True")
        self.sym_kwargs = dict(group=group, obs_parts=None if obs_parts is None else list(obs_parts),
                               action_parts=list(action_parts), hidden=list(hidden), relaxed=bool(relaxed),
                               penalty=float(penalty), num_kernels=int(num_kernels),
                               image_channels=list(image_channels), frozen=bool(frozen))
        g = agent_group(group)
        self.action_rep = rep_from_names(action_parts, g)
        if self.action_rep.size != int(np.prod(action_space.shape)):
            raise ValueError(f"action_parts {list(action_parts)} have size {self.action_rep.size} but the action "
                             f"space has shape {action_space.shape}")
        if obs_parts is None:
            if relaxed:
                raise ValueError("approx-sac supports vector observations only (no relaxed image encoder in the "
                                 "SAC policy yet)")
            kwargs["features_extractor_class"] = EquivariantImageExtractor
            kwargs["features_extractor_kwargs"] = {"group": group, "channels": list(image_channels)}
            self.feature_rep = int(image_channels[-1]) * regular(g)
        else:
            self.feature_rep = rep_from_names(obs_parts, g)
            if self.feature_rep.size != int(np.prod(observation_space.shape)):
                raise ValueError(f"obs_parts have size {self.feature_rep.size} but observations have shape "
                                 f"{observation_space.shape}")
            kwargs.setdefault("features_extractor_class", FlattenExtractor)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _net_kwargs(self) -> dict[str, Any]:
        s = self.sym_kwargs
        return dict(feature_rep=self.feature_rep, action_rep=self.action_rep, hidden=s["hidden"],
                    relaxed=s["relaxed"], penalty=s["penalty"], num_kernels=s["num_kernels"])

    def make_actor(self, features_extractor=None) -> EquivariantActor:
        kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return self._maybe_frozen(EquivariantActor(**kwargs, **self._net_kwargs()).to(self.device))

    def make_critic(self, features_extractor=None) -> InvariantCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return self._maybe_frozen(InvariantCritic(**kwargs, **self._net_kwargs()).to(self.device))

    def _maybe_frozen(self, net: nn.Module) -> nn.Module:
        # SB3 builds the optimisers after make_actor/make_critic: frozen coefficients get no gradient, no update
        if self.sym_kwargs["frozen"]:
            for layer in relaxed_modules(net):
                layer.freeze_relaxation()
        return net

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.sym_kwargs)
        return data


@dataclass
class EquiSACConfig(SACConfig):
    """SAC hyper-parameters plus the equivariant networks': ``group`` (see ``TANH_COMPATIBLE``), ``hidden``
    (regular fields per layer) and ``image_channels`` for image observations (``None``: the default)."""

    group: str = "D4"
    hidden: list[int] = field(default_factory=lambda: [16, 16])
    image_channels: list[int] | None = None

    @classmethod
    def policy_keys(cls) -> tuple[str, ...]:
        return SACConfig.policy_keys() + ("group", "hidden", "image_channels")


@dataclass
class ApproxSACConfig(EquiSACConfig):
    """As ``EquiSACConfig`` plus the relaxed layers' regulariser strength and number of kernels."""

    penalty: float = 1e-2
    num_kernels: int = 2

    @classmethod
    def policy_keys(cls) -> tuple[str, ...]:
        return EquiSACConfig.policy_keys() + ("penalty", "num_kernels")


class EquiSACAgent(SACAgent):
    """``equi-sac``: exactly D4-equivariant actor and invariant critics (escnn layers)."""

    name = "equi-sac"
    relaxed = False
    frozen = False
    config_class = EquiSACConfig

    def policy_spec(self, info: EnvInfo) -> tuple[Any, dict[str, Any]]:
        sym, cfg = info.symmetry, self.config
        if sym is None:
            raise ValueError(f"{self.name} needs an env that declares its symmetry")
        if isinstance(sym.obs, Representation):
            obs_parts = [p.name for p in sym.obs.parts]
        elif sym.obs == "image":
            obs_parts = None
        else:
            raise ValueError(f"{self.name} needs vector (Representation) or 'image' observations, got {sym.obs!r}")
        if not isinstance(sym.action, Representation):
            raise ValueError(f"{self.name} needs actions declared as a Representation, got {sym.action!r}")
        agent_group(cfg.group)
        policy_kwargs = dict(group=cfg.group, obs_parts=obs_parts, action_parts=[p.name for p in sym.action.parts],
                             hidden=list(cfg.hidden), relaxed=self.relaxed)
        if cfg.image_channels is not None:
            policy_kwargs["image_channels"] = list(cfg.image_channels)
        if self.relaxed:
            policy_kwargs["penalty"] = float(cfg.penalty)
            policy_kwargs["num_kernels"] = int(cfg.num_kernels)
            policy_kwargs["frozen"] = self.frozen
        return EquiSACPolicy, policy_kwargs


class ApproxSACAgent(EquiSACAgent):
    """``approx-sac``: relaxed group layers, equivariant at initialisation, free to learn a symmetry break."""

    name = "approx-sac"
    relaxed = True
    config_class = ApproxSACConfig

    def relaxed_weight_error(self) -> dict[str, float]:
        """Largest relative weight equivariance error of the actor's and critic's relaxed layers."""
        return relaxed_weight_errors(self.model.policy)

    def extra_metrics(self) -> dict[str, float]:
        """As SAC's, plus how far the learned relaxation drifted from equivariance (see :func:`relaxation_drift`):
        ``actor_drift`` / ``critic_drift``, the non-equivariant part's share of the weights' norm."""
        out = super().extra_metrics()
        if self.model is not None:
            out["actor_drift"] = relaxation_drift(self.model.policy.actor)
            out["critic_drift"] = relaxation_drift(self.model.policy.critic)
        return out


class ApproxSACFrozenAgent(ApproxSACAgent):
    """``approx-sac-frozen``: approx-sac's parametrisation with the relaxation coefficients frozen at their
    equivariant initialisation: exactly equivariant, the control that isolates what relaxation adds."""

    name = "approx-sac-frozen"
    frozen = True


def relaxed_weight_errors(policy: EquiSACPolicy) -> dict[str, float]:
    out = {}
    for name, module in (("actor", policy.actor), ("critic", policy.critic)):
        layers = relaxed_modules(module)
        out[name] = max((layer.weight_equivariance_error() for layer in layers), default=0.0)
    return out


def policy_symmetry_errors(model, symmetry, observations: Sequence[np.ndarray], elements: Sequence,
                           rng: np.random.Generator | int = 0) -> dict[str, float]:
    """Actor equivariance error (deterministic action) and critic invariance error of an SB3 SAC model.

    Uses :func:`equivariance.equivariance_error` / :func:`equivariance.invariance_error` on the given
    observations and group elements; the critic is probed at random actions transformed with the observation.
    """
    rng = np.random.default_rng(rng)
    policy = model.policy

    def act(obs):
        return model.predict(np.asarray(obs, dtype=np.float32), deterministic=True)[0]

    actor_err = equivariance_error(act, symmetry, observations, elements)
    pairs = [{"obs": np.asarray(o, dtype=np.float32), "action": rng.uniform(-1, 1, 2).astype(np.float32)}
             for o in observations]
    joint = Symmetry(symmetry.group, {"obs": symmetry.obs, "action": symmetry.action}, symmetry.action)

    def q_values(pair):
        obs_t, _ = policy.obs_to_tensor(pair["obs"])
        act_t = torch.as_tensor(pair["action"])[None]
        with torch.no_grad():
            return torch.cat(policy.critic(obs_t, act_t), dim=1)[0].numpy()

    critic_err = invariance_error(q_values, joint, pairs, elements)
    return {"actor_equivariance_error": float(actor_err), "critic_invariance_error": float(critic_err)}
