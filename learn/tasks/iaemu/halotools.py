"""Task ``iaemu-halotools``: the IAEmu simulator cross-checked against halotools on the same halos.

Needs the optional extra ``symgym[halotools]`` (never installed by default or in CI; without it the
task stops with one line naming the extra). Our halos go to halotools as a ``UserSuppliedHaloCatalog``
(:mod:`physics.galaxies_halotools`), and three things are compared:

1. **Occupation**: halotools' Zheng07 mean central and satellite numbers against ours on a mass grid
   (must agree to rounding).
2. **Estimators on identical galaxies**: halotools' ``tpcf`` (natural estimator, analytic randoms),
   ``ed_3d`` and ``ee_3d`` against our xi, omega and eta of the same catalogue (must agree to rounding
   once halotools' N^2 pair normalisation is converted to our N (N - 1); both are reported).
3. **Populate, statistically**: at several HOD parameter sets, ``n_realisations`` halotools mocks
   and as many of ours on the same halos, each measured with our estimator. The two simulators
   differ by random draws only, so per radial bin the difference of the means over its standard error
   should look like a standard normal: we report the fraction of bins with |z| < 2 and < 3 and the
   mean z^2 (1 for agreement), and galaxy counts.

Also the CPU time of one realisation (populate + statistics) of each simulator on these halos.
Writes ``results/iaemu-halotools.json`` (via ``symgym task iaemu-halotools``) and ``results/iaemu-halotools.png``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from symgym.agents.registry import require
from symgym.learn.io import save_figure
from symgym.learn.tasks.iaemu.data import sample_params
from symgym.physics.galaxies import (
    STAT_NAMES,
    HaloCatalogueConfig,
    HODParams,
    correlation_functions,
    make_halo_catalogue,
    mean_occupation,
    populate,
    radial_bins,
)

#: agreement criterion for the populate comparison: at least this fraction of bins within 3 sigma,
#: and a mean z^2 below MAX_MEAN_Z2 (bins are correlated, so a chi^2 p-value would overstate precision)
MIN_WITHIN_3SIGMA = 0.95
MAX_MEAN_Z2 = 1.5


@dataclass(frozen=True)
class CrossCheckConfig:
    n_params: int = 6  # the default HOD plus Latin-hypercube draws from the IAEmu prior box
    n_realisations: int = 8
    n_halos: int = 10000  # the IAEmu training catalogue
    box_size: float = 100.0

    def __post_init__(self) -> None:
        if self.n_params < 1:
            raise ValueError(f"n_params must be >= 1, got {self.n_params}")
        if self.n_realisations < 2:
            raise ValueError(f"n_realisations must be >= 2 for a standard error, got {self.n_realisations}")

    def halo_config(self) -> HaloCatalogueConfig:
        return HaloCatalogueConfig().resized(self.n_halos, self.box_size)


QUICK = CrossCheckConfig(n_params=2, n_realisations=3, n_halos=3000, box_size=66.9)


def _stats(galaxies, edges) -> tuple[np.ndarray, np.ndarray]:
    out = correlation_functions(galaxies, edges)
    return np.array([out[k] for k in STAT_NAMES]), out["dd"]


def compare_populate(halos, catalog, params: HODParams, n_realisations: int, edges: np.ndarray,
                     seed: int) -> dict[str, Any]:
    """``n_realisations`` mocks from each simulator on the same halos, measured with the same estimator."""
    from symgym.physics.galaxies_halotools import halotools_populate

    sims: dict[str, dict[str, list]] = {"ours": {"stats": [], "dd": [], "n_cen": [], "n_sat": [], "cpu_s": []},
                                        "halotools": {"stats": [], "dd": [], "n_cen": [], "n_sat": [], "cpu_s": []}}
    rng = np.random.default_rng(seed)
    for k in range(n_realisations):
        for name in sims:
            t0 = time.process_time()
            if name == "ours":
                g = populate(halos, params, rng)
            else:
                g = halotools_populate(halos, params, seed=seed * 1000 + k, catalog=catalog)
            stats, dd = _stats(g, edges)
            rec = sims[name]
            rec["cpu_s"].append(time.process_time() - t0)
            rec["stats"].append(stats)
            rec["dd"].append(dd)
            rec["n_cen"].append(int(g.is_central.sum()))
            rec["n_sat"].append(int((~g.is_central).sum()))
    expected_cen, expected_sat = (float(n.sum()) for n in mean_occupation(halos.log_mass, params))
    ours, theirs = np.array(sims["ours"]["stats"]), np.array(sims["halotools"]["stats"])
    filled = (np.min(sims["ours"]["dd"], 0) > 0) & (np.min(sims["halotools"]["dd"], 0) > 0)
    se = np.sqrt(ours.var(0, ddof=1) / len(ours) + theirs.var(0, ddof=1) / len(theirs))
    z = (theirs.mean(0) - ours.mean(0)) / np.maximum(se, 1e-12)
    z = z[:, filled]
    return {
        "params": params.as_dict(),
        "n_centrals": {**{name: float(np.mean(rec["n_cen"])) for name, rec in sims.items()}, "expected": expected_cen},
        "n_satellites": {**{name: float(np.mean(rec["n_sat"])) for name, rec in sims.items()}, "expected": expected_sat},
        "cpu_seconds_per_realisation": {name: float(np.median(rec["cpu_s"])) for name, rec in sims.items()},
        "mean": {"ours": ours.mean(0).tolist(), "halotools": theirs.mean(0).tolist()},
        "standard_error": {"ours": (ours.std(0, ddof=1) / np.sqrt(len(ours))).tolist(),
                           "halotools": (theirs.std(0, ddof=1) / np.sqrt(len(theirs))).tolist()},
        "filled_bins": filled.tolist(),
        "z": {stat: z[s].tolist() for s, stat in enumerate(STAT_NAMES)},
    }


def compare_estimators(halos, params: HODParams, edges: np.ndarray, seed: int) -> dict[str, float]:
    """Largest difference between halotools' and our xi, omega, eta on one and the same catalogue."""
    from symgym.physics.galaxies_halotools import halotools_statistics, xi_in_our_normalisation

    g = populate(halos, params, np.random.default_rng(seed))
    ours = correlation_functions(g, edges)
    t0 = time.process_time()
    theirs = halotools_statistics(g, edges)
    seconds = time.process_time() - t0
    ok = ours["dd"] > 0
    raw_xi = np.asarray(theirs["xi"])
    theirs["xi"] = xi_in_our_normalisation(raw_xi, len(g))
    out = {f"max_abs_diff_{k}": float(np.max(np.abs(np.asarray(theirs[k])[ok] - ours[k][ok]))) for k in STAT_NAMES}
    out["max_rel_diff_1_plus_xi"] = float(np.max(np.abs((1 + theirs["xi"][ok]) / (1 + ours["xi"][ok]) - 1)))
    # before the N / (N - 1) conversion: the size of the normalisation convention itself
    out["max_rel_diff_1_plus_xi_raw"] = float(np.max(np.abs((1 + raw_xi[ok]) / (1 + ours["xi"][ok]) - 1)))
    out["n_galaxies"] = len(g)
    out["halotools_estimators_cpu_s"] = seconds
    return out


