"""The range a report covers: Prometheus durations (30m, 1h30m), RFC3339 or unix times, and
the resolution of --last/--start/--end into one window of whole seconds."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_LAST = "1h"
# Prometheus's own units and their order (model/time.go ParseDuration): y=365d, w=7d.
_UNITS: tuple[tuple[str, float], ...]  # ms is a fraction of a second
_UNITS = (("y", 365 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60))
_UNITS += (("s", 1), ("ms", 0.001))
_DURATION = re.compile("".join(rf"(?:(?P<{u}>\d+){u})?" for u, _ in _UNITS))


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (`30m`, `2h`, `1d`, `1h30m`); ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"not a Prometheus duration (e.g. 30m, 2h, 1d, 1h30m): {text!r}")
    seconds = sum(int(match[u]) * size for u, size in _UNITS if match[u] is not None)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0: {text!r}")
    return seconds


def parse_time(text: str) -> float:
    """Unix seconds from unix seconds or an RFC3339 time with its offset (`...Z`, `...+02:00`)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"not a time: {text!r}")
        return value
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not RFC3339 (2024-05-01T12:00:00Z) or unix seconds: {text!r}") from None
    if moment.tzinfo is None:
        # A time without an offset means a different instant on every machine.
        raise ValueError(f"needs a UTC offset (Z or +HH:MM): {text!r}")
    return moment.timestamp()


def rfc3339(unix: float) -> str:
    moment = datetime.fromtimestamp(unix, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Window:
    """The seconds before `end`; queries evaluate at `end` (the `@` modifier) over `[Ns]`."""

    end: float
    seconds: int

    @property
    def start(self) -> float:
        return self.end - self.seconds

    @property
    def promql_range(self) -> str:
        return f"{self.seconds}s"

    @property
    def at(self) -> str:
        return f"{self.end:.3f}"

    def describe(self) -> str:
        return f"{rfc3339(self.start)} to {rfc3339(self.end)}"


class RangeError(ValueError):
    """A bad range, naming the flag it came from."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


def resolve_range(last: str | None, start: str | None, end: str | None, now: float) -> Window:
    """--last D (ending at --end or now; default 1h), or --start T [--end T]; never both."""
    if last is not None and start is not None:
        raise RangeError("--last", "give --last or --start, not both")

    def parsed(flag: str, text: str, parse: Callable[[str], float]) -> float:
        try:
            return parse(text)
        except ValueError as exc:
            raise RangeError(flag, str(exc)) from None

    # Milliseconds, as Prometheus keeps time: the `@` of the queries is then exactly `end`.
    end_s = round(now if end is None else parsed("--end", end, parse_time), 3)
    if start is not None:
        start_s = parsed("--start", start, parse_time)
        if start_s >= end_s:
            raise RangeError("--start", f"{start} is not before the end ({rfc3339(end_s)})")
        seconds = end_s - start_s
    else:
        seconds = parsed("--last", last or DEFAULT_LAST, parse_duration)
    # Range selectors take whole units; round up so the window never drops a sample at start.
    return Window(end_s, max(1, math.ceil(seconds - 1e-9)))
