"""DHN task: model shapes, masking, the Hamiltonian update, a short training run, bad input (the reference-budget
study, ``full.py``, is tested in ``test_dhn_full.py``)."""
import numpy as np
import pytest
import torch

from symgym.learn.tasks.dhn.task import DHNConfig, Normaliser, build_model, linear_probe, make_windows, new_codes, optimise, r2_score
from symgym.learn.tasks.dhn.models import (
    HNN,
    MidpointDHN,
    PlainMLP,
    anchored_cumsum,
    initial_guess,
    interpolate,
    n_parameters,
    random_masks,
    rollout,
    symplectic,
)
from symgym.learn.tasks.dhn.block import BlockDHN
from symgym.physics.hamiltonian import make_dataset

torch.set_num_threads(1)


@pytest.fixture
def small_dhn():
    torch.manual_seed(0)
    return MidpointDHN(state_dim=2, latent_dim=4, block_size=9, width=16, depth=1, heads=2, ff=32)


def test_shapes_of_all_models(small_dhn):
    z3, z4 = torch.randn(3, 4), torch.randn(4, 4)
    known = torch.zeros(3, 9, dtype=torch.bool)
    known[:, 0] = True
    assert small_dhn.hamiltonian(torch.randn(3, 8, 2), known, z3).shape == (3,)
    assert small_dhn.denoise(torch.randn(3, 9, 2), known, z3).shape == (3, 9, 2)
    for model in (small_dhn, HNN(2, 4, hidden=16), PlainMLP(2, 4, hidden=16)):
        assert rollout(model, torch.randn(4, 2, 2), z4, horizon=13).shape == (4, 14, 2)
        assert interpolate(model, torch.randn(4, 5, 2), z4, stride=4).shape == (4, 17, 2)


@pytest.mark.parametrize("state_dim", [2, 4, 6])
def test_baselines_have_similar_size_to_dhn(state_dim):
    cfg = DHNConfig()
    sizes = {name: n_parameters(build_model(name, state_dim, cfg)) for name in ("dhn", "dhn-midpoint", "hnn", "plain")}
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


@pytest.mark.parametrize("name", ["dhn", "dhn-midpoint", "hnn", "plain"])
def test_short_training_run_lowers_the_loss_and_code_fitting_works(name):
    cfg = DHNConfig(latent_dim=4, batch=32, lr=3e-3, hidden=32)
    data = make_dataset("mass_spring", 8, 20, seed=0)
    norm = Normaliser.fit(data.observations, 1)
    windows, index = make_windows(norm.encode(data.observations), cfg.block_size)
    torch.manual_seed(0)
    if name == "dhn-midpoint":
        model = MidpointDHN(2, 4, 9, width=16, depth=1, heads=2, ff=32)
    elif name == "dhn":
        model = BlockDHN(2, 4, 4, 2, width=16, depth=1, heads=2, ff=32)
    else:
        model = build_model(name, 2, cfg)
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


def test_midpoint_dhn_fits_one_pendulum_step_map_and_rolls_it_out():
    """Capacity check: one pendulum, one code; the fixed point of the block update is the true step."""
    torch.manual_seed(0)
    data = make_dataset("pendulum", 4, 40, seed=3, param_ranges={"m": (1.0, 1.0), "l": (1.0, 1.0)})
    norm = Normaliser.fit(data.observations, 1)
    windows, index = make_windows(norm.encode(data.observations), 9)
    model = MidpointDHN(2, 2, 9, width=16, depth=1, heads=2, ff=32, local_hidden=48)
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


# ----------------------------------------------------------------------------- the block (H+ / H-) operator