def compare_occupation(params_list: list[HODParams]) -> float:
    """Largest relative difference of the mean central/satellite occupations on a mass grid."""
    from symgym.physics.galaxies_halotools import halotools_mean_occupation

    log_mass = np.linspace(11.0, 15.0, 161)
    worst = 0.0
    for p in params_list:
        for ours, theirs in zip(mean_occupation(log_mass, p), halotools_mean_occupation(log_mass, p)):
            worst = max(worst, float(np.max(np.abs(theirs - ours) / np.maximum(np.abs(ours), 1e-12))))
    return worst


def plot(path: Path, r: np.ndarray, cases: list[dict[str, Any]]) -> Path:
    import matplotlib.pyplot as plt

    shown = cases[: min(3, len(cases))]
    fig, axes = plt.subplots(len(STAT_NAMES), len(shown) + 1, figsize=(4.2 * (len(shown) + 1), 9), squeeze=False)
    for c, case in enumerate(shown):
        for s, stat in enumerate(STAT_NAMES):
            ax = axes[s, c]
            for name, colour, shift in (("ours", "C0", 0.97), ("halotools", "C3", 1.03)):
                ax.errorbar(r * shift, np.array(case["mean"][name][s]), 2 * np.array(case["standard_error"][name][s]),
                            color=colour, marker="o", ms=3, lw=1, capsize=2, label=f"{name} (mean, 2 s.e.)")
            ax.set_xscale("log")
            if s == 0:
                ax.set_yscale("log")
                p = case["params"]
                ax.set_title(f"logMmin={p['log_m_min']:.2f} mu_cen={p['mu_cen']:.2f} mu_sat={p['mu_sat']:.2f}",
                             fontsize=9)
            else:
                ax.axhline(0.0, color="grey", lw=0.5)
            ax.set_ylabel(f"{stat}(r)")
            if s == len(STAT_NAMES) - 1:
                ax.set_xlabel("r [Mpc/h]")
    axes[0, 0].legend(fontsize=7)
    grid = np.linspace(-4, 4, 200)
    for s, stat in enumerate(STAT_NAMES):
        ax = axes[s, -1]
        z = np.concatenate([case["z"][stat] for case in cases])
        ax.hist(z, bins=np.linspace(-4, 4, 17), density=True, color="C2", alpha=0.7, label=f"{stat}: z per bin")
        ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), color="k", lw=1, label="N(0, 1)")
        ax.legend(fontsize=7)
    axes[-1, -1].set_xlabel("(halotools - ours) / s.e.")
    fig.suptitle("IAEmu simulator vs halotools on the same halos (same estimator for both)")
    return save_figure(fig, path)


