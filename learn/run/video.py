"""Videos of episodes: 3-D ``mujoco.Renderer`` frames when a headless GL backend works, MP4 files.

Three calls, in this order (``symgym eval --video`` makes them)::

    backend = configure_headless_gl()     # before anything imports mujoco; probes EGL, then OSMesa
    grab = frame_source(env)              # () -> (H, W, 3) uint8: a 3-D view, else the env's top-down render()
    ...                                   # after env.reset() and every env.step(): frames.append(grab())
    path = write_video(frames, "runs/x/episode.mp4", fps=grab.fps)   # MP4 (imageio-ffmpeg), else GIF

The 3-D view renders the env's own ``MjModel``/``MjData`` (nothing is simulated twice) from a fixed camera looking
at the workspace (an env may set ``video_camera = {"lookat": ..., "distance": ..., "azimuth": ...,
"elevation": ...}``), with shadows, reflections, tendons and sites off. CPU rendering through llvmpipe at 480x360
measured 6.5-14.6 ms of process CPU time a frame (EGL and OSMesa alike; wall 26-68 ms on a machine with load 40
on 2 cores): ``python -m symgym.learn.run.video SymPush-v0 ...`` prints it for any env. Envs that are not MuJoCo (the
PyBullet tabletop scenes), and machines without EGL or OSMesa, fall back to the env's ``render()`` (for planar
envs the numpy top-down drawing; at 256x256 it is not cheaper than the 3-D view, it is only the 64x64 image
*observations* that are). That fallback needs the env made with ``render_mode="rgb_array"``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from symgym.learn.io import atomic_path

#: headless backends tried in order (``MUJOCO_GL`` values); both render on the CPU through Mesa's llvmpipe
HEADLESS_BACKENDS = ("egl", "osmesa")
#: a scene with one lit sphere: what the probe renders in a child process
_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><light pos="0 0 1"/><geom size=".1"/></worldbody></mujoco>')
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 24, 32)
r.update_scene(d)
px = r.render()
assert px.shape == (24, 32, 3) and px.max() > 0, px.shape
r.close()
print("symgym-gl-ok", flush=True)
"""
_configured: dict[str, str | None] = {}
#: MUJOCO_GL values with which mujoco loads no GL at all
_GL_OFF = ("disable", "disabled", "off", "false", "0")


def probe_gl_backend(backend: str, timeout: float = 60.0) -> bool:
    """Whether ``mujoco.Renderer`` renders with ``MUJOCO_GL=backend``, tried in a child process (a broken GL
    stack can abort the process that loads it)."""
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "symgym-gl-ok" in out.stdout.split()


def configure_headless_gl(backends: Iterable[str] = HEADLESS_BACKENDS) -> str | None:
    """Choose the first GL backend that renders and set ``os.environ["MUJOCO_GL"]`` (and ``PYOPENGL_PLATFORM``)
    to it; returns it, or None when none works. Call it before anything imports mujoco.

    A ``MUJOCO_GL`` the user already set is kept if it renders. The answer is remembered for the process. If
    mujoco was imported already, mujoco's choice of GL context is re-read (possible while no context exists).
    """
    if "backend" in _configured:
        return _configured["backend"]
    preset = os.environ.get("MUJOCO_GL", "").strip().lower()
    if preset in _GL_OFF:
        _configured["backend"] = None
        return None
    candidates = ([preset] if preset else []) + [b for b in backends if b != preset]
    if preset and "OpenGL" in sys.modules:
        candidates = [preset]  # a GL library is loaded for the preset backend already: no switching now
    chosen = next((b for b in candidates if probe_gl_backend(b)), None)
    if chosen is not None:
        os.environ["MUJOCO_GL"] = chosen
        if chosen in ("egl", "osmesa"):
            os.environ["PYOPENGL_PLATFORM"] = chosen
        if "mujoco" in sys.modules and chosen != preset:
            _reselect_mujoco_gl_context()
    _configured["backend"] = chosen
    return chosen


def _reselect_mujoco_gl_context() -> None:
    """mujoco reads ``MUJOCO_GL`` once, when it is imported; make it read it again (no context exists yet)."""
    import importlib

    from mujoco.rendering.classic import gl_context

    importlib.reload(gl_context)


