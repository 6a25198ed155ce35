"""The tabletop tasks: block insertion, place-red-in-green (with distractors) and stacking.

Success tests use position and yaw tolerances that respect each object's rotational symmetry: an L block
has none (yaw compared modulo 2*pi), a cube has C4 (modulo pi/2), a block in a round bowl has no yaw test.
"""
from __future__ import annotations

import math

import numpy as np

from symgym.envs.tabletop import oracles
from symgym.envs.tabletop.base import ARGUMENTS_DOC, TabletopEnv
from symgym.envs.tabletop.scene import yaw_error

BLOCK = 0.04          # cube side (m)
POS_TOL = 0.02        # position tolerance (m): 2.5 pixels of the default 64x64 heightmap
YAW_TOL = math.radians(15.0)
HEIGHT_TOL = 0.012


_PLANAR_DOC = """    ## Symmetry

    Group: SE(2) of the workspace (rotations about its centre and planar translations, sampled at a 0.05 m
    scale). Representations: both images rotate and shift as pictures; pick and place x, y rotate and shift,
    yaws add the angle, the place height is invariant. Declared exact: the dynamics are equivariant while every
    object stays in the workspace and the arm (base at (0, -0.5), outside it) can reach the targets -- a
    quarter-turned stacking step lands within 2 mm of the turned outcome (tested); image transforms are exact
    for multiples of 90 degrees and whole-pixel shifts and interpolate otherwise. ``symgym bench equivariance`` does not simulate PyBullet states (no
    ``transform_state``), so no break is measured.

    ## Version History

    * v0: initial release (a teleporting gripper); the Panda arm now executes the primitive (``arm=False``
      keeps the teleport).
"""


class BlockInsertionEnv(TabletopEnv):
    __doc__ = """Put the L-shaped block onto the L-shaped fixture, aligned (one step; reward 1 on success).

    ## Action Space

    ``Box((7,), float32)``: one suction pick-and-place primitive per step, executed by a Franka Panda with a
    suction tip (``arm.py``): above the pick, descend until contact, suction on (only on a movable object),
    lift, move while turning by place yaw - pick yaw, descend until the object touches something or the tip
    reaches the place height, release, return home. Angles are wrapped to [-pi, pi), then the action is clipped
    to the box.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | pick point x, y (the tip descends there until contact) | m, in [-0.25, 0.25] |
    | 2 | gripper yaw at pick | rad |
    | 3-4 | place point x, y | m, in [-0.25, 0.25] |
    | 5 | place height of the suction point | m, in [0, 0.3] |
    | 6 | gripper yaw at place | rad |

    ## Observation Space

    ``Dict``: a top-down orthographic view of the 0.5 m x 0.5 m workspace fused from three simulated RGB-D
    cameras (``image_size`` S, default 64: 7.8 mm per pixel). ``env.unwrapped.point_cloud()`` gives the fused
    xyz+rgb cloud.

    | key | meaning | unit |
    |---|---|---|
    | ``"color"`` (S, S, 3) uint8 | colour of the highest point per cell | RGB 0-255 |
    | ``"height"`` (S, S, 1) float32 | height of the highest point per cell above the table, clipped to [0, 1] | m |

    ## Rewards

    The increment of the task's credit: 1 when the block sits on the fixture within 2 cm and 15 degrees
    (L blocks have no rotational symmetry), else 0; an episode's rewards sum to its final credit.

    ## Starting State

    A red L block and a grey L fixture at uniform, non-overlapping poses (uniform yaw) in the workspace,
    settled for 60 physics steps.

    ## Episode End

    Terminates on success or on a failed primitive (``info["failure"]``: a grasp that touched nothing
    movable, an arm link other than the tip touching anything, an unreachable target); truncated after 2 steps
    (the oracle needs 1).

""" + ARGUMENTS_DOC + _PLANAR_DOC

    oracle_steps = 1

    def _build(self, rng):
        (bxy, byaw), (fxy, fyaw) = self._sample_poses(rng, [0.08, 0.085])
        self.scene.add_lblock("block", "red", bxy, byaw)
        self.scene.add_lpad("fixture", "grey", fxy, fyaw)

    def _credit(self) -> float:
        bpos, byaw, _ = self.scene.pose("block")
        fpos, fyaw, _ = self.scene.pose("fixture")
        fixture_top = fpos[2] + self.scene.objects["fixture"].size[2]
        ok = (np.linalg.norm(bpos[:2] - fpos[:2]) < POS_TOL and yaw_error(byaw, fyaw, 1) < YAW_TOL
              and abs(bpos[2] - (fixture_top + BLOCK / 2)) < HEIGHT_TOL)
        return 1.0 if ok else 0.0

    def oracle_action(self):
        return oracles.insertion(self)


