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
from symgym.learn.evidence.report import build_report, iqm_with_ci, report_main  # noqa: E402
from symgym.learn.evidence.report_markdown import ledger_changes, ledger_markdown  # noqa: E402
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
                 "env": ["SymReach-v0"], "seed": [0, 1, 2, 3, 4]},
        "metrics": ["mean_return", "success_rate"],
        "claims": [{"claim": "{method} beats {baseline} on {env}", "for_each": ["env"], "metric": "mean_return",
                    "method": "sym-mppi", "baseline": "mppi"},
                   {"claim": "sym-mppi succeeds more often", "metric": "success_rate", "method": "sym-mppi",
                    "baseline": "mppi", "where": {"env": "SymReach-v0"}}]}
#: per seed: (mppi, sym-mppi) returns; sym-mppi is better by 1.0, 2.0, 1.5, 0.5, 1.0 (paired)
RETURNS = {0: (-30.0, -29.0), 1: (-28.0, -26.0), 2: (-31.0, -29.5), 3: (-27.0, -26.5), 4: (-29.0, -28.0)}


def write_synthetic(out: Path, skip: tuple = (), fingerprints: dict | None = None, success: float = 0.5) -> None:
    """Trial summaries of SPEC; ``fingerprints`` maps (method, seed) to a recorded code fingerprint (others have
    no provenance, as summaries written before it existed)."""
    spec = load_spec(SPEC)
    for t in expand(spec, out):
        seed, method = t.labels["seed"], t.labels["method"]
        if (method, seed) in skip:
            continue
        ret = RETURNS[seed][method == "sym-mppi"]
        summary = {"sweep": spec.name, "key": t.key, "labels": t.labels, "params": t.params,
                   "metrics": {"mean_return": ret, "success_rate": success}}
        if fingerprints and (method, seed) in fingerprints:
            summary["provenance"] = {"fingerprint": fingerprints[(method, seed)]}
        write_json(trials_dir(out, spec.name) / f"{t.key}.json", summary)


def test_report_ledger_is_paired_per_seed_and_groups_use_iqm(tmp_path):
    write_synthetic(tmp_path)
    report = build_report(load_spec(SPEC), tmp_path)
    assert report["trials"] == {"finished": 10, "missing": 0, "missing_keys": []}
    beat, success = report["evidence"]
    diffs = np.array([1.0, 2.0, 1.5, 0.5, 1.0])
    assert beat["claim"] == "sym-mppi beats mppi on SymReach-v0" and beat["paired"] is True
    assert beat["n_seeds"] == 5 and beat["effect_value"] == pytest.approx(diffs.mean())
    # paired t by hand: mean +- t(0.975, 4) * sd / sqrt(5); Holm over the 2 claims doubles the smaller p
    half = 2.7764451051977987 * diffs.std(ddof=1) / np.sqrt(5)
    assert beat["ci95"] == pytest.approx([diffs.mean() - half, diffs.mean() + half])
    assert beat["interval"] == "paired t, 95%" and beat["p_adjusted"] == pytest.approx(2 * beat["p_value"])
    assert beat["holds"] is True and beat["probability_of_improvement"] > 0.5
    assert success["effect_value"] == 0 and success["holds"] == "inconclusive" and success["p_value"] == 1.0
    g = report["groups"]["mppi SymReach-v0"]["metrics"]["mean_return"]
    assert g["iqm"] == pytest.approx(hand_iqm([r[0] for r in RETURNS.values()])) and g["seeds"] == [0, 1, 2, 3, 4]
    assert report["statistics"]["claims"]["multiplicity"] == "Holm-Bonferroni over the sweep's 2 claims"
    assert report["statistics"]["groups"]["reps"] == report_mod.BOOTSTRAP_REPS


