"""Equivariant (escnn) and relaxed layers: equivariance on random group elements, export, regulariser."""
import numpy as np
import pytest
import torch
from stable_baselines3.common.utils import polyak_update

from symgym.equivariance import (CyclicGroup, DihedralGroup, O2, Symmetry, equivariance_error, invariance_error, regular,
                                 relative_error, standard, transform_image, trivial)
from symgym.equivariance.layers import EquivariantMLP, SteerableImageEncoder, rep_from_names, restrict_rep
from symgym.equivariance.relaxed import RelaxedGroupConv2d, RelaxedLinear, RelaxedMLP

torch.set_num_threads(1)
D4 = DihedralGroup(4)
TOL = 1e-5  # float32 networks


def _random_elements(group, k=6, seed=0):
    rng = np.random.default_rng(seed)
    return [group.sample(rng) for _ in range(k)]


def _np_fn(module):
    def f(x):
        with torch.no_grad():
            return module(torch.as_tensor(np.asarray(x), dtype=torch.float32)[None])[0].numpy()
    return f


def _image_fn(module):
    def f(img):
        x = torch.as_tensor(np.ascontiguousarray(img), dtype=torch.float32).permute(2, 0, 1)[None]
        with torch.no_grad():
            return module(x)[0].numpy()
    return f


@pytest.mark.parametrize("group", [D4, CyclicGroup(4), DihedralGroup(8)])
def test_equivariant_mlp_is_equivariant_and_exports(group):
    torch.manual_seed(0)
    in_rep, out_rep = 7 * standard(group), standard(group) + trivial(group)
    net = EquivariantMLP(in_rep, out_rep, hidden=(4, 4))
    sym = Symmetry(group, in_rep, out_rep)
    xs = [np.random.default_rng(i).normal(size=14) for i in range(3)]
    assert equivariance_error(_np_fn(net), sym, xs, _random_elements(group)) < TOL
    # the invariant part alone is invariant; the standard part is not (the test can fail)
    scalar = Symmetry(group, in_rep, trivial(group))
    assert invariance_error(lambda x: _np_fn(net)(x)[2:], scalar, xs, _random_elements(group)) < TOL
    assert invariance_error(lambda x: _np_fn(net)(x)[:2], scalar, xs, [group.rotation(1)]) > 1e-2
    exported = net.export()
    assert isinstance(exported, torch.nn.Sequential)
    assert np.allclose(_np_fn(exported)(xs[0]), _np_fn(net)(xs[0]), atol=1e-6)


def test_equivariant_mlp_stays_correct_after_eval_switch_and_weight_update():
    """escnn caches weights in eval mode; our wrapper must not (SB3 Polyak-updates eval-mode targets)."""
    net = EquivariantMLP(2 * standard(D4), trivial(D4), hidden=(2,))
    x = torch.randn(3, 4)
    net.eval()
    before = net(x).clone()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5)
    assert not torch.allclose(net(x), before)
    assert "escnn_net.0.matrix" not in net.state_dict()


def test_steerable_image_encoder_matches_transform_image_convention():
    torch.manual_seed(0)
    enc = SteerableImageEncoder(D4, in_channels=3, channels=(3, 2))
    sym = Symmetry(D4, "image", enc.out_rep)
    imgs = [np.random.default_rng(i).uniform(size=(16, 16, 3)) for i in range(2)]
    assert equivariance_error(_image_fn(enc), sym, imgs, D4.elements()) < TOL
    assert np.allclose(_image_fn(enc.export())(imgs[0]), _image_fn(enc)(imgs[0]), atol=1e-5)


def test_bad_inputs_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="finite planar group"):
        EquivariantMLP(standard(O2()), trivial(O2()))
    with pytest.raises(ValueError, match="subgroup of D4"):
        SteerableImageEncoder(DihedralGroup(8))
    with pytest.raises(ValueError, match="expected inputs with 4 features"):
        EquivariantMLP(2 * standard(D4), trivial(D4), hidden=(2,))(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="unknown representation part 'spin'"):
        rep_from_names(["spin"], D4)
    assert restrict_rep(7 * standard(O2()), D4).size == 14


