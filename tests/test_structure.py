"""The package's shape: symgym.* import names, floors that only look down, registries, extras, agent kwargs."""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: lowest first; a module may import its own floor or lower (docs/design.md, "Floors")
FLOORS = {"equivariance": 1, "physics": 1, "envs": 2, "agents": 3, "learn": 4}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path):
    """(line, project module) for every import in the file, at any depth (function-level imports count too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg.mod import x` imports pkg.mod.x when that is a module, else pkg.mod (resolved in _graph)
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "symgym":
                parts = parts[1:]
            if parts and parts[0] in FLOORS:
                yield node.lineno, ".".join(parts)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    files = {_module_name(p): p for pkg in FLOORS for p in (ROOT / pkg).rglob("*.py")}
    for mod, path in files.items():
        targets = set()
        for _, name in _imports(path):
            while name and name not in files:  # `from pkg import name` where name is not a module
                name = name.rpartition(".")[0]
            if name and name != mod:
                targets.add(name)
        graph[mod] = targets
    return graph


def upward_imports(root: Path) -> list[str]:
    upward = []
    for pkg, floor in FLOORS.items():
        for path in (root / pkg).rglob("*.py"):
            for line, name in _imports(path):
                if FLOORS[name.split(".")[0]] > floor:
                    upward.append(f"{path.relative_to(root)}:{line} imports {name}")
    return upward


def test_no_module_imports_a_higher_floor():
    upward = upward_imports(ROOT)
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(mod: str, stack: list[str]) -> None:
        state[mod] = "open"
        for nxt in sorted(graph.get(mod, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [mod, nxt]) if nxt in stack else f"{mod}->{nxt}")
            elif nxt not in state:
                visit(nxt, stack + [mod])
        state[mod] = "done"

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [])
    assert not cycles, "\n".join(cycles)


def test_the_import_graph_check_can_fail(tmp_path):
    """Guard against a checker that passes vacuously: upward imports in a planted tree are found, at any depth."""
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "planted.py").write_text("from symgym.learn.run.runs import make_env\n"
                                                  "def f():\n    import symgym.agents.sac\n")
    found = upward_imports(tmp_path)
    assert len(found) == 2 and all(line.startswith("envs/planted.py") for line in found), found


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_folders_install_as_symgym_namespace_not_top_level_packages(tmp_path):
    out = _python("import importlib.util as u, symgym.envs\n"
                  "s = u.find_spec('envs')\n"
                  "print(symgym.envs.__file__)\n"
                  "print(s.origin if s else None)", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ours, top_level = out.stdout.split()
    assert Path(ours).resolve() == (ROOT / "envs" / "__init__.py").resolve()
    assert top_level == "None" or not Path(top_level).resolve().is_relative_to(ROOT), top_level


def test_gymnasium_make_with_module_prefix_needs_no_import(tmp_path):
    out = _python("import gymnasium as gym\n"
                  "env = gym.make('symgym.envs:SymPush-v0')\n"
                  "print(type(env.unwrapped).__module__)", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "symgym.envs.sym_push"


def test_registries_name_unknown_entries_and_missing_extras(monkeypatch):
    from symgym.agents import AGENTS
    from symgym.agents.registry import MissingExtraError, Registry, UnknownNameError, require
    from symgym.learn.bench import BENCHES
    from symgym.learn.tasks import TASKS

    for registry in (AGENTS, TASKS, BENCHES):
        with pytest.raises(UnknownNameError, match="no-such-thing"):
            registry.load("no-such-thing")
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the sweep extra were not installed
    with pytest.raises(MissingExtraError, match=r"symgym\[sweep\]"):
        require("ray")
    reg = Registry("widget", {"w": "ray.tune:Tuner"})
    with pytest.raises(UnknownNameError, match=r"widget 'w' is not available: .*symgym\[sweep\]"):
        reg.load("w")


@dataclass
class _Config:
    rate: float = 1.0
    count: int = 2
    name: str = "a"
    layers: list[int] = field(default_factory=lambda: [1])
    mode: str | float = "auto"
    maybe: int | None = None


@pytest.mark.parametrize("kwargs, fragment", [
    ({"rate": "fast"}, "rate='fast'"), ({"count": 2.5}, "count=2.5"), ({"count": True}, "count=True"),
    ({"layers": [1, "x"]}, "layers="), ({"name": 3}, "name=3"), ({"bogus": 1}, "bogus"),
])
def test_agent_kwargs_are_type_checked(kwargs, fragment):
    from symgym.agents.base import parse_config

    with pytest.raises(ValueError, match=fragment.replace("[", r"\[")):
        parse_config(_Config, kwargs, "toy")


def test_agent_kwargs_accept_well_typed_values():
    from symgym.agents.base import parse_config

    cfg = parse_config(_Config, {"rate": 3, "layers": (4, 5), "mode": 0.1, "maybe": None}, "toy")
    assert cfg.rate == 3 and cfg.mode == 0.1 and cfg.maybe is None


def test_an_env_without_its_extra_names_the_extra(monkeypatch):
    from symgym.agents.registry import MissingExtraError
    from symgym.learn.run.runs import make_env

    for name in [m for m in sys.modules if m.split(".")[0] in ("pybullet", "pybullet_data")
                 or m.startswith("symgym.envs.tabletop.") or m.startswith("symgym.envs.panda")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pybullet", None)
    monkeypatch.setitem(sys.modules, "pybullet_data", None)
    with pytest.raises(MissingExtraError, match=r"TabletopStacking-v0.*symgym\[tabletop\]"):
        make_env("TabletopStacking-v0")


def test_training_state_that_outlasts_a_sitting_is_where_git_tracks_it():
    """A fresh checkout holds only what git holds: the long studies' carried state must not be ignored, the
    regenerable caches must be (so a `git add` of results/ never sweeps them in)."""
    import shutil

    from symgym.learn.tasks.dhn.full import Plan
    from symgym.learn.tasks.iaemu.config import IAEmuConfig
    from symgym.learn.tasks.iaemu.pilot_check import CACHE as PILOT_RUNS
    from symgym.learn.tasks.iaemu.task import seed_cache_path

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: Path) -> bool:
        proc = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT)
        assert proc.returncode in (0, 1), f"git check-ignore failed on {path}"
        return proc.returncode == 0

    plan, cfg = Plan(), IAEmuConfig()
    carried = [seed_cache_path(cfg, 0, Path("results"), "paper"), plan.checkpoints / "key" / "unit" / "checkpoint.pt",
               PILOT_RUNS / "run.json", PILOT_RUNS / "run.partial.pt"]
    assert not [p for p in carried if ignored(p)]
    cached = [seed_cache_path(cfg, 0, Path("results"), "baselines"), plan.cache / "data.npz"]
    assert all(ignored(p) for p in cached)
