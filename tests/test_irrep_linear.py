"""IrrepLinear: escnn's equivariant linear map applied in the irrep basis (equivariance, parameters, escnn parity)."""
import numpy as np
import pytest
import torch
from escnn import gspaces, nn as enn

from symgym.equivariance import (O2, CyclicGroup, DihedralGroup, Symmetry, equivariance_error, irrep, regular, sign,
                                 standard, trivial)
from symgym.equivariance.escnn_bridge import field_type, vector_gspace
from symgym.equivariance.irrep_linear import IrrepLinear

torch.set_num_threads(1)
D4, D8, C2 = DihedralGroup(4), DihedralGroup(8), CyclicGroup(2)
TOL = 1e-5  # float32


def _planar_obs(g):
    """A planar observation's layout, fields interleaved: position, speed, heading, velocity, mass, goal."""
    s, t = standard(g), trivial(g)
    return s + t + s + s + t + s


CASES = {
    "D4 regular->regular": (D4, 5 * regular(D4), 7 * regular(D4)),
    "D4 planar obs->regular": (D4, _planar_obs(D4), 3 * regular(D4)),
    "D4 regular->trivial": (D4, 4 * regular(D4), trivial(D4)),
    # irreps spread over several representations on both sides (the gather/concatenate paths)
    "D4 mixed->mixed": (D4, regular(D4) + trivial(D4) + standard(D4) + regular(D4) + trivial(D4),
                        standard(D4) + regular(D4) + trivial(D4) + regular(D4) + sign(D4)),
    "D8 regular->regular": (D8, 3 * regular(D8), 2 * regular(D8)),  # three 2-dim irreps share one weight tensor
    "D4 vectors->bias+vector": (D4, 2 * standard(D4), trivial(D4) + standard(D4)),  # an output irrep fed by bias only
    "C2 regular->regular": (C2, 3 * regular(C2), 2 * regular(C2)),  # C_n whose irreps are all real-type
    "O2 vectors->irreps": (O2(), 2 * standard(O2()) + trivial(O2()), irrep(O2(), 2) + standard(O2()) + trivial(O2())),
}


def _types(group, in_rep, out_rep):
    gs = vector_gspace(group)
    return field_type(gs, in_rep), field_type(gs, out_rep)


def _randomised(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


def _np_fn(module):
    def f(x):
        with torch.no_grad():
            return module(torch.as_tensor(np.asarray(x), dtype=torch.float32)[None])[0].numpy()
    return f


@pytest.mark.parametrize("case", list(CASES))
def test_irrep_linear_is_equivariant_on_random_elements(case):
    group, in_rep, out_rep = CASES[case]
    layer = _randomised(IrrepLinear(*_types(group, in_rep, out_rep)))
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=in_rep.size) for _ in range(3)]
    elements = [group.sample(rng) for _ in range(6)] + (list(group.elements()) if group.finite else [])
    assert equivariance_error(_np_fn(layer), Symmetry(group, in_rep, out_rep), xs, elements) < TOL
    # the check can fail: a generic linear map of the same shape is not equivariant
    broken = torch.nn.Linear(in_rep.size, out_rep.size)
    assert equivariance_error(_np_fn(broken), Symmetry(group, in_rep, out_rep), xs, elements) > 1e-2


@pytest.mark.parametrize("case", list(CASES))
def test_matches_escnn_linear_parameters_outputs_and_dense_export(case):
    group, in_rep, out_rep = CASES[case]
    in_type, out_type = _types(group, in_rep, out_rep)
    ref = _randomised(enn.Linear(in_type, out_type, bias=True))
    layer = IrrepLinear(in_type, out_type, bias=True)
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    assert (layer.bias is None) == (ref.bias is None)
    assert set(layer.state_dict()) == {n for n, _ in layer.named_parameters()}  # derived buffers are not saved

    copied = IrrepLinear.from_escnn(ref)
    x = torch.randn(16, in_type.size)
    with torch.no_grad():
        expected = ref(enn.GeometricTensor(x, in_type)).tensor
        got = copied(x)
        assert torch.allclose(got, expected, atol=TOL, rtol=TOL)
        matrix, bias = copied.to_dense()
        export = torch.nn.Linear(in_type.size, out_type.size, bias=bias is not None)
        export.weight.copy_(matrix)
        if bias is not None:
            export.bias.copy_(bias)
        assert torch.allclose(export(x), got, atol=TOL, rtol=TOL)
        assert torch.allclose(copied.double()(x.double()), expected.double(), atol=TOL, rtol=TOL)