def test_saturated_success_is_untestable(tmp_path):
    write_synthetic(tmp_path, success=1.0)
    _, success = build_report(load_spec(SPEC), tmp_path)["evidence"]
    assert success["holds"] == "untestable" and success["saturated_at"] == 1.0 and success["bounds"] == [0, 1]


def test_report_counts_missing_trials_and_writes_json_png_and_markdown(tmp_path, capsys):
    write_synthetic(tmp_path, skip=(("sym-mppi", 3),))
    spec_file = tmp_path / "synthetic.yaml"
    spec_file.write_text(json.dumps(SPEC))  # JSON is YAML
    assert report_main(type("A", (), {"sweep": str(spec_file), "markdown": True, "out": str(tmp_path)})) == 0
    md = capsys.readouterr().out
    data = json.loads((tmp_path / "synthetic.json").read_text())
    assert data["trials"]["missing"] == 1 and data["evidence"][0]["n_seeds"] == 4
    assert data["evidence"][0]["holds"] == "underpowered" and "4 seeds" in data["evidence"][0]["reason"]
    assert (tmp_path / "synthetic.png").is_file()
    assert md == ledger_markdown(data)
    assert "| sym-mppi beats mppi on SymReach-v0 | mean_return (higher is better) | 4 |" in md
    assert md.rstrip().splitlines()[4].endswith("| underpowered |")


def test_ledger_changes_lists_only_changed_verdicts_and_new_claims():
    def entry(claim, holds, p=None):
        return {"claim": claim, "metric": "success", "holds": holds, "p_value": p,
                "p_adjusted": None if p is None else 2 * p, "reason": f"reason for {claim}; detail"}

    old = {"sweep": "s", "evidence": [entry("a", True), entry("b", "inconclusive"), entry("c", False)]}
    new = {"sweep": "s", "evidence": [entry("a", True, 0.01), entry("b", False, 0.02), entry("c", "underpowered"),
                                      entry("d", True)]}
    md = ledger_changes([(old, new)], header="# changes")
    assert md.startswith("# changes\n") and "## s: 2 of 4 verdicts changed" in md
    assert "- b [success]: **inconclusive -> no** (raw p 0.02, Holm 0.04). reason for b." in md
    assert "- c [success]: **no -> underpowered**. reason for c." in md
    assert "- new claim: d -> yes" in md and "- a [" not in md


def test_a_results_json_re_reports_from_the_spec_it_embeds(tmp_path):
    write_synthetic(tmp_path)
    spec_file = tmp_path / "synthetic.yaml"
    spec_file.write_text(json.dumps(SPEC))
    assert report_main(_args(str(spec_file), tmp_path)) == 0
    first = json.loads((tmp_path / "synthetic.json").read_text())
    assert first["spec"]["grid"]["seed"] == [0, 1, 2, 3, 4]
    spec_file.unlink()  # the spec moved on: the results JSON still knows what ran
    assert report_main(_args(str(tmp_path / "synthetic.json"), tmp_path)) == 0
    again = json.loads((tmp_path / "synthetic.json").read_text())
    # rliable's bootstraps are seeded too (it ignores its random_state): the same report, interval for interval
    assert again["evidence"] == first["evidence"] and again["groups"] == first["groups"]


def _args(sweep, out, **kw):
    return type("A", (), {"sweep": sweep, "markdown": False, "out": str(out), "allow_mixed_code": False, **kw})


