"""Payloads hold exactly the requested bytes, really written, with reproducible digests."""

from __future__ import annotations

from membench.exporter.procfs import read_status_memory
from membench.workers.payload import (
    RECORD_BYTES,
    build_payload,
    combine_digests,
    digest_payload,
    expected_digest,
    payload_size,
)

MIB = 1024 * 1024


def test_sizes_are_exact_for_both_shapes() -> None:
    for size in (1, 4095, MIB, 3 * MIB + 17):
        assert payload_size(build_payload("bytes", 0, size)) == size
        records = build_payload("records", 0, size)
        assert payload_size(records) == size
        assert all(len(r) <= RECORD_BYTES for r in records)


def test_bytes_payload_really_becomes_resident() -> None:
    rss_before, _ = read_status_memory()
    data = build_payload("bytes", 1, 64 * MIB)
    rss_after, _ = read_status_memory()
    assert rss_after - rss_before >= 60 * MIB  # a lazily zero-mapped buffer would add ~0
    del data


def test_records_are_distinct_objects() -> None:
    records = build_payload("records", 2, 64 * RECORD_BYTES)
    assert len({id(r) for r in records}) == len(records) == 64
    assert len(set(records)) == 64


def test_digests_differ_by_index_and_ignore_completion_order() -> None:
    a = digest_payload(build_payload("bytes", 0, MIB))
    b = digest_payload(build_payload("bytes", 1, MIB))
    assert a != b
    assert combine_digests([a, b]) == combine_digests([b, a])
    assert expected_digest("bytes", 2, MIB) == combine_digests([a, b])
