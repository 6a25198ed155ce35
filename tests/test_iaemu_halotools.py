"""The ``iaemu-halotools`` cross-check task: one line without the extra; with halotools, it agrees."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from symgym.agents.registry import MissingExtraError


def test_without_halotools_the_task_names_the_extra(monkeypatch, tmp_path):
    from symgym.learn.tasks.iaemu import halotools as iaemu_halotools

    monkeypatch.setitem(sys.modules, "halotools", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"symgym\[halotools\]"):
        iaemu_halotools.run(quick=True, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_without_halotools_exits_nonzero_with_one_line(tmp_path):
    try:
        import halotools  # noqa: F401
        pytest.skip("halotools is installed; the missing-extra path is covered by the test above")
    except ImportError:
        pass
    out = subprocess.run([sys.executable, "-m", "symgym.learn.cli", "task", "iaemu-halotools", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "symgym[halotools]" in out.stderr and "Traceback" not in out.stderr


def test_z_scores_flag_a_shifted_simulator(monkeypatch):
    """The populate comparison must be able to fail: scale our satellites' radii and z blows up."""
    pytest.importorskip("halotools")
    from symgym.learn.tasks.iaemu import halotools as ht
    from symgym.physics import galaxies
    from symgym.physics.galaxies_halotools import to_user_supplied_catalog

    halos = galaxies.make_halo_catalogue(ht.QUICK.halo_config(), seed=0)
    catalog = to_user_supplied_catalog(halos)
    edges = galaxies.radial_bins()
    params = galaxies.HODParams(log_m1=13.0)  # many satellites, so one-halo xi is sensitive to their radii
    fair = ht.compare_populate(halos, catalog, params, 4, edges, seed=1)
    real_nfw = galaxies._nfw_radii
    monkeypatch.setattr(galaxies, "_nfw_radii", lambda c, rng: 3.0 * real_nfw(c, rng))
    shifted = ht.compare_populate(halos, catalog, params, 4, edges, seed=1)
    z_fair, z_shifted = np.abs(fair["z"]["xi"]), np.abs(shifted["z"]["xi"])
    assert np.mean(z_fair < 3) > 0.8
    assert np.max(z_shifted) > 10 and np.mean(z_shifted > 3) > 0.2


def test_quick_cross_check_agrees(tmp_path):
    pytest.importorskip("halotools")
    from symgym.learn.tasks import run_task

    res = run_task("iaemu-halotools", quick=True, out_dir=tmp_path)
    assert res["occupation_max_rel_diff"] < 1e-6
    est = res["estimators_on_identical_galaxies"]
    assert est["max_rel_diff_1_plus_xi"] < 1e-9 < est["max_rel_diff_1_plus_xi_raw"] and est["max_abs_diff_omega"] < 1e-5 and est["max_abs_diff_eta"] < 1e-5
    for kind, ratio in res["populate"]["halotools_over_ours_counts"].items():
        assert ratio == pytest.approx(1.0, rel=0.08), kind
    assert res["populate"]["agreement"]["xi"]["within_3sigma"] > 0.8
    assert json.loads((tmp_path / "iaemu-halotools.json").read_text())["halotools_version"]
    assert (tmp_path / "iaemu-halotools.png").stat().st_size > 10_000
