"""The validated parameters of one process_batch task, shared by the CLI, loadgen and the task."""

from __future__ import annotations

import keyword
import math
from dataclasses import asdict, dataclass
from typing import Any

from membench.units import GIB, MIB

STRATEGIES = ("threads", "sequential", "greenlets")
# Data shapes (workers/payload.py), the seed's numpy subtask, and subtasks that compute for the
# hold instead of sleeping (workers/cpu_payload.py). Beside these, MODULE:FUNCTION (user code).
DATA_PAYLOADS = ("bytes", "records", "dicts")
CPU_PAYLOADS = ("cpu-numpy", "cpu-python")
PAYLOADS = (*DATA_PAYLOADS, "numpy", *CPU_PAYLOADS)
MAX_SPEC_CHARS = 200

# Bounds that keep a typo from taking the machine down; real uses sit far inside them.
MAX_SUBTASKS = 1_000_000
MAX_WORKERS = 10_000
MAX_SIZE_MB = 64 * GIB / MIB
# A subtask builds at least one page: a size that rounds to nothing would report "ok" having
# built nothing (a record or dict payload's unit is larger still, and says so itself).
MIN_SIZE_BYTES = 4096
MAX_HOLD_S = 3600.0


class InvalidParameter(ValueError):
    """A parameter is out of range; `field` names it so a CLI can name its flag."""

    def __init__(self, field: str, message: str) -> None:
        # args = (field, message): Celery pickles a task's exception (and rebuilds it from args on
        # the client); one formatted arg could not be rebuilt, so workers saw a plain ValueError.
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _int(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidParameter(field, f"must be an integer, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise InvalidParameter(field, f"must be an integer, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise InvalidParameter(field, f"must be an integer, got {value!r}")
    if not low <= number <= high:
        raise InvalidParameter(field, f"must be between {low} and {high}, got {value!r}")
    return int(number)


def _float(field: str, value: Any, low: float, high: float, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidParameter(field, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise InvalidParameter(field, f"must be a number, got {value!r}") from None
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        bound = f"> {low}" if low_open else f">= {low}"
        raise InvalidParameter(field, f"must be {bound} and <= {high}, got {value!r}")
    return number


def _size_mb(value: Any) -> float:
    size_mb = _float("size_mb", value, 0.0, MAX_SIZE_MB, low_open=True)
    if int(size_mb * MIB) < MIN_SIZE_BYTES:
        minimum = MIN_SIZE_BYTES / MIB
        raise InvalidParameter(
            "size_mb", f"must build at least {MIN_SIZE_BYTES} bytes ({minimum:g} MB), got {value!r}"
        )
    return size_mb


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidParameter(field, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def is_user_payload(payload: str) -> bool:
    """Whether `payload` is the MODULE:FUNCTION form (the syntax only; nothing is imported)."""
    module, colon, function = payload.partition(":")
    parts = [*module.split("."), function]
    return bool(colon) and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts)


def validate_payload(value: Any) -> str:
    """A built-in payload name or a MODULE:FUNCTION spec; raises InvalidParameter."""
    if value in PAYLOADS:
        return str(value)
    if isinstance(value, str) and len(value) <= MAX_SPEC_CHARS and is_user_payload(value):
        return value
    raise InvalidParameter(
        "payload", f"must be one of {', '.join(PAYLOADS)} or MODULE:FUNCTION, got {value!r}"
    )


@dataclass(frozen=True, slots=True)
class BatchParams:
    subtasks: int
    size_mb: float
    hold_s: float
    workers: int
    strategy: str
    payload: str = "bytes"

    @classmethod
    def validate(cls, raw: dict[str, Any]) -> BatchParams:
        """Build from untrusted input (CLI, schedule, task message); raises InvalidParameter."""
        unknown = set(raw) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise InvalidParameter(sorted(unknown)[0], "unknown parameter")
        for required in ("subtasks", "size_mb", "hold_s", "workers", "strategy"):
            if required not in raw:
                raise InvalidParameter(required, "is required")
        return cls(
            subtasks=_int("subtasks", raw["subtasks"], 1, MAX_SUBTASKS),
            size_mb=_size_mb(raw["size_mb"]),
            hold_s=_float("hold_s", raw["hold_s"], 0.0, MAX_HOLD_S, low_open=False),
            workers=_int("workers", raw["workers"], 1, MAX_WORKERS),
            strategy=_choice("strategy", raw["strategy"], STRATEGIES),
            payload=validate_payload(raw.get("payload", "bytes")),
        )

    @property
    def size_bytes(self) -> int:
        return int(self.size_mb * MIB)

    @property
    def computes(self) -> bool:
        """The hold is CPU time spent computing (cpu-*), not a sleep."""
        return self.payload in CPU_PAYLOADS

    def ideal_seconds(self) -> float:
        """Wall time if only holds counted: ceil(subtasks/workers) x hold, or subtasks x hold
        (sequential, and CPU holds, which at worst share one core)."""
        concurrent = self.strategy != "sequential" and not self.computes
        rounds = -(-self.subtasks // self.workers) if concurrent else self.subtasks
        return rounds * self.hold_s

    def deadline_seconds(self) -> float:
        """A generous limit for one task (>= 60 s); building data is bounded by memory bandwidth:
        allow ~50 MB/s per subtask on a slow machine. User code may compute: holds run serially."""
        build = self.subtasks * self.size_mb / 50
        holds = self.subtasks * self.hold_s if is_user_payload(self.payload) else 0.0
        return 60 + 3 * (max(self.ideal_seconds(), holds) + build)

    def held_at_once(self) -> int:
        """Subtasks whose data is alive at the same time: the floor of the task's memory."""
        return 1 if self.strategy == "sequential" else min(self.workers, self.subtasks)

    def floor_bytes(self, pool: str) -> int | None:
        """Live data the approach must hold at once; None for user code (unknown). Under gevent
        a computing subtask never yields, so its greenlets hold one subtask's data at a time."""
        if is_user_payload(self.payload):
            return None
        at_once = 1 if self.computes and pool == "gevent" else self.held_at_once()
        return at_once * self.size_bytes

    def as_kwargs(self) -> dict[str, Any]:
        return asdict(self)