class ExactOscillatorHamiltonians(torch.nn.Module):
    """Hand-written discrete right (H+) or left (H-) Hamiltonian of the unit harmonic oscillator.

    The exact flow over ``tau`` is a rotation; its generating functions in the BlockDHN convention
    (``q' = q + dH+/dP, p = P + dH+/dq`` and ``q = q' - dH-/dp, p' = p - dH-/dq'``) are
    ``H+ = (1/c - 1) q P + tan(tau) (q^2 + P^2) / 2`` and ``H- = -(that, with q', p)``'s mirror
    ``(1 - 1/c) q' p + tan(tau) (q'^2 + p^2) / 2`` with ``c = cos(tau)``.
    """

    def __init__(self, sign: float, taus: list[float]):
        super().__init__()
        self.sign, self.taus = sign, torch.tensor(taus)

    def forward(self, a, b, level_a, level_b, z, kind):
        tau = self.taus[kind][:, None, None]
        c, t = torch.cos(tau), torch.tan(tau)
        return (self.sign * (1 / c - 1) * a * b + t * (a**2 + b**2) / 2).sum(dim=(1, 2))


def _oscillator(n_steps, dt, n=3):
    phase = torch.linspace(0, 2, n)[:, None] + dt * torch.arange(n_steps)[None]
    return torch.stack([torch.sin(phase), torch.cos(phase)], -1)  # q = sin, p = cos = dq/dt


def _exact_block_dhn(dt=0.1):
    model = BlockDHN(2, 3, block_size=4, block_stride=2, width=8, depth=1, heads=2, ff=8, denoise_weight=0.0)
    taus = [2 * dt] + [g * dt for g in model.interp_spacings]  # forward pair: stride 2; interpolation: spacing g
    model.h_plus, model.h_minus = ExactOscillatorHamiltonians(1.0, taus), ExactOscillatorHamiltonians(-1.0, taus)
    return model


def test_block_dhn_maps_are_the_discrete_hamiltonian_updates():
    """With the oscillator's exact H+/H-, true blocks are fixed points: the loss vanishes; a wrong H is caught."""
    model = _exact_block_dhn()
    windows = _oscillator(9, 0.1)
    loss = model.training_loss(windows, torch.zeros(3, 3), torch.Generator().manual_seed(0))
    assert float(loss) < 1e-10, float(loss)
    # the same check rejects the map for the wrong time step, and the wrong sign convention
    wrong = _exact_block_dhn(dt=0.12)
    assert float(wrong.training_loss(windows, torch.zeros(3, 3), torch.Generator().manual_seed(0))) > 1e-4
    src, tgt = windows[:, :4], windows[:, 2:6]
    level, kind = torch.ones(3, 4), torch.zeros(3, dtype=torch.long)
    q_tgt, p_src = model.plus(src[..., :1], tgt[..., 1:], level, level, torch.zeros(3, 3), kind)
    torch.testing.assert_close(q_tgt, tgt[..., :1]) and torch.testing.assert_close(p_src, src[..., 1:])
    q_src, p_tgt = model.minus(tgt[..., :1], src[..., 1:], level, level, torch.zeros(3, 3), kind)
    torch.testing.assert_close(q_src, src[..., :1]) and torch.testing.assert_close(p_tgt, tgt[..., 1:])


def test_block_dhn_rollout_and_superresolution_with_exact_hamiltonians_track_the_true_flow():
    model = _exact_block_dhn()
    traj = _oscillator(30, 0.1)
    generator = torch.Generator().manual_seed(0)
    pred = model.rollout(traj[:, :4], torch.zeros(3, 3), horizon=20, generator=generator)
    assert pred.shape == (3, 21, 2)
    torch.testing.assert_close(pred[:, 0], traj[:, 3])
    # the denoising passes end at the exact map's fixed point up to the noise of the last-but-one level
    assert ((pred - traj[:, 3:24]) ** 2).mean() < 1e-3 * (traj**2).mean()
    filled = model.interpolate(traj[:, ::4][:, :5], torch.zeros(3, 3), stride=4, generator=generator)
    assert filled.shape == (3, 17, 2)
    torch.testing.assert_close(filled[:, ::4], traj[:, ::4][:, :5])
    linear_error = ((0.5 * (traj[:, 0:16:4] + traj[:, 4:17:4]) - traj[:, 2:17:4]) ** 2).mean()
    assert ((filled - traj[:, :17]) ** 2).mean() < 0.1 * linear_error


