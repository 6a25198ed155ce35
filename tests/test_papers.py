"""The README's papers-against-ours table: every row finds its evidence, and the summaries say what the ledger says."""
from pathlib import Path

import pytest

from symgym.learn import pages, papers
from symgym.learn.papers import LedgerRow, LevelRow, summarise_ledger, summarise_level

ROOT = Path(__file__).resolve().parents[1]


def _entry(method, baseline, holds, effect=0.1, metric="success_rate", higher=True, seeds=5, claim="c"):
    return {"method": method, "baseline": baseline, "holds": holds, "effect": "difference", "effect_value": effect,
            "metric": metric, "higher_is_better": higher, "n_seeds": seeds, "claim": claim}


@pytest.mark.parametrize("row", papers.PAPERS, ids=lambda r: f"{r.paper}: {r.published}"[:60])
def test_every_row_finds_its_evidence_in_the_committed_results(row):
    """A renamed method or a deleted results file must not silently empty a row."""
    results = pages.load_results(ROOT / "results")
    measured, _ = (summarise_ledger if isinstance(row, LedgerRow) else summarise_level)(row, results)
    assert measured != "not measured"


def test_ledger_row_counts_verdicts_and_ranges_effects_of_one_metric():
    row = LedgerRow("P", "claims X", ("r",), r"m", r"b1|b2")
    results = {"r": {"evidence": [_entry("m", "b1", True, 0.3), _entry("m", "b2", "inconclusive", -0.1),
                                  _entry("m", "other", False, 9.0), _entry("m2", "b1", False, 9.0)]}}
    measured, outcome = summarise_ledger(row, results)
    assert measured.startswith("2 claims, 5 seeds: 1 true, 1 inconclusive")
    assert "difference in success_rate -0.1 to 0.3 (higher is better)" in measured
    assert outcome == "holds in 1 of 2"


def test_ledger_row_outcomes_and_no_range_across_metrics():
    row = LedgerRow("P", "claims X", ("r",), r"m", r"b")
    both = {"r": {"evidence": [_entry("m", "b", True), _entry("m", "b", False, metric="cost", higher=False)]}}
    measured, outcome = summarise_ledger(row, both)
    assert outcome.startswith("mixed") and " in " not in measured.split(";", 1)[-1]
    assert summarise_ledger(row, {"r": {"evidence": [_entry("m", "b", True)] * 2}})[1] == "reproduced"
    assert summarise_ledger(row, {"r": {"evidence": [_entry("m", "b", False)]}})[1] == "fails in 1 of 1, holds in none"
    assert summarise_ledger(row, {"r": {"evidence": [_entry("m", "b", "underpowered")]}})[1].startswith("not shown")
    assert summarise_ledger(row, {}) == ("not measured", "-")
    narrowed = LedgerRow("P", "claims X", ("r",), r"m", r"b", claim="broken", metric="success_rate")
    mixed = {"r": {"evidence": [_entry("m", "b", True, claim="on the broken env"), _entry("m", "b", False)]}}
    assert summarise_ledger(narrowed, mixed)[1] == "reproduced"


def test_level_row_quotes_the_mean_of_the_selected_groups():
    groups = {"a": {"labels": {"method": "t", "demos": 1, "env": "Foo-v0"},
                    "metrics": {"success_rate": {"mean": 0.25, "n_seeds": 3}}},
              "b": {"labels": {"method": "t", "demos": 10, "env": "Foo-v0"},
                    "metrics": {"success_rate": {"mean": 0.9, "n_seeds": 3}}},
              "c": {"labels": {"method": "u", "demos": 1, "env": "Bar-v0"},
                    "metrics": {"success_rate": {"mean": 0.5, "n_seeds": 3}}}}
    row = LevelRow("P", "~100% from 1 demo", "r", {"method": "t", "demos": 1})
    assert summarise_level(row, {"r": {"groups": groups}}) == ("success_rate: Foo 0.25", "level only (3 seeds)")
    assert summarise_level(LevelRow("P", "x", "r", {"method": "zzz"}), {"r": {"groups": groups}})[0] == "not measured"


def test_the_readme_block_is_the_generated_table():
    readme = (ROOT / "README.md").read_text()
    block = readme.split(pages.PAPERS_BEGIN)[1].split(pages.PAPERS_END)[0]
    assert block.strip() == papers.papers_table(pages.load_results(ROOT / "results")).strip()
