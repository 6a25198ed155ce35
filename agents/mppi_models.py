"""Learned models inside the MPPI planner, TD-MPC style: dynamics, stage cost and terminal value over observations.

A :class:`WorldModel` holds three nets over the env's flat observation ``o`` and action ``a``:

* dynamics ``o' = o + D(o, a)`` (a residual, in per-part normalised units),
* stage cost ``c(o, a)`` (the env's reward with the sign flipped, as ``step`` reports it for ``a`` taken in ``o``),
* terminal value ``V(o)``, the discounted cost-to-go of the data-collecting planner, fit by fitted value
  iteration on the collected transitions.

``kind="equivariant"`` builds every net as an :class:`~symgym.equivariance.layers.EquivariantMLP` over a finite
planar group ``D_n`` from the env's *declared* representations (``symmetry.obs`` and ``symmetry.action``
restricted to ``D_n``): the dynamics map ``obs_rep + act_rep -> obs_rep``, cost and value are invariant
(``trivial`` outputs). Then ``plan(g.o) == g.plan(o)`` holds exactly for the symmetric sampler (orbit noise) with
the same noise seed. ``kind="plain"`` builds ordinary MLPs whose widths are chosen so that each net's parameter
count matches the equivariant one's (recorded in :meth:`WorldModel.parameter_counts`).

Normalisation must not break the symmetry: inputs and targets are scaled by one scalar per representation part
(the RMS over that part's coordinates), never centred (a mean of a rotating vector is not invariant). The plain
model gets the same scaling, so the two differ only in their layers.

:class:`ModelRolloutBackend` rolls the nets out for ``K`` candidate sequences at once and returns trajectory
costs ``sum_t gamma^t c(o_t, a_t) + gamma^H V(o_H)``, which :class:`symgym.agents.mppi.MPPIPlanner` uses in place of
simulator rollouts and the analytic cost.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from symgym.equivariance import DihedralGroup, Symmetry, trivial
from symgym.equivariance.layers import EquivariantMLP, count_parameters, restrict_rep

NETS = ("dynamics", "cost", "value")
KINDS = ("plain", "equivariant")


def _mlp(n_in: int, n_out: int, width: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


def matched_width(n_in: int, n_out: int, target: int, depth: int = 2) -> int:
    """The MLP width whose parameter count is closest to ``target`` (the equivariant net's count)."""
    def count(w: int) -> int:
        return (n_in + 1) * w + (depth - 1) * (w + 1) * w + (w + 1) * n_out

    return min(range(1, 2048), key=lambda w: abs(count(w) - target))


def part_scales(x: np.ndarray, parts: Sequence[slice]) -> np.ndarray:
    """One scale per representation part (RMS over the part's coordinates and the data), broadcast per coordinate.

    A scalar per part commutes with the part's (orthogonal) representation, so scaled inputs transform like
    the raw ones.
    """
    out = np.ones(x.shape[-1])
    for p in parts:
        out[p] = np.sqrt(np.mean(x[:, p] ** 2)) + 1e-6
    return out


def rep_slices(rep) -> list[slice]:
    out, start = [], 0
    for p in rep.parts:
        out.append(slice(start, start + p.size))
        start += p.size
    return out


class WorldModel(nn.Module):
    """Dynamics, stage cost and value nets, plain or equivariant, with fixed per-part scales."""

    def __init__(self, symmetry: Symmetry, kind: str = "equivariant", group_order: int = 4, hidden: int = 8,
                 gamma: float = 0.9):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
        if group_order < 1:
            raise ValueError(f"group_order must be >= 1, got {group_order}")
        self.kind, self.gamma = kind, float(gamma)
        self.group = DihedralGroup(int(group_order))
        self.obs_rep = restrict_rep(symmetry.obs, self.group)
        self.act_rep = restrict_rep(symmetry.action, self.group)
        self.nx, self.na = self.obs_rep.size, self.act_rep.size
        equi = {
            "dynamics": EquivariantMLP(self.obs_rep + self.act_rep, self.obs_rep, (hidden, hidden)),
            "cost": EquivariantMLP(self.obs_rep + self.act_rep, trivial(self.group), (hidden, hidden)),
            "value": EquivariantMLP(self.obs_rep, trivial(self.group), (hidden, hidden)),
        }
        self.equivariant_counts = {k: count_parameters(v) for k, v in equi.items()}
        if kind == "equivariant":
            self.nets = nn.ModuleDict(equi)
        else:
            shapes = {"dynamics": (self.nx + self.na, self.nx), "cost": (self.nx + self.na, 1), "value": (self.nx, 1)}
            self.nets = nn.ModuleDict({k: _mlp(i, o, matched_width(i, o, self.equivariant_counts[k]))
                                       for k, (i, o) in shapes.items()})
        self.obs_parts, self.act_parts = rep_slices(self.obs_rep), rep_slices(self.act_rep)
        for name, size in (("x_scale", self.nx), ("u_scale", self.na), ("d_scale", self.nx)):
            self.register_buffer(name, torch.ones(size))
        self.register_buffer("c_scale", torch.ones(1))
        self._fast: dict[str, nn.Module] | None = None
        self._fused: dict[str, torch.Tensor] | None = None

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """Per net: this model's parameters and the equivariant model's (the plain widths are matched to it)."""
        return {k: {"params": count_parameters(self.nets[k]), "equivariant_params": self.equivariant_counts[k]}
                for k in NETS}

    def set_scales(self, obs: np.ndarray, act: np.ndarray, nxt: np.ndarray, cost: np.ndarray) -> None:
        self.x_scale.copy_(torch.as_tensor(part_scales(obs, self.obs_parts), dtype=torch.float32))
        self.u_scale.copy_(torch.as_tensor(part_scales(act, self.act_parts), dtype=torch.float32))
        self.d_scale.copy_(torch.as_tensor(part_scales(nxt - obs, self.obs_parts), dtype=torch.float32))
        self.c_scale.fill_(float(np.sqrt(np.mean(cost**2))) + 1e-6)

    # -- the three heads (plain tensors, batched over leading axes) --------------------------------
    def _net(self, name: str) -> nn.Module:
        # planning uses dense copies of the escnn nets (no GeometricTensor wrapping per call); rebuilt by fit()
        if self._fast is not None and not torch.is_grad_enabled():
            return self._fast[name]
        return self.nets[name]

    def step(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x / self.x_scale, u / self.u_scale], dim=-1)
        return x + self._net("dynamics")(z) * self.d_scale

    def cost(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x / self.x_scale, u / self.u_scale], dim=-1)
        return self._net("cost")(z)[..., 0] * self.c_scale

    def value(self, x: torch.Tensor) -> torch.Tensor:
        # the cost-to-go is ~1 / (1 - gamma) stage costs: scale it like that so the net outputs O(1) numbers
        return self._net("value")(x / self.x_scale)[..., 0] * self.c_scale / (1.0 - self.gamma)

    def freeze_for_planning(self) -> None:
        """Snapshot dense copies of the nets for fast no-grad rollouts (call after every fit), and the fused
        dynamics+cost weights :meth:`rollout_costs` uses."""
        self.eval()
        self._fast = {k: (v.export() if hasattr(v, "export") else v) for k, v in self.nets.items()}
        self._fused = self._fuse()

    def _fuse(self) -> dict[str, torch.Tensor]:
        """Dynamics and cost nets stacked as one batched MLP (``torch.baddbmm`` over a leading axis of 2) with the
        input/output scales folded in.

        Both read the same ``(o, a)``; per planning step that is 3 batched products instead of 6 plus the scaling
        and concatenation ops, which dominate at these sizes, and no extra flops (a block-diagonal fusion would
        double the hidden layer's). The cost head is zero-padded to the dynamics' output width. The same function
        up to float rounding, so equivariance carries over.
        """
        def linears(net: nn.Module) -> list[nn.Linear]:
            layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
            if len(layers) != 3:
                raise ValueError(f"expected a 3-layer MLP to fuse, got {len(layers)} linear layers")
            return layers

        def wb(layer: nn.Linear, rows: int | None = None, scale: torch.Tensor | None = None):
            w = layer.weight.detach()
            b = layer.bias.detach() if layer.bias is not None else torch.zeros(layer.out_features)
            if scale is not None:
                w, b = w * scale[:, None], b * scale
            if rows is not None and rows > w.shape[0]:  # pad the cost head (1 output) to the dynamics' width
                w = torch.cat([w, torch.zeros(rows - w.shape[0], w.shape[1])])
                b = torch.cat([b, torch.zeros(rows - b.shape[0])])
            return w, b

        with torch.no_grad():
            d, c = linears(self._fast["dynamics"]), linears(self._fast["cost"])
            if d[0].out_features != c[0].out_features or d[1].out_features != c[1].out_features:
                return {}  # different widths: no stacking, rollout_costs falls back to the nets
            in_scale = torch.cat([self.x_scale, self.u_scale])
            (w1d, b1d), (w1c, b1c) = wb(d[0]), wb(c[0])
            w1 = torch.stack([w1d, w1c]) / in_scale  # (2, hidden, nx + na)
            w2 = torch.stack([wb(d[1])[0], wb(c[1])[0]]).transpose(1, 2)
            b2 = torch.stack([wb(d[1])[1], wb(c[1])[1]])[:, None]
            (w3d, b3d), (w3c, b3c) = wb(d[2], scale=self.d_scale), wb(c[2], rows=self.nx, scale=self.c_scale)
            return {"w1x": w1[:, :, :self.nx].transpose(1, 2).contiguous(),
                    "w1u": w1[:, :, self.nx:].transpose(1, 2).contiguous(),
                    "b1": torch.stack([b1d, b1c])[:, None], "w2": w2.contiguous(), "b2": b2,
                    "w3": torch.stack([w3d, w3c]).transpose(1, 2).contiguous(), "b3": torch.stack([b3d, b3c])[:, None]}

    def rollout_costs(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``sum_t gamma^t c(o_t, a_t) + gamma^H V(o_H)`` for ``K`` sequences ``actions (K, H, na)`` from ``obs``."""
        f = self._fused
        k, h, _ = actions.shape
        if not f:
            x, total, w = obs.expand(k, -1), torch.zeros(k), 1.0
            for t in range(h):
                total += w * self.cost(x, actions[:, t])
                x = self.step(x, actions[:, t])
                w *= self.gamma
            return total + w * self.value(x)
        # the action half of layer 1 for all steps at once: (2, K, H, hidden)
        u_part = torch.matmul(actions[None], f["w1u"][:, None]) + f["b1"][:, None]
        x = obs.expand(k, -1)
        total = torch.zeros(k)
        w = 1.0
        for t in range(h):
            z = torch.relu(torch.baddbmm(u_part[:, :, t], x.expand(2, k, -1), f["w1x"]))
            z = torch.relu(torch.baddbmm(f["b2"], z, f["w2"]))
            out = torch.baddbmm(f["b3"], z, f["w3"])
            total += w * out[1, :, 0]
            x = x + out[0]
            w *= self.gamma
        return total + w * self.value(x)


    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, obs: np.ndarray, act: np.ndarray, cost: np.ndarray, nxt: np.ndarray, done: np.ndarray,
            epochs: int = 30, batch: int = 256, lr: float = 3e-3, seed: int = 0) -> dict[str, float]:
        """Regress dynamics and cost on the transitions, then the value by fitted value iteration.

        ``done`` marks transitions after which the episode was cut (no bootstrap from ``nxt`` there is wrong for
        a time limit, but the data here come from fixed-length episodes and the value is only used as a
        terminal guess, so a cut episode bootstraps like any other step; ``done`` is kept for other callers).
        """
        gen = torch.Generator().manual_seed(seed)
        self.train()
        self._fast = self._fused = None
        self.set_scales(obs, act, nxt, cost)
        x, u, c, y = (torch.as_tensor(v, dtype=torch.float32) for v in (obs, act, cost, nxt))
        notdone = torch.as_tensor(1.0 - np.asarray(done, dtype=np.float64), dtype=torch.float32)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        n = len(x)
        losses = {}
        for epoch in range(epochs):
            with torch.no_grad():  # fitted value iteration: targets from the previous epoch's value
                target_v = c + self.gamma * notdone * self.value(y)
            tot = {k: 0.0 for k in NETS}
            for idx in torch.randperm(n, generator=gen).split(batch):
                ld = (((self.step(x[idx], u[idx]) - y[idx]) / self.d_scale) ** 2).mean()
                lc = (((self.cost(x[idx], u[idx]) - c[idx]) / self.c_scale) ** 2).mean()
                lv = (((self.value(x[idx]) - target_v[idx]) * (1.0 - self.gamma) / self.c_scale) ** 2).mean()
                opt.zero_grad()
                (ld + lc + lv).backward()
                opt.step()
                for k, v in zip(NETS, (ld, lc, lv)):
                    tot[k] += float(v.detach()) * len(idx) / n
            losses = tot
        self.freeze_for_planning()
        return {f"loss_{k}": v for k, v in losses.items()}


class ModelRolloutBackend:
    """Roll a :class:`WorldModel` out for ``K`` action sequences from one observation; trajectory costs ``(K,)``.

    The planner calls :meth:`trajectory_costs` with the projected candidate actions (env action units).
    """

    plans_from = "obs"

    def __init__(self, model: WorldModel, horizon_discount: bool = True):
        self.model = model
        self.discount = horizon_discount

    def trajectory_costs(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        m = self.model
        k, h, _ = actions.shape
        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
            u = torch.as_tensor(actions, dtype=torch.float32)
            if self.discount and m._fused is not None:
                return m.rollout_costs(x, u).double().numpy()
            x = x.expand(k, -1)
            total = torch.zeros(k)
            w = 1.0
            for t in range(h):
                total += w * m.cost(x, u[:, t])
                x = m.step(x, u[:, t])
                w *= m.gamma if self.discount else 1.0
            total += w * m.value(x)
        return total.double().numpy()

    def close(self) -> None:
        pass


def collect(env, n: int, policy, seed: int, episode_len: int, view=None) -> dict[str, np.ndarray]:
    """``n`` transitions ``(obs, act, cost, next_obs, done)`` from episodes of ``policy(obs)`` (cut at
    ``episode_len`` steps or when the env ends them); ``view`` supplies ``project_actions`` (default the env)."""
    u = view or env.unwrapped
    rows: dict[str, list] = {k: [] for k in ("obs", "act", "cost", "nxt", "done")}
    ep = 0
    while len(rows["obs"]) < n:
        obs, _ = env.reset(seed=seed + ep)
        if hasattr(policy, "reset"):
            policy.reset()
        ep += 1
        for t in range(episode_len):
            a = u.project_actions(np.asarray(policy(obs), dtype=np.float64))
            nxt, reward, terminated, truncated, _ = env.step(a)
            done = terminated or truncated or t == episode_len - 1
            for k, v in zip(rows, (obs, a, -reward, nxt, done)):
                rows[k].append(v)
            obs = nxt
            if len(rows["obs"]) >= n or terminated or truncated:
                break
    return {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}


def fit_world_model(env, kind: str, transitions: int, make_planner, seed: int = 0, rounds: int = 3,
                    episode_len: int = 50, epochs: int = 30, view=None, **model_kwargs):
    """TD-MPC-style loop: a fifth of the budget from random actions in the feasible set, the rest collected by
    the planner ``make_planner(model, round_seed)`` (anything with ``act(obs)``; ``symgym.agents.mppi
    .learn_world_model`` passes naive MPPI on the current model) in ``rounds`` batches, refitting after each batch
    (the model learns from the planner's own data). ``view`` is the env's planner side when it is not the env
    itself (``symgym.envs.panda_planner``). Returns ``(model, info)``."""
    torch.manual_seed(seed)
    u = view or env.unwrapped
    rng = np.random.default_rng(seed)
    model = WorldModel(u.symmetry, kind=kind, **model_kwargs)
    first = max(1, transitions // 5)
    data = collect(env, first, lambda _o: rng.uniform(-1, 1, u.action_space.shape), 10_000 * seed + 500_000,
                   episode_len, view=u)
    info = model.fit(**data, epochs=epochs, seed=seed)
    per_round = (transitions - first) // max(1, rounds)
    for r in range(rounds):
        n = per_round if r < rounds - 1 else transitions - len(data["obs"])
        if n <= 0:
            break
        planner = make_planner(model, 7919 * seed + r)
        more = collect(env, n, lambda o: planner.act(o), 10_000 * seed + 600_000 + 1000 * r, episode_len, view=u)
        data = {k: np.concatenate([data[k], more[k]]) for k in data}
        info = model.fit(**data, epochs=epochs, seed=seed + r + 1)
    info.update(transitions=int(len(data["obs"])), parameters=model.parameter_counts())
    return model, info


# -- the residual dynamics MLP of MPPIConfig(dynamics="torch") (predicts MuJoCo states from ctrl) -------------------------------------------------------------------------------
def make_dynamics_model(nx: int, nu: int, hidden: int = 128):
    """A residual MLP ``x' = x + f(x, u)`` with fixed input/output scales set by :func:`fit_dynamics`."""
    import torch
    from torch import nn

    class ResidualDynamics(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(nx + nu, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                     nn.Linear(hidden, nx))
            for name, size in (("x_mean", nx), ("x_std", nx), ("u_std", nu), ("d_std", nx)):
                self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

        def forward(self, x, u):
            z = torch.cat([(x - self.x_mean) / self.x_std, u / self.u_std], dim=-1)
            return x + self.net(z) * self.d_std

    return ResidualDynamics()


def fit_dynamics(env: gym.Env, transitions: int = 5000, epochs: int = 30, seed: int = 0, episode_len: int = 50):
    """Collect random-action transitions from ``env`` and fit :func:`make_dynamics_model` to them."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    u_env, rng = env.unwrapped, np.random.default_rng(seed)
    layout = u_env.state_layout
    xs, us, ys = [], [], []
    ep = 0
    while len(xs) < transitions:
        env.reset(seed=seed + ep)
        ep += 1
        for _ in range(episode_len):
            s = u_env.get_state()
            a = u_env.project_actions(rng.uniform(-1, 1, u_env.action_space.shape))
            env.step(a)
            s2 = u_env.get_state()
            xs.append(np.concatenate([s[layout["QPOS"]], s[layout["QVEL"]]]))
            us.append(u_env.actions_to_ctrl(a))
            ys.append(np.concatenate([s2[layout["QPOS"]], s2[layout["QVEL"]]]))
    x, u, y = (torch.as_tensor(np.array(v), dtype=torch.float32) for v in (xs, us, ys))
    model = make_dynamics_model(x.shape[1], u.shape[1])
    model.x_mean.copy_(x.mean(0))
    model.x_std.copy_(x.std(0) + 1e-6)
    model.u_std.copy_(u.std(0) + 1e-6)
    model.d_std.copy_((y - x).std(0) + 1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(256):
            loss = (((model(x[idx], u[idx]) - y[idx]) / model.d_std) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def load_dynamics(path):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    nx, nu = state["x_mean"].shape[0], state["u_std"].shape[0]
    model = make_dynamics_model(nx, nu, hidden=state["net.0.weight"].shape[0])
    model.load_state_dict(state)
    return model


__all__ = ["WorldModel", "fit_world_model", "make_dynamics_model", "fit_dynamics", "load_dynamics", "collect", "ModelRolloutBackend", "matched_width", "part_scales", "KINDS"]
