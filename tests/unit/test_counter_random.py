"""Counter-based forecast draws.

Philox4x32-10 against Random123, the ziggurat's distribution, and the counter layout that makes
every draw a function of (key, day, kind, particle).
"""

import math

import numpy as np
import pytest
from scipy import stats

from twin import errors
from twin.model import counter_random

# Random123's known-answer vectors for Philox4x32-10 (its tests/kat_vectors).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _draws(keys, days, n, first_day=0, kinds=3):
    normals = np.empty((days, kinds, len(keys), n), np.float32)
    uniforms = np.empty_like(normals)
    counter_random.fill_day_draws(np.asarray(keys, np.uint64), first_day, normals, uniforms)
    return normals, uniforms


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_matches_the_random123_known_answers(counter, key, expected):
    assert counter_random.philox4x32(counter, key) == expected


def test_the_tables_are_doornik_s_ziggurat():
    r, edges, ratios = counter_random.ZIGGURAT
    v = 9.91256303526217e-3
    # Every layer has the area V: x_i (f(x_{i+1}) - f(x_i)) = V, the base strip included.
    f = np.exp(-0.5 * edges**2)
    areas = edges[1:-1] * (f[2:] - f[1:-1])
    np.testing.assert_allclose(areas, v, rtol=1e-6)
    assert edges[0] * math.exp(-0.5 * r * r) == pytest.approx(v)
    assert edges[-1] == 0.0 and np.all(np.diff(edges) < 0) and np.all(ratios < 1.0)


def test_normals_and_uniforms_have_their_distributions():
    normals, uniforms = _draws([2**63 + 12345, 7], days=120, n=2000)  # 1.44 M of each
    x = normals.ravel().astype(np.float64)
    assert abs(x.mean()) < 0.004 and abs(x.var() - 1.0) < 0.005
    assert abs(stats.skew(x)) < 0.01 and abs(stats.kurtosis(x)) < 0.02
    assert stats.kstest(x, "norm").pvalue > 1e-3
    # The tail beyond R and the wedges are the slow paths: their mass is right too.
    r = counter_random.ZIGGURAT[0]
    for cut, expected in ((r, 2 * stats.norm.sf(r)), (1.0, 2 * stats.norm.sf(1.0))):
        observed = np.mean(np.abs(x) > cut)
        assert observed == pytest.approx(expected, rel=6 * math.sqrt(1 / (expected * x.size)))
    u = uniforms.ravel().astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0 and stats.kstest(u, "uniform").pvalue > 1e-3
    assert np.all(u * 2**24 == np.floor(u * 2**24))  # multiples of 2^-24: 1 - U is exact
    assert abs(np.corrcoef(x, u)[0, 1]) < 0.005  # the two purposes are independent streams
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 0.005


def test_a_draw_depends_on_its_key_day_kind_and_particle_only():
    keys = [11, 2**64 - 1, 42]
    normals, uniforms = _draws(keys, days=14, n=1001)  # n not a multiple of four
    # Days filled later, one twin alone, or in another memory layout: the same values.
    later_n, later_u = _draws(keys, days=4, n=1001, first_day=9)
    np.testing.assert_array_equal(later_n, normals[9:13])
    np.testing.assert_array_equal(later_u, uniforms[9:13])
    alone_n, _ = _draws(keys[1:2], days=14, n=1001)
    np.testing.assert_array_equal(alone_n[:, :, 0], normals[:, :, 1])
    particle_major = np.empty((3, 1001, 14, 3), np.float32).transpose(2, 3, 0, 1)
    other = np.empty_like(particle_major)
    counter_random.fill_day_draws(np.asarray(keys, np.uint64), 0, particle_major, other)
    np.testing.assert_array_equal(particle_major, normals)
    # Another key or another day gives other draws.
    assert not np.array_equal(normals[:, :, 0], normals[:, :, 2])
    assert not np.array_equal(normals[0], normals[1])


def test_uniform_bits_come_from_the_documented_counter():
    """Uniform j of day d, kind k is word j % 4 of Philox at counter (m, m >> 32, 0, 1).

    m = (d·K + k)·G + j // 4 with G groups of four per row, under the key's 32-bit halves.
    """
    key, n = 0x0123456789ABCDEF, 10
    _, uniforms = _draws([key], days=3, n=n)
    groups = (n + 3) // 4
    d, k, j = 2, 1, 9
    m = (d * 3 + k) * groups + j // 4
    word = counter_random.philox4x32((m, 0, 0, 1), (key & 0xFFFFFFFF, key >> 32))[j % 4]
    assert uniforms[d, k, 0, j] == (word >> 8) * 2.0**-24


@pytest.mark.parametrize(
    "change",
    [
        lambda n, u, k: (n[:, :2], u, k),  # shapes differ
        lambda n, u, k: (n.astype(np.float64), u.astype(np.float64), k),
        lambda n, u, k: (n, u, k.astype(np.int64)),
        lambda n, u, k: (n, u, k[:1]),  # a key per twin
    ],
)
def test_bad_arrays_are_refused(change):
    normals = np.empty((2, 3, 2, 8), np.float32)
    normals_, uniforms_, keys_ = change(
        normals, np.empty_like(normals), np.arange(2, dtype=np.uint64)
    )
    with pytest.raises(errors.InvalidInputError):
        counter_random.fill_day_draws(keys_, 0, normals_, uniforms_)
    with pytest.raises(errors.InvalidInputError):
        counter_random.fill_day_draws(np.arange(2, dtype=np.uint64), -1, normals, normals.copy())
