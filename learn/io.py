"""Output for the run layer and above: figures, plus the atomic writers of :mod:`symgym.agents.io`."""
from __future__ import annotations

import os
from pathlib import Path

from symgym.agents.io import atomic_path, dumps, json_default, save_torch, write_json, write_text

__all__ = ["atomic_path", "dumps", "json_default", "save_figure", "save_torch", "write_json", "write_text"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)
