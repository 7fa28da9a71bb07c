"""One subtask's body per payload: build, hold (sleep; compute for cpu-*), reduce, drop; and what
a batch reports of its subtasks' results (one digest, and the means of numpy's and cpu-*'s)."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from typing import Any

from membench.workers.cpu_payload import cpu_subtask
from membench.workers.numpy_payload import seed_subtask, warm_up
from membench.workers.params import CPU_PAYLOADS, BatchParams, is_user_payload
from membench.workers.payload import build_payload, combine_digests, digest_payload
from membench.workers.user_payload import PayloadError, resolve

# A data payload's CRC, a small dict (numpy, cpu-*), or None: user code's value is dropped.
SubtaskResult = int | dict[str, Any] | None
Held = Callable[[int], None]  # called with the subtask's index while its data is alive
NUMPY_PAYLOADS = ("numpy", "cpu-numpy")


def payload_imports(payload: str) -> bool:
    """Whether the payload loads a module of its own into the worker (numpy, the user's)."""
    return payload in NUMPY_PAYLOADS or is_user_payload(payload)


def load_payload(payload: str) -> None:
    """Import what the payload runs on (numpy, warmed up; the user's module): done before a
    task's peak is reset, and by the runner before it reads the idle baseline."""
    if payload in NUMPY_PAYLOADS:
        warm_up()
    elif is_user_payload(payload):
        resolve(payload)


def subtask_body(params: BatchParams, held: Held) -> Callable[[int], SubtaskResult]:
    """The function each subtask runs, given its index (what it runs on is imported now)."""
    payload, size_mb, hold_s = params.payload, params.size_mb, params.hold_s
    load_payload(payload)
    if is_user_payload(payload):
        function = resolve(payload)

        def user(index: int) -> None:
            held(index)  # before the call: the strategy's threads exist, the user's data may not
            try:
                function(index, size_mb, hold_s)
            except (SystemExit, KeyboardInterrupt) as exc:
                # Raised in a greenlet, SystemExit ends the gevent worker's task without a
                # report; the runner then waited out its deadline. Said at once instead.
                raise PayloadError(
                    f"{payload}: subtask {index} raised {type(exc).__name__}({exc}) "
                    "instead of returning"
                ) from None

        return user
    if payload == "numpy":
        return lambda index: seed_subtask(index, size_mb, hold_s, held)
    if payload in CPU_PAYLOADS:
        size = params.size_bytes
        return lambda index: cpu_subtask(payload, index, size_mb, size, hold_s, held)

    def data(index: int) -> int:
        built = build_payload(payload, index, params.size_bytes)
        held(index)
        time.sleep(hold_s)  # cooperative under gevent: the pool's scheduling is measured
        digest = digest_payload(built)
        del built
        return digest

    return data


def _crc(result: int | dict[str, Any]) -> int:
    if isinstance(result, int):
        return result
    return zlib.crc32(json.dumps(result, sort_keys=True, separators=(",", ":")).encode())


def batch_digest(results: list[SubtaskResult]) -> str | None:
    """Order-independent digest of the batch; None for user code (nothing to digest)."""
    if any(r is None for r in results):
        return None
    return combine_digests([_crc(r) for r in results if r is not None])


def result_means(results: list[SubtaskResult]) -> dict[str, float] | None:
    """Mean of each figure of dict results (numpy: mean, std_dev; cpu-*: cpu_s, passes), so the
    report stays small whatever the number of subtasks; None for other payloads."""
    dicts = [r for r in results if isinstance(r, dict)]
    if not dicts:
        return None
    keys = [k for k in dicts[0] if k not in ("task_id", "data_size_mb")]
    return {k: sum(d[k] for d in dicts) / len(dicts) for k in keys}
