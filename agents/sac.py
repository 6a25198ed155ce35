"""SAC baseline: Stable-Baselines3's SAC with its standard MLP (or CNN) policy.

Subclasses (``agents.equi_sac``) swap in equivariant policies by overriding ``policy_spec``;
training, checkpoints, monitor logs and loading stay here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from symgym.agents.base import Agent, TrainConfig
from symgym.learn.io import atomic_path
from symgym.learn.runs import make_env, plot_learning_curve

CHECKPOINT = "model.zip"

DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-4,
    "buffer_size": 200_000,
    "learning_starts": 1_000,
    "batch_size": 256,
    "gamma": 0.97,
    "tau": 0.01,
    "train_freq": 1,
    "gradient_steps": 1,
}


class TqdmCallback(BaseCallback):
    """A plain tqdm progress bar (SB3's own needs ``rich``)."""

    def __init__(self, total: int, desc: str):
        super().__init__()
        self.total, self.desc, self.bar = total, desc, None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class SACAgent(Agent):
    """SB3 SAC. ``agent_kwargs`` override SAC hyper-parameters (``net_arch`` goes to the policy)."""

    name = "sac"

    def __init__(self, model: SAC):
        self.model = model

    def policy_spec(self, env: gym.Env, agent_kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """(policy class or SB3 name, policy_kwargs)."""
        net_arch = agent_kwargs.pop("net_arch", [256, 256])
        image = len(env.observation_space.shape) == 3
        return ("CnnPolicy" if image else "MlpPolicy"), {"net_arch": net_arch}

    @classmethod
    def from_config(cls, config: TrainConfig, run_dir: Path) -> "SACAgent":
        # Small networks: one intra-op thread is fastest, and on a shared 2-core machine more threads
        # oversubscribe the CPU (measured: ~70x slower gradient steps under load with the default 2).
        torch.set_num_threads(int(config.agent_kwargs.pop("threads", 1)))
        torch.manual_seed(config.seed)
        env = make_env(config.env, seed=config.seed, monitor_dir=run_dir, **config.env_kwargs)
        kwargs = {**DEFAULTS, **config.agent_kwargs}
        self = cls.__new__(cls)
        policy, policy_kwargs = self.policy_spec(env, kwargs)
        model = SAC(policy, env, policy_kwargs=policy_kwargs, seed=config.seed, verbose=0, **kwargs)
        self.model = model
        model.learn(total_timesteps=config.steps, callback=TqdmCallback(config.steps, f"{cls.name} {config.env}"))
        self.save(run_dir)
        env.close()
        plot_learning_curve(run_dir, title=f"{cls.name} on {config.env} (seed {config.seed})")
        return self

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return action

    def save(self, run_dir: Path) -> None:
        with atomic_path(Path(run_dir) / CHECKPOINT) as tmp:
            self.model.save(tmp)
            # SB3 appends .zip when the name lacks it; our temp name already ends in .zip
        return None

    @classmethod
    def load(cls, run_dir: Path, env: gym.Env | None = None) -> "SACAgent":
        path = Path(run_dir) / CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        try:
            model = SAC.load(path, env=None, device="cpu", custom_objects=cls.custom_objects())
        except Exception as e:  # SB3 raises zipfile/pickle/torch errors for damaged files
            raise ValueError(f"corrupt checkpoint {path}: {type(e).__name__}: {e}") from e
        return cls(model)

    @classmethod
    def custom_objects(cls) -> dict[str, Any]:
        return {}
