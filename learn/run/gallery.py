"""A rendered frame of every env family for the README: ``symgym envs --frames DIR``.

Each env is reset with seed 0 and stepped a few times with its oracle when it has one (so the frame shows the
task in progress), else with zero actions; the frame is the 3-D MuJoCo view where headless GL works and the
env's top-down ``render()`` otherwise. One PNG per env plus ``gallery.png`` with all of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symgym.learn.io import atomic_path, save_figure
from symgym.learn.run.runs import make_env
from symgym.learn.run.video import frame_source

#: one env per family (the README shows these)
FAMILIES = ("SymPush-v0", "SymPushObstacle-v0", "SymReach-v0", "SymCartPole-v0", "HepPickPlace-v0",
            "TabletopPlaceRedInGreen-v0", "PandaPush-v0", "PandaReach-v0")


def env_frame(env_id: str, steps: int = 12, seed: int = 0, three_d: bool | None = None) -> tuple[np.ndarray, str]:
    """(frame, how it was rendered) after ``steps`` steps from ``seed``."""
    env = make_env(env_id, render_mode="rgb_array")
    try:
        env.reset(seed=seed)
        u = env.unwrapped
        for _ in range(steps):
            action = u.oracle_action() if hasattr(u, "oracle_action") else None
            if action is None:
                action = np.zeros(env.action_space.shape, env.action_space.dtype)
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        grab = frame_source(env, three_d=three_d, log=lambda _line: None)
        frame, kind = grab(), grab.kind
        grab.close()
    finally:
        env.close()
    return frame, kind


def write_gallery(out_dir: str | Path, env_ids: tuple[str, ...] = FAMILIES) -> dict[str, str]:
    """Write ``out_dir/ID.png`` per env and ``out_dir/gallery.png``; returns ``{env_id: how rendered}``."""
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    frames, kinds = {}, {}
    for env_id in env_ids:
        frames[env_id], kinds[env_id] = env_frame(env_id)
        with atomic_path(out_dir / f"{env_id}.png") as tmp:
            iio.imwrite(tmp, frames[env_id], extension=".png")
    cols = 4
    rows = -(-len(frames) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, (env_id, frame) in zip(np.atleast_1d(axes).ravel(), frames.items()):
        ax.imshow(frame)
        ax.set_title(env_id, fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_dir / "gallery.png")
    return kinds
