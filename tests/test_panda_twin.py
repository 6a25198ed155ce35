"""The Panda twin behind rosbridge: real-arm interfaces, lock-step reproduction, deploy, faults, Nagle and QUICKACK.

``SYMGYM_ROSBRIDGE_URL=ws://HOST:PORT`` additionally runs the opt-in test against a real rosbridge_server serving
the SymPush twin's topics (see the README's rehearsal section); without it that test is skipped.
"""
from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
import pytest
import yaml

import symgym.envs  # noqa: F401
from symgym.envs.ros import RosFault, quickack_supported
from symgym.envs.ros_config import CONFIG_DIR, load_config
from symgym.learn.cli import main as symgym
from symgym.learn.deploy.deploy import deploy, read_log, replay_in_sim
from symgym.learn.deploy.twin import Fault, SimRobotServer, robot_twin

pytest.importorskip("pybullet_data")
PANDA_CONFIG = CONFIG_DIR / "panda_servo.yaml"


def panda_config(**overrides) -> dict:
    cfg = yaml.safe_load(PANDA_CONFIG.read_text())
    cfg.update({"control_rate_hz": 200, "stale_timeout_s": 1.5, "connect_timeout_s": 10})
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


@pytest.fixture
def panda_twin(sim_robot_servers):
    return lambda config=None, fault=None, nagle=False: sim_robot_servers(
        "PandaPush-v0", config=config or panda_config(), fault=fault, nagle=nagle)


@pytest.fixture(scope="module")
def panda_win_seed(linear_run):
    """A seed on which the scripted linear SymPush policy succeeds on PandaPush-v0 in simulation."""
    from symgym.learn.run.episodes import run_episode
    from symgym.learn.run.runs import load_run

    agent, _ = load_run(linear_run)
    env = gym.make("PandaPush-v0")
    for seed in range(10_000, 10_040):
        if run_episode(env, agent.act, seed).success:
            return seed
    pytest.fail("the linear policy succeeds on no PandaPush seed in 10000..10039")


def test_configs_for_moveit_servo_and_ur_twist_controller():
    panda = load_config(PANDA_CONFIG)
    assert panda.command.kind == "geometry_msgs/TwistStamped" and panda.command.frame == "panda_link0"
    assert panda.command.topic == "/servo_node/delta_twist_cmds"
    assert panda.pusher.kind == "tf2_msgs/TFMessage" and panda.pusher.frame == "panda_hand_tcp"
    assert panda.arm.joints == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert panda.reset_type == "std_srvs/Trigger" and panda.reset_seed_param
    ur = load_config(CONFIG_DIR / "ur_twist.yaml")
    assert (ur.command.topic, ur.command.kind) == ("/twist_controller/command", "geometry_msgs/Twist")
    with pytest.raises(ValueError, match="frame_id must name a frame"):
        load_config(panda_config(command={"frame_id": ""}))
    with pytest.raises(ValueError, match="'std_srvs/Empty'"):
        load_config(panda_config(reset={"type": "std_srvs/Empty"}))
    assert robot_twin("panda")[0] == "PandaPush-v0"
    with pytest.raises(ValueError, match="'kuka'"):
        robot_twin("kuka")


def test_twin_serves_real_arm_topics_and_reproduces_pandapush_exactly(panda_twin):
    server = panda_twin()
    messages = server.state_messages()
    joints = messages["/joint_states"]
    assert joints["name"][:7] == [f"panda_joint{i}" for i in range(1, 8)] and len(joints["name"]) == 9
    assert {t["child_frame_id"] for t in messages["/tf"]["transforms"]} == {"panda_link0", "panda_hand_tcp"}
    cfg = panda_config()
    ros, sim = gym.make("RosArm-v0", config=cfg, url=server.url), gym.make("PandaPush-v0")
    try:
        obs, _ = ros.reset(seed=10_004)
        ref, _ = sim.reset(seed=10_004)
        assert server.resets == [10_004]            # the Trigger reset took its seed from the parameter
        np.testing.assert_array_equal(obs, ref)
        rng = np.random.default_rng(0)
        for _ in range(8):
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            obs, reward, _, _, info = ros.step(action)
            ref, ref_reward, *_ = sim.step(action)
            np.testing.assert_array_equal(obs, ref)
            assert reward == ref_reward
        assert len(info["joint_positions"]) == 7 and set(info["latency_phases_s"]) >= {"publish_s", "wait_readings_s"}
    finally:
        ros.close()


