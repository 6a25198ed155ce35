"""A digital twin behind the rosbridge protocol: a MuJoCo ``SymPush-v0`` served on loopback.

It speaks the subset of rosbridge v2 that ``roslibpy`` and ``envs.ros`` use — ``advertise``,
``unadvertise``, ``publish``, ``subscribe``, ``unsubscribe``, ``call_service`` and ``status`` errors — as
JSON over a WebSocket on 127.0.0.1, with the topics, message types and frame of a RosArm config.

Lock-step: each Twist received on the command topic sets the pusher's velocity actuator and advances
the simulation by exactly one control period (the mirrored env's ``frame_skip`` substeps); the new
state is then published with a stamp one period later. Between commands the current state is
re-published at ``republish_hz`` with an unchanged stamp, as a robot's state publisher would, so
clients can tell a new reading (newer stamp) from a repeated one. A ``reset`` service seeds the scene
exactly as ``env.reset(seed=...)`` does, which is what lets a deployment reproduce simulation.

``fault`` injects failures after a number of commands, for the watchdog tests: ``drop`` (the server
stops), ``stall`` (connection kept, nothing published, commands ignored), ``garbage`` (a non-JSON
frame), ``malformed`` (a JointState without velocities), ``out_of_range`` (puck far off the table)
and ``bad_frame`` (a reading in the wrong frame).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from envs.ros_config import (MessageError, RosArmConfig, decode_twist, encode_joint_state, encode_pose, load_config)
from envs.sym_push import clip_to_disc

HOST = "127.0.0.1"   # the twin never listens beyond loopback
FAULT_KINDS = ("drop", "stall", "garbage", "malformed", "out_of_range", "bad_frame")


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
                 fault: Fault | None = None, republish_hz: float = 10.0):
        self.cfg = load_config(config)
        if env_id != self.cfg.mirrors:
            raise ValueError(f"sim-robot env {env_id!r} does not match the config, which mirrors {self.cfg.mirrors!r}")
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
        self.env_id, self.requested_port, self.fault = env_id, port, fault
        self.republish_hz = float(republish_hz)
        self.env = gym.make(env_id).unwrapped
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
        return f"ws://{HOST}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> int:
        self._thread = threading.Thread(target=self._run, name="sim-robot", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
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
        async with serve(self._handle, HOST, self.requested_port, max_size=2**20) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            ticker = asyncio.create_task(self._republish_forever())
            await self._stop.wait()
            ticker.cancel()

    # -- protocol ---------------------------------------------------------------------------------
    async def _handle(self, ws) -> None:
        self._subs[ws] = set()
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    await self._status(ws, f"could not parse message: {e}")
                    continue
                await self._dispatch(ws, msg)
        except Exception:  # a client vanishing mid-send is not the twin's problem
            pass
        finally:
            self._subs.pop(ws, None)

    async def _dispatch(self, ws, msg: dict) -> None:
        op = msg.get("op")
        if op in ("advertise", "unadvertise"):
            return
        if op == "subscribe":
            self._subs[ws].add(msg.get("topic"))
            if not self.stalled:
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
        try:
            velocity = decode_twist(twist, self.cfg.command.topic)
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
        env.data.ctrl[:] = ctrl
        mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
        self.steps += 1
        self.stamp_ns += self.dt_ns
        await self._publish_state()

    async def _on_service(self, ws, msg: dict) -> None:
        service, args = msg.get("service"), msg.get("args") or {}
        reply = {"op": "service_response", "service": service, "id": msg.get("id")}
        if service != self.cfg.reset_service:
            await ws.send(json.dumps({**reply, "result": False, "values": f"unknown service {service!r}"}))
            return
        seed = args.get("seed") if isinstance(args, dict) else None
        if isinstance(seed, bool) or not isinstance(seed, int):
            await ws.send(json.dumps({**reply, "result": False, "values": f"seed must be an integer, got {seed!r}"}))
            return
        self.env.reset(seed=seed)
        self.resets.append(seed)
        self.stamp_ns += self.dt_ns   # stamps never go backwards, so clients see the reset scene as new
        await self._publish_state()
        await ws.send(json.dumps({**reply, "result": True, "values": {"success": True, "message": f"seed {seed}"}}))

    # -- state ------------------------------------------------------------------------------------
    def state_messages(self) -> dict[str, dict]:
        """Current readings as rosbridge messages, keyed by topic."""
        env, cfg = self.env, self.cfg
        qvel = env.data.qvel     # float64 m/s; JSON round-trips them exactly, so the client's obs match bit for bit
        self.seq += 1
        return {
            cfg.pusher.topic: encode_joint_state(self.stamp_ns, cfg.frame_id, self.seq, cfg.pusher.joints,
                                                 env.pusher_pos, qvel[env._pusher_sl].copy()),
            cfg.puck.topic: encode_pose(self.stamp_ns, cfg.frame_id, self.seq, cfg.puck.kind, env.puck_pos,
                                        qvel[env._puck_sl].copy(), quat=_xyzw(env.data.body("puck").xquat)),
            cfg.goal.topic: encode_pose(self.stamp_ns, cfg.frame_id, self.seq, cfg.goal.kind, env.goal_pos),
        }

    async def _publish_state(self, only=None) -> None:
        messages = self.state_messages()
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
            del messages[cfg.pusher.topic]["velocity"]
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


def serve_forever(env_id: str = "SymPush-v0", port: int = 9090, config=None) -> int:
    """Run the twin until interrupted; prints the address it listens on."""
    server = SimRobotServer(env_id, config=config, port=port)
    server.start()
    period = server.dt_ns * 1e-9
    print(f"sim-robot: {env_id} twin listening on {server.url} (lock-step: each command on "
          f"{server.cfg.command.topic} advances {period:g} s)", flush=True)
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
    a = parser.parse_args()
    sys.exit(serve_forever(a.env, a.port, a.config))
