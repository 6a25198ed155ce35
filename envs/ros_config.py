"""RosArm-v0's contract with a robot: the YAML config and the rosbridge wire format.

The config names topics, message types, the frame every pose must be in, the control rate, the
safety limits and the staleness timeout. The codecs below turn rosbridge JSON messages (ROS 1
``secs/nsecs`` or ROS 2 ``sec/nanosec`` stamps) into float64 numpy vectors and back; both the
client (``envs.ros``) and the digital twin (``learn.deploy.twin``) use them, so the two sides cannot
drift apart. Every decoder raises :class:`MessageError` naming the topic and the bad value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "sympush_twin.yaml"
#: the shipped config ``symgym deploy`` uses, without ``--config``, for a run trained on each env
DEFAULT_FOR_ENV = {"SymPush-v0": "sympush_twin", "PandaPush-v0": "panda_servo"}

#: mirrored sim env -> the observation layout RosArm assembles for it (both use SymPush's 14-float layout)
SUPPORTED_MIRRORS = ("SymPush-v0", "PandaPush-v0")
#: envs whose policies share an observation/action contract: a run trained on any of them may drive an arm
#: whose config mirrors another (zero-shot transfer, e.g. a SymPush policy on the Panda)
SAME_CONTRACT = ("SymPush-v0", "PandaPush-v0")
POSE_TYPES = ("geometry_msgs/PoseStamped", "nav_msgs/Odometry")
TWIST, TWIST_STAMPED = "geometry_msgs/Twist", "geometry_msgs/TwistStamped"
COMMAND_TYPES = (TWIST, TWIST_STAMPED)
JOINT_STATE = "sensor_msgs/JointState"
TF_MESSAGE = "tf2_msgs/TFMessage"
#: how the end effector (the "pusher") can be observed: planar joints, a /tf transform, or a pose topic
PUSHER_TYPES = (JOINT_STATE, TF_MESSAGE, "geometry_msgs/PoseStamped")
RESET_SCENE, TRIGGER = "symgym_msgs/ResetScene", "std_srvs/Trigger"
RESET_TYPES = (RESET_SCENE, TRIGGER)


class MessageError(ValueError):
    """A message that is malformed or out of range; the watchdog halts the arm on it."""


# -- config ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicConfig:
    topic: str
    type: str                       # as sent to rosbridge: ROS 1 "pkg/Type" or ROS 2 "pkg/msg/Type"
    joints: tuple[str, ...] = ()
    frame: str = ""                 # TwistStamped: header.frame_id of commands; TFMessage: the child frame

    @property
    def kind(self) -> str:
        """The type in ROS 1 spelling, which the codecs dispatch on."""
        return self.type.replace("/msg/", "/")


@dataclass(frozen=True)
class RosArmConfig:
    """Validated contents of a RosArm YAML file (see ``envs/configs/sympush_twin.yaml``)."""

    mirrors: str
    frame_id: str
    control_rate_hz: float          # default: the mirrored env's 1 / (timestep x frame_skip)
    stale_timeout_s: float
    connect_timeout_s: float
    command: TopicConfig
    speed_per_unit_action: float    # always the mirrored env's max_speed (a policy's action scale)
    max_speed: float
    workspace_radius: float
    position_bound: float
    velocity_bound: float
    pusher: TopicConfig
    puck: TopicConfig
    goal: TopicConfig
    success_radius: float
    reset_service: str | None = None
    reset_type: str = RESET_SCENE   # or std_srvs/Trigger, seeded through the parameter reset_seed_param
    reset_seed_param: str | None = None
    arm: TopicConfig | None = None  # optional joint-state monitor (fresh and finite, or halt); not in the obs
    episodes: int = 1
    seed: int = 0
    source: str = "<dict>"
    mirror_rate_hz: float = 0.0     # the rate the policy was trained at

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    def observation_topics(self) -> dict[str, TopicConfig]:
        topics = {"pusher": self.pusher, "puck": self.puck, "goal": self.goal}
        if self.arm is not None:
            topics["arm"] = self.arm
        return topics


def shipped_configs() -> dict[str, Any]:
    """Name (file stem) -> the config file shipped as package data; found through ``importlib.resources``, so an
    installed wheel lists the same configs as a source checkout."""
    from importlib.resources import files

    folder = files("symgym.envs") / "configs"
    return {f.name[:-5]: f for f in sorted(folder.iterdir(), key=lambda f: f.name) if f.name.endswith(".yaml")}


def describe_config(text: str) -> str:
    """What a config is for: its ``description`` key (ignored by :func:`load_config`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return ""
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def config_for_env(env_id: str) -> str:
    """The shipped config name for a run trained on ``env_id`` (``symgym deploy`` without ``--config``)."""
    if env_id not in DEFAULT_FOR_ENV:
        raise ValueError(f"no shipped RosArm config mirrors {env_id!r} (configs mirror {sorted(DEFAULT_FOR_ENV)}); "
                         f"pass --config FILE")
    return DEFAULT_FOR_ENV[env_id]


def load_config(source: str | Path | dict | None = None) -> RosArmConfig:
    """Read and validate a RosArm config from a YAML path, a shipped config's name (``symgym configs``), a dict,
    or the default twin config."""
    if isinstance(source, RosArmConfig):
        return source
    if source is None:
        source = DEFAULT_CONFIG
    if isinstance(source, dict):
        return _parse(source, "<dict>")
    path = Path(source)
    shipped = shipped_configs() if not path.is_file() and not path.suffix and "/" not in str(source) else {}
    if str(source) in shipped:
        resource = shipped[str(source)]
        text, path = resource.read_text(encoding="utf8"), Path(str(resource))
    elif not path.is_file():
        raise FileNotFoundError(f"RosArm config {path} does not exist (shipped configs: "
                                f"{', '.join(shipped_configs())})")
    else:
        text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"RosArm config {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"RosArm config {path} must be a mapping, got {type(data).__name__}")
    return _parse(data, str(path))


def _parse(data: dict, where: str) -> RosArmConfig:
    def get(mapping: dict, key: str, ctx: str, kind=None, default: Any = ...):
        if key not in mapping:
            if default is ...:
                raise ValueError(f"RosArm config {where}: missing key {ctx}{key!r}")
            return default
        value = mapping[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"RosArm config {where}: {ctx}{key} must be a positive number, got {value!r}")
            return float(value)
        if kind is str and not (isinstance(value, str) and value):
            raise ValueError(f"RosArm config {where}: {ctx}{key} must be a non-empty string, got {value!r}")
        if kind is dict and not isinstance(value, dict):
            raise ValueError(f"RosArm config {where}: {ctx}{key} must be a mapping, got {value!r}")
        return value

    def topic(mapping: dict, ctx: str, allowed: tuple[str, ...]) -> TopicConfig:
        name = get(mapping, "topic", ctx, str)
        if not name.startswith("/"):
            raise ValueError(f"RosArm config {where}: {ctx}topic must start with '/', got {name!r}")
        mtype = get(mapping, "type", ctx, str)
        if mtype.replace("/msg/", "/") not in allowed:
            raise ValueError(f"RosArm config {where}: {ctx}type {mtype!r} is not supported; use one of {list(allowed)}")
        joints = tuple(mapping.get("joints", ()))
        frame = mapping.get("frame_id", mapping.get("child_frame", ""))
        needs_frame = {TWIST_STAMPED: "frame_id", TF_MESSAGE: "child_frame"}.get(mtype.replace("/msg/", "/"))
        if needs_frame and not (isinstance(frame, str) and frame):
            raise ValueError(f"RosArm config {where}: {ctx}{needs_frame} must name a frame for {mtype}, got {frame!r}")
        return TopicConfig(name, mtype, joints, frame or "")

    mirrors = get(data, "mirrors", "", str)
    if mirrors not in SUPPORTED_MIRRORS:
        raise ValueError(f"RosArm config {where}: mirrors {mirrors!r} is not supported; use one of {list(SUPPORTED_MIRRORS)}")
    command = get(data, "command", "", dict)
    limits = get(data, "limits", "", dict)
    obs = get(data, "observations", "", dict)
    pusher = topic(get(obs, "pusher", "observations.", dict), "observations.pusher.", PUSHER_TYPES)
    if pusher.kind == JOINT_STATE and len(pusher.joints) != 2:
        raise ValueError(f"RosArm config {where}: observations.pusher.joints must name the x and y joints, "
                         f"got {list(pusher.joints)!r}")
    reset = data.get("reset") or {}
    reset_type = reset.get("type", RESET_SCENE)
    if reset_type not in RESET_TYPES:
        raise ValueError(f"RosArm config {where}: reset.type {reset_type!r} is not supported; use one of {list(RESET_TYPES)}")
    arm = None
    if obs.get("arm") is not None:
        arm = topic(get(obs, "arm", "observations.", dict), "observations.arm.", (JOINT_STATE,))
        if not arm.joints:
            raise ValueError(f"RosArm config {where}: observations.arm.joints must list the arm's joints")
    deploy = data.get("deploy") or {}
    episodes, seed = deploy.get("episodes", 1), deploy.get("seed", 0)
    for key, value, low in (("episodes", episodes, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"RosArm config {where}: deploy.{key} must be an integer >= {low}, got {value!r}")
    cfg = RosArmConfig(
        mirrors=mirrors,
        frame_id=get(data, "frame_id", "", str),
        control_rate_hz=get(data, "control_rate_hz", "", float, 0.0),
        stale_timeout_s=get(data, "stale_timeout_s", "", float),
        connect_timeout_s=get(data, "connect_timeout_s", "", float, 5.0),
        command=topic(command, "command.", COMMAND_TYPES),
        speed_per_unit_action=get(command, "speed_per_unit_action", "command.", float, 0.0),
        max_speed=get(limits, "max_speed", "limits.", float),
        workspace_radius=get(limits, "workspace_radius", "limits.", float),
        position_bound=get(limits, "position_bound", "limits.", float),
        velocity_bound=get(limits, "velocity_bound", "limits.", float),
        pusher=pusher,
        puck=topic(get(obs, "puck", "observations.", dict), "observations.puck.", POSE_TYPES),
        goal=topic(get(obs, "goal", "observations.", dict), "observations.goal.", POSE_TYPES),
        success_radius=get(data, "success_radius", "", float),
        reset_service=reset.get("service"),
        reset_type=reset_type,
        reset_seed_param=reset.get("seed_param"),
        arm=arm,
        episodes=episodes,
        seed=seed,
        source=where,
    )
    if cfg.position_bound < cfg.workspace_radius:
        raise ValueError(f"RosArm config {where}: limits.position_bound ({cfg.position_bound}) must be >= "
                         f"limits.workspace_radius ({cfg.workspace_radius})")
    return _resolve_mirror(cfg)


def _resolve_mirror(cfg: RosArmConfig) -> RosArmConfig:
    """Take the action scale and the default control rate from the mirrored sim env itself, so that
    a policy's actions mean on the arm what they meant in training even after the sim env is retuned."""
    import gymnasium as gym

    import symgym.envs  # noqa: F401  (registers the mirrored id)

    mirror = gym.make(cfg.mirrors).unwrapped
    speed = float(mirror.max_speed)
    rate = 1.0 / (mirror.model.opt.timestep * mirror.frame_skip)
    mirror.close()
    if cfg.speed_per_unit_action and abs(cfg.speed_per_unit_action - speed) > 1e-12:
        raise ValueError(f"RosArm config {cfg.source}: command.speed_per_unit_action {cfg.speed_per_unit_action} "
                         f"differs from {cfg.mirrors}'s max_speed {speed}; a policy trained there would be mis-scaled "
                         f"(omit the key to use {speed})")
    return replace(cfg, speed_per_unit_action=speed, control_rate_hz=cfg.control_rate_hz or rate, mirror_rate_hz=rate)


# -- wire format -----------------------------------------------------------------------------
def stamp_to_ns(header: Any, topic: str) -> int:
    """Integer nanoseconds of a ``std_msgs/Header`` stamp (ROS 1 or ROS 2 field names)."""
    if not isinstance(header, dict) or not isinstance(header.get("stamp"), dict):
        raise MessageError(f"malformed message on {topic}: missing header.stamp")
    stamp = header["stamp"]
    sec = stamp.get("secs", stamp.get("sec"))
    nsec = stamp.get("nsecs", stamp.get("nanosec"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (sec, nsec)):
        raise MessageError(f"malformed message on {topic}: header.stamp must hold integer sec/nsec, got {stamp!r}")
    return sec * 1_000_000_000 + nsec


def ns_to_stamp(ns: int) -> dict:
    return {"secs": ns // 1_000_000_000, "nsecs": ns % 1_000_000_000}


def _numbers(values: Any, n: int, what: str, topic: str) -> np.ndarray:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise MessageError(f"malformed message on {topic}: {what} must be a list of {n} numbers, got {values!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise MessageError(f"malformed message on {topic}: {what} must hold numbers, got {values!r}")
    out = np.array(values, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise MessageError(f"malformed message on {topic}: {what} is not finite: {values!r}")
    return out


def _xy(vec: Any, what: str, topic: str) -> np.ndarray:
    if not isinstance(vec, dict):
        raise MessageError(f"malformed message on {topic}: {what} must be an x/y/z mapping, got {vec!r}")
    return _numbers([vec.get("x"), vec.get("y")], 2, what, topic)


def _check_frame(header: dict, frame: str | None, topic: str) -> None:
    if frame is None:          # e.g. /joint_states, whose frame_id is conventionally empty
        return
    got = header.get("frame_id")
    if got != frame:
        raise MessageError(f"message on {topic} is in frame {got!r}, expected {frame!r}")


@dataclass
class PlanarReading:
    """One decoded observation: a planar position, its velocity (None if the message has none) and stamp."""

    stamp_ns: int
    position: np.ndarray
    velocity: np.ndarray | None


def decode_joint_state(msg: Any, topic: str, joints: tuple[str, ...], frame: str) -> PlanarReading:
    if not isinstance(msg, dict):
        raise MessageError(f"malformed message on {topic}: expected a JointState mapping, got {msg!r}")
    stamp = stamp_to_ns(msg.get("header"), topic)
    _check_frame(msg["header"], frame, topic)
    names = msg.get("name")
    if not isinstance(names, list) or any(j not in names for j in joints):
        raise MessageError(f"malformed message on {topic}: joints {list(joints)} not all in name={names!r}")
    idx = [names.index(j) for j in joints]
    pos = _numbers(msg.get("position"), len(names), "position", topic)[idx]
    vel = _numbers(msg.get("velocity"), len(names), "velocity", topic)[idx]
    return PlanarReading(stamp, pos, vel)


def decode_pose(msg: Any, topic: str, mtype: str, frame: str) -> PlanarReading:
    if not isinstance(msg, dict):
        raise MessageError(f"malformed message on {topic}: expected a {mtype} mapping, got {msg!r}")
    stamp = stamp_to_ns(msg.get("header"), topic)
    _check_frame(msg["header"], frame, topic)
    pose = msg.get("pose")
    if mtype == "nav_msgs/Odometry":
        pose = pose.get("pose") if isinstance(pose, dict) else None
    if not isinstance(pose, dict):
        raise MessageError(f"malformed message on {topic}: missing pose")
    position = _xy(pose.get("position"), "pose.position", topic)
    velocity = None
    if mtype == "nav_msgs/Odometry":
        twist = msg.get("twist")
        twist = twist.get("twist") if isinstance(twist, dict) else None
        if not isinstance(twist, dict):
            raise MessageError(f"malformed message on {topic}: missing twist")
        velocity = _xy(twist.get("linear"), "twist.linear", topic)
    return PlanarReading(stamp, position, velocity)


def decode_twist(msg: Any, topic: str, stamped_frame: str | None = None) -> np.ndarray:
    """Planar linear velocity of a ``geometry_msgs/Twist`` or, with ``stamped_frame``, of a ``TwistStamped`` whose
    ``header.frame_id`` must be that frame (a command in another frame would move the arm the wrong way)."""
    if not isinstance(msg, dict):
        raise MessageError(f"malformed message on {topic}: expected a Twist mapping, got {msg!r}")
    if stamped_frame is not None:
        header = msg.get("header")
        if not isinstance(header, dict):
            raise MessageError(f"malformed message on {topic}: a TwistStamped needs a header")
        _check_frame(header, stamped_frame, topic)
        msg = msg.get("twist")
        if not isinstance(msg, dict):
            raise MessageError(f"malformed message on {topic}: missing twist")
    return _xy(msg.get("linear"), "linear", topic)


def decode_tf(msg: Any, topic: str, child: str, frame: str) -> PlanarReading | None:
    """The planar position of ``child`` from a ``tf2_msgs/TFMessage`` holding a ``frame -> child`` transform, or
    None when this message does not carry that transform (a /tf stream interleaves many frames)."""
    if not isinstance(msg, dict) or not isinstance(msg.get("transforms"), list):
        raise MessageError(f"malformed message on {topic}: expected a TFMessage with a transforms list, got "
                           f"{str(msg)[:80]!r}")
    for tf in msg["transforms"]:
        if not isinstance(tf, dict) or tf.get("child_frame_id") != child:
            continue
        stamp = stamp_to_ns(tf.get("header"), topic)
        _check_frame(tf["header"], frame, topic)
        transform = tf.get("transform")
        if not isinstance(transform, dict):
            raise MessageError(f"malformed message on {topic}: transform to {child!r} has no transform field")
        return PlanarReading(stamp, _xy(transform.get("translation"), "transform.translation", topic), None)
    return None


def encode_twist(velocity: np.ndarray) -> dict:
    vx, vy = (float(v) for v in velocity)
    return {"linear": {"x": vx, "y": vy, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}


def encode_command(velocity: np.ndarray, command: TopicConfig, stamp_ns: int, seq: int = 0) -> dict:
    """A planar velocity as the configured command message: a Twist, or a TwistStamped in ``command.frame``."""
    twist = encode_twist(velocity)
    if command.kind == TWIST_STAMPED:
        return {"header": _header(stamp_ns, command.frame, seq), "twist": twist}
    return twist


def encode_tf(stamp_ns: int, frame: str, seq: int, transforms: dict[str, tuple]) -> dict:
    """A ``tf2_msgs/TFMessage`` with one ``frame -> child`` transform per entry ``child: (xyz, quat_xyzw)``."""
    return {"transforms": [
        {"header": _header(stamp_ns, frame, seq), "child_frame_id": child,
         "transform": {"translation": dict(zip("xyz", (float(v) for v in xyz))),
                       "rotation": dict(zip("xyzw", (float(q) for q in quat)))}}
        for child, (xyz, quat) in transforms.items()]}


def _header(stamp_ns: int, frame: str, seq: int) -> dict:
    return {"seq": seq, "stamp": ns_to_stamp(stamp_ns), "frame_id": frame}


def encode_joint_state(stamp_ns: int, frame: str, seq: int, joints, position, velocity) -> dict:
    return {"header": _header(stamp_ns, frame, seq), "name": list(joints),
            "position": [float(v) for v in position], "velocity": [float(v) for v in velocity], "effort": []}


def encode_pose(stamp_ns: int, frame: str, seq: int, mtype: str, position, velocity=None, quat=(0, 0, 0, 1)) -> dict:
    pose = {"position": {"x": float(position[0]), "y": float(position[1]), "z": 0.0},
            "orientation": dict(zip("xyzw", (float(q) for q in quat)))}
    if mtype == "geometry_msgs/PoseStamped":
        return {"header": _header(stamp_ns, frame, seq), "pose": pose}
    vel = velocity if velocity is not None else (0.0, 0.0)
    return {"header": _header(stamp_ns, frame, seq), "child_frame_id": "", "pose": {"pose": pose},
            "twist": {"twist": {"linear": {"x": float(vel[0]), "y": float(vel[1]), "z": 0.0},
                                "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}}}
