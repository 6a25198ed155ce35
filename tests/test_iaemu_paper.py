"""IAEmu's paper model (Conv1d decoders, MC dropout, beta schedule) and its training runs: data blocks shared
between workers, per-seed caches, checkpoints that resume exactly, the seed worker CLI and the pilot check."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symgym.learn.tasks.iaemu import eval as iaemu_eval, models as iaemu_models
from symgym.learn.tasks.iaemu.task import IAEmuConfig
from symgym.learn.tasks.iaemu.data import (
    PARAM_HIGH, PARAM_LOW, Standardiser, generate_dataset, sample_params, to_model_space,
)
from symgym.learn.tasks.iaemu.models import (
    PAPER_BETAS, IAEmuNet, TrainSettings, beta_nll, mc_dropout_predict, train_network,
)
from symgym.physics.galaxies import HaloCatalogueConfig

torch.set_num_threads(1)


def test_dataset_blocks_are_shared_between_workers_and_the_full_set(tmp_path, monkeypatch):
    halos = HaloCatalogueConfig(n_halos=1500, box_size=50.0, n_clusters=60)
    part = generate_dataset(5, 2, seed=0, halo_config=halos, cache_dir=tmp_path, progress=False, block_size=3,
                            blocks=[1])  # a worker that only simulates the second block
    assert part["theta"].shape == (2, 7) and len(list(tmp_path.glob("iaemu_*.npz"))) == 1
    full = generate_dataset(5, 2, seed=0, halo_config=halos, cache_dir=tmp_path, progress=False, block_size=3)
    assert full["stats"].shape == (5, 2, 3, 20) and len(list(tmp_path.glob("iaemu_*.npz"))) == 2
    np.testing.assert_array_equal(full["stats"][3:], part["stats"])  # the worker's block is reused, not redone
    assert len(np.unique(full["theta"][:, 0])) == 5  # blocks draw different parameters
    with pytest.raises(ValueError, match="block 7"):
        generate_dataset(5, 2, seed=0, halo_config=halos, cache_dir=tmp_path, block_size=3, blocks=[7])


@pytest.mark.parametrize("n_bins", [20, 12])
def test_paper_model_shapes_dropout_and_gradients(n_bins):
    torch.manual_seed(0)
    model = IAEmuNet(PARAM_LOW, PARAM_HIGH, n_bins=n_bins, hidden=32, width=0.25)
    theta = torch.as_tensor(sample_params(6, seed=0), dtype=torch.float32)
    model.train()
    model(theta)  # one training-mode pass so that batch-norm has running statistics
    mean, log_var = model.mc_dropout(False)(theta)
    assert mean.shape == log_var.shape == (6, 3, n_bins)
    again, _ = model(theta)
    torch.testing.assert_close(mean, again)  # dropout off: deterministic
    single, _ = model(theta[:1])
    torch.testing.assert_close(single, mean[:1])  # batch-norm in eval: a query does not depend on its batch
    pred = mc_dropout_predict(model, theta, n_passes=16)
    assert pred["epistemic"].min() > 0  # dropout on: the sampled means differ
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.Dropout))  # switched back off
    sampled = model.mc_dropout_layers()  # encoder (5) and the first four convolutions of each of 3 decoders
    assert len(sampled) == 5 + 3 * 4 < sum(isinstance(m, torch.nn.Dropout) for m in model.modules())
    model.mc_dropout(True)
    assert all(m.training for m in sampled) and not model.decoders[0].inp[-1].training
    model.mc_dropout(False)
    x = theta.clone().requires_grad_(True)
    model(x)[0][:, 1].sum().backward()  # differentiable in the parameters (inverse problems)
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="n_passes"):
        mc_dropout_predict(model, theta, n_passes=1)


def test_mc_dropout_is_seeded():
    """A re-evaluation of the same model gives the same moments (verdicts must not move with dropout draws)."""
    torch.manual_seed(0)
    model = IAEmuNet(PARAM_LOW, PARAM_HIGH, n_bins=12, hidden=32, width=0.25).eval()
    theta = torch.as_tensor(sample_params(5, seed=1), dtype=torch.float32)
    state = torch.get_rng_state()
    a = mc_dropout_predict(model, theta, n_passes=12, seed=3, chunk=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched
    torch.rand(7)  # whatever runs in between does not matter
    b = mc_dropout_predict(model, theta, n_passes=12, seed=3, chunk=5)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    other = mc_dropout_predict(model, theta, n_passes=12, seed=4)
    assert not torch.allclose(a["mean"], other["mean"])
    unseeded = [mc_dropout_predict(model, theta, n_passes=4, seed=None)["mean"] for _ in range(2)]
    assert not torch.equal(*unseeded)  # seed=None draws fresh masks from the global stream
    with pytest.raises(ValueError, match="chunk"):
        mc_dropout_predict(model, theta, n_passes=4, chunk=0)


def test_beta_nll_per_statistic_beta_matches_separate_losses():
    torch.manual_seed(1)
    mean, target, log_var = torch.randn(16, 3, 20), torch.randn(16, 3, 20), torch.randn(16, 3, 20)
    betas = torch.tensor(PAPER_BETAS)
    joint = beta_nll(mean, log_var, target, betas)
    separate = torch.stack([beta_nll(mean[:, s], log_var[:, s], target[:, s], float(betas[s])) for s in range(3)])
    assert joint.item() == pytest.approx(separate.mean().item(), rel=1e-6)
    assert PAPER_BETAS == (0.9, 0.5, 0.5)


def test_paper_schedule_uses_beta_one_during_warmup(monkeypatch, iaemu_toy_data):
    seen = []
    original = iaemu_models.beta_nll

    def spy(mean, log_var, target, beta):
        seen.append(beta if isinstance(beta, float) else tuple(torch.as_tensor(beta).tolist()))
        return original(mean, log_var, target, beta)

    monkeypatch.setattr(iaemu_models, "beta_nll", spy)
    theta, y, _ = iaemu_toy_data(40, 5, n_real=2)
    model = IAEmuNet(PARAM_LOW, PARAM_HIGH, hidden=16, width=0.25)
    train_network(model, theta[:32], y[:32], theta[32:], y[32:], TrainSettings(epochs=5, batch_size=16,
                  warmup_fraction=0.4), seed=0, kind="paper")
    per_epoch = len(seen) // 5
    assert seen[: 2 * per_epoch] == [1.0] * (2 * per_epoch)  # warm-up: 2 of 5 epochs at beta = 1
    assert all(b == pytest.approx(PAPER_BETAS) for b in seen[2 * per_epoch:])


def test_paper_model_learns_noise_level_and_mc_dropout_grows_outside_box(iaemu_toy_data):
    theta, y, _ = iaemu_toy_data(500, 3, n_real=2)
    model = IAEmuNet(PARAM_LOW, PARAM_HIGH, hidden=64, width=0.25)
    model = train_network(model, theta[:440], y[:440], theta[440:], y[440:],
                          TrainSettings(epochs=40, batch_size=64, lr=1e-2), seed=0, kind="paper")
    probe = sample_params(200, seed=1)
    with torch.no_grad():
        pred = mc_dropout_predict(model, torch.as_tensor(probe, dtype=torch.float32), n_passes=20)
        outside = iaemu_eval.outside_params(200, np.random.default_rng(4), expand=1.0)
        out = mc_dropout_predict(model, torch.as_tensor(outside, dtype=torch.float32), n_passes=20)
    pred_sd = pred["aleatoric"].sqrt().mean((1, 2)).numpy()
    true_sd = 0.05 + 0.5 * (probe[:, 6] - PARAM_LOW[6]) / (PARAM_HIGH[6] - PARAM_LOW[6])
    assert np.corrcoef(pred_sd, true_sd)[0, 1] > 0.7
    assert out["epistemic"].mean() > 1.5 * pred["epistemic"].mean()


def test_seed_parts_are_cached_and_the_paper_model_can_skip_seeds(tmp_path):
    from symgym.learn.tasks.iaemu import task as iaemu_task

    cfg = IAEmuConfig(n_train_params=40, n_test_params=10, n_realisations=2, n_test_realisations=4, hidden=8,
                      ensemble_size=2, epochs=2, paper_epochs=1, mc_passes=2, paper_seeds=1, n_seeds=2)
    rng = np.random.default_rng(0)

    def fake(n, r):
        return {"theta": sample_params(n, seed=n), "stats": rng.normal(1.0, 0.1, (n, r, 3, 20))}

    train, test = fake(40, 2), fake(10, 4)
    norm = Standardiser.fit(to_model_space(train["stats"]))
    z = norm.forward(to_model_space(train["stats"]))

    def job(k):
        parts = iaemu_task._parts(cfg, k)
        paths = {p: iaemu_task.seed_cache_path(cfg, k, tmp_path, p) for p in parts}
        return cfg, k, parts, train, test, z, norm, paths

    _, _, first = iaemu_task._seed_job(job(0))
    assert set(first["err_over_scatter"]) == {"paper", "ensemble", "mse_mlp", "knn_5"}
    assert first["err_over_scatter_vs_floor"]["n_realisations"] == 4  # scored against the test targets' floor
    assert not any(first["parts_loaded_from_cache"].values())
    _, _, again = iaemu_task._seed_job(job(0))
    assert all(again["parts_loaded_from_cache"].values())
    assert again["err_over_scatter"]["ensemble"] == first["err_over_scatter"]["ensemble"]  # the same trained models
    _, _, baselines_only = iaemu_task._seed_job(job(1))  # beyond paper_seeds: no paper model
    assert set(baselines_only["err_over_scatter"]) == {"ensemble", "mse_mlp", "knn_5"}
    assert set(baselines_only["calibration"]) == {"ensemble"}
    # a change of config that shapes training is a different cache entry; the seed count is not
    assert iaemu_task.seed_cache_path(cfg, 0, tmp_path, "paper") != iaemu_task.seed_cache_path(
        IAEmuConfig(**{**cfg.__dict__, "paper_epochs": 2}), 0, tmp_path, "paper")
    for unrelated in ({"n_seeds": 5}, {"epochs": 9}, {"n_test_realisations": 16}):  # run size, baselines, test set
        assert iaemu_task.seed_cache_path(cfg, 0, tmp_path, "paper") == iaemu_task.seed_cache_path(
            IAEmuConfig(**{**cfg.__dict__, **unrelated}), 0, tmp_path, "paper")


@pytest.mark.parametrize("flag,value", [("--paper-width", "0"), ("--paper-epochs", "-5")])
def test_seed_worker_rejects_a_non_positive_paper_size_before_training(flag, value, tmp_path, capsys):
    from symgym.learn.tasks.iaemu.task import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0", flag, value, "--out-dir", str(tmp_path)])
    assert exit_info.value.code != 0 and flag in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_full_width_paper_model_is_cached_under_its_own_key_and_the_baselines_under_theirs(tmp_path):
    from dataclasses import replace

    from symgym.learn.tasks.iaemu.task import seed_cache_path

    small = replace(IAEmuConfig(), paper_width=0.25, paper_epochs=200)  # the earlier pilot's size
    full = replace(IAEmuConfig(), paper_width=1.0, paper_epochs=500)
    assert seed_cache_path(small, 0, tmp_path, "paper") != seed_cache_path(full, 0, tmp_path, "paper")
    assert seed_cache_path(small, 0, tmp_path, "baselines") == seed_cache_path(full, 0, tmp_path, "baselines")
    # a paper seed outlasts a sitting and a fresh checkout keeps only what git tracks: it lives in carry/, not cache/
    assert seed_cache_path(full, 0, tmp_path, "paper").parent == tmp_path / "carry" / "iaemu-seeds"
    assert seed_cache_path(full, 0, tmp_path, "baselines").parent == tmp_path / "cache" / "iaemu-seeds"


def test_training_interrupted_at_a_checkpoint_ends_where_an_uninterrupted_run_does(tmp_path):
    """The paper model's training state survives a sitting: stopped after a checkpoint and resumed, it ends with
    the same weights, bit for bit (optimiser, schedule, both random generators and the best state restored)."""
    from symgym.learn.tasks.iaemu.models import IAEmuNet, TrainSettings, train_network

    rng = np.random.default_rng(0)
    low, high = np.zeros(7), np.ones(7)
    theta, y = rng.uniform(size=(24, 7)), rng.normal(size=(24, 2, 3, 5))
    vtheta, vy = theta, y  # validation on the training data: the best state is the last one, after the resume
    settings = TrainSettings(epochs=6, batch_size=8, lr=1e-2, eval_every=1)

    def net():
        torch.manual_seed(1)
        return IAEmuNet(low, high, 5, width=0.25)

    reference = train_network(net(), theta, y, vtheta, vy, settings, seed=3, kind="paper")
    ckpt = tmp_path / "paper.partial.pt"

    class Stop(Exception):
        pass

    import symgym.learn.tasks.iaemu.models as models_module
    real_save = models_module.save_torch

    def save_then_stop(obj, path):
        real_save(obj, path)
        raise Stop

    models_module.save_torch = save_then_stop
    try:
        with pytest.raises(Stop):
            train_network(net(), theta, y, vtheta, vy, settings, seed=3, kind="paper", checkpoint=ckpt, checkpoint_every=3)
    finally:
        models_module.save_torch = real_save
    assert ckpt.exists()
    resumed = train_network(net(), theta, y, vtheta, vy, settings, seed=3, kind="paper", checkpoint=ckpt,
                            checkpoint_every=3)
    assert not ckpt.exists()
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_pilot_check_trains_on_tuning_seeds_only_caches_each_run_and_picks_the_lowest_mean_cell(tmp_path, capsys):
    from dataclasses import replace

    from symgym.learn.tasks.iaemu.pilot_check import table
    from symgym.learn.tasks.iaemu.tuning import main, tune_run

    cfg = replace(IAEmuConfig(), paper_width=0.25, paper_batch_size=16)
    rng = np.random.default_rng(0)
    train = {"theta": sample_params(40, seed=1), "stats": rng.normal(1.0, 0.1, (40, 2, 3, 20))}
    z = Standardiser.fit(to_model_space(train["stats"])).forward(to_model_space(train["stats"]))
    with pytest.raises(ValueError, match="comparison seed"):
        tune_run(cfg, 0, 16, 1e-2, 2, train, z, cache=tmp_path)
    cells = ((16, 1e-3), (16, 1e-1), (8, 1e-3))
    runs = {(s, b, lr): tune_run(cfg, s, b, lr, 2, train, z, cache=tmp_path) for s in (100, 101) for b, lr in cells}
    assert len(list(tmp_path.glob("*.json"))) == 6 and not list(tmp_path.glob("*.partial.pt"))
    score = {key: run["validation_score"] for key, run in runs.items()}
    assert runs[100, 8, 1e-3]["batch"] == 8 and score[100, 8, 1e-3] != score[100, 16, 1e-3]  # the batch reached training
    assert tune_run(cfg, 100, 16, 1e-3, 2, train, z, cache=tmp_path) == runs[100, 16, 1e-3]  # read back, not retrained
    partial = table(2, cache=tmp_path, cells=cells + ((32, 1e-2),))  # a cell has not run: no choice yet
    assert not partial["complete"] and partial["chosen"] is None and partial["agrees"] is None
    got = table(2, cache=tmp_path, configured=(16, 1e-1), cells=cells)
    mean = {c: np.mean([runs[(s, *c)]["validation_score"] for s in (100, 101)]) for c in cells}
    assert got["seeds_complete"] == [100, 101] and tuple(got["chosen"]) == min(mean, key=mean.get)
    assert got["agrees"] == (tuple(got["chosen"]) == (16, 1e-1))
    from symgym.learn.tasks.iaemu.plots import plot_pilot_check

    plot_pilot_check(tmp_path / "pilot.png", got)
    assert (tmp_path / "pilot.png").stat().st_size > 10_000
    assert table(3, cache=tmp_path) is None  # another schedule: no runs
    with pytest.raises(SystemExit) as exit_info:  # a comparison seed is refused before anything is trained
        main(["run", "--seeds", "2"])
    assert exit_info.value.code != 0 and "got [2]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # so is a malformed cell
        main(["run", "--cells", "128-1e-2"])
    assert exit_info.value.code != 0 and "'128-1e-2'" in capsys.readouterr().err
