"""The deploy log: one JSON record per line for every reset, command and reading, with timestamps.

Append-then-finalise: records go to ``LOG.part`` line by line, each flushed (and the file fsynced every
``SYNC_EVERY`` records and at the end), and only a finished deployment renames it to ``LOG``. So ``LOG`` is always
complete; a crash leaves ``LOG.part``, whose every line but possibly a cut-off last one is whole, and
:func:`read_log` reads either (``symgym replay`` accepts both).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from symgym.agents.io import json_default

SYNC_EVERY = 50
PART = ".part"


class DeployLog:
    """Append-only JSONL log, finalised by :meth:`close` (rename ``LOG.part`` -> ``LOG``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + PART)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = open(self.part, "w", encoding="utf8")
        self._n = 0

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, default=json_default) + "\n")
        self._file.flush()
        self._n += 1
        if self._n % SYNC_EVERY == 0:
            os.fsync(self._file.fileno())

    def close(self) -> Path:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.part, self.path)
        return self.path


def read_log(path: str | Path) -> list[dict]:
    """Records of a deploy log (or of the ``.part`` a crash left); a final line cut off by a crash is skipped."""
    path = Path(path)
    if not path.is_file():
        part = path.with_name(path.name + PART)
        if part.is_file():
            path = part
        else:
            raise FileNotFoundError(f"deploy log {path} does not exist")
    records = []
    lines = path.read_text(encoding="utf8").splitlines()
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"deploy log {path} line {i + 1} is not JSON") from None
        if not isinstance(record, dict) or "event" not in record:
            raise ValueError(f"deploy log {path} line {i + 1} is not a deploy record")
        records.append(record)
    return records
