"""Counter-based random draws for forecasts, compiled: Philox4x32-10 bits, ziggurat normals.

A forecast draws seven days × three normals and three uniforms per particle per week. NumPy's
generators made those draws a third of a forecast's time (~14 ns a float32 normal here: a
function-pointer call per value), so forecasts draw them here instead, in one compiled pass:

- Bits: Philox4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as
  1, 2, 3"; the generator of Random123, cuRAND and JAX), keyed by the twin's 64-bit stream key.
  The counter names the draw: (group of four draws, its high word, retry, purpose), so every
  value is a pure function of (key, day, kind, particle) and no draw depends on which other
  twins share the batch or on how the days are split into calls. Checked against Random123's
  published known-answer vectors.
- Normals: the ziggurat of Marsaglia & Tsang (2000) in Doornik's form (2005, "An improved
  ziggurat method to generate normal random samples"): 128 layers, a 32-bit word per attempt
  (7 bits choose the layer, 25 bits give u in (-1, 1)), exact wedge and tail corrections with
  further Philox words. About 99 % of draws take one multiply and one comparison.
- Uniforms: 24-bit multiples of 2^-24 in [0, 1), as NumPy's float32 ``random`` (so 1 - U is exact
  in float32, which the day step's regime draw relies on).

numba compiles the fill on first use (and caches it on disk), never at import.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from twin import errors

__all__ = ["ZIGGURAT", "fill_day_draws", "load", "philox4x32", "stream_key"]

U64 = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]

_MASK32 = 0xFFFFFFFF
# Philox4x32 round multipliers and Weyl key increments (Salmon et al. 2011, table 2).
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10
#: The counter's last word: which stream a draw belongs to.
_PURPOSE_NORMAL, _PURPOSE_UNIFORM = 0, 1


def _ziggurat_tables(
    layers: int = 128,
) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Doornik's (2005) ZIGNOR tables: tail start R, layer edges X (layers + 1), X[i+1]/X[i].

    R and the common layer area V are Marsaglia & Tsang's constants for 128 layers; the edges
    follow from f(X[i]) = f(X[i-1]) + V / X[i-1] with f(x) = e^{-x²/2}.
    """
    r, v = 3.442619855899, 9.91256303526217e-3
    edges = np.zeros(layers + 1)
    f = math.exp(-0.5 * r * r)
    edges[0], edges[1] = v / f, r
    for i in range(2, layers):
        edges[i] = math.sqrt(-2.0 * math.log(v / edges[i - 1] + f))
        f = math.exp(-0.5 * edges[i] ** 2)
    return r, edges, edges[1:] / edges[:-1]


#: (R, X, X[i+1]/X[i]) of the 128-layer ziggurat.
ZIGGURAT = _ziggurat_tables()


def stream_key(generator: np.random.Generator) -> int:
    """A twin's 64-bit stream key, drawn from its (event-keyed) NumPy generator."""
    return int(generator.integers(0, 2**64, dtype=np.uint64))


