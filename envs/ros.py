"""RosArm-v0: a Gymnasium env whose ``step`` commands a real (or simulated) arm over the rosbridge protocol.

The observation is assembled from subscribed topics in the order of the sim env the config mirrors,
and the env declares that env's symmetry and spaces, so a policy trained on ``SymPush-v0`` runs
unchanged. Constructing the env does not touch the network (``symgym envs`` lists it offline); the
connection opens on the first ``reset``.

Stepping protocol: publish the (clipped) command, then wait until every observation topic carries a
reading with a newer stamp than the one the action was computed from. A real arm streams readings
faster than the control rate, so this returns at once; the lock-step digital twin advances exactly one
control period per command, so deployment reproduces simulation bit for bit. Steps are paced to the
configured control rate.

Safety: commands are clipped to ``limits.max_speed`` and stripped of outward motion at the workspace
boundary; any malformed, out-of-range or stale reading, a lost connection or a rosbridge error status
sets a fault, publishes a zero Twist (while a connection exists) and makes the next/current ``step``
raise :class:`RosFault`. A watchdog thread enforces staleness even while the control loop is busy.
"""
from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import gymnasium as gym
import numpy as np

from symgym.envs.ros_config import (JOINT_STATE, TF_MESSAGE, TRIGGER, MessageError, PlanarReading, RosArmConfig,
                                    decode_joint_state, decode_pose, decode_tf, encode_command, load_config)
from symgym.envs.sym_push import clip_to_disc, push_observation

#: relative slack before the speed limit rescales a command, so that float rounding in
#: ``speed * unit_vector`` does not perturb commands that are exactly at the limit
SPEED_SLACK = 1e-9
#: Linux's TCP_QUICKACK (not exposed by every Python build); other platforms have no per-read switch
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12 if sys.platform.startswith("linux") else None)


def quickack_supported() -> bool:
    return sys.platform.startswith("linux") and TCP_QUICKACK is not None


def arm_quickack(transport) -> bool:
    """Ask the kernel to ACK the next segments at once instead of delaying the ACK (up to 40 ms on Linux).

    rosbridge's WebSocket server runs with Nagle's algorithm on, so after sending the first of a step's reading
    frames it holds the rest until that frame is ACKed; a client that has nothing to send back would delay that
    ACK. The kernel clears QUICKACK by itself, so this is re-armed after every read. Linux only: elsewhere it
    does nothing and returns False (the robot side can instead start rosbridge with TCP_NODELAY; see the README).
    """
    if not quickack_supported():
        return False
    try:
        handle = transport.getHandle()
        handle.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        return True
    except (AttributeError, OSError):   # not a TCP socket (or already closed)
        return False


class RosFault(RuntimeError):
    """The arm was halted. ``kind``: "stale", "connection", "message" or "service"."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def parse_rosbridge_url(url: str) -> tuple[str, int]:
    """``ws://HOST:PORT`` -> (host, port), with a clear error for anything else."""
    parsed = urlparse(url)
    if parsed.scheme != "ws" or not parsed.hostname or parsed.port is None or parsed.path not in ("", "/"):
        raise ValueError(f"rosbridge address must look like ws://HOST:PORT, got {url!r}")
    return parsed.hostname, parsed.port


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


