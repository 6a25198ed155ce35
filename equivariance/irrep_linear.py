"""An equivariant linear map parametrised and applied in the irrep (Fourier) basis: escnn's function, no expansion.

escnn's ``Linear`` stores basis coefficients and expands them into a dense ``(N_out, N_in)`` matrix on every
training forward, then multiplies by that dense matrix: the expansion is overhead, and the dense matmul does
several times the multiply-adds the weights need (numbers below). By Schur's lemma, between fields that escnn
writes as ``Q (psi_1 + psi_2 + ...) Q^-1`` an equivariant map is, in the irrep basis, one free matrix ``W_psi``
of shape ``(m_out(psi), m_in(psi))`` per irrep type ``psi``, acting as ``W_psi (x) I_dim(psi)`` on the
multiplicity-by-component array of that irrep (``m`` counts the copies of ``psi`` over all fields). That holds
when the endomorphisms of ``psi`` are the scalars (real-type irreps: every irrep of D_n and O(2), the 1-dim irreps
of C_n); complex-type irreps (the 2-dim irreps of C_n, n >= 3, and of SO(2)) have a 2-dim endomorphism space and
are rejected with a ``ValueError`` rather than silently over-constrained.
The parameters are exactly escnn's count, ``sum_psi m_out(psi) m_in(psi)`` plus one bias per trivial irrep of
the output.

Cost, per sample, for 24 D4 regular fields to 24 (N = 192 channels, 4,608 weights; D4's regular field holds
the four 1-dim irreps once and the 2-dim irrep twice, so m = 24 for a 1-dim irrep and 48 for the 2-dim one):

* escnn: a 192 x 192 dense matmul, 36,864 multiply-adds, 8x the 4,608 of an MLP layer with the same weights;
  plus, every training forward, the expansion (a 4,608 x 64 contraction, 294,912 multiply-adds) and its backward.
* here: the blocks cost ``sum_psi m_out m_in dim(psi)`` = 4 x 24 x 24 + 48 x 48 x 2 = 6,912, and the two changes
  of basis (one 8 x 8 matrix per field, in and out) 2 x 24 x 64 = 3,072: 9,984 in all, 2.2x the MLP, 0.27x
  escnn, and nothing to expand. A field whose change of basis is the identity (trivial fields, D4's standard
  2-D rotation field) skips it.

The module takes and returns plain tensors in the fields' own (spatial) basis, so pointwise ReLUs between layers
act exactly as on escnn's regular fields. Inside, an activation is ``(rows, batch)``, every irrep component of
every copy a row: fields with the same representation change basis together, ``c`` copies of an ``n``-dim
representation being one ``(n, n) @ (n, c*B)`` product (never a block-diagonal ``(c*n, c*n)`` one; and this
orientation, as MKL took ~4x longer for ``(c*B, n) @ (n, n)`` on this machine); the rows come out ordered so that
each ``W_psi`` multiplies a view, irreps with equal dim and multiplicities sharing one bmm; the products are
concatenated in the output's row order and changed back. Index tensors and change-of-basis matrices are
non-persistent buffers (derived from the field types), so ``state_dict`` holds only the weights and bias.

FLOPs are not wall time at these sizes. Measured on this project's loaded 2-core CPU box (one torch thread, batch
256, forward + backward, median CPU time) for 10 -> 24 regular -> 24 regular -> 1 over D4 with ReLUs: this
module 4.4x an MLP of equal parameter count, escnn's training forward 7.6x, and escnn's dense matmuls without
the expansion 3.9x. Each layer runs some 30 small kernels (two changes of basis, two transposing copies, a GEMM per
irrep group and component, their backwards), each a full pass over the activations, so the 2.2x FLOP ratio is
not reached: this removes escnn's expansion, not yet the dense matmul's cost.

Initialisation is He's rule applied in the irrep basis: each output component of ``psi`` is a sum of
``m_in(psi)`` inputs, so ``W_psi ~ N(0, 2 / m_in(psi))`` and the bias starts at zero. escnn's changes of basis
are orthogonal, so for inputs spread evenly over the irreps (iid channels) an output channel of a regular field
gets variance ``2 E[x^2]``, as a Kaiming-initialised ``nn.Linear`` does (checked in tests/test_irrep_linear.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from escnn import nn as enn
from torch import nn

__all__ = ["IrrepLinear"]

#: relative Frobenius residual above which an escnn matrix is not block-structured in the irrep basis
_RESIDUAL_TOL = 1e-5

Irrep = tuple  # escnn's irrep id, e.g. (1, 1) for D4's 2-dim irrep


@dataclass
class _Fields:
    """The fields of one representation in a field type: ``c`` copies of an ``n``-dim representation."""

    starts: list[int]  # first spatial channel of each field
    q: np.ndarray  # change of basis: field = q @ (irrep components in rep.irreps order)
    comps: dict[Irrep, list[list[int]]]  # psi -> per occurrence of psi in the rep, its dim(psi) component indices

    @property
    def c(self) -> int:
        return len(self.starts)

    @property
    def n(self) -> int:
        return len(self.q)

    @property
    def identity(self) -> bool:
        return np.allclose(self.q, np.eye(self.n), atol=1e-12)

    def occ(self, psi: Irrep) -> int:
        return len(self.comps.get(psi, ()))


@dataclass
class _Side:
    """A field type regrouped by representation (groups in order of first appearance, fields in order within).

    The *grouped irrep basis* lists group after group, field after field, each field's components in
    ``rep.irreps`` order. The copies of an irrep ``psi`` are ordered (group, occurrence in the rep, field): that
    is the column order of ``W_psi`` on the input side and its row order on the output side.
    """

    size: int
    groups: list[_Fields]

    def offsets(self) -> list[int]:
        return list(np.cumsum([0] + [g.c * g.n for g in self.groups])[:-1])

    def irreps(self) -> list[Irrep]:
        seen: dict[Irrep, None] = {}
        for g in self.groups:
            seen.update(dict.fromkeys(g.comps))
        return list(seen)

    def index(self, psi: Irrep) -> np.ndarray:
        """``(dim psi, m)`` positions of the copies of ``psi`` in the grouped irrep basis."""
        cols = [[off + f * g.n + comp for comp in occ] for g, off in zip(self.groups, self.offsets())
                for occ in g.comps.get(psi, ()) for f in range(g.c)]
        return np.asarray(cols, dtype=np.int64).reshape(-1, len(cols[0]) if cols else 0).T

    def to_grouped_irreps(self) -> np.ndarray:
        """``T`` with ``u = T @ x``: spatial channels -> grouped irrep basis (float64)."""
        t = np.zeros((self.size, self.size))
        for g, off in zip(self.groups, self.offsets()):
            qinv = np.linalg.inv(g.q)
            for f, start in enumerate(g.starts):
                t[off + f * g.n:off + (f + 1) * g.n, start:start + g.n] = qinv
        return t


def _side(ftype: enn.FieldType) -> _Side:
    group = ftype.fibergroup
    starts = np.cumsum([0] + [r.size for r in ftype.representations])
    groups: dict[str, _Fields] = {}
    for f, rep in enumerate(ftype.representations):
        if rep.name not in groups:
            comps: dict[Irrep, list[list[int]]] = {}
            p = 0
            for psi in rep.irreps:
                d = group.irrep(*psi).size
                comps.setdefault(tuple(psi), []).append(list(range(p, p + d)))
                p += d
            groups[rep.name] = _Fields([], np.asarray(rep.change_of_basis, dtype=float), comps)
        groups[rep.name].starts.append(int(starts[f]))
    return _Side(int(ftype.size), list(groups.values()))


def _check_real_irreps(ftype: enn.FieldType, side: _Side) -> None:
    group = ftype.fibergroup
    for psi in side.irreps():
        irrep = group.irrep(*psi)
        k = int(irrep.endomorphism_basis().shape[0])
        if k != 1:
            raise ValueError(f"IrrepLinear supports only irreps whose endomorphisms are scalars; {group.name} irrep "
                             f"{irrep.name} is {irrep.type}-type with a {k}-dim endomorphism space")


@dataclass
class _Bucket:
    """Irreps sharing (dim, m_in, m_out): their weights are one ``(k, m_out, m_in)`` parameter, one bmm per ``j``."""

    psis: list[Irrep]
    d: int
    m_in: int
    m_out: int
    trivial: bool  # the trivial irrep, alone in its bucket (it carries the bias)
    weight: int | None = None  # index into IrrepLinear.weights; None: the output's trivial irreps carry bias only


def _rows(side: _Side, buckets: list[_Bucket]) -> list[list[tuple[int, int, Irrep, int]]]:
    """Per group, its irrep rows in layer order ``(bucket, j, psi, occurrence)``: a bucket's rows are adjacent,
    and so are, for each component ``j``, its irreps' copies, so that ``W @ z_j`` reads a ``(k, m, B)`` view."""
    return [[(b, j, psi, o) for b, bucket in enumerate(buckets) for j in range(bucket.d) for psi in bucket.psis
             for o in range(g.occ(psi))] for g in side.groups]


