"""PyBullet tabletop pick-and-place tasks (DIRECT mode): a Franka Panda with a suction tip executes each
pick-and-place primitive by physics; scripted oracles; a declared SE(2) symmetry.

    import symgym.envs, gymnasium
    env = gymnasium.make("TabletopStacking-v0")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
"""
try:  # the simulator is an optional extra: say which one, not just "No module named 'pybullet'"
    import pybullet  # noqa: F401
    import pybullet_data  # noqa: F401
except ImportError as e:
    raise ImportError(f"the tabletop envs need the optional package {e.name!r}: pip install 'symgym[tabletop]'",
                      name=e.name) from e

from symgym.envs.tabletop.base import TabletopEnv, tabletop_symmetry, transform_action, transform_topdown
from symgym.envs.tabletop.camera import Grid
from symgym.envs.tabletop.tasks import BlockInsertionEnv, PlaceRedInGreenEnv, StackingEnv
from symgym.envs.tabletop.tasks_se3 import RampLeanEnv, SeatedPlacementEnv, TiltedInsertionEnv

#: Gymnasium id -> env class, for code that wants the task list
TABLETOP_IDS = {
    "TabletopBlockInsertion-v0": BlockInsertionEnv,
    "TabletopPlaceRedInGreen-v0": PlaceRedInGreenEnv,
    "TabletopStacking-v0": StackingEnv,
    "TabletopTiltedInsertion-v0": TiltedInsertionEnv,
    "TabletopRampLean-v0": RampLeanEnv,
}

__all__ = ["TabletopEnv", "BlockInsertionEnv", "PlaceRedInGreenEnv", "StackingEnv", "TiltedInsertionEnv",
           "RampLeanEnv", "SeatedPlacementEnv", "Grid", "TABLETOP_IDS",
           "tabletop_symmetry", "transform_action", "transform_topdown"]
