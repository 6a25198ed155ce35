"""A digital twin behind the rosbridge protocol: a MuJoCo ``SymPush-v0`` or ``PandaPush-v0`` served on loopback.

The Panda twin (``symgym sim-robot --robot panda``, config ``envs/configs/panda_servo.yaml``) speaks what a real
Panda setup exposes: ``sensor_msgs/JointState`` on ``/joint_states`` (``panda_joint1..7`` and the fingers), the
end effector as a ``tf2_msgs/TFMessage`` on ``/tf`` (``table -> panda_hand_tcp``, plus ``table -> panda_link0``),
the puck from a tracker topic, MoveIt Servo ``TwistStamped`` commands (``header.frame_id`` checked: a command in
another frame is refused with a rosbridge error status) and a ``std_srvs/Trigger`` reset seeded by a parameter
set through ``/rosapi/set_param``.

``nagle=True`` makes the twin behave like rosbridge's autobahn server on the wire: each reading is its own
WebSocket frame and the connection keeps Nagle's algorithm on (no TCP_NODELAY), which with a client that delays
its ACKs costs ~40 ms per step. Clients must stay fast against it (``envs.ros`` re-arms TCP_QUICKACK).

It speaks the subset of rosbridge v2 that ``roslibpy`` and ``envs.ros`` use — ``advertise``,
``unadvertise``, ``publish``, ``subscribe``, ``unsubscribe``, ``call_service`` and ``status`` errors — as
JSON over a WebSocket on 127.0.0.1, with the topics, message types and frame of a RosArm config.

Lock-step: each Twist received on the command topic sets the pusher's velocity actuator and advances
the simulation by exactly one control period (the mirrored env's ``frame_skip`` substeps); the new
state is then published with a stamp one period later. Between commands the current state is
re-published at ``republish_hz`` with an unchanged stamp, as a robot's state publisher would, so
clients can tell a new reading (newer stamp) from a repeated one. A ``reset`` service seeds the scene
exactly as ``env.reset(seed=...)`` does, which is what lets a deployment reproduce simulation.

Security and delivery, for the deployment-safety tests: ``tls`` (an ``ssl.SSLContext``) serves ``wss://``;
``auth_secret`` requires rosauth's ``auth`` op as the first message and, like a ROS 1 rosbridge started with
``authenticate:=true``, closes the connection on anything else; ``host="::1"`` listens on IPv6 loopback.
``delivery`` models what a real bridge may do around a reset: ``"in_order"`` (post-reset readings, then the service
response), ``"response_first"`` (the response, then the pre-reset readings a fresh connection had not yet received,
then the post-reset ones) and ``"reorder"`` (the response, then pre- and post-reset readings shuffled across and
within topics). Reset responses carry the reset scene's stamp, and ``/rosapi/get_time`` answers the twin's clock.

``fault`` injects failures after a number of commands, for the watchdog tests: ``drop`` (the server
stops), ``stall`` (connection kept, nothing published, commands ignored), ``garbage`` (a non-JSON
frame), ``malformed`` (a JointState without velocities), ``out_of_range`` (puck far off the table)
and ``bad_frame`` (a reading in the wrong frame).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from symgym.envs.ros_config import (CONFIG_DIR, JOINT_STATE, TF_MESSAGE, TRIGGER, TWIST_STAMPED, MessageError,
                                    RosArmConfig, decode_twist, encode_joint_state, encode_pose, encode_tf, load_config,
                                    ns_to_stamp)
from symgym.envs.ros_link import GET_TIME
from symgym.envs.ros_secure import check_auth
from symgym.envs.sym_push import clip_to_disc

HOST = "127.0.0.1"   # the twin never listens beyond loopback
LOOPBACK = (HOST, "::1")
DELIVERY_MODES = ("in_order", "response_first", "reorder")
FAULT_KINDS = ("drop", "stall", "garbage", "malformed", "out_of_range", "bad_frame")
#: ``symgym sim-robot --robot NAME`` -> (env id, config)
ROBOTS = {"panda": ("PandaPush-v0", CONFIG_DIR / "panda_servo.yaml")}
SET_PARAM = "/rosapi/set_param"


@dataclass(frozen=True)
class Fault:
    """Inject ``kind`` once ``after_steps`` commands have been executed."""

    kind: str
    after_steps: int

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {list(FAULT_KINDS)}")
        if self.after_steps < 0:
            raise ValueError(f"fault after_steps must be >= 0, got {self.after_steps}")


class SimRobotServer:
    """Run with ``start()`` (returns the port; port 0 picks a free one) and ``stop()``; or as a context manager.

    Attributes read by tests and benchmarks: ``commands`` (every velocity received, in order, m/s),
    ``steps`` (control steps simulated), ``resets`` (seeds received).
    """

    def __init__(self, env_id: str = "SymPush-v0", config: str | dict | RosArmConfig | None = None, port: int = 0,
                 fault: Fault | None = None, republish_hz: float = 10.0, nagle: bool = False, host: str = HOST,
                 tls=None, auth_secret: str | None = None, delivery: str = "in_order", delivery_seed: int = 0):
        if host not in LOOPBACK:
            raise ValueError(f"sim-robot host must be a loopback address {list(LOOPBACK)}, got {host!r}")
        if delivery not in DELIVERY_MODES:
            raise ValueError(f"unknown delivery {delivery!r}; use one of {list(DELIVERY_MODES)}")
        self.host, self.tls, self.auth_secret, self.delivery = host, tls, auth_secret, delivery
        self._rng = np.random.default_rng(delivery_seed)
        self.auth_refused = 0            # connections closed for a missing or invalid auth op
        self._authed: set = set()
        self.cfg = load_config(config)
        if env_id != self.cfg.mirrors:
            raise ValueError(f"sim-robot env {env_id!r} does not match the config, which mirrors {self.cfg.mirrors!r}")
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
        self.env_id, self.requested_port, self.fault = env_id, port, fault
        self.republish_hz = float(republish_hz)
        self.nagle = nagle
        self.seed_param: int | None = None
        self.env = gym.make(env_id).unwrapped
        self.is_arm = hasattr(self.env, "step_velocity")
        self.env.reset(seed=0)
        self.dt_ns = round(self.env.model.opt.timestep * self.env.frame_skip * 1e9)
        self.stamp_ns, self.seq = 0, 0
        self.commands: list[list[float]] = []
        self.resets: list[int] = []
        self.steps = 0
        self.port: int | None = None
        self.stalled = False
        self._subs: dict[object, set[str]] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls is not None else 'ws'}://{host}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> int:
        self._thread = threading.Thread(target=self._run, name="sim-robot", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            if isinstance(self._error, OSError):   # e.g. a busy port: one line for the CLI, not a traceback
                raise OSError(f"sim-robot cannot listen on {self.host} port {self.requested_port}: "
                              f"{self._error.strerror or self._error}") from None
            raise RuntimeError(f"sim-robot failed to start: {self._error}")
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # loop already finished
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> "SimRobotServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # surfaced to start()
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        async with serve(self._handle, self.host, self.requested_port, max_size=2**20, ssl=self.tls) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            ticker = asyncio.create_task(self._republish_forever())
            await self._stop.wait()
            ticker.cancel()

    # -- protocol ---------------------------------------------------------------------------------
    async def _handle(self, ws) -> None:
        self._subs[ws] = set()
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:   # asyncio turns Nagle off on every TCP connection; rosbridge's server leaves it on
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0 if self.nagle else 1)
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    await self._status(ws, f"could not parse message: {e}")
                    continue
                if self.auth_secret is not None and ws not in self._authed:
                    if msg.get("op") == "auth" and check_auth(msg, self.auth_secret):
                        self._authed.add(ws)
                        continue
                    self.auth_refused += 1   # as rosbridge: anything but a valid auth op closes the connection
                    await ws.close()
                    return
                await self._dispatch(ws, msg)
        except Exception:  # a client vanishing mid-send is not the twin's problem
            pass
        finally:
            self._subs.pop(ws, None)
            self._authed.discard(ws)

    async def _dispatch(self, ws, msg: dict) -> None:
        op = msg.get("op")
        if op in ("advertise", "unadvertise"):
            return
        if op == "subscribe":
            self._subs[ws].add(msg.get("topic"))
            # in the racy modes the current readings reach a new subscriber late (see _reset)
            if not self.stalled and self.delivery == "in_order":
                await self._publish_state(only=ws)
        elif op == "unsubscribe":
            self._subs[ws].discard(msg.get("topic"))
        elif op == "publish":
            if msg.get("topic") == self.cfg.command.topic:
                await self._on_command(ws, msg.get("msg"))
        elif op == "call_service":
            await self._on_service(ws, msg)
        else:
            await self._status(ws, f"unsupported op {op!r}", msg.get("id"))

    async def _status(self, ws, text: str, msg_id=None) -> None:
        out = {"op": "status", "level": "error", "msg": text}
        if msg_id is not None:
            out["id"] = msg_id
        await ws.send(json.dumps(out))

    async def _on_command(self, ws, twist) -> None:
        command = self.cfg.command
        try:
            velocity = decode_twist(twist, command.topic, command.frame if command.kind == TWIST_STAMPED else None)
        except MessageError as e:
            await self._status(ws, str(e))
            return
        self.commands.append(velocity.tolist())
        if self.stalled:
            return
        if self.fault is not None and self.steps >= self.fault.after_steps:
            await self._inject(self.fault.kind)
            return
        # the simulated actuator's own limit (the sim env's max_speed), independent of the client's clipping
        env = self.env
        ctrl = velocity if np.linalg.norm(velocity) <= env.max_speed * (1 + 1e-9) else \
            clip_to_disc(velocity, env.max_speed)
        if self.is_arm:
            env.step_velocity(ctrl)    # the arm's Cartesian controller realises the twist
        else:
            env.data.ctrl[:] = ctrl
            mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
            # mj_step leaves xpos/xquat one substep behind; a real robot's /tf would not lag
            mujoco.mj_kinematics(env.model, env.data)
        self.steps += 1
        self.stamp_ns += self.dt_ns
        await self._publish_state()

    async def _on_service(self, ws, msg: dict) -> None:
        service, args = msg.get("service"), msg.get("args") or {}
        reply = {"op": "service_response", "service": service, "id": msg.get("id")}
        if service == SET_PARAM and self.cfg.reset_seed_param:
            await self._set_param(ws, reply, args)
            return
        if service == GET_TIME:
            await ws.send(json.dumps({**reply, "result": True, "values": {"time": ns_to_stamp(self.stamp_ns)}}))
            return
        if service != self.cfg.reset_service:
            await ws.send(json.dumps({**reply, "result": False, "values": f"unknown service {service!r}"}))
            return
        if self.cfg.reset_type == TRIGGER:
            seed = self.seed_param if self.seed_param is not None else len(self.resets)
        else:
            seed = args.get("seed") if isinstance(args, dict) else None
        if isinstance(seed, bool) or not isinstance(seed, int):
            await ws.send(json.dumps({**reply, "result": False, "values": f"seed must be an integer, got {seed!r}"}))
            return
        stale = self.state_messages()
        self.env.reset(seed=seed)
        self.resets.append(seed)
        self.stamp_ns += self.dt_ns   # stamps never go backwards, so clients see the reset scene as new
        values = {"success": True, "message": f"seed {seed}"}
        if self.cfg.reset_type != TRIGGER:   # symgym_msgs/ResetScene's response carries the reset scene's stamp
            values["stamp"] = ns_to_stamp(self.stamp_ns)
        response = json.dumps({**reply, "result": True, "values": values})
        if self.delivery == "in_order":
            await self._publish_state()
            await ws.send(response)
            return
        await ws.send(response)
        fresh = self.state_messages()
        if self.delivery == "response_first":
            await self._send_messages(stale)
            # long enough for a client that trusts arrival order to take the stale scene, even on a loaded machine
            # (at 5 ms a busy 2-core machine let the fresh scene arrive first in 2 of 5 resets)
            await asyncio.sleep(0.05)
            await self._send_messages(fresh)
            return
        pairs = [(t, m) for t in fresh for m in (stale[t], fresh[t])]
        for i in self._rng.permutation(len(pairs)):   # across and within topics: stale before or after fresh
            await self._send_messages(dict([pairs[i]]))

    async def _set_param(self, ws, reply: dict, args) -> None:
        """rosapi's SetParam for the reset seed parameter (its value arrives JSON-encoded, as rosapi takes it)."""
        name = args.get("name") if isinstance(args, dict) else None
        try:
            value = json.loads(args.get("value"))
        except (TypeError, ValueError, AttributeError):
            value = None
        if name != self.cfg.reset_seed_param or isinstance(value, bool) or not isinstance(value, int):
            await ws.send(json.dumps({**reply, "result": False,
                                      "values": f"set_param: expected {self.cfg.reset_seed_param} = an integer, "
                                                f"got {name!r} = {args.get('value') if isinstance(args, dict) else args!r}"}))
            return
        self.seed_param = value
        await ws.send(json.dumps({**reply, "result": True, "values": {}}))

    # -- state ------------------------------------------------------------------------------------
    def state_messages(self) -> dict[str, dict]:
        """Current readings as rosbridge messages, keyed by topic."""
        env, cfg = self.env, self.cfg
        qvel = env.data.qvel     # float64 m/s; JSON round-trips them exactly, so the client's obs match bit for bit
        self.seq += 1
        puck_vel = qvel[env._pair_dof[0] if self.is_arm else env._puck_sl].copy()
        messages = {
            cfg.puck.topic: encode_pose(self.stamp_ns, cfg.frame_id, self.seq, cfg.puck.kind, env.puck_pos,
                                        puck_vel, quat=_xyzw(env.data.body("puck").xquat)),
            cfg.goal.topic: encode_pose(self.stamp_ns, cfg.frame_id, self.seq, cfg.goal.kind, env.goal_pos),
        }
        if cfg.pusher.kind == JOINT_STATE:
            messages[cfg.pusher.topic] = encode_joint_state(self.stamp_ns, cfg.frame_id, self.seq, cfg.pusher.joints,
                                                            env.pusher_pos, qvel[env._pusher_sl].copy())
        elif cfg.pusher.kind == TF_MESSAGE:
            tip = env.controller.tip(env.data)
            base = env.data.body("panda_link0")
            messages[cfg.pusher.topic] = encode_tf(self.stamp_ns, cfg.frame_id, self.seq, {
                "panda_link0": (base.xpos, _xyzw(base.xquat)),
                cfg.pusher.frame: ((tip[0], tip[1], tip[2]), _xyzw(env.hand_quaternion()))})
        else:   # a PoseStamped of the end effector
            messages[cfg.pusher.topic] = encode_pose(self.stamp_ns, cfg.frame_id, self.seq, cfg.pusher.kind,
                                                     env.pusher_pos, quat=_xyzw(env.hand_quaternion()))
        if cfg.arm is not None and self.is_arm:
            position, velocity = env.joint_state()
            messages[cfg.arm.topic] = encode_joint_state(self.stamp_ns, "", self.seq, env.joint_names, position,
                                                         velocity)
        return messages

    async def _publish_state(self, only=None) -> None:
        await self._send_messages(self.state_messages(), only)

    async def _send_messages(self, messages: dict[str, dict], only=None) -> None:
        for ws, topics in list(self._subs.items()):
            if only is not None and ws is not only:
                continue
            for topic, m in messages.items():
                if topic in topics:
                    await _send(ws, {"op": "publish", "topic": topic, "msg": m})

    async def _republish_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0 / self.republish_hz)
            if not self.stalled:
                await self._publish_state()

    async def _inject(self, kind: str) -> None:
        cfg = self.cfg
        if kind == "drop":
            self._stop.set()
            return
        if kind == "stall":
            self.stalled = True
            return
        self.stamp_ns += self.dt_ns
        messages = self.state_messages()
        if kind == "malformed":
            del messages[cfg.pusher.topic]["velocity" if cfg.pusher.kind == JOINT_STATE else
                                           "transforms" if cfg.pusher.kind == TF_MESSAGE else "pose"]
        elif kind == "out_of_range":
            messages[cfg.puck.topic] = encode_pose(self.stamp_ns, cfg.frame_id, self.seq, cfg.puck.kind, (0.9, 0.0),
                                                   (0.0, 0.0))
        elif kind == "bad_frame":
            messages[cfg.goal.topic]["header"]["frame_id"] = "world"
        for ws, topics in list(self._subs.items()):
            if kind == "garbage":
                await ws.send("{not json")
                continue
            for topic, m in messages.items():
                if topic in topics:
                    await _send(ws, {"op": "publish", "topic": topic, "msg": m})
        self.stalled = True   # after a fault the twin publishes nothing more


