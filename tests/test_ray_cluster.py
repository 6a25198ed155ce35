"""Scale-out proven: a two-node Ray cluster on loopback runs a sweep and gets the local run's trial summaries.

Slow (about a minute or two on a loaded 2-core machine): two ``ray start`` nodes, each with its own temp dir and
ports, then ``symgym sweep SPEC --address ... --storage ...`` against them and the same spec on an embedded local
Ray. Every process of the test's cluster gets a fresh token (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``): Ray
2.60's ``ray start --head`` turns token authentication on by default, and a node or client without the head's
token is refused; a fresh token also leaves ``~/.ray`` untouched.

Clean-up ends exactly the processes of this cluster (those whose command line names one of its temp dirs, and
their children) by pid: ``ray stop`` would stop every Ray on the machine, including other people's sweeps.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray.tune", reason="needs the sweep extra: pip install 'symgym[sweep]'")
psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    """Ports two nodes on one host would otherwise both take by default."""
    return [f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}", f"--node-manager-port={_free_port()}",
            f"--object-manager-port={_free_port()}"]


def _end_processes_under(*dirs: Path) -> None:
    """Kill the processes whose command line names one of ``dirs`` (this cluster's), and their children."""
    me = os.getpid()
    marks = [str(d) for d in dirs]
    roots = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["pid"] != me and any(m in cmd for m in marks):
            roots.append(p)
    procs: dict[int, psutil.Process] = {}
    for r in roots:
        try:
            for p in (r, *r.children(recursive=True)):
                procs[p.pid] = p
        except psutil.NoSuchProcess:
            pass
    procs.pop(me, None)
    for p in procs.values():
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(procs.values()), timeout=15)


def _alive_nodes(address: str, env: dict) -> int:
    code = ("import ray; ray.init(address=%r, log_to_driver=False, configure_logging=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))" % address)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


@pytest.fixture
def two_node_cluster():
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # short paths under /tmp: Ray's unix sockets live in the temp dir and socket paths are limited to 107 bytes
    head_tmp = Path(tempfile.mkdtemp(prefix="symgym-rh-", dir="/tmp"))
    node_tmp = Path(tempfile.mkdtemp(prefix="symgym-rn-", dir="/tmp"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run([str(RAY), "start", "--head", f"--port={port}", f"--temp-dir={head_tmp}",
                        "--include-dashboard=false", *common, *_node_ports()],
                       env=env, check=True, capture_output=True, timeout=START_TIMEOUT_S)
        subprocess.run([str(RAY), "start", f"--address={address}", f"--temp-dir={node_tmp}", *common, *_node_ports()],
                       env=env, check=True, capture_output=True, timeout=START_TIMEOUT_S)
        deadline = time.monotonic() + 120
        while (nodes := _alive_nodes(address, env)) < 2 and time.monotonic() < deadline:
            time.sleep(2)
        assert nodes == 2, f"expected two alive nodes at {address}, found {nodes}"
        yield address, env
    finally:
        _end_processes_under(head_tmp, node_tmp)
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(node_tmp, ignore_errors=True)


def _spec() -> dict:
    """Four short planner trials (as tests/test_sweep.py's tiny spec): no training, one short episode each."""
    return {"name": "cluster", "params": {"steps": 0, "episodes": 1, "agent_kwargs": {"samples": 8, "horizon": 4}},
            "grid": {"method": [{"name": "mppi", "agent": "mppi"}, {"name": "sym-mppi", "agent": "sym-mppi"}],
                     "env": ["SymReach-v0"], "seed": [0, 1]},
            "metrics": ["success_rate", "mean_return"],
            "claims": [{"claim": "{method} beats {baseline} on {env}", "for_each": ["env"], "metric": "mean_return",
                        "method": "sym-mppi", "baseline": "mppi"}]}


def _summaries(out: Path) -> dict[str, dict]:
    files = [p for p in (out / "trials" / "cluster").glob("*.json") if p.name != "sweep.json"]
    return {p.stem: json.loads(p.read_text()) for p in files}


def _sweep(spec: Path, out: Path, env: dict, *extra: str) -> None:
    cmd = [sys.executable, "-m", "symgym.learn.cli", "sweep", str(spec), "--out", str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


def test_two_node_cluster_sweep_matches_local_run(two_node_cluster, tmp_path):
    address, env = two_node_cluster
    spec = tmp_path / "cluster.yaml"
    spec.write_text(yaml.safe_dump(_spec()))
    on_cluster, local = tmp_path / "cluster-out", tmp_path / "local-out"
    _sweep(spec, on_cluster, env, "--address", address, "--storage", str(tmp_path / "storage"),
           "--max-concurrent", "2")
    # the local run: an embedded Ray (RAY_ADDRESS unset), with the test's token so ~/.ray stays untouched
    local_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    _sweep(spec, local, local_env)
    remote, here = _summaries(on_cluster), _summaries(local)
    assert len(remote) == 4 and remote.keys() == here.keys()
    for key in remote:
        assert remote[key]["labels"] == here[key]["labels"]
        # every metric but the wall-clock ones (train_seconds, eval_seconds) is a result and must agree exactly
        results = {k: v for k, v in remote[key]["metrics"].items() if not k.endswith("_seconds")}
        assert results == {k: v for k, v in here[key]["metrics"].items() if not k.endswith("_seconds")}, key
        assert {"success_rate", "mean_return"} <= results.keys()
    # the tune results were written to the shared storage path given with --storage
    assert any((tmp_path / "storage").iterdir())
