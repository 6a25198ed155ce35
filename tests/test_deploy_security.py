"""Deployment made safe: no reset race on fresh connections, verified TLS, rosauth, config choice, URLs, log replay.

Everything runs against the loopback twin (``learn.deploy.twin``) over real sockets; no ROS installation.
"""
from __future__ import annotations

import json
import time

import gymnasium as gym
import numpy as np
import pytest
import yaml

import symgym.envs  # noqa: F401
from symgym.envs.ros import RosArmEnv, RosFault
from symgym.envs.ros_config import DEFAULT_CONFIG, load_config
from symgym.envs.ros_link import RosBridgeLink
from symgym.envs.ros_secure import SECRET_ENV, SECRET_FILE_ENV, auth_message, check_auth, rosauth_mac
from symgym.learn.cli import main as symgym
from symgym.learn.deploy.testca import make_test_ca, server_context

SECRET = "0123456789abcdef"     # rosauth secrets are 16 characters


@pytest.fixture(scope="module")
def cfg():
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data.update({"control_rate_hz": 200, "stale_timeout_s": 1.0, "connect_timeout_s": 5})
    return load_config(data)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def sim_resets():
    sim = gym.make("SymPush-v0")
    return {seed: sim.reset(seed=seed)[0] for seed in range(200, 250)}


def fresh_connection_mismatches(server, cfg, sim_resets) -> int:
    """Reset on a new connection per seed and count observations that differ from the simulator's reset."""
    mismatches = 0
    for seed, expected in sim_resets.items():
        env = RosArmEnv(config=cfg, url=server.url)
        try:
            obs, _ = env.reset(seed=seed)
        finally:
            env.close()
        mismatches += not np.array_equal(obs, expected)
    return mismatches


# -- the reset race ------------------------------------------------------------------------------------
@pytest.mark.parametrize("delivery", ["response_first", "reorder"])
def test_no_stale_reset_over_50_fresh_connections(sim_robot_servers, cfg, sim_resets, delivery):
    server = sim_robot_servers("SymPush-v0", config=cfg, delivery=delivery, delivery_seed=1)
    start = time.monotonic()
    assert fresh_connection_mismatches(server, cfg, sim_resets) == 0
    assert server.resets == list(sim_resets)
    assert time.monotonic() - start < 20


def test_a_client_trusting_arrival_order_starts_from_a_stale_scene(sim_robot_servers, cfg, sim_resets, monkeypatch):
    """The racy modes really race: ignoring the acknowledgement's stamp (the old client) gives stale resets."""
    server = sim_robot_servers("SymPush-v0", config=cfg, delivery="response_first")
    original = RosBridgeLink.reset_scene
    monkeypatch.setattr(RosBridgeLink, "reset_scene", lambda self, seed: original(self, seed) * 0)
    few = dict(list(sim_resets.items())[:5])
    assert fresh_connection_mismatches(server, cfg, few) >= 4


def test_out_of_order_reading_never_replaces_a_newer_one(sim_robot_servers, cfg):
    server = sim_robot_servers("SymPush-v0", config=cfg)
    env = RosArmEnv(config=cfg, url=server.url)
    try:
        env.reset(seed=3)
        link = env.unwrapped.link if hasattr(env, "unwrapped") else env.link
        before = link.stamps()
        old = server.state_messages()["/puck/odom"]
        old["header"]["stamp"] = {"secs": 0, "nsecs": 0}
        old["pose"]["pose"]["position"]["x"] = 0.3
        link._on_reading("puck", old)
        assert link.stamps() == before and link._latest["puck"].position[0] != 0.3
    finally:
        env.close()


# -- episode length --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mirror, config", [("SymPush-v0", "sympush_twin"), ("PandaPush-v0", "panda_servo")])
def test_rosarm_episode_length_is_the_mirrored_envs(mirror, config):
    pytest.importorskip("pybullet_data") if mirror == "PandaPush-v0" else None
    env = gym.make("RosArm-v0", config=config, url="ws://127.0.0.1:1")
    assert env.unwrapped.max_episode_steps == gym.spec(mirror).max_episode_steps
    assert env.spec.max_episode_steps is None   # no second, longer TimeLimit around it
    env.close()


def test_rosarm_truncates_with_its_mirror(sim_robot_servers, cfg):
    server = sim_robot_servers("SymPush-v0", config=cfg)
    env, sim = gym.make("RosArm-v0", config=cfg, url=server.url), gym.make("SymPush-v0")
    try:
        env.reset(seed=11)
        sim.reset(seed=11)
        for t in range(60):
            *_, term, trunc, _ = env.step(np.zeros(2, np.float32))
            *_, sim_term, sim_trunc, _ = sim.step(np.zeros(2, np.float32))
            assert (term, trunc) == (sim_term, sim_trunc)
            if term or trunc:
                break
        assert t + 1 == 50 and trunc
    finally:
        env.close()


