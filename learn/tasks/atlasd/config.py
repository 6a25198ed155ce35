"""The AtlasD task's settings (a module of its own so that the task's parts, such as ``pde.py``, can take them without
importing the task)."""
from __future__ import annotations

from dataclasses import dataclass, field

from symgym.equivariance.discovery import DiscreteDiscoveryConfig, LieDiscoveryConfig
from symgym.equivariance.discovery_count import GeneratorCountConfig
from symgym.learn.tasks.atlasd.downstream import ConvergenceRule
from symgym.learn.tasks.atlasd.lorentz import LorentzConfig
from symgym.physics.pde import HeatObstacleConfig


@dataclass
class AtlasDConfig:
    pde: HeatObstacleConfig = field(default_factory=HeatObstacleConfig)
    patch: int = 21
    n_charts: int = 4
    n_pairs: int = 300
    predictor_steps: int = 300
    predictor_batch: int = 16
    #: the global CNN trains in rounds of this many steps until its chart-pixel fit matches the charts'
    global_round_steps: int = 400
    global_max_rounds: int = 5
    global_hidden: int = 24
    lie: LieDiscoveryConfig = field(default_factory=lambda: LieDiscoveryConfig(steps=60, restarts=1, batch=16))
    count: GeneratorCountConfig = field(default_factory=lambda: GeneratorCountConfig(max_generators=3))
    discrete: DiscreteDiscoveryConfig = field(default_factory=lambda: DiscreteDiscoveryConfig(n_candidates=6, steps=60, batch=8))
    global_batch: int = 4
    #: the global CNN stops training once its chart-pixel fit is this good (about the charts' own)
    global_target_fit: float = 0.015
    #: 5 seeds (3 until 2026-12-07, which the ledger calls underpowered: it gives no verdict under 5 a side)
    exact_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    #: seeds of the trained-predictor local vs global discovery (``seed`` itself is the main run's)
    pde_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    synthetic_charts: int = 3
    synthetic_steps: int = 2000
    synthetic_candidates: int = 10  # MLP charts are cheap: enough discrete starts to hit all 4 components
    synthetic_discrete_steps: int = 200
    lorentz: LorentzConfig = field(default_factory=lambda: LorentzConfig(fit_steps=2500, lie=LieDiscoveryConfig(steps=60, restarts=1, batch=64, coef_std=0.5)))
    #: 5 seeds (3 until 2026-12-07; see ``exact_seeds``)
    lorentz_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    downstream_sizes: tuple[int, ...] = (1, 4, 16, 64)
    #: 10 seeds (5 until 2026-12-07): the plain CNN's test error varies so much between seeds (0.011 to 0.15 at 64
    #: fields) that five left every downstream claim inconclusive while the steerable CNN was ahead on every seed
    downstream_seeds: tuple[int, ...] = tuple(range(10))
    #: both downstream models train to convergence under this one rule (early stopping on validation fields), each
    #: from its own initial learning rate, chosen on tuning seeds 100 and 101 by mean validation error over the
    #: sizes (:mod:`learn.tasks.atlasd.tuning`; table in results/atlasd.json ``downstream_tuning``). The cap of
    #: 8000 steps: under the 3000 of before, 8 of 20 steerable runs stopped at the cap while still improving; every
    #: tuning run stopped by patience by step 3450, so 8000 leaves over twice that before the cap could bind. 32
    #: validation fields (8 until 2026-12-07): the 8 held none of the fields drawn without warm-up, whose
    #: tendencies are the largest (4 of the 24 test fields; the 32 hold 3), so early stopping and tuning selected
    #: on an easier set. With them the tuning chose 3e-3 for both models (the 8 fields had chosen 1e-2 for the
    #: plain CNN)
    downstream_rule: ConvergenceRule = field(default_factory=lambda: ConvergenceRule(
        max_steps=8000, lr_by_model={"steerable": 3e-3, "cnn": 3e-3}, n_val=32))
    downstream_fields: int = 3
    downstream_test: int = 24
    #: the downstream models start at once for this planar group and are used only if discovery names
    #: the same group (else they are rerun with the discovered one); None: start after discovery
    downstream_expected_group: str | None = "D4"
    workers: int = 16
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "AtlasDConfig":
        return cls(
            n_charts=2,
            n_pairs=96,
            predictor_steps=150,
            global_round_steps=150,
            global_max_rounds=1,
            global_hidden=16,
            lie=LieDiscoveryConfig(steps=30, restarts=1, batch=8),
            count=GeneratorCountConfig(max_generators=2),
            discrete=DiscreteDiscoveryConfig(n_candidates=2, steps=20, batch=8),
            global_batch=2,
            exact_seeds=(0, 1),
            pde_seeds=(seed, seed + 1),
            synthetic_charts=2,
            synthetic_steps=300,
            synthetic_candidates=4,
            synthetic_discrete_steps=30,
            lorentz=LorentzConfig.quick(),
            lorentz_seeds=(0,),
            downstream_sizes=(1, 4),
            downstream_seeds=(0, 1),
            downstream_rule=ConvergenceRule(eval_every=10, patience=2, lr_patience=1, max_steps=40, n_val=2),
            downstream_fields=2,
            downstream_test=8,
            downstream_expected_group=None,
            workers=2,
            seed=seed,
        )
