"""DHN task: model shapes, masking, the Hamiltonian update, a short training run, bad input; the full study."""
import dataclasses
import json

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


# ----------------------------------------------------------------------------- the full-scale study (full.py)


def _tiny_plan(root, **overrides):
    from symgym.learn.tasks.dhn import full
    from symgym.learn.tasks.dhn.training import CurveSettings

    settings = dict(config=DHNConfig.quick(), systems=("pendulum",), lr_grid=(1e-3, 1e-2), eval_seeds=(0, 1),
                    tuning_seed=100, curve=CurveSettings(checkpoint_every=2, eval_every=3, n_val=4, fit_iters=2),
                    cache=root / "cache", checkpoints=root / "carry", results=root / "results", out_dir=root / "out")
    settings.update(overrides)
    return full.Plan(**settings)


def test_reference_config_has_the_reference_scale_and_matched_parameter_counts():
    cfg = DHNConfig.reference()
    cfg.validate()
    assert (cfg.dhn_width, cfg.latent_dim, cfg.n_train, cfg.lr) == (128, 128, 1000, 1e-4)
    assert cfg.train_iters >= 6000 and cfg.n_test >= 64
    for state_dim in (2, 4, 6):
        sizes = {name: n_parameters(build_model(name, state_dim, cfg)) for name in ("dhn", "dhn-midpoint", "hnn", "plain")}
        assert max(sizes.values()) / min(sizes.values()) < 1.02, sizes


def test_training_resumed_after_a_kill_ends_where_an_uninterrupted_run_ends(tmp_path):
    """Kill at iteration 7 (last checkpoint at 6), restart: same weights, codes, losses and curve, bit for bit."""
    from symgym.learn.tasks.dhn.training import CurveSettings, Unit, load_data, train_unit

    cfg = dataclasses.replace(DHNConfig.quick(), train_iters=10)
    curve = CurveSettings(checkpoint_every=3, eval_every=4, n_val=4, fit_iters=2)
    data = load_data(tmp_path / "cache", "pendulum", 5, cfg, curve.n_val, with_test=False)
    for name in ("dhn", "hnn"):
        whole = train_unit(Unit("pendulum", name, 5, 3e-3, tmp_path / f"{name}_whole"), data, cfg, curve)

        def kill(iteration):
            if iteration == 7:
                raise KeyboardInterrupt

        unit = Unit("pendulum", name, 5, 3e-3, tmp_path / f"{name}_killed")
        with pytest.raises(KeyboardInterrupt):
            train_unit(unit, data, cfg, curve, on_iteration=kill)
        assert unit.progress()["iteration"] == 6 and not unit.progress()["done"]
        resumed = train_unit(unit, data, cfg, curve)
        assert unit.progress()["done"]
        for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
            assert torch.equal(a, b)
        assert torch.equal(whole.codes.weight, resumed.codes.weight)
        assert whole.losses == resumed.losses and len(whole.losses) == 10
        assert whole.curve == resumed.curve and [p["iteration"] for p in whole.curve] == [4, 8, 10]
        # a finished unit loads instead of training again
        again = train_unit(unit, data, cfg, curve, on_iteration=kill)
        assert again.losses == whole.losses
    # a checkpoint from other settings is refused, not silently continued
    with pytest.raises(ValueError, match="config key"):
        train_unit(unit, data, dataclasses.replace(cfg, batch=8), curve)


_KILLED_RUN = """
import dataclasses, os, signal, sys
from pathlib import Path
import torch
from symgym.learn.tasks.dhn.task import DHNConfig
from symgym.learn.tasks.dhn.training import CurveSettings, Unit, load_data, train_unit

torch.set_num_threads(1)
root = Path(sys.argv[1])
cfg = dataclasses.replace(DHNConfig.quick(), train_iters=10)
curve = CurveSettings(checkpoint_every=3, eval_every=4, n_val=4, fit_iters=2)
data = load_data(root / "cache", "pendulum", 5, cfg, curve.n_val, with_test=False)


def kill(iteration):
    if iteration == 8:
        os.kill(os.getpid(), signal.SIGKILL)


train_unit(Unit("pendulum", "dhn", 5, 3e-3, root / "killed"), data, cfg, curve, on_iteration=kill)
"""


