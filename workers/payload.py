"""The data a subtask builds: real, every page written, and a digest that proves it was built."""

from __future__ import annotations

import random
import zlib

_CHUNK = 64 * 1024
RECORD_BYTES = 1024


def _pattern(index: int) -> bytes:
    return random.Random(index).randbytes(_CHUNK)


def build_bytes(index: int, size: int) -> bytearray:
    """One buffer of `size` bytes, every page written (a bare bytearray(n) may stay zero-mapped)."""
    buf = bytearray(size)
    view = memoryview(buf)
    pattern = _pattern(index)
    for offset in range(0, size, _CHUNK):
        end = min(offset + _CHUNK, size)
        view[offset:end] = pattern[: end - offset]
    return buf


def build_records(index: int, size: int) -> list[str]:
    """Distinct ~1 KiB str objects whose characters total `size`: many small allocations."""
    filler = _pattern(index).hex()[:RECORD_BYTES]
    records = []
    for i in range(0, size, RECORD_BYTES):
        length = min(RECORD_BYTES, size - i)
        head = f"{index}:{i}:"
        records.append((head + filler)[:length])
    return records


def build_payload(kind: str, index: int, size: int) -> bytearray | list[str]:
    if kind == "bytes":
        return build_bytes(index, size)
    if kind == "records":
        return build_records(index, size)
    raise ValueError(f"unknown payload {kind!r}")


def payload_size(data: bytearray | list[str]) -> int:
    """Bytes of payload content (not counting Python object headers)."""
    if isinstance(data, bytearray):
        return len(data)
    return sum(len(r) for r in data)


def digest_payload(data: bytearray | list[str]) -> int:
    """CRC-32 of the content: reading every byte proves it exists, and it is reproducible."""
    if isinstance(data, bytearray):
        return zlib.crc32(data)
    crc = 0
    for record in data:
        crc = zlib.crc32(record.encode("ascii"), crc)
    return crc


def combine_digests(digests: list[int]) -> str:
    """Order-independent digest of a batch (concurrent subtasks finish in any order)."""
    return f"{zlib.crc32(b''.join(d.to_bytes(4, 'big') for d in sorted(digests))):08x}"


def expected_digest(kind: str, subtasks: int, size: int) -> str:
    """What a batch of these parameters must report: recomputed here, independently of a worker."""
    return combine_digests([digest_payload(build_payload(kind, i, size)) for i in range(subtasks)])
