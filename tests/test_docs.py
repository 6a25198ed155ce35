"""The documentation site builds with ``mkdocs build --strict`` (a broken page, link or API reference fails), and
every generated part of README.md and docs/ equals what ``symgym.learn.pages`` makes from the current results."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symgym.learn import pages

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("envs", "agents", "equivariance", "physics", "learn", "tests", "scripts")


def _mkdocs(config: Path, site: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_site_builds_strict(tmp_path):
    out = _mkdocs(ROOT / "mkdocs.yml", tmp_path / "site")
    assert out.returncode == 0, out.stderr[-3000:]
    site = tmp_path / "site"
    # the API reference rendered the env docstrings' tables, and the hook served the results figures
    sympush = (site / "envs" / "sympush" / "index.html").read_text()
    assert "Observation Space" in sympush and "<table>" in sympush
    assert (site / "results" / "frames" / "gallery.png").is_file()
    assert (site / "results" / "sac" / "index.html").is_file()


def test_strict_build_fails_on_a_broken_reference_and_link(tmp_path):
    """What the site test relies on: strict mode turns a missing API object or page into a failed build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# t\n\n[gone](missing.md)\n\n::: symgym.envs.sym_push.NoSuchEnv\n")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    text = (tmp_path / "mkdocs.yml").read_text()
    text = re.sub(r"\nnav:.*", "\n", text, flags=re.S)                       # no nav: one page
    text = text.replace("  - learn/pages.py", f"  - {ROOT / 'learn' / 'pages.py'}")
    text = text.replace("paths: [build/docs-src]", f"paths: [{ROOT / 'build' / 'docs-src'}]")
    (tmp_path / "mkdocs.yml").write_text(text)
    pages.source_tree(ROOT)
    out = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert out.returncode != 0
    assert "NoSuchEnv" in out.stderr or "missing.md" in out.stderr


def test_generated_files_are_up_to_date():
    stale = pages.stale(ROOT)
    assert not stale, f"out of date (run python -m symgym.learn.pages): {[str(p.relative_to(ROOT)) for p in stale]}"


def test_readme_is_short_with_a_generated_claims_table_and_a_setup_section():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "## Set-up" in readme and "make demo" in readme and "make test" in readme
    block = readme.split(pages.README_BEGIN)[1].split(pages.README_END)[0]
    assert block.strip() == pages.readme_claims(pages.load_results(ROOT / "results")).strip()
    assert "| claim | verdict |" in block


def test_claims_table_reads_old_and_new_ledger_entries():
    old = {"claim": "a beats b", "method": "a", "baseline": "b", "n_seeds": 5, "effect": "difference",
           "effect_value": 0.25, "ci95": [0.1, 0.4], "holds": True}
    new = {**old, "claim": "c beats d", "holds": "underpowered", "n_seeds": 3, "interval": "paired t",
           "p_value": 0.0123, "p_adjusted": 0.0369, "reason": "3 seeds < 5"}
    only_old = pages.claims_table([old])
    assert "interval method" not in only_old and "p (raw / adjusted)" not in only_old
    assert "**true**" in only_old and "[0.1, 0.4]" in only_old
    both = pages.claims_table([old, new], reasons=True)
    header = both.splitlines()[0]
    assert "interval method" in header and "p (raw / adjusted)" in header and "reason" in header
    assert "0.0123 / 0.0369" in both and "**underpowered**" in both and "paired t" in both
    # the README shows only decided claims with enough seeds
    readme = pages.readme_claims({"x": {"evidence": [old, new]}})
    assert "a beats b" in readme and "c beats d" not in readme
    censored = {**old, "claim": "e reaches 0.8 sooner", "effect_value": None, "censored": {"method": 0.4}}
    assert "difference (censored)" in pages.claims_table([censored])
    assert pages.verdict_counts([old, new]) == {"true": 1, "false": 0, "inconclusive": 0, "untestable": 0,
                                                "underpowered": 1}


def test_generator_names_missing_markers_in_one_line(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "README.md").write_text("# no markers here\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: x\n")
    assert pages.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "claims:begin" in err and "README.md" in err
    assert not (tmp_path / "docs").exists()  # nothing half-written


def test_code_cites_the_design_page_in_the_repository():
    """DESIGN.md is not in the repository; code points at docs/design.md, which is."""
    assert (ROOT / "docs" / "design.md").is_file()
    offenders = [str(p.relative_to(ROOT)) for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py")
                 if p.name != "test_docs.py" and "DESIGN.md" in p.read_text(errors="ignore")]
    assert not offenders, f"cite docs/design.md instead of DESIGN.md in {offenders}"


def test_gallery_frame_is_a_dressed_scene_and_leaves_the_env_alone():
    """The docs' env frames: a sky and a floor behind the scene (not a black void), the env's own model untouched."""
    import gymnasium as gym
    import numpy as np

    import symgym.envs  # noqa: F401
    from symgym.learn.run.gallery import dressed_frame
    from symgym.learn.run.video import configure_headless_gl

    if configure_headless_gl() is None:
        pytest.skip("no headless GL backend (Debian: libegl1 libgl1-mesa-dri, or libosmesa6)")
    env = gym.make("SymPush-v0")
    env.reset(seed=0)
    ngeom, state = env.unwrapped.model.ngeom, env.unwrapped.get_state()
    frame, how = dressed_frame(env, width=160, height=120)
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8 and "dressed" in how
    assert (frame.max(axis=-1) < 10).mean() < 0.01          # no black background
    assert frame[:, :, 2].astype(int).mean() > 40           # lit: a floor and a sky, not a silhouette
    assert env.unwrapped.model.ngeom == ngeom and np.array_equal(env.unwrapped.get_state(), state)
    env.close()


def test_tabletop_frame_is_a_camera_view():
    pytest.importorskip("pybullet")
    import gymnasium as gym
    import numpy as np

    import symgym.envs  # noqa: F401
    from symgym.learn.run.gallery import dressed_frame, tabletop_frame

    env = gym.make("TabletopStacking-v0")
    env.reset(seed=0)
    assert dressed_frame(env) is None                        # not a MuJoCo env
    frame, how = tabletop_frame(env, width=96, height=72)
    assert frame.shape == (72, 96, 3) and "RGB camera" in how
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 8   # shaded faces, not a flat colour map
    env.close()


def test_sympush_clip_shows_the_task_being_done():
    """The docs clip of SymPush is an episode that ends on success, one frame per step, at the env's real rate."""
    from symgym.learn.run.gallery import episode_clip
    from symgym.learn.run.video import configure_headless_gl

    if configure_headless_gl() is None:
        pytest.skip("no headless GL backend")
    frames, fps, actor = episode_clip("SymPush-v0", steps=50, seed=0, width=64, height=48)
    assert actor == "scripted" and fps == pytest.approx(10.0)
    assert 2 <= len(frames) < 51 and all(f.shape == (48, 64, 3) for f in frames)   # stopped early: success


def test_readme_names_every_benchmark_and_task():
    """The README's "What is in it" rows list every registered benchmark and scientific task, and nothing else."""
    import re

    from symgym.learn.bench import BENCHES
    from symgym.learn.tasks import TASKS

    readme = (ROOT / "README.md").read_text()
    for row, registry in (("| benchmarks |", BENCHES), ("| scientific tasks |", TASKS)):
        line = next(line for line in readme.splitlines() if line.startswith(row))
        named = set(re.findall(r"`([a-z0-9-]+)`", line.split(":", 1)[1]))
        assert named == set(registry), (row, sorted(set(registry) ^ named))
