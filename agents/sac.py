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

from symgym.agents.base import Agent, EnvInfo, parse_config
from symgym.agents.checkpoint import load_file, read_checkpoint, write_checkpoint

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

    def sb3_kwargs(self) -> dict[str, Any]:
        out = asdict(self)
        for key in self.policy_keys():
            out.pop(key)
        return out

    @classmethod
    def policy_keys(cls) -> tuple[str, ...]:
        return ("net_arch", "threads")


class SACAgent(Agent):
    """SB3 SAC. Build from (spaces, symmetry, kwargs); ``learn(env, steps, callback)`` runs ``SAC.learn``."""

    name: ClassVar[str] = "sac"
    learns_from = "env"
    rl = True
    config_class: ClassVar[type] = SACConfig

    def __init__(self, config: SACConfig, info: EnvInfo | None = None, seed: int = 0, model: SAC | None = None):
        self.config, self.info, self.seed, self.model = config, info, seed, model

    @classmethod
    def build(cls, info: EnvInfo, agent_kwargs: dict[str, Any] | None = None, seed: int = 0) -> "SACAgent":
        config = parse_config(cls.config_class, dict(agent_kwargs or {}), cls.name)
        agent = cls(config, info, seed)
        agent.policy_spec(info)  # fail now, not after env creation, when the env cannot carry this policy
        return agent

    def policy_spec(self, info: EnvInfo) -> tuple[Any, dict[str, Any]]:
        """(policy class or SB3 name, policy_kwargs)."""
        image = len(info.observation_space.shape) == 3
        return ("CnnPolicy" if image else "MlpPolicy"), {"net_arch": list(self.config.net_arch)}

    def learn(self, source: gym.Env, steps: int, callback: Any = None, progress: bool = False,
              tensorboard_log: str | None = None) -> dict[str, Any]:
        torch.set_num_threads(int(self.config.threads))
        if self.model is None:
            policy, policy_kwargs = self.policy_spec(self.info or EnvInfo.of(source))
            self.model = SAC(policy, source, policy_kwargs=policy_kwargs, seed=self.seed, verbose=0,
                             tensorboard_log=tensorboard_log, device="cpu", **self.config.sb3_kwargs())
        else:  # continue training (fine-tuning a loaded model, possibly on another env with the same spaces)
            self.model.set_env(source)
        self.model.learn(total_timesteps=steps, callback=callback, progress_bar=progress,
                         reset_num_timesteps=False, tb_log_name=self.name)
        return {"env_steps": int(self.model.num_timesteps)}

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{self.name} has no model yet: call learn() or load() first")
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return action

    def save(self, run_dir: str | Path) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name} has no model to save: call learn() first")
        # SB3 appends .zip when the name lacks it; the temp name already ends in .zip
        write_checkpoint(run_dir, self.name, type(self).__name__, {"model": (MODEL_FILE, self.model.save)},
                         config={**asdict(self.config), "seed": self.seed})

    @classmethod
    def load(cls, run_dir: str | Path, env: gym.Env | None = None) -> "SACAgent":
        manifest = read_checkpoint(run_dir, cls.name, cls.__name__)
        saved = dict(manifest["config"])
        seed = int(saved.pop("seed", 0))
        config = parse_config(cls.config_class, saved, cls.name)
        model = load_file(run_dir, manifest, "model",
                          lambda p: SAC.load(p, env=None, device="cpu", custom_objects=cls.custom_objects()))
        return cls(config, None, seed, model)

    @classmethod
    def custom_objects(cls) -> dict[str, Any]:
        return {}
