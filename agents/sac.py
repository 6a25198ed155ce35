"""SAC baseline: Stable-Baselines3's SAC with its standard MLP (or CNN) policy.

Subclasses (``symgym.agents.equi_sac``) swap in equivariant policies by overriding ``policy_spec``;
the SB3 model, checkpoints and loading stay here. Callbacks (evaluation, checkpoints, progress bar),
monitor logs and TensorBoard come from SB3 through the run layer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from symgym.agents.base import Agent, EnvInfo

MODEL_FILE = "model.zip"


@dataclass
class SACConfig:
    """SB3 SAC hyper-parameters (``agent_kwargs``); ``net_arch`` goes to the policy.

    ``threads`` is torch's intra-op thread count: small networks are fastest on one thread, and on a shared
    2-core machine more threads oversubscribe the CPU (measured: ~70x slower gradient steps under load).
    """

    learning_rate: float = 3e-4
    buffer_size: int = 200_000
    learning_starts: int = 1_000
    batch_size: int = 256
    gamma: float = 0.97
    tau: float = 0.01
    train_freq: int = 1
    gradient_steps: int = 1
    ent_coef: str | float = "auto"
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    threads: int = 1
    #: stop once the success of training episodes holds >= this over ``early_stop_evals`` consecutive
    #: blocks of ``early_stop_block`` env steps (None: train for the whole budget); see :class:`EarlyStop`
    early_stop_success: float | None = None
    early_stop_evals: int = 3
    early_stop_block: int = 1000

    def sb3_kwargs(self) -> dict[str, Any]:
        out = asdict(self)
        for key in self.policy_keys():
            out.pop(key)
        return out

    @classmethod
    def policy_keys(cls) -> tuple[str, ...]:
        """Keys that are not arguments of SB3's ``SAC`` (policy, threads, early stopping, augmentation)."""
        return ("net_arch", "threads", "early_stop_success", "early_stop_evals", "early_stop_block")


class SACAgent(Agent):
    """SB3 SAC. Build from (spaces, symmetry, kwargs); ``learn(env, steps, callback)`` runs ``SAC.learn``."""

    name: ClassVar[str] = "sac"
    learns_from = "env"
    rl = True
    config_class: ClassVar[type] = SACConfig

    def __init__(self, config: SACConfig | None = None, seed: int = 0, info: EnvInfo | None = None):
        super().__init__(config, seed, info)
        self.model: SAC | None = None
        #: what training recorded (early stop, success per block); saved with the checkpoint
        self.record: dict[str, Any] = {}

    def check_env(self, info: EnvInfo) -> None:
        self.policy_spec(info)  # fail now, not after env creation, when the env cannot carry this policy

    def policy_spec(self, info: EnvInfo) -> tuple[Any, dict[str, Any]]:
        """(policy class or SB3 name, policy_kwargs)."""
        image = len(info.observation_space.shape) == 3
        return ("CnnPolicy" if image else "MlpPolicy"), {"net_arch": list(self.config.net_arch)}

    def model_kwargs(self, info: EnvInfo) -> dict[str, Any]:
        """Extra keyword arguments of SB3's ``SAC`` (subclasses: a replay buffer class, ...)."""
        return {}

    def build_model(self, env: gym.Env, tensorboard_log: str | None = None) -> SAC:
        info = self.info or EnvInfo.of(env)
        policy, policy_kwargs = self.policy_spec(info)
        return SAC(policy, env, policy_kwargs=policy_kwargs, seed=self.seed, verbose=0, tensorboard_log=tensorboard_log,
                   device="cpu", **self.config.sb3_kwargs(), **self.model_kwargs(info))

    def learn(self, source: gym.Env, steps: int, callback: Any = None, progress: bool = False,
              tensorboard_log: str | None = None) -> dict[str, Any]:
        torch.set_num_threads(int(self.config.threads))
        if self.model is None:
            self.model = self.build_model(source, tensorboard_log)
        else:  # continue training (fine-tuning a loaded model, possibly on another env with the same spaces)
            self.model.set_env(source)
        start = int(self.model.num_timesteps)
        stopper = EarlyStop(self.config, start, start + int(steps))
        callbacks = [c for c in (callback, stopper) if c is not None]
        self.model.learn(total_timesteps=steps, callback=CallbackList(callbacks), progress_bar=progress,
                         reset_num_timesteps=False, tb_log_name=self.name)
        self.record = stopper.record(int(self.model.num_timesteps))
        return {"env_steps": int(self.model.num_timesteps), "extra_metrics": self.extra_metrics()}

    def extra_metrics(self) -> dict[str, float]:
        """Scalars for a sweep trial's summary: early stop and the block success curve's area."""
        return {k: float(v) for k, v in self.record.items() if isinstance(v, (int, float)) and v is not None}

    def parameter_counts(self, info: EnvInfo | None = None) -> dict[str, int]:
        """Trainable parameters of the actor and of the (twin) critic, without the target critic.

        Built without an env (the policy alone), so a spec's widths can be checked before training."""
        if self.model is not None:
            policy = self.model.policy
        else:
            info = info or self.info
            cls, policy_kwargs = self.policy_spec(info)
            if isinstance(cls, str):
                from stable_baselines3.sac.policies import CnnPolicy, MlpPolicy
                cls = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy}[cls]
            policy = cls(info.observation_space, info.action_space, lambda _: self.config.learning_rate,
                         **policy_kwargs)
        return {name: int(sum(p.numel() for p in net.parameters() if p.requires_grad))
                for name, net in (("actor", policy.actor), ("critic", policy.critic))}

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{self.name} has no model yet: call learn() or load() first")
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return action

    def checkpoint_files(self) -> dict[str, tuple[str, Any]]:
        if self.model is None:
            raise RuntimeError(f"{self.name} has no model to save: call learn() first")
        # SB3 appends .zip when the name lacks it; the temp name already ends in .zip
        return {"model": (MODEL_FILE, self.model.save)}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"record": self.record}

    def restore_files(self, files, state: dict[str, Any]) -> None:
        self.model = files.load("model", lambda p: SAC.load(p, env=None, device="cpu",
                                                            custom_objects=self.custom_objects()))
        self.record = dict(state.get("record", {}))

    @classmethod
    def custom_objects(cls) -> dict[str, Any]:
        return {}


