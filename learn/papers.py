"""Each paper's headline claim beside what we measured: the README's "papers against ours" table.

The left half of a row is a cited fact (what the paper reports, in our words, with its number); the right half is
generated from the committed ``results/*.json`` on every ``python -m symgym.learn.pages``, never typed:

* a **ledger row** (:class:`LedgerRow`) picks the ledger entries that test the paper's claim here, by their method
  and baseline names (regular expressions) and optionally the claim text, and summarises their verdicts and the
  range of their effects;
* a **level row** (:class:`LevelRow`) quotes an absolute number (a success rate, an error) from a results file's
  per-cell groups, for papers whose headline is a level rather than a comparison.

A row that matches nothing in the committed results says "not measured" (and ``tests/test_papers.py`` fails, so a
renamed method cannot silently empty a row).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from symgym.learn.markdown import VERDICT_ORDER, fmt, span, table, verdict


@dataclass(frozen=True)
class LedgerRow:
    """A paper's comparative claim, tested by the ledger entries it selects."""

    paper: str
    """The paper, as cited (authors or short name, and arXiv number where we have it)."""
    published: str
    """What the paper reports, in our words, with its number."""
    results: tuple[str, ...]
    """The results files (``results/NAME.json``) whose ledgers test it."""
    method: str
    """Regular expression the entry's ``method`` must match in full."""
    baseline: str
    """Regular expression the entry's ``baseline`` must match in full."""
    claim: str = ""
    """Regular expression searched in the entry's claim text (empty: any)."""
    metric: str = ".*"
    """Regular expression the entry's ``metric`` must match in full."""
    note: str = ""
    """What differs between the paper's setting and ours (cited in the row)."""


@dataclass(frozen=True)
class LevelRow:
    """A paper's absolute number beside ours: the mean of ``metric`` in the selected groups of a sweep report."""

    paper: str
    """The paper, as cited."""
    published: str
    """What the paper reports, in our words, with its number."""
    results: str
    """The results file whose ``groups`` hold the number."""
    where: dict[str, Any] = field(default_factory=dict)
    """Labels a group must carry (e.g. ``{"method": "transporter", "demos": 1}``); one number per remaining label."""
    metric: str = "success_rate"
    """The metric quoted (its mean over seeds)."""
    by: str = "env"
    """The label that names each quoted number."""
    note: str = ""


PAPERS: tuple[LedgerRow | LevelRow, ...] = (
    LedgerRow("Approximately equivariant RL (relaxed group convolutions in SAC)",
              "outperforms exactly equivariant agents where the symmetry is only approximate",
              ("sac",), r"approx-sac", r"equi-sac", claim=r"broken", metric="success_auc"),
    LedgerRow("Approximately equivariant RL", "outperforms non-equivariant agents (SAC; here also SAC with the "
              "group as replay augmentation)", ("sac",), r"approx-sac", r"sac|sac-aug", metric="success_auc"),
    LedgerRow("Symmetry-preserving MPPI",
              "symmetry-aware action sampling outperforms naive sampling in MPPI on continuous control (here: "
              "episode cost)", ("mppi",), r"sym-.*", r"naive-.*", metric="cost",
              note="simulator, plain and equivariant learned models; SymReach, Panda reach and push"),
    LedgerRow("Symmetry-preserving MPPI", "as above (here: final distance to the goal)",
              ("mppi",), r"sym-.*", r"naive-.*", metric="final_distance|time_to_goal"),
    LedgerRow("HEP (arXiv 2502.05728)", "removing equivariance costs 24 points of success",
              ("hep3d",), r"hep", r"hep_no_eq", note="floating suction sphere (1-20 demos) and the Panda (10 demos)"),
    LedgerRow("HEP (arXiv 2502.05728)", "removing frame transfer costs 16 points of success",
              ("hep3d",), r"hep", r"hep_no_ft"),
    LedgerRow("HEP (arXiv 2502.05728)", "beats a flat (non-hierarchical) diffusion policy",
              ("hep3d",), r"hep", r"flat_diffusion"),
    LedgerRow("Diffusion policies (as used by HEP)", "a diffusion head keeps two demonstrated modes apart where "
              "an MSE head averages them", ("hep3d-modes",), r"diffusion", r"mse"),
    LevelRow("Transporter Networks (Zeng et al. 2020)", "block insertion solved (~100%) from 1 demonstration",
             "transporter", {"method": "transporter", "demos": 1, "env": "TabletopBlockInsertion-v0"},
             note="a Panda with suction executing by physics, not Ravens' UR5"),
    LevelRow("Equivariant Transporter (Huang et al. 2022)", ">95% success on 7 of 10 Ravens tasks from 10 demos",
             "transporter", {"method": "equi-transporter", "demos": 10}),
    LedgerRow("Equivariant Transporter (Huang et al. 2022)", "more sample-efficient than Transporter Networks",
              ("transporter",), r"equi-transporter", r"transporter",
              note="both trained with random SE(2) augmentation, one budget"),
    LedgerRow("Keyframe Transporter (arXiv 2502.01773)", ">10% over keyframe imitation baselines on average",
              ("transporter", "transporter-se3"), r"keyframe-transporter", r"equi-transporter",
              note="incl. two tilted-place tasks that need roll and pitch"),
    LedgerRow("DHN (arXiv 2503.07596)", "denoising Hamiltonian networks predict further ahead than HNN",
              ("dhn",), r"dhn", r"hnn", metric=r".*/vpt_steps",
              note="undertrained: below the reference's width, data and iterations"),
    LedgerRow("MatrixNet (arXiv 2501.09571)", "higher sample efficiency than baselines on group-word tasks",
              ("matrixnet-pools",), r"matrixnet-paper", r"lstm"),
    LedgerRow("MatrixNet (arXiv 2501.09571)", "generalises to words longer than those trained on",
              ("matrixnet",), r"matrixnet-paper", r".*"),
    LedgerRow("IAEmu (arXiv 2504.05235)", "emulates xi and omega to ~3% and ~5% error, with calibrated uncertainty",
              ("iaemu",), r"paper|ensemble|paper_recalibrated", r".*"),
    LedgerRow("AtlasD (arXiv 2504.10777)", "discovers local symmetries, incl. the Lorentz group's discrete "
              "components, and they help downstream models", ("atlasd",), r".*", r".*"),
    LedgerRow("Relaxed E(3) networks", "relaxed weights learn the right amount of symmetry breaking",
              ("relaxed-e3",), r".*", r".*"),
    LedgerRow("Mesh-topology sensitivity (arXiv 2501.09597)",
              "autoencoder pretraining reduces a graph simulator's sensitivity to mesh topology",
              ("mesh",), r"graph\+pretrain", r"graph", metric="sensitivity_db"),
)


