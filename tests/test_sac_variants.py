"""The five SAC agents of the approx-sac study (issue #29): augmentation, frozen relaxation, drift, early stop,
matched capacity, and the expansion cache that keeps the equivariant ones cheap (issue #28.3)."""
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import symgym.envs  # noqa: F401
from symgym.agents import EnvInfo, agent_class
from symgym.agents.sac import EarlyStop, SACConfig, SymmetryAugmentedReplayBuffer
from symgym.equivariance import DihedralGroup, Symmetry, equivariance_error
from symgym.equivariance.layers import EquivariantMLP, rep_from_names, restrict_rep
from symgym.equivariance.relaxed import RelaxedMLP, relaxation_drift

torch.set_num_threads(1)
D4 = DihedralGroup(4)
FIVE = ("sac", "sac-aug", "equi-sac", "approx-sac", "approx-sac-frozen")
SMALL = {"sac": {"net_arch": [8, 8]}, "sac-aug": {"net_arch": [8, 8]}, "equi-sac": {"hidden": [2, 2]},
         "approx-sac": {"hidden": [1, 1]}, "approx-sac-frozen": {"hidden": [1, 1]}}


def _info(env_id="SymPush-v0"):
    return EnvInfo.of(gym.make(env_id))


def _trained(name, env_id="SymPushWind-v0", steps=160, **kw):
    env = gym.make(env_id)
    agent = agent_class(name).build(EnvInfo.of(env), {**SMALL[name], "learning_starts": 100, "batch_size": 16, **kw})
    agent.learn(env, steps)
    return agent, env


@pytest.mark.parametrize("name", FIVE)
def test_every_agent_trains_saves_reloads_and_reports_its_metrics(name, tmp_path):
    agent, env = _trained(name, steps=130)
    agent.save(tmp_path)
    loaded = agent_class(name).load(tmp_path)
    obs = env.reset(seed=3)[0]
    assert np.allclose(agent.act(obs), loaded.act(obs), atol=1e-6)
    metrics = loaded.extra_metrics()
    assert metrics["stopped_at"] == 130 and metrics["stopped_early"] == 0.0
    assert ("actor_drift" in metrics) == name.startswith("approx")


def test_frozen_relaxation_stays_exactly_equivariant_while_approx_sac_drifts():
    from symgym.agents.equi_sac import policy_symmetry_errors

    drift, errors = {}, {}
    for name in ("approx-sac", "approx-sac-frozen"):
        agent, env = _trained(name, penalty=0.0)
        drift[name] = agent.extra_metrics()
        sym = env.unwrapped.symmetry
        d4 = Symmetry(D4, restrict_rep(sym.obs, D4), restrict_rep(sym.action, D4))
        obs = [env.reset(seed=100 + i)[0] for i in range(4)]
        errors[name] = policy_symmetry_errors(agent.model, d4, obs, [D4.sample(np.random.default_rng(i))
                                                                     for i in range(6)])
    assert drift["approx-sac-frozen"]["actor_drift"] < 1e-6 and drift["approx-sac-frozen"]["critic_drift"] < 1e-6
    assert drift["approx-sac"]["actor_drift"] > 1e-4 and drift["approx-sac"]["critic_drift"] > 1e-4
    assert errors["approx-sac-frozen"]["actor_equivariance_error"] < 1e-5
    assert errors["approx-sac-frozen"]["critic_invariance_error"] < 1e-5
    assert errors["approx-sac"]["critic_invariance_error"] > 1e-5


def test_relaxation_drift_is_the_non_equivariant_share_of_the_weights():
    rep = rep_from_names(["standard"], D4)
    net = RelaxedMLP(rep, rep, hidden=[2], num_kernels=2)
    assert relaxation_drift(net) < 1e-6
    with torch.no_grad():
        for layer in net.relaxed_layers():
            layer.alpha.add_(torch.randn_like(layer.alpha))
    d = relaxation_drift(net)
    assert 1e-3 < d < 1.0
    assert relaxation_drift(torch.nn.Linear(2, 2)) == 0.0  # no relaxed layers


