"""RosArm-v0, `symgym deploy` and the rosbridge digital twin, over real WebSockets on 127.0.0.1.

Every server binds port 0 (a free port) on loopback and runs in a thread (or, once, a subprocess
through the CLI); every wait is bounded by the configs' staleness/connect timeouts.
"""
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import symgym.envs  # noqa: F401
from symgym.envs.ros import RosArmEnv, RosFault, clip_command, parse_rosbridge_url
from symgym.envs.ros_config import (DEFAULT_CONFIG, MessageError, decode_joint_state, decode_pose, encode_joint_state,
                             encode_pose, load_config)
from symgym.equivariance import O2
from symgym.learn.cli import main as symgym
from symgym.learn.deploy.deploy import deploy, read_log, replay_in_sim
from symgym.learn.run.evaluate import evaluate
from symgym.learn.deploy.twin import Fault

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def config_dict(**overrides) -> dict:
    """The default twin config, sped up for tests: the twin is lock-step, so the rate only paces wall time."""
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    # generous timeouts: CI machines are shared, and a missed deadline here would be a false fault
    cfg.update({"control_rate_hz": 200, "stale_timeout_s": 1.0, "connect_timeout_s": 10})
    for key, value in overrides.items():
        if isinstance(value, dict):
            cfg[key] = {**cfg.get(key, {}), **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, **overrides) -> Path:
    path.write_text(yaml.safe_dump(config_dict(**overrides)))
    return path


@pytest.fixture
def twin(sim_robot_servers):
    return lambda fault=None, **overrides: sim_robot_servers("SymPush-v0", config=config_dict(**overrides), port=0,
                                                             fault=fault)


def sim_successes(run_dir, seeds) -> list[bool]:
    from symgym.learn.run.runs import load_run

    agent, _ = load_run(run_dir)
    return [evaluate(agent, "SymPush-v0", episodes=1, seed=s, progress=False).success_rate == 1.0 for s in seeds]


@pytest.fixture(scope="module")
def e2e_seeds(linear_run):
    """Consecutive seeds on which the linear policy both succeeds and fails in simulation."""
    outcomes = sim_successes(linear_run, range(10_000, 10_030))
    wins = [i for i, ok in enumerate(outcomes) if ok]
    assert wins, "the scripted test policy must succeed on some SymPush seeds"
    start = max(0, wins[0] - 2)
    return 10_000 + start, 4


