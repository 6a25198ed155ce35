"""The claims ledger a reviewer can trust: provenance of trials, interval coverage at five seeds, verdicts that
say why, censored metrics, and every committed ledger entry recomputed from its trial files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from symgym.learn.evidence import ledger, provenance
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


def test_a_trial_is_stale_only_when_a_file_it_ran_changes_and_conflicts_name_the_file():
    now = {"agents/sac.py": "1" * 16, "agents/hep.py": "2" * 16, "envs/a.xml": "3" * 16}
    sac_trial = {"fingerprint": "f" * 16, "files": {"agents/sac.py": "1" * 16, "envs/a.xml": "3" * 16}}
    assert provenance.is_current(sac_trial, now)
    assert provenance.is_current(sac_trial, {**now, "agents/hep.py": "9" * 16})      # another agent edited
    assert not provenance.is_current(sac_trial, {**now, "agents/sac.py": "9" * 16})  # its own code edited
    assert not provenance.is_current(sac_trial, {k: v for k, v in now.items() if k != "envs/a.xml"})
    assert not provenance.is_current(None, now) and not provenance.is_current({}, now)
    other = {"fingerprint": "e" * 16, "files": {"agents/sac.py": "9" * 16, "agents/hep.py": "2" * 16}}
    hep = {"fingerprint": "d" * 16, "files": {"agents/hep.py": "2" * 16}}
    assert provenance.code_conflicts([sac_trial, other, None]) == ["agents/sac.py"]
    assert provenance.code_conflicts([sac_trial, hep]) == []  # different files, no file with two versions
    legacy = {"fingerprint": "a" * 16}
    assert provenance.code_conflicts([legacy, {**hep, "tree_fingerprint": "a" * 16}]) == []
    assert provenance.code_conflicts([legacy, {**hep, "tree_fingerprint": "b" * 16}]) == ["tree:" + "a" * 16,
                                                                                          "tree:" + "b" * 16]


#: a trial that trains: 200 SAC steps (50 random first), a small network, 2 evaluation episodes (~7 s here)
QUICK_SAC = {"name": "quick-sac", "params": {"steps": 200, "episodes": 2, "curve_points": 4,
                                             "agent_kwargs": {"learning_starts": 50, "batch_size": 32,
                                                              "buffer_size": 1000, "net_arch": [16, 16]}},
             "grid": {"method": [{"name": "sac", "agent": "sac"}], "env": ["SymReach-v0"], "seed": [1]},
             "metrics": ["success_rate", "mean_return"]}


@pytest.mark.parametrize("spec", [QUICK, QUICK_SAC], ids=["mppi", "sac-200-steps"])
def test_trial_summary_records_provenance_and_a_rerun_reproduces_its_metrics(tmp_path, spec):
    trial = expand(load_spec(spec), tmp_path)[0].as_dict()
    first = run_trial(trial)
    prov = first["provenance"]
    whole = provenance.current()  # computed once per process
    assert {k: prov[k] for k in ("commit", "dirty", "versions")} == {k: whole[k] for k in ("commit", "dirty", "versions")}
    assert prov["tree_fingerprint"] == whole["fingerprint"] and len(prov["fingerprint"]) == 16
    # the files this process ran (in a sweep worker: this trial's; here also what other tests imported)
    used = {"sym-mppi": "agents/mppi.py", "sac": "agents/sac.py"}[trial["params"]["agent"]]
    assert used in prov["files"] and "envs/sym_reach.py" in prov["files"]
    assert any(n.endswith(".xml") for n in prov["files"]) and "learn/cli.py" not in prov["files"]
    assert provenance.is_current(prov)
    assert set(prov["versions"]) == {"python", "torch", "mujoco", "stable_baselines3", "gymnasium", "numpy"}
    assert prov["versions"]["torch"] and prov["versions"]["mujoco"]
    assert (prov["commit"] is None) == (prov["dirty"] is None)
    again = run_trial({**trial, "run_dir": str(tmp_path / "again")})  # same key and code: same numbers
    timing = ("train_seconds", "eval_seconds")
    assert {k: v for k, v in again["metrics"].items() if k not in timing} == \
        {k: v for k, v in first["metrics"].items() if k not in timing}
    assert again["key"] == first["key"]


# -- intervals that hold their level at five seeds -------------------------------------------------------
N_EXPERIMENTS, N_SEEDS = 2000, 5


def _paired_experiments(seed: int = 0):
    """2000 simulated paired experiments of 5 seeds: correlated normal scores, true mean difference 0.3."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0.0, 1.0, size=(N_EXPERIMENTS, N_SEEDS))  # per-seed luck both sides share
    baseline = 2.0 + shared + rng.normal(0.0, 0.5, size=shared.shape)
    method = 2.3 + shared + rng.normal(0.0, 0.5, size=shared.shape)
    return method, baseline, 0.3