# -- rosauth ---------------------------------------------------------------------------------------------
def test_rosauth_mac_is_sha512_of_the_fields_in_rosauths_order():
    import hashlib

    mac = rosauth_mac(SECRET, "10.0.0.2", "10.0.0.1", "r4nd", 1700000000, "admin", 1700003600)
    assert mac == hashlib.sha512(f"{SECRET}10.0.0.210.0.0.1r4nd1700000000admin1700003600".encode()).hexdigest()
    msg = auth_message(SECRET, "10.0.0.2", "10.0.0.1", now=1700000000.7)
    assert check_auth(msg, SECRET, now=1700000002) and not check_auth(msg, "x" * 16, now=1700000002)
    assert not check_auth(msg, SECRET, now=1700000006)               # rosauth allows < 5 s of skew
    assert not check_auth({**msg, "level": "user"}, SECRET, now=1700000002)
    assert not check_auth({**msg, "t": "soon"}, SECRET, now=1700000002)


def _write_secret(path, text):
    path.write_text(text + "\n")
    return path


def test_auth_accepted_and_refused(sim_robot_servers, cfg, tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    server = sim_robot_servers("SymPush-v0", config=cfg, auth_secret=SECRET)
    good, bad = _write_secret(tmp_path / "good", SECRET), _write_secret(tmp_path / "bad", "x" * 16)
    env = RosArmEnv(config=cfg, url=server.url, secret_file=str(good))
    env.reset(seed=1)
    env.step(np.array([0.5, 0.0], np.float32))
    env.close()
    assert wait_until(lambda: server.commands[-1:] == [[0.0, 0.0]])   # the closing stop has arrived
    moved = len(server.commands)
    assert moved >= 1 and server.auth_refused == 0
    env = RosArmEnv(config=cfg, url=server.url, secret_file=str(bad))
    with pytest.raises(PermissionError, match="refused authentication"):
        env.reset(seed=1)
    env.close()
    assert server.auth_refused == 1 and len(server.commands) == moved
    # no secret: the bridge closes the connection, and the error says why it may have, without waiting it out
    env = RosArmEnv(config=cfg, url=server.url)
    start = time.monotonic()
    with pytest.raises(RosFault, match="requires authentication"):
        env.reset(seed=1)
    assert time.monotonic() - start < 3
    env.close()
    assert server.auth_refused == 2 and len(server.commands) == moved
    # the secret from the environment works too
    monkeypatch.setenv(SECRET_ENV, SECRET)
    env = RosArmEnv(config=cfg, url=server.url)
    env.reset(seed=2)
    env.close()
    assert server.auth_refused == 2 and server.resets == [1, 2]


# -- TLS ---------------------------------------------------------------------------------------------
def test_wss_verifies_the_certificate(sim_robot_servers, cfg, ca, tmp_path):
    server = sim_robot_servers("SymPush-v0", config=cfg, tls=server_context(ca))
    assert server.url.startswith("wss://127.0.0.1:")
    env = RosArmEnv(config=cfg, url=server.url, ca_file=str(ca.ca_file))
    obs, _ = env.reset(seed=5)
    env.close()
    assert np.array_equal(obs, gym.make("SymPush-v0").reset(seed=5)[0])
    stranger = make_test_ca(tmp_path / "other")
    for ca_file in (str(stranger.ca_file), None):      # another CA; the system CAs do not know the test CA
        env = RosArmEnv(config=cfg, url=server.url, ca_file=ca_file)
        start = time.monotonic()
        with pytest.raises(ConnectionError, match="TLS handshake .* failed: certificate verify failed"):
            env.reset(seed=5)
        assert time.monotonic() - start < 3, "a bad certificate must fail at once, not after the connect timeout"
        env.close()
    assert server.resets == [5]


def test_wss_checks_the_host_name(sim_robot_servers, cfg, tmp_path):
    only_localhost = make_test_ca(tmp_path / "named", names=("localhost",))
    server = sim_robot_servers("SymPush-v0", config=cfg, tls=server_context(only_localhost))
    env = RosArmEnv(config=cfg, url=server.url, ca_file=str(only_localhost.ca_file))   # 127.0.0.1 is not named
    with pytest.raises(ConnectionError, match="certificate verify failed"):
        env.reset(seed=1)
    env.close()
    env = RosArmEnv(config=cfg, url=server.url.replace("127.0.0.1", "localhost"), ca_file=str(only_localhost.ca_file))
    env.reset(seed=1)
    env.close()
    assert server.resets == [1]


def _deploy(args, run, server, cfg_path, log):
    return symgym(["deploy", "--run", str(run), "--rosbridge", server.url, "--config", str(cfg_path), "--yes",
                   "--steps", "6", "--log", str(log), *args])


def test_deploy_over_wss_with_auth_and_one_line_refusals(sim_robot_servers, cfg, ca, linear_run, tmp_path,
                                                         monkeypatch, capsys):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    server = sim_robot_servers("SymPush-v0", config=cfg, tls=server_context(ca), auth_secret=SECRET)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({**yaml.safe_load(DEFAULT_CONFIG.read_text()), "control_rate_hz": 200}))
    secret = _write_secret(tmp_path / "secret", SECRET)
    log = tmp_path / "ok.jsonl"
    rc = _deploy(["--ca-file", str(ca.ca_file), "--secret-file", str(secret)], linear_run, server, cfg_path, log)
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    assert wait_until(lambda: server.commands[-1:] == [[0.0, 0.0]])
    moved = len(server.commands)
    assert moved >= 6
    for args, needle in ((["--ca-file", str(ca.ca_file), "--secret-file", str(_write_secret(tmp_path / "b", "y" * 16))],
                          "refused authentication"),
                         (["--secret-file", str(secret)], "certificate verify failed")):
        bad_log = tmp_path / "bad.jsonl"
        rc = _deploy(args, linear_run, server, cfg_path, bad_log)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
        assert not bad_log.exists() and not list(tmp_path.glob("bad.jsonl*"))   # nothing on disk
        assert len(server.commands) == moved                                     # and no motion
    # the secret never appears in the log
    assert SECRET not in log.read_text()