def test_report_refuses_a_comparison_of_two_code_fingerprints(tmp_path, capsys):
    from symgym.learn.cli import main

    fps = {("mppi", s): "aaaa" for s in range(5)} | {("sym-mppi", s): "bbbb" for s in range(5)}
    write_synthetic(tmp_path, fingerprints=fps)
    spec_file = tmp_path / "synthetic.yaml"
    spec_file.write_text(json.dumps(SPEC))
    assert main(["report", str(spec_file), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "aaaa" in err and "bbbb" in err and "--allow-mixed-code" in err
    assert not (tmp_path / "synthetic.json").exists()
    assert main(["report", str(spec_file), "--out", str(tmp_path), "--allow-mixed-code"]) == 0
    data = json.loads((tmp_path / "synthetic.json").read_text())
    beat = data["evidence"][0]
    assert beat["provenance"] == {"fingerprints": ["aaaa", "bbbb"], "unrecorded": 0, "mixed": True,
                                  "differing": ["tree:aaaa", "tree:bbbb"]}
    assert "mixes code fingerprints" in beat["reason"]
    assert data["provenance"]["fingerprints"] == {"aaaa": 5, "bbbb": 5} and len(data["provenance"]["stale"]) == 10


def test_unrecorded_trials_are_allowed_but_flagged_and_listed_stale(tmp_path):
    from symgym.learn.evidence.provenance import compute_fingerprint

    now = compute_fingerprint()  # summaries without per-file records compare whole-tree fingerprints
    write_synthetic(tmp_path, fingerprints={("mppi", s): now for s in range(5)} | {("sym-mppi", 0): now})
    report = build_report(load_spec(SPEC), tmp_path)
    beat = report["evidence"][0]
    assert beat["provenance"] == {"fingerprints": [now], "unrecorded": 4, "mixed": False}
    assert "4 trials ran before provenance was recorded" in beat["reason"]
    prov = report["provenance"]
    assert prov["current"] == now and prov["fingerprints"] == {now: 6, "unrecorded": 4}
    assert len(prov["stale"]) == 4 and prov["stale"] == prov["unrecorded"]
    assert all(k.startswith("sym-mppi") for k in prov["stale"])


def test_report_of_a_sweep_without_trials_is_one_line_error(tmp_path, capsys):
    from symgym.learn.cli import main

    with pytest.raises(ValueError, match="no finished trials"):
        build_report(load_spec(SPEC), tmp_path)
    # the shipped transporter sweep has no finished trials: the report refuses it and writes nothing
    assert main(["report", "transporter", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no finished trials" in err and "transporter" in err
    assert not (tmp_path / "transporter.json").exists()


def _readme_blocks() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text() if (ROOT / "README.md").is_file() else ""
    # the sweep reports live on the generated docs pages (docs/results/NAME.md) since the README shrank
    readme += "".join(p.read_text() for p in sorted((ROOT / "docs" / "results").glob("*.md")))
    pattern = re.compile(r"<!-- ledger:([A-Za-z0-9._/-]+) -->\n(.*?)<!-- /ledger:\1 -->", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(readme)}


@pytest.mark.parametrize("name", ["sac", "mppi", "hep-previous"])
def test_readme_ledger_tables_agree_with_results_json(name):
    """The README's table between ``<!-- ledger:NAME -->`` markers is ``symgym report NAME --markdown``, for every
    sweep with trials (none skipped: a sweep without its block fails)."""
    blocks = _readme_blocks()
    assert name in blocks, f"README has no <!-- ledger:{name} --> block"
    path = ROOT / "results" / f"{name}.json"
    assert path.is_file(), f"README quotes ledger {name} but {path} does not exist"
    assert blocks[name].strip() == ledger_markdown(json.loads(path.read_text())).strip()


def test_every_generated_ledger_block_is_its_results_json():
    """No block is skipped: every ``<!-- ledger:NAME -->`` block on the README or the docs pages is the markdown
    of results/NAME.json (a sweep without a report, like one without trials, has no block)."""
    blocks = _readme_blocks()
    assert blocks
    for name, block in blocks.items():
        name, _, sub = name.partition("/")  # NAME/SUB: the report of sweep SUB inside results/NAME.json's "sweeps"
        path = ROOT / "results" / f"{name}.json"
        assert path.is_file(), f"a ledger block quotes {name} but {path} does not exist"
        data = json.loads(path.read_text())
        assert block.strip() == ledger_markdown(data["sweeps"][sub] if sub else data).strip(), name
