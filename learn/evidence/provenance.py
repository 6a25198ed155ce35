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

**Docstrings and comments do not make a trial stale.** A ``.py`` file whose bytes changed but whose syntax tree,
docstrings removed, did not (:func:`code_hash`: comments and layout never reach the tree) ran the same code. A
summary records these code hashes (``code``) beside the byte hashes; for summaries written before, the code hash of
the recorded bytes is recovered from git history (the file's version whose byte hash matches; a version never
committed cannot be recovered, and the trial stays stale).

``dirty`` is whether ``git status`` shows changes in those same paths (other work in the tree does not count);
``commit`` is ``git rev-parse HEAD`` (``None`` outside a git checkout). All of it is computed once per process.
"""
from __future__ import annotations

import ast
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


def _bytes_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    return _bytes_hash(path.read_bytes())


def code_hash(source: bytes) -> str | None:
    """SHA-256 (16 hex digits) of a Python source's syntax tree without its docstrings, positions or comments:
    equal for two sources that differ only in those (``None``: not parseable Python)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _current_code_hash(name: str, byte_hash: str) -> str | None:
    """Code hash of file ``name`` as on disk, provided its bytes still hash to ``byte_hash`` (else ``None``)."""
    path = dict(fingerprinted_files()).get(name)
    if path is None or not path.is_file():
        return None
    data = path.read_bytes()
    return code_hash(data) if _bytes_hash(data) == byte_hash else None


@functools.lru_cache(maxsize=None)
def _historic_code_hashes(name: str) -> dict[str, str | None]:
    """``{byte hash: code hash}`` of every committed version of fingerprinted file ``name`` (empty outside git)."""
    path = dict(fingerprinted_files()).get(name)
    if path is None:
        return {}
    where, file = str(path.parent), path.name
    log = _git(Path(where), "log", "--all", "--format=%H", "--", file)
    out: dict[str, str | None] = {}
    for commit in (log or "").split():
        try:
            blob = subprocess.run(["git", "-C", where, "show", f"{commit}:./{file}"], capture_output=True,
                                  timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        out.setdefault(_bytes_hash(blob), code_hash(blob))
    return out


def _code_of(name: str, byte_hash: str, prov: dict[str, Any]) -> str | None:
    """Code hash of the version of ``name`` with ``byte_hash`` that ``prov`` recorded: from the summary, else the
    file on disk if it is that version, else git history (``None``: unknown, or not a Python file)."""
    if not name.endswith(".py"):
        return None
    return ((prov.get("code") or {}).get(name) or _current_code_hash(name, byte_hash)
            or _historic_code_hashes(name).get(byte_hash))


def _same_code(name: str, recorded: str, prov: dict[str, Any], now_hash: str | None) -> bool:
    """Whether the file ``name`` recorded with byte hash ``recorded`` runs the same code as the version on disk
    (byte hash ``now_hash``): equal bytes, or for Python equal syntax trees without docstrings."""
    if now_hash is None:
        return False
    if now_hash == recorded:
        return True
    old = _code_of(name, recorded, prov)  # None for a data file: only Python has a code hash
    return old is not None and old == _current_code_hash(name, now_hash)


def _combine(hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(hashes):
        # length-prefixed names, so that no two different file sets can hash alike
        h.update(f"{len(name)}\0{name}\0{hashes[name]}\0".encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _process_hashes() -> tuple[tuple[str, str, str, str | None], ...]:
    """(name, path, byte hash, code hash or None) of every fingerprinted file, taken once per process."""
    out = []
    for name, path in fingerprinted_files():
        data = path.read_bytes()
        out.append((name, str(path.resolve()), _bytes_hash(data),
                    code_hash(data) if name.endswith(".py") else None))
    return tuple(out)


def current_file_hashes() -> dict[str, str]:
    """``{name: hash}`` of every fingerprinted file as it is on disk now (not cached: reports and reruns ask)."""
    return {name: _file_hash(path) for name, path in fingerprinted_files()}


def loaded_files() -> dict[str, str]:
    """``{name: hash}`` of the fingerprinted files this process ran: loaded modules and all data files."""
    loaded = {str(Path(f).resolve()) for m in list(sys.modules.values())
              if (f := getattr(m, "__file__", None)) and f.endswith(".py")}
    return {name: h for name, path, h, _ in _process_hashes() if not name.endswith(".py") or path in loaded}


def loaded_code_hashes() -> dict[str, str]:
    """``{name: code hash}`` of the Python files among :func:`loaded_files` (see :func:`code_hash`)."""
    files = loaded_files()
    return {name: c for name, _, _, c in _process_hashes() if name in files and c is not None}


def snapshot() -> None:
    """Take this process's file hashes and provenance now (a trial calls it before it runs, near its imports)."""
    _process_hashes()
    current()


def trial_provenance() -> dict[str, Any]:
    """What a trial summary records, at the end of the trial: :func:`current` plus the files it ran."""
    files = loaded_files()
    base = current()
    return {**base, "fingerprint": _combine(files), "tree_fingerprint": base["fingerprint"], "files": files,
            "code": loaded_code_hashes()}


def is_current(prov: dict[str, Any] | None, now: dict[str, str] | None = None) -> bool:
    """Whether a recorded provenance matches the code on disk (``now``: :func:`current_file_hashes`)."""
    if not prov or not prov.get("fingerprint"):
        return False
    now = current_file_hashes() if now is None else now
    if "files" in prov:
        return all(_same_code(name, h, prov, now.get(name)) for name, h in prov["files"].items())
    return prov["fingerprint"] == _combine(now)


def code_conflicts(provs: list[dict[str, Any] | None]) -> list[str]:
    """What makes these trials' code differ: file names recorded with different hashes (when every trial recorded
    its files), else the distinct whole-tree fingerprints (``tree:...``). Unrecorded trials are skipped."""
    recorded = [p for p in provs if p and p.get("fingerprint")]
    if all("files" in p for p in recorded):
        seen: dict[str, dict[str, dict]] = {}  # name -> byte hash -> a provenance that recorded it
        for p in recorded:
            for name, h in p["files"].items():
                seen.setdefault(name, {}).setdefault(h, p)
        differing = []
        for name, versions in seen.items():
            if len(versions) > 1:  # several byte versions: the same code only if their syntax trees agree
                codes = {_code_of(name, h, p) for h, p in versions.items()}
                if len(codes) > 1 or None in codes:
                    differing.append(name)
        return sorted(differing)
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
