"""``symgym sweep``: a small grid on local Ray, resuming a killed sweep, and specs rejected before Ray starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray.tune", reason="needs the sweep extra: pip install 'symgym[sweep]'")

from symgym.learn.evidence import sweep as sweep_mod  # noqa: E402
from symgym.learn.cli import main  # noqa: E402
from symgym.learn.evidence.sweep import finished_keys, load_spec, run_sweep, trials_dir  # noqa: E402


def tiny_spec(name: str) -> dict:
    """Four short planner trials (no training: MPPI builds in a moment; one short episode each)."""
    return {"name": name, "params": {"steps": 0, "episodes": 1, "agent_kwargs": {"samples": 8, "horizon": 4}},
            "grid": {"method": [{"name": "mppi", "agent": "mppi"}, {"name": "sym-mppi", "agent": "sym-mppi"}],
                     "env": ["SymReach-v0"], "seed": [0, 1]},
            "metrics": ["success_rate", "mean_return"],
            "claims": [{"claim": "{method} beats {baseline} on {env}", "for_each": ["env"], "metric": "mean_return",
                        "method": "sym-mppi", "baseline": "mppi"}]}


@pytest.fixture(scope="module")
def ray_session():
    ray = sweep_mod.start_ray(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_four_trial_sweep_writes_four_summaries(ray_session, tmp_path):
    spec = load_spec(tiny_spec("four"))
    result = run_sweep(spec, out=tmp_path, log=lambda *_: None)
    assert result["errors"] == [] and result["ran"] == 4 and result["skipped"] == 0
    files = sorted(p for p in trials_dir(tmp_path, "four").glob("*.json") if p.name != "sweep.json")
    assert len(files) == 4
    labels = set()
    for f in files:
        s = json.loads(f.read_text())
        assert s["key"] == f.stem and s["sweep"] == "four"
        assert 0.0 <= s["metrics"]["success_rate"] <= 1.0 and s["metrics"]["mean_return"] < 0
        run_dir = Path(s["run_dir"])
        assert run_dir.is_absolute() and (run_dir / "config.json").is_file() and (run_dir / "summary.json").is_file()
        labels.add((s["labels"]["method"], s["labels"]["seed"]))
    assert labels == {("mppi", 0), ("mppi", 1), ("sym-mppi", 0), ("sym-mppi", 1)}
    # running the same spec again runs nothing
    again = run_sweep(spec, out=tmp_path, log=lambda *_: None)
    assert again["ran"] == 0 and again["skipped"] == 4
    # every summary names the code it ran; --rerun-stale re-runs exactly the stale ones (an older fingerprint,
    # or none: recorded before provenance existed) and leaves the current ones alone
    from symgym.learn.evidence.provenance import current_file_hashes, is_current

    now = current_file_hashes()
    summaries = {f: json.loads(f.read_text()) for f in files}
    assert all(is_current(s["provenance"], now) and s["provenance"]["files"] for s in summaries.values())
    old, unrecorded, *kept = files
    summaries[old]["provenance"]["fingerprint"] = "0123456789abcdef"
    summaries[old]["provenance"]["files"]["agents/mppi.py"] = "0" * 16  # ran an older agents/mppi.py,
    summaries[old]["provenance"]["code"]["agents/mppi.py"] = "0" * 16   # whose code (not only its text) differed
    del summaries[unrecorded]["provenance"]
    for f in (old, unrecorded):
        f.write_text(json.dumps(summaries[f]))
    assert sweep_mod.stale_keys(tmp_path, spec) == {old.stem: "0123456789abcdef", unrecorded.stem: None}
    kept_text = {f: f.read_text() for f in kept}
    rerun = run_sweep(spec, out=tmp_path, rerun_stale=True, log=lambda *_: None)
    assert rerun["ran"] == 2 and rerun["skipped"] == 2 and rerun["stale_rerun"] == sorted([old.stem, unrecorded.stem])
    for f in (old, unrecorded):
        s = json.loads(f.read_text())
        # the fresh worker's code: ``now`` unless someone edited the tree meanwhile (a shared checkout)
        assert s["provenance"]["fingerprint"] not in (None, "0123456789abcdef")
        # the same key and code reproduce the metrics (timings aside)
        assert {k: v for k, v in s["metrics"].items() if "seconds" not in k} == \
            {k: v for k, v in summaries[f]["metrics"].items() if "seconds" not in k}
    assert {f: f.read_text() for f in kept} == kept_text
    assert set(sweep_mod.stale_keys(tmp_path, spec, now)) <= {old.stem, unrecorded.stem}


def test_killed_sweep_resumes_only_the_unfinished_trials(ray_session, tmp_path):
    spec_path = tmp_path / "resume.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec("resume")))
    cmd = [sys.executable, "-m", "symgym.learn.cli", "sweep", str(spec_path), "--out", str(tmp_path),
           "--max-concurrent", "1", "--address", ray_session]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while not finished_keys(tmp_path, "resume") and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = finished_keys(tmp_path, "resume")
    assert 1 <= len(first) < 4, f"expected the sweep killed part-way, found {len(first)} finished trials"
    stamps = {k: (trials_dir(tmp_path, "resume") / f"{k}.json").read_text() for k in first}
    result = run_sweep(load_spec(spec_path), out=tmp_path, resume=True, log=lambda *_: None)
    assert result["skipped"] == len(first) and result["ran"] == 4 - len(first) and not result["errors"]
    assert len(finished_keys(tmp_path, "resume")) == 4
    for k, text in stamps.items():  # finished trials were not run again
        assert (trials_dir(tmp_path, "resume") / f"{k}.json").read_text() == text


def _bad(tmp_path, **change):
    spec = tiny_spec("bad")
    for path, value in change.items():
        node = spec
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


@pytest.mark.parametrize("change, needle", [
    ({"grid__method__0__agent": "no-such-agent"}, "no-such-agent"),
    ({"grid__env": ["NoSuchEnv-v0"]}, "NoSuchEnv-v0"),
    ({"grid__seed": [0, "one"]}, "'one'"),
    ({"grid__seed": [0, 1.5]}, "1.5"),
    ({"learning_rate": 0.1}, "learning_rate"),
    ({"params__stepz": 10}, "stepz"),
    ({"metrics": ["success_rate", "no_such_metric"]}, "no_such_metric"),
    ({"claims__0__metric": "success_rate_typo"}, "success_rate_typo"),
    ({"claims__0__baseline": "sac"}, "'sac'"),
    ({"bounds": {"no_such_metric": [0, 1]}}, "no_such_metric"),
    ({"bounds": {"success_rate": [0]}}, "[0]"),
    ({"overrides": [{"where": {"method": "no-such-method"}, "params": {"steps": 1}}]}, "no-such-method"),
    ({"overrides": [{"where": {"axis_typo": "mppi"}, "params": {"steps": 1}}]}, "axis_typo"),
    ({"overrides": [{"where": {"method": "mppi"}, "params": {"stepz": 1}}]}, "stepz"),
    ({"overrides": [{"where": {"method": "mppi"}}]}, "overrides[0]"),
])
def test_bad_spec_is_rejected_before_ray_starts_with_one_line(tmp_path, monkeypatch, capsys, change, needle):
    def no_ray(*a, **k):
        raise AssertionError("Ray must not start for a bad spec")

    monkeypatch.setattr(sweep_mod, "start_ray", no_ray)
    path = _bad(tmp_path, **change)
    assert main(["sweep", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("symgym: error:") and len(err.splitlines()) == 1 and needle in err, err
    assert not trials_dir(tmp_path, "bad").exists()


def test_missing_sweep_extra_names_the_extra(monkeypatch):
    from symgym.agents.registry import MissingExtraError

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match=r"symgym\[sweep\]"):
        sweep_mod.start_ray()


def test_quick_grid_and_shipped_specs_expand(tmp_path):
    for name in ("sac", "mppi", "transporter", "hep", "sweep-overhead"):
        full, quick = load_spec(name), load_spec(name, quick=True)
        assert quick.name == f"{name}-quick"
        assert len(sweep_mod.expand(quick, tmp_path)) < len(sweep_mod.expand(full, tmp_path))
    assert os.environ.get("RAY_USAGE_STATS_ENABLED", "0") == "0"


def test_an_override_sets_params_of_the_matching_cells_only(tmp_path):
    """Cells an override does not match keep their params and key (finished summaries stay valid); matching cells
    get the override's params (a new key); several conditions must all match."""
    plain = tiny_spec("ovr")
    tuned = {**plain, "overrides": [
        {"where": {"method": "sym-mppi", "seed": 1}, "params": {"agent_kwargs.samples": 16}},
        {"where": {"method": "mppi"}, "params": {"episodes": 2}}]}
    before = {(t.labels["method"], t.labels["seed"]): t for t in sweep_mod.expand(load_spec(plain), tmp_path)}
    after = {(t.labels["method"], t.labels["seed"]): t for t in sweep_mod.expand(load_spec(tuned), tmp_path)}
    assert after[("sym-mppi", 0)].key == before[("sym-mppi", 0)].key
    assert after[("sym-mppi", 1)].params["agent_kwargs"] == {"samples": 16, "horizon": 4}
    assert after[("sym-mppi", 1)].key != before[("sym-mppi", 1)].key
    assert all(after[("mppi", s)].params["episodes"] == 2 for s in (0, 1))
    assert load_spec({**tuned, "quick": {"grid": {"seed": [0]}}}, quick=True)  # a quick grid may drop a cell