def test_ipv6_loopback(sim_robot_servers, cfg):
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = sim_robot_servers("SymPush-v0", config=cfg, host="::1")
    assert server.url.startswith("ws://[::1]:")
    env = RosArmEnv(config=cfg, url=server.url)
    obs, _ = env.reset(seed=7)
    env.close()
    assert np.array_equal(obs, gym.make("SymPush-v0").reset(seed=7)[0])


@pytest.mark.parametrize("url, needle", [
    ("ws://host:notaport", "port 'notaport' is not an integer in 1..65535"),
    ("ws://host:70000", "port '70000'"),
    ("ws://:9090", "has no host"),
    ("wss://", "has no host"),
    ("ws://[::1]", "has no port"),
])
def test_bad_url_is_one_clear_line(linear_run, url, needle, capsys):
    rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", url, "--yes"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err and "Port could not be cast" not in err, err


def test_secret_is_never_a_command_line_option(capsys):
    try:
        symgym(["deploy", "--help"])
    except SystemExit:     # argparse's --help exit, where the CLI does not catch it
        pass
    text = capsys.readouterr().out
    assert "--secret-file" in text and "--ca-file" in text and "--secret " not in text and "--password" not in text


def test_missing_secret_file_is_one_line(linear_run, tmp_path, capsys):
    rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", "wss://127.0.0.1:9", "--yes",
                 "--secret-file", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope" in err


def wait_until(predicate, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        time.sleep(0.02)
    return predicate()


# -- config choice, configs listing ------------------------------------------------------------------------
def _run_on(env_id, linear_run, tmp_path):
    import shutil

    run = tmp_path / f"run-{env_id}"
    shutil.copytree(linear_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "env": env_id}))
    return run


def test_deploy_without_config_uses_the_config_that_mirrors_the_runs_env(sim_robot_servers, linear_run, tmp_path,
                                                                          capsys):
    pytest.importorskip("pybullet_data")
    server = sim_robot_servers("PandaPush-v0", config="panda_servo")
    run = _run_on("PandaPush-v0", linear_run, tmp_path)
    log = tmp_path / "panda.jsonl"
    rc = symgym(["deploy", "--run", str(run), "--rosbridge", server.url, "--yes", "--steps", "3", "--log", str(log)])
    assert rc == 0, capsys.readouterr().err
    start = json.loads(log.read_text().splitlines()[0])
    assert start["config"]["mirrors"] == "PandaPush-v0" and start["config"]["source"].endswith("panda_servo.yaml")
    assert wait_until(lambda: server.steps == 4) and server.resets   # 3 steps and the closing stop


def test_configs_lists_the_shipped_configs_by_name(capsys):
    assert symgym(["configs"]) == 0
    out = capsys.readouterr().out
    for name, mirrors in (("sympush_twin", "SymPush-v0"), ("panda_servo", "PandaPush-v0"), ("ur_twist", "PandaPush-v0")):
        line = next(row for row in out.splitlines() if row.startswith(name))
        assert mirrors in line
    assert "default for PandaPush-v0 runs" in out and "default for SymPush-v0 runs" in out
    assert load_config("panda_servo").mirrors == "PandaPush-v0"
    with pytest.raises(FileNotFoundError, match="shipped configs: panda_servo, sympush_twin, ur_twist"):
        load_config("kuka_servo")


