"""A rendered frame of every env family for the README: ``symgym envs --frames DIR``.

Each env is reset with seed 0 and stepped a few times with its oracle when it has one (so the frame shows the
task in progress), else with zero actions. MuJoCo envs built from an XML asset are drawn in a *dressed* copy of
their scene (:func:`dressed_frame`: a sky, a checker floor, key and fill lights with shadows; nothing of it
touches the env's own model), other MuJoCo envs (the Panda) through ``video.frame_source``; the PyBullet tabletop
scenes from an oblique RGB camera (:func:`tabletop_frame`), as a person beside the table would see them. Without
headless GL the env's top-down ``render()`` is used. One PNG per env plus ``gallery.png`` with all of them.
"""
from __future__ import annotations

import os
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
        frame, kind = None, ""
        if three_d is not False:
            frame, kind = dressed_frame(env) or tabletop_frame(env) or (None, "")
        if frame is None:
            grab = frame_source(env, three_d=three_d, log=lambda _line: None)
            frame, kind = grab(), grab.kind
            grab.close()
    finally:
        env.close()
    return frame, kind


def _dress(spec, floor_z: float | None) -> None:
    """Add a gradient sky, a checker floor at ``floor_z`` (None: give the scene's own plane the checker) and a key
    and a fill light to ``spec``; every added geom is visual only (contype 0), so nothing about physics changes."""
    import mujoco

    spec.add_texture(name="gallery_sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
                     builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT, rgb1=[0.55, 0.7, 0.88], rgb2=[0.12, 0.16, 0.24],
                     width=256, height=1536)
    spec.add_texture(name="gallery_floor", type=mujoco.mjtTexture.mjTEXTURE_2D,
                     builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, rgb1=[0.34, 0.36, 0.4], rgb2=[0.26, 0.28, 0.31],
                     width=512, height=512)
    textures = [""] * len(mujoco.mjtTextureRole.__members__)
    textures[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = "gallery_floor"
    spec.add_material(name="gallery_floor", textures=textures, texrepeat=[8, 8], texuniform=True, reflectance=0.08)
    planes = [g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_PLANE]
    if floor_z is None and planes:
        for g in planes:
            g.material, g.rgba = "gallery_floor", [1, 1, 1, 1]
    else:
        spec.worldbody.add_geom(name="gallery_floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[30, 30, 0.05],
                                pos=[0, 0, floor_z or 0.0], material="gallery_floor", contype=0, conaffinity=0)
    spec.worldbody.add_light(name="gallery_key", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, pos=[0.6, -0.8, 2.5],
                             dir=[-0.25, 0.35, -1.0], diffuse=[0.5, 0.5, 0.48], specular=[0.15, 0.15, 0.15],
                             castshadow=True)
    spec.worldbody.add_light(name="gallery_fill", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, pos=[-1, 1, 2],
                             dir=[0.4, -0.4, -1.0], diffuse=[0.22, 0.22, 0.24], specular=[0, 0, 0], castshadow=False)
    spec.visual.headlight.ambient = [0.2, 0.2, 0.2]
    spec.visual.headlight.diffuse = [0.12, 0.12, 0.12]
    spec.visual.quality.shadowsize = 4096
    # the shadow map covers the model's extent: keep it the scene's, not the (large) floor's
    spec.stat.extent = 1.0


class DressedScene:
    """``() -> (H, W, 3) uint8``: the env's current state drawn in a dressed copy of its scene (built once; each
    call copies the state over). Only for MuJoCo envs built from their XML asset: :meth:`of` returns None for
    others and when no headless GL backend works."""

    def __init__(self, env, width: int = 480, height: int = 360):
        import mujoco

        from symgym.envs.mujoco_base import ASSETS
        from symgym.learn.run.video import default_camera

        self.u = u = env.unwrapped
        spec = mujoco.MjSpec.from_file(str(ASSETS / u.xml_file))
        u._edit_spec(spec)   # the env's own load-time edits (an obstacle, tilted gravity) come along
        types = np.asarray(u.model.geom_type)
        solid = types != int(mujoco.mjtGeom.mjGEOM_PLANE)
        # lowest point of every solid geom: its local bounding box's half extents projected on world z
        half = np.asarray(u.model.geom_aabb)[solid, 3:]
        rz = np.abs(np.asarray(u.data.geom_xmat)[solid].reshape(-1, 3, 3)[:, 2, :])
        lowest = float(np.min(u.data.geom_xpos[solid, 2] - (rz * half).sum(axis=1))) if solid.any() else 0.0
        _dress(spec, None if (~solid).any() else lowest - 0.002)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        view = {**default_camera(u.model, u.data), **(getattr(u, "video_camera", None) or {})}
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.lookat[:] = view["lookat"]
        self.camera.distance, self.camera.azimuth = float(view["distance"]), float(view["azimuth"])
        self.camera.elevation = max(float(view["elevation"]), -24.0)   # low enough to see the horizon and the sky
        self.option = mujoco.MjvOption()
        self.option.flags[mujoco.mjtVisFlag.mjVIS_TENDON] = False     # rim constraints are bookkeeping
        self.option.sitegroup[:] = 0
        self.renderer = mujoco.Renderer(self.model, int(height), int(width))
        self.kind = f"3-D mujoco.Renderer, dressed scene ({os.environ.get('MUJOCO_GL', 'default GL')})"

    @classmethod
    def of(cls, env, width: int = 480, height: int = 360) -> "DressedScene | None":
        from symgym.envs.mujoco_base import PlanarMujocoEnv
        from symgym.learn.run.video import configure_headless_gl

        u = env.unwrapped
        built_from_xml = isinstance(u, PlanarMujocoEnv) and type(u)._build_model is PlanarMujocoEnv._build_model
        if not built_from_xml or configure_headless_gl() is None:
            return None
        return cls(env, width, height)

    def __call__(self) -> np.ndarray:
        import mujoco

        u, d = self.u, self.data
        # the dressing adds no joints or mocap bodies, so the env's state vectors fit the dressed model as they are
        d.qpos[:], d.qvel[:] = u.data.qpos, u.data.qvel
        d.mocap_pos[:], d.mocap_quat[:] = u.data.mocap_pos, u.data.mocap_quat
        mujoco.mj_forward(self.model, d)
        self.renderer.update_scene(d, camera=self.camera, scene_option=self.option)
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()


def dressed_frame(env, width: int = 480, height: int = 360) -> tuple[np.ndarray, str] | None:
    """(frame, how) of a MuJoCo env built from its XML asset in a dressed scene (:class:`DressedScene`), or None."""
    scene = DressedScene.of(env, width, height)
    if scene is None:
        return None
    try:
        return scene(), scene.kind
    finally:
        scene.close()


def tabletop_frame(env, width: int = 480, height: int = 360) -> tuple[np.ndarray, str] | None:
    """(frame, how) of a PyBullet tabletop env from an oblique RGB camera in front of the table; None otherwise."""
    u = env.unwrapped
    scene = getattr(u, "scene", None)
    if scene is None or not hasattr(scene, "p"):
        return None
    import pybullet

    client = scene.p
    # from the side opposite the Panda (its base stands at y = -0.5), so the arm is seen, not looked through
    view = client.computeViewMatrix((0.0, 0.62, 0.5), (0.0, -0.08, 0.05), (0.0, 0.0, 1.0))
    proj = client.computeProjectionMatrixFOV(55.0, width / height, 0.1, 3.0)
    _, _, rgba, _, _ = client.getCameraImage(width, height, view, proj, renderer=pybullet.ER_TINY_RENDERER,
                                             shadow=1, lightDirection=(0.4, -0.6, 1.0),
                                             flags=pybullet.ER_NO_SEGMENTATION_MASK)
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3]
    return np.ascontiguousarray(rgb), "PyBullet RGB camera (TinyRenderer, shadows)"


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


