"""The claims ledger a reviewer can trust: provenance of trials, interval coverage at five seeds, verdicts that
say why, censored metrics, and every committed ledger entry recomputed from its trial files."""
from __future__ import annotations

from pathlib import Path

import pytest

from symgym.learn.evidence import provenance
from symgym.learn.evidence.sweep import expand, load_spec
from symgym.learn.evidence.trials import run_trial

ROOT = Path(__file__).resolve().parents[1]

#: a trial that builds and evaluates in about a second: an MPPI planner, one short episode, no training
QUICK = {"name": "quick", "params": {"steps": 0, "episodes": 1, "agent_kwargs": {"samples": 8, "horizon": 4}},
         "grid": {"method": [{"name": "sym-mppi", "agent": "sym-mppi"}], "env": ["SymReach-v0"], "seed": [3]},
         "metrics": ["success_rate", "mean_return"]}


# -- provenance -------------------------------------------------------------------------------------------
def test_fingerprint_covers_the_code_a_trial_runs_and_not_the_statistics():
    names = [n for n, _ in provenance.fingerprinted_files()]
    assert "envs/__init__.py" in names and "agents/__init__.py" in names and "learn/evidence/trials.py" in names
    assert "learn/io.py" in names and any(n.startswith("learn/run/") for n in names)
    assert any(n.endswith(".xml") for n in names)  # MuJoCo models change what a trial simulates
    for excluded in ("learn/evidence/ledger.py", "learn/evidence/report.py", "learn/evidence/sweep.py",
                     "learn/cli.py"):
        assert excluded not in names
    assert not any(n.startswith(("tests/", "results/", "learn/bench/")) for n in names)
    assert provenance.compute_fingerprint() == provenance.compute_fingerprint()


def test_fingerprint_changes_when_a_fingerprinted_file_changes(monkeypatch, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    files = [("envs/a.py", tmp_path / "a.py")]
    monkeypatch.setattr(provenance, "fingerprinted_files", lambda: files)
    before = provenance.compute_fingerprint()
    (tmp_path / "a.py").write_text("x = 2\n")
    assert provenance.compute_fingerprint() != before


def test_trial_summary_records_provenance_and_a_rerun_reproduces_its_metrics(tmp_path):
    trial = expand(load_spec(QUICK), tmp_path)[0].as_dict()
    first = run_trial(trial)
    prov = first["provenance"]
    assert prov["fingerprint"] == provenance.compute_fingerprint() and len(prov["fingerprint"]) == 16
    assert set(prov["versions"]) == {"python", "torch", "mujoco", "stable_baselines3", "gymnasium", "numpy"}
    assert prov["versions"]["torch"] and prov["versions"]["mujoco"]
    assert (prov["commit"] is None) == (prov["dirty"] is None)
    again = run_trial(trial)  # the same key, the same code: the same numbers (timings aside)
    timing = ("train_seconds", "eval_seconds")
    assert {k: v for k, v in again["metrics"].items() if k not in timing} == \
        {k: v for k, v in first["metrics"].items() if k not in timing}
    assert again["key"] == first["key"]
