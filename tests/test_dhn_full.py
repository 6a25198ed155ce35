"""The DHN study at the reference budget (``full.py``): the reference scale, resumption after a kill, cached data,
learning-rate tuning on the tuning seed, and a tiny study end to end."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from symgym.learn.tasks.dhn.models import n_parameters
from symgym.learn.tasks.dhn.task import DHNConfig, build_model
from symgym.physics.hamiltonian import make_dataset

torch.set_num_threads(1)


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