def philox4x32(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """Philox4x32-10 of one 128-bit counter under a 64-bit key (four and two 32-bit words).

    The same function the compiled fill inlines (plain integers here: for tests and reference).
    """
    return tuple(int(w) for w in _philox(*(np.uint64(w) for w in (*counter, *key))))


def _philox(c0: Any, c1: Any, c2: Any, c3: Any, k0: Any, k1: Any) -> tuple[Any, Any, Any, Any]:
    """Ten Philox rounds; every argument a uint64 holding a 32-bit word."""
    m0, m1 = np.uint64(_M0), np.uint64(_M1)
    w0, w1, mask, shift = np.uint64(_W0), np.uint64(_W1), np.uint64(_MASK32), np.uint64(32)
    for _ in range(_ROUNDS):
        p0 = m0 * c0
        p1 = m1 * c2
        c0, c1, c2, c3 = (p1 >> shift) ^ c1 ^ k0, p1 & mask, (p0 >> shift) ^ c3 ^ k1, p0 & mask
        k0 = (k0 + w0) & mask
        k1 = (k1 + w1) & mask
    return c0, c1, c2, c3


def fill_day_draws(keys: U64, first_day: int, normals: F32, uniforms: F32) -> None:
    """Fill a forecast's day-step draws for days ``first_day ..`` of every twin, in place.

    Draw (day d, kind k, twin t, particle j) is a function of the twin's key, ``first_day + d``,
    k and j only, so a forecast may be filled a week at a time, for any batch of twins.

    Args:
        keys: ``(T,)`` the twins' stream keys (:func:`stream_key`).
        first_day: The forecast day of the first row (day 0 is the forecast's first day), >= 0.
        normals: ``(D, K, T, N)`` float32, any memory layout (C-contiguous is filled in place,
            any other through a contiguous copy); filled with standard normals.
        uniforms: ``(D, K, T, N)`` float32, any memory layout; filled with uniforms in [0, 1).

    Raises:
        InvalidInputError: Shapes or dtypes other than these, read-only arrays, a negative day.
    """
    ok = (
        normals.shape == uniforms.shape and normals.ndim == 4 and keys.shape == normals.shape[2:3]
        and normals.dtype == uniforms.dtype == np.float32 and keys.dtype == np.uint64
        and normals.flags.writeable and uniforms.flags.writeable and first_day >= 0
    )  # fmt: skip
    if not ok:
        raise errors.InvalidInputError("day draws: (D, K, T, N) float32 arrays for T uint64 keys")
    # The compiled loops run over unit strides (what vectorises them).
    targets = [
        a if a.flags.c_contiguous else np.empty(a.shape, np.float32) for a in (normals, uniforms)
    ]
    _compiled()(np.ascontiguousarray(keys), first_day, *targets)
    for given, filled in zip((normals, uniforms), targets, strict=True):
        if filled is not given:
            given[...] = filled


def load() -> None:
    """Compile the fill now (or load it from numba's cache)."""
    _compiled()


def _make_fill(
    philox: Callable[..., Any], tail_start: float, edges: Any, ratios: Any
) -> Callable[..., None]:
    # The tables are constants of the compiled code (numba freezes arrays a function closes
    # over): LLVM then knows that no store can change them, needs no overlap check against
    # them, and vectorises the fast path's table lookups (an argument array would keep it
    # scalar, about twice slower, measured).
    def fill(keys: U64, first_day: int, normals: F32, uniforms: F32) -> None:
        mask, shift = np.uint64(_MASK32), np.uint64(32)
        for_normals = np.uint64(_PURPOSE_NORMAL)
        first_try = np.uint64(0)
        to_unit24 = 1.0 / 16777216.0  # 2^-24
        to_open32 = 1.0 / 4294967296.0  # 2^-32
        days, kinds, twins, n = normals.shape
        groups = (n + 3) // 4
        words = np.empty((2, 4 * groups), np.uint32)  # [purpose, draw]
        normal_words, uniform_words = words[_PURPOSE_NORMAL], words[_PURPOSE_UNIFORM]
        accepted = np.empty(n, np.bool_)
        for t in range(twins):
            k0 = np.uint64(keys[t]) & mask
            k1 = np.uint64(keys[t]) >> shift
            for d in range(days):
                for kind in range(kinds):
                    base = ((first_day + d) * kinds + kind) * groups
                    # A simple inner loop of independent Philox calls per purpose: the compiler
                    # vectorises it (four times faster than alternating purposes inside it).
                    for purpose in range(2):
                        out = words[purpose]
                        for g in range(groups):
                            m = np.uint64(base + g)
                            b0, b1, b2, b3 = philox(
                                m & mask, m >> shift, first_try, np.uint64(purpose), k0, k1
                            )
                            out[4 * g] = b0
                            out[4 * g + 1] = b1
                            out[4 * g + 2] = b2
                            out[4 * g + 3] = b3
                    uniform_row = uniforms[d, kind, t]
                    normal_row = normals[d, kind, t]
                    for j in range(n):
                        uniform_row[j] = (uniform_words[j] >> 8) * to_unit24
                    # Fast path in a loop of its own, branch-free so that it vectorises: every
                    # draw as if accepted, and a flag; the ~1 % it refuses are redone after.
                    for j in range(n):
                        word = normal_words[j]
                        level = np.intp(word & np.uint32(127))  # the layer, as an index
                        v = (np.float64(word >> np.uint32(7)) + 0.5) * to_unit24 - 1.0
                        normal_row[j] = v * edges[level]
                        accepted[j] = abs(v) < ratios[level]
                    for j in range(n):
                        if accepted[j]:
                            continue
                        bits = np.uint64(normal_words[j])
                        layer = bits & np.uint64(127)
                        u = ((bits >> np.uint64(7)) + 0.5) * to_unit24 - 1.0
                        # A further Philox call per attempt, its words numbered by the draw's
                        # slot in its group of four and the attempt.
                        m = np.uint64(base + j // 4)
                        retry = 0
                        while True:
                            retry += 1
                            attempt = np.uint64(j % 4 + 4 * retry)
                            r0, r1, r2, r3 = philox(
                                m & mask, m >> shift, attempt, for_normals, k0, k1
                            )
                            if layer == 0:  # the tail beyond R (Marsaglia 1964)
                                x = math.log((r2 + 0.5) * to_open32) / tail_start
                                y = math.log((r3 + 0.5) * to_open32)
                                if -2.0 * y < x * x:
                                    continue  # refused: another pair of tail uniforms
                                value = x - tail_start if u < 0.0 else tail_start - x
                                break
                            x = u * edges[layer]
                            f0 = math.exp(-0.5 * (edges[layer] ** 2 - x * x))
                            f1 = math.exp(-0.5 * (edges[layer + 1] ** 2 - x * x))
                            if f1 + (r1 + 0.5) * to_open32 * (f0 - f1) < 1.0:
                                value = x
                                break
                            # The wedge refused x: a fresh attempt with the next word.
                            layer = r0 & np.uint64(127)
                            u = ((r0 >> np.uint64(7)) + 0.5) * to_unit24 - 1.0
                            if abs(u) < ratios[layer]:
                                value = u * edges[layer]
                                break
                        normal_row[j] = value

    return fill


@functools.cache
def _compiled() -> Callable[..., None]:
    """The fill, compiled for its one signature (Philox inlined into it)."""
    import numba
    from numba import types

    philox = numba.njit(inline="always", cache=True)(_philox)
    draws = types.Array(types.float32, 4, "C")
    signature = types.void(
        types.Array(types.uint64, 1, "C", readonly=True), types.int64, draws, draws
    )
    compiled: Callable[..., None] = numba.njit(
        signature, cache=True, nogil=True, error_model="numpy"
    )(_make_fill(philox, *ZIGGURAT))
    return compiled
