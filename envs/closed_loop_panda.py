"""The closed-loop HEP tasks driven by a MuJoCo Franka Panda with a suction cup on its flange.

``HepPandaPickPlace-v0``, ``HepPandaPushToTarget-v0`` and the longer-horizon ``HepPandaTwoStagePlace-v0`` (place
cylinder A on a target, then stack cylinder B on A), with their scripted oracles and :func:`symmetry_break`, the
measurement of how far the arm breaks SE(2). The arm, the suction rule, the observations and the workspaces are
the shared cell of :mod:`symgym.envs.panda_suction` (its module docstring says how each works).
"""
from __future__ import annotations

import math

import numpy as np

from symgym.envs.closed_loop import OBJ_HEIGHT, OBJ_RADIUS, SUCCESS_RADIUS, transform_action
from symgym.envs.panda_suction import CUP_RADIUS, HOVER_Z, PUSH_Z, PandaClosedLoopEnv
from symgym.equivariance.groups import SE2Element


def oracle(env) -> np.ndarray:
    """The scripted demonstrator's action for ``env`` (a Panda closed-loop env, wrapped or not)."""
    return env.unwrapped.oracle_action()


class PandaPickPlaceEnv(PandaClosedLoopEnv):
    """Pick the cylinder with the Panda's suction cup and place it on the target (HepPickPlace-v0 on a Panda).

    ## Action Space

    ``Box(-1, 1, (4,), float32)``, one command per control step (20 Hz: 10 substeps of 5 ms): the floating-sphere
    envs' format. ``dx, dy`` are projected onto the unit disc, ``dz`` and ``suction`` clipped to [-1, 1]; the
    Panda's Cartesian controller moves the cup by ``max_step`` times them (the planar end point kept inside the
    ``workspace_radius`` disc, the height in [0.002, 0.2] m) with the hand pointing down.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | cup displacement x, y | ``max_step`` (m per step) |
    | 2 | cup displacement z | ``max_step`` (m per step) |
    | 3 | suction on/off; a weld switches on only while the cup's face touches the top | > 0 on |

    ## Observation Space

    ``Dict`` with HepPickPlaceDepth-v0's keys and layout: a 16-float ``"vector"`` (the end effector is the centre
    of the suction cup's face) and ``"points"``, a rendered, unlabelled (256, 6) cloud (depth from three cameras on
    a ring about the workspace centre, unprojected, cropped to a 0.32 m disc above the floor, open3d voxels and
    normals; columns x, y, z, nx, ny, nz; the robot is filtered out unless ``self_filter=False``). With
    ``obs_mode="vector"`` the dict holds ``"vector"`` only (no rendering).

    | key | meaning | unit |
    |---|---|---|
    | ``vector`` 0-2 | cup face centre position | m |
    | ``vector`` 3-5 | cup velocity | m/s |
    | ``vector`` 6 | attached flag (a suction weld is on) | 0 or 1 |
    | ``vector`` 7-9 | cylinder position (bottom centre) | m |
    | ``vector`` 10-12 | cylinder velocity | m/s |
    | ``vector`` 13-15 | target position (marker on the floor, z = 0) | m |
    | ``points`` | x, y, z, nx, ny, nz of 256 cloud points | m, unit normal |

    ## Rewards

    ``success_bonus * success - time_penalty`` per step (defaults 1 and 0.01).

    ## Starting State

    ``workspace="demo"``: cylinder near (-0.08, 0), target near (0.08, 0) (each +-0.04 m uniform); the cup at
    hover height 0.10 m near (0, -0.08) (+-0.03 m), the arm placed
    there at rest by IK with the hand down; nothing attached. ``workspace="transformed"`` rotates the whole
    layout by a uniform angle about the vertical axis through the workspace centre (the origin, 0.55 m in front
    of the base) and shifts it by up to ``max_shift``, redrawn until every object and target lies within
    ``workspace_radius - 0.05`` of the centre (inside the arm's reach with room to approach).

    ## Episode End

    Terminates on success (released, resting on the floor, centre within 3 cm of the target); truncated after 80
    steps by the registration (the oracle needs 26-43).

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` (a 256x256 MuJoCo rendering from ``video_camera``) |
    | ``max_step`` | 0.02 | cup displacement (m) an action of 1 commands per step |
    | ``workspace`` | ``"demo"`` | ``"demo"`` or ``"transformed"`` (layouts the demonstrations never show) |
    | ``max_shift`` | 0.06 | largest planar shift (m) of a ``"transformed"`` layout, in [0, 0.1] |
    | ``obs_mode`` | ``"depth_cloud"`` | ``"depth_cloud"`` (rendered cloud) or ``"vector"`` (no ``"points"``) |
    | ``cloud_kwargs`` | ``None`` | options of ``symgym.envs.closed_loop_perception.DepthCloud`` |
    | ``self_filter`` | ``True`` | hide the robot (links, rod, cup) from the depth cameras (robot self-filtering) |
    | ``base_x`` | -0.55 | the arm base's x (m), in [-0.6, -0.5] (the 0.24 m workspace is in reach there) |
    | ``workspace_radius`` | 0.24 | the cup's planar position stays in this disc about the workspace centre (m) |
    | ``success_bonus`` | 1.0 | reward on the step that succeeds |
    | ``time_penalty`` | 0.01 | reward subtracted every step |

    ## Symmetry

    Group: SE(2) (rotations about the vertical axis through the workspace centre and planar translations), with
    HepPickPlace-v0's representations (vector positions rotate and shift in x, y, velocities rotate, heights and
    the attached flag are invariant; cloud points rotate and shift, normals rotate; ``dx, dy`` rotate, ``dz`` and
    suction are invariant). Declared ``exact=False``: cylinders, targets, floor, suction rule and workspace disc
    are symmetric, the arm is not; its base stands at ``(base_x, 0)``, so reach, joint limits and how the cup
    tracks a command depend on where the cup is (``symmetry.breaking`` names the base position).
    ``transform_state`` moves cylinders, targets and the cup by ``g`` and re-solves the arm by IK (at rest, hand
    down). Measured break (:func:`symmetry_break`: oracle actions from a seeded start vs the same actions moved
    by 6 random SE(2) elements from the moved start, 30 steps, seeds 0 and 1): the cup is within 7.0 mm of its
    moved position after one step and within 2.7 cm over 30 steps; the carried cylinder within 2.7 cm.

    ## Version History

    * v0: initial release (issue #33 item 4).
    * v0: the depth cloud filters the robot out by default (``self_filter``); it held the arm's rod, cup and
      links below 0.25 m before.
    """

    def _success(self) -> bool:
        return self._resting_on(0, self.target_marker(0)[:2], 0.0)

    def oracle_action(self) -> np.ndarray:
        return self._pick_place_action(self.object_pos(0), self.target_marker(0)[:2], 0.0)