def ledger_entries(row: LedgerRow, results: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(results name, entry) of every ledger entry the row selects."""
    out = []
    for name in row.results:
        for e in (results.get(name) or {}).get("evidence") or []:
            if (re.fullmatch(row.method, str(e.get("method", ""))) and re.fullmatch(row.baseline,
                                                                                   str(e.get("baseline", "")))
                    and re.fullmatch(row.metric, str(e.get("metric", "")))
                    and (not row.claim or re.search(row.claim, str(e.get("claim", ""))))):
                out.append((name, e))
    return out


def _effects(entries: list[dict[str, Any]]) -> str:
    """The range of the entries' effects, when they share one metric and one kind of effect (else empty: a range
    over different units says nothing)."""
    kinds = {(e.get("metric"), e.get("effect"), e.get("higher_is_better")) for e in entries}
    vals = [float(e["effect_value"]) for e in entries if isinstance(e.get("effect_value"), (int, float))]
    if len(kinds) != 1 or not vals:
        return ""
    metric, kind, higher = kinds.pop()
    lo, hi = min(vals), max(vals)
    span = fmt(lo) if lo == hi else f"{fmt(lo)} to {fmt(hi)}"
    better = "" if higher is None else (" (higher is better)" if higher else " (lower is better)")
    return f"{kind or 'effect'} in {metric} {span}{better}"


def summarise_ledger(row: LedgerRow, results: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(what we measured, in one cell; the verdict across cells) for a ledger row."""
    picked = ledger_entries(row, results)
    if not picked:
        return "not measured", "-"
    verdicts = [verdict(e) for _, e in picked]
    counts = [f"{verdicts.count(v)} {v}" for v in VERDICT_ORDER if verdicts.count(v)]
    seeds = span(e.get("n_seeds") for _, e in picked if isinstance(e.get("n_seeds"), int))
    seed_text = f", {seeds} seeds" if seeds else ""
    cells = f"{len(picked)} claim{'s' if len(picked) != 1 else ''}{seed_text}: {', '.join(counts)}"
    effects = _effects([e for _, e in picked])
    measured = cells + (f"; {effects}" if effects else "")
    n_true, n_false = verdicts.count("true"), verdicts.count("false")
    if n_true == len(picked):
        outcome = "reproduced"
    elif n_true and n_false:
        outcome = "mixed: holds in some cells, fails in others"
    elif n_true:
        outcome = f"holds in {n_true} of {len(picked)}"
    elif n_false:
        outcome = f"fails in {n_false} of {len(picked)}, holds in none"
    else:
        outcome = "not shown (no verdict)"
    return measured, outcome


def summarise_level(row: LevelRow, results: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(the quoted numbers, a note on seeds) for a level row."""
    groups = (results.get(row.results) or {}).get("groups") or {}
    quoted = []
    for g in groups.values():
        labels = g.get("labels") or {}
        if any(labels.get(k) != v for k, v in row.where.items()):
            continue
        m = (g.get("metrics") or {}).get(row.metric) or {}
        if isinstance(m.get("mean"), (int, float)):
            quoted.append((str(labels.get(row.by, "")), float(m["mean"]), m.get("n_seeds")))
    if not quoted:
        return "not measured", "-"
    text = "; ".join(f"{label.removesuffix('-v0')} {fmt(v)}" for label, v, _ in sorted(quoted))
    seeds = span(n for *_, n in quoted if isinstance(n, int))
    return f"{row.metric}: {text}", (f"level only ({seeds} seeds)" if seeds else "level only")


def papers_table(results: dict[str, dict[str, Any]]) -> str:
    """The README block: one row per paper claim, the paper's number beside ours."""
    rows = []
    for row in PAPERS:
        if isinstance(row, LedgerRow):
            measured, outcome = summarise_ledger(row, results)
            links = row.results
        else:
            measured, outcome = summarise_level(row, results)
            links = (row.results,)
        where = ", ".join(f"[{n}](docs/results/{n}.md)" for n in links)
        note = f" ({row.note})" if row.note else ""
        rows.append([row.paper, row.published, measured + note, outcome, where])
    head = ("Each paper's headline claim (cited, in our words) beside what the committed results measure here, "
            "generated from the ledgers (each results page gives every claim's interval, adjusted p-value and the "
            "reason for its verdict):\n")
    return head + "\n" + table(["paper", "the paper reports", "measured here", "here", "results"], rows)
