"""Particle-filter building blocks: normalisation, ESS, systematic resampling, Liu-West.

Functions work on one twin (``(N,)`` weights) or a batch (``(T, N)``), always reducing along the
last axis, so a batch gives the same numbers per twin as one twin alone.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["effective_sample_size", "gather", "liu_west", "normalise", "systematic_indices"]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
ScalarT = TypeVar("ScalarT", bound=np.generic)


def normalise(log_w: F64) -> tuple[F64, F64]:
    """Normalise log-weights along the last axis.

    Returns:
        ``(log_w - logsumexp(log_w), logsumexp(log_w))``; the second is the log of the
        normaliser, i.e. the log evidence when ``log_w`` = prior log-weights + log-likelihood.
    """
    peak = np.max(log_w, axis=-1, keepdims=True)
    total = peak + np.log(np.sum(np.exp(log_w - peak), axis=-1, keepdims=True))
    return log_w - total, total[..., 0]


def effective_sample_size(log_w: F64) -> F64:
    """ESS = 1 / Σ w² of normalised weights, along the last axis."""
    return 1.0 / np.sum(np.exp(2.0 * log_w), axis=-1)  # type: ignore[no-any-return]


def systematic_indices(weights: F64, u: F64 | float) -> npt.NDArray[np.intp]:
    """Systematic resampling (Kitagawa 1996) of one twin ``(N,)`` or many ``(T, N)``.

    Positions p_j = (u + j)/N, j = 0..N-1, with one uniform u per twin, are inverted through
    the weight CDF: particle i is kept once for every position in [cdf_{i-1}, cdf_i). The
    count of positions below cdf_i is c_i = clip(⌈N·cdf_i - u⌉, 0, N), so index j is
    #{i : c_i <= j}. Counts are integers, which lets many twins be inverted in one sorted
    search over row-offset keys, exactly as each twin alone.

    Args:
        weights: Normalised weights, shape ``(N,)`` or ``(T, N)``.
        u: One uniform draw in [0, 1) per twin (scalar or shape ``(T,)``).

    Returns:
        Indices of the kept particles, same shape as ``weights``, non-decreasing per twin.
    """
    w = np.atleast_2d(weights)
    rows, n = w.shape
    cdf = np.cumsum(w, axis=-1)
    cdf[:, -1] = 1.0  # round-off must not leave the last position past the CDF
    shift = np.asarray(u, dtype=np.float64).reshape(rows, 1)
    counts = np.clip(np.ceil(n * cdf - shift), 0, n).astype(np.int64)
    offset = np.arange(rows, dtype=np.int64)[:, None] * (n + 1)
    keys = (counts + offset).ravel()
    positions = (np.arange(n, dtype=np.int64) + offset).ravel()
    found = np.searchsorted(keys, positions, side="right").reshape(rows, n)
    indices: npt.NDArray[np.intp] = (found - np.arange(rows, dtype=np.int64)[:, None] * n).astype(
        np.intp
    )
    return indices.reshape(np.shape(weights))


def gather(X: npt.NDArray[ScalarT], indices: npt.NDArray[np.intp]) -> npt.NDArray[ScalarT]:
    """Resampled copy of a batch: ``out[r, t, j] = X[r, t, indices[t, j]]``.

    Args:
        X: Shape ``(R, T, N)``.
        indices: Shape ``(T, N)``.
    """
    rows, twins, n = X.shape
    flat = (indices + np.arange(twins)[:, None] * n).ravel()
    # Row-major result: the day step advances a C-contiguous matrix in place without a copy.
    out: npt.NDArray[ScalarT] = np.ascontiguousarray(X.reshape(rows, twins * n)[:, flat])
    return out.reshape(rows, twins, n)


def liu_west(
    theta: F32, weights: F64, indices: npt.NDArray[np.intp], normal: F32, *, a: float = 0.98
) -> F32:
    """Liu-West kernel shrinkage of static parameters after resampling (Liu & West 2001).

    θ̃_j = a·θ_{i_j} + (1 - a)·θ̄ + √(1 - a²)·L·ξ_j, with θ̄ and V = L Lᵀ the weighted mean and
    covariance before resampling: the kernel mixture keeps θ̄ and V, so parameters regain
    diversity without the variance inflation of plain jitter.

    Args:
        theta: Parameters before resampling, shape ``(P, T, N)`` (T twins).
        weights: Normalised weights before resampling, shape ``(T, N)``.
        indices: Resampled indices, shape ``(T, N)``.
        normal: Standard normal draws, shape ``(P, T, N)``.
        a: Shrinkage (0.98 in Liu & West; h² = 1 - a²).

    Returns:
        New parameters, shape ``(P, T, N)``, float32.
    """
    mean = np.sum(theta * weights, axis=-1)  # (P, T), float64
    centred = np.ascontiguousarray((theta - mean[..., None]).transpose(1, 0, 2))  # (T, P, N)
    cov = np.matmul(centred * weights[:, None, :], centred.transpose(0, 2, 1))  # (T, P, P)
    # A tiny ridge keeps the Cholesky factor defined when a parameter has collapsed.
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(theta.shape[0])).astype(np.float32)
    noise = np.matmul(chol, normal.transpose(1, 0, 2)).transpose(1, 0, 2)  # L·ξ, float32
    centre = np.float32(1.0 - a) * mean[..., None].astype(np.float32)
    out: F32 = np.float32(a) * gather(theta, indices) + centre
    out += np.float32(math.sqrt(1.0 - a * a)) * noise
    return out