class MujocoFrames:
    """``() -> (H, W, 3) uint8``: the env's current MuJoCo state rendered in 3-D from a fixed camera."""

    def __init__(self, env: Any, width: int = 480, height: int = 360, camera: dict[str, Any] | None = None):
        import mujoco

        u = env.unwrapped
        # render a copy of the model so that lighting tweaks never touch the env's own MjModel
        self.model = _render_model(u.model)
        self.data = u.data
        self.renderer = mujoco.Renderer(self.model, int(height), int(width))
        flags = self.renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        # tendons (SymPush's rim constraints are drawn as dozens of capsules) and sites are bookkeeping, not scene
        self.option = mujoco.MjvOption()
        self.option.flags[mujoco.mjtVisFlag.mjVIS_TENDON] = False
        self.option.sitegroup[:] = 0
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        view = {**default_camera(u.model, u.data), **(getattr(u, "video_camera", None) or {}), **(camera or {})}
        self.camera.lookat[:] = view["lookat"]
        self.camera.distance, self.camera.azimuth, self.camera.elevation = (
            float(view["distance"]), float(view["azimuth"]), float(view["elevation"]))
        self.fps = _env_fps(u)
        self.kind = f"3-D mujoco.Renderer ({os.environ.get('MUJOCO_GL', 'default GL')})"

    def __call__(self) -> np.ndarray:
        self.renderer.update_scene(self.data, camera=self.camera, scene_option=self.option)
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()


def _render_model(model):
    import copy

    m = copy.copy(model)
    m.vis.headlight.ambient[:] = np.maximum(m.vis.headlight.ambient, 0.35)
    m.vis.headlight.diffuse[:] = np.maximum(m.vis.headlight.diffuse, 0.6)
    return m


def default_camera(model, data) -> dict[str, Any]:
    """A view of every non-plane geom (where they are now), from above and in front (-y)."""
    import mujoco

    keep = np.asarray(model.geom_type) != int(mujoco.mjtGeom.mjGEOM_PLANE)
    if not keep.any():
        return {"lookat": np.zeros(3), "distance": 1.0, "azimuth": 90.0, "elevation": -55.0}
    centres, radii = np.asarray(data.geom_xpos)[keep], np.asarray(model.geom_rbound)[keep, None]
    lo, hi = (centres - radii).min(axis=0), (centres + radii).max(axis=0)
    extent = max(float(np.linalg.norm(hi - lo)) / 2, 0.15)
    return {"lookat": (lo + hi) / 2, "distance": 2.2 * extent, "azimuth": 90.0, "elevation": -55.0}


class EnvRenderFrames:
    """``() -> (H, W, 3) uint8``: the env's own ``render()`` (the top-down numpy drawing for planar envs)."""

    def __init__(self, env: Any):
        if getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(f"video frames from {env.unwrapped.spec.id if env.unwrapped.spec else env}'s render() "
                             f"need the env made with render_mode='rgb_array' (it has {env.render_mode!r})")
        self.env = env
        self.fps = _env_fps(env.unwrapped)
        self.kind = "top-down env.render()"

    def __call__(self) -> np.ndarray:
        return np.asarray(self.env.render())

    def close(self) -> None:
        pass


def _env_fps(u) -> float:
    """Real time: one frame per env step, i.e. 1 / (timestep * frame_skip) for MuJoCo envs."""
    model = getattr(u, "model", None)
    if model is not None and hasattr(model, "opt") and getattr(u, "frame_skip", None):
        return float(1.0 / (model.opt.timestep * u.frame_skip))
    return float(getattr(u, "metadata", {}).get("render_fps", 10))


