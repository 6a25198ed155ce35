"""One registry helper: a CLI name -> ``"module:attribute"`` map, imported only when used.

Agents, scientific tasks and benchmarks are all looked up this way, so an unknown name and an entry whose
optional dependencies are missing give the same kind of one-line error everywhere.
"""
from __future__ import annotations

import importlib
from typing import Any, Iterator, Mapping


class UnknownNameError(KeyError):
    """An unknown registry name (a ``KeyError`` whose message lists the known names)."""

    def __init__(self, kind: str, name: str, known: list[str], detail: str = ""):
        super().__init__(name)
        self.kind, self.name, self.known, self.detail = kind, name, known, detail

    def __str__(self) -> str:
        if self.detail:
            return f"{self.kind} {self.name!r} is not available: {self.detail}"
        return f"unknown {self.kind} {self.name!r}; known {self.kind}s: {', '.join(self.known)}"


class Registry(Mapping[str, str]):
    """Lazy ``name -> "package.module[:attribute]"`` map. ``load(name)`` imports and returns the target."""

    def __init__(self, kind: str, entries: Mapping[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> str:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, name: str, target: str) -> None:
        self._entries[name] = target

    def check(self, name: str) -> None:
        """Raise :class:`UnknownNameError` unless ``name`` is registered (imports nothing)."""
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, sorted(self._entries))

    def load(self, name: str) -> Any:
        self.check(name)
        module, _, attr = self._entries[name].partition(":")
        try:
            obj = importlib.import_module(module)
            return getattr(obj, attr) if attr else obj
        except ImportError as e:
            raise UnknownNameError(self.kind, name, sorted(self._entries), missing_extra_message(e)) from e


#: which optional extra installs a top-level module (``pip install "symgym[EXTRA]"``)
EXTRAS: dict[str, str] = {
    "pybullet": "tabletop", "pybullet_data": "tabletop", "open3d": "tabletop",
    "roslibpy": "ros", "websockets": "ros",
    "e3nn": "science", "trimesh": "science",
    "pytorch_mppi": "bench",
    "tensorboard": "logging", "rich": "logging",
    "imageio_ffmpeg": "video",
    "ray": "sweep", "rliable": "sweep", "pyarrow": "sweep",
    "halotools": "halotools",
}


def missing_extra_message(error: ImportError) -> str:
    """One line naming the extra that provides the module an ``ImportError`` is about."""
    top = (getattr(error, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra:
        return f"needs the optional package {top!r}: pip install 'symgym[{extra}]'"
    return str(error)


def require(module: str) -> Any:
    """Import an optional dependency or raise ``MissingExtraError`` whose one-line message names the extra.

    The error keeps the missing module's ``name``, so a caller that re-wraps it still finds the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(missing_extra_message(e), name=e.name) from e


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which ``symgym[extra]`` provides it."""
