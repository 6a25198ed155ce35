"""A core-only install (no extras): every command either works or says in one line which extra it needs.

How the core environment is made, and why: a fresh ``python -m venv`` (no system site-packages) whose
site-packages holds links to exactly the distributions ``pip install symgym`` would install, found by walking
symgym's requirements without extras (markers evaluated) through ``importlib.metadata``, plus symgym's own
editable-install hook. Downloading the core from a registry would cost minutes and a multi-GB torch; linking
the same installed files gives the same import graph offline, and the extras' packages (pybullet, roslibpy,
websockets, tensorboard, rich, ray, rliable, e3nn, imageio-ffmpeg, ...) are genuinely not importable there —
the first test checks that.
"""
import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow

# websockets is not here: mujoco 4 (through mujoco-studio) installs it, so a core install has it and
# `symgym sim-robot` works there
EXTRA_MODULES = ["pybullet", "pybullet_data", "open3d", "roslibpy", "e3nn", "trimesh", "pytorch_mppi",
                 "tensorboard", "rich", "imageio_ffmpeg", "ray", "rliable"]


def core_distributions(root: str = "symgym") -> set[str]:
    """Distribution names ``pip install symgym`` pulls in (no extras), as installed in this interpreter."""
    env = {**default_environment(), "extra": ""}
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        dist = metadata.distribution(name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return seen


@pytest.fixture(scope="module")
def core_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # symgym itself: its editable-install hook and metadata, as `pip install -e .` left them in this venv
    purelib = Path(sysconfig.get_paths()["purelib"])
    for hook in [*purelib.glob("__editable__*symgym*"), *purelib.glob("symgym-*.dist-info")]:
        (site / hook.name).symlink_to(hook)
    for name in core_distributions() - {"symgym"}:
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return venv / "bin" / "python"


def symgym_cli(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), "-m", "symgym.learn.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**env, "OMP_NUM_THREADS": "1"}, timeout=600)


def test_the_core_venv_has_the_core_and_none_of_the_extras(core_python):
    code = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    found = subprocess.run([str(core_python), "-c", code, *EXTRA_MODULES], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == ""
    ok = subprocess.run([str(core_python), "-c", "import symgym.envs, symgym.agents, symgym.learn.cli, torch, "
                         "stable_baselines3, escnn, mujoco"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("args, extra", [
    (["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "10", "--tensorboard", "tb"], "logging"),
    (["train", "--agent", "transporter", "--env", "TabletopStacking-v0", "--steps", "1"], "tabletop"),
    (["train", "--agent", "sac", "--env", "PandaPush-v0", "--steps", "10"], "arm"),
    (["demos", "--env", "TabletopStacking-v0", "--n", "1", "--out", "d.npz"], "tabletop"),
    (["deploy", "--run", "r", "--rosbridge", "ws://127.0.0.1:9"], "ros"),
    (["sweep", "learn/bench/specs/sac.yaml", "--quick"], "sweep"),
    (["report", "sac", "--out", "{trials}"], "sweep"),
    (["task", "relaxed-e3", "--quick"], "science"),
    (["bench", "mppi", "--quick"], "sweep"),  # a benchmark is a sweep spec: Ray is asked for first
])
def test_each_command_names_its_missing_extra_in_one_line(core_python, tmp_path, args, extra):
    repo = Path(__file__).parents[1]
    if "{trials}" in args:  # the committed sac trial summaries, copied beside the (watched) working directory
        results = tmp_path.parent / f"{tmp_path.name}-results"
        shutil.copytree(repo / "results" / "trials" / "sac", results / "trials" / "sac")
        args = [str(results) if a == "{trials}" else a for a in args]
    args = [str(repo / a) if a.endswith(".yaml") else a for a in args]
    out = symgym_cli(core_python, *args, cwd=tmp_path)
    assert out.returncode == 2, (args, out.stderr[-2000:])
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"pip install 'symgym[{extra}]'" in out.stderr, out.stderr
    # no file written; `bench` creates its (empty) results directory before a sweep bench asks for Ray
    assert not [p for p in tmp_path.rglob("*") if not p.is_dir()]
    assert args[0] == "bench" or list(tmp_path.iterdir()) == []


def test_envs_lists_every_id_and_marks_those_whose_extra_is_missing(core_python, tmp_path):
    out = symgym_cli(core_python, "envs", cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr[-2000:]
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "symgym[tabletop]" in lines["TabletopStacking-v0"] and "symgym[ros]" in lines["RosArm-v0"]
    assert "symgym[arm]" in lines["PandaPush-v0"] and "not installed" not in lines["SymPush-v0"]


def test_core_training_and_eval_work_without_extras(core_python, tmp_path):
    """The core trains (no rich: no progress bar) and evaluates with a video (no imageio-ffmpeg: a GIF)."""
    out = symgym_cli(core_python, "train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "200", "--out", "r",
                     "--agent-kwargs", '{"learning_starts": 100, "batch_size": 16, "net_arch": [16]}', cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    out = symgym_cli(core_python, "eval", "--run", "r", "--episodes", "1", "--video", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "eval.gif" in out.stdout and (tmp_path / "r" / "eval.gif").is_file()
