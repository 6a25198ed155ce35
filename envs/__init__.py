"""Gymnasium environments that declare their symmetry. Importing this package registers every id.

    import symgym.envs, gymnasium
    env = gymnasium.make("SymPush-v0")
    env.unwrapped.symmetry      # group, how obs/actions transform, exact or not

``gymnasium.make("symgym.envs:SymPush-v0")`` imports this package on demand (Gymnasium 1.x loads no plugins).
Each env's class docstring documents its spaces, rewards, episode end, arguments and symmetry; the docs site
(``docs/envs/``) renders them.
"""
from __future__ import annotations

from functools import partial

from gymnasium.envs.registration import register, registry

#: id -> (entry point, max_episode_steps, default kwargs)
ENV_SPECS: dict[str, tuple[str, int, dict]] = {
    "SymPush-v0": ("symgym.envs.sym_push:SymPushEnv", 50, {}),
    "SymPushImage-v0": ("symgym.envs.sym_push:SymPushEnv", 50, {"obs_mode": "image"}),
    "TabletopBlockInsertion-v0": ("symgym.envs.tabletop.tasks:BlockInsertionEnv", 2, {}),
    "TabletopPlaceRedInGreen-v0": ("symgym.envs.tabletop.tasks:PlaceRedInGreenEnv", 4, {}),
    "TabletopStacking-v0": ("symgym.envs.tabletop.tasks:StackingEnv", 5, {}),
    "TabletopTiltedInsertion-v0": ("symgym.envs.tabletop.tasks_se3:TiltedInsertionEnv", 2, {}),
    "TabletopRampLean-v0": ("symgym.envs.tabletop.tasks_se3:RampLeanEnv", 2, {}),
    "SymReach-v0": ("symgym.envs.sym_reach:SymReachEnv", 100, {}),
    "SymCartPole-v0": ("symgym.envs.sym_cartpole:SymCartPoleEnv", 200, {}),
    "SymPointMass-v0": ("symgym.envs.point_mass:SymPointMassEnv", 60, {}),
    "HepPickPlace-v0": ("symgym.envs.closed_loop:PickPlaceEnv", 80, {}),
    "HepPushToTarget-v0": ("symgym.envs.closed_loop:PushToTargetEnv", 80, {}),
    # rendered, unlabelled depth clouds in obs["points"] (symgym.envs.closed_loop_perception)
    "HepPickPlaceDepth-v0": ("symgym.envs.closed_loop:PickPlaceEnv", 80, {"obs_mode": "depth_cloud"}),
    "HepPushToTargetDepth-v0": ("symgym.envs.closed_loop:PushToTargetEnv", 80, {"obs_mode": "depth_cloud"}),
    "HepPushAround-v0": ("symgym.envs.closed_loop_around:PushAroundEnv", 80, {}),
    "HepPushAroundDepth-v0": ("symgym.envs.closed_loop_around:PushAroundEnv", 80, {"obs_mode": "depth_cloud"}),
    # the HEP tasks driven by a Franka Panda with a suction cup (rendered depth clouds by default)
    "HepPandaPickPlace-v0": ("symgym.envs.closed_loop_panda:PandaPickPlaceEnv", 80, {}),
    "HepPandaPushToTarget-v0": ("symgym.envs.closed_loop_panda:PandaPushToTargetEnv", 80, {}),
    "HepPandaTwoStagePlace-v0": ("symgym.envs.closed_loop_panda:PandaTwoStagePlaceEnv", 160, {}),
    "SymPushWind-v0": ("symgym.envs.sym_push_broken:SymPushWindEnv", 100, {}),
    "SymPushObstacle-v0": ("symgym.envs.sym_push_broken:SymPushObstacleEnv", 100, {}),
    "RosArm-v0": ("symgym.envs.ros:RosArmEnv", None, {}),   # no TimeLimit: it truncates at its mirrored env's
    "PandaPush-v0": ("symgym.envs.panda:PandaPushEnv", 50, {}),
    "PandaReach-v0": ("symgym.envs.panda:PandaReachEnv", 50, {}),
}


#: entry points that are not MuJoCo envs (PyBullet tabletop, a rosbridge arm): no batched vector env
_NOT_MUJOCO = ("symgym.envs.tabletop.", "symgym.envs.ros:")


def _vector_entry(entry: str, **kwargs):
    """``gymnasium.make_vec(ID, num_envs=N, vectorization_mode="vector_entry_point")`` for a MuJoCo env: N
    simulations stepped together (``symgym.envs.vector``, imported on first use so registration stays light)."""
    from symgym.envs.vector import make_vector_env

    return make_vector_env(entry, **kwargs)


def _register_all() -> None:
    for env_id, (entry, steps, kwargs) in ENV_SPECS.items():
        if env_id not in registry:
            vector = None if entry.startswith(_NOT_MUJOCO) else partial(_vector_entry, entry)
            register(id=env_id, entry_point=entry, max_episode_steps=steps, kwargs=kwargs,
                     vector_entry_point=vector)


_register_all()


def symgym_env_ids() -> list[str]:
    return sorted(ENV_SPECS)
