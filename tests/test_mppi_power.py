"""The mppi-episode sweep trial: seed -> (initial state, noise seed) pairing, model cache, bad input named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symgym.learn.bench.mppi_power import PARAMS, cached_model, episode_trial
from symgym.learn.evidence.trials import TRIAL_KINDS

torch.set_num_threads(1)
TINY = {**PARAMS, "samples": 8, "horizon": 4, "episode_steps": 4, "n_states": 5, "model_epochs": 1,
        "model_rounds": 1}


def test_trial_kind_is_registered_with_its_metrics():
    kind = TRIAL_KINDS["mppi-episode"]
    assert {"final_distance", "time_to_goal", "cost"} <= set(kind.metrics)


def test_paired_cells_see_the_same_initial_state(tmp_path):
    """Seeds 2 and 7 share initial state 2 (n_states 5) but not the noise seed; naive and symmetric share both."""
    runs = {}
    for sampler in ("naive", "symmetric"):
        for seed in (2, 7):
            out = episode_trial({**TINY, "sampler": sampler, "seed": seed, "cache": str(tmp_path)},
                                tmp_path / f"{sampler}{seed}")
            runs[sampler, seed] = out
            assert out["censoring"]["time_to_goal"]["budget"] == 4
            assert np.isfinite(out["metrics"]["final_distance"])
    import json

    index = {(sampler, seed): json.loads((tmp_path / f"{sampler}{seed}" / "episode.json").read_text())
             for sampler, seed in runs}
    assert {(v["state_index"], v["noise_seed"]) for k, v in index.items() if k[1] == 2} == {(2, 0)}
    assert {(v["state_index"], v["noise_seed"]) for k, v in index.items() if k[1] == 7} == {(2, 1)}
    again = episode_trial({**TINY, "sampler": "naive", "seed": 2, "cache": str(tmp_path)}, tmp_path / "again")
    assert again["metrics"]["cost"] == runs["naive", 2]["metrics"]["cost"]  # seeded: reproducible


def test_model_is_cached_once(tmp_path):
    params = {**TINY, "model": "equivariant", "data": 40}
    first, info = cached_model(tmp_path, params, 0)
    files = sorted(p.name for p in (tmp_path / "mppi-models").glob("*.pt"))
    second, info2 = cached_model(tmp_path, params, 0)
    assert len(files) == 1 and info2["transitions"] == info["transitions"] == 40
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bad, match", [({"sampler": "orbit"}, "'orbit'"), ({"model": "mlp"}, "'mlp'")])
def test_bad_cells_are_named(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        episode_trial({**TINY, **bad, "cache": str(tmp_path)}, tmp_path / "run")


def test_panda_simulator_cell_runs(tmp_path):
    """The Panda's simulator cell plans through the closed-loop backend and reports its metrics."""
    out = episode_trial({**TINY, "env": "PandaReach-v0", "model": "simulator", "sampler": "symmetric", "seed": 0,
                         "cache": str(tmp_path)}, tmp_path / "run")
    m = out["metrics"]
    assert np.isfinite(m["cost"]) and 0.0 <= m["final_distance"] < 0.6 and m["plan_ms"] > 0


def test_a_model_fit_by_other_code_is_refit(tmp_path):
    """The cache key holds no code version: a model whose recorded fingerprint is not the current code's (an env's
    dynamics changed since) is refit, not reused."""
    from symgym.learn.evidence.provenance import current

    params = {**TINY, "model": "plain", "data": 40}
    _, info = cached_model(tmp_path, params, 0)
    assert info["fingerprint"] == current()["fingerprint"]
    path = next((tmp_path / "mppi-models").glob("*.pt"))
    blob = torch.load(path, weights_only=False)
    blob["info"]["fingerprint"], blob["info"]["fit_seconds"] = "old-code", -1.0
    torch.save(blob, path)
    _, again = cached_model(tmp_path, params, 0)
    assert again["fingerprint"] == current()["fingerprint"] and again["fit_seconds"] >= 0
