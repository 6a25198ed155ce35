"""Malformed CLI input: exit 2, one line on stderr, no traceback, nothing new on disk (issue #30).

A hypothesis property test generates bad numbers, types, files and JSON/YAML shapes and calls ``main(argv)``
in-process; the hand-picked cases of the issue stay below as regression tests.
"""
import contextlib
import io
import json
import os
import socket
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symgym.learn.cli import main

MAX_SEED = 2**32 - 1


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """cwd = an empty directory (default run/results paths land here) with a few input files beside it."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "list.yml").write_text("- SymPush-v0\n- 3\n")
    (inputs / "scalar.yml").write_text("42\n")
    (inputs / "entry-list.yml").write_text("SymPush-v0: [1, 2]\n")
    (inputs / "bad.yml").write_text("SymPush-v0: {gamma: [\n")
    (inputs / "steps.yml").write_text("SymPush-v0: {n_timesteps: -3}\n")
    (inputs / "afile").write_text("not a run")
    (inputs / "notdemos.npz").write_text("not an npz")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def assert_refused(argv: list[str], root: Path, fragment: str = "") -> str:
    before = snapshot(root)
    code, _, err = call(argv)
    assert code == 2, (argv, err)
    assert len(err.strip().splitlines()) == 1, (argv, err)
    assert "Traceback" not in err and err.startswith("symgym"), (argv, err)
    assert snapshot(root) == before, (argv, snapshot(root) - before)
    assert fragment in err, (argv, err)
    return err


# -- the property test -------------------------------------------------------------------------------------
TRAIN = ["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "10"]
bad_ints = st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEED + 1),
                     st.sampled_from(["1.5", "ten", "", "0x10", "1e3", "nan"]))
bad_json = st.one_of(st.sampled_from(["{oops", "[1, 2]", "3", "null", '"text"', "{'single': 1}", "{1: 2}"]),
                     st.lists(st.integers(), max_size=3).map(json.dumps))
bad_agent_kwargs = st.one_of(
    st.builds(lambda v: {"batch_size": v}, st.integers(max_value=0)),
    st.builds(lambda v: {"gamma": v}, st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0001,
                                                                                      allow_infinity=False))),
    st.builds(lambda v: {"learning_rate": v}, st.floats(max_value=0.0, allow_infinity=False)),
    st.builds(lambda v: {"tau": v}, st.floats(min_value=1.5, max_value=1e9)),
    st.builds(lambda v: {"buffer_size": v}, st.one_of(st.integers(max_value=0), st.text(max_size=5))),
    st.builds(lambda v: {"net_arch": v}, st.one_of(st.just([0]), st.just("wide"), st.just([-4, 8]))),
    st.builds(lambda k: {k: 1}, st.sampled_from(["learning_rat", "gama", "batchsize"])),
)
bad_env_kwargs = st.one_of(
    st.builds(lambda v: {"max_episode_steps": v}, st.one_of(st.integers(max_value=0), st.integers(min_value=10**6 + 1))),
    st.builds(lambda v: {"render_mode": v}, st.sampled_from(["human", "ansi", "rgb"])),
    st.builds(lambda k: {k: 0.3}, st.sampled_from(["wnd", "windd", "gravity"])),
)
bad_argv = st.one_of(
    bad_ints.map(lambda v: [*TRAIN, "--seed", str(v)]),
    st.one_of(st.integers(max_value=-1), st.integers(min_value=10**8 + 1)).map(lambda v: [*TRAIN[:-1], str(v)]),
    bad_ints.map(lambda v: [*TRAIN, "--eval-episodes", str(v)]),
    bad_json.map(lambda v: [*TRAIN, "--agent-kwargs", v]),
    bad_json.map(lambda v: [*TRAIN, "--env-kwargs", v]),
    bad_agent_kwargs.map(lambda v: [*TRAIN, "--agent-kwargs", json.dumps(v)]),
    bad_env_kwargs.map(lambda v: [*TRAIN, "--env-kwargs", json.dumps(v)]),
    st.sampled_from(["missing.yml", "../inputs/list.yml", "../inputs/scalar.yml", "../inputs/entry-list.yml",
                     "../inputs/bad.yml", "../inputs/steps.yml", ".."]).map(
        lambda f: ["train", "--agent", "sac", "--env", "SymPush-v0", "--hyperparams", f]),
    st.sampled_from(["missing.npz", "../inputs"]).map(
        lambda f: ["train", "--agent", "hep", "--env", "HepPickPlace-v0", "--steps", "5", "--demos", f]),
    st.text(alphabet="abcXYZ-_09", min_size=1, max_size=12).map(lambda e: ["train", "--agent", "sac", "--env", e]),
    st.text(alphabet="abcxyz-", min_size=1, max_size=10).map(lambda a: ["train", "--agent", a, "--env",
                                                                        "SymPush-v0"]),
    st.sampled_from(["missing-run", "../inputs/afile", "../inputs"]).map(lambda r: ["eval", "--run", r]),
    bad_ints.map(lambda v: ["eval", "--run", "r", "--episodes", str(v)]),
    bad_ints.map(lambda v: ["demos", "--env", "SymPush-v0", "--n", str(v), "--out", "d.npz"]),
    st.text(alphabet="abc-", min_size=1, max_size=8).map(lambda n: ["task", n]),
    st.text(alphabet="abc-", min_size=1, max_size=8).map(lambda n: ["bench", n, "--quick"]),
    bad_ints.map(lambda v: ["bench", "env-speed", "--seed", str(v)]),
    st.sampled_from([[], ["nope"], ["train", "--bogus"], ["eval"], ["demos", "--env", "SymPush-v0"]]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=bad_argv)
def test_malformed_input_is_one_line_exit_2_and_writes_nothing(workdir, argv):
    assert_refused(argv, workdir)


# -- the issue's hand-picked cases -------------------------------------------------------------------------
@pytest.mark.parametrize("extra, fragment", [
    (["--hyperparams", "missing.yml"], "hyper-parameter file missing.yml does not exist"),          # silently wrong
    (["--hyperparams", "../inputs/list.yml"], "must map env ids to settings, got a list"),          # traceback
    (["--env-kwargs", '{"render_mode": "human"}'], "render_mode 'human'"),                          # both
    (["--seed", str(2**40)], f"expected an integer in [0, {MAX_SEED}]"),                            # half-written
    (["--env-kwargs", '{"max_episode_steps": -1}'], "max_episode_steps=-1 is out of bounds"),       # no bounds
    (["--steps", str(10**30)], "expected an integer in [0, 100000000]"),
    (["--agent-kwargs", '{"batch_size": 0}'], "batch_size=0 is out of bounds: expected an integer in [1,"),
    (["--agent-kwargs", '{"gamma": 5}'], "gamma=5 is out of bounds: expected a number in (0, 1]"),
])
def test_issue_cases_for_train(workdir, extra, fragment):
    assert_refused(["train", "--agent", "sac", "--env", "SymPush-v0", *extra], workdir, fragment)


def test_imitation_inputs_are_checked_before_the_run_dir(workdir):
    hep = ["train", "--agent", "hep", "--env", "HepPickPlace-v0", "--steps", "5"]
    assert_refused([*hep, "--demos", "missing.npz"], workdir, "demos file missing.npz does not exist")
    assert_refused([*hep, "--agent-kwargs", '{"n_demos": 0}'], workdir, "n_demos=0 is out of bounds")
    assert_refused([*hep, "--demos", "../inputs/notdemos.npz"], workdir, "not a demonstrations file")


def test_rosarm_without_a_bridge_is_refused_before_the_run_dir(workdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert_refused(["train", "--agent", "sac", "--env", "RosArm-v0", "--env-kwargs",
                    json.dumps({"url": f"ws://127.0.0.1:{port}"})], workdir, f"cannot reach rosbridge at ws://127.0.0.1:{port}")


def test_read_only_out_is_one_line(workdir, monkeypatch):
    import symgym.learn.run.inputs as inputs

    real = os.access
    monkeypatch.setattr(inputs.os, "access", lambda p, mode: False if "ro" in str(p) else real(p, mode))
    os.mkdir("ro")
    assert_refused([*TRAIN, "--out", "ro/run"], workdir, "ro/run cannot be written: ro is read-only")
    assert_refused([*TRAIN, "--out", "../inputs/afile/run"], workdir, "is a file, not a directory")


def test_a_run_config_with_non_mapping_env_kwargs_is_named(workdir):
    run = Path("run")
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"agent": "sac", "env": "SymPush-v0", "steps": 1, "seed": 0,
                                                 "out": "run", "demos": None, "env_kwargs": [1],
                                                 "agent_kwargs": {}}))
    (run / "checkpoint.json").write_text("{}")
    assert_refused(["eval", "--run", "run"], workdir, "env_kwargs is [1], expected a mapping")


def test_eval_of_a_file_says_it_is_a_file(workdir):
    assert_refused(["eval", "--run", "../inputs/afile"], workdir, "../inputs/afile is a file, not a run directory")


@pytest.fixture
def without(monkeypatch):
    """Simulate an install without an optional package: importing it fails as if it were absent."""
    def block(*modules):
        for name in modules:
            monkeypatch.setitem(sys.modules, name, None)  # `import name` -> ImportError; find_spec -> None
        for name in [m for m in sys.modules if m.startswith(("symgym.envs.tabletop", "symgym.envs.panda"))]:
            monkeypatch.delitem(sys.modules, name)  # re-import under the block
    return block


def test_tensorboard_without_its_extra(workdir, without):
    without("tensorboard")
    assert_refused([*TRAIN, "--tensorboard", "tb"], workdir, "pip install 'symgym[logging]'")


def test_envs_marks_ids_whose_extra_is_missing(workdir, without):
    without("pybullet", "pybullet_data", "roslibpy")
    code, out, err = call(["envs"])
    assert code == 0 and err == ""
    lines = {l.split()[0]: l for l in out.splitlines()[1:]}
    assert "pip install 'symgym[tabletop]'" in lines["TabletopStacking-v0"]
    assert "pip install 'symgym[arm]'" in lines["PandaPush-v0"]
    assert "pip install 'symgym[ros]'" in lines["RosArm-v0"]
    assert "O(2)" in lines["SymPush-v0"] and "not installed" not in lines["SymPush-v0"]


def test_python_api_names_the_missing_extra(without):
    import symgym.envs  # noqa: F401

    without("pybullet", "pybullet_data")
    with pytest.raises(ImportError, match=r"pip install 'symgym\[tabletop\]'"):
        gym.make("TabletopStacking-v0")
    with pytest.raises(ImportError, match=r"pip install 'symgym\[arm\]'"):
        gym.make("PandaPush-v0").reset(seed=0)


@pytest.mark.parametrize("argv, extra", [
    (["deploy", "--run", "r", "--rosbridge", "ws://127.0.0.1:9"], "ros"),
    (["sim-robot", "--port", "1"], "ros"),
    (["train", "--agent", "transporter", "--env", "TabletopStacking-v0", "--steps", "1"], "tabletop"),
    (["demos", "--env", "TabletopStacking-v0", "--n", "1", "--out", "d.npz"], "tabletop"),
    (["eval", "--run", "r", "--env", "PandaPush-v0"], "arm"),
])
def test_every_command_names_a_missing_extra(workdir, without, argv, extra):
    without("roslibpy", "websockets", "pybullet", "pybullet_data")
    if argv[0] == "eval":  # a complete run to evaluate on an env whose extra is missing
        assert call(["train", "--agent", "mppi", "--env", "SymReach-v0", "--steps", "0", "--out", "r"])[0] == 0
    assert_refused(argv, workdir, f"pip install 'symgym[{extra}]'")


def test_sim_robot_on_a_busy_port_is_one_line(workdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        err = assert_refused(["sim-robot", "--port", str(s.getsockname()[1])], workdir)
    assert "in use" in err.lower() or "busy" in err.lower()


# -- help ------------------------------------------------------------------------------------------------
MINE = ("envs", "train", "eval", "demo", "demos", "task", "bench")


def test_help_has_examples_names_and_no_markup():
    from symgym.learn.cli import build_parser

    parser = build_parser()
    top = parser.format_help()
    assert "examples:" in top and "symgym train --resume" in top and "``" not in top
    subs = next(a for a in parser._actions if a.dest == "command").choices
    for name in MINE:
        sub = subs[name]
        text = sub.format_help()
        assert "``" not in text and ":class:" not in text, name
        for action in sub._actions:
            assert action.help, f"symgym {name} {action.option_strings or action.dest} has no help"
    train_help = subs["train"].format_help()
    for listed in ("sac, ", "SymPush-v0", "TabletopStacking-v0", "--resume", "--force"):
        assert listed in train_help
    assert "env-speed" in subs["bench"].format_help() and "dhn" in subs["task"].format_help()
    assert call(["--help"])[0] == 0