@pytest.mark.parametrize("group", [D4, CyclicGroup(3)])  # C3's standard rep is not a signed permutation
def test_relaxed_mlp_is_equivariant_at_init_and_breaks_when_coefficients_drift(group):
    torch.manual_seed(1)
    in_rep, out_rep = 3 * standard(group), standard(group) + trivial(group)
    net = RelaxedMLP(in_rep, out_rep, hidden=(3,), num_kernels=2)
    assert net.relaxed_layers()[0].fast == (group == D4)
    sym = Symmetry(group, in_rep, out_rep)
    xs = [np.random.default_rng(i).normal(size=6) for i in range(3)]
    elements = _random_elements(group) + [group.rotation(1)]
    assert equivariance_error(_np_fn(net), sym, xs, elements) < TOL
    assert net.weight_equivariance_error() < 1e-6 and float(net.equivariance_penalty()) == 0.0
    with torch.no_grad():
        for layer in net.relaxed_layers():
            layer.alpha.add_(0.5 * torch.randn_like(layer.alpha))
    assert equivariance_error(_np_fn(net), sym, xs, elements) > 1e-2
    assert net.weight_equivariance_error() > 1e-2 and float(net.equivariance_penalty()) > 0
    assert np.allclose(_np_fn(net.export())(xs[0]), _np_fn(net)(xs[0]), atol=1e-5)


def test_relaxed_linear_fast_path_matches_dense_reference():
    torch.manual_seed(2)
    layer = RelaxedLinear(2 * standard(D4) + regular(D4), regular(D4), num_kernels=3)
    with torch.no_grad():
        layer.alpha.normal_()
    g_mats_out = torch.tensor(np.stack([layer.out_rep(g) for g in D4.elements()]), dtype=torch.float32)
    g_mats_in = torch.tensor(np.stack([layer.in_rep(g) for g in D4.elements()]), dtype=torch.float32)
    dense = torch.einsum("lg,goa,lab,gib->oi", layer.alpha, g_mats_out, layer.kernels, g_mats_in) / 8
    assert torch.allclose(layer.weight(), dense, atol=1e-5)


def test_penalty_gradient_equals_gradient_of_half_penalty_in_the_loss():
    torch.manual_seed(3)
    layer = RelaxedLinear(standard(D4), regular(D4), num_kernels=2, penalty=0.7)
    with torch.no_grad():
        layer.alpha.normal_()
        layer.bias_kernel.normal_()
    x = torch.randn(5, 2)
    layer(x).sum().backward()
    with_hook = layer.alpha.grad.clone()
    layer.zero_grad()
    layer.penalty = 0.0
    (layer(x).sum() + 0.7 / 2 * layer.equivariance_penalty()).backward()
    assert torch.allclose(with_hook, layer.alpha.grad, atol=1e-5)
    assert not torch.allclose(with_hook, torch.zeros_like(with_hook))


def test_penalty_pulls_relaxed_weights_back_to_equivariance():
    torch.manual_seed(4)
    layer = RelaxedLinear(standard(D4), regular(D4), penalty=1.0)
    with torch.no_grad():
        layer.alpha.add_(torch.randn_like(layer.alpha))
    start = layer.weight_equivariance_error()
    opt = torch.optim.SGD([layer.alpha], lr=0.2)
    for _ in range(50):  # zero data loss: only the regulariser acts
        opt.zero_grad()
        (0.0 * layer(torch.randn(4, 2)).sum()).backward()
        opt.step()
    assert layer.weight_equivariance_error() < 0.05 * start


def test_relaxed_group_conv_is_equivariant_at_init_and_exports():
    torch.manual_seed(5)
    out_rep = 2 * regular(D4)
    conv = RelaxedGroupConv2d(3 * trivial(D4), out_rep, kernel_size=3)
    with torch.no_grad():
        conv.bias_kernel.normal_()
    sym = Symmetry(D4, "image", lambda g, y: transform_image(g, out_rep.act(g, y)))

    def f(img):
        return _image_fn(conv)(img).transpose(1, 2, 0)  # channels-last so transform_image applies

    imgs = [np.random.default_rng(i).uniform(size=(8, 8, 3)) for i in range(2)]
    assert equivariance_error(f, sym, imgs, D4.elements()) < TOL
    exported = conv.export()
    assert np.allclose(_image_fn(exported)(imgs[0]), _image_fn(conv)(imgs[0]), atol=1e-5)
    with torch.no_grad():
        conv.alpha.add_(0.5 * torch.randn_like(conv.alpha))
    assert equivariance_error(f, sym, imgs, D4.elements()) > 1e-2
    assert conv.weight_equivariance_error() > 1e-2
    with pytest.raises(ValueError, match="subgroups of D4"):
        RelaxedGroupConv2d(trivial(DihedralGroup(8)), regular(DihedralGroup(8)))


# -- the one escnn builder and its weight-cache policy (symgym.equivariance.escnn_nets) ------------------------
def _escnn_nets():
    from symgym.equivariance.escnn_nets import SteerableFCN

    torch.manual_seed(6)
    return {
        "mlp": (EquivariantMLP(2 * standard(D4), trivial(D4) + standard(D4), hidden=(3,)), torch.randn(4, 4)),
        "image": (SteerableImageEncoder(D4, in_channels=2, channels=(2, 2)), torch.randn(2, 2, 8, 8)),
        "fcn": (SteerableFCN(CyclicGroup(4), 3, 2, fields=2, dilations=(1, 2)), torch.randn(2, 3, 12, 12)),
        "fcn-circular": (SteerableFCN(CyclicGroup(4), 3, 1, fields=2, dilations=(1, 3), nonlinearity="elu",
                                      padding_mode="circular"), torch.randn(2, 3, 10, 10)),
    }


