"""Run directories: one writer at a time (flock), finished runs never overwritten, run.json last, resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symgym.learn.cli import main
from symgym.learn.run.runs import RunDirError, locked_run_dir, run_state

SAC_TINY = '{"learning_starts": 100, "batch_size": 32, "net_arch": [32, 32]}'


def planner_run(out: Path, *extra: str) -> int:
    """A complete run in ~1 s: a planner has nothing to learn."""
    return main(["train", "--agent", "mppi", "--env", "SymReach-v0", "--steps", "0", "--out", str(out), *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_second_writer_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    with locked_run_dir(out):
        assert planner_run(out) == 2
        assert "in use by another symgym process" in one_line_error(capsys)
        with pytest.raises(RunDirError, match="in use"):
            with locked_run_dir(out):
                pass
    assert run_state(out) == "empty"  # the refused writer wrote nothing


def test_a_finished_run_is_refused_and_force_moves_it_aside(tmp_path, capsys):
    out = tmp_path / "run"
    assert planner_run(out) == 0
    first = (out / "config.json").read_text()
    assert json.loads((out / "run.json").read_text())["complete"] is True
    capsys.readouterr()
    assert planner_run(out) == 2
    assert "already holds a complete run; pass --force" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert planner_run(out, "--force") == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / "config.json").read_text() == first  # moved, never deleted
    assert run_state(aside[0]) == "complete" and run_state(out) == "complete"


def test_eval_names_an_incomplete_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert planner_run(out) == 0
    (out / "run.json").write_text(json.dumps({"complete": False, "steps": 0}))
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--episodes", "1"]) == 2
    err = one_line_error(capsys)
    assert f"run {out} is incomplete" in err and f"symgym train --resume {out}" in err
    with locked_run_dir(out, resume=True):  # while a writer holds it, eval says so
        assert main(["eval", "--run", str(out), "--episodes", "1"]) == 2
        assert f"pid {os.getpid()}" in one_line_error(capsys)


def test_a_retrain_killed_midway_leaves_the_old_run_intact(tmp_path, capsys):
    """--force moves the good run aside before writing, so killing the new training loses nothing."""
    out = tmp_path / "run"
    assert planner_run(out) == 0
    proc = subprocess.Popen([sys.executable, "-m", "symgym.learn.cli", "train", "--agent", "sac", "--env",
                             "SymPush-v0", "--steps", "5000", "--out", str(out), "--force", "--no-progress",
                             "--agent-kwargs", SAC_TINY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (out / "run.json").is_file() and run_state(out) == "incomplete", proc)
        # a second writer while the first trains: refused in one line, and eval will not read the half run
        capsys.readouterr()
        assert planner_run(out, "--force") == 2
        assert f"in use by another symgym process (pid {proc.pid})" in one_line_error(capsys)
        assert main(["eval", "--run", str(out)]) == 2
        assert f"it is being trained now (pid {proc.pid})" in one_line_error(capsys)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    aside = next(p for p in tmp_path.iterdir() if p.name.startswith("run.old-"))
    assert run_state(aside) == "complete" and run_state(out) == "incomplete"


def wait_for(predicate, proc, timeout=240.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the training ended before the test could kill it"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_resume_after_sigkill_reaches_the_same_step_count(tmp_path, capsys):
    out = tmp_path / "run"
    steps, every = 1200, 300
    proc = subprocess.Popen([sys.executable, "-m", "symgym.learn.cli", "train", "--agent", "sac", "--env",
                             "SymPush-v0", "--steps", str(steps), "--seed", "3", "--out", str(out), "--no-progress",
                             "--checkpoint-freq", str(every), "--eval-freq", "0", "--agent-kwargs", SAC_TINY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (out / "checkpoints" / f"sac_{every}_steps.json").is_file(), proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_state(out) == "incomplete"
    assert main(["eval", "--run", str(out)]) == 2 and "is incomplete" in one_line_error(capsys)

    assert main(["train", "--resume", str(out), "--no-progress", "--eval-freq", "0"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] is True and record["resumed_from_step"] >= every
    assert json.loads((out / "train.json").read_text())["env_steps"] == steps
    from symgym.learn.run.runs import load_run, read_monitor

    agent, config = load_run(out)
    assert agent.model.num_timesteps == steps and config.seed == 3
    assert read_monitor(out)["steps"].iloc[-1] <= steps  # no episode logged twice past the checkpoint
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    assert "is a complete run" in one_line_error(capsys)


def test_resume_needs_a_step_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert planner_run(out) == 0
    (out / "run.json").write_text(json.dumps({"complete": False}))
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    assert "no complete step checkpoint" in one_line_error(capsys)
    assert main(["train", "--resume", str(out), "--agent", "sac"]) == 2
    assert "drop --agent" in one_line_error(capsys)


def test_restored_rng_states_continue_the_seed_stream():
    """What a checkpoint stores is what resume restores: the next draws match those of the saved process."""
    import gymnasium as gym
    import numpy as np
    import torch

    from symgym.learn.run.training import _restore_rng_states, _rng_states

    env = gym.make("SymPush-v0")
    env.reset(seed=5)
    np.random.seed(1), torch.manual_seed(1)
    saved = _rng_states(env)
    expected = (np.random.rand(), torch.rand(1).item(), env.unwrapped.np_random.random(), env.action_space.sample())
    np.random.seed(2), torch.manual_seed(2), env.reset(seed=9)
    _restore_rng_states(saved, env)
    got = (np.random.rand(), torch.rand(1).item(), env.unwrapped.np_random.random(), env.action_space.sample())
    assert got[:3] == expected[:3] and np.array_equal(got[3], expected[3])


def test_resume_is_deterministic_and_keeps_the_replay_buffer(tmp_path, monkeypatch):
    """Two resumes from one checkpoint end with the same weights; the buffer holds the pre-checkpoint steps."""
    import shutil

    import torch
    from stable_baselines3.common.save_util import load_from_pkl

    from symgym.agents import TrainConfig
    from symgym.learn.run.runs import checkpoint_files, load_run
    import symgym.learn.run.training as training
    from symgym.learn.run.training import TrainOptions, resume, train

    run = tmp_path / "run"
    kwargs = json.loads(SAC_TINY)
    finish = training._finish
    monkeypatch.setattr(training, "_finish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # interrupted after learning, before the run was saved
        train(TrainConfig(agent="sac", env="SymPush-v0", steps=400, seed=2, out=str(run), agent_kwargs=kwargs),
              TrainOptions(progress=False, eval_freq=0, checkpoint_freq=200))
    monkeypatch.setattr(training, "_finish", finish)
    assert run_state(run) == "incomplete"
    checkpoint_files(run / "checkpoints", "sac", 400)["marker"].unlink()  # as if killed after step 200
    buffer = load_from_pkl(checkpoint_files(run / "checkpoints", "sac", 200)["replay_buffer"])
    assert buffer.size() == 199  # SB3 runs callbacks before storing the step's transition
    sizes = []

    def spy(agent, *args, **kwargs):
        sizes.append(agent.model.replay_buffer.size())
        return finish(agent, *args, **kwargs)

    monkeypatch.setattr(training, "_finish", spy)
    copies = [tmp_path / "a", tmp_path / "b"]
    for copy in copies:
        shutil.copytree(run, copy)
        resume(copy, TrainOptions(progress=False, eval_freq=0, checkpoint_freq=200))
    assert sizes == [399, 399]  # the 199 restored transitions + 200 new ones, not a fresh buffer
    assert not list((copies[0] / "checkpoints").glob("*replay_buffer*"))  # complete: buffers dropped
    weights = [load_run(c)[0].model.policy.state_dict() for c in copies]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert json.loads((copies[0] / "train.json").read_text())["env_steps"] == 400


def test_force_never_moves_a_directory_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert planner_run(out, "--force") == 2
    assert "holds files that are not a symgym run; choose another --out" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"] and (out / "thesis.tex").read_text() == "precious"
    with pytest.raises(RunDirError, match="not a symgym run"):
        with locked_run_dir(out, if_exists="move"):
            pass
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]  # not even a lock file left there

