"""Simulators: energy conservation to integrator tolerance, gradients, seeding, bad input."""
import numpy as np
import pytest

from symgym.physics.hamiltonian import (
    SYSTEMS,
    DoublePendulum,
    Pendulum,
    SpringChain,
    get_system,
    make_dataset,
    simulate,
)


def _relative_energy_error(system, x0, params, dt, n_steps, substeps=1):
    traj = simulate(system, x0, params, dt, n_steps, substeps)
    energy = system.energy(traj, params[:, None, :])
    return np.abs(energy - energy[:, :1]) / np.abs(energy[:, :1])


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_energy_error_is_small_bounded_and_not_drifting(name):
    system = get_system(name)
    rng = np.random.default_rng(0)
    params = np.array([[np.mean(system.param_ranges[n]) for n in system.param_names]] * 4)
    x0 = system.sample_initial_state(rng, params)
    n_steps = 20_000 if name != "double_pendulum" else 4_000
    err = _relative_energy_error(system, x0, params, dt=0.01, n_steps=n_steps)
    # second-order symplectic methods: O(dt^2) energy error ...
    assert err.max() < 5e-3, err.max()
    # ... that oscillates instead of growing: the late window is no worse than the early one
    window = n_steps // 10
    early, late = err[:, :window].max(1), err[:, -window:].max(1)
    assert np.all(late < 2.0 * early + 1e-9), (early, late)


def test_energy_error_shrinks_quadratically_with_dt():
    system = Pendulum()
    params = np.array([[1.0, 1.0]])
    x0 = np.array([[1.5, 0.0]])
    coarse = _relative_energy_error(system, x0, params, dt=0.02, n_steps=500).max()
    fine = _relative_energy_error(system, x0, params, dt=0.01, n_steps=1000).max()
    assert 3.0 < coarse / fine < 5.0, coarse / fine


def test_drift_check_detects_a_non_symplectic_integrator():
    """The drift criterion used above fails for explicit Euler, so it can tell the difference."""
    system = Pendulum()
    params = np.array([[1.0, 1.0]])
    x = np.array([[1.0, 0.0]])
    energies = [system.energy(x, params)[0]]
    for _ in range(2000):
        x = x + 0.01 * system.vector_field(x, params)
        energies.append(system.energy(x, params)[0])
    err = np.abs(np.array(energies) - energies[0]) / energies[0]
    assert err[-200:].max() > 2.0 * err[:200].max()


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_gradient_matches_finite_differences(name):
    system = get_system(name)
    rng = np.random.default_rng(1)
    params = np.array([[rng.uniform(*system.param_ranges[n]) for n in system.param_names]])
    x = rng.normal(size=(1, 2 * system.dof))
    dq, dp = system.grad(x, params)
    analytic = np.concatenate([dq, dp], -1)[0]
    eps = 1e-6
    numeric = [
        (system.energy(x + eps * e, params) - system.energy(x - eps * e, params))[0] / (2 * eps)
        for e in np.eye(2 * system.dof)
    ]
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_spring_chain_oscillates_at_its_normal_mode_frequencies():
    """Start in one normal mode: the chain stays in it and returns after exactly one period."""
    chain = SpringChain()
    params = np.array([[1.3, 0.7]])
    n = chain.dof
    for mode in range(1, n + 1):
        shape = np.sin(mode * np.pi * np.arange(1, n + 1) / (n + 1))
        omega = chain.mode_frequencies(params)[0, mode - 1]
        period = 2 * np.pi / omega
        steps = 2000
        traj = simulate(chain, np.concatenate([shape, np.zeros(n)])[None], params, period / steps, steps)
        np.testing.assert_allclose(traj[0, -1], traj[0, 0], atol=2e-5)
        # half a period later every mass is at minus its start (the mode shape inverted)
        np.testing.assert_allclose(traj[0, steps // 2, :n], -shape, atol=2e-5)
    # a wrong frequency would not close the orbit: check the test can fail
    wrong = 2 * np.pi / (1.1 * chain.mode_frequencies(params)[0, 0])
    shape = np.sin(np.pi * np.arange(1, n + 1) / (n + 1))
    traj = simulate(chain, np.concatenate([shape, np.zeros(n)])[None], params, wrong / 2000, 2000)
    assert np.abs(traj[0, -1] - traj[0, 0]).max() > 0.05


def test_spring_chain_walls_hold_the_ends():
    chain = SpringChain()
    params = np.array([[1.0, 2.0]])
    q = np.array([[0.5, 0.0, 0.0]])
    # only the first and second springs are stretched: wall pulls mass 1 back, mass 2 pulled forward
    np.testing.assert_allclose(chain.potential_grad(q, params), [[2.0, -1.0, 0.0]])
    np.testing.assert_allclose(chain.potential(q, params), [0.5 * 2.0 * (0.25 + 0.25)])


def test_dataset_reproducible_under_seed_and_varied():
    a = make_dataset("pendulum", 6, 30, seed=3, obs_noise=0.05)
    b = make_dataset("pendulum", 6, 30, seed=3, obs_noise=0.05)
    c = make_dataset("pendulum", 6, 30, seed=4, obs_noise=0.05)
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.allclose(a.states, c.states)
    # parameters vary across trajectories and stay inside their ranges
    assert a.params[:, 0].std() > 0 and a.params[:, 1].std() > 0
    for i, name in enumerate(a.param_names):
        low, high = Pendulum().param_ranges[name]
        assert np.all((a.params[:, i] >= low) & (a.params[:, i] <= high))


def test_observation_noise_has_requested_relative_scale():
    ds = make_dataset("mass_spring", 64, 100, seed=0, obs_noise=0.1)
    noise = ds.observations - ds.states
    scale = ds.states.reshape(-1, 2).std(0)
    np.testing.assert_allclose(noise.reshape(-1, 2).std(0) / scale, 0.1, rtol=0.05)
    clean = make_dataset("mass_spring", 4, 10, seed=0)
    np.testing.assert_array_equal(clean.states, clean.observations)


def test_pendulum_librates_and_double_pendulum_shapes():
    ds = make_dataset("pendulum", 32, 200, seed=0)
    assert np.abs(ds.states[..., 0]).max() < np.pi  # never goes over the top
    dp = make_dataset(DoublePendulum(), 3, 5, seed=0)
    assert dp.states.shape == (3, 6, 4) and dp.params.shape == (3, 4)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown Hamiltonian system 'pendulun'"):
        get_system("pendulun")
    with pytest.raises(ValueError, match="obs_noise"):
        make_dataset("pendulum", 2, 5, obs_noise=-1.0)
    with pytest.raises(ValueError, match="no parameter 'k'"):
        make_dataset("pendulum", 2, 5, param_ranges={"k": (1.0, 2.0)})
    with pytest.raises(ValueError, match="expected 2"):
        Pendulum().energy(np.zeros((1, 2)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="dt must be positive"):
        simulate(Pendulum(), np.zeros((1, 2)), np.ones((1, 2)), dt=0.0, n_steps=3)
