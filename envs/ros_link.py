"""The rosbridge connection behind RosArm-v0: subscriptions, the command publisher, the reset handshake, fault
detection and the watchdog (split from ``envs.ros``, which re-exports these names).

Readings count for a reset only when stamped at or after the reset's acknowledgement (see
:meth:`RosBridgeLink.reset_scene`), and a reading older than the newest one on its topic is dropped, so neither a
service response that overtakes the post-reset messages nor out-of-order delivery can start an episode from a
stale scene.
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time
from urllib.parse import urlparse

import numpy as np

from symgym.envs.ros_config import (JOINT_STATE, TF_MESSAGE, TRIGGER, MessageError, PlanarReading, RosArmConfig,
                                    decode_joint_state, decode_pose, decode_tf, encode_command, stamp_to_ns)
from symgym.envs.ros_secure import AUTH_SKEW_S, Security, auth_message, diagnose_tls, open_ros

#: rosapi's clock service: the robot's time right after a reset acknowledgement without a stamp
GET_TIME = "/rosapi/get_time"
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
    """``ws://HOST:PORT`` or ``wss://HOST:PORT`` (IPv6 in brackets: ``ws://[::1]:9090``) -> (host, port), with a
    one-line error naming what is wrong for anything else."""
    shape = "ws://HOST:PORT or wss://HOST:PORT (IPv6: ws://[::1]:9090)"
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("ws", "wss") or parsed.path not in ("", "/") or parsed.query:
        raise ValueError(f"rosbridge address must look like {shape}, got {url!r}")
    try:
        port = parsed.port
    except ValueError:   # urlparse's own message names neither the URL nor the rule
        raw = parsed.netloc.rpartition(":")[2]
        raise ValueError(f"rosbridge address {url!r}: port {raw!r} is not an integer in 1..65535") from None
    if not parsed.hostname:
        raise ValueError(f"rosbridge address {url!r} has no host; it must look like {shape}")
    if port is None or port == 0:
        raise ValueError(f"rosbridge address {url!r} has no port; it must look like {shape}")
    return parsed.hostname, port


def is_secure_url(url: str) -> bool:
    return urlparse(url).scheme == "wss"



class RosBridgeLink:
    """The rosbridge connection: subscriptions, the command publisher, fault detection and the watchdog."""

    def __init__(self, url: str, cfg: RosArmConfig, dry_run: bool = False, quickack: bool = True,
                 security: Security | None = None):
        self.url, self.cfg, self.dry_run = url, cfg, dry_run
        self.security = security or Security()
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
        """Open the connection (TLS verified for ``wss://``), authenticate if a secret is set, subscribe.

        Raises ConnectionError (unreachable, TLS handshake failed) or PermissionError (auth refused), one line
        each, before anything is published."""
        import roslibpy

        timeout = self.cfg.connect_timeout_s
        ros = open_ros(self.url, self.host, self.security)
        self.ros = ros
        ready = threading.Event()
        ros.factory.on_ready(self._guard_protocol)
        ros.factory.on_ready(lambda _proto: ready.set())
        ros.factory.manager.run()
        tls_failed = getattr(ros, "tls_failed", None)
        deadline = time.monotonic() + timeout
        while not ready.wait(0.01):
            if tls_failed is not None and tls_failed.is_set():
                ros.factory.stopTrying()
                reason = diagnose_tls(self.host, self.port, self.security.ca_file, timeout)
                raise ConnectionError(f"TLS handshake with rosbridge at {self.url} failed: {reason}")
            if time.monotonic() > deadline:
                ros.factory.stopTrying()
                raise ConnectionError(f"cannot reach rosbridge at {self.url} "
                                      f"(no connection within {timeout:g} s)")
        ros.on("close", self._on_close)
        if self.security.secret is not None:
            # the auth op must be the first message: rosbridge ignores everything before it
            local = ros.factory._proto.transport.getHost().host
            ros.send_on_ready(roslibpy.Message(auth_message(self.security.secret, local, self.host,
                                                            self.security.level, self.security.session_s)))
        for key, topic in self.cfg.observation_topics().items():
            roslibpy.Topic(ros, topic.topic, topic.type).subscribe(lambda msg, key=key: self._on_reading(key, msg))
        if self.security.secret is not None:
            self._await_authentication(timeout)
        self._cmd = roslibpy.Topic(ros, self.cfg.command.topic, self.cfg.command.type)
        if not self.dry_run:
            self._cmd.advertise()
        self._watchdog = threading.Thread(target=self._watch, name="rosarm-watchdog", daemon=True)
        self._watchdog.start()

    def _await_authentication(self, timeout: float) -> None:
        """rosbridge answers a refused ``auth`` by closing the connection and an accepted one with nothing: so
        wait for the first reading (accepted) or the close (refused)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._latest and self._fault is None and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            refused = self._fault is not None and self._fault.kind == "connection"
        if refused:
            self._closing = True
            raise PermissionError(f"rosbridge at {self.url} refused authentication (it closed the connection "
                                  f"after the auth op; check the secret, and the clocks: rosauth allows "
                                  f"{AUTH_SKEW_S} s of skew)")

    def _guard_protocol(self, proto):
        """Route every incoming frame through our checks first: roslibpy only logs malformed frames and
        has no handler for rosbridge ``status`` errors, and a deployment must halt on both. Outgoing frames queued
        while the server was closing the connection are dropped instead of raising (and printing a traceback)
        in the reactor: the close itself is the fault that reports it."""
        original = proto.on_message
        from twisted.internet import reactor

        def send_message(payload):
            def send():
                if proto.state == proto.STATE_OPEN:
                    proto.sendMessage(payload, isBinary=False)
            reactor.callFromThread(send)

        proto.send_message = send_message
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
        hint = ""
        if not self._latest and self.security.secret is None:   # closed before a single reading: likely rosauth
            hint = (" before sending a single reading (if the bridge requires authentication, give the rosauth "
                    "secret: --secret-file or $SYMGYM_ROSBRIDGE_SECRET)")
        self._set_fault(RosFault("connection", f"connection to rosbridge at {self.url} lost{hint}"), send_stop=False)

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
        prev = self._latest.get(key)
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
            if prev is not None and reading.stamp_ns < prev.stamp_ns:
                return   # delivered out of order: an older reading never replaces a newer one
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

    def reset_scene(self, seed: int) -> int | None:
        """Reset the scene; return the acknowledgement's stamp (ns, the robot's clock): only readings stamped at or
        after it show the reset scene. A bridge may deliver the service response before the topic messages that
        follow the reset, and a fresh connection may still be delivering pre-reset messages, so arrival order
        proves nothing. The stamp is the response's ``stamp`` field (``symgym_msgs/ResetScene``) or, for a service
        without one (``std_srvs/Trigger``), the robot's clock read through rosapi's ``/rosapi/get_time`` after
        the acknowledgement."""
        cfg = self.cfg
        if not cfg.reset_service:
            return None
        timeout = cfg.stale_timeout_s * 4
        try:
            if cfg.reset_type == TRIGGER:
                # std_srvs/Trigger takes no arguments: the seed goes first into a parameter (rosapi's SetParam
                # completes before the trigger is called, unlike a topic, which could race it)
                if cfg.reset_seed_param:
                    self.call_service("/rosapi/set_param", "rosapi/SetParam",
                                      {"name": cfg.reset_seed_param, "value": json.dumps(int(seed))}, timeout)
                request = {}
            else:
                request = {"seed": int(seed)}
            response = self.call_service(cfg.reset_service, cfg.reset_type, request, timeout)
        except RosFault:
            raise
        except Exception as e:
            raise RosFault("service", f"reset service {self.cfg.reset_service} failed: {e}") from None
        if not response.get("success", False):
            raise RosFault("service", f"reset service {self.cfg.reset_service} refused: {response.get('message')}")
        try:
            if "stamp" in response:
                return stamp_to_ns({"stamp": response["stamp"]}, cfg.reset_service)
            return stamp_to_ns({"stamp": self.call_service(GET_TIME, "rosapi/GetTime", {}, timeout).get("time")},
                               GET_TIME)
        except MessageError as e:
            raise RosFault("service", f"reset of {cfg.reset_service}: no usable acknowledgement stamp ({e})") from None
        except RosFault:
            raise
        except Exception as e:
            raise RosFault("service", f"{GET_TIME} failed after the reset: {e}") from None

    def call_service(self, name: str, service_type: str, args: dict, timeout: float) -> dict:
        """A service call that returns its response, and ends as soon as the link faults (a closed connection, e.g.
        a bridge that requires authentication) instead of waiting out the timeout."""
        import roslibpy

        done: dict = {}

        def settle(key):
            def callback(value):
                with self._cond:
                    done[key] = value
                    self._cond.notify_all()
            return callback

        roslibpy.Service(self.ros, name, service_type).call(roslibpy.ServiceRequest(args), settle("response"),
                                                            settle("error"))
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done and self._fault is None and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
        if not done:
            self.raise_if_fault()
            raise TimeoutError(f"no response within {timeout:g} s")
        if "error" in done:
            raise RuntimeError(done["error"])
        return done["response"]

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