def test_a_process_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    """A real kill (another process, SIGKILL mid-run) leaves a whole checkpoint; the restart matches a clean run."""
    import signal
    import subprocess
    import sys

    from symgym.learn.tasks.dhn.training import CurveSettings, Unit, load_data, train_unit

    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    unit = Unit("pendulum", "dhn", 5, 3e-3, tmp_path / "killed")
    assert unit.progress()["iteration"] == 6
    assert sorted(f.name for f in unit.folder.iterdir()) == ["checkpoint.pt", "progress.json"]  # no half-written file
    cfg = dataclasses.replace(DHNConfig.quick(), train_iters=10)
    curve = CurveSettings(checkpoint_every=3, eval_every=4, n_val=4, fit_iters=2)
    data = load_data(tmp_path / "cache", "pendulum", 5, cfg, curve.n_val, with_test=False)
    resumed = train_unit(unit, data, cfg, curve)
    whole = train_unit(Unit("pendulum", "dhn", 5, 3e-3, tmp_path / "whole"), data, cfg, curve)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(whole.codes.weight, resumed.codes.weight)
    assert whole.losses == resumed.losses and whole.curve == resumed.curve


def test_cached_data_are_generated_once_and_reused(tmp_path, monkeypatch):
    from symgym.learn.tasks.dhn import training

    calls = []
    real = training.make_dataset

    def counting(*args, **kwargs):
        calls.append(args[:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "make_dataset", counting)
    cfg = DHNConfig.quick()
    first = training.load_data(tmp_path, "pendulum", 3, cfg, n_val=4)
    assert len(calls) == 3  # train, validation, test
    files = sorted((tmp_path / "data").glob("*.npz"))
    stamps = [f.stat().st_mtime_ns for f in files]
    second = training.load_data(tmp_path, "pendulum", 3, cfg, n_val=4)
    assert len(calls) == 3 and [f.stat().st_mtime_ns for f in files] == stamps
    for a, b in ((first.train, second.train), (first.val, second.val), (first.test, second.test)):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.params, b.params)
        assert a.param_names == b.param_names
    # the same trajectories as the task's own generator; validation and test are other trajectories
    np.testing.assert_array_equal(first.train.states, make_dataset("pendulum", cfg.n_train, cfg.train_length, seed=3).states)
    assert not np.allclose(first.val.states[:, 0], first.test.states[: len(first.val), 0])
    # other data settings are other files
    training.load_data(tmp_path, "pendulum", 3, dataclasses.replace(cfg, n_train=6), n_val=4, with_test=False)
    assert len(calls) == 4


def test_tuning_picks_the_lowest_heldout_error_per_model_on_the_tuning_seed(tmp_path):
    from symgym.learn.tasks.dhn import full
    from symgym.learn.io import write_json

    plan = _tiny_plan(tmp_path, models=("dhn", "hnn"), lr_grid=(1e-4, 1e-3, 1e-2))
    errors = {"dhn": {1e-4: 0.5, 1e-3: 0.2, 1e-2: 0.9}, "hnn": {1e-4: 0.1, 1e-3: 0.3, 1e-2: float("inf")}}
    for model, by_lr in errors.items():
        for lr, value in by_lr.items():
            if (model, lr) != ("hnn", 1e-2):
                write_json(plan.tuning_result("pendulum", model, lr), {"config_key": plan.key, "final": {"val_rmse": value}})
    assert full.chosen_lrs(plan, "pendulum") == {"dhn": 1e-3}  # hnn's grid is not finished yet
    write_json(plan.tuning_result("pendulum", "hnn", 1e-2), {"config_key": "stale", "final": {"val_rmse": 0.0}})
    assert "hnn" not in full.chosen_lrs(plan, "pendulum")  # a result from other settings does not count
    write_json(plan.tuning_result("pendulum", "hnn", 1e-2), {"config_key": plan.key, "final": {"val_rmse": 2.0}})
    assert full.chosen_lrs(plan, "pendulum") == {"dhn": 1e-3, "hnn": 1e-4}
    report = full.status(plan)["systems"]["pendulum"]
    assert report["lr_on_grid_edge"] == ["hnn"]
    # a seed trained at a rate tuning no longer chooses (the grid changed) is stale: it will be trained again
    chosen = full.chosen_lrs(plan, "pendulum")
    write_json(plan.seed_result("pendulum", "dhn", 0), {"config_key": plan.key, "lr": 1e-2})
    assert full.seed_result(plan, "pendulum", "dhn", 0, chosen) is None
    write_json(plan.seed_result("pendulum", "dhn", 0), {"config_key": plan.key, "lr": 1e-3})
    assert full.seed_result(plan, "pendulum", "dhn", 0, chosen) is not None


