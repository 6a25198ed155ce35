"""RosArm-v0: a Gymnasium env whose ``step`` commands a real (or simulated) arm over the rosbridge protocol.

The observation is assembled from subscribed topics in the order of the sim env the config mirrors,
and the env declares that env's symmetry and spaces, so a policy trained on ``SymPush-v0`` runs
unchanged. Constructing the env does not touch the network (``symgym envs`` lists it offline); the
connection opens on the first ``reset``.

Stepping protocol: publish the (clipped) command, then wait until every observation topic carries a
reading with a newer stamp than the one the action was computed from. A real arm streams readings
faster than the control rate, so this returns at once; the lock-step digital twin advances exactly one
control period per command, so deployment reproduces simulation bit for bit. Steps are paced to the
configured control rate. Episodes end where the mirrored env's do (its ``max_episode_steps``).

Reset: the scene is reset through the config's service, and only readings stamped at or after the reset's
acknowledgement count (see ``envs.ros_link``), so a bridge that delivers the response before the post-reset messages,
or delivers messages out of order, cannot start an episode from the old scene. Transport: ``wss://`` with the
certificate verified (``ca_file`` or the system's CAs) and rosauth's ``auth`` op when a secret is configured
(``envs.ros_secure``).

Safety: commands are clipped to ``limits.max_speed`` and stripped of outward motion at the workspace
boundary; any malformed, out-of-range or stale reading, a lost connection or a rosbridge error status
sets a fault, publishes a zero Twist (while a connection exists) and makes the next/current ``step``
raise :class:`RosFault`. A watchdog thread enforces staleness even while the control loop is busy.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from symgym.envs.ros_config import PlanarReading, RosArmConfig, load_config
from symgym.envs.ros_link import (GET_TIME, TCP_QUICKACK, RosBridgeLink, RosFault, arm_quickack,  # noqa: F401
                                  is_secure_url, parse_rosbridge_url, quickack_supported)
from symgym.envs.ros_secure import Security, load_secret
from symgym.envs.sym_push import clip_to_disc, push_observation

#: relative slack before the speed limit rescales a command, so that float rounding in
#: ``speed * unit_vector`` does not perturb commands that are exactly at the limit
SPEED_SLACK = 1e-9


@dataclass
class CommandClip:
    velocity: np.ndarray        # what is published, m/s
    speed_clipped: bool
    workspace_clipped: bool


def clip_command(action: np.ndarray, pusher_pos: np.ndarray, cfg: RosArmConfig) -> CommandClip:
    """Turn a policy action into a safe planar velocity.

    The action is first interpreted exactly as the mirrored sim env does (projected onto the unit disc,
    times ``speed_per_unit_action``); then the safety limits apply: the speed is clipped to
    ``limits.max_speed`` and, at or beyond ``limits.workspace_radius``, the outward radial part is removed.
    Both limits commute with rotations and reflections about the workspace centre, so they keep the
    declared symmetry.
    """
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (2,) or not np.all(np.isfinite(a)):
        raise ValueError(f"RosArm action must be 2 finite numbers, got {np.asarray(action).tolist()!r}")
    v = cfg.speed_per_unit_action * clip_to_disc(a)
    speed = float(np.linalg.norm(v))
    speed_clipped = speed > cfg.max_speed * (1 + SPEED_SLACK)
    if speed_clipped:
        v = v * (cfg.max_speed / speed)
    r = float(np.linalg.norm(pusher_pos))
    workspace_clipped = False
    if r >= cfg.workspace_radius:
        radial = np.asarray(pusher_pos, dtype=np.float64) / r
        outward = float(v @ radial)
        if outward > 0:
            v = v - outward * radial
            workspace_clipped = True
    return CommandClip(v, speed_clipped, workspace_clipped)


def _mirror_reward(mirror):
    """The mirrored env's reward as a function of the two distances and success, with its own arithmetic (weights
    applied in its order), so that a reward computed from readings equals the simulator's to the last bit."""
    if hasattr(mirror, "shaping_cost"):     # SymPush: one source for its weights
        cost, bonus = mirror.shaping_cost, mirror.success_bonus
        return lambda d_goal, d_push, success: -cost(d_goal, d_push) + bonus * success
    return lambda d_goal, d_push, success: -(d_goal + 0.5 * d_push) * 10.0 + 10.0 * success   # PandaPush's


