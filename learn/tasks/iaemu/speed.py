"""IAEmu cost measurements: single-query speed of the emulators against the simulator, and what one training
epoch of the paper model costs at the width used and at the paper's full width (so the full 500-epoch
configuration can be priced on this machine before it is run)."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from symgym.learn.tasks.iaemu.data import PARAM_HIGH, PARAM_LOW, sample_params
from symgym.learn.tasks.iaemu.models import (
    FusedEnsemble,
    IAEmuNet,
    TrainSettings,
    ensemble_predict,
    mc_dropout_predict,
    train_network,
)
from symgym.physics.galaxies import HaloCatalogueConfig, HODParams, make_halo_catalogue, populate, radial_bins, simulate


def _cpu_seconds(fn, repeats: int) -> float:
    """Mean CPU time of ``fn()`` (process time, one thread): robust to other jobs sharing the machine."""
    with torch.no_grad():
        fn()  # warm-up
        t0 = time.process_time()
        for _ in range(repeats):
            fn()
    return (time.process_time() - t0) / repeats


def _halotools_seconds(halo_cfg: HaloCatalogueConfig, theta: np.ndarray, seed: int) -> float | None:
    """CPU time of one halotools realisation (populate + tpcf + ed_3d + ee_3d) on our halos; None without it."""
    try:
        import halotools  # noqa: F401
    except ImportError:
        return None
    from symgym.physics.galaxies_halotools import halotools_populate, halotools_statistics, to_user_supplied_catalog

    halos = make_halo_catalogue(halo_cfg, seed=seed)
    catalog = to_user_supplied_catalog(halos)
    halotools_populate(halos, HODParams.from_array(theta), seed=0, catalog=catalog)  # warm-up: lookup tables
    t0 = time.process_time()
    halotools_statistics(halotools_populate(halos, HODParams.from_array(theta), seed=1, catalog=catalog), radial_bins())
    return time.process_time() - t0


def speed_report(cfg, models, test, realistic_kwargs: dict) -> dict:
    """Single-query CPU time of the simulator (one realisation: populate + xi/omega/eta) vs each emulator."""
    theta = test["theta"][: cfg.n_speed_repeats]
    sims = {}
    for label, halo_cfg in (("training_catalogue", cfg.halo_config()),
                            ("realistic_catalogue", replace(HaloCatalogueConfig(), **realistic_kwargs))):
        halos = make_halo_catalogue(halo_cfg, seed=cfg.data_seed)
        t0 = time.process_time()
        for i, th in enumerate(theta):
            simulate(halos, HODParams.from_array(th), radial_bins(), 1, seed=i)
        seconds = (time.process_time() - t0) / len(theta)
        n_gal = int(np.mean([len(populate(halos, HODParams.from_array(th), np.random.default_rng(0))) for th in theta]))
        sims[label] = {"cpu_seconds": seconds, "n_halos": halo_cfg.n_halos, "box_size_mpc_h": halo_cfg.box_size,
                       "mean_n_galaxies": n_gal,
                       "halotools_cpu_seconds": _halotools_seconds(halo_cfg, theta[0], cfg.data_seed)}
    x = torch.as_tensor(theta[:1], dtype=torch.float32)
    fused = FusedEnsemble(models["ensemble"]).eval()
    emus = {
        f"ensemble_{cfg.ensemble_size}": _cpu_seconds(lambda: ensemble_predict(models["ensemble"], x), 200),
        f"ensemble_{cfg.ensemble_size}_fused": _cpu_seconds(lambda: fused(x), 200),
    }
    if "paper" in models:
        paper = models["paper"].mc_dropout(False)
        with torch.no_grad():  # inference graph: traced and frozen (batch-norm folded into the convolutions)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(paper, x)))
        batch = torch.as_tensor(sample_params(1000, seed=5), dtype=torch.float32)
        emus.update({
            "paper_mean_and_aleatoric_torchscript": _cpu_seconds(lambda: frozen(x), 200),
            "paper_mean_and_aleatoric_eager": _cpu_seconds(lambda: paper(x), 200),
            f"paper_mc_dropout_{cfg.mc_passes}_passes":
                _cpu_seconds(lambda: mc_dropout_predict(paper, x, cfg.mc_passes), 50),
            "paper_torchscript_batched_per_query": _cpu_seconds(lambda: frozen(batch), 3) / len(batch)})
    realistic = sims["realistic_catalogue"]
    out = {
        "simulator": sims,
        "emulator_cpu_seconds_per_query": emus,
        "speedup_vs_realistic": {k: realistic["cpu_seconds"] / v for k, v in emus.items()},
        "speedup_vs_training_catalogue": {k: sims["training_catalogue"]["cpu_seconds"] / v for k, v in emus.items()},
        "note": "CPU (process) time, one thread, one parameter set per query unless 'batched'; simulator = populate "
                "+ xi/omega/eta of one realisation; all measured in this run on a shared 2-core machine",
    }
    if realistic["halotools_cpu_seconds"] is not None:
        out["speedup_vs_realistic_halotools"] = {k: realistic["halotools_cpu_seconds"] / v for k, v in emus.items()}
    return out


def paper_epoch_cost(cfg, fx: np.ndarray, fy: np.ndarray, vx: np.ndarray, vy: np.ndarray, widths=(None, 1.0),
                     epochs: int = 1, full_epochs: int = 500) -> dict:
    """CPU seconds per training epoch of the paper model on the real training split, at ``cfg.paper_width``
    (``None``) and at each other width, with the projected cost of ``full_epochs`` epochs per seed."""
    out = {}
    for width in widths:
        width = cfg.paper_width if width is None else width
        settings = TrainSettings(epochs=epochs, batch_size=cfg.paper_batch_size, lr=cfg.paper_lr)
        t0 = time.process_time()
        train_network(IAEmuNet(PARAM_LOW, PARAM_HIGH, fy.shape[-1], width=width), fx, fy, vx, vy, settings,
                      seed=0, kind="paper")
        per_epoch = (time.process_time() - t0) / epochs
        out[f"width_{width:g}"] = {"cpu_s_per_epoch": per_epoch,
                                  f"projected_cpu_s_per_seed_{full_epochs}_epochs": per_epoch * full_epochs,
                                  f"projected_cpu_s_per_seed_{cfg.paper_epochs}_epochs": per_epoch * cfg.paper_epochs}
    out["n_fit_sets"] = len(fx)
    out["note"] = (f"process time, one thread, {epochs} epoch(s) timed on this run's fit split ({len(fx)} parameter "
                   "sets; an epoch's cost grows in proportion) on a shared 2-core machine; the projections are what "
                   "one seed of the paper model would cost at that width")
    return out
