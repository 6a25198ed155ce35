"""The matrixnet task's protocol: the tuning stage, fresh word pools, scoring against the majority label, the
evaluation cache and the ledger (the layer, words and models are in test_matrixnet.py)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from symgym.learn.tasks.matrixnet import tuning as matrixnet_tuning
from symgym.learn.tasks.matrixnet.group_words import SymmetricWords
from symgym.learn.tasks.matrixnet.task import TaskConfig, TuningConfig, quick_config, training_pool_size, train_model

torch.set_num_threads(1)


# ------------------------------------------------------------------- tuning stage --

def _fake_scores(val_by_point, train_by_point=None):
    """A stand-in for fit_and_score: validation accuracy looked up by (lr, hidden, steps)."""
    calls = []

    def fake(name, problem, cfg, train, val, lr, hidden, steps, seed, stage):
        calls.append((lr, hidden, steps, stage))
        key = (lr, hidden, steps)
        return {"model": name, "stage": stage, "lr": lr, "hidden": hidden, "steps": steps,
                "val_accuracy": val_by_point[key], "train_accuracy": (train_by_point or {}).get(key, 1.0),
                "final_loss": 0.0, "train_time_s": 0.0, "chosen": False}

    return fake, calls


def _tiny_cfg(threshold, steps=10, max_steps=40, above=(), below=()):
    return TaskConfig(models=("lstm",), tuning=TuningConfig(
        lrs=(1e-3, 3e-3), lrs_above=above, lrs_below=below, hidden=(16, 32), steps={"symmetric": steps},
        max_steps={"symmetric": max_steps}, fit_threshold=threshold, n_val=20))


def _tune(cfg, cache=None):
    return matrixnet_tuning.tune_model("lstm", 0, SymmetricWords(n=5), cfg, lambda: (None, None), lambda s: None, cache)


def test_tuning_selects_on_validation_accuracy_not_training_accuracy(monkeypatch):
    # the best validation point (lr 1e-3, width 32) is neither first, last, nor best on training words
    val = {(1e-3, 16, 10): 0.70, (1e-3, 32, 10): 0.91, (3e-3, 16, 10): 0.88, (3e-3, 32, 10): 0.60}
    train = {(1e-3, 16, 10): 0.80, (1e-3, 32, 10): 0.92, (3e-3, 16, 10): 0.99, (3e-3, 32, 10): 0.97}
    fake, calls = _fake_scores(val, train)
    monkeypatch.setattr(matrixnet_tuning, "fit_and_score", fake)
    res = _tune(_tiny_cfg(0.9))
    assert res["chosen"] == {"lr": 1e-3, "hidden": 32, "steps": 10}
    assert res["fits"] and res["val_accuracy"] == 0.91 and len(calls) == 4  # fits: no extra steps
    assert [r["chosen"] for r in res["rows"]] == [False, True, False, False]
    with pytest.raises(ValueError, match="at least one"):
        matrixnet_tuning.select_best([])


def test_tuning_doubles_steps_until_the_fit_threshold_or_the_cap(monkeypatch):
    grid_vals = {(1e-3, 16, 10): 0.5, (1e-3, 32, 10): 0.6, (3e-3, 16, 10): 0.4, (3e-3, 32, 10): 0.3}
    more = {(1e-3, 32, 20): 0.8, (1e-3, 32, 40): 0.97}
    fake, calls = _fake_scores({**grid_vals, **more})
    monkeypatch.setattr(matrixnet_tuning, "fit_and_score", fake)
    res = _tune(_tiny_cfg(0.95))
    assert calls[4:] == [(1e-3, 32, 20, "more-steps"), (1e-3, 32, 40, "more-steps")]
    assert res["chosen"] == {"lr": 1e-3, "hidden": 32, "steps": 40} and res["fits"]
    # more steps that hurt: the cap stops the ladder and the best rung (fewer steps) stays chosen
    fake, calls = _fake_scores({**grid_vals, (1e-3, 32, 20): 0.55, (1e-3, 32, 40): 0.52})
    monkeypatch.setattr(matrixnet_tuning, "fit_and_score", fake)
    res = _tune(_tiny_cfg(0.95))
    assert len(calls) == 6 and res["chosen"]["steps"] == 10 and not res["fits"]


class _RecordingWords(SymmetricWords):
    """S_5 words that record every length range they are asked to sample."""

    def __post_init__(self):
        super().__post_init__()
        self.requested = []

    def sample_words(self, rng, n_words, min_len, max_len, pad_to=None):
        self.requested.append((min_len, max_len))
        return super().sample_words(rng, n_words, min_len, max_len, pad_to)


def test_tuning_never_draws_test_words_and_chooses_the_best_real_run():
    cfg = quick_config()
    cfg.models = ("matrixnet-orthogonal", "lstm")
    cfg.tuning.fit_threshold = 0.0  # every chosen point fits: no ladder, the choice is the grid's best
    problem = _RecordingWords(n=5)
    res = matrixnet_tuning.tune_problem(problem, cfg, log=lambda s: None)
    length = cfg.train_max_len["symmetric"]
    assert problem.requested and all(hi <= length for _, hi in problem.requested)  # lengths 1..L only
    for name in cfg.models:
        rows = res["models"][name]["rows"]
        n_grid = len(cfg.tuning.lrs) * len(cfg.tuning.hidden)
        assert [r["stage"] for r in rows[:n_grid]] == ["grid"] * n_grid and all(r["stage"] == "edge" for r in rows[n_grid:])
        best = max(r["val_accuracy"] for r in rows)
        (chosen,) = [r for r in rows if r["chosen"]]
        assert chosen["val_accuracy"] == best and res["models"][name]["val_accuracy"] == best
        assert 0.0 <= chosen["train_accuracy"] <= 1.0 and res["models"][name]["fits"]


def test_tuning_grows_the_learning_rate_grid_at_the_edge_it_chose(monkeypatch):
    # best at the largest lr: 1e-2 is added (both widths), wins, so 3e-2 is added too, loses: 1e-2 is interior
    val = {(1e-3, 16, 10): 0.5, (1e-3, 32, 10): 0.5, (3e-3, 16, 10): 0.6, (3e-3, 32, 10): 0.7,
           (1e-2, 16, 10): 0.8, (1e-2, 32, 10): 0.97, (3e-2, 16, 10): 0.4, (3e-2, 32, 10): 0.3}
    fake, calls = _fake_scores(val)
    monkeypatch.setattr(matrixnet_tuning, "fit_and_score", fake)
    res = _tune(_tiny_cfg(0.95, above=(1e-2, 3e-2, 1e-1), below=(3e-4,)))
    assert calls[4:] == [(1e-2, 16, 10, "edge"), (1e-2, 32, 10, "edge"), (3e-2, 16, 10, "edge"), (3e-2, 32, 10, "edge")]
    assert res["chosen"] == {"lr": 1e-2, "hidden": 32, "steps": 10} and not res["lr_at_edge"]
    assert res["lrs_tried"] == [1e-3, 3e-3, 1e-2, 3e-2]  # 1e-1 and the lower extension never needed
    # best at the smallest lr: the lower extension; when it runs out at the edge the table says so
    fake, calls = _fake_scores({(3e-4, 16, 10): 0.99, (3e-4, 32, 10): 0.2, **{k: 0.1 for k in list(val)[:4]}})
    monkeypatch.setattr(matrixnet_tuning, "fit_and_score", fake)
    res = _tune(_tiny_cfg(0.95, above=(1e-2,), below=(3e-4,)))
    assert calls[4:] == [(3e-4, 16, 10, "edge"), (3e-4, 32, 10, "edge")]
    assert res["chosen"]["lr"] == 3e-4 and res["lr_at_edge"]


def test_tuning_reuses_cached_runs_and_trains_only_new_grid_points(tmp_path, monkeypatch):
    cfg = quick_config()
    cfg.problems, cfg.models = ("braid-jh",), ("mlp",)
    cfg.tuning.lrs_above = cfg.tuning.lrs_below = ()
    from symgym.learn.tasks.matrixnet.task import PROBLEMS as TASK_PROBLEMS

    first = matrixnet_tuning.tune_all(cfg, TASK_PROBLEMS, tmp_path)
    assert (tmp_path / "matrixnet_tuning.json").exists()
    trained = []
    real = matrixnet_tuning.fit_and_score

    def recording(*args, **kwargs):
        trained.append(args[5])  # lr
        return real(*args, **kwargs)

    monkeypatch.setattr(matrixnet_tuning, "fit_and_score", recording)
    again = matrixnet_tuning.tune_all(cfg, TASK_PROBLEMS, tmp_path)
    assert trained == [] and again["problems"]["braid-jh"]["models"] == first["problems"]["braid-jh"]["models"]
    (tmp_path / "cache").rename(tmp_path / "cache-moved")  # the table alone also serves as the cache
    matrixnet_tuning.tune_all(cfg, TASK_PROBLEMS, tmp_path)
    assert trained == []
    cfg.tuning.lrs = cfg.tuning.lrs + (1e-2,)  # a grown grid: only its new point is trained
    grown = matrixnet_tuning.tune_all(cfg, TASK_PROBLEMS, tmp_path)
    assert trained == [1e-2] and len(grown["problems"]["braid-jh"]["models"]["mlp"]["rows"]) >= 3
    cfg.tuning.n_val += 1  # other settings: nothing is reused
    matrixnet_tuning.tune_all(cfg, TASK_PROBLEMS, tmp_path)
    assert trained[1:4] == [1e-3, 3e-3, 1e-2]


def test_fresh_word_pool_is_drawn_exactly_once():
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(2))
            self.seen = []

        def forward(self, tokens):
            self.seen += tokens[:, 0].tolist()
            return self.bias.expand(len(tokens), 2)

    cfg = TaskConfig(batch_size=8)
    pool = training_pool_size(cfg, steps=25)
    assert pool == 200 and training_pool_size(TaskConfig(n_train=500), steps=25) == 500
    tokens = torch.arange(1, pool + 1)[:, None]
    model = Recorder()
    train_model(model, tokens, torch.zeros(pool, dtype=torch.long), steps=25, batch_size=8, lr=1e-3, seed=0)
    assert sorted(model.seen) == list(range(1, pool + 1))  # every word once: fresh words, no repeats
    model = Recorder()  # a fixed pool bigger than steps x batch: only its first steps x batch words are used
    train_model(model, torch.arange(1, 1001)[:, None], torch.zeros(1000, dtype=torch.long), steps=25, batch_size=8,
                lr=1e-3, seed=0)
    assert sorted(model.seen) == list(range(1, 201))


def test_tuning_seed_must_differ_from_evaluation_seeds(tmp_path):
    from symgym.learn.tasks.matrixnet.task import run

    cfg = quick_config()
    cfg.tuning.seed = 1
    with pytest.raises(ValueError, match="tuning seed 1 is one of the evaluation seeds"):
        run(config=cfg, out_dir=tmp_path)


def test_balanced_accuracy_gives_a_constant_predictor_one_over_the_classes():
    from symgym.learn.tasks.matrixnet.pools import balanced_accuracy

    target = np.array([0] * 80 + [1] * 15 + [2] * 5)
    constant = np.zeros_like(target)
    assert balanced_accuracy(constant, target) == pytest.approx(1 / 3)  # plain accuracy would be 0.8
    assert balanced_accuracy(target, target) == 1.0


def test_pool_ledger_pairs_seeds_per_pool_and_reports_the_majority_rate():
    from symgym.learn.tasks.matrixnet import pools

    rng = np.random.default_rng(0)
    runs = []
    for seed in range(5):
        for n in pools.POOLS["braid-jh"]:
            for m, base in ((pools.PAPER_MODEL, 0.9), ("lstm", 0.6)):
                acc = {"accuracy": base + 0.01 * rng.standard_normal(), "majority_label_rate": 0.1}
                runs.append({"problem": "braid-jh", "pool": n, "model": m, "seed": seed,
                             "in_distribution": acc, "at_2L": dict(acc), "train": {"accuracy": 1.0}})
    ev = pools.evidence(runs)
    assert len(ev) == 2 * len(pools.POOLS["braid-jh"])  # per pool: in distribution and at 2L
    assert all(e["holds"] is True and e["paired"] and e["n_seeds"] == 5 for e in ev)
    assert all(e["majority_label_rate"] == pytest.approx(0.1) for e in ev)
    assert all(e["adjustment"] == f"Holm over {len(ev)} claims" for e in ev)
    summary = pools.table(runs)
    assert set(summary["braid-jh"]) == {str(n) for n in pools.POOLS["braid-jh"]}


def test_non_majority_accuracy_gives_the_majority_predictor_zero():
    from symgym.learn.tasks.matrixnet.training import majority_label, non_majority_accuracy

    target = np.array([3] * 70 + [1] * 20 + [2] * 10)
    assert majority_label(target) == 3
    assert non_majority_accuracy(np.full_like(target, 3), target) == 0.0  # plain accuracy would be 0.7
    pred = target.copy()
    pred[:70] = 1  # wrong on every majority word, right on the rest
    assert non_majority_accuracy(pred, target) == 1.0
    assert np.isnan(non_majority_accuracy(target[:70], target[:70]))


def test_evaluation_cells_are_cached_and_retrained_only_when_their_settings_change(tmp_path, monkeypatch):
    from symgym.learn.tasks.matrixnet import task

    cfg = quick_config()
    cfg.models = ("mlp", "lstm")
    hp = {m: {"lr": 1e-3, "hidden": 16, "steps": 4} for m in cfg.models}
    first = task.run_seed("symmetric", cfg, 3, hp, cache=tmp_path)
    res = first["models"]["mlp"]
    # S_10: balanced and non-majority accuracy and the majority-label rate beside the plain accuracy
    assert len(res["balanced_accuracy"]) == len(res["accuracy"]) == len(first["constant_predictor_accuracy"])
    assert 0.0 <= res["in_distribution_balanced_accuracy"] <= 1.0 and "out_of_distribution_non_majority_accuracy_mean" in res
    assert 0.0 < first["in_distribution_majority_label_rate"] < 1.0
    assert all(0 < c <= 1 for c in first["chance_balanced_accuracy"])
    trained = []
    real = task.evaluate_model
    monkeypatch.setattr(task, "evaluate_model", lambda problem, cfg, seed, name, *a: trained.append(name) or real(
        problem, cfg, seed, name, *a))
    again = task.run_seed("symmetric", cfg, 3, hp, cache=tmp_path)
    assert trained == [] and again["models"] == first["models"]
    hp["lstm"] = {**hp["lstm"], "lr": 3e-3}  # a re-tuned model: only its cell is retrained
    partial = task.run_seed("symmetric", cfg, 3, hp, cache=tmp_path, train=False)  # assembling: nothing trained
    assert partial["missing_models"] == ["lstm"] and list(partial["models"]) == ["mlp"] and trained == []
    assert task.run_seed("symmetric", cfg, 4, hp, cache=tmp_path, train=False) is None
    task.run_seed("symmetric", cfg, 3, hp, cache=tmp_path)
    assert trained == ["lstm"]
    # a model's result does not depend on which other models share its seed
    alone = task.run_seed("symmetric", replace(cfg, models=("lstm",)), 3, hp, cache=None)["models"]["lstm"]
    assert alone["accuracy"] == task.run_seed("symmetric", cfg, 3, hp, cache=tmp_path)["models"]["lstm"]["accuracy"]


def test_s10_ledger_compares_balanced_accuracy_with_the_majority_rate_beside():
    from symgym.learn.tasks.matrixnet import task

    rng = np.random.default_rng(0)
    per_model = {}
    for m in task.MODELS:
        good = m == task.PAPER_MODEL
        per_model[m] = {"out_of_distribution_mean": list(0.2 + 0.01 * rng.standard_normal(5)),  # plain: a tie
                        "out_of_distribution_balanced_accuracy_mean": list((0.5 if good else 0.2) + 0.01 * rng.standard_normal(5)),
                        "in_distribution_mean": 0.95}
    summary = {"kind": "classification", "train_max_len": 10, "eval_lengths": [10, 20, 80],
               "majority_label_rate": [0.3, 0.25, 0.2], "chance_balanced_accuracy": [0.1, 0.1, 0.1], "models": per_model}
    ev = task.adjust(task.evidence("symmetric", summary, list(range(5))))
    assert len(ev) == len(task.MODELS) - 1 and all(e["holds"] is True for e in ev)
    assert all("balanced accuracy" in e["metric"] and e["majority_label_rate_2L_to_8L"] == pytest.approx(0.225) for e in ev)
    assert all(e["method_accuracy_2L_to_8L"] == pytest.approx(np.mean(per_model[task.PAPER_MODEL]["out_of_distribution_mean"]))
               for e in ev)