def test_augmented_batches_are_group_images_of_stored_transitions():
    env = gym.make("SymPush-v0")
    info = EnvInfo.of(env)
    agent = agent_class("sac-aug").build(info, SMALL["sac-aug"])
    obs_m, act_m = agent.augmentation_matrices(info)
    assert obs_m.shape == (8, 14, 14) and act_m.shape == (8, 2, 2)
    buf = SymmetryAugmentedReplayBuffer(50, env.observation_space, env.action_space, device="cpu",
                                        obs_matrices=obs_m, action_matrices=act_m)
    o = env.reset(seed=0)[0]
    a = np.array([0.3, -0.7], dtype=np.float32)
    o2, r, term, trunc, _ = env.step(a)
    buf.add(o, o2, a, np.array([r]), np.array([term]), [{}])
    np.random.seed(0)
    batch = buf.sample(64)
    obs, act, nxt = batch.observations.numpy(), batch.actions.numpy(), batch.next_observations.numpy()
    seen = set()
    for i in range(64):  # each sample is (g.o, g.a, g.o2) for one element g, reward untouched
        g = [k for k in range(8) if np.allclose(obs_m[k] @ o, obs[i], atol=1e-5)
             and np.allclose(act_m[k] @ a, act[i], atol=1e-6) and np.allclose(obs_m[k] @ o2, nxt[i], atol=1e-5)]
        assert g, i
        seen.add(g[0])
    assert len(seen) > 4 and np.allclose(batch.rewards.numpy(), r)
    # the matrices are the env's declared symmetry: transform_obs of a D4 element agrees
    sym = env.unwrapped.symmetry
    d4 = Symmetry(D4, restrict_rep(sym.obs, D4), restrict_rep(sym.action, D4))
    g = D4.elements()[3]
    assert np.allclose(d4.transform_obs(g, o), obs_m[3] @ o, atol=1e-5)


def test_augmentation_refuses_groups_that_leave_the_action_box():
    with pytest.raises(ValueError, match="augment_group"):
        agent_class("sac-aug").build(_info(), {"augment_group": "C8"})


def test_early_stop_needs_the_threshold_held_over_consecutive_blocks():
    cfg = SACConfig(early_stop_success=0.9, early_stop_evals=3, early_stop_block=10)
    stop = EarlyStop(cfg, start=0, budget=100)

    def block(successes):  # 10 steps with one episode ending per successes entry
        keep = True
        for i in range(10):
            stop.num_timesteps += 1
            done = i < len(successes)
            stop.locals = {"dones": [done], "infos": [{"is_success": successes[i] if done else False}]}
            keep = stop._on_step()
        return keep

    stop.num_timesteps = 0
    assert block([1] * 6) and block([1] * 6) and block([1, 1, 1, 1, 1, 0])  # 5/6 < 0.9
    assert block([1] * 6) and block([1] * 4)  # too few episodes: not an evaluation
    assert block([1] * 6) and block([1] * 6) and not block([1] * 6)
    rec = stop.record(80)
    assert rec["stopped_early"] == 1.0 and rec["stopped_at"] == 80
    # 8 evaluated blocks (one unevaluated, counted as 0), then 2 blocks carried at the certified level 1.0
    expected = (1 + 1 + 5 / 6 + 1 + 0 + 1 + 1 + 1 + 1 + 1) / 10
    assert rec["success_auc"] == pytest.approx(expected)


def test_parameter_counts_of_the_sweep_are_matched_within_1_25x():
    from symgym.learn.bench.sac import parameter_table

    table = parameter_table("approx-sac")
    for env_id, rows in table.items():
        for part in ("actor", "critic"):
            counts = [r[part] for r in rows.values()]
            assert max(counts) / min(counts) <= 1.25, (env_id, part, rows)
        assert set(rows) == set(FIVE)


def test_cached_expansions_match_fresh_ones_and_survive_repeated_backward():
    """One expansion per parameter update, shared by forwards; a backward or an update re-expands."""
    in_rep, out_rep = rep_from_names(["standard"] * 2, D4), rep_from_names(["standard", "trivial"], D4)
    for net in (EquivariantMLP(in_rep, out_rep, [3]), RelaxedMLP(in_rep, out_rep, [2])):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = torch.randn(5, 4)
        for _ in range(3):  # forward twice, backward twice without an update: must not reuse a freed graph
            y1, y2 = net(x), net(x)
            (y1.sum() + y2.sum()).backward()
            net(x).sum().backward()
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            cached = net(x)
        fresh = net.export()(x) if hasattr(net, "export") else None
        assert torch.allclose(cached, fresh, atol=1e-5)
        err = equivariance_error(lambda v: net(torch.as_tensor(v, dtype=torch.float32)[None])[0].detach().numpy(),
                                 Symmetry(D4, in_rep, out_rep), [x[i].numpy() for i in range(3)], D4.elements())
        assert err < 1e-5 or isinstance(net, RelaxedMLP)


