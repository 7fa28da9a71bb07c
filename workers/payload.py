"""The data a subtask builds: real, every page written, `size` bytes of live Python objects, and
a digest that proves it was built.

Live bytes are what the objects occupy (sys.getsizeof of each object the payload owns, headers
and list slots included), so the three shapes hold the same memory and differ only in how many
allocations make it up: one buffer, ~1 KiB strings, or nested JSON-like dicts.
"""

from __future__ import annotations

import ctypes
import json
import random
import sys
import zlib
from collections.abc import Callable
from typing import Any

from membench.units import KIB

_CHUNK = 64 * KIB
RECORD_BYTES = 1024  # live bytes per string record, list slot included
DICT_RECORD_BYTES = 2048  # per dict record: ~15 objects; at 1 KiB it would be all headers
_POINTER = 8
_EMPTY_LIST = sys.getsizeof([])
_EMPTY_STR = sys.getsizeof("")  # an ASCII str occupies this + its length

Payload = bytearray | list[str] | list[dict[str, Any]]


def _pattern(index: int) -> bytes:
    return random.Random(index).randbytes(_CHUNK)


# bytearray(n) zero-fills its buffer and the pattern is then written over it: every page written
# twice. The C constructor with no source returns the buffer unwritten and allocated to the byte.
_new_bytearray = ctypes.pythonapi.PyByteArray_FromStringAndSize
_new_bytearray.restype = ctypes.py_object
_new_bytearray.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)


def build_bytes(index: int, size: int) -> bytearray:
    """One buffer of exactly `size` bytes, every page written once with a reproducible pattern."""
    buf: bytearray = _new_bytearray(None, size)
    view = memoryview(buf)
    pattern = _pattern(index)
    filled = min(_CHUNK, size)
    view[:filled] = pattern[:filled]
    while filled < size:  # double the written prefix: log2(size / 64 KiB) copies
        step = min(filled, size - filled)
        view[filled : filled + step] = view[:step]
        filled += step
    return buf


def _slots(count: int) -> list[Any]:
    # A list of known length has no over-allocation: its size is exactly header + slots.
    return [None] * count


def build_records(index: int, size: int) -> list[str]:
    """Distinct ASCII strings of RECORD_BYTES live bytes each (slot + header + characters)."""
    per_record = RECORD_BYTES - _POINTER - _EMPTY_STR
    budget = max(size - _EMPTY_LIST, _POINTER + _EMPTY_STR + 1)
    full, rest = divmod(budget, RECORD_BYTES)
    lengths = [per_record] * full
    if rest > _POINTER + _EMPTY_STR:
        lengths.append(rest - _POINTER - _EMPTY_STR)
    elif not lengths:
        lengths.append(1)
    filler = _pattern(index).hex()
    records = _slots(len(lengths))
    for i, length in enumerate(lengths):
        # A distinct head keeps every string its own object (no sharing, no interning).
        records[i] = (f"{index}:{i}:" + filler)[:length]
    return records


def _record(index: int, i: int, filler: str) -> dict[str, Any]:
    serial = index * 10_000_000 + i
    return {
        "id": serial + 2**40,  # past the small-int cache: an int object of its own
        "name": f"user-{serial}-{filler[:24]}",
        "email": f"{serial}@{filler[24:40]}.example",
        "score": serial / 7.0,
        "tags": [f"t{serial}-{filler[k : k + 8]}" for k in (40, 48, 56)],
        "address": {
            "street": f"{serial} {filler[64:100]} street",
            "city": f"city-{filler[100:112]}-{serial}",
            "zip": f"{serial % 100000:05d}-{i}",
        },
        "bio": "-",
    }


def _owned_bytes(obj: Any) -> int:
    """Bytes of the objects a record owns (its keys are interned and shared, so not counted)."""
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(_owned_bytes(v) for v in obj.values())
    if isinstance(obj, list):
        return sys.getsizeof(obj) + sum(_owned_bytes(v) for v in obj)
    return sys.getsizeof(obj)


def build_dicts(index: int, size: int) -> list[dict[str, Any]]:
    """JSON-like nested dicts (str, int, float, list, dict), DICT_RECORD_BYTES live bytes each."""
    filler = _pattern(index).hex()
    count = max(1, round((size - _EMPTY_LIST) / DICT_RECORD_BYTES))
    records = _slots(count)
    for i in range(count):
        record = _record(index, i, filler)
        # Field widths vary with the serial's digits; `bio` takes what the record lacks.
        missing = DICT_RECORD_BYTES - _POINTER - _owned_bytes(record)
        record["bio"] = f"{i}:{filler}"[: 1 + missing]
        records[i] = record
    return records


BUILDERS: dict[str, Callable[[int, int], Payload]] = {
    "bytes": build_bytes,
    "records": build_records,
    "dicts": build_dicts,
}


def build_payload(kind: str, index: int, size: int) -> Payload:
    try:
        builder = BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown payload {kind!r}") from None
    return builder(index, size)


def live_bytes(data: Payload) -> int:
    """Bytes the payload's own objects occupy (what `size` asks for)."""
    return _owned_bytes(data)


def digest_payload(data: Payload) -> int:
    """CRC-32 of the content: reading every byte proves it exists, and it is reproducible."""
    if isinstance(data, bytearray):
        return zlib.crc32(data)
    crc = 0
    for item in data:
        text = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
        crc = zlib.crc32(text.encode("ascii"), crc)
    return crc


def combine_digests(digests: list[int]) -> str:
    """Order-independent digest of a batch (concurrent subtasks finish in any order)."""
    return f"{zlib.crc32(b''.join(d.to_bytes(4, 'big') for d in sorted(digests))):08x}"


def expected_digest(kind: str, subtasks: int, size: int) -> str:
    """What a batch of these parameters must report: recomputed here, independently of a worker."""
    return combine_digests([digest_payload(build_payload(kind, i, size)) for i in range(subtasks)])