class PandaPushToTargetEnv(PandaClosedLoopEnv):
    """Push the puck onto the target with the side of the Panda's suction cup; suction is disabled.

    ## Action Space

    ``Box(-1, 1, (4,), float32)``, one command per control step (20 Hz: 10 substeps of 5 ms): the floating-sphere
    envs' format. ``dx, dy`` are projected onto the unit disc, ``dz`` and ``suction`` clipped to [-1, 1]; the
    Panda's Cartesian controller moves the cup by ``max_step`` times them (the planar end point kept inside the
    ``workspace_radius`` disc, the height in [0.002, 0.2] m) with the hand pointing down.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | cup displacement x, y | ``max_step`` (m per step) |
    | 2 | cup displacement z | ``max_step`` (m per step) |
    | 3 | suction on/off (ignored: disabled in this task) | > 0 on |

    ## Observation Space

    ``Dict`` with HepPickPlaceDepth-v0's keys and layout: a 16-float ``"vector"`` (the end effector is the centre
    of the suction cup's face) and ``"points"``, a rendered, unlabelled (256, 6) cloud (depth from three cameras on
    a ring about the workspace centre, unprojected, cropped to a 0.32 m disc above the floor, open3d voxels and
    normals; columns x, y, z, nx, ny, nz; the robot is filtered out unless ``self_filter=False``). With
    ``obs_mode="vector"`` the dict holds ``"vector"`` only (no rendering).

    | key | meaning | unit |
    |---|---|---|
    | ``vector`` 0-2 | cup face centre position | m |
    | ``vector`` 3-5 | cup velocity | m/s |
    | ``vector`` 6 | attached flag (a suction weld is on) | 0 or 1 |
    | ``vector`` 7-9 | puck position (bottom centre) | m |
    | ``vector`` 10-12 | puck velocity | m/s |
    | ``vector`` 13-15 | target position (marker on the floor, z = 0) | m |
    | ``points`` | x, y, z, nx, ny, nz of 256 cloud points | m, unit normal |

    ## Rewards

    ``success_bonus * success - time_penalty`` per step (defaults 1 and 0.01).

    ## Starting State

    ``workspace="demo"``: puck near (-0.08, 0), target near (0.08, 0) (each +-0.04 m uniform); the cup at hover
    height 0.10 m near (0, -0.08) (+-0.03 m), the arm placed
    there at rest by IK with the hand down; nothing attached. ``workspace="transformed"`` rotates the whole
    layout by a uniform angle about the vertical axis through the workspace centre (the origin, 0.55 m in front
    of the base) and shifts it by up to ``max_shift``, redrawn until every object and target lies within
    ``workspace_radius - 0.05`` of the centre (inside the arm's reach with room to approach).

    ## Episode End

    Terminates on success (the puck's centre within 3 cm of the target); truncated after 80 steps by the
    registration (the oracle needs 24-44: over the puck at hover height, down behind it at 12 mm, push).

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` (a 256x256 MuJoCo rendering from ``video_camera``) |
    | ``max_step`` | 0.02 | cup displacement (m) an action of 1 commands per step |
    | ``workspace`` | ``"demo"`` | ``"demo"`` or ``"transformed"`` (layouts the demonstrations never show) |
    | ``max_shift`` | 0.06 | largest planar shift (m) of a ``"transformed"`` layout, in [0, 0.1] |
    | ``obs_mode`` | ``"depth_cloud"`` | ``"depth_cloud"`` (rendered cloud) or ``"vector"`` (no ``"points"``) |
    | ``cloud_kwargs`` | ``None`` | options of ``symgym.envs.closed_loop_perception.DepthCloud`` |
    | ``self_filter`` | ``True`` | hide the robot (links, rod, cup) from the depth cameras (robot self-filtering) |
    | ``base_x`` | -0.55 | the arm base's x (m), in [-0.6, -0.5] (the 0.24 m workspace is in reach there) |
    | ``workspace_radius`` | 0.24 | the cup's planar position stays in this disc about the workspace centre (m) |
    | ``success_bonus`` | 1.0 | reward on the step that succeeds |
    | ``time_penalty`` | 0.01 | reward subtracted every step |

    ## Symmetry

    Group: SE(2) (rotations about the vertical axis through the workspace centre and planar translations), with
    HepPickPlace-v0's representations (vector positions rotate and shift in x, y, velocities rotate, heights and
    the attached flag are invariant; cloud points rotate and shift, normals rotate; ``dx, dy`` rotate, ``dz`` and
    suction are invariant). Declared ``exact=False``: cylinders, targets, floor, suction rule and workspace disc
    are symmetric, the arm is not; its base stands at ``(base_x, 0)``, so reach, joint limits and how the cup
    tracks a command depend on where the cup is (``symmetry.breaking`` names the base position).
    ``transform_state`` moves cylinders, targets and the cup by ``g`` and re-solves the arm by IK (at rest, hand
    down). Measured break (:func:`symmetry_break`: oracle actions from a seeded start vs the same actions moved
    by 6 random SE(2) elements from the moved start, 30 steps, seeds 0 and 1): the cup is within 6.9 mm of its
    moved position after one step and within 2.0 cm over 30 steps; the pushed puck, which amplifies the
    difference through contact, within 5.7 cm.

    ## Version History

    * v0: initial release (issue #33 item 4).
    * v0: the depth cloud filters the robot out by default (``self_filter``); it held the arm's rod, cup and
      links below 0.25 m before.
    """

    suction = False
    behind = OBJ_RADIUS + CUP_RADIUS + 0.008

    def _success(self) -> bool:
        return float(np.linalg.norm(self.obj_pos[:2] - self.target_pos[:2])) < SUCCESS_RADIUS

    def oracle_action(self) -> np.ndarray:
        ee, puck, target = self.ee_pos, self.obj_pos, self.target_pos
        to_target = target[:2] - puck[:2]
        u = to_target / (np.linalg.norm(to_target) + 1e-9)
        rel = ee[:2] - puck[:2]
        along, lateral = float(rel @ u), float(rel[0] * u[1] - rel[1] * u[0])
        pre = puck[:2] - self.behind * u
        in_place = (abs(lateral) < 0.012 and -(self.behind + 0.02) < along < -(OBJ_RADIUS + CUP_RADIUS - 0.01)
                    and ee[2] < PUSH_Z + 0.012)
        if in_place:
            # aim a little into the puck along the line to the target: steady contact, lateral error corrected
            goal = np.r_[puck[:2] - (OBJ_RADIUS + CUP_RADIUS - 0.012) * u, PUSH_Z]
            return np.r_[self._move_toward(goal, speed=0.5), -1.0]
        d_pre = math.hypot(*(ee[:2] - pre))
        if d_pre <= 0.008 or (ee[2] < HOVER_Z - 0.03 and d_pre < 0.02):
            return np.r_[self._move_toward(np.r_[pre, PUSH_Z]), -1.0]
        # far from the pre-push point: up first, then across at hover height (passing over the puck)
        goal = np.r_[ee[:2], HOVER_Z] if ee[2] < HOVER_Z - 0.03 else np.r_[pre, HOVER_Z]
        return np.r_[self._move_toward(goal), -1.0]


