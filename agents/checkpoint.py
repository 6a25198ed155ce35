"""The one checkpoint scheme: a run directory holds the agent's files plus a manifest naming them.

``checkpoint.json`` (written last, atomically, so a manifest never names a half-written file)::

    {"format": 2, "symgym_version": "0.2.0", "agent": "sac", "class": "SACAgent", "seed": 0,
     "config": {...the agent's config dataclass, without a seed...},
     "files": {"model": "model.zip"}, "state": {...small JSON extras: a training record, a loss curve...}}

Only :meth:`symgym.agents.base.Agent.save` / ``load`` call this module (save/load is written once, in the base
class); an agent contributes its files and extras through hooks. A missing, corrupt or mismatched checkpoint raises
:class:`CheckpointError` (a ``ValueError``, so the CLI reports it in one line).
"""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from symgym.agents.io import atomic_path, write_json

MANIFEST = "checkpoint.json"
FORMAT = 2
T = TypeVar("T")


class CheckpointError(ValueError):
    """A run directory's checkpoint is missing, damaged, or belongs to another agent."""


def symgym_version() -> str:
    try:
        return metadata.version("symgym")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "unknown"


def write_checkpoint(run_dir: str | Path, agent: str, cls: str, files: Mapping[str, tuple[str, Callable[[Path], Any]]],
                     config: Mapping[str, Any], seed: int, state: Mapping[str, Any] | None = None) -> Path:
    """Write each ``role -> (file name, writer(tmp_path))`` atomically, then the manifest naming them."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for role, (name, writer) in files.items():
        with atomic_path(run_dir / name) as tmp:
            writer(tmp)
        names[role] = name
    return write_json(run_dir / MANIFEST, {"format": FORMAT, "symgym_version": symgym_version(), "agent": agent,
                                            "class": cls, "seed": int(seed), "config": dict(config),
                                            "files": names, "state": dict(state or {})})


def read_checkpoint(run_dir: str | Path, agent: str | None = None, cls: str | None = None) -> dict[str, Any]:
    """The manifest of ``run_dir``, checked: it exists, parses, is for ``agent``/``cls`` and its files exist."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir}: {path.name} does not exist")
    try:
        manifest = json.loads(path.read_text())
        fmt, kind, saved_cls = manifest["format"], manifest["agent"], manifest["class"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"corrupt checkpoint manifest {path}: {e}") from e
    if fmt != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {fmt!r}; this symgym reads format {FORMAT} "
                              f"(format 1 predates the one save/load: re-train the run)")
    try:
        files = dict(manifest["files"])
        manifest["seed"], manifest["config"], manifest["state"] = (int(manifest["seed"]), dict(manifest["config"]),
                                                                   dict(manifest["state"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint manifest {path}: {type(e).__name__}: {e}") from e
    if agent is not None and kind != agent:
        raise CheckpointError(f"checkpoint in {run_dir} is for agent {kind!r}, not {agent!r}")
    if cls is not None and saved_cls != cls:
        raise CheckpointError(f"checkpoint in {run_dir} holds a {saved_cls}, not a {cls}")
    for role, name in files.items():
        if not (run_dir / name).is_file():
            raise CheckpointError(f"checkpoint in {run_dir} is incomplete: its {role} file {name} is missing")
    return manifest


class CheckpointFiles:
    """The files of a read checkpoint, by role: what an agent's ``restore_files`` hook loads from."""

    def __init__(self, run_dir: str | Path, manifest: Mapping[str, Any]):
        self.run_dir, self.names = Path(run_dir), dict(manifest["files"])

    def __contains__(self, role: str) -> bool:
        return role in self.names

    def load(self, role: str, loader: Callable[[Path], T]) -> T:
        """``loader(path)`` for the file of ``role``; any failure becomes a CheckpointError."""
        if role not in self.names:
            raise CheckpointError(f"checkpoint in {self.run_dir} has no {role} file")
        path = self.run_dir / self.names[role]
        try:
            return loader(path)
        except CheckpointError:
            raise
        except Exception as e:  # torch/zip/pickle/SB3 raise many types for a damaged file
            raise CheckpointError(f"corrupt checkpoint file {path}: {type(e).__name__}: {e}") from e
