"""equi-sac / approx-sac: SB3 SAC policies built from the env's declared symmetry."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import SAC

import symgym.envs  # noqa: F401
from symgym.agents import TrainConfig, agent_class
from symgym.learn.run.runs import load_run
from symgym.learn.run.training import train
from symgym.agents.equi_sac import EquiSACPolicy, agent_group, policy_symmetry_errors, relaxed_weight_errors
from symgym.equivariance import DihedralGroup, Symmetry
from symgym.equivariance.layers import restrict_rep

torch.set_num_threads(1)
D4 = DihedralGroup(4)
TOL = 1e-5  # float32 networks


def _d4_symmetry(env):
    sym = env.unwrapped.symmetry
    return Symmetry(D4, restrict_rep(sym.obs, D4), restrict_rep(sym.action, D4))


def _observations(env, n=4):
    return [env.reset(seed=100 + i)[0] for i in range(n)]


def _random_d4(k=6, seed=0):
    rng = np.random.default_rng(seed)
    return [D4.sample(rng) for _ in range(k)]


def _model(relaxed, seed=0, env_id="SymPush-v0", tau=0.005, **kwargs):
    env = gym.make(env_id)
    policy_kwargs = dict(obs_parts=["standard"] * 7, hidden=[4, 4], relaxed=relaxed, **kwargs)
    return SAC(EquiSACPolicy, env, policy_kwargs=policy_kwargs, seed=seed, learning_starts=0, batch_size=32,
               tau=tau), env


@pytest.mark.parametrize("relaxed", [False, True])
def test_actor_equivariant_and_critic_invariant_on_random_d4_elements(relaxed):
    model, env = _model(relaxed)
    errors = policy_symmetry_errors(model, _d4_symmetry(env), _observations(env), _random_d4())
    assert errors["actor_equivariance_error"] < TOL, errors
    assert errors["critic_invariance_error"] < TOL, errors


def test_plain_sac_is_not_equivariant_so_the_check_can_fail():
    env = gym.make("SymPush-v0")
    model = SAC("MlpPolicy", env, seed=0)
    errors = policy_symmetry_errors(model, _d4_symmetry(env), _observations(env), _random_d4())
    assert errors["actor_equivariance_error"] > 1e-2 and errors["critic_invariance_error"] > 1e-3


def test_equivariance_survives_training_but_relaxation_drifts():
    """After gradient steps on the broken (windy) env, equi-sac stays exact and approx-sac moves away."""
    out = {}
    for relaxed in (False, True):
        model, env = _model(relaxed, env_id="SymPushWind-v0", **({"penalty": 0.0} if relaxed else {}))
        model.learn(120)
        out[relaxed] = policy_symmetry_errors(model, _d4_symmetry(env), _observations(env), D4.elements())
        if relaxed:
            weights = relaxed_weight_errors(model.policy)
    assert out[False]["actor_equivariance_error"] < TOL and out[False]["critic_invariance_error"] < TOL
    assert weights["actor"] > 1e-4 and weights["critic"] > 1e-4, weights
    assert out[True]["critic_invariance_error"] > 1e-5, out[True]


@pytest.mark.parametrize("relaxed", [False, True])
def test_target_critic_follows_sb3_polyak_updates(relaxed):
    """SB3 Polyak-averages the target critic through ``param.data`` (no version bump): its forward must still
    use the current weights. A cache keyed on version counters alone froze the target at initialisation."""
    model, env = _model(relaxed, tau=0.5)
    obs = torch.as_tensor(np.stack(_observations(env)))
    act = torch.full((len(obs), 2), 0.3)
    with torch.no_grad():
        initial = model.critic_target(obs, act)[0].clone()   # fills the target's expansion cache
    model.learn(40)                                          # 40 gradient steps, each a Polyak update
    fresh = model.policy.make_critic()
    fresh.load_state_dict(model.critic_target.state_dict())
    with torch.no_grad():
        now = model.critic_target(obs, act)[0]
        assert torch.allclose(now, fresh(obs, act)[0], atol=1e-6)
        assert not torch.allclose(now, initial, atol=1e-5)   # the target did move


def test_log_std_is_shared_and_actions_in_bounds():
    model, env = _model(False)
    obs_t, _ = model.policy.obs_to_tensor(np.stack(_observations(env)))
    mean, log_std, _ = model.policy.actor.get_action_dist_params(obs_t)
    assert mean.shape == (4, 2) and torch.equal(log_std[:, 0], log_std[:, 1])
    actions = model.policy.actor(obs_t)
    assert actions.abs().max() <= 1.0


@pytest.mark.parametrize("agent", ["equi-sac", "approx-sac"])
def test_cli_agent_trains_saves_and_reloads(agent, tmp_path):
    cfg = TrainConfig(agent=agent, env="SymPush-v0", steps=150, seed=0, out=str(tmp_path),
                      agent_kwargs={"learning_starts": 100, "batch_size": 16, "hidden": [2, 2]})
    train(cfg, progress=False)
    trained = load_run(tmp_path)[0]
    loaded = agent_class(agent).load(tmp_path)
    obs = gym.make("SymPush-v0").reset(seed=1)[0]
    assert np.allclose(trained.act(obs), loaded.act(obs), atol=1e-6)
    assert type(loaded.model.policy) is EquiSACPolicy
    assert loaded.model.policy.sym_kwargs["relaxed"] == (agent == "approx-sac")
    assert (tmp_path / "learning_curve.png").is_file()


def test_image_observations_use_a_steerable_cnn():
    env = gym.make("SymPushImage-v0", image_size=16)
    model = SAC(EquiSACPolicy, env, policy_kwargs=dict(obs_parts=None, hidden=[2], image_channels=[2, 2]),
                buffer_size=10, seed=0)
    sym = Symmetry(D4, "image", restrict_rep(env.unwrapped.symmetry.action, D4))
    imgs = [env.reset(seed=s)[0] for s in range(2)]
    err = policy_symmetry_errors(model, sym, imgs, D4.elements())
    # The untrained actor's actions are ~1e-4, so float32 rounding shows up as ~1e-4 *relative* error.
    assert err["actor_equivariance_error"] < 1e-3 and err["critic_invariance_error"] < TOL, err


def test_bad_group_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="tanh"):
        agent_group("D8")
    env = gym.make("SymPush-v0")
    with pytest.raises(ValueError, match="obs_parts"):
        SAC(EquiSACPolicy, env, policy_kwargs=dict(obs_parts=["standard"] * 6))


def test_bench_threshold_needs_reach_and_hold_and_curves_use_finished_episodes():
    from symgym.learn.evidence.trials import _curve, _first_crossing

    grid = np.array([100.0, 200.0, 300.0, 400.0])
    # an early lucky stretch does not count: the curve must stay above the threshold
    assert _first_crossing(grid, np.array([0.5, 0.0, 0.3, 0.4]), 0.25) == 300.0
    assert _first_crossing(grid, np.array([0.5, 0.0, 0.3, 0.1]), 0.25) is None
    assert _first_crossing(grid, np.array([0.5, 0.6, 0.7, 0.8]), None) is None
    steps, values = np.array([100, 250, 400]), np.array([1.0, 0.0, 1.0])
    assert np.allclose(_curve(steps, values, grid, window=2), [1.0, 1.0, 0.5, 0.5])
    assert np.isnan(_curve(steps, values, np.array([50.0]), window=2)[0])
