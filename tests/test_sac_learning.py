"""Training-length check (``-m slow``): SAC trained through the CLI beats a random policy on SymPush-v0."""
import json

import pytest

from symgym.learn.cli import main
from symgym.learn.run.evaluate import evaluate


@pytest.mark.slow
def test_sac_learns_sympush(tmp_path):
    run = tmp_path / "sac"
    assert main(["train", "--agent", "sac", "--env", "SymPush-v0", "--steps", "30000", "--seed", "0",
                 "--out", str(run)]) == 0
    assert main(["eval", "--run", str(run), "--episodes", "50"]) == 0
    trained = json.loads((run / "eval.json").read_text())["success_rate"]
    random = evaluate(None, "SymPush-v0", episodes=50, progress=False).success_rate
    assert trained >= random + 0.3, (trained, random)