#: a stacked cylinder counts as placed when its axis is within this distance (m) of the one below
STACK_RADIUS = 0.015


class PandaTwoStagePlaceEnv(PandaClosedLoopEnv):
    """Two stages: place cylinder A (red) on the target, then stack cylinder B (yellow) on A.

    The stage is a function of the state: stage 2 while A rests released within 3 cm of the target (knocking it
    off returns to stage 1). The vector observation describes the stage's object and where it goes, so its
    layout and ``keypose_label`` are HepPickPlace-v0's: A and the target marker in stage 1, B and the top of A in
    stage 2. The cloud shows both cylinders and the target; the policy must tell the stages apart from it.

    ## Action Space

    ``Box(-1, 1, (4,), float32)``, one command per control step (20 Hz: 10 substeps of 5 ms): the floating-sphere
    envs' format. ``dx, dy`` are projected onto the unit disc, ``dz`` and ``suction`` clipped to [-1, 1]; the
    Panda's Cartesian controller moves the cup by ``max_step`` times them (the planar end point kept inside the
    ``workspace_radius`` disc, the height in [0.002, 0.2] m) with the hand pointing down.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | cup displacement x, y | ``max_step`` (m per step) |
    | 2 | cup displacement z | ``max_step`` (m per step) |
    | 3 | suction on/off; a weld switches on only while the cup's face touches a cylinder's top | > 0 on |

    ## Observation Space

    ``Dict`` with HepPickPlaceDepth-v0's keys and layout: a 16-float ``"vector"`` (the end effector is the centre
    of the suction cup's face) and ``"points"``, a rendered, unlabelled (256, 6) cloud (depth from three cameras on
    a ring about the workspace centre, unprojected, cropped to a 0.32 m disc above the floor, open3d voxels and
    normals; columns x, y, z, nx, ny, nz; the robot is filtered out unless ``self_filter=False``). With
    ``obs_mode="vector"`` the dict holds ``"vector"`` only (no rendering).

    | key | meaning | unit |
    |---|---|---|
    | ``vector`` 0-2 | cup face centre position | m |
    | ``vector`` 3-5 | cup velocity | m/s |
    | ``vector`` 6 | attached flag (a suction weld is on) | 0 or 1 |
    | ``vector`` 7-9 | stage's cylinder (A, then B) position (bottom centre) | m |
    | ``vector`` 10-12 | stage's cylinder (A, then B) velocity | m/s |
    | ``vector`` 13-15 | where it goes: the target marker (stage 1), the centre of A's top (stage 2) | m |
    | ``points`` | x, y, z, nx, ny, nz of 256 cloud points | m, unit normal |

    ## Rewards

    ``success_bonus * success - time_penalty + stage_bonus * (stage 2 now - stage 2 before the step)`` (defaults
    1, 0.01, 0.5): a potential-based bonus for completing the first place, taken back if A is knocked off.

    ## Starting State

    ``workspace="demo"``: A near (-0.09, 0.05), B near (-0.09, -0.05) (each +-0.02 m), target near (0.08, 0)
    (+-0.04 m); the cup at hover height 0.10 m near (0, -0.08) (+-0.03 m), the arm placed
    there at rest by IK with the hand down; nothing attached. ``workspace="transformed"`` rotates the whole
    layout by a uniform angle about the vertical axis through the workspace centre (the origin, 0.55 m in front
    of the base) and shifts it by up to ``max_shift``, redrawn until every object and target lies within
    ``workspace_radius - 0.05`` of the centre (inside the arm's reach with room to approach).

    ## Episode End

    Terminates on success (stage 2 and B released, resting on A's top, axes within 1.5 cm); truncated after 160
    steps by the registration (the oracle needs 66-85).

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``render_mode`` | ``None`` | ``None`` or ``"rgb_array"`` (a 256x256 MuJoCo rendering from ``video_camera``) |
    | ``max_step`` | 0.02 | cup displacement (m) an action of 1 commands per step |
    | ``workspace`` | ``"demo"`` | ``"demo"`` or ``"transformed"`` (layouts the demonstrations never show) |
    | ``max_shift`` | 0.06 | largest planar shift (m) of a ``"transformed"`` layout, in [0, 0.1] |
    | ``obs_mode`` | ``"depth_cloud"`` | ``"depth_cloud"`` (rendered cloud) or ``"vector"`` (no ``"points"``) |
    | ``cloud_kwargs`` | ``None`` | options of ``symgym.envs.closed_loop_perception.DepthCloud`` |
    | ``self_filter`` | ``True`` | hide the robot (links, rod, cup) from the depth cameras (robot self-filtering) |
    | ``base_x`` | -0.55 | the arm base's x (m), in [-0.6, -0.5] (the 0.24 m workspace is in reach there) |
    | ``workspace_radius`` | 0.24 | the cup's planar position stays in this disc about the workspace centre (m) |
    | ``success_bonus`` | 1.0 | reward on the step that succeeds |
    | ``time_penalty`` | 0.01 | reward subtracted every step |
    | ``stage_bonus`` | 0.5 | reward for reaching stage 2 (returned on leaving it) |

    ## Symmetry

    Group: SE(2) (rotations about the vertical axis through the workspace centre and planar translations), with
    HepPickPlace-v0's representations (vector positions rotate and shift in x, y, velocities rotate, heights and
    the attached flag are invariant; cloud points rotate and shift, normals rotate; ``dx, dy`` rotate, ``dz`` and
    suction are invariant). Declared ``exact=False``: cylinders, targets, floor, suction rule and workspace disc
    are symmetric, the arm is not; its base stands at ``(base_x, 0)``, so reach, joint limits and how the cup
    tracks a command depend on where the cup is (``symmetry.breaking`` names the base position).
    ``transform_state`` moves cylinders, targets and the cup by ``g`` and re-solves the arm by IK (at rest, hand
    down). Measured break (:func:`symmetry_break`: oracle actions from a seeded start vs the same actions moved
    by 6 random SE(2) elements from the moved start, 30 steps, seeds 0 and 1): the cup is within 6.8 mm of its
    moved position after one step and within 2.6 cm over 30 steps; the carried cylinder within 2.7 cm.

    ## Version History

    * v0: initial release (issue #33 item 4).
    * v0: the depth cloud filters the robot out by default (``self_filter``); it held the arm's rod, cup and
      links below 0.25 m before.
    """

    n_objects = 2
    planar_pairs = (("obj0_x", "obj0_y"), ("obj1_x", "obj1_y"))

    def __init__(self, render_mode: str | None = None, max_step: float = 0.02, workspace: str = "demo",
                 max_shift: float = 0.06, obs_mode: str = "depth_cloud", cloud_kwargs: dict | None = None,
                 base_x: float = -0.55, workspace_radius: float = 0.24, success_bonus: float = 1.0,
                 time_penalty: float = 0.01, stage_bonus: float = 0.5, self_filter: bool = True):
        if not math.isfinite(stage_bonus):
            raise ValueError(f"stage_bonus must be finite, got {stage_bonus!r}")
        self.stage_bonus = float(stage_bonus)
        super().__init__(render_mode=render_mode, max_step=max_step, workspace=workspace, max_shift=max_shift,
                         obs_mode=obs_mode, cloud_kwargs=cloud_kwargs, base_x=base_x,
                         workspace_radius=workspace_radius, success_bonus=success_bonus, time_penalty=time_penalty,
                         self_filter=self_filter)

    def _layout_demo(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"ee": np.array([0.0, -0.08]) + rng.uniform(-0.03, 0.03, 2),
                "obj0": np.array([-0.09, 0.05]) + rng.uniform(-0.02, 0.02, 2),
                "obj1": np.array([-0.09, -0.05]) + rng.uniform(-0.02, 0.02, 2),
                "target0": np.array([0.08, 0.0]) + rng.uniform(-0.04, 0.04, 2)}

    @property
    def stage(self) -> int:
        """1 until A rests released on the target, then 2 (a function of the state: knocking A off returns to 1)."""
        return 2 if self._resting_on(0, self.target_marker(0)[:2], 0.0) else 1

    def active_object(self) -> int:
        return self.stage - 1

    @property
    def target_pos(self) -> np.ndarray:
        if self.stage == 1:
            return self.target_marker(0)
        return self.object_pos(0) + np.array([0.0, 0.0, OBJ_HEIGHT])

    def _success(self) -> bool:
        if self.stage != 2:
            return False
        top = self.object_pos(0)
        p = self.object_pos(1)
        return (not self.held(1) and abs(p[2] - top[2] - OBJ_HEIGHT) < 0.01
                and math.hypot(p[0] - top[0], p[1] - top[1]) < STACK_RADIUS)

    def _progress(self) -> float:
        return float(self.stage == 2)

    def _shaping(self, before: float, after: float) -> float:
        # pays stage_bonus on reaching stage 2 and takes it back on leaving it: no reward for knocking A on and off
        return self.stage_bonus * (after - before)

    def oracle_action(self) -> np.ndarray:
        if self.stage == 1:
            return self._pick_place_action(self.object_pos(0), self.target_marker(0)[:2], 0.0)
        a = self.object_pos(0)
        return self._pick_place_action(self.object_pos(1), a[:2], a[2] + OBJ_HEIGHT)


