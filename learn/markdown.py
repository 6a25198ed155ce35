"""Markdown for the generated pages: numbers to three significant digits, table cells, ledger verdicts as words.

Shared by :mod:`symgym.learn.pages` (README blocks, results pages) and :mod:`symgym.learn.papers` (the papers table).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

VERDICT_ORDER = ("true", "false", "inconclusive", "untestable", "underpowered")


def verdict(entry: dict[str, Any]) -> str:
    """The entry's ``holds`` as a word: true, false, inconclusive, untestable or underpowered."""
    holds = entry.get("holds")
    if holds is True or holds is False:
        return str(holds).lower()
    return str(holds) if holds is not None else "missing"


def span(values: Iterable[int]) -> str:
    """Sorted distinct integers as a range: "" (none), "5", or "3-5" (smallest to largest)."""
    v = sorted(set(values))
    return "" if not v else str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"


def fmt(x: Any) -> str:
    """Numbers to 3 significant digits (thousands separated); anything else as text."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"
    return str(x)


def cell(x: Any) -> str:
    """Text safe inside a markdown table cell."""
    return fmt(x).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