def test_paired_t_interval_covers_95_percent_at_five_seeds():
    method, baseline, truth = _paired_experiments()
    hits = 0
    for m, b in zip(method, baseline):
        e = ledger.claim("c", "x", "m", "b", m, b, method_seeds=range(N_SEEDS), baseline_seeds=range(N_SEEDS))
        assert e["interval"] == "paired t, 95%" and e["paired"]
        hits += e["ci95"][0] <= truth <= e["ci95"][1]
    assert hits / N_EXPERIMENTS >= 0.93, f"paired t covered {hits / N_EXPERIMENTS:.3f}"


def test_welch_and_fieller_intervals_cover_at_five_seeds():
    rng = np.random.default_rng(1)
    m = rng.normal(12.0, 2.0, size=(N_EXPERIMENTS, N_SEEDS))
    b = rng.normal(10.0, 1.0, size=(N_EXPERIMENTS, N_SEEDS))
    welch = fieller = 0
    for x, y in zip(m, b):
        lo, hi = ledger.claim("c", "x", "m", "b", x, y)["ci95"]  # no seeds given: unpaired
        welch += lo <= 2.0 <= hi
        lo, hi = ledger.claim("c", "x", "m", "b", x, y, effect="ratio")["ci95"]
        fieller += (lo is None or lo <= 1.2) and (hi is None or 1.2 <= hi)  # None: unbounded
    assert welch / N_EXPERIMENTS >= 0.93 and fieller / N_EXPERIMENTS >= 0.93, (welch, fieller)


def test_the_old_percentile_bootstrap_undercovers_at_five_seeds():
    """Why the ledger changed: the percentile bootstrap of a mean over 5 seeds covers ~84%, not 95%."""
    method, baseline, truth = _paired_experiments()
    d = method - baseline
    rng = np.random.default_rng(2)
    idx = rng.integers(N_SEEDS, size=(1000, N_SEEDS))  # the same 1000 resamples for every experiment
    means = d[:, idx].mean(axis=2)  # (experiments, resamples)
    lo, hi = np.quantile(means, [0.025, 0.975], axis=1)
    coverage = float(np.mean((lo <= truth) & (truth <= hi)))
    assert coverage < 0.90, coverage  # measured ~0.84: the t-interval test above would fail it


# -- p-values, Holm and verdicts --------------------------------------------------------------------------
def test_holm_matches_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005, None]
    # sorted 0.005, 0.01, 0.03, 0.04, (1): x5, x4, x3, x2 with running max; None counts in the family
    adj = ledger.holm(p)
    assert adj[3] == pytest.approx(0.025) and adj[0] == pytest.approx(0.04)
    assert adj[2] == pytest.approx(0.09) and adj[1] == pytest.approx(0.09) and adj[4] is None


def test_verdicts_hold_fail_inconclusive_untestable_underpowered():
    seeds = range(5)
    up = ledger.claim("c", "x", "m", "b", [1.1, 2.2, 3.1, 4.3, 5.2], [1, 2, 3, 4, 5], method_seeds=seeds,
                      baseline_seeds=seeds)
    assert up["holds"] is True and up["p_value"] < 0.05 and "claimed direction" in up["reason"]
    down = ledger.claim("c", "x", "m", "b", [1, 2, 3, 4, 5], [1.1, 2.2, 3.1, 4.3, 5.2], method_seeds=seeds,
                        baseline_seeds=seeds)
    assert down["holds"] is False and "against the claim" in down["reason"]
    flat = ledger.claim("c", "x", "m", "b", [1.0, 2.5, 3, 4, 5], [1.2, 2, 3.1, 4, 5], method_seeds=seeds,
                        baseline_seeds=seeds)
    assert flat["holds"] == "inconclusive" and flat["p_value"] > 0.05
    sat = ledger.claim("c", "success_rate", "m", "b", [1.0] * 5, [1.0] * 5, bounds=(0, 1))
    assert sat["holds"] == "untestable" and "saturated" in sat["reason"]
    few = ledger.claim("c", "x", "m", "b", [1.1, 2.2, 3.1, 4.3], [1, 2, 3, 4], method_seeds=range(4),
                       baseline_seeds=range(4))
    assert few["holds"] == "underpowered" and few["p_value"] < 0.05
    for e in (up, down, flat, sat, few):
        assert e["holds"] in ledger.VERDICTS and e["interval"] and e["reason"] and "p_adjusted" in e