def symmetry_break(env, n_elements: int = 6, steps: int = 30, seed: int = 0) -> dict[str, float]:
    """Measure how far the arm breaks SE(2): from a seeded start ``s`` (demo workspace) the oracle's actions
    ``a_t``; from ``g.s`` (cylinders, targets and cup moved by a random ``g``, the arm re-solved by IK) the actions
    ``g.a_t``. Returns the largest distance (m) between the cup in the moved run and ``g`` applied to the cup in the
    original run, after one step and over ``steps`` steps, and the same for the active cylinder; elements whose
    moved cup is out of reach are redrawn."""
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    u.reset(seed=seed)
    start = u.get_state()
    actions, ee, obj = [], [], []
    for _ in range(steps):
        actions.append(u.oracle_action())
        u.step(actions[-1])
        ee.append(u.ee_pos)
        obj.append(u.obj_pos)
    out = {"ee_after_1_step_m": 0.0, "ee_max_m": 0.0, "object_max_m": 0.0, "elements": 0}
    while out["elements"] < n_elements:
        r, phi = u.max_shift * math.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        g = SE2Element(rng.uniform(0, 2 * np.pi), r * math.cos(phi), r * math.sin(phi))
        try:
            moved = u.transform_state(g, start)
        except ValueError:
            continue
        u.set_state(moved)
        u.controller.forward_kinematics(u.data)
        for t, a in enumerate(actions):
            u.step(transform_action(g, a))
            d_ee = np.linalg.norm(u.ee_pos - np.r_[g.apply(ee[t][:2]), ee[t][2]])
            d_obj = np.linalg.norm(u.obj_pos - np.r_[g.apply(obj[t][:2]), obj[t][2]])
            if t == 0:
                out["ee_after_1_step_m"] = max(out["ee_after_1_step_m"], float(d_ee))
            out["ee_max_m"] = max(out["ee_max_m"], float(d_ee))
            out["object_max_m"] = max(out["object_max_m"], float(d_obj))
        out["elements"] += 1
    return out