def run(quick: bool = False, seed: int = 0, out_dir: Path = Path("results"),
        config: CrossCheckConfig | None = None) -> dict[str, Any]:
    """Cross-check occupation, estimators and populate against halotools; write JSON data and a PNG."""
    halotools = require("halotools")
    from symgym.physics.galaxies_halotools import to_user_supplied_catalog

    cfg = config or (QUICK if quick else CrossCheckConfig())
    halo_cfg = cfg.halo_config()
    halos = make_halo_catalogue(halo_cfg, seed=seed)
    catalog = to_user_supplied_catalog(halos)
    edges = radial_bins()
    params = [HODParams()] + [HODParams.from_array(t) for t in sample_params(cfg.n_params - 1, seed=seed + 77)]
    cases = []
    for i, p in enumerate(params):
        cases.append(compare_populate(halos, catalog, p, cfg.n_realisations, edges, seed=seed * 100 + i + 1))
        print(f"[iaemu-halotools] case {i}: n_gal ours {cases[-1]['n_centrals']['ours'] + cases[-1]['n_satellites']['ours']:.0f}"
              f" halotools {cases[-1]['n_centrals']['halotools'] + cases[-1]['n_satellites']['halotools']:.0f}", flush=True)
    agreement = {}
    for stat in STAT_NAMES:
        z = np.concatenate([np.asarray(c["z"][stat]) for c in cases])
        agreement[stat] = {"n_bins": int(len(z)), "within_2sigma": float(np.mean(np.abs(z) < 2)),
                           "within_3sigma": float(np.mean(np.abs(z) < 3)), "mean_z2": float(np.mean(z**2)),
                           "mean_z": float(np.mean(z))}
        agreement[stat]["agrees"] = bool(agreement[stat]["within_3sigma"] >= MIN_WITHIN_3SIGMA
                                         and agreement[stat]["mean_z2"] <= MAX_MEAN_Z2)
    count_ratio = {kind: float(np.mean([c[kind]["halotools"] / max(c[kind]["ours"], 1.0) for c in cases]))
                   for kind in ("n_centrals", "n_satellites")}
    estimators = compare_estimators(halos, HODParams(mu_cen=0.6, mu_sat=0.7), edges, seed=seed + 5)
    cpu = {name: float(np.median([c["cpu_seconds_per_realisation"][name] for c in cases]))
           for name in ("ours", "halotools")}
    r = np.sqrt(edges[1:] * edges[:-1])
    return {
        "config": asdict(cfg),
        "halotools_version": halotools.__version__,
        "halo_catalogue": asdict(halo_cfg),
        "radial_bin_centres_mpc_h": r.tolist(),
        "occupation_max_rel_diff": compare_occupation(params),
        "estimators_on_identical_galaxies": estimators,
        "populate": {"criterion": f"per statistic: >= {MIN_WITHIN_3SIGMA:.0%} of bins within 3 s.e. and mean z^2 <= "
                                  f"{MAX_MEAN_Z2}",
                     "agreement": agreement, "halotools_over_ours_counts": count_ratio, "cases": cases},
        "cpu_seconds_per_realisation": cpu,
        "figure": str(plot(Path(out_dir) / "iaemu-halotools.png", r, cases)),
    }