def frame_source(env: Any, width: int = 480, height: int = 360, three_d: bool | None = None,
                 log: Callable[[str], None] | None = None) -> Callable[[], np.ndarray]:
    """A callable returning the current frame of ``env`` as ``(H, W, 3) uint8``; it also has ``.fps``, ``.kind``
    and ``.close()``.

    ``three_d=None`` renders in 3-D when the env is a MuJoCo env and :func:`configure_headless_gl` finds a
    backend, and otherwise falls back to ``env.render()`` with a one-line note through ``log`` (default: stderr);
    ``three_d=False`` always uses ``env.render()``; ``three_d=True`` raises when 3-D rendering is impossible.
    """
    if width < 16 or height < 16:
        raise ValueError(f"video frames must be at least 16x16 pixels, got {width}x{height}")
    log = log or (lambda line: print(line, file=sys.stderr))
    is_mujoco = hasattr(env.unwrapped, "model") and hasattr(env.unwrapped, "data") and \
        type(env.unwrapped.model).__module__.startswith("mujoco")
    if three_d is not False:
        reason = None
        if not is_mujoco:
            reason = f"{type(env.unwrapped).__name__} is not a MuJoCo env"
        elif configure_headless_gl() is None:
            preset = os.environ.get("MUJOCO_GL", "").strip().lower()
            reason = (f"MUJOCO_GL={preset} turns GL rendering off" if preset in _GL_OFF else
                      f"no headless GL backend works ({', '.join(HEADLESS_BACKENDS)} tried; Debian: libegl1 "
                      f"libgl1-mesa-dri or libosmesa6)")
        else:
            try:
                return MujocoFrames(env, width, height)
            except Exception as e:  # a GL stack can fail here even after the probe: fall back, say why
                reason = f"mujoco.Renderer failed: {type(e).__name__}: {e}"
        if three_d:
            raise RuntimeError(f"cannot render 3-D video frames: {reason}")
        log(f"symgym: video: {reason}; using the env's top-down render() instead")
    return EnvRenderFrames(env)


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 20.0,
                log: Callable[[str], None] | None = None) -> Path:
    """Write ``frames`` (each ``(H, W, 3)`` uint8, all one size) to ``path`` atomically and return the path written.

    ``.mp4`` goes through imageio-ffmpeg (H.264, yuv420p; odd sizes are padded by one black row/column). When
    imageio-ffmpeg is missing the frames go to a GIF next to it (``path`` with suffix ``.gif``) with a one-line
    note naming the extra to install. A ``.gif`` path always writes a GIF.
    """
    path = Path(path)
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if path.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"video path must end in .mp4 or .gif, got {str(path)!r}")
    stack = _check_frames(frames)
    log = log or (lambda line: print(line, file=sys.stderr))
    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg
        except ImportError:
            gif = path.with_suffix(".gif")
            log(f"symgym: imageio-ffmpeg is not installed (pip install 'symgym[video]'); writing {gif} instead of MP4")
            return _write_gif(stack, gif, fps)
        return _write_mp4(imageio_ffmpeg, stack, path, fps)
    return _write_gif(stack, path, fps)


def _check_frames(frames: Iterable[np.ndarray]) -> np.ndarray:
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("no frames to write")
    shape = frames[0].shape
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"video frames must be (H, W, 3) RGB arrays, got shape {shape}")
    for i, f in enumerate(frames):
        if f.shape != shape:
            raise ValueError(f"frame {i} has shape {f.shape}, frame 0 has {shape}: all frames must be one size")
        if f.dtype != np.uint8:
            raise ValueError(f"video frames must be uint8, frame {i} is {f.dtype}")
    return np.stack(frames)


def _write_mp4(imageio_ffmpeg, stack: np.ndarray, path: Path, fps: float) -> Path:
    n, h, w, _ = stack.shape
    # yuv420p (what players expect) needs even sizes
    stack = np.pad(stack, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (stack.shape[2], stack.shape[1]), fps=float(fps),
                                             codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
                                             quality=7, ffmpeg_log_level="error")
        writer.send(None)  # start ffmpeg
        for frame in stack:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    return path


def _write_gif(stack: np.ndarray, path: Path, fps: float) -> Path:
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, stack, extension=".gif", duration=1000.0 / fps, loop=0)
    return path


def frame_timings(env_id: str, width: int = 480, height: int = 360, frames: int = 30, seed: int = 0
                  ) -> dict[str, dict[str, float]]:
    """Milliseconds per frame (wall and process CPU) of the 3-D view and of the env's top-down ``render()``."""
    import time

    import gymnasium as gym

    import symgym.envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=seed)
    sources = {"top-down render()": EnvRenderFrames(env)}
    if configure_headless_gl() is not None and hasattr(env.unwrapped, "data"):
        sources = {f"3-D {width}x{height} ({os.environ['MUJOCO_GL']})": MujocoFrames(env, width, height), **sources}
    out = {}
    for name, grab in sources.items():
        grab()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(frames):
            grab()
        out[name] = {"wall_ms": round((time.perf_counter() - wall) / frames * 1e3, 1),
                     "cpu_ms": round((time.process_time() - cpu) / frames * 1e3, 1)}
        grab.close()
    env.close()
    return out


if __name__ == "__main__":  # python -m symgym.learn.run.video SymPush-v0 SymReach-v0 ...
    import json

    configure_headless_gl()
    print(json.dumps({env_id: frame_timings(env_id) for env_id in sys.argv[1:] or ["SymPush-v0"]}, indent=1))


__all__ = ["configure_headless_gl", "probe_gl_backend", "frame_source", "write_video", "MujocoFrames",
           "EnvRenderFrames", "default_camera", "frame_timings", "HEADLESS_BACKENDS"]