def test_servo_command_in_the_wrong_frame_halts_the_arm(panda_twin):
    server = panda_twin()
    ros = gym.make("RosArm-v0", config=panda_config(command={"frame_id": "world"}), url=server.url)
    try:
        ros.reset(seed=1)
        with pytest.raises(RosFault, match="in frame 'world', expected 'panda_link0'"):
            for _ in range(5):
                ros.step(np.array([0.5, 0.0], dtype=np.float32))
                time.sleep(0.05)
        assert server.steps == 0
    finally:
        ros.close()


def test_ur_twist_config_drives_the_arm_twin(panda_twin):
    cfg = yaml.safe_load((CONFIG_DIR / "ur_twist.yaml").read_text())
    cfg.update({"control_rate_hz": 200, "stale_timeout_s": 1.5,
                "reset": {"service": "/sim_robot/reset", "type": "std_srvs/Trigger", "seed_param": "/sim_robot/seed"}})
    cfg["observations"]["arm"]["joints"] = [f"panda_joint{i}" for i in range(1, 8)]   # the twin is a Panda
    server = panda_twin(config=cfg)
    ros = gym.make("RosArm-v0", config=cfg, url=server.url)
    try:
        obs, _ = ros.reset(seed=3)
        obs, *_ = ros.step(np.array([0.0, 1.0], dtype=np.float32))
        assert server.commands[-1] == pytest.approx([0.0, 0.4]) and obs[3] > 0.3   # the tip moved along +y
    finally:
        ros.close()


def test_deploy_of_a_sympush_policy_drives_the_panda_twin_to_success(panda_twin, linear_run, panda_win_seed,
                                                                     tmp_path, capsys):
    server = panda_twin()
    cfg = tmp_path / "panda.yaml"
    cfg.write_text(yaml.safe_dump(panda_config(deploy={"episodes": 1, "seed": panda_win_seed})))
    log = tmp_path / "panda.jsonl"
    rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", server.url, "--config", str(cfg), "--yes",
                 "--log", str(log)])
    assert rc == 0, capsys.readouterr().err
    records = read_log(log)
    assert records[0]["transfer"] is True and records[-1]["episodes"][0]["success"] is True
    assert max(r["max_obs_error"] for r in replay_in_sim(log)) == 0.0   # the lock-step twin is PandaPush exactly


@pytest.mark.parametrize("delivery", ["response_first", "reorder"])
def test_trigger_reset_is_race_free_on_fresh_connections(panda_twin, delivery):
    """std_srvs/Trigger's response has no stamp: the client reads the robot's clock (/rosapi/get_time) after the
    acknowledgement and counts only readings stamped from then on, whatever order the bridge delivers them in."""
    from symgym.learn.deploy.twin import SimRobotServer

    cfg = panda_config()
    sim = gym.make("PandaPush-v0")
    expected = {seed: sim.reset(seed=seed)[0] for seed in range(300, 310)}
    with SimRobotServer("PandaPush-v0", config=cfg, delivery=delivery, delivery_seed=2) as server:
        mismatches = 0
        for seed, ref in expected.items():
            ros = gym.make("RosArm-v0", config=cfg, url=server.url)
            try:
                obs, _ = ros.reset(seed=seed)
            finally:
                ros.close()
            mismatches += not np.array_equal(obs, ref)
    assert mismatches == 0 and server.resets == list(expected)


