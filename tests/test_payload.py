"""Payloads hold exactly the requested live bytes, really written, with reproducible digests."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from membench.procfs import read_status_memory
from membench.units import MIB
from membench.workers.params import DATA_PAYLOADS
from membench.workers.payload import (
    DICT_RECORD_BYTES,
    RECORD_BYTES,
    build_payload,
    combine_digests,
    digest_payload,
    expected_digest,
    live_bytes,
)

# The finest grain of each shape: a size can be hit to within one record (bytes: its header).
GRAIN = {"bytes": 64, "records": RECORD_BYTES, "dicts": DICT_RECORD_BYTES}


@pytest.mark.parametrize("kind", DATA_PAYLOADS)
@pytest.mark.parametrize("size", [4095, MIB, 3 * MIB + 17, 20 * MIB])
def test_live_bytes_are_the_requested_size(kind: str, size: int) -> None:
    data = build_payload(kind, 0, size)
    assert abs(live_bytes(data) - size) <= GRAIN[kind]


@pytest.mark.parametrize("kind", DATA_PAYLOADS)
def test_the_allocator_sees_the_requested_size(kind: str) -> None:
    """Independent of live_bytes: what Python's allocator holds for the payload once built."""
    size = 8 * MIB
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        data = build_payload(kind, 7, size)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs((after - before) - size) <= 0.02 * size, (kind, after - before)
    del data


def test_bytes_payload_really_becomes_resident() -> None:
    rss_before, _ = read_status_memory()
    data = build_payload("bytes", 1, 64 * MIB)
    rss_after, _ = read_status_memory()
    assert rss_after - rss_before >= 60 * MIB  # a lazily zero-mapped buffer would add ~0
    del data


def test_bytes_payload_repeats_its_pattern_to_the_last_byte() -> None:
    for size in (1, 100, 65536, 65537, 3 * MIB + 17):
        data = build_payload("bytes", 5, size)
        assert len(data) == size
        assert data[:100] == build_payload("bytes", 5, 100)[:size]
        assert data[65536 : 65536 + 100] == data[:100][: len(data) - 65536]


def test_records_are_distinct_objects() -> None:
    records = build_payload("records", 2, 64 * RECORD_BYTES)
    assert len({id(r) for r in records}) == len(records) == 64
    assert len(set(records)) == 64


def test_dicts_are_json_like_and_distinct() -> None:
    import json

    records = build_payload("dicts", 3, 32 * DICT_RECORD_BYTES)
    assert len(records) == 32
    assert json.loads(json.dumps(records)) == records
    assert len({json.dumps(r) for r in records}) == 32
    assert {type(v) for r in records for v in r.values()} == {int, str, float, list, dict}


@pytest.mark.parametrize("kind", DATA_PAYLOADS)
def test_digests_differ_by_index_and_ignore_completion_order(kind: str) -> None:
    a = digest_payload(build_payload(kind, 0, MIB))
    b = digest_payload(build_payload(kind, 1, MIB))
    assert a != b
    assert combine_digests([a, b]) == combine_digests([b, a])
    assert expected_digest(kind, 2, MIB) == combine_digests([a, b])
