"""Provenance of a trial: the commit, whether the tree was dirty, library versions and a fingerprint of the code.

The **fingerprint** is a SHA-256 over the source files that a trial executes, so two summaries with one
fingerprint ran the same code whatever the commit or dirty flag says (uncommitted edits included). What it covers
(:data:`FINGERPRINTED`): the packages ``envs``, ``agents``, ``equivariance``, ``physics`` (the simulation and the
learners), ``learn/run`` (training, evaluation, hyperparameter files), ``learn/io.py``, and from
``learn/evidence`` only ``trials.py`` (what a trial runs). Deliberately left out: ``sweep.py`` (it expands a
spec into parameters, and a summary records its parameters in full; its key hashes them), ``ledger.py``,
``report.py`` and this module, which only schedule or aggregate trials (editing the statistics must not make
every recorded trial stale), and tests, docs, results, README, benches,
tasks, deployment and the CLI, which a trial never runs. Files hashed: ``*.py`` and the data files those packages
load (``*.xml`` MuJoCo models, ``*.yaml``/``*.yml`` configs); ``__pycache__`` is skipped. The hash is over
sorted (relative path, bytes) pairs, so it does not depend on the checkout location, file order or mtimes. It is
coarse on purpose: an edit to any env changes the fingerprint of every trial, which at worst re-runs a trial
that did not need it, never reports one that did as current.

``dirty`` is whether ``git status`` shows changes in those same paths (other work in the tree does not count);
``commit`` is ``git rev-parse HEAD`` (``None`` outside a git checkout). All of it is computed once per process.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: (package, path inside it or "" for all of it) pairs whose files make up the fingerprint
FINGERPRINTED = (("symgym.envs", ""), ("symgym.agents", ""), ("symgym.equivariance", ""), ("symgym.physics", ""),
                 ("symgym.learn", "run"), ("symgym.learn", "io.py"), ("symgym.learn", "evidence/trials.py"))
SUFFIXES = (".py", ".xml", ".yaml", ".yml")
#: distributions whose versions a summary records (python is added from the interpreter)
VERSIONED = ("torch", "mujoco", "stable_baselines3", "gymnasium", "numpy")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot locate package {package!r} to fingerprint it")
    return Path(list(spec.submodule_search_locations)[0])


def fingerprinted_files() -> list[tuple[str, Path]]:
    """(name, path) of every file in the fingerprint; the name is ``TOP/relative/path`` (``envs/push.py``)."""
    out = []
    for package, sub in FINGERPRINTED:
        root = _package_dir(package)
        top = package.split(".", 1)[1]
        target = root / sub if sub else root
        files = [target] if target.is_file() else sorted(target.rglob("*"))
        for f in files:
            if f.is_file() and f.suffix in SUFFIXES and "__pycache__" not in f.parts:
                out.append((f"{top}/{f.relative_to(root).as_posix()}", f))
    return sorted(out)


def compute_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of the fingerprinted files' names and contents."""
    h = hashlib.sha256()
    for name, path in fingerprinted_files():
        data = path.read_bytes()
        # length-prefixed, so that no two different file sets can hash alike by shifting bytes between files
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


def _git(root: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


@functools.lru_cache(maxsize=1)
def current() -> dict[str, Any]:
    """``{commit, dirty, versions, fingerprint}`` of the code this process runs (computed once)."""
    files = fingerprinted_files()
    root = _package_dir("symgym.envs").parent
    commit = _git(root, "rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git(root, "status", "--porcelain", "--", *sorted({str(p) for _, p in files}))
        dirty = None if status is None else bool(status.strip())
    return {"commit": commit.strip() if commit else None, "dirty": dirty, "versions": _versions(),
            "fingerprint": compute_fingerprint()}


def fingerprint_of(summary: dict[str, Any]) -> str | None:
    """The fingerprint a trial summary recorded (``None``: recorded before provenance existed)."""
    return (summary.get("provenance") or {}).get("fingerprint")