def _transposition(c: int, n: int) -> np.ndarray:
    """Row order ``(component, field)`` of ``c`` fields of size ``n`` stored ``(field, component)``."""
    return np.arange(c * n).reshape(c, n).T.reshape(-1)


class IrrepLinear(nn.Module):
    """``f(rho_in(g) x) = rho_out(g) f(x)`` with one free ``(m_out, m_in)`` matrix per real-type irrep.

    Args:
        in_type, out_type: escnn ``FieldType`` s over the same group (any gspace; only the fibre representations
            matter).
        bias: learn one bias per trivial irrep of ``out_type`` (as escnn's ``Linear``); there is none when the
            output has no trivial irrep.

    ``weights[k]`` stacks the blocks of the irreps ``irreps[k]`` (irreps with equal dim and multiplicities share
    one batched product), ``(len(irreps[k]), m_out, m_in)``; :meth:`blocks` names them one by one. Inside, an
    activation is ``(rows, batch)``: each irrep component of each copy is a row, contiguous along the batch, so
    every product is one GEMM on views. The output is therefore a transposed view (a ``(B, N_out)`` tensor with
    unit stride along the batch): the next ``IrrepLinear``, after a pointwise ReLU (which keeps strides), reads
    its rows contiguously, where a row-major input costs a strided transpose (~5x slower at 256 x 192 here).
    Call ``.contiguous()`` where a consumer needs row-major memory.
    """

    def __init__(self, in_type: enn.FieldType, out_type: enn.FieldType, bias: bool = True):
        super().__init__()
        if in_type.fibergroup != out_type.fibergroup:
            raise ValueError(f"in_type is over {in_type.fibergroup.name} but out_type is over "
                             f"{out_type.fibergroup.name}")
        group = in_type.fibergroup
        sin, sout = _side(in_type), _side(out_type)
        _check_real_irreps(in_type, sin)
        _check_real_irreps(out_type, sout)
        self.in_type, self.out_type, self._in, self._out = in_type, out_type, sin, sout
        self.in_size, self.out_size = sin.size, sout.size
        trivial = tuple(group.trivial_representation.irreps[0])
        in_irreps = set(sin.irreps())

        def m(side: _Side, psi: Irrep) -> int:
            return sum(g.occ(psi) * g.c for g in side.groups)

        buckets: dict[tuple, _Bucket] = {}
        for psi in sout.irreps():
            if psi in in_irreps or (psi == trivial and bias):
                key = (group.irrep(*psi).size, m(sin, psi), m(sout, psi), psi == trivial)
                buckets.setdefault(key, _Bucket([], *key)).psis.append(psi)
        self._buckets = list(buckets.values())
        self.weights = nn.ParameterList()
        for b in self._buckets:
            if b.m_in:
                b.weight = len(self.weights)
                self.weights.append(nn.Parameter(torch.randn(len(b.psis), b.m_out, b.m_in) * (2.0 / b.m_in) ** 0.5))
        self.irreps = tuple(tuple(b.psis) for b in self._buckets if b.weight is not None)
        if bias and trivial in sout.irreps():
            self.bias = nn.Parameter(torch.zeros(m(sout, trivial)))
        else:
            self.register_parameter("bias", None)
        self._plan_input(sin)
        self._plan_output(sout)

    # ------------------------------------------------------------------ plans (index buffers, changes of basis)
    def _plan_input(self, side: _Side) -> None:
        """Gather each group's channels as rows ``(component, field)``, change basis to its active irrep rows, and
        split those rows once into the pieces the buckets read (one split, not a slice per piece: a slice's
        backward zero-fills a gradient the size of the whole input)."""
        buckets = [b for b in self._buckets if b.weight is not None]
        gather, self._in_groups = [], []  # _in_groups: (rows per field, cob buffer or None, c)
        first: dict[tuple, tuple[int, int]] = {}  # (bucket, j, psi, slot) -> (first row, occurrences)
        for gi, (g, rows) in enumerate(zip(side.groups, _rows(side, buckets))):
            if not rows:
                continue
            comps = [g.comps[psi][o][j] for _, j, psi, o in rows]
            slot = len(self._in_groups)
            if g.identity:  # gather the active components directly
                gather += [g.starts[f] + comp for comp in comps for f in range(g.c)]
                name = None
            else:  # gather every component, then one (active rows, n) change of basis
                gather += [g.starts[f] + comp for comp in range(g.n) for f in range(g.c)]
                name = f"_qin{gi}"
                self.register_buffer(name, _as_tensor(np.linalg.inv(g.q)[comps]), persistent=False)
            self._in_groups.append((len(comps) if g.identity else g.n, name, g.c))
            for r, (bi, j, psi, o) in enumerate(rows):
                if o == 0:
                    first[(bi, j, psi, slot)] = (r, g.occ(psi))
        self._in_mode = self._index_plan("_gather", np.asarray(gather), side.size, side.groups, inverse=False)
        wanted, specs = [], []  # wanted: (slot, first row, rows, key)
        for bi, b in enumerate(buckets):
            keys = [key for key in first if key[0] == bi]
            slots = sorted({key[3] for key in keys})
            if len(slots) == 1:  # one group holds the bucket: its rows are one (dim, k, m_in, B) view
                wanted.append((slots[0], min(first[k][0] for k in keys), sum(first[k][1] for k in keys), (bi,)))
                specs.append(("view", (bi,)))
            else:  # an irrep spread over groups: concatenate its copies (group order), stack the irreps
                per_j = []
                for j in range(b.d):
                    per_psi = []
                    for psi in b.psis:
                        parts = [(bi, j, psi, s) for s in slots if (bi, j, psi, s) in first]
                        wanted += [(key[3], *first[key], key) for key in parts]
                        per_psi.append(parts)
                    per_j.append(per_psi)
                specs.append(("stack", per_j))
        self._in_splits, chunk_of = [], {}
        for slot in range(len(self._in_groups)):
            mine = sorted((r0, n, key) for s, r0, n, key in wanted if s == slot)
            assert [r0 for r0, _, _ in mine] == list(np.cumsum([0] + [n for _, n, _ in mine])[:-1])
            self._in_splits.append([n for _, n, _ in mine])
            chunk_of.update({key: (slot, k) for k, (_, _, key) in enumerate(mine)})
        self._in_blocks = [("view", chunk_of[spec[1]]) if spec[0] == "view" else
                           ("stack", [[[chunk_of[key] for key in parts] for parts in per_psi] for per_psi in spec[1]])
                           for spec in specs]

    def _plan_output(self, side: _Side) -> None:
        """Per output group: the bucket results (or slices of them) that make its irrep rows, in row order, and
        the change of basis back (active columns only); then one gather to spatial channel order."""
        self._out_groups = []  # per group with rows: (pieces, cob buffer or None, c)
        final = np.full(self.out_size, -1, dtype=np.int64)
        row0 = 0
        for gi, (g, rows) in enumerate(zip(side.groups, _rows(side, self._buckets))):
            if not rows:
                continue
            pieces = []
            for bi, b in enumerate(self._buckets):
                if not any(r[0] == bi for r in rows):
                    continue
                single = all(g.occ(psi) * g.c == b.m_out for psi in b.psis)
                for j in range(b.d):
                    if single:  # this group holds all the bucket's outputs: rows (psi, occurrence) of y_j
                        pieces.append((bi, j, None))
                    else:
                        for i, psi in enumerate(b.psis):
                            lo = sum(h.occ(psi) * h.c for h in side.groups[:gi])
                            if g.occ(psi):
                                pieces.append((bi, j, (i, lo, lo + g.occ(psi) * g.c)))
            comps = [g.comps[psi][o][j] for _, j, psi, o in rows]
            if g.identity:
                name = None
                for k, comp in enumerate(comps):
                    final[np.asarray(g.starts) + comp] = row0 + k * g.c + np.arange(g.c)
                row0 += len(comps) * g.c
            else:
                name = f"_qout{gi}"
                self.register_buffer(name, _as_tensor(g.q[:, comps]), persistent=False)
                for comp in range(g.n):
                    final[np.asarray(g.starts) + comp] = row0 + comp * g.c + np.arange(g.c)
                row0 += g.n * g.c
            self._out_groups.append((pieces, name, g.c))
        self._zero_row = bool((final < 0).any())
        final[final < 0] = row0
        self._out_mode = self._index_plan("_scatter", final, row0 + self._zero_row, side.groups, inverse=True)

    def _index_plan(self, name: str, index: np.ndarray, rows: int, groups: list[_Fields], inverse: bool):
        """How to apply a row gather: None (identity), ("t", a, b) (one group, fields <-> components: a transposing
        copy, whose backward is a view, not index_select's zero-fill and scatter-add), or ("index",) with the
        index as a non-persistent buffer."""
        self.register_buffer(name, None, persistent=False)
        if len(index) == rows and (index == np.arange(rows)).all():
            return None
        if len(groups) == 1:
            a, b = (groups[0].n, groups[0].c) if inverse else (groups[0].c, groups[0].n)
            if len(index) == rows == a * b and (index == _transposition(a, b)).all():
                return ("t", a, b)
        setattr(self, name, torch.as_tensor(index))
        return ("index",)

    @staticmethod
    def _gather_rows(x: torch.Tensor, mode, index) -> torch.Tensor:
        if mode is None:
            return x
        if mode[0] == "t":
            _, a, b = mode
            return x.view(a, b, x.shape[1]).transpose(0, 1).reshape(a * b, x.shape[1])
        return x.index_select(0, index)

    # ------------------------------------------------------------------ forward
    def _map(self, x: torch.Tensor, use_bias: bool) -> torch.Tensor:
        batch = x.shape[0]
        xt = self._gather_rows(x.T, self._in_mode, self._gather)  # (rows, B)
        chunks, row = [], 0
        for (rows, name, c), sizes in zip(self._in_groups, self._in_splits):
            u = xt[row:row + rows * c].reshape(rows, c * batch) if len(self._in_groups) > 1 else \
                xt.reshape(rows, c * batch)
            u = u if name is None else getattr(self, name) @ u
            chunks.append(u.split(sizes) if len(sizes) > 1 else (u,))
            row += rows * c
        bias = self.bias if use_bias else None
        results = []  # per bucket, per component j: (k * m_out, B) or (k, m_out, B)
        for b in self._buckets:
            k = len(b.psis)
            if b.weight is None:  # the output's trivial irreps, fed by no input irrep: bias alone
                results.append([bias.unsqueeze(1).expand(b.m_out, batch) if bias is not None else
                                x.new_zeros(b.m_out, batch)])
                continue
            spec = self._in_blocks[b.weight]
            if spec[0] == "view":
                slot, i = spec[1]
                zs = chunks[slot][i].reshape(b.d, k, b.m_in, batch).unbind(0)
            else:
                zs = [torch.stack([torch.cat([chunks[s][i].reshape(-1, batch) for s, i in parts])
                                   for parts in per_psi]) for per_psi in spec[1]]
            w = self.weights[b.weight]
            if b.trivial and bias is not None:
                results.append([torch.addmm(bias.unsqueeze(1), w[0], zs[0][0])])
            elif k == 1:
                results.append([w[0] @ z[0] for z in zs])
            else:  # one bmm per component j, each z_j a (k, m_in, B) view
                results.append([torch.bmm(w, z) for z in zs])
        outs = []
        for pieces, name, c in self._out_groups:
            parts = []
            for bi, j, sl in pieces:
                y = results[bi][j]
                if sl is not None:
                    i, lo, hi = sl
                    y = y.view(len(self._buckets[bi].psis), -1, batch)[i, lo:hi]
                parts.append(y.reshape(-1, c * batch))
            v = parts[0] if len(parts) == 1 else torch.cat(parts)
            outs.append((v if name is None else getattr(self, name) @ v).view(-1, batch))
        if self._zero_row:
            outs.append(x.new_zeros(1, batch))
        o = outs[0] if len(outs) == 1 else torch.cat(outs)
        return self._gather_rows(o, self._out_mode, self._scatter).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_size:
            raise ValueError(f"expected inputs with {self.in_size} features ({self.in_type}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        return self._map(x.reshape(-1, self.in_size), use_bias=True).reshape(*lead, self.out_size)

    # ------------------------------------------------------------------ dense view / import from escnn
    def to_dense(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(W, b)`` with ``forward(x) == x @ W.T + b`` in the spatial basis: for export to a plain ``nn.Linear``.

        Differentiable in the weights; wrap in ``torch.no_grad()`` for a snapshot."""
        ref = next(iter(self.parameters()), None)
        eye = torch.eye(self.in_size, dtype=None if ref is None else ref.dtype,
                        device=None if ref is None else ref.device)
        matrix = self._map(eye, use_bias=False).T
        bias = None if self.bias is None else self._map(torch.zeros_like(eye[:1]), use_bias=True)[0]
        return matrix, bias

    def blocks(self) -> dict[Irrep, torch.Tensor]:
        """``W_psi`` per irrep (views of the stacked weights)."""
        return {psi: w[i] for psis, w in zip(self.irreps, self.weights) for i, psi in enumerate(psis)}

    @classmethod
    def from_escnn(cls, linear: enn.Linear) -> "IrrepLinear":
        """The same function as escnn ``linear`` (its current weights and bias), projected onto the irrep blocks.

        escnn's expanded matrix, written in the irrep basis, must be ``W_psi (x) I`` on each irrep's components
        and zero elsewhere; ``W_psi`` is the mean over the ``dim psi`` diagonal copies. Raises ``ValueError`` when
        the off-block residual is above float round-off (not an equivariant map between these types)."""
        out = cls(linear.in_type, linear.out_type, bias=linear.bias is not None)
        with torch.no_grad():
            matrix, bias = linear.expand_parameters()
        sin, sout = out._in, out._out
        t_out = sout.to_grouped_irreps()
        m = t_out @ matrix.detach().double().cpu().numpy() @ np.linalg.inv(sin.to_grouped_irreps())
        fit, blocks = np.zeros_like(m), {}
        for psi in out.blocks():
            ii, io = sin.index(psi), sout.index(psi)
            blocks[psi] = np.mean([m[np.ix_(io[j], ii[j])] for j in range(len(ii))], axis=0)
            for j in range(len(ii)):
                fit[np.ix_(io[j], ii[j])] = blocks[psi]
        residual = np.linalg.norm(m - fit) / max(np.linalg.norm(m), 1e-30)
        if residual > _RESIDUAL_TOL:
            raise ValueError(f"escnn matrix is not block-structured in the irrep basis (relative residual "
                             f"{residual:.2e} > {_RESIDUAL_TOL:g})")
        with torch.no_grad():
            for psi, w in out.blocks().items():
                w.copy_(torch.as_tensor(blocks[psi], dtype=w.dtype))
            if out.bias is not None:
                b_irr = t_out @ bias.detach().double().cpu().numpy()
                triv = sout.index(tuple(linear.out_type.fibergroup.trivial_representation.irreps[0])).reshape(-1)
                if np.linalg.norm(np.delete(b_irr, triv)) > _RESIDUAL_TOL * max(np.linalg.norm(b_irr), 1e-30):
                    raise ValueError("escnn bias has components outside the trivial irreps")
                out.bias.copy_(torch.as_tensor(b_irr[triv], dtype=out.bias.dtype))
        return out

    def extra_repr(self) -> str:
        blocks = ", ".join(f"{psi}:{tuple(w.shape)}" for psi, w in self.blocks().items())
        return (f"{self.in_size} -> {self.out_size}, {self.in_type.fibergroup.name}, blocks [{blocks}], "
                f"bias={self.bias is not None}")


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.get_default_dtype())