def test_holm_turns_a_marginal_claim_inconclusive():
    seeds = range(5)
    marginal = ledger.claim("c", "x", "m", "b", [1.1, 2.2, 3.0, 4.3, 5.2], [1, 2, 3, 4, 5], method_seeds=seeds,
                            baseline_seeds=seeds)
    assert 0.01 < marginal["p_value"] < 0.05 and marginal["holds"] is True
    family = [marginal] + [ledger.claim("c", "x", "m", "b", [1.0] * 5, [1.0] * 5, bounds=(0, 1)) for _ in range(4)]
    ledger.adjust(family)
    assert marginal["p_adjusted"] == pytest.approx(5 * marginal["p_value"])
    assert marginal["holds"] == "inconclusive" and "Holm over 5 claims" in marginal["reason"]


def test_censored_time_is_compared_on_restricted_means_not_as_a_ratio():
    budget = 15000
    method = [9000, 12000, 15000, 7000, 15000]  # two seeds never reached the threshold
    baseline = [15000] * 5
    e = ledger.claim("faster", "steps_to_success", "m", "b", method, baseline, higher_is_better=False,
                     effect="ratio", method_seeds=range(5), baseline_seeds=range(5),
                     censoring={"budget": budget, "method_reached": [1, 1, 0, 1, 0], "baseline_reached": [0] * 5})
    assert e["effect"] == "difference" and e["requested_effect"] == "ratio" and "ratio" in e["note"]
    c = e["censored"]
    assert c["method_reached"] == 0.6 and c["baseline_reached"] == 0.0
    assert c["method_restricted_mean"] == pytest.approx(11600) and c["baseline_restricted_mean"] == budget
    never = ledger.claim("faster", "steps_to_success", "m", "b", baseline, baseline, higher_is_better=False,
                         effect="ratio", censoring={"budget": budget, "method_reached": [0] * 5,
                                                    "baseline_reached": [0] * 5})
    assert never["holds"] == "untestable" and never["censored"]["method_reached"] == 0.0


# -- the committed ledgers, recomputed from their trial files ---------------------------------------------
def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-9)
    return a == b


#: every committed sweep ledger (mppi-previous: the K = 8/32/128 MPPI design, whose trials moved aside when mppi
#: became the power design; mppi: the power design; sac-previous: the three-agent SAC design; sac: approx-sac;
#: hep-previous: the first, unaugmented HEP design, whose trials are spec hep)
LEDGERS = ["sac", "sac-previous", "hep-previous", "mppi-previous", "mppi"]


@pytest.mark.parametrize("name", LEDGERS)
def test_committed_ledger_recomputes_from_its_trial_files(name):
    import json

    pytest.importorskip("rliable", reason="needs the sweep extra")
    from symgym.learn.evidence.report import load_summaries, statistics_block
    from symgym.learn.evidence.report import ledger as build_ledger

    results = ROOT / "results"
    committed = json.loads((results / f"{name}.json").read_text())
    spec = load_spec(committed["spec"])  # the spec as run (the shipped one may have moved on)
    summaries, missing = load_summaries(spec, results)
    assert committed["trials"]["finished"] == len(summaries) and committed["trials"]["missing"] == len(missing)
    # committed trials predate provenance ("unrecorded": allowed, flagged); the rliable extras are checked apart
    fresh = build_ledger(spec, summaries, allow_mixed_code=True, rliable_extras=False)
    assert len(fresh) == len(committed["evidence"]) > 0
    for new, old in zip(fresh, committed["evidence"]):
        assert new["holds"] in ledger.VERDICTS and new["interval"] and new["reason"]
        assert "p_value" in new and (new["p_adjusted"] is None or new["p_adjusted"] >= new["p_value"])
        for k, v in new.items():
            assert k in old and _close(v, old[k]), f"{name}: {new['claim']!r}: {k} = {old.get(k)!r}, recomputed {v!r}"
        for side in ("method", "baseline"):  # rliable's IQM is deterministic (no resampling)
            if f"{side}_iqm" in old:
                vals = [s["metrics"][new["metric"]] for s in summaries if s["labels"].get(spec.compare) == new[side]
                        and all(s["labels"].get(a) == v for a, v in new["where"].items())]
                assert old[f"{side}_iqm"] == pytest.approx(_iqm(vals), abs=1e-9)
    assert committed["statistics"] == statistics_block(len(fresh))
    assert committed["evidence_summary"] == ledger.summarize(fresh)


