"""The Bloom filters: never a false negative, a false-positive rate that
matches the layout's formula, bounded memory when rotating."""

from __future__ import annotations

import math

import numpy as np
import pytest

import jarvis_rust_core as jrc


def test_false_positive_rate_matches_the_formula() -> None:
    n, queries = 100_000, 1_000_000
    f = jrc.RustBloomFilter.for_items(n, 0.01)
    rng = np.random.default_rng(20261127)
    values = rng.choice(2**62, size=n + queries, replace=False).tolist()
    added, others = values[:n], values[n:]
    for v in added:
        f.add(v)
    assert all(v in f for v in added), "a Bloom filter never forgets"
    hits = sum(f.contains(v) for v in others)
    p = f.predicted_fp_rate(n)
    sigma = math.sqrt(p * (1 - p) / queries)
    assert abs(p - 0.01) < 0.001, p
    assert abs(hits / queries - p) <= 4 * sigma, (hits / queries, p, sigma)


def test_items_of_every_kind() -> None:
    f = jrc.RustBloomFilter(0.01, 5)
    for item in ("item_1", b"\x00bytes", bytearray(b"buf"), 7, -3, 2**64 - 1):
        f.add(item)
        assert item in f
    assert "item_2" not in f and len(f) == 6
    with pytest.raises(TypeError, match="int, str or bytes-like"):
        f.add(1.5)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        f.add(2**70)
    with pytest.raises(jrc.RingConfigError):
        jrc.RustBloomFilter(0.0, 3)
    f.clear()
    assert len(f) == 0 and "item_1" not in f


def test_both_filters_share_one_implementation_of_items() -> None:
    for f in (jrc.RustBloomFilter.for_items(1000, 0.01), jrc.RotatingBloomFilter(1000, 0.01)):
        assert isinstance(f, jrc.BloomFilterBase)
        for item in ("item_1", b"\x00bytes", bytearray(b"buf"), 7, -3, 2**64 - 1):
            assert item not in f and not f.contains(item)
            f.add(item)
            assert item in f and f.contains(item)
        with pytest.raises(TypeError, match="int, str or bytes-like"):
            f.contains(1.5)  # type: ignore[arg-type]
        for too_big in (-(2**63) - 1, 2**64, 2**64 + 5, 10**400):
            with pytest.raises(OverflowError):
                f.add(too_big)
        # every int of 64 bits is its own 8 bytes, signed or not
        for v in (2**63, 2**63 + 12345, 2**64 - 1, -(2**63), -1, 0, 2**62 + 7):
            f.add(v)
            assert (v % 2**64).to_bytes(8, "little") in f


def test_rotating_filter_is_bounded_and_remembers_the_recent() -> None:
    r = jrc.RotatingBloomFilter(1000, 0.01)
    size = r.size_bits
    for i in range(10_500):
        r.add(i)
    assert r.size_bits == size and r.rotations == 10
    assert all(i in r for i in range(9_500, 10_500)), "the last `capacity` items are always remembered"
    forgotten = sum(i in r for i in range(0, 1000))
    assert forgotten < 50, forgotten