class RosArmEnv(gym.Env):
    """Gymnasium view of an arm behind rosbridge, mirroring the sim env named in the config."""

    metadata = {"render_modes": []}

    def __init__(self, config: str | Path | dict | RosArmConfig | None = None, url: str = "ws://127.0.0.1:9090",
                 dry_run: bool = False, quickack: bool = True, ca_file: str | None = None,
                 secret_file: str | None = None):
        """``ca_file``: PEM bundle that ``wss://`` certificates must chain to (default: the system's CAs);
        ``secret_file``: the rosauth secret (default: ``$SYMGYM_ROSBRIDGE_SECRET_FILE`` or
        ``$SYMGYM_ROSBRIDGE_SECRET``; none: no ``auth`` op). The secret itself is never an argument, so it
        stays out of ``env.spec`` and logs."""
        self.cfg = load_config(config)
        parse_rosbridge_url(url)  # fail at construction on a bad address, still without connecting
        self.url, self.dry_run, self.quickack = url, dry_run, quickack
        self.ca_file, self.secret_file = ca_file, secret_file
        mirror = gym.make(self.cfg.mirrors)
        self.observation_space = mirror.observation_space
        self.action_space = mirror.action_space
        self.symmetry = mirror.unwrapped.symmetry
        # episodes as long as the mirrored env's (RosArm-v0 is registered without a TimeLimit of its own)
        self.max_episode_steps: int | None = mirror.spec.max_episode_steps if mirror.spec else None
        self._reward_fn = _mirror_reward(mirror.unwrapped)
        mirror.close()
        self._elapsed = 0
        self.link: RosBridgeLink | None = None
        self._stamps: dict[str, int] = {}
        self._readings: dict[str, PlanarReading] = {}
        self._next_tick = 0.0
        self.last_step_latency_s = float("nan")
        self.last_step_phases: dict[str, float] = {}

    # -- gym API -----------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the rosbridge connection now (``reset`` does it otherwise); errors are one line, nothing moves."""
        if self.link is None:
            security = Security(ca_file=self.ca_file, secret=load_secret(self.secret_file))
            link = RosBridgeLink(self.url, self.cfg, self.dry_run, quickack=self.quickack, security=security)
            try:
                link.connect()
            except BaseException:
                link.close()
                raise
            self.link = link

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.connect()
        link = self.link
        link.raise_if_fault()
        self._elapsed = 0
        if self.cfg.reset_service:
            scene_seed = seed if seed is not None else int(self.np_random.integers(2**31))
            ack_ns = link.reset_scene(scene_seed)
            # only readings stamped at or after the acknowledgement show the reset scene
            wanted = {k: ack_ns - 1 for k in self.cfg.observation_topics()}
        else:
            ack_ns, wanted = None, None
        self._readings = link.wait_for_readings(wanted, self.cfg.stale_timeout_s)
        # a reset scene is at rest: a velocity differenced across the reset would be a jump, not a motion
        for key in link.differenced:
            r = self._readings[key]
            self._readings[key] = PlanarReading(r.stamp_ns, r.position, np.zeros(2))
        self._stamps = {k: r.stamp_ns for k, r in self._readings.items()}
        self._next_tick = time.monotonic()
        return self._obs(), {**self._info(), "reset_ack_ns": ack_ns}

    def step(self, action):
        if self.link is None:
            raise RuntimeError("call reset() before step(): RosArm-v0 connects on reset")
        link = self.link
        command = clip_command(action, self._readings["pusher"].position, self.cfg)
        # pace to the control rate; if we fell behind by more than a period, do not burst to catch up
        now = time.monotonic()
        if self._next_tick > now:
            time.sleep(self._next_tick - now)
        self._next_tick = max(self._next_tick + self.cfg.period_s, time.monotonic())
        start = time.perf_counter()
        link.publish_velocity(command.velocity)
        published = time.perf_counter()
        self._readings = link.wait_for_readings(None if self.dry_run else self._stamps, self.cfg.stale_timeout_s)
        received = time.perf_counter()
        self._stamps = {k: r.stamp_ns for k, r in self._readings.items()}
        self._elapsed += 1
        truncated = self.max_episode_steps is not None and self._elapsed >= self.max_episode_steps
        reward, success = self._reward()
        obs = self._obs()
        done = time.perf_counter()
        self.last_step_latency_s = done - start
        self.last_step_phases = {"publish_s": published - start, "wait_readings_s": received - published,
                                 "observation_s": done - received}
        info = {**self._info(), "command": command.velocity.tolist(), "speed_clipped": command.speed_clipped,
                "workspace_clipped": command.workspace_clipped, "latency_s": self.last_step_latency_s,
                "latency_phases_s": dict(self.last_step_phases)}
        if "arm" in self._readings:
            info["joint_positions"] = self._readings["arm"].position.tolist()
        return obs, reward, success, bool(truncated), info

    def stop(self) -> None:
        """Publish a zero command now (no-op without a connection)."""
        if self.link is not None:
            self.link.stop()

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    # -- observation and reward (SymPush's layout and reward, from readings) ----------------------
    def _obs(self) -> np.ndarray:
        r = self._readings
        pusher, puck, goal = r["pusher"].position, r["puck"].position, r["goal"].position
        return push_observation(pusher, r["pusher"].velocity, puck, r["puck"].velocity, goal,
                                self.cfg.speed_per_unit_action)

    def _distances(self) -> tuple[float, float]:
        # the same arithmetic as SymPush (math.hypot), so rewards match the twin to the last bit
        pusher, puck, goal = (self._readings[k].position for k in ("pusher", "puck", "goal"))
        return (math.hypot(goal[0] - puck[0], goal[1] - puck[1]),
                math.hypot(puck[0] - pusher[0], puck[1] - pusher[1]))

    def _reward(self) -> tuple[float, bool]:
        d_goal, d_push = self._distances()
        success = bool(d_goal < self.cfg.success_radius)
        return float(self._reward_fn(d_goal, d_push, success)), success

    def _info(self) -> dict:
        d_goal, _ = self._distances()
        return {"is_success": d_goal < self.cfg.success_radius, "goal_distance": d_goal,
                "stamp_ns": dict(self._stamps), "readings": self.readings_record()}

    def readings_record(self) -> dict:
        """The readings behind the current observation, as logged: per topic its stamp, position and velocity."""
        return {self.cfg.observation_topics()[k].topic: {"stamp_ns": r.stamp_ns, "position": r.position.tolist(),
                                                         "velocity": r.velocity.tolist()}
                for k, r in self._readings.items() if k != "arm"}
