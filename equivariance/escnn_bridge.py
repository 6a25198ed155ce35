"""Bridge from symgym's declared symmetry to escnn, so steerable layers are built from an env's ``Symmetry``.

escnn's planar groups use the same element convention as ``O2Element``: ``(flip, rotation)`` means
``R(rotation) @ diag(1, -1)**flip`` (checked by tests/test_equivariance_core.py).
"""
from __future__ import annotations

from escnn import gspaces, nn as enn

from symgym.equivariance.groups import O2Element, PlanarGroup
from symgym.equivariance.representations import Representation


def gspace_for(group: PlanarGroup):
    """The escnn gspace acting on the plane R^2 with ``group`` as fibre group."""
    if not isinstance(group, PlanarGroup):
        raise ValueError(f"escnn bridge supports planar groups (Cn, Dn, SO(2), O(2)), got {group!r}")
    n = -1 if group.n is None else group.n
    if group.reflections:
        return gspaces.flipRot2dOnR2(N=n)
    return gspaces.rot2dOnR2(N=n)


def escnn_element(gspace, g: O2Element):
    """The escnn group element matching ``g``."""
    G = gspace.fibergroup
    finite = G.order() > 0
    if finite:
        n = G.rotation_order if hasattr(G, "rotation_order") else G.order()
        k = int(round(g.angle * n / (2 * 3.141592653589793))) % n
        rot = k
    else:
        rot = g.angle
    if _has_reflections(G):
        return G.element((int(g.flip), rot))
    if g.flip:
        raise ValueError(f"{g} has a reflection but {G} has none")
    return G.element(rot)


def _has_reflections(G) -> bool:
    return "O(2)" in str(type(G)) or G.name.startswith("D") or G.name.startswith("O(2)")


def escnn_rep(gspace, rep: Representation):
    """The escnn representation list matching symgym representation ``rep`` (one entry per part)."""
    G = gspace.fibergroup
    refl = _has_reflections(G)
    out = []
    for part in rep.parts:
        if part.name == "trivial":
            out.append(G.trivial_representation)
        elif part.name == "sign":
            if not refl:
                raise ValueError(f"the sign representation needs reflections; {G} has none")
            out.append(G.irrep(1, 0))
        elif part.name == "standard":
            out.append(G.irrep(1, 1) if refl else G.irrep(1))
        elif part.name.startswith("irrep"):
            k = int(part.name[len("irrep"):])
            out.append(G.irrep(1, k) if refl else G.irrep(k))
        elif part.name == "regular":
            out.append(G.regular_representation)
        else:
            raise ValueError(f"no escnn counterpart for representation part {part.name!r}")
    return out


def field_type(gspace, rep: Representation) -> "enn.FieldType":
    """An escnn ``FieldType`` over ``gspace`` carrying ``rep`` (for vector features use a 0-D gspace via
    ``gspaces.no_base_space(G)``)."""
    return enn.FieldType(gspace, escnn_rep(gspace, rep))


def vector_gspace(group: PlanarGroup):
    """A gspace with no base space: escnn's equivariant MLPs over vector features."""
    return gspaces.no_base_space(gspace_for(group).fibergroup)