#: the families with a clip on the docs pages (the Panda's camera is set up with the Panda env)
CLIP_FAMILIES = ("SymPush-v0", "SymReach-v0", "SymCartPole-v0", "HepPickPlace-v0", "TabletopPlaceRedInGreen-v0")


def episode_clip(env_id: str, steps: int = 60, seed: int = 0, width: int = 320, height: int = 240
                 ) -> tuple[list[np.ndarray], float, str]:
    """(frames, fps, what acted) of one episode from ``seed``: the env's scripted oracle where it has one, else
    smoothed random actions (seeded), drawn like :func:`env_frame` draws its frame."""
    env = make_env(env_id, render_mode="rgb_array")
    try:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        u = env.unwrapped
        grab = DressedScene.of(env, width, height)
        if grab is not None:
            fps = 1.0 / (u.model.opt.timestep * u.frame_skip)
        else:
            tabletop = tabletop_frame(env, width, height) is not None
            grab = (lambda: tabletop_frame(env, width, height)[0]) if tabletop else frame_source(env, width, height)
            fps = 1.0 if tabletop else getattr(grab, "fps", 10.0)
        scripted = hasattr(u, "oracle_action") or _is_pushing(u)
        actor = "scripted" if scripted else "smoothed random actions"
        frames, action = [grab()], np.zeros(env.action_space.shape)
        for _ in range(steps):
            if hasattr(u, "oracle_action"):
                action = u.oracle_action()
                if action is None:
                    break
            elif _is_pushing(u):
                action = _push_action(u)
            else:   # random but smooth, so the clip shows motion rather than jitter
                action = 0.8 * action + 0.4 * env.action_space.sample()
            _, _, terminated, truncated, _ = env.step(np.asarray(action, dtype=env.action_space.dtype))
            frames.append(grab())
            if terminated or truncated:
                break
        if hasattr(grab, "close"):
            grab.close()
    finally:
        env.close()
    return frames, float(fps), actor


