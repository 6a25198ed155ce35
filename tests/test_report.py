"""``symgym report``: rliable aggregates against hand computations, the ledger, and README/JSON agreement."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rliable", reason="needs the sweep extra: pip install 'symgym[sweep]'")

from symgym.learn.evidence import report as report_mod  # noqa: E402
from symgym.learn.io import write_json  # noqa: E402
from symgym.learn.evidence.report import build_report, iqm_with_ci, ledger_markdown, report_main  # noqa: E402
from symgym.learn.evidence.sweep import expand, load_spec, trials_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCORES = np.array([0.10, 0.40, 0.50, 0.60, 0.90, 0.20, 0.70, 0.30])


@pytest.fixture(autouse=True)
def few_bootstrap_reps(monkeypatch):
    """Reports in tests bootstrap a few hundred times (arch resamples in a Python loop)."""
    monkeypatch.setattr(report_mod, "BOOTSTRAP_REPS", 300)
    monkeypatch.setattr(report_mod, "PROFILE_REPS", 50)


def hand_iqm(x: np.ndarray) -> float:
    """Interquartile mean: drop the lowest and highest quarter of the sorted runs, average the rest."""
    x = np.sort(np.asarray(x, float))
    cut = int(0.25 * len(x))
    return float(x[cut: len(x) - cut].mean())


def test_iqm_and_ci_match_a_hand_computation():
    iqm, (lo, hi) = iqm_with_ci(SCORES, reps=4_000)
    assert iqm == pytest.approx(hand_iqm(SCORES)) == pytest.approx(0.45)  # mean of 0.3, 0.4, 0.5, 0.6
    # percentile bootstrap over runs by hand: resample 8 runs with replacement, IQM, 2.5/97.5 percentiles
    rng = np.random.default_rng(1)
    draws = [hand_iqm(SCORES[rng.integers(len(SCORES), size=len(SCORES))]) for _ in range(4_000)]
    hand_lo, hand_hi = np.percentile(draws, [2.5, 97.5])  # two bootstraps: equal up to Monte-Carlo error
    assert lo == pytest.approx(hand_lo, abs=0.03) and hi == pytest.approx(hand_hi, abs=0.03)
    assert lo < iqm < hi


SPEC = {"name": "synthetic", "params": {"steps": 0, "episodes": 1},
        "grid": {"method": [{"name": "mppi", "agent": "mppi"}, {"name": "sym-mppi", "agent": "sym-mppi"}],
                 "env": ["SymReach-v0"], "seed": [0, 1, 2, 3]},
        "metrics": ["mean_return", "success_rate"],
        "claims": [{"claim": "{method} beats {baseline} on {env}", "for_each": ["env"], "metric": "mean_return",
                    "method": "sym-mppi", "baseline": "mppi"},
                   {"claim": "sym-mppi succeeds more often", "metric": "success_rate", "method": "sym-mppi",
                    "baseline": "mppi", "where": {"env": "SymReach-v0"}}]}
#: per seed: (mppi, sym-mppi) returns; sym-mppi is better by 1.0, 2.0, 1.5, 0.5 (paired)
RETURNS = {0: (-30.0, -29.0), 1: (-28.0, -26.0), 2: (-31.0, -29.5), 3: (-27.0, -26.5)}


def write_synthetic(out: Path, skip: tuple = ()) -> None:
    spec = load_spec(SPEC)
    for t in expand(spec, out):
        seed, method = t.labels["seed"], t.labels["method"]
        if (method, seed) in skip:
            continue
        ret = RETURNS[seed][method == "sym-mppi"]
        write_json(trials_dir(out, spec.name) / f"{t.key}.json",
                   {"sweep": spec.name, "key": t.key, "labels": t.labels, "params": t.params,
                    "metrics": {"mean_return": ret, "success_rate": 0.5}})


def test_report_ledger_is_paired_per_seed_and_groups_use_iqm(tmp_path):
    write_synthetic(tmp_path)
    report = build_report(load_spec(SPEC), tmp_path)
    assert report["trials"] == {"finished": 8, "missing": 0, "missing_keys": []}
    beat, success = report["evidence"]
    diffs = np.array([1.0, 2.0, 1.5, 0.5])
    assert beat["claim"] == "sym-mppi beats mppi on SymReach-v0" and beat["paired"] is True
    assert beat["n_seeds"] == 4 and beat["effect_value"] == pytest.approx(diffs.mean())
    assert beat["ci95"][0] > 0 and beat["holds"] is True
    assert beat["probability_of_improvement"] > 0.5
    assert success["effect_value"] == 0 and success["holds"] == "inconclusive"
    g = report["groups"]["mppi SymReach-v0"]["metrics"]["mean_return"]
    assert g["iqm"] == pytest.approx(hand_iqm([r[0] for r in RETURNS.values()])) and g["seeds"] == [0, 1, 2, 3]


def test_report_counts_missing_trials_and_writes_json_png_and_markdown(tmp_path, capsys):
    write_synthetic(tmp_path, skip=(("sym-mppi", 3),))
    spec_file = tmp_path / "synthetic.yaml"
    spec_file.write_text(json.dumps(SPEC))  # JSON is YAML
    assert report_main(type("A", (), {"sweep": str(spec_file), "markdown": True, "out": str(tmp_path)})) == 0
    md = capsys.readouterr().out
    data = json.loads((tmp_path / "synthetic.json").read_text())
    assert data["trials"]["missing"] == 1 and data["evidence"][0]["n_seeds"] == 3
    assert (tmp_path / "synthetic.png").is_file()
    assert md == ledger_markdown(data)
    assert "| sym-mppi beats mppi on SymReach-v0 | mean_return (higher is better) | 3 |" in md


def test_report_of_a_sweep_without_trials_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="no finished trials"):
        build_report(load_spec(SPEC), tmp_path)


def _readme_blocks() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text() if (ROOT / "README.md").is_file() else ""
    # the sweep reports live on the generated docs pages (docs/results/NAME.md) since the README shrank
    readme += "".join(p.read_text() for p in sorted((ROOT / "docs" / "results").glob("*.md")))
    pattern = re.compile(r"<!-- ledger:([A-Za-z0-9._-]+) -->\n(.*?)<!-- /ledger:\1 -->", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(readme)}


@pytest.mark.parametrize("name", ["sac", "mppi", "transporter", "hep"])
def test_readme_ledger_tables_agree_with_results_json(name):
    """The README's table between ``<!-- ledger:NAME -->`` markers is ``symgym report NAME --markdown``."""
    blocks = _readme_blocks()
    if name not in blocks:
        pytest.skip(f"README has no <!-- ledger:{name} --> block")
    path = ROOT / "results" / f"{name}.json"
    assert path.is_file(), f"README quotes ledger {name} but {path} does not exist"
    assert blocks[name].strip() == ledger_markdown(json.loads(path.read_text())).strip()