def test_gradients_reach_every_weight():
    in_type, out_type = _types(*CASES["D4 planar obs->regular"])
    hidden = field_type(vector_gspace(D4), 2 * regular(D4))
    net = torch.nn.Sequential(IrrepLinear(in_type, out_type), torch.nn.ReLU(), IrrepLinear(out_type, hidden),
                              torch.nn.ReLU(), IrrepLinear(hidden, field_type(vector_gspace(D4), trivial(D4))))
    net(torch.randn(32, in_type.size)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_initialisation_keeps_he_variance_on_regular_fields():
    in_type, out_type = _types(D4, 24 * regular(D4), 24 * regular(D4))
    torch.manual_seed(0)
    x = torch.randn(4096, in_type.size)
    with torch.no_grad():
        ratios = [float(IrrepLinear(in_type, out_type)(x).square().mean()) for _ in range(4)]
    assert 1.7 < np.mean(ratios) < 2.3, ratios  # nn.Linear with Kaiming-normal weights gives 2 E[x^2]


def test_from_escnn_rejects_a_matrix_that_is_not_block_structured():
    in_type, out_type = _types(D4, 2 * regular(D4), 2 * regular(D4))
    ref = enn.Linear(in_type, out_type)
    ref.expand_parameters = lambda: (torch.randn(out_type.size, in_type.size), torch.zeros(out_type.size))
    with pytest.raises(ValueError, match="not block-structured"):
        IrrepLinear.from_escnn(ref)


@pytest.mark.parametrize("n", [4, 8])
def test_complex_type_irreps_and_mismatched_groups_raise_one_line_errors(n):
    cn = CyclicGroup(n)  # the 2-dim irreps of C_n (n >= 3) commute with rotations: a 2-dim endomorphism space
    with pytest.raises(ValueError) as err:
        IrrepLinear(*_types(cn, 2 * regular(cn), regular(cn)))
    assert "\n" not in str(err.value) and "irrep_1" in str(err.value) and "C-type" in str(err.value)
    with pytest.raises(ValueError) as err:
        IrrepLinear(field_type(vector_gspace(D4), regular(D4)), field_type(vector_gspace(cn), trivial(cn)))
    assert "\n" not in str(err.value) and "D4" in str(err.value)
    so2 = gspaces.no_base_space(gspaces.rot2dOnR2(N=-1).fibergroup)
    with pytest.raises(ValueError, match="SO\\(2\\) irrep irrep_1 is C-type"):
        IrrepLinear(enn.FieldType(so2, [so2.fibergroup.irrep(1)]), enn.FieldType(so2, [so2.fibergroup.irrep(1)]))


def test_batch_dimensions_and_bad_widths():
    in_type, out_type = _types(D4, 2 * regular(D4), standard(D4))
    layer = IrrepLinear(in_type, out_type)
    x = torch.randn(3, 5, in_type.size)
    assert torch.allclose(layer(x), layer(x.reshape(15, -1)).reshape(3, 5, -1))
    with pytest.raises(ValueError, match="expected inputs with 16 features"):
        layer(torch.randn(4, 15))


def test_sac_layers_bench_compares_nets_of_matched_parameter_counts(tmp_path):
    """``symgym bench sac-layers`` times escnn, the irrep-basis layers and an MLP at one parameter count (within 1%),
    and the dense floor at escnn's expanded shapes; quick settings write its JSON fields and figure."""
    from symgym.learn.bench import sac_layers

    _, params, _ = sac_layers.networks()
    for name in ("escnn", "irrep"):
        assert abs(params[name] / params["mlp"] - 1) < 0.01, params
    assert params["escnn"] == params["irrep"] and params["dense-192"] > 5 * params["mlp"]
    result = sac_layers.run(tmp_path, quick=True)
    assert set(result["ratio_to_mlp"]) == {"escnn", "irrep", "dense-192"}
    assert all(r["cpu"] > 0 for r in result["ratio_to_mlp"].values())
    assert (tmp_path / "sac-layers.png").is_file()
