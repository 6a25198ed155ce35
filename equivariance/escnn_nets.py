"""The one place symgym builds escnn networks, and its one weight-cache policy.

Every escnn network in symgym (``layers.EquivariantMLP``, ``layers.SteerableImageEncoder``, the steerable
FCNs of the Transporter agents and of HEP's keypose heatmap) is an :class:`EscnnNetwork`: a plain
``torch.nn.Module`` that takes and returns plain tensors and keeps an escnn ``SequentialModule`` inside.

Weight-cache policy
-------------------
escnn's own behaviour is to expand the dense filters (``R2Conv.filter``, ``Linear.matrix`` and the expanded
biases) from the learnable basis weights when a layer enters eval mode, and to keep them as *buffers*. That
cache goes stale whenever the weights change while the layer stays in eval mode (SB3 Polyak-averages its
eval-mode target critic; ``load_state_dict`` into an eval-mode net), and it makes ``state_dict`` keys depend
on the mode the net was in when saved. symgym therefore never uses it:

1. **escnn submodules always stay in training mode.** :meth:`EscnnNetwork.train` / ``eval()`` set the
   wrapper's own flag only. ``state_dict()`` holds the learnable weights (and escnn's fixed basis buffers)
   and nothing else, with the same keys in train and eval mode; a checkpoint saved in either mode loads into
   a net in either mode. Legacy keys of escnn's cache found in a loaded state dict are dropped.
2. **The dense filters are derived, never stored.** They are expanded from the weights (escnn's
   ``expand_parameters``, differentiable) at most once per parameter update and kept in an
   :class:`ExpansionCache` (a plain Python attribute: never a buffer, never pickled). With gradients on, the
   expansion keeps its graph, so the forwards of one gradient step share it; a backward through it or any
   parameter change makes the next forward re-expand. A change is detected by comparing the parameters with a
   snapshot taken at the last expansion (exact, ``torch.equal``), not by torch's version counters alone: SB3's
   ``polyak_update`` writes the target critic through ``param.data``, which leaves the version counter
   untouched, and a cache trusting it kept the target critic at its initial weights for a whole run. Without
   gradients (acting, SB3's target critic) the forward is the dense net of the current weights.
3. **Export is a fresh copy.** :meth:`EscnnNetwork.export` builds a plain torch module (``nn.Linear``,
   ``nn.Conv2d`` with the layer's padding mode, activations, pooling) with the current dense filters copied
   in; it is a snapshot for deployment, not kept or saved by the wrapper.

Only escnn layers whose behaviour does not depend on the train/eval flag are accepted (convolutions, linear
maps, pointwise non-linearities, pooling); batch norm and dropout are rejected at construction.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from escnn import nn as enn
from torch import nn

from symgym.equivariance.escnn_bridge import gspace_for
from symgym.equivariance.groups import PlanarGroup

#: escnn layers whose behaviour differs between train and eval mode: incompatible with the policy above
_MODE_DEPENDENT = ("BatchNorm", "Dropout")
#: state-dict keys of escnn's eval-mode cache (dropped when loading legacy checkpoints)
_CACHE_KEYS = ("filter", "matrix", "expanded_bias")


def _weighted(module: enn.EquivariantModule) -> bool:
    return isinstance(module, (enn.R2Conv, enn.Linear))


class _IdentityMemo(set):
    """A ``named_modules`` memo keyed by identity: escnn modules define ``__hash__``/``__eq__`` by value (equal
    bases compare with ``torch.allclose``), so torch's default memo set spent ~12% of an equi-sac gradient step
    comparing them whenever SB3 called ``critic.parameters()`` (Polyak updates)."""

    def __contains__(self, module) -> bool:
        return super().__contains__(id(module))

    def add(self, module) -> None:
        super().add(id(module))


class IdentityModules:
    """Mixin for ``nn.Module`` s that contain escnn layers: module traversal dedups by identity (see above)."""

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        return super().named_modules(_IdentityMemo() if memo is None else memo, prefix, remove_duplicate)


class ExpansionCache:
    """Derived weights (dense filters expanded from a basis, relaxed weights mixed from coefficients),
    computed once and reused until the parameters they come from change.

    * Valid while every source parameter keeps its storage, its version counter *and its values* (compared
      with a snapshot: writes through ``.data``, as SB3's Polyak update makes, do not bump the version counter).
      The comparison costs one ``torch.equal`` per parameter tensor, far below an expansion.
    * With gradients on, the expansion keeps its autograd graph so that several forwards of one gradient step
      share one expansion; a backward pass through it also invalidates it (its graph is freed then), so a
      forward after a backward without a parameter change re-expands instead of failing.
    * Without gradients (acting, SB3's target critic) a graph-less expansion is made, or the current graph's
      values are reused detached: one expansion per update, like an exported dense net refreshed after each.
    * Never pickled or deep-copied (derived data; non-leaf tensors cannot be deep-copied).
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self._key, self._value, self._graph, self._consumed, self._snapshot = None, None, False, False, ()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.clear()

    def _on_backward(self, grad):
        self._consumed = True

    def get(self, params, compute):
        """``compute()`` (a list of tensors or None), or its cached value for these ``params``."""
        params = [p for p in params if p is not None]
        key = tuple((p.data_ptr(), p._version) for p in params)
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        if (self._value is None or key != self._key or self._consumed or (grad and not self._graph)
                or not all(torch.equal(p, s) for p, s in zip(params, self._snapshot))):
            if grad:
                value = compute()
                for t in value:
                    if t is not None and t.requires_grad:
                        t.register_hook(self._on_backward)
            else:
                with torch.no_grad():
                    value = compute()
            self._key, self._value, self._graph, self._consumed = key, value, grad, False
            self._snapshot = tuple(p.detach().clone() for p in params)
        if grad:
            return self._value
        return [None if t is None else t.detach() for t in self._value]


class EscnnNetwork(IdentityModules, nn.Module):
    """Base class: wraps ``escnn_net`` (an escnn ``SequentialModule`` over ``in_type``) under the policy above.

    Subclasses build the escnn layers, call ``super().__init__(escnn_net, in_type)`` and implement ``forward``
    with :meth:`body` (plain tensor in, plain tensor out) plus whatever re-indexing or pooling they need.
    """

    def __init__(self, escnn_net: enn.SequentialModule, in_type: enn.FieldType):
        super().__init__()
        for name, m in escnn_net.named_modules():
            if any(tag in type(m).__name__ for tag in _MODE_DEPENDENT):
                raise ValueError(f"escnn layer {name} ({type(m).__name__}) behaves differently in eval mode; "
                                 f"symgym's escnn networks keep escnn layers in training mode (see escnn_nets)")
        weighted = {id(p) for m in escnn_net.children() if _weighted(m) for p in (m.weights, m.bias) if p is not None}
        stray = [name for name, p in escnn_net.named_parameters() if id(p) not in weighted]
        if stray:
            raise ValueError(f"escnn parameters outside R2Conv/Linear layers are not supported here: {stray[:3]}")
        self.escnn_net = escnn_net
        self.in_type = in_type
        self.out_type = escnn_net.out_type or in_type  # an empty net is the identity
        self.escnn_net.train(True)  # drops the zero-filled cache buffers escnn registers at construction
        # plain lists: Module.children() dedups through a set, and escnn layers hash and compare (__eq__ runs
        # torch.allclose on their bases) so slowly that walking them cost ~12% of an equi-sac gradient step
        self._layers = list(escnn_net.children())
        self._weighted_layers = [m for m in self._layers if _weighted(m)]
        self._expansions = ExpansionCache()
        self.register_load_state_dict_pre_hook(_drop_cache_keys)

    # -- policy -------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "EscnnNetwork":
        # Do not recurse into escnn_net: it stays in training mode anyway, and walking escnn's module tree
        # hashes its basis objects (measured: ~40% of an equi-sac gradient step, since SB3 toggles the
        # training mode on every rollout and every train() call).
        self.training = bool(mode)
        for child in self.children():
            if child is not self.escnn_net:
                child.train(mode)
        return self

    def forget_dense_filters(self) -> None:
        """Drop the memoised dense filters (never needed for correctness: every forward checks the parameters)."""
        self._expansions.clear()

    # -- forward ------------------------------------------------------------------------------------
    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The escnn layers on a plain tensor whose channels are laid out as ``in_type``: what escnn's
        training-mode forward computes, with the dense filters expanded once per parameter update."""
        return self._dense_forward(x)

    def _dense_filters(self) -> list:
        # the weighted layers' own parameters (escnn_net.parameters() walks escnn's deep module tree: slow)
        params = [p for m in self._weighted_layers for p in (m.weights, m.bias)]
        flat = self._expansions.get(params, lambda: [t for m in self._weighted_layers for t in m.expand_parameters()])
        return [flat[2 * i:2 * i + 2] for i in range(len(self._weighted_layers))]

    def _dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        filters = iter(self._dense_filters())
        for module in self._layers:
            if isinstance(module, enn.R2Conv):
                x = _conv2d(module, x, *next(filters))
            elif isinstance(module, enn.Linear):
                x = F.linear(x, *next(filters))
            elif type(module) is enn.ReLU:  # point-wise on every channel: plain relu, no GeometricTensor
                x = F.relu(x)
            else:  # other parameter-free layers (non-linearities, pooling): escnn's own forward
                x = module(enn.GeometricTensor(x, module.in_type)).tensor
        return x

    # -- export -------------------------------------------------------------------------------------
    def export(self) -> nn.Module:
        """A plain ``nn.Sequential`` computing :meth:`body` with the current weights (a fresh snapshot)."""
        return export_dense(self.escnn_net)


def _drop_cache_keys(module: EscnnNetwork, state_dict: dict, prefix: str, *args) -> None:
    """Load-time hook: escnn's eval-mode cache in a (legacy) state dict is derived data; ignore it."""
    own = prefix + "escnn_net."
    for key in [k for k in state_dict if k.startswith(own) and k.rsplit(".", 1)[-1] in _CACHE_KEYS]:
        del state_dict[key]


def _conv2d(module: enn.R2Conv, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """What ``R2Conv.forward`` computes in training mode, with given dense filters."""
    if module.padding_mode == "zeros":
        return F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
    x = F.pad(x, module._reversed_padding_repeated_twice, module.padding_mode)
    return F.conv2d(x, weight, bias, module.stride, 0, module.dilation, module.groups)


def export_dense(seq: enn.SequentialModule) -> nn.Sequential:
    """Plain torch layers for an escnn ``SequentialModule``, dense filters copied in (escnn's modes untouched).

    Unlike escnn's ``R2Conv.export`` this keeps the convolution's padding mode (circular padding included).
    """
    out: list[nn.Module] = []
    with torch.no_grad():
        for module in seq.children():
            if isinstance(module, enn.R2Conv):
                weight, bias = module.expand_parameters()
                conv = nn.Conv2d(module.in_type.size, module.out_type.size, module.kernel_size, stride=module.stride,
                                 padding=module.padding, dilation=module.dilation, groups=module.groups,
                                 bias=bias is not None, padding_mode=module.padding_mode)
                conv.weight.copy_(weight)
                if bias is not None:
                    conv.bias.copy_(bias)
                out.append(conv)
            elif isinstance(module, enn.Linear):
                weight, bias = module.expand_parameters()
                lin = nn.Linear(module.in_type.size, module.out_type.size, bias=bias is not None)
                lin.weight.copy_(weight)
                if bias is not None:
                    lin.bias.copy_(bias)
                out.append(lin)
            elif isinstance(module, enn.PointwiseAvgPool2D):
                out.append(nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode))
            elif hasattr(module, "export"):
                out.append(module.export())
                module.train(True)  # escnn's export() switches the module to eval mode
            else:
                raise ValueError(f"no plain-torch export for escnn layer {type(module).__name__}")
    return nn.Sequential(*out).eval()


# -- builders ---------------------------------------------------------------------------------------------
def scalar_fields(gspace, n: int) -> enn.FieldType:
    """``n`` invariant (trivial) fields: image channels, heatmaps, invariant values."""
    return enn.FieldType(gspace, int(n) * [gspace.trivial_repr])


def regular_fields(gspace, n: int) -> enn.FieldType:
    """``n`` regular-representation fields (``|G|`` channels each): hidden features of finite groups."""
    return enn.FieldType(gspace, int(n) * [gspace.regular_repr])


_NONLINEARITIES = {"relu": lambda t: enn.ReLU(t, inplace=True), "elu": lambda t: enn.ELU(t)}


class SteerableFCN(EscnnNetwork):
    """Dilated fully-convolutional steerable net: scalar channels in, scalar channels out, same spatial size.

    Each hidden layer is a 3x3 ``R2Conv`` with dilation ``d`` (padding ``d``) into ``fields`` regular fields,
    then the point-wise non-linearity; a final 1x1 ``R2Conv`` maps to ``out_channels`` scalars. Equivariant to
    the group's rotations of the pixel grid that map it to itself (multiples of 90 degrees; other C_n angles
    hold approximately). ``padding_mode="circular"`` makes the net translation-equivariant on a torus.
    """

    def __init__(self, group: PlanarGroup, in_channels: int, out_channels: int, fields: int = 3,
                 dilations: Sequence[int] = (1, 2, 4, 8, 8), nonlinearity: str = "relu", padding_mode: str = "zeros"):
        if not isinstance(group, PlanarGroup) or not group.finite:
            raise ValueError(f"a steerable FCN needs a finite planar group (Cn or Dn), got {group!r}")
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {sorted(_NONLINEARITIES)}, got {nonlinearity!r}")
        if int(fields) < 1 or any(int(d) < 1 for d in dilations):
            raise ValueError(f"need fields >= 1 and dilations >= 1, got fields={fields}, dilations={list(dilations)}")
        gs = gspace_for(group)
        in_type = scalar_fields(gs, in_channels)
        hidden = regular_fields(gs, fields)
        layers: list[enn.EquivariantModule] = []
        current = in_type
        for d in dilations:
            layers += [enn.R2Conv(current, hidden, 3, padding=int(d), dilation=int(d), padding_mode=padding_mode),
                       _NONLINEARITIES[nonlinearity](hidden)]
            current = hidden
        layers.append(enn.R2Conv(current, scalar_fields(gs, out_channels), 1))
        super().__init__(enn.SequentialModule(*layers), in_type)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_type.size:
            raise ValueError(f"expected (B, {self.in_type.size}, H, W) images, got {tuple(x.shape)}")
        return self.body(x)


__all__ = ["EscnnNetwork", "ExpansionCache", "IdentityModules", "SteerableFCN", "export_dense", "scalar_fields", "regular_fields"]