class PlaceRedInGreenEnv(TabletopEnv):
    __doc__ = """Put every red block into a green bowl; other-coloured blocks and bowls are distractors.

    1-2 red blocks, as many or more green bowls (at most 2), 1-2 distractor blocks and one distractor bowl.

    ## Action Space

    ``Box((7,), float32)``: one suction pick-and-place primitive per step, executed by a Franka Panda with a
    suction tip (``arm.py``): above the pick, descend until contact, suction on (only on a movable object),
    lift, move while turning by place yaw - pick yaw, descend until the object touches something or the tip
    reaches the place height, release, return home. Angles are wrapped to [-pi, pi), then the action is clipped
    to the box.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | pick point x, y (the tip descends there until contact) | m, in [-0.25, 0.25] |
    | 2 | gripper yaw at pick | rad |
    | 3-4 | place point x, y | m, in [-0.25, 0.25] |
    | 5 | place height of the suction point | m, in [0, 0.3] |
    | 6 | gripper yaw at place | rad |

    ## Observation Space

    ``Dict``: a top-down orthographic view of the 0.5 m x 0.5 m workspace fused from three simulated RGB-D
    cameras (``image_size`` S, default 64: 7.8 mm per pixel). ``env.unwrapped.point_cloud()`` gives the fused
    xyz+rgb cloud.

    | key | meaning | unit |
    |---|---|---|
    | ``"color"`` (S, S, 3) uint8 | colour of the highest point per cell | RGB 0-255 |
    | ``"height"`` (S, S, 1) float32 | height of the highest point per cell above the table, clipped to [0, 1] | m |

    ## Rewards

    The increment of the credit, the fraction of red blocks inside green bowls; an episode's rewards
    sum to its final credit (1 on success).

    ## Starting State

    1-2 red blocks, at least as many (at most 2) green bowls, 1-2 blocks and one bowl in distractor colours
    (blue, yellow, purple, orange), at uniform non-overlapping poses, settled for 60 physics steps.

    ## Episode End

    Terminates when every red block is in a green bowl, or on a failed primitive (``info["failure"]``: a
    grasp that touched nothing movable, an arm collision, an unreachable target); truncated after 4 steps (the
    oracle needs 2).

""" + ARGUMENTS_DOC + _PLANAR_DOC

    oracle_steps = 2
    DISTRACTOR_COLORS = ("blue", "yellow", "purple", "orange")

    def _build(self, rng):
        self.n_red = int(rng.integers(1, 3))
        n_green = int(rng.integers(self.n_red, 3))
        n_distract = int(rng.integers(1, 3))
        bowl_r, block_r = 0.078, 0.03
        kinds = ["bowl"] * (n_green + 1) + ["block"] * (self.n_red + n_distract)
        poses = self._sample_poses(rng, [bowl_r if k == "bowl" else block_r for k in kinds], margin=0.01)
        colors = list(rng.permutation(self.DISTRACTOR_COLORS))
        for i in range(n_green):
            self.scene.add_bowl(f"green_bowl{i}", "green", poses[i][0])
        self.scene.add_bowl("distractor_bowl", colors[0], poses[n_green][0])
        off = n_green + 1
        for i in range(self.n_red):
            self.scene.add_block(f"red{i}", "red", *poses[off + i])
        for i in range(n_distract):
            self.scene.add_block(f"distractor{i}", colors[1 + i], *poses[off + self.n_red + i])

    def bowls(self, color: str = "green") -> list[str]:
        return [n for n, o in self.scene.objects.items() if o.kind == "bowl" and o.color == color]

    def in_bowl(self, block: str, bowl: str) -> bool:
        bpos, _, _ = self.scene.pose(block)
        wpos, _, _ = self.scene.pose(bowl)
        radius, wall = self.scene.objects[bowl].size
        return bool(np.linalg.norm(bpos[:2] - wpos[:2]) < radius - 0.02 and bpos[2] < wall + BLOCK / 2)

    def _credit(self) -> float:
        reds = [n for n in self.scene.objects if n.startswith("red")]
        done = sum(any(self.in_bowl(r, b) for b in self.bowls()) for r in reds)
        return done / len(reds)

    def oracle_action(self):
        return oracles.place_red_in_green(self)


