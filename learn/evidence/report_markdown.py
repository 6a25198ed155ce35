"""A results JSON's claims as Markdown: the README's ledger tables, and the list of verdicts that changed between two
reports of one sweep (``results/ledger-changes.md``)."""
from __future__ import annotations

import math
from typing import Any


def _fmt(x: Any, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = float(x)
    s = f"{x:+.3g}" if signed else f"{x:.3g}"
    return f"{x:+.0f}" if signed and abs(x) >= 1000 else f"{x:.0f}" if abs(x) >= 1000 else s


VERDICT_WORDS = {True: "yes", False: "no"}


def _side_cell(e: dict[str, Any], side: str) -> str:
    cell = f"{e[side]} {_fmt(e[side + '_value'])}"
    c = e.get("censored")
    if c:
        n = e["n_seeds"] if e.get("paired") else e.get(f"n_{side}", e["n_seeds"])
        cell += f" ({round(c[side + '_reached'] * n)}/{n} reached)"
    return cell


def ledger_markdown(report: dict[str, Any]) -> str:
    """The README's tables for one results JSON: the claims ledger, then IQMs per group."""
    name = report["sweep"]
    stats = report.get("statistics", {}).get("claims", {})
    stats = stats if isinstance(stats, dict) else {}  # results JSONs from before the ledger named its methods
    lines = [f"Claims ledger of sweep `{name}` ({report['trials']['finished']} trials finished, "
             f"{report['trials']['missing']} missing; `symgym report {name} --markdown`). Intervals: "
             f"{stats.get('difference', 'see JSON')}; p: {stats.get('test', 'n/a')}, "
             f"{stats.get('multiplicity', 'unadjusted')}:", "",
             "| claim | metric | seeds | method | baseline | effect | 95% CI | p (Holm) | holds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in report["evidence"]:
        arrow = "higher" if e["higher_is_better"] else "lower"
        lo, hi = e["ci95"]
        verdict = VERDICT_WORDS.get(e["holds"], e["holds"]) if isinstance(e["holds"], bool) else str(e["holds"])
        p_adj = e.get("p_adjusted")
        effect = "restricted-mean difference" if e.get("censored") else e["effect"]
        lines.append(f"| {e['claim']} | {e['metric']} ({arrow} is better) | {e['n_seeds']} | "
                     f"{_side_cell(e, 'method')} | {_side_cell(e, 'baseline')} | "
                     f"{effect} {_fmt(e['effect_value'], signed=e['effect'] == 'difference')} | "
                     f"[{_fmt(lo)}, {_fmt(hi)}] | {_fmt(p_adj)} | {verdict} |")
    metrics = report["metrics"]
    lines += ["", "| group | " + " | ".join(f"{m} IQM [95% CI]" for m in metrics) + " | seeds |",
              "|---|" + "---|" * len(metrics) + "---|"]
    for g in sorted(report["groups"]):
        ms = report["groups"][g]["metrics"]
        cells = []
        for m in metrics:
            e = ms.get(m)
            cells.append("n/a" if e is None else f"{_fmt(e['iqm'])} [{_fmt(e['ci95'][0])}, {_fmt(e['ci95'][1])}]")
        n = max((e["n_seeds"] for e in ms.values()), default=0)
        lines.append(f"| {g} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines) + "\n"


def ledger_changes(pairs: list[tuple[dict[str, Any], dict[str, Any]]], header: str = "") -> str:
    """Markdown list of the verdicts that differ between an old and a new report of each sweep (matched by claim
    text), with the new entry's reason: what re-reporting under new rules changed."""
    word = lambda h: VERDICT_WORDS.get(h, h) if isinstance(h, bool) else str(h)  # noqa: E731
    lines = [header] if header else []
    for old, new in pairs:
        before = {e["claim"]: e for e in old["evidence"]}
        changed = [(before[e["claim"]], e) for e in new["evidence"]
                   if e["claim"] in before and before[e["claim"]]["holds"] != e["holds"]]
        lines += ["", f"## {new['sweep']}: {len(changed)} of {len(new['evidence'])} verdicts changed", ""]
        for o, e in changed:
            p = "" if e.get("p_value") is None else f" (raw p {e['p_value']:.3g}, Holm {e['p_adjusted']:.3g})"
            lines.append(f"- {e['claim']} [{e['metric']}]: **{word(o['holds'])} -> {word(e['holds'])}**{p}. "
                         f"{e['reason'].split('; ')[0]}.")
        added = [e for e in new["evidence"] if e["claim"] not in before]
        lines += [f"- new claim: {e['claim']} -> {word(e['holds'])}" for e in added]
    return "\n".join(lines).lstrip("\n") + "\n"
