"""DHN task: model shapes, masking, the Hamiltonian update, a short training run, bad input."""
import numpy as np
import pytest
import torch

from learn.tasks.dhn import DHNConfig, Normaliser, build_model, linear_probe, make_windows, new_codes, optimise, r2_score
from learn.tasks.dhn_models import (
    DHN,
    HNN,
    PlainMLP,
    anchored_cumsum,
    initial_guess,
    interpolate,
    n_parameters,
    random_masks,
    rollout,
    symplectic,
)
from physics.hamiltonian import make_dataset

torch.set_num_threads(1)


@pytest.fixture
def small_dhn():
    torch.manual_seed(0)
    return DHN(state_dim=2, latent_dim=4, block_size=9, width=16, depth=1, heads=2, ff=32)


def test_shapes_of_all_models(small_dhn):
    z3, z4 = torch.randn(3, 4), torch.randn(4, 4)
    known = torch.zeros(3, 9, dtype=torch.bool)
    known[:, 0] = True
    assert small_dhn.hamiltonian(torch.randn(3, 8, 2), known, z3).shape == (3,)
    assert small_dhn.denoise(torch.randn(3, 9, 2), known, z3).shape == (3, 9, 2)
    for model in (small_dhn, HNN(2, 4, hidden=16), PlainMLP(2, 4, hidden=16)):
        assert rollout(model, torch.randn(4, 2, 2), z4, horizon=13).shape == (4, 14, 2)
        assert interpolate(model, torch.randn(4, 5, 2), z4, stride=4).shape == (4, 17, 2)


def test_baselines_have_similar_size_to_dhn():
    cfg = DHNConfig()
    sizes = {name: n_parameters(build_model(name, 2, cfg)) for name in ("dhn", "hnn", "plain")}
    assert max(sizes.values()) / min(sizes.values()) < 1.3, sizes


def test_known_states_pass_through_and_interpolation_keeps_observations(small_dhn):
    states = torch.randn(5, 9, 2)
    known = random_masks(5, 9, torch.Generator().manual_seed(1))
    out = small_dhn.denoise(states, known, torch.randn(5, 4))
    torch.testing.assert_close(out[known], states[known])
    sparse = torch.randn(2, 3, 2)
    for model in (small_dhn, HNN(2, 4, hidden=16), PlainMLP(2, 4, hidden=16)):
        filled = interpolate(model, sparse, torch.randn(2, 4), stride=4)
        torch.testing.assert_close(filled[:, ::4], sparse)


def test_unknown_states_follow_the_hamiltonian_increments():
    """With x_0 known and the rest unknown, x_k = x_0 + sum_{j<k} J dH/dxbar_j exactly."""
    states, known = torch.randn(2, 5, 4), torch.zeros(2, 5, dtype=torch.bool)
    known[:, 0] = True
    increments = torch.randn(2, 4, 4)
    out = anchored_cumsum(states, increments, known)
    torch.testing.assert_close(out[:, 3], states[:, 0] + increments[:, :3].sum(1))
    # a gap closed on both sides blends the forward and the backward sums by distance
    known[:, 4] = True
    out = anchored_cumsum(states, increments, known)
    forward = states[:, 0] + increments[:, :1].sum(1)
    backward = states[:, 4] - increments[:, 1:].sum(1)
    torch.testing.assert_close(out[:, 1], 0.75 * forward + 0.25 * backward)


def test_dhn_update_is_the_symplectic_gradient_of_its_block_hamiltonian(small_dhn):
    # the block-wide head starts at zero (training begins local); give it weights as training would
    torch.nn.init.normal_(small_dhn.head.weight, std=0.5)
    states, z = torch.randn(3, 9, 2), torch.randn(3, 4)
    known = torch.zeros(3, 9, dtype=torch.bool)
    known[:, 0] = True
    out = small_dhn.denoise(states, known, z)
    midpoints = (0.5 * (states[:, 1:] + states[:, :-1])).requires_grad_(True)
    (grad,) = torch.autograd.grad(small_dhn.hamiltonian(midpoints, known, z).sum(), midpoints)
    torch.testing.assert_close(out[:, 1:] - out[:, :-1], symplectic(grad))
    # the update depends on states elsewhere in the block (non-local in time)
    moved = states.clone()
    moved[:, 6] += 1.0
    assert not torch.allclose(small_dhn.denoise(moved, known, z)[:, 2], out[:, 2])


def test_masks_always_anchor_the_block_and_cover_all_kinds():
    known = random_masks(600, 9, torch.Generator().manual_seed(0))
    assert known[:, 0].all()
    assert (~known).any(1).float().mean() > 0.9  # nearly every block has something to predict
    prefix_like = (known.int().diff(dim=1) <= 0).all(1)  # ones then zeros
    strided = known[:, ::4].all(1) & ~known[:, 1::4].any(1) & ~known[:, 2::4].any(1)
    assert prefix_like.float().mean() > 0.25 and strided.float().mean() > 0.05


def test_initial_guess_interpolates_linearly_and_holds_the_last_state():
    states = torch.arange(9.0).reshape(1, 9, 1).repeat(1, 1, 2)
    known = torch.tensor([[True, False, False, False, True, False, False, False, False]])
    guess = initial_guess(states * (known[..., None]), known)
    torch.testing.assert_close(guess[0, :5, 0], torch.arange(5.0))
    torch.testing.assert_close(guess[0, 5:, 0], torch.full((4,), 4.0))