def test_a_run_with_no_matching_shipped_config_is_one_line(linear_run, tmp_path, capsys):
    run = _run_on("SymReach-v0", linear_run, tmp_path)
    rc = symgym(["deploy", "--run", str(run), "--rosbridge", "ws://127.0.0.1:9", "--yes"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "'SymReach-v0'" in err and "--config" in err


# -- the deploy log and its replay --------------------------------------------------------------------------
def test_deploy_log_holds_every_command_and_reading_and_replays_with_zero_divergence(sim_robot_servers, cfg,
                                                                                       linear_run, tmp_path, capsys):
    server = sim_robot_servers("SymPush-v0", config=cfg)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({**yaml.safe_load(DEFAULT_CONFIG.read_text()), "control_rate_hz": 200,
                                        "deploy": {"episodes": 2, "seed": 10_000}}))
    log = tmp_path / "deploy.jsonl"
    assert symgym(["deploy", "--run", str(linear_run), "--rosbridge", server.url, "--config", str(cfg_path), "--yes",
                   "--log", str(log)]) == 0, capsys.readouterr().err
    assert not (tmp_path / "deploy.jsonl.part").exists()          # finalised: renamed into place
    records = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in records if r["event"] == "step"]
    assert [r["event"] for r in records if r["event"] != "step"] == ["start", "reset", "reset", "end"]
    for r in (r for r in records if r["event"] == "reset"):   # the reset's readings are stamped from its ack on
        assert r["reset_ack_ns"] is not None and min(r["stamp_ns"].values()) >= r["reset_ack_ns"]
    assert wait_until(lambda: server.steps == len(steps) + 1)      # every command but the final stop
    assert [s["command"] for s in steps] == server.commands[:len(steps)]
    for r in steps:
        assert set(r["readings"]) == {"/pusher/joint_states", "/puck/odom", "/goal/pose"} and r["time"] > 0
        assert all(v["stamp_ns"] == r["stamp_ns"][k] for k, v in zip(("pusher", "puck", "goal"), r["readings"].values()))
    capsys.readouterr()
    assert symgym(["replay", str(log), "--tolerance", "0"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "max observation divergence 0.0," in out[-1] and "success agrees on 2/2" in out[-1]
    assert [json.loads(line)["max_obs_error"] for line in out[:-1]] == [0.0, 0.0]


def test_replay_reports_a_divergence_and_reads_a_crashed_log(sim_robot_servers, cfg, linear_run, tmp_path, capsys):
    server = sim_robot_servers("SymPush-v0", config=cfg)
    from symgym.learn.deploy.deploy import deploy

    log = tmp_path / "d.jsonl"
    assert deploy(linear_run, server.url, config=cfg, yes=True, max_steps=10, log=log).status == "ok"
    lines = log.read_text().splitlines()
    step = json.loads(lines[5])
    step["next_obs"][0] += 0.25                                   # the arm did not do what the simulator does
    lines[5] = json.dumps(step)
    crashed = tmp_path / "c.jsonl"
    (tmp_path / "c.jsonl.part").write_text("\n".join(lines[:-1]) + '\n{"event": "st')   # killed mid-line
    capsys.readouterr()
    assert symgym(["replay", str(crashed), "--tolerance", "0.1"]) == 1
    captured = capsys.readouterr()
    assert "max observation divergence 0.25" in captured.out and "exceeds --tolerance 0.1" in captured.err
    assert symgym(["replay", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err


def test_sim_robot_cli_serves_wss_with_auth_for_a_deploy(linear_run, tmp_path, monkeypatch, capsys):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, SECRET_ENV: SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "symgym.learn.cli", "sim-robot", "--port", str(port),
                             "--tls-dir", str(tmp_path / "tls"), "--require-auth"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert f"wss://127.0.0.1:{port}" in lines[0] and "--ca-file" in lines[1], lines + [proc.stderr.read()
                                                                                          if proc.poll() else ""]
        monkeypatch.setenv(SECRET_ENV, SECRET)
        cfg_path = tmp_path / "cfg.yaml"
        cfg_path.write_text(yaml.safe_dump({**yaml.safe_load(DEFAULT_CONFIG.read_text()), "control_rate_hz": 200}))
        rc = symgym(["deploy", "--run", str(linear_run), "--rosbridge", f"wss://127.0.0.1:{port}", "--config",
                     str(cfg_path), "--ca-file", str(tmp_path / "tls" / "ca.pem"), "--yes", "--steps", "4",
                     "--log", str(tmp_path / "wss.jsonl")])
        assert rc == 0, capsys.readouterr().err
        # the port is busy now: a second twin is one line, exit 2
        capsys.readouterr()
        assert symgym(["sim-robot", "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"port {port}" in err and "in use" in err, err
    finally:
        proc.terminate()
        proc.wait(timeout=10)
