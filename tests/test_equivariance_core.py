"""Group axioms, representation homomorphisms and the escnn bridge, checked as properties."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symgym.equivariance import (MIRROR_X, O2, SO2, CyclicGroup, DihedralGroup, O2Element, ReflectionGroup,
                                 SE2Element, SE2Group, Symmetry, as_se2, equivariance_error, group_from_name,
                                 invariance_error, irrep, regular, sign, standard, transform_image, trivial)
from symgym.equivariance.checks import check_homomorphism

PLANAR = [CyclicGroup(1), CyclicGroup(4), CyclicGroup(5), DihedralGroup(1), DihedralGroup(4), DihedralGroup(6),
          SO2(), O2(), ReflectionGroup()]


def elements_of(group):
    """Hypothesis strategy for elements of a planar group."""
    if group.finite:
        return st.sampled_from(group.elements())
    angle = st.floats(0, 2 * math.pi, allow_nan=False)
    flips = st.booleans() if group.reflections else st.just(False)
    return st.builds(O2Element, angle, flips)


def close(group, a, b):
    return np.allclose(a.matrix(), b.matrix(), atol=1e-9)


@pytest.mark.parametrize("group", PLANAR, ids=str)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_group_axioms(group, data):
    a, b, c = (data.draw(elements_of(group)) for _ in range(3))
    assert group.contains(group.compose(a, b))
    assert close(group, group.compose(group.compose(a, b), c), group.compose(a, group.compose(b, c)))
    assert close(group, group.compose(group.identity, a), a)
    assert close(group, group.compose(a, group.inverse(a)), group.identity)
    # compose matches matrix multiplication of the defining action
    assert np.allclose(group.compose(a, b).matrix(), a.matrix() @ b.matrix(), atol=1e-9)


@pytest.mark.parametrize("group", PLANAR, ids=str)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_representations_are_homomorphisms(group, data):
    reps = [trivial(group), standard(group), standard(group) + trivial(group), 3 * standard(group)]
    if group.reflections:
        reps.append(sign(group))
    if group.finite:
        reps.append(regular(group))
    if group.n is None or group.n > 4:
        reps.append(irrep(group, 2))
    g, h = data.draw(elements_of(group)), data.draw(elements_of(group))
    for rep in reps:
        assert check_homomorphism(rep, g, h) < 1e-9, rep


def test_finite_groups_enumerate_and_continuous_sample():
    assert len(DihedralGroup(4).elements()) == 8 == DihedralGroup(4).order
    assert len(CyclicGroup(6).elements()) == 6
    for i, g in enumerate(DihedralGroup(3).elements()):
        assert DihedralGroup(3).index(g) == i
    with pytest.raises(TypeError):
        SO2().elements()
    rng = np.random.default_rng(0)
    assert len({round(SO2().sample(rng).angle, 6) for _ in range(20)}) == 20
    assert not CyclicGroup(4).contains(O2Element(0.3))
    assert not CyclicGroup(4).contains(O2Element(0.0, True))


def test_group_names_and_bad_input():
    assert group_from_name("D8") == DihedralGroup(8)
    assert group_from_name("SO(2)") == SO2()
    with pytest.raises(ValueError, match="Q7"):
        group_from_name("Q7")
    with pytest.raises(ValueError, match="-2"):
        CyclicGroup(-2)
    with pytest.raises(ValueError, match="not an element"):
        standard(CyclicGroup(4))(O2Element(0.1))
    with pytest.raises(ValueError, match="size 4"):
        (2 * standard(O2())).act(O2Element(0.1), np.zeros(3))


@settings(max_examples=40, deadline=None)
@given(a=st.floats(0, 6.28), b=st.floats(0, 6.28), tx=st.floats(-1, 1), ty=st.floats(-1, 1))
def test_se2_is_a_group_of_rigid_motions(a, b, tx, ty):
    G = SE2Group()
    g, h = SE2Element(a, tx, ty), SE2Element(b, ty, tx)
    assert np.allclose(G.compose(g, h).matrix(), g.matrix() @ h.matrix())
    assert G.compose(g, G.inverse(g)).isclose(G.identity)
    pts = np.random.default_rng(0).normal(size=(5, 2))
    assert np.allclose(G.compose(g, h).apply(pts), g.apply(h.apply(pts)))


def test_as_se2_accepts_rigid_motions_and_rotations_only():
    g = SE2Element(0.7, 0.1, -0.2)
    assert as_se2(g) is g
    r = as_se2(O2Element(1.2))
    assert isinstance(r, SE2Element) and r.isclose(SE2Element(1.2, 0.0, 0.0))
    pts = np.random.default_rng(0).normal(size=(4, 2))
    np.testing.assert_allclose(r.apply(pts), pts @ O2Element(1.2).matrix().T)
    for bad in (O2Element(0.3, True), MIRROR_X, "g", 0.5):
        with pytest.raises(ValueError, match="SE\\(2\\)"):
            as_se2(bad)


def test_reflection_group_mirrors_x_and_indexes_its_elements():
    G = ReflectionGroup()
    assert G.elements()[1] is MIRROR_X and np.allclose(MIRROR_X.matrix(), np.diag([-1.0, 1.0]))
    assert [G.index(g) for g in G.elements()] == [0, 1]
    assert not G.contains(DihedralGroup(1).elements()[1])  # D1's reflection is y -> -y, not this mirror
    assert G.sample(0) in G.elements()


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4), DihedralGroup(8), SO2(), O2()], ids=str)
def test_escnn_bridge_matches_our_matrices(group):
    from symgym.equivariance.escnn_bridge import escnn_element, field_type, vector_gspace

    gs = vector_gspace(group)
    rep = standard(group) + trivial(group) + (regular(group) if group.finite else irrep(group, 3))
    ft = field_type(gs, rep)
    rng = np.random.default_rng(1)
    for _ in range(8):
        g = group.sample(rng)
        assert np.allclose(ft.representation(escnn_element(gs, g)), rep(g), atol=1e-9)


def test_image_transform_is_a_group_action_for_d4():
    G = DihedralGroup(4)
    img = np.random.default_rng(0).random((16, 16, 3))
    for g in G.elements():
        for h in G.elements():
            assert np.allclose(transform_image(G.compose(g, h), img), transform_image(g, transform_image(h, img)))


def test_equivariance_error_detects_equivariant_and_non_equivariant_maps():
    G = O2()
    sym = Symmetry(G, obs=3 * standard(G), action=standard(G))
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=6) for _ in range(5)]
    gs = [G.sample(rng) for _ in range(10)]
    equivariant = lambda x: x[:2] - 2.0 * x[4:6]
    broken = lambda x: x[:2] + np.array([0.5, 0.0])
    assert equivariance_error(equivariant, sym, xs, gs) < 1e-12
    assert equivariance_error(broken, sym, xs, gs) > 0.1
    assert invariance_error(lambda x: np.linalg.norm(x[:2]), sym, xs, gs) < 1e-12
    assert invariance_error(lambda x: x[0], sym, xs, gs) > 0.1


def test_one_definition_of_each_shared_helper_and_escnn_layers_only_in_equivariance():
    """as_se2 and ReflectionGroup live once, in equivariance.groups; agents and envs build no escnn layers
    themselves (they use equivariance.escnn_nets, which holds the one weight-cache policy)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    defined: dict[str, list[str]] = {}
    escnn_users = []
    for folder in ("equivariance", "envs", "agents", "physics", "learn"):
        for path in (root / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.lstrip("_") in (
                        "as_se2", "ReflectionGroup"):
                    defined.setdefault(node.name.lstrip("_"), []).append(str(path.relative_to(root)))
                if folder in ("envs", "agents") and isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                    if any(n == "escnn" or n.startswith("escnn.") for n in names):
                        escnn_users.append(str(path.relative_to(root)))
    assert defined == {"as_se2": ["equivariance/groups.py"], "ReflectionGroup": ["equivariance/groups.py"]}
    assert escnn_users == []
