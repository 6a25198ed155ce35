"""The symgym CLI: a tiny train/eval round trip, and one-line errors (exit 2, no traceback) for bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from symgym.learn.cli import main

SYMGYM = [sys.executable, "-m", "symgym.learn.cli"]


def run_cli(*args, cwd=None):
    return subprocess.run([*SYMGYM, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sac-tiny"
    code = main(["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "300", "--seed", "1", "--out", str(out),
                 "--agent-kwargs", '{"learning_starts": 100, "batch_size": 32, "net_arch": [32, 32]}'])
    assert code == 0
    return out


def test_train_writes_a_complete_run_dir(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "checkpoint.json", "model.zip", "monitor.monitor.csv", "learning_curve.png",
            "train.json", "evaluations.npz", "best_model.zip", "run.json"} <= names
    assert json.loads((tiny_run / "run.json").read_text())["complete"] is True
    # run.json is the run's last write: nothing it vouches for is newer
    last = (tiny_run / "run.json").stat().st_mtime_ns
    assert all((tiny_run / n).stat().st_mtime_ns <= last for n in names if n != "checkpoints")
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["agent"] == "sac" and config["steps"] == 300 and config["seed"] == 1
    # the resolved config: hyperparams/sac.yml for SymPush-v0, overridden by --agent-kwargs
    assert config["agent_kwargs"]["gamma"] == 0.97 and config["agent_kwargs"]["net_arch"] == [32, 32]
    manifest = json.loads((tiny_run / "checkpoint.json").read_text())
    assert manifest["agent"] == "sac" and manifest["files"]["model"] == "model.zip" and manifest["symgym_version"]
    assert not [n for n in names if n.startswith(".") and n != ".symgym.lock"], "temporary files left behind"


def test_run_files_are_world_readable(tiny_run):
    """Atomic writes go through mkstemp (0600); finished files get the usual 0666 & ~umask."""
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("config.json", "checkpoint.json", "model.zip", "train.json"):
        assert (tiny_run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_steps_default_comes_from_the_hyperparameter_file(tmp_path):
    from symgym.learn.run.hyperparams import resolve

    assert resolve("sac", "SymPush-v0", None, {})[0] == 30_000
    assert resolve("sac", "SymPush-v0", 7, {"gamma": 0.5}) == (7, {**resolve("sac", "SymPush-v0", 7, {})[1],
                                                                   "gamma": 0.5})
    assert resolve("sac", "NotListed-v0", None, {}) == (20_000, {})
    bad = tmp_path / "h.yml"
    bad.write_text("SymPush-v0: {n_timesteps: lots}")
    with pytest.raises(ValueError, match="n_timesteps"):
        resolve("sac", "SymPush-v0", None, {}, path=bad)


def test_eval_reports_success_and_return_and_writes_video(tiny_run, capsys):
    assert main(["eval", "--run", str(tiny_run), "--episodes", "2", "--video", "--baseline"]) == 0
    result = json.loads((tiny_run / "eval.json").read_text())
    assert result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0
    assert "random_policy" in result
    videos = [p for p in tiny_run.iterdir() if p.stem == "eval" and p.suffix in (".mp4", ".gif")]
    assert videos and videos[0].stat().st_size > 1000


def test_eval_without_ffmpeg_announces_the_gif_it_wrote(tiny_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if the video extra were not installed
    for old in tiny_run.glob("eval.*"):
        old.unlink()
    assert main(["eval", "--run", str(tiny_run), "--episodes", "1", "--video"]) == 0
    out = capsys.readouterr().out
    assert f"video: {tiny_run / 'eval.gif'}" in out and (tiny_run / "eval.gif").is_file()
    assert not (tiny_run / "eval.mp4").exists()


def test_eval_on_an_env_with_other_shapes_names_them(tiny_run, capsys):
    assert main(["eval", "--run", str(tiny_run), "--env", "SymReach-v0"]) == 2
    err = capsys.readouterr().err
    assert "trained on SymPush-v0 (observations (14,)" in err and "SymReach-v0 has observations" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_eval_on_another_env_writes_its_own_file(tiny_run):
    assert main(["eval", "--run", str(tiny_run), "--episodes", "1", "--env", "SymPushWind-v0"]) == 0
    result = json.loads((tiny_run / "eval-SymPushWind-v0.json").read_text())
    assert result["env"] == "SymPushWind-v0" and result["trained_on"] == "SymPush-v0"


def test_envs_lists_symmetry():
    out = run_cli("envs")
    assert out.returncode == 0
    line = next(l for l in out.stdout.splitlines() if l.startswith("SymPush-v0"))
    assert "O(2)" in line and "exact" in line


@pytest.mark.parametrize("args, fragment", [
    (["train", "--agent", "sac", "--env", "NoSuchEnv-v0", "--steps", "10"], "NoSuchEnv-v0"),
    (["train", "--agent", "ppo9000", "--env", "SymPush-v0", "--steps", "10"], "ppo9000"),
    (["eval", "--run", "/nonexistent/run"], "/nonexistent/run"),
    (["task", "no-such-task"], "no-such-task"),
    (["bench", "no-such-bench"], "no-such-bench"),
    (["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "-5"], "-5"),
    (["eval", "--run", "x", "--episodes", "zero"], "zero"),
    (["train", "--agent", "sac", "--env", "SymPush-v0", "--agent-kwargs", "{oops"], "{oops"),
    (["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "10", "--agent-kwargs",
      '{"learning_rate": "fast"}'], "learning_rate='fast'"),
    (["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "10", "--agent-kwargs",
      '{"learning_rat": 0.1}'], "learning_rat"),
    (["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "10", "--env-kwargs", '{"wnd": 0.3}'], "wnd"),
    (["eval", "--run", "x", "--env", "NoSuchEnv-v0"], "x"),
])
def test_bad_input_gives_one_line_error(args, fragment):
    out = run_cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert fragment in out.stderr


def test_corrupt_checkpoint_is_reported(tiny_run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_run / "config.json").read_text())
    out = run_cli("eval", "--run", str(broken))
    assert out.returncode == 2 and "is incomplete" in out.stderr  # no run.json, no checkpoint: interrupted
    (broken / "run.json").write_text((tiny_run / "run.json").read_text())  # claims complete: the checkpoint is checked
    out = run_cli("eval", "--run", str(broken))
    assert out.returncode == 2 and "no checkpoint" in out.stderr
    (broken / "checkpoint.json").write_text((tiny_run / "checkpoint.json").read_text())
    out = run_cli("eval", "--run", str(broken))
    assert out.returncode == 2 and "model file model.zip is missing" in out.stderr
    for role, name in json.loads((tiny_run / "checkpoint.json").read_text())["files"].items():
        if role != "model":  # every file but the model is intact
            (broken / name).write_bytes((tiny_run / name).read_bytes())
    (broken / "model.zip").write_bytes(b"this is not a zip file")
    out = run_cli("eval", "--run", str(broken))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "corrupt checkpoint" in out.stderr
    manifest = json.loads((tiny_run / "checkpoint.json").read_text())
    (broken / "checkpoint.json").write_text(json.dumps({**manifest, "agent": "equi-sac"}))
    out = run_cli("eval", "--run", str(broken))
    assert out.returncode == 2 and "is for agent 'equi-sac', not 'sac'" in out.stderr
    (broken / "config.json").write_text("{not json")
    out = run_cli("eval", "--run", str(broken))
    assert out.returncode == 2 and "corrupt run config" in out.stderr


def test_bench_env_speed_writes_json_and_png(tmp_path):
    assert main(["bench", "env-speed", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "env-speed.json").read_text())
    for clock in ("wall", "cpu"):  # time ratios of the env over raw MuJoCo and of SyncVectorEnv over the vector env
        assert data["summary"][clock]["sympush_env_over_raw"] > 0.5 and data["summary"][clock]["sync_over_vector_n16"] > 0
    assert data["sympush"]["replay_bit_identical"] and data["sympush"]["timing"]["rounds"] >= 5
    # the steps-only rows replay the same physics without resets, bit for bit, and time no reset on either side
    for row in ("sympush_steps", "pandapush_steps"):
        assert data[row]["replay_bit_identical"] and data[row]["resets"] is False
        assert data["summary"]["cpu"][f"{row}_env_over_raw"] > 0.5
    assert (tmp_path / "env-speed.png").stat().st_size > 1000