FAULT_AFTER = 3


@pytest.mark.parametrize("kind, needle", [
    ("drop", "connection to rosbridge"),
    ("stall", "observations stale"),
    ("garbage", "not JSON"),
    ("malformed", "malformed message on /tf"),
    ("out_of_range", "out-of-range reading on /puck/odom"),
    ("bad_frame", "frame 'world'"),
])
def test_faults_on_the_arm_twin_halt_with_a_zero_twist(panda_twin, linear_run, tmp_path, kind, needle):
    server = panda_twin(fault=Fault(kind, FAULT_AFTER))
    result = deploy(linear_run, server.url, config=panda_config(deploy={"episodes": 1, "seed": 10_001}), yes=True,
                    log=tmp_path / "fault.jsonl")
    assert result.status == "fault" and needle in result.message, result.message
    assert [r["step"] for r in read_log(result.log) if r["event"] == "step"] == list(range(FAULT_AFTER))
    if kind != "drop":
        end = time.monotonic() + 3
        while time.monotonic() < end and server.commands[-1] != [0.0, 0.0]:
            time.sleep(0.02)
        assert server.commands[-1] == [0.0, 0.0]


def _median_step_ms(server, cfg, quickack: bool, steps: int = 12) -> float:
    ros = gym.make("RosArm-v0", config=cfg, url=server.url, quickack=quickack)
    try:
        ros.reset(seed=0)
        times = [ros.step(np.array([0.1, 0.0], dtype=np.float32))[4]["latency_phases_s"]["wait_readings_s"]
                 for _ in range(steps)]
    finally:
        ros.close()
    return float(np.median(times) * 1e3)


@pytest.mark.skipif(not quickack_supported(), reason="TCP_QUICKACK is Linux only")
def test_client_stays_fast_against_a_nagle_twin_sending_separate_frames():
    """The twin in rosbridge's wire behaviour (Nagle on, one frame per reading): without QUICKACK the client's
    delayed ACK holds the later frames for ~40 ms; with it (the default) a step costs what it does without Nagle."""
    cfg = yaml.safe_load((CONFIG_DIR / "sympush_twin.yaml").read_text())
    cfg.update({"control_rate_hz": 1000, "stale_timeout_s": 2.0, "connect_timeout_s": 10})
    with SimRobotServer("SymPush-v0", config=cfg, nagle=True) as server:
        fast = _median_step_ms(server, cfg, quickack=True)
        slow = _median_step_ms(server, cfg, quickack=False)
    assert slow > 25.0, f"the Nagle twin should reproduce rosbridge's delayed-ACK stall (got {slow:.1f} ms)"
    assert fast < 0.5 * slow, (fast, slow)


@pytest.mark.skipif("SYMGYM_ROSBRIDGE_URL" not in os.environ,
                    reason="set SYMGYM_ROSBRIDGE_URL=ws://HOST:PORT to run against a real rosbridge_server")
def test_real_rosbridge_serves_a_step_quickly():
    """Against a genuine rosbridge (serving the SymPush twin's topics and reset service) steps complete and, with
    the client's QUICKACK, well under the 40 ms delayed-ACK stall."""
    url = os.environ["SYMGYM_ROSBRIDGE_URL"]
    cfg = yaml.safe_load(open(os.environ.get("SYMGYM_ROSBRIDGE_CONFIG", CONFIG_DIR / "sympush_twin.yaml")))
    cfg.update({"control_rate_hz": 1000, "stale_timeout_s": 2.0})
    ros = gym.make("RosArm-v0", config=cfg, url=url)
    try:
        obs, _ = ros.reset(seed=10_000)
        latencies = [ros.step(np.zeros(2, dtype=np.float32))[4]["latency_s"] for _ in range(30)]
    finally:
        ros.close()
    assert obs.shape == (14,) and np.median(latencies) < 0.02