class RosBridgeLink:
    """The rosbridge connection: subscriptions, the command publisher, fault detection and the watchdog."""

    def __init__(self, url: str, cfg: RosArmConfig, dry_run: bool = False, quickack: bool = True):
        self.url, self.cfg, self.dry_run = url, cfg, dry_run
        self.quickack = quickack and quickack_supported()
        self.differenced: set[str] = set()   # readings whose velocity is a finite difference of poses
        self._seq = 0
        self.host, self.port = parse_rosbridge_url(url)
        self._cond = threading.Condition()
        self._latest: dict[str, PlanarReading] = {}
        self._received_at: dict[str, float] = {}
        self._fault: RosFault | None = None
        self._stop_sent_for_fault = False
        self._closing = False
        self.armed = False          # True once a motion command has been published
        self.ros = None
        self._cmd = None
        self._watchdog: threading.Thread | None = None

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        import roslibpy
        from roslibpy.core import RosTimeoutError

        ros = roslibpy.Ros(host=self.host, port=self.port)
        self.ros = ros
        ros.factory.on_ready(self._guard_protocol)
        try:
            ros.run(timeout=self.cfg.connect_timeout_s)
        except RosTimeoutError:
            ros.factory.stopTrying()
            raise ConnectionError(f"cannot reach rosbridge at {self.url} "
                                  f"(no connection within {self.cfg.connect_timeout_s:g} s)") from None
        ros.on("close", self._on_close)
        for key, topic in self.cfg.observation_topics().items():
            roslibpy.Topic(ros, topic.topic, topic.type).subscribe(lambda msg, key=key: self._on_reading(key, msg))
        self._cmd = roslibpy.Topic(ros, self.cfg.command.topic, self.cfg.command.type)
        if not self.dry_run:
            self._cmd.advertise()
        self._watchdog = threading.Thread(target=self._watch, name="rosarm-watchdog", daemon=True)
        self._watchdog.start()

    def _guard_protocol(self, proto):
        """Route every incoming frame through our checks first: roslibpy only logs malformed frames and
        has no handler for rosbridge ``status`` errors, and a deployment must halt on both."""
        original = proto.on_message
        if self.quickack:
            received = proto.dataReceived

            def data_received(data: bytes):
                arm_quickack(proto.transport)
                received(data)

            proto.dataReceived = data_received
            arm_quickack(proto.transport)

        def on_message(payload: bytes):
            try:
                data = json.loads(payload.decode("utf8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                self._set_fault(RosFault("message", f"malformed message from rosbridge (not JSON: {e})"))
                return
            if not isinstance(data, dict) or "op" not in data:
                self._set_fault(RosFault("message", f"malformed message from rosbridge (no 'op'): {str(data)[:80]}"))
                return
            if data["op"] == "status":
                if data.get("level") == "error":
                    self._set_fault(RosFault("service", f"rosbridge reported an error: {data.get('msg')}"))
                return
            try:
                original(payload)
            except Exception as e:  # roslibpy raises for unknown ops and unmatched service responses
                self._set_fault(RosFault("message", f"malformed message from rosbridge: {e}"))

        proto.on_message = on_message
        return proto

    def _on_close(self, _proto) -> None:
        if self._closing:
            return
        self.ros.factory.stopTrying()   # a moving arm must not silently reconnect mid-episode
        self._set_fault(RosFault("connection", f"connection to rosbridge at {self.url} lost"), send_stop=False)

    def close(self) -> None:
        self.stop()
        self._closing = True
        if self.ros is not None:
            self.ros.factory.stopTrying()
            try:
                self.ros.close(timeout=2)
            except Exception:  # closing a dead connection: nothing left to tell the robot
                pass
        with self._cond:
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        return bool(self.ros is not None and self.ros.is_connected and not self._closing)

    # -- readings --------------------------------------------------------------------------
    def _on_reading(self, key: str, msg) -> None:
        topic = self.cfg.observation_topics()[key]
        try:
            if key == "arm":
                reading = decode_joint_state(msg, topic.topic, topic.joints, None)
            elif topic.kind == JOINT_STATE:
                reading = decode_joint_state(msg, topic.topic, topic.joints, self.cfg.frame_id)
            elif topic.kind == TF_MESSAGE:
                reading = decode_tf(msg, topic.topic, topic.frame, self.cfg.frame_id)
                if reading is None:      # a /tf message about other frames
                    return
            else:
                reading = decode_pose(msg, topic.topic, topic.kind, self.cfg.frame_id)
            if key != "arm":         # joint angles are not positions on the table
                self._check_range(topic.topic, reading)
            if reading.velocity is None:
                # poses carry no velocity: difference successive stamps (the goal's is unused);
                # not range-checked, since a scene reset makes it jump
                if key in ("pusher", "puck"):
                    reading.velocity = self._finite_difference(key, reading)
                    self.differenced.add(key)
                else:
                    reading.velocity = np.zeros(2)
        except MessageError as e:
            self._set_fault(RosFault("message", str(e)))
            return
        with self._cond:
            self._latest[key] = reading
            self._received_at[key] = time.monotonic()
            self._cond.notify_all()

    def _finite_difference(self, key: str, reading: PlanarReading) -> np.ndarray:
        prev = self._latest.get(key)
        if prev is None or reading.stamp_ns <= prev.stamp_ns:
            return np.zeros(2) if prev is None else prev.velocity
        return (reading.position - prev.position) / ((reading.stamp_ns - prev.stamp_ns) * 1e-9)

    def _check_range(self, topic: str, reading: PlanarReading) -> None:
        r = float(np.linalg.norm(reading.position))
        if r > self.cfg.position_bound:
            raise MessageError(f"out-of-range reading on {topic}: position {np.round(reading.position, 3).tolist()} is "
                               f"{r:.3f} m from the centre, beyond limits.position_bound {self.cfg.position_bound} m")
        if reading.velocity is not None:
            s = float(np.linalg.norm(reading.velocity))
            if s > self.cfg.velocity_bound:
                raise MessageError(f"out-of-range reading on {topic}: speed {s:.3f} m/s exceeds "
                                   f"limits.velocity_bound {self.cfg.velocity_bound} m/s")

    def stamps(self) -> dict[str, int]:
        with self._cond:
            return {k: r.stamp_ns for k, r in self._latest.items()}

    def wait_for_readings(self, newer_than: dict[str, int] | None, timeout: float) -> dict[str, PlanarReading]:
        """Block until every topic has a reading with a stamp newer than ``newer_than`` (or, when
        ``newer_than`` is None, one received within the staleness timeout); raise on fault or timeout."""
        keys = list(self.cfg.observation_topics())
        deadline = time.monotonic() + timeout

        def missing() -> list[str]:
            now = time.monotonic()
            out = []
            for k in keys:
                if k not in self._latest:
                    out.append(k)
                elif newer_than is not None and self._latest[k].stamp_ns <= newer_than.get(k, -1):
                    out.append(k)
                elif newer_than is None and now - self._received_at[k] > self.cfg.stale_timeout_s:
                    out.append(k)
            return out

        with self._cond:
            while True:
                self.raise_if_fault()
                lacking = missing()
                if not lacking:
                    return dict(self._latest)
                left = deadline - time.monotonic()
                if left <= 0:
                    names = ", ".join(self.cfg.observation_topics()[k].topic for k in lacking)
                    fault = RosFault("stale", f"observations stale: no new reading on {names} within {timeout:g} s")
                    break
                self._cond.wait(left)
        self._set_fault(fault)
        raise fault

    # -- commands ----------------------------------------------------------------------------
    def publish_velocity(self, velocity: np.ndarray) -> None:
        import roslibpy

        self.raise_if_fault()
        if self.dry_run:
            return
        self._cmd.publish(roslibpy.Message(self._command(velocity)))
        if np.any(velocity != 0):
            self.armed = True

    def stop(self) -> None:
        """Publish a zero Twist if a connection exists (never in dry-run: nothing was ever commanded)."""
        if self.dry_run or self._cmd is None or not self.connected:
            return
        import roslibpy

        self._cmd.publish(roslibpy.Message(self._command(np.zeros(2))))

    def _command(self, velocity: np.ndarray) -> dict:
        self._seq += 1
        return encode_command(velocity, self.cfg.command, time.time_ns(), self._seq)

    def reset_scene(self, seed: int) -> None:
        import roslibpy

        cfg = self.cfg
        if not cfg.reset_service:
            return
        timeout = cfg.stale_timeout_s * 4
        try:
            if cfg.reset_type == TRIGGER:
                # std_srvs/Trigger takes no arguments: the seed goes first into a parameter (rosapi's SetParam
                # completes before the trigger is called, unlike a topic, which could race it)
                if cfg.reset_seed_param:
                    setter = roslibpy.Service(self.ros, "/rosapi/set_param", "rosapi/SetParam")
                    setter.call(roslibpy.ServiceRequest({"name": cfg.reset_seed_param, "value": json.dumps(int(seed))}),
                                timeout=timeout)
                request = {}
            else:
                request = {"seed": int(seed)}
            service = roslibpy.Service(self.ros, cfg.reset_service, cfg.reset_type)
            response = service.call(roslibpy.ServiceRequest(request), timeout=timeout)
        except Exception as e:
            self.raise_if_fault()
            raise RosFault("service", f"reset service {self.cfg.reset_service} failed: {e}") from None
        if not response.get("success", False):
            raise RosFault("service", f"reset service {self.cfg.reset_service} refused: {response.get('message')}")

    # -- faults and the watchdog ---------------------------------------------------------------
    def _set_fault(self, fault: RosFault, send_stop: bool = True) -> None:
        with self._cond:
            first = self._fault is None
            if first:
                self._fault = fault
            self._cond.notify_all()
        if first and send_stop and not self._stop_sent_for_fault:
            self._stop_sent_for_fault = True
            self.stop()

    def raise_if_fault(self) -> None:
        if self._fault is not None:
            raise self._fault

    @property
    def fault(self) -> RosFault | None:
        return self._fault

    def _watch(self) -> None:
        period = self.cfg.stale_timeout_s / 5
        while not self._closing and self._fault is None:
            time.sleep(period)
            if not self.armed or self._closing:
                continue
            now = time.monotonic()
            with self._cond:
                stale = [self.cfg.observation_topics()[k].topic for k, t in self._received_at.items()
                         if now - t > self.cfg.stale_timeout_s]
            if stale:
                self._set_fault(RosFault("stale", f"observations stale: nothing received on {', '.join(stale)} "
                                                  f"for more than {self.cfg.stale_timeout_s:g} s"))


class RosArmEnv(gym.Env):
    """Gymnasium view of an arm behind rosbridge, mirroring the sim env named in the config."""

    metadata = {"render_modes": []}

    def __init__(self, config: str | Path | dict | RosArmConfig | None = None, url: str = "ws://127.0.0.1:9090",
                 dry_run: bool = False, quickack: bool = True):
        self.cfg = load_config(config)
        parse_rosbridge_url(url)  # fail at construction on a bad address, still without connecting
        self.url, self.dry_run, self.quickack = url, dry_run, quickack
        mirror = gym.make(self.cfg.mirrors)
        self.observation_space = mirror.observation_space
        self.action_space = mirror.action_space
        self.symmetry = mirror.unwrapped.symmetry
        mirror.close()
        self.link: RosBridgeLink | None = None
        self._stamps: dict[str, int] = {}
        self._readings: dict[str, PlanarReading] = {}
        self._next_tick = 0.0
        self.last_step_latency_s = float("nan")
        self.last_step_phases: dict[str, float] = {}

    # -- gym API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.link is None:
            link = RosBridgeLink(self.url, self.cfg, self.dry_run, quickack=self.quickack)
            link.connect()
            self.link = link
        link = self.link
        link.raise_if_fault()
        before = link.stamps()
        if self.cfg.reset_service:
            scene_seed = seed if seed is not None else int(self.np_random.integers(2**31))
            link.reset_scene(scene_seed)
            wanted = before
        else:
            wanted = None
        self._readings = link.wait_for_readings(wanted, self.cfg.stale_timeout_s)
        # a reset scene is at rest: a velocity differenced across the reset would be a jump, not a motion
        for key in link.differenced:
            r = self._readings[key]
            self._readings[key] = PlanarReading(r.stamp_ns, r.position, np.zeros(2))
        self._stamps = {k: r.stamp_ns for k, r in self._readings.items()}
        self._next_tick = time.monotonic()
        return self._obs(), self._info()

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
        return obs, reward, success, False, info

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
        return float(-(d_goal + 0.5 * d_push) * 10.0 + 10.0 * success), success

    def _info(self) -> dict:
        d_goal, _ = self._distances()
        return {"is_success": d_goal < self.cfg.success_radius, "goal_distance": d_goal,
                "stamp_ns": dict(self._stamps)}