def wait_until(predicate, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def steps_in(log):
    return [r for r in read_log(log) if r["event"] == "step"]


# -- config and wire format ----------------------------------------------------------------------
def test_default_config_mirrors_sympush():
    cfg = load_config()
    assert cfg.mirrors == "SymPush-v0" and cfg.command.type == "geometry_msgs/Twist"
    assert cfg.pusher.type == "sensor_msgs/JointState" and cfg.pusher.joints == ("pusher_x", "pusher_y")
    sim = gym.make("SymPush-v0").unwrapped
    # the action scale and default rate come from the mirrored env itself
    assert cfg.speed_per_unit_action == sim.max_speed
    assert cfg.control_rate_hz == pytest.approx(1 / (sim.model.opt.timestep * sim.frame_skip))
    assert cfg.max_speed >= sim.max_speed, "the twin config must not clip what the sim allows"
    with pytest.raises(ValueError, match="mis-scaled"):
        load_config(config_dict(command={"speed_per_unit_action": sim.max_speed * 2}))


@pytest.mark.parametrize("overrides, needle", [
    ({"mirrors": "Pendulum-v1"}, "'Pendulum-v1'"),
    ({"control_rate_hz": -5}, "-5"),
    ({"stale_timeout_s": "soon"}, "'soon'"),
    ({"command": {"type": "trajectory_msgs/JointTrajectory"}}, "trajectory_msgs/JointTrajectory"),
    ({"command": {"topic": "cmd_vel"}}, "'cmd_vel'"),
    ({"limits": {"position_bound": 0.1}}, "position_bound"),
    ({"deploy": {"episodes": 0}}, "episodes"),
])
def test_bad_config_is_rejected_naming_the_value(overrides, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        load_config(config_dict(**overrides))


def test_ros2_type_names_are_accepted():
    cfg = load_config(config_dict(observations={"puck": {"topic": "/puck/odom", "type": "nav_msgs/msg/Odometry"}}))
    assert cfg.puck.type == "nav_msgs/msg/Odometry" and cfg.puck.kind == "nav_msgs/Odometry"


def test_missing_config_key_and_file():
    cfg = config_dict()
    del cfg["observations"]["puck"]
    with pytest.raises(ValueError, match="puck"):
        load_config(cfg)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")


def test_decoders_read_ros1_and_ros2_stamps_and_reject_bad_messages():
    msg = encode_joint_state(1_500_000_000, "table", 1, ["pusher_x", "pusher_y"], [0.1, -0.2], [0.3, 0.0])
    r = decode_joint_state(msg, "/js", ("pusher_x", "pusher_y"), "table")
    assert r.stamp_ns == 1_500_000_000 and r.position.tolist() == [0.1, -0.2] and r.velocity.tolist() == [0.3, 0.0]
    msg["header"]["stamp"] = {"sec": 2, "nanosec": 5}
    assert decode_joint_state(msg, "/js", ("pusher_x", "pusher_y"), "table").stamp_ns == 2_000_000_005
    # joints are matched by name, not position in the list
    swapped = dict(msg, name=["pusher_y", "pusher_x"])
    assert decode_joint_state(swapped, "/js", ("pusher_x", "pusher_y"), "table").position.tolist() == [-0.2, 0.1]
    bad = [dict(msg, velocity=[0.1]), dict(msg, position=[float("nan"), 0.0]), dict(msg, name=["a", "b"]),
           dict(msg, header={"frame_id": "table"}), "not a dict"]
    for m in bad:
        with pytest.raises(MessageError, match="/js"):
            decode_joint_state(m, "/js", ("pusher_x", "pusher_y"), "table")
    with pytest.raises(MessageError, match="in frame 'table', expected 'world'"):
        decode_joint_state(msg, "/js", ("pusher_x", "pusher_y"), "world")
    odom = encode_pose(7, "table", 1, "nav_msgs/Odometry", (0.1, 0.2), (0.5, -0.5))
    r = decode_pose(odom, "/odom", "nav_msgs/Odometry", "table")
    assert r.position.tolist() == [0.1, 0.2] and r.velocity.tolist() == [0.5, -0.5]
    pose = encode_pose(7, "table", 1, "geometry_msgs/PoseStamped", (0.1, 0.2))
    assert decode_pose(pose, "/p", "geometry_msgs/PoseStamped", "table").velocity is None
    with pytest.raises(MessageError, match="missing pose"):
        decode_pose(pose, "/p", "nav_msgs/Odometry", "table")
    del odom["twist"]
    with pytest.raises(MessageError, match="missing twist"):
        decode_pose(odom, "/odom", "nav_msgs/Odometry", "table")


# -- the env, offline -------------------------------------------------------------------------------
def test_rosarm_constructs_offline_with_sympush_symmetry_and_spaces():
    env = gym.make("RosArm-v0", url="ws://127.0.0.1:1")   # nothing listens there: construction must not connect
    sim = gym.make("SymPush-v0")
    assert env.unwrapped.link is None
    assert env.observation_space == sim.observation_space and env.action_space == sim.action_space
    sym, sim_sym = env.unwrapped.symmetry, sim.unwrapped.symmetry
    assert sym.group.name == "O(2)" and sym.exact
    g = O2().sample(np.random.default_rng(0))
    obs = np.random.default_rng(1).normal(size=14).astype(np.float32)
    assert np.allclose(sym.transform_obs(g, obs), sim_sym.transform_obs(g, obs))
    env.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9090", "ws://127.0.0.1", "127.0.0.1:9090", "ws://:9090"])
def test_bad_rosbridge_address_is_rejected(url):
    with pytest.raises(ValueError, match="ws://HOST:PORT"):
        parse_rosbridge_url(url)
    with pytest.raises(ValueError, match=url.replace("/", ".")):
        RosArmEnv(url=url)


def test_command_clipping_limits_speed_and_workspace():
    cfg = load_config(config_dict(limits={"max_speed": 0.1}))
    c = clip_command(np.array([0.9, 0.0]), np.zeros(2), cfg)
    assert c.speed_clipped and np.linalg.norm(c.velocity) == pytest.approx(0.1)
    full = load_config(config_dict())
    speed = full.speed_per_unit_action
    c = clip_command(np.array([0.5, 0.0]), np.zeros(2), full)
    assert not c.speed_clipped and np.allclose(c.velocity, [0.5 * speed, 0.0])
    # at the boundary the outward part goes, the tangential and inward parts stay
    at_edge = np.array([full.workspace_radius, 0.0])
    c = clip_command(np.array([0.6, 0.8]), at_edge, full)
    assert c.workspace_clipped and np.allclose(c.velocity, [0.0, 0.8 * speed])
    c = clip_command(np.array([-1.0, 0.0]), at_edge, full)
    assert not c.workspace_clipped and np.allclose(c.velocity, [-speed, 0.0])
    for bad in ([np.nan, 0.0], [1.0, 2.0, 3.0]):
        with pytest.raises(ValueError, match="2 finite numbers"):
            clip_command(np.array(bad), np.zeros(2), full)


def test_command_clipping_is_o2_equivariant():
    cfg = load_config(config_dict(limits={"max_speed": 0.2}))
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = O2().sample(rng)
        R = g.matrix()
        action = rng.normal(size=2) * 2
        pos = rng.normal(size=2)
        pos *= rng.uniform(0.2, 0.4) / np.linalg.norm(pos)   # both inside and beyond the workspace radius
        assert np.allclose(clip_command(R @ action, R @ pos, cfg).velocity, R @ clip_command(action, pos, cfg).velocity,
                           atol=1e-12)


# -- the twin over a real socket -----------------------------------------------------------------------
def test_twin_in_lock_step_reproduces_simulation_exactly(twin):
    server = twin()
    env = RosArmEnv(config=config_dict(), url=server.url)
    sim = gym.make("SymPush-v0").unwrapped
    obs, _ = env.reset(seed=4)
    sim_obs, _ = sim.reset(seed=4)
    assert np.array_equal(obs, sim_obs)
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = rng.uniform(-1, 1, size=2).astype(np.float32)
        obs, r, term, _, info = env.step(a)
        sim_obs, sim_r, sim_term, _, _ = sim.step(a)
        assert np.array_equal(obs, sim_obs) and r == sim_r and term == sim_term
    assert server.steps == 30 and server.resets == [4]
    assert info["latency_s"] > 0
    env.close()


def test_watchdog_stops_the_arm_when_readings_stop_between_steps(twin):
    server = twin()
    env = RosArmEnv(config=config_dict(), url=server.url)
    env.reset(seed=1)
    env.step(np.array([1.0, 0.0], np.float32))
    server.stalled = True           # readings stop while the control loop is not waiting on them
    assert wait_until(lambda: env.link.fault is not None, timeout=3.0)
    assert env.link.fault.kind == "stale"
    assert wait_until(lambda: server.commands[-1] == [0.0, 0.0])
    with pytest.raises(RosFault, match="stale"):
        env.step(np.array([1.0, 0.0], np.float32))
    env.close()


# -- symgym deploy, end to end ------------------------------------------------------------------------
def test_deploy_reaches_the_same_success_as_simulation(twin, linear_run, e2e_seeds, tmp_path, capsys):
    server = twin()
    first, n = e2e_seeds
    cfg = write_config(tmp_path / "cfg.yaml", deploy={"episodes": n, "seed": first})
    log = tmp_path / "deploy.jsonl"
    rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", server.url, "--config", str(cfg), "--yes",
                 "--log", str(log)])
    assert rc == 0, capsys.readouterr().err
    end = read_log(log)[-1]
    assert end["event"] == "end" and end["status"] == "ok"
    deployed = [e["success"] for e in end["episodes"]]
    in_sim = sim_successes(linear_run, range(first, first + n))
    assert deployed == in_sim
    assert any(deployed) and not all(deployed), "the seeds must include both outcomes"
    assert server.resets == list(range(first, first + n))
    # the log replays in simulation without a single differing observation
    replay = replay_in_sim(log)
    assert [r["sim_success"] for r in replay] == in_sim
    assert max(r["max_obs_error"] for r in replay) == 0.0
    assert sum(r["steps"] for r in replay) == len(steps_in(log)) == server.steps - 1   # - the final stop
    assert server.commands[-1] == [0.0, 0.0], "deploy must end with a stop command"


