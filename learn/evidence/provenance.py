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
sorted (relative path, bytes) pairs, so it does not depend on the checkout location, file order or mtimes. The whole-tree
hash is coarse: an edit to any env changes it for every trial.

**Per trial, the files it ran.** A trial summary also records ``files``, ``{name: hash}`` of only the fingerprinted
files this trial's process loaded (the modules in ``sys.modules`` plus every data file), with the hashes taken when
the process first asked (about when it imported them; a Ray worker reuses its imports across trials, and so its
hashes). Its ``fingerprint`` is then the hash over those entries, and ``tree_fingerprint`` the whole-tree one.
A trial is **current** when every file it recorded still has the recorded hash (:func:`is_current`): editing
``agents/hep.py`` leaves a SAC trial current, editing ``agents/sac.py`` makes it stale. Two trials ran **the same
code** when no file recorded by both differs (:func:`code_conflicts`). Summaries written before ``files`` existed
fall back to the whole-tree fingerprint (compared with a newer trial's ``tree_fingerprint``).

``dirty`` is whether ``git status`` shows changes in those same paths (other work in the tree does not count);
``commit`` is ``git rev-parse HEAD`` (``None`` outside a git checkout). All of it is computed once per process.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import platform
import subprocess
import sys
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
    return _combine({name: _file_hash(path) for name, path in fingerprinted_files()})


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _combine(hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(hashes):
        # length-prefixed names, so that no two different file sets can hash alike
        h.update(f"{len(name)}\0{name}\0{hashes[name]}\0".encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _process_hashes() -> tuple[tuple[str, str, str], ...]:
    """(name, path, hash) of every fingerprinted file, taken once per process."""
    return tuple((name, str(path.resolve()), _file_hash(path)) for name, path in fingerprinted_files())


def current_file_hashes() -> dict[str, str]:
    """``{name: hash}`` of every fingerprinted file as it is on disk now (not cached: reports and reruns ask)."""
    return {name: _file_hash(path) for name, path in fingerprinted_files()}


def loaded_files() -> dict[str, str]:
    """``{name: hash}`` of the fingerprinted files this process ran: loaded modules and all data files."""
    loaded = {str(Path(f).resolve()) for m in list(sys.modules.values())
              if (f := getattr(m, "__file__", None)) and f.endswith(".py")}
    return {name: h for name, path, h in _process_hashes() if not name.endswith(".py") or path in loaded}


def snapshot() -> None:
    """Take this process's file hashes and provenance now (a trial calls it before it runs, near its imports)."""
    _process_hashes()
    current()


def trial_provenance() -> dict[str, Any]:
    """What a trial summary records, at the end of the trial: :func:`current` plus the files it ran."""
    files = loaded_files()
    base = current()
    return {**base, "fingerprint": _combine(files), "tree_fingerprint": base["fingerprint"], "files": files}


def is_current(prov: dict[str, Any] | None, now: dict[str, str] | None = None) -> bool:
    """Whether a recorded provenance matches the code on disk (``now``: :func:`current_file_hashes`)."""
    if not prov or not prov.get("fingerprint"):
        return False
    now = current_file_hashes() if now is None else now
    if "files" in prov:
        return all(now.get(name) == h for name, h in prov["files"].items())
    return prov["fingerprint"] == _combine(now)


def code_conflicts(provs: list[dict[str, Any] | None]) -> list[str]:
    """What makes these trials' code differ: file names recorded with different hashes (when every trial recorded
    its files), else the distinct whole-tree fingerprints (``tree:...``). Unrecorded trials are skipped."""
    recorded = [p for p in provs if p and p.get("fingerprint")]
    if all("files" in p for p in recorded):
        seen: dict[str, set[str]] = {}
        for p in recorded:
            for name, h in p["files"].items():
                seen.setdefault(name, set()).add(h)
        return sorted(name for name, hs in seen.items() if len(hs) > 1)
    trees = sorted({p.get("tree_fingerprint") or p["fingerprint"] for p in recorded})
    return [f"tree:{t}" for t in trees] if len(trees) > 1 else []


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
