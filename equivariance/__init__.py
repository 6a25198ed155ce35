"""Groups, representations, declared symmetries and equivariance checks.

Wraps escnn (planar steerable layers) and e3nn (O(3) irreps) behind symgym's own
``Group`` / ``Representation`` / ``Symmetry`` names, so agents never depend on which
library a layer came from.
"""
from symgym.equivariance.checks import equivariance_error, invariance_error, relative_error
from symgym.equivariance.groups import (MIRROR_X, O2, SO2, CyclicGroup, DihedralGroup, Group, O2Element, PlanarGroup,
                                        ReflectionGroup, SE2Element, SE2Group, as_se2, group_from_name,
                                        sample_elements)
from symgym.equivariance.representations import (Representation, direct_sum, irrep, regular, sign, standard, trivial)
from symgym.equivariance.symmetry import Symmetry
from symgym.equivariance.transforms import transform_image, transform_points

__all__ = [
    "Group", "PlanarGroup", "SE2Group", "O2Element", "SE2Element", "CyclicGroup", "DihedralGroup", "SO2", "O2",
    "ReflectionGroup", "MIRROR_X", "as_se2",
    "group_from_name", "sample_elements", "Representation", "trivial", "sign", "standard", "irrep", "regular",
    "direct_sum", "Symmetry", "equivariance_error", "invariance_error", "relative_error", "transform_image",
    "transform_points",
]