def test_dry_run_logs_actions_and_publishes_nothing(twin, linear_run, tmp_path, capsys):
    server = twin()
    cfg = write_config(tmp_path / "cfg.yaml")
    log = tmp_path / "dry.jsonl"
    rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", server.url, "--config", str(cfg), "--dry-run",
                 "--steps", "8", "--log", str(log)])
    assert rc == 0, capsys.readouterr().err
    steps = steps_in(log)
    assert len(steps) == 8 and all(np.linalg.norm(s["command"]) > 0 for s in steps)
    assert server.commands == [] and server.steps == 0
    assert "dry run" in capsys.readouterr().out


def test_deploy_refuses_without_a_terminal_or_yes(twin, linear_run, tmp_path, capsys, monkeypatch):
    server = twin()
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))
    cfg = write_config(tmp_path / "cfg.yaml")
    rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", server.url, "--config", str(cfg),
                 "--log", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "--yes" in err and len(err.strip().splitlines()) == 1
    assert server.commands == [] and not (tmp_path / "x.jsonl").exists()


def test_confirmation_prompt_gates_the_first_motion(twin, linear_run, tmp_path):
    server = twin()
    asked = []
    result = deploy(linear_run, server.url, config=config_dict(), log=tmp_path / "no.jsonl", interactive=True,
                    confirm=lambda q: asked.append(q) or "no")
    assert result.status == "aborted" and result.exit_code == 1 and len(asked) == 1
    # nothing but the stop command every exit sends
    assert all(c == [0.0, 0.0] for c in server.commands) and steps_in(tmp_path / "no.jsonl") == []
    result = deploy(linear_run, server.url, config=config_dict(), log=tmp_path / "yes.jsonl", interactive=True,
                    max_steps=5, confirm=lambda q: "yes")
    assert result.status == "ok" and result.steps == 5 and len(server.commands) >= 5