def _is_pushing(u) -> bool:
    return all(hasattr(u, a) for a in ("pusher_pos", "puck_pos", "goal_pos", "max_speed"))


def _push_action(u) -> np.ndarray:
    """A crude pusher for the SymPush clips: get behind the puck (going round it), then push it at the goal."""
    pusher, puck, goal = u.pusher_pos, u.puck_pos, u.goal_pos
    to_goal = (goal - puck) / max(np.linalg.norm(goal - puck), 1e-9)
    behind = puck - 0.06 * to_goal
    rel = pusher - puck
    aligned = float(rel @ -to_goal) > 0.8 * np.linalg.norm(rel)
    if aligned and np.linalg.norm(pusher - behind) < 0.03:
        target = goal                                    # in place: push through the puck toward the goal
    elif float(rel @ to_goal) > -0.02:                   # on the wrong side: step round the puck first
        side = np.array([-to_goal[1], to_goal[0]])
        target = puck + 0.07 * (side if float(rel @ side) >= 0 else -side) - 0.03 * to_goal
    else:
        target = behind
    return np.clip((target - pusher) * 4.0 / u.max_speed, -1.0, 1.0).astype(np.float32)


def write_clips(out_dir: str | Path, env_ids: tuple[str, ...] = CLIP_FAMILIES) -> dict[str, str]:
    """Write ``out_dir/ID.mp4`` (a GIF without the ``video`` extra) per env; returns ``{env_id: path}``."""
    from symgym.learn.run.video import write_video

    out = {}
    for env_id in env_ids:
        frames, fps, _ = episode_clip(env_id)
        out[env_id] = str(write_video(frames, Path(out_dir) / f"{env_id}.mp4", fps=fps))
    return out


if __name__ == "__main__":  # python -m symgym.learn.run.gallery --clips results/frames
    import argparse

    ap = argparse.ArgumentParser(description="frames (symgym envs --frames) and short episode clips for the docs")
    ap.add_argument("--clips", metavar="DIR", required=True, help="write one short MP4 per env family into DIR")
    for env_id, path in write_clips(ap.parse_args().clips).items():
        print(f"{env_id}: {path}")