class StackingEnv(TabletopEnv):
    __doc__ = """Stack red, green, blue cubes (bottom to top) on the grey pad, aligned with it (C4: modulo 90 degrees).

    ## Action Space

    ``Box((7,), float32)``: one suction pick-and-place primitive per step, executed by a Franka Panda with a
    suction tip (``arm.py``): above the pick, descend until contact, suction on (only on a movable object),
    lift, move while turning by place yaw - pick yaw, descend until the object touches something or the tip
    reaches the place height, release, return home. Angles are wrapped to [-pi, pi), then the action is clipped
    to the box.

    | index | meaning | unit |
    |---|---|---|
    | 0-1 | pick point x, y (the tip descends there until contact) | m, in [-0.25, 0.25] |
    | 2 | gripper yaw at pick | rad |
    | 3-4 | place point x, y | m, in [-0.25, 0.25] |
    | 5 | place height of the suction point | m, in [0, 0.3] |
    | 6 | gripper yaw at place | rad |

    ## Observation Space

    ``Dict``: a top-down orthographic view of the 0.5 m x 0.5 m workspace fused from three simulated RGB-D
    cameras (``image_size`` S, default 64: 7.8 mm per pixel). ``env.unwrapped.point_cloud()`` gives the fused
    xyz+rgb cloud.

    | key | meaning | unit |
    |---|---|---|
    | ``"color"`` (S, S, 3) uint8 | colour of the highest point per cell | RGB 0-255 |
    | ``"height"`` (S, S, 1) float32 | height of the highest point per cell above the table, clipped to [0, 1] | m |

    ## Rewards

    The increment of the credit, a third for each cube of the longest correctly stacked prefix
    red -> green -> blue (within 2 cm, 15 degrees modulo 90, 1.2 cm in height); rewards sum to the final credit.
    ``info["stacked"]``: how many cubes of that prefix stand (step k of the colour order succeeded when it is
    at least k).

    ## Starting State

    A grey pad and red, green and blue 4 cm cubes at uniform non-overlapping poses, settled for 60
    physics steps.

    ## Episode End

    Terminates when the three cubes are stacked, or on a failed primitive (``info["failure"]``: a grasp that
    touched nothing movable, an arm collision, an unreachable target); truncated after 5 steps (the oracle
    needs 3).

""" + ARGUMENTS_DOC + _PLANAR_DOC

    oracle_steps = 3
    ORDER = ("red", "green", "blue")

    def _build(self, rng):
        poses = self._sample_poses(rng, [0.045, 0.03, 0.03, 0.03])
        self.scene.add_pad("pad", "grey", *poses[0])
        for (xy, yaw), color in zip(poses[1:], self.ORDER):
            self.scene.add_block(color, color, xy, yaw)

    def slot_ok(self, block: str, level: int) -> bool:
        bpos, byaw, _ = self.scene.pose(block)
        ppos, pyaw, _ = self.scene.pose("pad")
        pad_top = ppos[2] + self.scene.objects["pad"].size[2]
        return bool(np.linalg.norm(bpos[:2] - ppos[:2]) < POS_TOL and yaw_error(byaw, pyaw, 4) < YAW_TOL
                    and abs(bpos[2] - (pad_top + BLOCK * (level + 0.5))) < HEIGHT_TOL)

    def stacked(self) -> int:
        k = 0
        while k < len(self.ORDER) and self.slot_ok(self.ORDER[k], k):
            k += 1
        return k

    def _credit(self) -> float:
        return self.stacked() / len(self.ORDER)

    def _step_info(self) -> dict:
        # per-step success of an episode: step k succeeded when at least k cubes stand in order at its end
        return {"stacked": self.stacked()}

    def oracle_action(self):
        return oracles.stacking(self)