@pytest.mark.parametrize("name", ["mlp", "image", "fcn", "fcn-circular"])
def test_escnn_state_dict_holds_weights_only_in_every_mode(name):
    net, _ = _escnn_nets()[name]
    train_keys = list(net.state_dict())
    net.eval()
    with torch.no_grad():
        net(_escnn_nets()[name][1])  # an inference pass memoises the dense filters ...
    assert list(net.state_dict()) == train_keys  # ... but never as state
    assert not [k for k in train_keys if k.rsplit(".", 1)[-1] in ("filter", "matrix", "expanded_bias")]
    assert all(m.training for m in net.escnn_net.modules())  # escnn's own eval-mode cache is never built


@pytest.mark.parametrize("name", ["mlp", "image", "fcn", "fcn-circular"])
def test_escnn_inference_follows_every_weight_change(name):
    net, x = _escnn_nets()[name]
    reference = lambda: net.train()(x).detach()  # noqa: E731  (expands the filters from the weights)

    def inference():
        net.eval()
        with torch.no_grad():
            return net(x)

    before = inference()
    assert torch.equal(before, reference())
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    net(x).square().sum().backward()
    opt.step()                                         # an optimizer step ...
    after_step = inference()
    assert torch.equal(after_step, reference()) and not torch.allclose(after_step, before)
    target = _escnn_nets()[name][0].eval()
    with torch.no_grad():
        target(x)                                      # memoised before the Polyak update
        polyak_update(net.parameters(), target.parameters(), 1.0)  # ... SB3's own, which writes via .data
        assert torch.equal(target(x), after_step)
    fresh = _escnn_nets()[name][0].eval()
    with torch.no_grad():
        fresh(x)
    fresh.load_state_dict(net.state_dict())           # ... and load_state_dict into an eval-mode net
    with torch.no_grad():
        assert torch.equal(fresh(x), after_step)
    fresh.eval()
    out = fresh(x)                                     # eval mode with gradients on: still differentiable
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fresh.parameters())


@pytest.mark.parametrize("name", ["fcn", "fcn-circular"])
def test_steerable_fcn_is_c4_equivariant_and_exports_its_padding(name):
    net, x = _escnn_nets()[name]
    net.eval()
    exported = net.export()
    assert [type(m).__name__ for m in exported][:2] == ["Conv2d", "ReLU" if name == "fcn" else "ELU"]
    with torch.no_grad():
        y = net(x)
        for k in (1, 2, 3):
            assert relative_error(net(torch.rot90(x, k, (-2, -1))), torch.rot90(y, k, (-2, -1))) < TOL
        assert torch.allclose(exported(x), y, atol=1e-6)  # escnn's own R2Conv.export drops circular padding
        if name == "fcn-circular":  # translation-equivariant on the torus
            assert torch.allclose(net(torch.roll(x, (3, -2), (-2, -1))), torch.roll(y, (3, -2), (-2, -1)), atol=1e-5)


def test_escnn_checkpoints_with_escnn_eval_caches_still_load_and_bad_layers_are_refused():
    from escnn import nn as enn

    from symgym.equivariance.escnn_bridge import gspace_for
    from symgym.equivariance.escnn_nets import EscnnNetwork, SteerableFCN, regular_fields, scalar_fields

    net, x = _escnn_nets()["fcn"]
    net.escnn_net.eval()                               # what saving in escnn's eval mode used to write
    legacy = {k: v.clone() for k, v in net.state_dict().items()}
    assert any(k.endswith(".filter") for k in legacy)
    net.train()
    other = SteerableFCN(CyclicGroup(4), 3, 2, fields=2, dilations=(1, 2))
    other.load_state_dict(legacy)
    with torch.no_grad():
        assert torch.equal(other.eval()(x), net.eval()(x))
    gs = gspace_for(D4)
    hidden = regular_fields(gs, 2)
    with pytest.raises(ValueError, match="InnerBatchNorm"):
        EscnnNetwork(enn.SequentialModule(enn.R2Conv(scalar_fields(gs, 1), hidden, 3), enn.InnerBatchNorm(hidden)),
                     scalar_fields(gs, 1))
    with pytest.raises(ValueError, match="finite planar group"):
        SteerableFCN(O2(), 1, 1)
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        net(torch.zeros(3, 12, 12))
