"""``symgym deploy``: run a trained policy on an arm through rosbridge, with a replayable log.

    symgym sim-robot --port 9090 --env SymPush-v0          # a digital twin, in another shell
    symgym sim-robot --port 9090 --robot panda             # or the Panda twin (config envs/configs/panda_servo.yaml)
    symgym deploy --run runs/sac --rosbridge ws://127.0.0.1:9090 [--config NAME|FILE] [--dry-run] [--yes]
    symgym deploy --run runs/sac --rosbridge wss://robot:9090 --ca-file ca.pem --secret-file ~/.rosauth [--yes]
    symgym replay runs/sac/deploy-....jsonl            # the log's actions in the simulator: the divergence

Without ``--config`` the shipped config that mirrors the run's env is used (``symgym configs`` lists them). The
connection (TLS verified, rosauth if a secret is set) opens before anything is written, so an unreachable bridge,
a bad certificate or a refused secret is one line and leaves nothing on disk. The loop runs at the config's
control rate; every reset, command and reading goes to a JSONL log (``learn.deploy.log``: appended and flushed per
step, renamed into place when the deployment ends), which ``symgym replay`` re-executes in the mirrored simulator.

Exit status: 0 done, 1 aborted at the confirmation prompt, 2 bad input (from ``learn.cli``), 3 the arm
was halted by a fault (stale or malformed observations, lost connection); the fault is one line on stderr.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from symgym.envs.ros import RosFault, is_secure_url, parse_rosbridge_url
from symgym.envs.ros_config import SAME_CONTRACT, RosArmConfig, config_for_env, load_config
from symgym.envs.ros_secure import load_secret
from symgym.learn.deploy.log import DeployLog, read_log  # noqa: F401  (re-exported: the log's readers)
from symgym.learn.deploy.replay import replay_in_sim  # noqa: F401

EXIT_OK, EXIT_ABORTED, EXIT_FAULT = 0, 1, 3


@dataclass
class DeployResult:
    status: str                      # "ok", "aborted", "fault" (or "error"/"interrupted" in the log only)
    steps: int
    log: Path
    episodes: list[dict] = field(default_factory=list)
    message: str = ""

    @property
    def exit_code(self) -> int:
        return {"ok": EXIT_OK, "aborted": EXIT_ABORTED, "fault": EXIT_FAULT}[self.status]


def deploy(run_dir: str | Path, url: str, config: str | Path | dict | RosArmConfig | None = None,
           dry_run: bool = False, yes: bool = False, max_steps: int | None = None, log: str | Path | None = None,
           episodes: int | None = None, seed: int | None = None,
           confirm: Callable[[str], str] = input, interactive: bool | None = None, ca_file: str | None = None,
           secret_file: str | None = None) -> DeployResult:
    """Load the run's policy and run it on the arm behind ``url``.

    Args:
        run_dir: a run directory written by ``symgym train``; its env must be the one the config mirrors.
        url: ``ws://HOST:PORT`` of a rosbridge server.
        config: RosArm config (YAML path, shipped config name or dict); default: the shipped config that mirrors
            the run's env (a PandaPush run gets ``panda_servo``, a SymPush run ``sympush_twin``).
        dry_run: compute and log actions, publish nothing.
        yes: skip the confirmation before the first motion.
        max_steps: stop after this many control steps in total.
        log: JSONL log path (default ``RUN/deploy-TIMESTAMP.jsonl``).
        episodes, seed: override the config's ``deploy.episodes`` / ``deploy.seed`` (reset seeds seed, seed+1...).
        confirm: asks the question and returns the answer (``input`` by default).
        interactive: whether a person can answer ``confirm`` (default: stdin is a terminal).
        ca_file: CA bundle for ``wss://`` (default: the system's CAs).
        secret_file: rosauth secret (default ``$SYMGYM_ROSBRIDGE_SECRET_FILE`` / ``$SYMGYM_ROSBRIDGE_SECRET``).
    """
    import gymnasium as gym

    import symgym.envs  # noqa: F401  (registers RosArm-v0)
    from symgym.learn.run.runs import load_run

    parse_rosbridge_url(url)
    load_secret(secret_file)            # a missing or empty secret is one line, before anything else
    agent, train_cfg = load_run(run_dir)
    cfg = load_config(config if config is not None else config_for_env(train_cfg.env))
    transfer = train_cfg.env != cfg.mirrors
    if transfer and not (train_cfg.env in SAME_CONTRACT and cfg.mirrors in SAME_CONTRACT):
        raise ValueError(f"run {run_dir} was trained on {train_cfg.env!r} but config {cfg.source} mirrors {cfg.mirrors!r}")
    if train_cfg.env_kwargs:
        raise ValueError(f"run {run_dir} was trained with env_kwargs {train_cfg.env_kwargs}; RosArm mirrors "
                         f"{cfg.mirrors} with its default settings")
    if getattr(agent, "needs_simulator", False):
        raise ValueError(f"agent {train_cfg.agent!r} plans with the simulator's state and cannot run on a real arm")
    needs_confirmation = not (dry_run or yes)
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if needs_confirmation and not interactive:
        raise ValueError("refusing to move the arm: stdin is not a terminal, so nobody can confirm the first "
                         "motion; pass --yes to confirm non-interactively (or --dry-run)")
    n_episodes = cfg.episodes if episodes is None else int(episodes)
    first_seed = cfg.seed if seed is None else int(seed)
    log_path = Path(log) if log else Path(run_dir) / f"deploy-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"

    env = gym.make("RosArm-v0", config=cfg, url=url, dry_run=dry_run, ca_file=ca_file, secret_file=secret_file)
    try:
        env.unwrapped.connect()     # unreachable, bad certificate, refused auth: one line, no log, no motion
    except BaseException:
        env.close()
        raise
    writer = DeployLog(log_path)
    writer.write({"event": "start", "run": str(run_dir), "agent": train_cfg.agent, "env": train_cfg.env,
                  "transfer": transfer, "url": url, "config": asdict(cfg), "dry_run": dry_run, "time": time.time()})
    result = DeployResult("ok", 0, log_path)
    ep, step, obs, action = 0, 0, None, None
    try:
        for ep in range(n_episodes):
            if max_steps is not None and result.steps >= max_steps:
                break
            ep_seed = first_seed + ep
            obs, info = env.reset(seed=ep_seed)
            agent.reset()
            writer.write({"event": "reset", "episode": ep, "seed": ep_seed, "obs": obs, "stamp_ns": info["stamp_ns"],
                          "reset_ack_ns": info["reset_ack_ns"], "readings": info["readings"], "time": time.time()})
            if needs_confirmation:
                answer = confirm(f"About to move the arm behind {url} with the policy from {run_dir} at "
                                 f"{cfg.control_rate_hz:g} Hz (max speed {cfg.max_speed} m/s). Type 'yes' to start: ")
                if answer.strip().lower() not in ("y", "yes"):
                    result.status, result.message = "aborted", "aborted at the confirmation prompt; nothing moved"
                    break
                needs_confirmation = False
            ep_return, done, step = 0.0, False, 0
            while not done and (max_steps is None or result.steps < max_steps):
                action = np.asarray(agent.act(obs, deterministic=True), dtype=np.float32)
                next_obs, reward, terminated, truncated, info = env.step(action)
                writer.write({"event": "step", "episode": ep, "step": step, "obs": obs, "action": action,
                              "command": info["command"], "speed_clipped": info["speed_clipped"],
                              "workspace_clipped": info["workspace_clipped"], "reward": reward,
                              "next_obs": next_obs, "terminated": terminated, "truncated": truncated,
                              "is_success": info["is_success"], "latency_s": info["latency_s"],
                              "stamp_ns": info["stamp_ns"], "readings": info["readings"], "time": time.time()})
                obs, ep_return, step = next_obs, ep_return + float(reward), step + 1
                result.steps += 1
                done = terminated or truncated
            if result.status == "ok":
                result.episodes.append({"episode": ep, "seed": ep_seed, "steps": step, "return": ep_return,
                                        "success": bool(info["is_success"])})
    except RosFault as fault:
        result.status = "fault"
        result.message = f"arm halted at episode {ep} step {step} ({fault.kind}): {fault}"
        writer.write({"event": "fault", "episode": ep, "step": step, "kind": fault.kind, "message": str(fault),
                      "obs": obs, "action": action, "time": time.time()})
    except BaseException as e:  # Ctrl-C, an unreachable bridge, a policy error: still stop and log, then re-raise
        result.status = "interrupted" if isinstance(e, KeyboardInterrupt) else "error"
        result.message = f"{type(e).__name__}: {e}"
        raise
    finally:
        env.close()   # publishes a zero Twist on every exit path while a connection exists
        writer.write({"event": "end", "status": result.status, "steps": result.steps, "episodes": result.episodes,
                      "message": result.message, "time": time.time()})
        writer.close()   # LOG.part -> LOG: a complete log
    return result


def deploy_main(args: argparse.Namespace) -> int:
    """``symgym deploy``: prints a summary; a fault is one ``symgym: error:`` line on stderr."""
    ca_file, secret_file = getattr(args, "ca_file", None), getattr(args, "secret_file", None)
    host, _ = parse_rosbridge_url(args.rosbridge)
    if not is_secure_url(args.rosbridge) and host not in ("127.0.0.1", "::1", "localhost") and \
            load_secret(secret_file) is not None:
        # rosauth over plain ws: the MAC and every later command cross the network in clear
        print(f"symgym: warning: {args.rosbridge} is not TLS; the auth op and the commands travel unencrypted "
              f"(use wss://)", file=sys.stderr)
    result = deploy(args.run, args.rosbridge, config=args.config, dry_run=args.dry_run, yes=args.yes,
                    max_steps=args.steps, log=args.log, ca_file=ca_file, secret_file=secret_file)
    if result.status == "fault":
        print(f"symgym: error: {result.message}", file=sys.stderr)
    elif result.status == "aborted":
        print(f"symgym: {result.message}", file=sys.stderr)
    else:
        wins = sum(e["success"] for e in result.episodes)
        print(f"deployed {result.steps} steps over {len(result.episodes)} episode(s), {wins} success(es)"
              f"{' (dry run: nothing published)' if args.dry_run else ''}")
    print(f"log: {result.log}")
    return result.exit_code


def sim_robot_main(args: argparse.Namespace) -> int:
    """``symgym sim-robot``: serve the digital twin on 127.0.0.1 until interrupted."""
    from symgym.learn.deploy.twin import robot_twin, serve_forever

    env_id, config = robot_twin(getattr(args, "robot", None), args.env)
    return serve_forever(env_id, args.port, config, tls_dir=getattr(args, "tls_dir", None),
                         require_auth=getattr(args, "require_auth", False),
                         delivery=getattr(args, "delivery", "in_order"), host=getattr(args, "host", "127.0.0.1"))


# -- a scripted policy packaged as a run (rehearsals, tests, the latency benchmark) ------------------
def write_linear_policy_run(run_dir: str | Path, to_puck: float = 40.0, to_goal: float = 10.0, seed: int = 0) -> Path:
    """Write a ``sac`` run directory whose deterministic policy is ``tanh(to_puck (puck - pusher) + to_goal
    (goal - puck))``: an SB3 SAC with no hidden layers and hand-set weights. It loads and deploys exactly
    like a trained run, needs no training time, and succeeds on some SymPush seeds (about 1 in 10)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    import symgym.envs  # noqa: F401
    from symgym.agents.base import TrainConfig
    from symgym.agents.sac import SACAgent, SACConfig
    from symgym.learn.io import write_json

    run_dir = Path(run_dir)
    env = gym.make("SymPush-v0")
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": []}, buffer_size=1, learning_starts=0, seed=seed,
                device="cpu")
    weight = torch.zeros(2, 14)
    weight[0, 10] = weight[1, 11] = to_puck    # obs[10:12] = puck - pusher
    weight[0, 12] = weight[1, 13] = to_goal    # obs[12:14] = goal - puck
    with torch.no_grad():
        model.policy.actor.mu.weight.copy_(weight)
        model.policy.actor.mu.bias.zero_()
    env.close()
    config = TrainConfig(agent="sac", env="SymPush-v0", steps=0, seed=seed, out=str(run_dir),
                         agent_kwargs={"net_arch": []})
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config.to_json())
    agent = SACAgent(SACConfig(net_arch=[]), seed)
    agent.model = model
    agent.save(run_dir)
    return run_dir


def configs_main(args) -> int:
    """``symgym configs``: the shipped RosArm configs (usable by name with ``--config``)."""
    from symgym.envs.ros_config import DEFAULT_FOR_ENV, describe_config, shipped_configs

    defaults = {name: env for env, name in DEFAULT_FOR_ENV.items()}
    rows = []
    for name, resource in shipped_configs().items():
        cfg = load_config(name)
        note = f" (default for {defaults[name]} runs)" if name in defaults else ""
        rows.append((name, cfg.mirrors, f"{cfg.command.topic} [{cfg.command.type}]",
                     describe_config(resource.read_text(encoding="utf8")) + note))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'name':<{w[0]}}  {'mirrors':<{w[1]}}  {'command':<{w[2]}}  about")
    for name, mirrors, command, about in rows:
        print(f"{name:<{w[0]}}  {mirrors:<{w[1]}}  {command:<{w[2]}}  {about}")
    return 0