def test_tuning_choice_picks_the_best_auc_and_flags_unfinished_cells(tmp_path):
    import json

    from symgym.learn.bench.sac import tuning_choice
    from symgym.learn.evidence.sweep import expand, load_spec

    trials = [t for t in expand(load_spec("approx-sac-tune"), tmp_path) if t.params["agent"] in ("sac", "equi-sac")]
    auc = {0.0003: 0.4, 0.001: 0.6, 0.003: 0.5, 0.01: 0.45}
    (tmp_path / "trials" / "approx-sac-tune").mkdir(parents=True)
    for t in trials:
        if t.params["agent"] == "equi-sac" and t.params["agent_kwargs"]["learning_rate"] == 0.001:
            continue  # not finished yet
        metrics = {"success_auc": auc[t.params["agent_kwargs"]["learning_rate"]], "success_rate": 0.5}
        (tmp_path / "trials" / "approx-sac-tune" / f"{t.key}.json").write_text(json.dumps({"metrics": metrics}))
    out = tuning_choice(tmp_path)
    assert out["sac"]["complete"] and out["sac"]["chosen"]["learning_rate"] == 0.001
    assert not out["equi-sac"]["complete"] and out["equi-sac"]["chosen"]["learning_rate"] == 0.003
    assert "chosen" not in out["approx-sac"]


def test_apply_tuning_writes_each_agents_chosen_rate_into_the_specs(tmp_path):
    import json
    import shutil

    from symgym.learn.bench.sac import apply_tuning
    from symgym.learn.evidence.sweep import SPEC_DIR, expand, load_spec

    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("approx-sac", "approx-sac-graded", "approx-sac-solvable"):
        shutil.copy(SPEC_DIR / f"{name}.yaml", specs)
    done = tmp_path / "trials" / "approx-sac-tune"
    done.mkdir(parents=True)
    trials = expand(load_spec("approx-sac-tune"), tmp_path)
    for t in trials[:-1]:
        lr = t.params["agent_kwargs"]["learning_rate"]
        auc = 0.7 if (t.params["agent"] == "equi-sac") == (lr == 0.001) else 0.2  # equi-sac prefers 1e-3
        (done / f"{t.key}.json").write_text(json.dumps({"metrics": {"success_auc": auc, "success_rate": 0.5}}))
    with pytest.raises(ValueError, match="unfinished"):
        apply_tuning(tmp_path, spec_dir=specs)
    t = trials[-1]
    (done / f"{t.key}.json").write_text(json.dumps({"metrics": {"success_auc": 0.1, "success_rate": 0.5}}))
    chosen = apply_tuning(tmp_path, spec_dir=specs)
    assert chosen["equi-sac"] == 0.001 and chosen["sac"] == 0.0003 and chosen["approx-sac-frozen"] == 0.0003
    for name in ("approx-sac", "approx-sac-graded"):
        spec = load_spec(str(specs / f"{name}.yaml"))
        rates = {m["agent"]: m["agent_kwargs"]["learning_rate"] for m in spec.raw["grid"]["method"]}
        assert rates == chosen
    solvable_spec = load_spec(str(specs / "approx-sac-solvable.yaml"))
    assert solvable_spec.params["agent_kwargs"]["learning_rate"] == chosen["sac"]


def test_drift_is_tabulated_per_cell_and_seed_beside_the_measured_break(tmp_path):
    import json

    from symgym.learn.bench.sac import drift_vs_break

    breaks = {"SymPushWind-v0": {"break": 0.86}, "SymPushWind-v0 wind=0.5": {"break": 0.96}}
    trials = tmp_path / "trials" / "approx-sac"
    trials.mkdir(parents=True)
    for i, (agent, kwargs, drift) in enumerate([("approx-sac", {}, 0.2), ("approx-sac", {"wind": 0.5}, 0.3),
                                                ("sac", {}, None), ("approx-sac-frozen", {}, 0.0)]):
        summary = {"params": {"agent": agent, "env": "SymPushWind-v0", "env_kwargs": kwargs, "seed": i},
                   "metrics": {"actor_drift": drift, "critic_drift": drift}}
        (trials / f"t{i}.json").write_text(json.dumps(summary))
    cells = drift_vs_break(tmp_path, sweeps=("approx-sac",), breaks=breaks)["cells"]
    assert set(cells) == {"SymPushWind-v0", "SymPushWind-v0 wind=0.5"}
    assert cells["SymPushWind-v0"]["measured_break"] == 0.86
    assert cells["SymPushWind-v0 wind=0.5"]["measured_break"] == 0.96
    assert cells["SymPushWind-v0"]["seeds"]["approx-sac"]["0"]["actor_drift"] == 0.2
    assert cells["SymPushWind-v0"]["seeds"]["approx-sac-frozen"]["3"]["critic_drift"] == 0.0
    assert "sac" not in cells["SymPushWind-v0"]["seeds"]