class EarlyStop(BaseCallback):
    """Records the success of training episodes per block of env steps and stops training early.

    Each block of ``early_stop_block`` env steps is one evaluation: the fraction of the training episodes that
    ended in it with ``info["is_success"]`` (blocks with fewer than ``MIN_EPISODES`` episodes count as not
    evaluated). Training stops once the last ``early_stop_evals`` evaluations all reach ``early_stop_success``.
    Training episodes, not separate deterministic ones: the agent never creates an env, and the stochastic
    policy's success is a lower bound of the deterministic one's, so the stop is conservative.

    :meth:`record` summarises the run: ``stopped_at`` (env steps; the budget when it never stopped) and
    ``success_auc``, the mean block success over the whole budget, the blocks after an early stop counted at
    the mean of the last ``early_stop_evals`` evaluations (the level the stop certified).
    """

    MIN_EPISODES = 5

    def __init__(self, config: SACConfig, start: int, budget: int):
        super().__init__()
        self.threshold, self.evals = config.early_stop_success, int(config.early_stop_evals)
        self.block, self.start, self.budget = int(config.early_stop_block), int(start), int(budget)
        if self.block < 1 or self.evals < 1:
            raise ValueError(f"early_stop_block and early_stop_evals must be >= 1, got {self.block}, {self.evals}")
        self.successes: list[float] = []  # finished episodes of the current block
        self.curve: list[float | None] = []  # one value per finished block
        self.stopped = False

    def _on_step(self) -> bool:
        for done, info in zip(self.locals.get("dones", ()), self.locals.get("infos", ())):
            if done:
                self.successes.append(float(bool(info.get("is_success", False))))
        if (self.num_timesteps - self.start) % self.block == 0:
            n = len(self.successes)
            self.curve.append(float(np.mean(self.successes)) if n >= self.MIN_EPISODES else None)
            self.successes = []
            last = self.curve[-self.evals:]
            if (self.threshold is not None and len(last) == self.evals
                    and all(v is not None and v >= self.threshold for v in last)):
                self.stopped = True
                return False
        return True

    def record(self, steps_done: int) -> dict[str, Any]:
        blocks = max(1, -(-(self.budget - self.start) // self.block))
        values = [0.0 if v is None else v for v in self.curve]
        if self.stopped:
            values += [float(np.mean(values[-self.evals:]))] * (blocks - len(values))
        else:  # a partial last block or blocks never reached count as what was last measured
            values += [values[-1] if values else 0.0] * (blocks - len(values))
        return {"stopped_early": float(self.stopped), "stopped_at": float(steps_done),
                "success_auc": float(np.mean(values[:blocks])), "block_success": self.curve,
                "block_steps": self.block}


class SymmetryAugmentedReplayBuffer(ReplayBuffer):
    """RAD/DrQ-style replay augmentation: every sampled transition is replaced by its image under an independent
    random group element: ``(g.obs, g.action, g.next_obs)``; reward and done are invariant.

    ``obs_matrices`` / ``action_matrices`` are ``rho(g)`` for every element of a finite group, stacked
    ``(|G|, d, d)`` (plain arrays, so SB3 can save the buffer's kwargs). On an env whose symmetry is broken this
    augments with a symmetry the dynamics do not have: that is part of the comparison, not a bug.
    """

    def __init__(self, *args, obs_matrices=None, action_matrices=None, **kwargs):
        super().__init__(*args, **kwargs)
        if obs_matrices is None or action_matrices is None:
            raise ValueError("SymmetryAugmentedReplayBuffer needs obs_matrices and action_matrices")
        self.obs_matrices = torch.as_tensor(np.asarray(obs_matrices), dtype=torch.float32)
        self.action_matrices = torch.as_tensor(np.asarray(action_matrices), dtype=torch.float32)
        if len(self.obs_matrices) != len(self.action_matrices):
            raise ValueError(f"{len(self.obs_matrices)} obs matrices but {len(self.action_matrices)} action matrices")

    def _get_samples(self, batch_inds, env=None):
        data = super()._get_samples(batch_inds, env)
        # numpy's global generator, as SB3 samples the batch indices: seeded by the agent's seed
        g = torch.as_tensor(np.random.randint(len(self.obs_matrices), size=len(batch_inds)))
        ro, ra = self.obs_matrices[g], self.action_matrices[g]

        def act(m, x):
            return torch.bmm(m, x.unsqueeze(-1)).squeeze(-1).to(x.dtype)

        return data._replace(observations=act(ro, data.observations), actions=act(ra, data.actions),
                             next_observations=act(ro, data.next_observations))


@dataclass
class SACAugConfig(SACConfig):
    """SAC plus replay augmentation with the finite group ``augment_group`` (default D4, the group the
    equivariant agents use: a signed permutation of the action axes keeps actions inside SAC's box)."""

    augment_group: str = "D4"

    @classmethod
    def policy_keys(cls) -> tuple[str, ...]:
        return SACConfig.policy_keys() + ("augment_group",)


class SACAugAgent(SACAgent):
    """``sac-aug``: plain SAC networks trained on replay batches transformed by random elements of the env's
    declared symmetry (restricted to ``augment_group``)."""

    name = "sac-aug"
    config_class = SACAugConfig

    def policy_spec(self, info: EnvInfo) -> tuple[Any, dict[str, Any]]:
        self.augmentation_matrices(info)  # an env without a usable symmetry fails at build time
        return super().policy_spec(info)

    def augmentation_matrices(self, info: EnvInfo) -> tuple[np.ndarray, np.ndarray]:
        from symgym.equivariance import Representation, group_from_name
        from symgym.equivariance.layers import group_element_matrices, restrict_rep

        sym = info.symmetry
        if sym is None or not isinstance(sym.obs, Representation) or not isinstance(sym.action, Representation):
            raise ValueError(f"{self.name} needs an env that declares vector obs and action representations")
        group = group_from_name(self.config.augment_group)
        obs_rep, act_rep = restrict_rep(sym.obs, group), restrict_rep(sym.action, group)
        if obs_rep.size != int(np.prod(info.observation_space.shape)):
            raise ValueError(f"{self.name}: the declared obs representation has size {obs_rep.size}, the obs space "
                             f"shape {info.observation_space.shape}")
        acts = group_element_matrices(act_rep)
        # actions live in SAC's [-1, 1] box: only signed permutations keep them there
        if not np.allclose(np.abs(acts).sum(axis=1), 1.0) or not np.allclose(np.abs(acts).max(axis=1), 1.0):
            raise ValueError(f"augment_group {self.config.augment_group!r} moves actions out of SAC's box; "
                             f"use a subgroup of D4")
        return group_element_matrices(obs_rep).astype(np.float32), acts.astype(np.float32)

    def model_kwargs(self, info: EnvInfo) -> dict[str, Any]:
        obs_m, act_m = self.augmentation_matrices(info)
        return {"replay_buffer_class": SymmetryAugmentedReplayBuffer,
                "replay_buffer_kwargs": {"obs_matrices": obs_m, "action_matrices": act_m}}
