"""Comparing a discovered Lie algebra with a known one (numpy only).

A discovered basis is only defined up to an invertible change of basis, so the comparisons are
basis-free: principal angles between the spans in ``gl(d)``, the closure residual of the bracket,
the structure constants of the *true* basis projected onto the found span, and the signature of
the trace form ``tr(X Y)`` (e.g. (3, 3) for so(1, 3): boosts positive, rotations negative).
"""
from __future__ import annotations

import numpy as np


def _flat(basis: np.ndarray) -> np.ndarray:
    b = np.asarray(basis, dtype=np.float64)
    return b.reshape(b.shape[0], -1)


def principal_angles(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, ascending) between ``span(found)`` and ``span(truth)`` in ``gl(d)``."""
    qa, _ = np.linalg.qr(_flat(found).T)
    qb, _ = np.linalg.qr(_flat(truth).T)
    cos = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1.0, 1.0)
    return np.degrees(np.arccos(cos)) if len(cos) else np.zeros(0)


def structure_constants(basis: np.ndarray) -> tuple[np.ndarray, float]:
    """``C[i, j, k]`` with ``[B_i, B_j] ~ sum_k C[i, j, k] B_k`` (least squares) and the closure residual.

    The residual is ``max_ij |[B_i, B_j] - sum_k C_ijk B_k| / max(|B_i| |B_j|)``: 0 for a Lie algebra.
    """
    b = np.asarray(basis, dtype=np.float64)
    k = len(b)
    flat = _flat(b)
    c = np.zeros((k, k, k))
    worst = 0.0
    for i in range(k):
        for j in range(k):
            br = (b[i] @ b[j] - b[j] @ b[i]).ravel()
            coef, *_ = np.linalg.lstsq(flat.T, br, rcond=None)
            c[i, j] = coef
            worst = max(worst, float(np.linalg.norm(br - flat.T @ coef) / max(np.linalg.norm(b[i]) * np.linalg.norm(b[j]), 1e-12)))
    return c, worst


def compare_algebras(found: np.ndarray, truth: np.ndarray) -> dict:
    """Subspace angles, closure, and structure constants of ``found`` expressed in the true basis.

    The true basis is projected onto ``span(found)``; the structure constants of the projection are
    compared with the true ones (relative Frobenius error; 0 iff the spans agree as algebras).
    The trace form ``tr(X Y)`` signature (positive, negative) is basis-independent (Sylvester).
    """
    found, truth = np.asarray(found, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    angles = principal_angles(found, truth)
    qa, _ = np.linalg.qr(_flat(found).T)
    projected = (qa @ (qa.T @ _flat(truth).T)).T.reshape(truth.shape)
    c_true, _ = structure_constants(truth)
    c_proj, _ = structure_constants(projected)
    _, closure = structure_constants(found)
    form = np.einsum("aij,bji->ab", found, found)
    eig = np.linalg.eigvalsh((form + form.T) / 2)
    tol = 1e-3 * max(np.abs(eig).max(), 1e-12)
    return {
        "dim_found": len(found),
        "dim_true": len(truth),
        "principal_angles_deg": np.round(angles, 3).tolist(),
        "max_principal_angle_deg": round(float(angles.max()), 3) if len(angles) else None,
        "closure_residual": round(closure, 5),
        "structure_constant_rel_error": round(float(np.linalg.norm(c_proj - c_true) / max(np.linalg.norm(c_true), 1e-12)), 5),
        "trace_form_signature": [int((eig > tol).sum()), int((eig < -tol).sum())],
    }