def test_hnn_conserves_its_own_energy_and_is_time_reversible():
    torch.manual_seed(0)
    hnn, z = HNN(2, 3, hidden=32), torch.randn(8, 3)
    x0 = torch.randn(8, 2)
    x = x0
    for _ in range(20):
        x = hnn.step(x, z, h=0.05)
    energy = lambda s: hnn.net(torch.cat([s, z], -1))  # noqa: E731
    torch.testing.assert_close(energy(x), energy(x0), atol=1e-4, rtol=1e-4)
    for _ in range(20):
        x = hnn.step(x, z, h=-0.05)
    torch.testing.assert_close(x, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["dhn", "hnn", "plain"])
def test_short_training_run_lowers_the_loss_and_code_fitting_works(name):
    cfg = DHNConfig(latent_dim=4, batch=32, lr=3e-3, hidden=32)
    data = make_dataset("mass_spring", 8, 20, seed=0)
    norm = Normaliser.fit(data.observations, 1)
    windows, index = make_windows(norm.encode(data.observations), cfg.block_size)
    torch.manual_seed(0)
    model = DHN(2, 4, 9, width=16, depth=1, heads=2, ff=32) if name == "dhn" else build_model(name, 2, cfg)
    codes, generator = new_codes(8, 4), torch.Generator().manual_seed(0)
    history = optimise(model, codes, windows, index, 60, cfg, generator)
    assert np.mean(history[-10:]) < 0.6 * np.mean(history[:10]), (history[:10], history[-10:])
    # test-time fitting moves only the codes
    before = [p.detach().clone() for p in model.parameters()]
    fitted = new_codes(8, 4)
    start = fitted.weight.detach().clone()
    optimise(model, fitted, windows, index, 5, cfg, generator, train_network=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not torch.equal(start, fitted.weight)


def test_windows_and_normaliser():
    traj = torch.arange(2 * 12 * 2, dtype=torch.float32).reshape(2, 12, 2)
    windows, index = make_windows(traj, 9)
    assert windows.shape == (2 * 4, 9, 2) and index.tolist() == [0] * 4 + [1] * 4
    torch.testing.assert_close(windows[5], traj[1, 1:10])
    assert make_windows(traj, 9, last=10)[0].shape == (4, 9, 2)
    x = np.random.default_rng(0).normal(size=(3, 5, 4)) * [1.0, 2.0, 3.0, 4.0]
    norm = Normaliser.fit(x, 2)
    np.testing.assert_allclose(norm.decode(norm.encode(x)), x, rtol=1e-5, atol=1e-5)


def test_probe_recovers_a_linear_target_and_fails_on_noise():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(200, 6))
    target = codes @ rng.normal(size=(6, 2)) + 0.3
    pred = linear_probe(codes[:150], target[:150], codes[150:])
    assert r2_score(pred, target[150:]).min() > 0.99
    noise = rng.normal(size=(200, 6))
    assert r2_score(linear_probe(noise[:150], target[:150], noise[150:]), target[150:]).max() < 0.2


def test_bad_input_is_rejected_with_clear_messages(small_dhn):
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        build_model("transformer", 2, DHNConfig())
    with pytest.raises(ValueError, match="interp_stride 3"):
        DHNConfig(interp_stride=3).validate()
    with pytest.raises(ValueError, match=r"block has shape \(5, 2\)"):
        small_dhn.denoise(torch.randn(1, 5, 2), torch.ones(1, 5, dtype=torch.bool), torch.randn(1, 4))
    with pytest.raises(ValueError, match="first state of every block must be known"):
        anchored_cumsum(torch.randn(1, 3, 2), torch.randn(1, 2, 2), torch.tensor([[False, True, True]]))
    with pytest.raises(ValueError, match="h=-1.0"):
        PlainMLP(2, 4).step(torch.randn(1, 2), torch.randn(1, 4), h=-1.0)


def test_dhn_fits_one_pendulum_step_map_and_rolls_it_out():
    """Capacity check: one pendulum, one code; the fixed point of the block update is the true step."""
    torch.manual_seed(0)
    data = make_dataset("pendulum", 4, 40, seed=3, param_ranges={"m": (1.0, 1.0), "l": (1.0, 1.0)})
    norm = Normaliser.fit(data.observations, 1)
    windows, index = make_windows(norm.encode(data.observations), 9)
    model = DHN(2, 2, 9, width=16, depth=1, heads=2, ff=32, local_hidden=48)
    cfg = DHNConfig(latent_dim=2, batch=32, lr=5e-3, code_lr=0.0)
    codes = new_codes(4, 2)
    optimise(model, codes, windows, index, 250, cfg, torch.Generator().manual_seed(0))
    known = torch.zeros(len(windows), 9, dtype=torch.bool)
    known[:, :4] = True
    z = codes(index).detach()
    target = windows[:, 1:] - windows[:, :-1]
    relative = ((model.increments(windows, known, z) - target) ** 2).mean() / (target**2).mean()
    assert relative < 0.02, float(relative)
    # solving a block forward from 4 known states reproduces the next 5 far better than holding the state
    solved = model.solve(initial_guess(windows, known), known, z)
    error = ((solved[:, 4:] - windows[:, 4:]) ** 2).mean()
    hold = ((windows[:, 3:4] - windows[:, 4:]) ** 2).mean()
    assert error < 0.02 * hold, (float(error), float(hold))
