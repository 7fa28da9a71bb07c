"""The validated parameters of one process_batch task, shared by the CLI, loadgen and the task."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

STRATEGIES = ("threads", "sequential", "greenlets")
PAYLOADS = ("bytes", "records", "dicts")
MIB = 1024 * 1024

# Bounds that keep a typo from taking the machine down; real uses sit far inside them.
MAX_SUBTASKS = 1_000_000
MAX_WORKERS = 10_000
MAX_SIZE_MB = 64 * 1024.0
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


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidParameter(field, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


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
            size_mb=_float("size_mb", raw["size_mb"], 0.0, MAX_SIZE_MB, low_open=True),
            hold_s=_float("hold_s", raw["hold_s"], 0.0, MAX_HOLD_S, low_open=False),
            workers=_int("workers", raw["workers"], 1, MAX_WORKERS),
            strategy=_choice("strategy", raw["strategy"], STRATEGIES),
            payload=_choice("payload", raw.get("payload", "bytes"), PAYLOADS),
        )

    @property
    def size_bytes(self) -> int:
        return int(self.size_mb * MIB)

    def ideal_seconds(self) -> float:
        """Wall time if only holds counted: ceil(subtasks/workers) x hold, or subtasks x hold."""
        concurrent = self.strategy != "sequential"
        rounds = -(-self.subtasks // self.workers) if concurrent else self.subtasks
        return rounds * self.hold_s

    def deadline_seconds(self) -> float:
        """A generous limit for one task (>= 60 s); building data is bounded by memory bandwidth:
        allow ~50 MB/s per subtask on a slow machine."""
        build = self.subtasks * self.size_mb / 50
        return 60 + 3 * (self.ideal_seconds() + build)

    def held_at_once(self) -> int:
        """Subtasks whose data is alive at the same time: the floor of the task's memory."""
        return 1 if self.strategy == "sequential" else min(self.workers, self.subtasks)

    def as_kwargs(self) -> dict[str, Any]:
        return asdict(self)
