"""``symgym bench sac-layers``: what an equivariant SAC network costs against an MLP of the same parameter count.

Issue #28 asks for equi-sac at <= 1.5x plain SAC's wall time per step at matched parameters. This bench times the
networks alone, forward + backward at SAC's batch (256), one torch thread, interleaved rounds
(:func:`symgym.learn.bench.timing.interleaved`), for the shape equi-sac's critic body has on SymPush: a planar
observation (2 trivial + 4 standard-rep D4 fields, 10 channels) -> 24 regular D4 fields -> 24 -> 1 trivial:

* ``mlp``: 10 -> 64 -> 64 -> 1, about the same parameter count (the baseline, ratio 1);
* ``escnn``: escnn's ``Linear`` layers in training mode (the dense matrix expanded from the basis on every call);
* ``irrep``: :class:`symgym.equivariance.irrep_linear.IrrepLinear`, the same function parametrised in the irrep
  basis (no expansion, block matmuls);
* ``dense-192``: plain ``nn.Linear`` layers of escnn's expanded shapes (10 -> 192 -> 192 -> 1) with no expansion:
  the cost of the dense matmuls alone, a floor for any implementation that multiplies by escnn's dense matrices.

The ratios say where matched cost is out of reach on this CPU: a regular-field layer with an MLP layer's weights
has 8x its channels, and at these sizes the kernels' passes over the activations, not the multiply-adds, set the
time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BATCH = 256
FIELDS = 24


def networks(fields: int = FIELDS, mlp_width: int = 64):
    """name -> torch module taking a (B, 10) tensor; and the parameter count of each."""
    import torch
    from escnn import group, gspaces
    from escnn import nn as enn

    from symgym.equivariance.irrep_linear import IrrepLinear

    g = group.dihedral_group(4)
    space = gspaces.no_base_space(g)
    t_in = enn.FieldType(space, [g.trivial_representation] * 2 + [g.irrep(1, 1)] * 4)
    t_hidden = enn.FieldType(space, [g.regular_representation] * fields)
    t_out = enn.FieldType(space, [g.trivial_representation])

    class Escnn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = enn.SequentialModule(enn.Linear(t_in, t_hidden), enn.ReLU(t_hidden),
                                            enn.Linear(t_hidden, t_hidden), enn.ReLU(t_hidden),
                                            enn.Linear(t_hidden, t_out)).train()

        def forward(self, x):
            return self.net(enn.GeometricTensor(x, t_in)).tensor

    def plain(widths):
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1])

    nets = {"mlp": plain([t_in.size, mlp_width, mlp_width, 1]),
            "escnn": Escnn(),
            "irrep": torch.nn.Sequential(IrrepLinear(t_in, t_hidden), torch.nn.ReLU(),
                                         IrrepLinear(t_hidden, t_hidden), torch.nn.ReLU(),
                                         IrrepLinear(t_hidden, t_out)),
            "dense-192": plain([t_in.size, t_hidden.size, t_hidden.size, 1])}
    params = {k: sum(p.numel() for p in m.parameters() if p.requires_grad) for k, m in nets.items()}
    return nets, params, t_in.size


def run(out_dir: Path = Path("results"), quick: bool = False, seed: int = 0) -> dict[str, Any]:
    import torch

    from symgym.learn.bench.timing import interleaved

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    nets, params, n_in = networks()
    x = torch.randn(BATCH, n_in)
    calls = 5 if quick else 200

    def round_of(net):
        def work():
            for _ in range(calls):
                for p in net.parameters():
                    p.grad = None
                net(x).square().mean().backward()
        return work

    timing = interleaved({k: round_of(m) for k, m in nets.items()}, baseline="mlp", rounds=5 if quick else 9,
                         warmup=1, units=calls, unit="forward+backward calls at batch 256")
    ratios = {k: {"cpu": timing["cpu_ratios"][k]["median"], "wall": timing["ratios"][k]["median"]}
              for k in nets if k != "mlp"}
    result = {"batch": BATCH, "fields": FIELDS, "parameters": params, "ratio_to_mlp": ratios, "timing": timing,
              "target": "equi-sac <= 1.5x sac per env step at matched parameters (issue #28.3)"}
    result["plot"] = str(plot(result, Path(out_dir) / "sac-layers.png"))
    return result


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symgym.learn.io import save_figure

    names = list(result["ratio_to_mlp"])
    fig, ax = plt.subplots(figsize=(6, 3))
    for i, name in enumerate(names):
        per_round = result["timing"]["cpu_ratios"][name]["per_round"]
        ax.scatter([i] * len(per_round), per_round, color="C0", s=12)
        ax.plot([i - 0.3, i + 0.3], [np.median(per_round)] * 2, color="k")
    ax.axhline(1.5, color="C3", ls="--", lw=1, label="issue #28 target for a whole SAC step")
    ax.set_xticks(range(len(names)), [f"{n}\n{result['parameters'][n]:,} params" for n in names])
    ax.set_ylabel("CPU time / MLP's")
    ax.set_title(f"critic-shaped nets, forward+backward, batch {result['batch']}, 1 thread "
                 f"(MLP {result['parameters']['mlp']:,} params)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