def _iqm(values) -> float:
    """Interquartile mean as rliable computes it (scipy's 25%-trimmed mean)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(values, float), 0.25))


def test_fieller_interval_is_unbounded_when_the_baseline_mean_is_indistinguishable_from_zero():
    e = ledger.claim("c", "x", "m", "b", [1.0, 1.2, 0.9, 1.1, 1.0], [0.5, -0.4, 0.3, -0.6, 0.1], effect="ratio",
                     method_seeds=range(5), baseline_seeds=range(5))
    assert e["ci95"] == [None, None] and e["interval"] == "Fieller (paired), 95%"
    assert e["holds"] in ("inconclusive", True, False) and e["reason"]


def test_zero_spread_outcomes_get_the_exact_tests_p_value_not_zero():
    """0/1 outcomes that differ the same way on every seed: the sign-flip test's floor at n paired seeds is
    2 / 2**n, so five seeds cannot reach 0.05 and ten can; a t-test would say p = 0 for any n."""
    claim, exact_p = ledger.claim, ledger.exact_p
    five = claim("always", "success", "a", "b", [1.0] * 5, [0.0] * 5, method_seeds=range(5), baseline_seeds=range(5))
    assert five["p_value"] == pytest.approx(2 / 2 ** 5) and five["holds"] == "inconclusive"
    ten = claim("always", "success", "a", "b", [1.0] * 10, [0.0] * 10, method_seeds=range(10),
                baseline_seeds=range(10))
    assert ten["p_value"] == pytest.approx(2 / 2 ** 10) and ten["holds"] is True
    same = claim("tie", "success", "a", "b", [1.0] * 5, [1.0] * 5, method_seeds=range(5), baseline_seeds=range(5))
    assert same["p_value"] == 1.0
    # unpaired constant sides: every way of splitting the pooled values, two of C(10, 5) as extreme
    unpaired = claim("always", "success", "a", "b", [1.0] * 5, [0.0] * 5)
    assert unpaired["p_value"] == pytest.approx(2 / 252)
    # a constant paired difference of the other sign is as unlikely: the test is two-sided
    assert exact_p(-np.ones(6)) == pytest.approx(2 / 2 ** 6)


def _git(repo, *args):
    import subprocess

    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_docstring_and_comment_edits_leave_a_trial_current_and_code_edits_do_not(monkeypatch, tmp_path):
    """A trial recorded the bytes of a file it ran; the file's docstring and comments were edited since (the code
    hash of the recorded version comes from git history, or from the summary itself), so the trial still ran the
    code on disk. A changed statement makes it stale, and an uncommitted recorded version cannot be vouched for."""
    code = tmp_path / "sac.py"
    files = [("agents/sac.py", code)]
    monkeypatch.setattr(provenance, "fingerprinted_files", lambda: files)
    for cache in (provenance._current_code_hash, provenance._historic_code_hashes):
        cache.cache_clear()
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    code.write_text('"""Old docstring."""\n\n\ndef act(x):\n    return 2 * x  # doubled\n')
    _git(tmp_path, "add", "sac.py")
    _git(tmp_path, "commit", "-qm", "v1")
    recorded = {"fingerprint": "f" * 16, "files": provenance.current_file_hashes()}  # an old summary: no "code"

    def now_after(text):
        code.write_text(text)
        for cache in (provenance._current_code_hash, provenance._historic_code_hashes):
            cache.cache_clear()
        return provenance.current_file_hashes()

    edited = now_after('"""New docstring, longer.\n\nSays why."""\n\n\ndef act(x):\n    """Double."""\n'
                       '    return 2 * x  # why: the gain\n')
    assert edited != recorded["files"] and provenance.is_current(recorded, edited)
    assert provenance.code_conflicts([recorded, {"fingerprint": "e" * 16, "files": edited}]) == []
    changed = now_after('"""Old docstring."""\n\n\ndef act(x):\n    return 3 * x\n')
    assert not provenance.is_current(recorded, changed)
    assert provenance.code_conflicts([recorded, {"fingerprint": "e" * 16, "files": changed}]) == ["agents/sac.py"]
    # a summary that carries its own code hashes needs no history: an uncommitted version it ran still compares
    code.write_text('def act(x):\n    return 4 * x\n')
    uncommitted = {"fingerprint": "d" * 16, "files": provenance.current_file_hashes(),
                   "code": {"agents/sac.py": provenance.code_hash(code.read_bytes())}}
    assert provenance.is_current(uncommitted, now_after('def act(x):\n    """Quadruple."""\n    return 4 * x\n'))
    assert not provenance.is_current({k: v for k, v in uncommitted.items() if k != "code"},
                                     now_after('def act(x):\n    """Quadruple, again."""\n    return 4 * x\n'))