def test_tiny_full_study_tunes_then_trains_seeds_and_writes_the_ledger(tmp_path):
    """End to end at tiny scale: tuning on its own seed, per-(model, seed) results, ledger, figures, resumable."""
    from symgym.learn.tasks.dhn import full
    from symgym.learn.evidence.ledger import VERDICTS

    plan = _tiny_plan(tmp_path)
    with pytest.raises(ValueError, match="tuning seed 0 is also an evaluation seed"):
        _tiny_plan(tmp_path, tuning_seed=0).validate()
    # two parts: part 1/2 runs its units, the seed units of models tuned in the other part wait
    assert not full.run_system(plan, "pendulum", part=(1, 2), log=lambda _: None)
    plan.out_dir.mkdir(parents=True, exist_ok=True)  # the small-budget task's ledger is there: it must be kept
    small = {"task": "dhn", "figure": str(plan.out_dir / "dhn.png"), "evidence": [{"claim": "small"}]}
    (plan.out_dir / "dhn.json").write_text(json.dumps(small))
    (plan.out_dir / "dhn.png").write_bytes(b"small-budget figure")
    results = full.run(plan, log=lambda _: None)
    previous = json.loads((plan.out_dir / "dhn-previous.json").read_text())
    assert previous["evidence"] == small["evidence"] and previous["figure"].endswith("dhn-previous.png")
    assert (plan.out_dir / "dhn-previous.png").read_bytes() == b"small-budget figure"
    assert (plan.out_dir / "dhn.png").read_bytes() != b"small-budget figure"
    assert results is not None and full.system_done(plan, "pendulum")
    # checkpoints live in the tracked carry folder while a unit runs; a finished unit leaves none to commit
    assert plan.checkpoints.exists() and not list(plan.checkpoints.rglob("checkpoint.pt"))
    tuning = json.loads((plan.results / "pendulum" / "tuning.json").read_text())
    for model in plan.models:
        curves = {lr: json.loads(plan.tuning_result("pendulum", model, lr).read_text()) for lr in plan.lr_grid}
        best = min(plan.lr_grid, key=lambda lr: curves[lr]["final"]["val_rmse"])
        assert tuning["chosen_lr"][model] == best and all(c["seed"] == 100 for c in curves.values())
        for seed in plan.eval_seeds:
            result = json.loads(plan.seed_result("pendulum", model, seed).read_text())
            assert result["lr"] == best and result["seed"] == seed
            assert [p["iteration"] for p in result["learning_curve"]] == [3, 6]
            assert np.isfinite(result["metrics"][model]["vpt_steps"])
    assert {(e["method"], e["baseline"]) for e in results["evidence"]} == {("dhn", "hnn"), ("dhn", "plain")}
    assert all(e["holds"] in VERDICTS and e["n_method"] == 2 for e in results["evidence"])
    assert all("Holm" in e["adjustment"] for e in results["evidence"])
    assert (plan.out_dir / "dhn_learning_curves.png").stat().st_size > 10_000
    assert json.loads((plan.out_dir / "dhn.json").read_text())["plan"]["chosen_lr"]["pendulum"] == tuning["chosen_lr"]
    # a second run finds everything done and trains nothing
    said = []
    full.run(plan, log=said.append)
    assert not any("tuning" in line or "seed" in line for line in said), said
    assert json.loads((plan.out_dir / "dhn-previous.json").read_text()) == previous  # not replaced by the new ledger
    # status: every unit finished, and a cost estimate once a timing file exists
    timing = {"config_key": plan.key, "measured_at": "t", "machine": {"load_average_1min": 0.0},
              "models": {m: {"train_iter_s": 1.0, "heldout_eval_s": 10.0, "fit_iter_s": 0.5, "heldout_rollout_s": 2.0}
                         for m in plan.models}}
    from symgym.learn.io import write_json

    write_json(plan.results / "timing.json", timing)
    report = full.status(plan)
    assert report["systems"]["pendulum"]["units_finished"] == report["systems"]["pendulum"]["units"] == 12
    assert report["cpu_hours_left"] == 0.0 and report["cpu_hours_total"] > 0
    assert "CPU-hours" in full.format_status(report) and "NOT THIS ONE" not in full.format_status(report)
    write_json(plan.results / "timing.json", {**timing, "config_key": "other"})
    assert "NOT THIS ONE" in full.format_status(full.status(plan))