async def _send(ws, payload: dict) -> None:
    try:
        await ws.send(json.dumps(payload))
    except Exception:  # the client went away between our check and the send
        pass


def _xyzw(wxyz) -> tuple[float, float, float, float]:
    w, x, y, z = (float(v) for v in wxyz)
    return (x, y, z, w)


def robot_twin(robot: str | None, env_id: str = "SymPush-v0") -> tuple[str, object]:
    """(env id, config) of ``symgym sim-robot --robot NAME``; no robot: the planar pusher of ``env_id``."""
    if robot is None:
        return env_id, None
    if robot not in ROBOTS:
        raise ValueError(f"unknown robot {robot!r}; known: {', '.join(sorted(ROBOTS))}")
    return ROBOTS[robot]


def serve_forever(env_id: str = "SymPush-v0", port: int = 9090, config=None, nagle: bool = False,
                  tls_dir: str | None = None, require_auth: bool = False, delivery: str = "in_order",
                  host: str = HOST) -> int:
    """Run the twin until interrupted; prints the address it listens on (and, with ``tls_dir``, the test CA that
    clients must pass as ``--ca-file``). ``require_auth`` takes the secret from the same environment variables
    as ``symgym deploy``."""
    from symgym.envs.ros_secure import SECRET_ENV, SECRET_FILE_ENV, load_secret

    secret = load_secret() if require_auth else None
    if require_auth and secret is None:
        raise ValueError(f"--require-auth needs the rosauth secret in ${SECRET_ENV} or a file named by ${SECRET_FILE_ENV}")
    tls, ca = None, None
    if tls_dir is not None:
        from symgym.learn.deploy.testca import make_test_ca, server_context

        ca = make_test_ca(tls_dir)
        tls = server_context(ca)
    server = SimRobotServer(env_id, config=config, port=port, nagle=nagle, host=host, tls=tls, auth_secret=secret,
                            delivery=delivery)
    server.start()
    period = server.dt_ns * 1e-9
    print(f"sim-robot: {env_id} twin listening on {server.url} (lock-step: each command on "
          f"{server.cfg.command.topic} advances {period:g} s)", flush=True)
    if ca is not None:
        print(f"sim-robot: test CA {ca.ca_file} (clients: --ca-file {ca.ca_file})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="rosbridge digital twin (port 0 picks a free port)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--env", default="SymPush-v0")
    parser.add_argument("--config", default=None)
    parser.add_argument("--robot", default=None, help=f"one of {sorted(ROBOTS)} (overrides --env and --config)")
    parser.add_argument("--nagle", action="store_true", help="send readings like rosbridge: Nagle on, one frame each")
    a = parser.parse_args()
    env_id, config = robot_twin(a.robot, a.env) if a.robot else (a.env, a.config)
    sys.exit(serve_forever(env_id, a.port, config, nagle=a.nagle))