def test_noise_levels_are_quantised_and_known_states_pass_through():
    from symgym.learn.tasks.dhn.block import corrupt, noise_level_index

    levels = torch.tensor([0.0, 0.05, 0.5, 0.999, 1.0])
    assert noise_level_index(levels, 10).tolist() == [0, 0, 5, 9, 10]
    x = torch.randn(2, 5, 1)
    torch.testing.assert_close(corrupt(x, torch.ones(2, 5), None), x)
    pure = corrupt(x, torch.zeros(2, 5), torch.Generator().manual_seed(0))
    assert torch.equal(pure, corrupt(x + 5.0, torch.zeros(2, 5), torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    model = BlockDHN(4, 3, 4, 2, width=16, depth=1, heads=2, ff=16)
    src = torch.randn(2, 4, 4)
    tgt = torch.cat([src[:, 2:], torch.randn(2, 2, 4)], 1)  # a forward pair: stride 2, two shared states
    known_src = torch.ones(2, 4, dtype=torch.bool)
    known_tgt = torch.tensor([[True, True, False, False]] * 2)
    out_src, out_tgt = model.denoise_pair(src, tgt, known_src, known_tgt, torch.randn(2, 3), torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(out_src, src)
    torch.testing.assert_close(out_tgt[:, :2], tgt[:, :2])
    assert not torch.allclose(out_tgt[:, 2:], tgt[:, 2:])
    # the network reads the levels: the same inputs at another level give another energy
    q, p, z, kind = src[..., :2], tgt[..., 2:], torch.randn(2, 3), torch.zeros(2, dtype=torch.long)
    ones = torch.ones(2, 4)
    assert not torch.allclose(model.h_plus(q, p, ones, ones, z, kind), model.h_plus(q, p, ones, 0.3 * ones, z, kind))


def test_block_dhn_rejects_bad_settings():
    with pytest.raises(ValueError, match="block_stride must be in"):
        BlockDHN(2, 3, block_size=4, block_stride=5)
    with pytest.raises(ValueError, match="max_interp_stride must be a power of two"):
        BlockDHN(2, 3, max_interp_stride=3)
    with pytest.raises(ValueError, match="state_dim must be even"):
        BlockDHN(3, 3)
    model = BlockDHN(2, 3, width=8, depth=1, heads=2, ff=8)
    with pytest.raises(ValueError, match="context of >= block_size=4"):
        model.rollout(torch.randn(1, 2, 2), torch.randn(1, 3), 4)
    with pytest.raises(ValueError, match="interpolation stride 8"):
        model.interpolate(torch.randn(1, 3, 2), torch.randn(1, 3), 8)
    with pytest.raises(ValueError, match="training windows have 5 states"):
        model.training_loss(torch.randn(2, 5, 2), torch.randn(2, 3), torch.Generator())
    with pytest.raises(ValueError, match="unknown Hamiltonian system 'pendulun'"):
        DHNConfig(systems=("pendulun",)).validate()


def test_valid_prediction_time_counts_steps_before_the_threshold():
    from symgym.learn.tasks.dhn.task import valid_prediction_time

    truth = np.zeros((3, 6, 2))
    pred = np.zeros((3, 6, 2))
    pred[0, 3:] = 1.0  # exceeds from step 3 on: steps 1 and 2 were valid
    pred[1, 5, 0] = np.nan  # only the last step fails
    np.testing.assert_array_equal(valid_prediction_time(pred, truth, 0.1), [2.0, 4.0, 5.0])  # row 2 censored at 5


def test_quick_task_writes_all_metrics_ledger_and_figure(tmp_path):
    from symgym.learn.tasks.dhn.task import METRICS, MODELS, run

    result = run(quick=True, seed=0, out_dir=tmp_path)
    assert (tmp_path / "dhn.png").stat().st_size > 10_000
    table = result["summary"]["pendulum"]
    for name in MODELS:
        for metric in METRICS:
            assert len(table[name][metric]["per_seed"]) == 2 and np.isfinite(table[name][metric]["mean"])
    assert len(result["evidence"]) == len(METRICS) * 3
    assert {e["baseline"] for e in result["evidence"]} == {"hnn", "plain", "dhn-midpoint"}
    from symgym.learn.evidence.ledger import VERDICTS

    assert all(e["holds"] in VERDICTS for e in result["evidence"])
