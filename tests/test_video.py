"""Episode videos: MP4 through imageio-ffmpeg (GIF without it), 3-D mujoco.Renderer frames or the top-down fallback."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest

from symgym.learn.run.video import EnvRenderFrames, frame_source, probe_gl_backend, write_video


def moving_square(n=12, h=33, w=47):
    """Frames of a white square moving right on black (odd sizes on purpose)."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, 10:20, 2 + 3 * i:12 + 3 * i] = 255
    return list(frames)


def test_mp4_round_trip_keeps_every_frame_and_the_motion(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio_ffmpeg

    frames = moving_square()
    path = write_video(frames, tmp_path / "ep.mp4", fps=8)
    assert path == tmp_path / "ep.mp4" and path.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert tuple(meta["size"]) == (48, 34) and meta["fps"] == pytest.approx(8)  # padded to even sizes for yuv420p
    back = [np.frombuffer(f, np.uint8).reshape(34, 48, 3) for f in reader]
    assert len(back) == len(frames)
    for original, decoded in zip(frames, back):
        assert np.abs(decoded[:33, :47].astype(int) - original).mean() < 12  # lossy, but the square is where it was
        cols = np.nonzero(decoded[15, :47, 0] > 128)[0]
        assert abs(cols.mean() - np.nonzero(original[15, :, 0])[0].mean()) < 1.5
    mode = stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's private 0600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_without_imageio_ffmpeg_a_gif_is_written_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    notes: list[str] = []
    frames = moving_square(n=5)
    path = write_video(frames, tmp_path / "ep.mp4", fps=5, log=notes.append)
    assert path == tmp_path / "ep.gif" and not (tmp_path / "ep.mp4").exists()
    assert len(notes) == 1 and "pip install 'symgym[video]'" in notes[0] and "ep.gif" in notes[0]
    back = iio.imread(path, index=None)
    assert back.shape[0] == 5 and back.shape[1:3] == (33, 47)
    np.testing.assert_array_equal(back[3][..., :3], frames[3])  # GIF is lossless for two colours


def test_bad_video_input_gets_one_clear_error(tmp_path):
    frames = moving_square(n=2)
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="frame 1 has shape"):
        write_video([frames[0], frames[1][:-1]], tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="uint8"):
        write_video([f.astype(np.float32) for f in frames], tmp_path / "a.mp4")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        write_video([f[..., 0] for f in frames], tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="fps must be a positive number, got 0"):
        write_video(frames, tmp_path / "a.mp4", fps=0)
    with pytest.raises(ValueError, match="'.*a.avi'"):
        write_video(frames, tmp_path / "a.avi")
    assert list(tmp_path.iterdir()) == []


def test_top_down_fallback_is_the_env_render_and_needs_rgb_array():
    import symgym.envs  # noqa: F401

    env = gym.make("SymPush-v0", render_mode="rgb_array")
    env.reset(seed=0)
    notes: list[str] = []
    grab = frame_source(env, three_d=False, log=notes.append)
    assert isinstance(grab, EnvRenderFrames) and grab.kind.startswith("top-down") and not notes
    np.testing.assert_array_equal(grab(), env.render())
    assert grab.fps == pytest.approx(10.0)  # one frame per 0.1 s env step: real time
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        frame_source(gym.make("SymPush-v0"), three_d=False)


class _NotMujoco(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    observation_space = gym.spaces.Box(0, 1, (1,))
    action_space = gym.spaces.Box(0, 1, (1,))
    render_mode = "rgb_array"

    def render(self):
        return np.full((16, 16, 3), 7, np.uint8)


def test_envs_that_are_not_mujoco_fall_back_with_a_note_or_refuse_3d():
    notes: list[str] = []
    grab = frame_source(_NotMujoco(), log=notes.append)
    assert grab().mean() == 7 and grab.fps == 4
    assert len(notes) == 1 and "not a MuJoCo env" in notes[0]
    with pytest.raises(RuntimeError, match="cannot render 3-D video frames: _NotMujoco is not a MuJoCo env"):
        frame_source(_NotMujoco(), three_d=True)


_THREE_D_SCRIPT = """
import json, sys
import numpy as np
from symgym.learn.run.video import configure_headless_gl, frame_source
backend = configure_headless_gl()
import gymnasium as gym, symgym.envs
notes = []
out = {"backend": backend}
frames = []
for seed in (0, 0):
    env = gym.make("SymPush-v0", render_mode="rgb_array")
    env.reset(seed=seed)
    grab = frame_source(env, 96, 64, log=notes.append)
    first = grab()
    for _ in range(5):
        env.step(np.array([1.0, 0.0], np.float32))
    frames.append((first, grab()))
out.update(kind=grab.kind, shape=list(first.shape), dtype=str(first.dtype), notes=notes,
           same_seed_same_frame=bool(np.array_equal(frames[0][0], frames[1][0])),
           moves=float(np.abs(frames[0][1].astype(int) - frames[0][0]).mean()), brightness=float(first.mean()))
print(json.dumps(out))
"""


def _run_three_d(mujoco_gl: str | None) -> dict:
    env = dict(os.environ)
    env.pop("MUJOCO_GL", None)
    env.pop("PYOPENGL_PLATFORM", None)
    if mujoco_gl is not None:
        env["MUJOCO_GL"] = mujoco_gl
    out = subprocess.run([sys.executable, "-c", _THREE_D_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_3d_frames_when_a_headless_backend_works_else_the_top_down_view():
    result = _run_three_d(None)
    if result["backend"] is None:  # no EGL/OSMesa on this machine: the fallback must say so
        assert result["kind"].startswith("top-down") and "no headless GL backend" in result["notes"][0]
        assert not probe_gl_backend("egl") and not probe_gl_backend("osmesa")
        return
    assert result["backend"] in ("egl", "osmesa") and result["kind"] == f"3-D mujoco.Renderer ({result['backend']})"
    assert result["shape"] == [64, 96, 3] and result["dtype"] == "uint8" and result["notes"] == []
    assert result["same_seed_same_frame"] and result["moves"] > 0.05 and result["brightness"] > 10


def test_a_disabled_gl_falls_back_to_the_top_down_view_with_a_note():
    result = _run_three_d("disable")
    assert result["backend"] is None and result["kind"].startswith("top-down")
    assert result["shape"] == [256, 256, 3] and "MUJOCO_GL=disable turns GL rendering off" in result["notes"][0]


def test_probe_rejects_a_backend_that_does_not_exist():
    assert probe_gl_backend("no-such-gl", timeout=120) is False
