"""Scripted-oracle demonstrations: ``symgym demos --env ID --n N --out FILE``.

A demos file is a compressed ``.npz`` of flat transition arrays (``color``, ``height``, ``action``,
``reward``, ``episode``) plus the seed of each episode; only successful episodes are kept, so the
file holds exactly ``n`` solved episodes (imitation learns from good behaviour only).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from symgym.learn.io import atomic_path
from symgym.learn.runs import make_env


def collect_demos(env_id: str, n: int, out: Path, seed: int = 0, progress: bool = True,
                  max_failures: int | None = None) -> Path:
    """Run the env's oracle from seeds ``seed, seed+1, ...`` until ``n`` episodes succeed; write ``out``.

    Raises ValueError for an env without an oracle, and RuntimeError when the oracle fails more than
    ``max_failures`` episodes (default ``n``): a broken env must not silently yield a short file.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 demonstrations, got {n}")
    if env_id.startswith("Hep"):
        # closed-loop envs record vector + point-cloud observations and keyposes, per step
        from symgym.envs.closed_loop import collect_closed_loop_demos

        collect_closed_loop_demos(env_id, n, out=Path(out), seed=seed)
        return Path(out)
    env = make_env(env_id)
    if not hasattr(env.unwrapped, "oracle_action"):
        env.close()
        raise ValueError(f"env {env_id!r} has no scripted oracle (oracle_action)")
    max_failures = n if max_failures is None else max_failures
    cols: dict[str, list] = {"color": [], "height": [], "action": [], "reward": [], "episode": []}
    seeds: list[int] = []
    failures, s = 0, seed
    bar = tqdm(total=n, desc=f"demos {env_id}", disable=not progress, unit="ep")
    while len(seeds) < n:
        obs, _ = env.reset(seed=s)
        episode: dict[str, list] = {k: [] for k in cols}
        done, info = False, {"is_success": False}
        while not done:
            action = env.unwrapped.oracle_action()
            if action is None:
                break
            episode["color"].append(obs["color"])
            episode["height"].append(obs["height"])
            episode["action"].append(np.asarray(action, np.float32))
            obs, reward, terminated, truncated, info = env.step(action)
            episode["reward"].append(reward)
            episode["episode"].append(len(seeds))
            done = terminated or truncated
        if info.get("is_success"):
            for k in cols:
                cols[k].extend(episode[k])
            seeds.append(s)
            bar.update(1)
        else:
            failures += 1
            if failures > max_failures:
                env.close()
                raise RuntimeError(f"oracle failed {failures} episodes of {env_id} (last seed {s})")
        s += 1
    bar.close()
    env.close()
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, color=np.stack(cols["color"]), height=np.stack(cols["height"]),
                                action=np.stack(cols["action"]), reward=np.asarray(cols["reward"], np.float32),
                                episode=np.asarray(cols["episode"], np.int64), seeds=np.asarray(seeds, np.int64),
                                env_id=np.asarray(env_id))
    return out