def test_solvable_gates_the_sweep_on_plain_sac_at_the_sweeps_width(tmp_path):
    import json

    from symgym.learn.bench.sac import solvable
    from symgym.learn.evidence.sweep import expand, load_spec

    done = tmp_path / "trials" / "approx-sac-solvable"
    done.mkdir(parents=True)
    assert not solvable(tmp_path)["ok"]  # nothing run yet
    rates = {"[64, 64]": 0.3, "[128, 128]": 0.9, "[256, 256]": 0.95}
    for t in expand(load_spec("approx-sac-solvable"), tmp_path):
        rate = rates[str(t.params["agent_kwargs"]["net_arch"])]
        (done / f"{t.key}.json").write_text(json.dumps({"metrics": {"success_rate": rate}}))
    out = solvable(tmp_path)
    assert not out["ok"] and out["width"] == [64, 64] and "[128, 128]" in out["message"]
    assert solvable(tmp_path, threshold=0.25)["ok"]


@pytest.mark.slow
def test_quick_throughput_bench_times_every_agent_against_sac(tmp_path):
    import json

    from symgym.learn.bench.sac import throughput_main

    throughput_main(tmp_path, quick=True)
    out = json.loads((tmp_path / "sac-throughput.json").read_text())
    assert set(out["agents"]) == set(FIVE) and out["torch_threads"] == 1
    assert out["agents"]["sac"]["ratio_to_sac"] == [1.0, 1.0]
    assert all(len(r["ms_per_1k_steps"]) == 2 and r["median_ms_per_1k_steps"] > 0 for r in out["agents"].values())
    assert (tmp_path / "sac-throughput.png").is_file()


def test_graded_effects_pair_seeds_and_the_breaks_grow_with_the_wind(tmp_path):
    import json

    from symgym.learn.bench.sac_graded import graded_effects, measured_breaks

    breaks = measured_breaks(quick=True)
    assert breaks["SymPush-v0"]["break"] < 1e-6                     # the exact env does not break O(2)
    assert 0 < breaks["SymPushWind-v0 wind=0.1"]["break"] < breaks["SymPushWind-v0 wind=0.5"]["break"]
    assert breaks["PandaPush-v0"]["break"] > 1e-3                   # the arm breaks it
    trials = tmp_path / "trials" / "approx-sac-graded"
    trials.mkdir(parents=True)
    auc = {("approx-sac", 0): 0.9, ("approx-sac", 1): 0.7, ("approx-sac", 2): 0.8,
           ("equi-sac", 0): 0.5, ("equi-sac", 1): 0.6}                # equi-sac seed 2 unfinished: not paired
    for (method, seed), value in auc.items():
        summary = {"params": {"env": "SymPushWind-v0", "env_kwargs": {"wind": 0.1}},
                   "labels": {"method": method, "seed": seed}, "metrics": {"success_auc": value}}
        (trials / f"{method}_{seed}.json").write_text(json.dumps(summary))
    rows = graded_effects(tmp_path, breaks)
    assert len(rows) == 1
    row = rows[0]
    assert row["cell"] == "SymPushWind-v0 wind=0.1" and row["seeds"] == [0, 1] and row["baseline"] == "equi-sac"
    assert abs(row["effect"] - 0.25) < 1e-12 and row["ci95"][0] < 0.25 < row["ci95"][1]
    assert row["break"] == breaks["SymPushWind-v0 wind=0.1"]["break"]


def test_compute_spent_sums_trial_wall_times_per_sweep(tmp_path):
    import json

    from symgym.learn.bench.sac import compute_spent

    d = tmp_path / "trials" / "approx-sac"
    d.mkdir(parents=True)
    for i, wall in enumerate((1800.0, 3600.0)):
        (d / f"t{i}.json").write_text(json.dumps({"wall_s": wall}))
    (d / "sweep.json").write_text(json.dumps({"wall_s": 99999.0}))  # the sweep's own record is not a trial
    out = compute_spent(tmp_path)
    assert out["per_sweep"]["approx-sac"] == {"trials": 2, "cpu_hours": 1.5}
    assert out["per_sweep"]["approx-sac-graded"] == {"trials": 0, "cpu_hours": 0.0} and out["cpu_hours"] == 1.5