# -- faults ---------------------------------------------------------------------------------------------
FAULT_AFTER = 5


@pytest.mark.parametrize("kind, needle, connected", [
    ("drop", "connection to rosbridge at ws://127.0.0.1", False),
    ("stall", "observations stale", True),
    ("garbage", "not JSON", True),
    ("malformed", "malformed message on /pusher/joint_states", True),
    ("out_of_range", "out-of-range reading on /puck/odom", True),
    ("bad_frame", "frame 'world'", True),
])
def test_fault_stops_the_arm_exits_nonzero_and_keeps_the_log(twin, linear_run, tmp_path, capsys, kind, needle,
                                                              connected):
    server = twin(fault=Fault(kind, FAULT_AFTER))
    cfg = write_config(tmp_path / "cfg.yaml", deploy={"episodes": 1, "seed": 10001})   # a 100-step failure
    log = tmp_path / "fault.jsonl"
    start = time.monotonic()
    rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", server.url, "--config", str(cfg), "--yes",
                 "--log", str(log)])
    err = capsys.readouterr().err.strip()
    assert rc == 3
    assert len(err.splitlines()) == 1 and err.startswith("symgym: error: arm halted") and needle in err, err
    assert time.monotonic() - start < 10
    records = read_log(log)
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(FAULT_AFTER))
    assert [r["event"] for r in records][-2:] == ["fault", "end"] and records[-1]["status"] == "fault"
    if connected:   # the stop command reached the arm
        assert wait_until(lambda: server.commands and server.commands[-1] == [0.0, 0.0])
        moving = [c for c in server.commands if c != [0.0, 0.0]]
        assert len(moving) == FAULT_AFTER + 1   # the steps that ran, plus the one the fault interrupted


def test_unreachable_rosbridge_is_a_clear_error(linear_run, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    cfg = write_config(tmp_path / "cfg.yaml", connect_timeout_s=1)
    rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", f"ws://127.0.0.1:{port}", "--config", str(cfg),
                 "--yes", "--log", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot reach rosbridge at ws://127.0.0.1:{port}" in err


def test_deploy_rejects_a_run_for_another_env(linear_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "other"
    shutil.copytree(linear_run, run)
    config = json.loads((linear_run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "env": "SymReach-v0"}))
    rc = symgym(["deploy", "--run", str(run), "--rosbridge", "ws://127.0.0.1:9", "--yes"])
    assert rc == 2 and "'SymReach-v0'" in capsys.readouterr().err


def test_read_log_skips_a_line_cut_off_by_a_crash(tmp_path):
    log = tmp_path / "cut.jsonl"
    log.write_text('{"event": "start"}\n{"event": "step", "step": 0}\n{"event": "st')
    assert [r["event"] for r in read_log(log)] == ["start", "step"]


def test_sim_robot_cli_serves_a_deployment(linear_run, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "symgym.learn.cli", "sim-robot", "--port", str(port), "--env", "SymPush-v0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"ws://127.0.0.1:{port}" in line, line + proc.stderr.read() if proc.poll() is not None else line
        cfg = config_dict()
        result = deploy(linear_run, f"ws://127.0.0.1:{port}", config=cfg, yes=True, max_steps=10,
                        log=tmp_path / "cli.jsonl")
        assert result.status == "ok" and result.steps == 10
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_briefly_trained_sac_deploys_with_its_simulated_success(twin, tmp_path, capsys):
    run = tmp_path / "sac"
    assert symgym(["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "4000", "--seed", "0",
                   "--out", str(run), "--agent-kwargs", '{"learning_starts": 500, "net_arch": [64, 64]}']) == 0
    server = twin()
    first, n = 10_000, 6
    log = tmp_path / "sac.jsonl"
    cfg = write_config(tmp_path / "cfg.yaml", deploy={"episodes": n, "seed": first})
    assert symgym(["deploy", "--run", str(run), "--rosbridge", server.url, "--config", str(cfg), "--yes",
                   "--log", str(log)]) == 0, capsys.readouterr().err
    deployed = [e["success"] for e in read_log(log)[-1]["episodes"]]
    assert deployed == sim_successes(run, range(first, first + n))
    assert max(r["max_obs_error"] for r in replay_in_sim(log)) == 0.0
