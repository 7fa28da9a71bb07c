"""Durations, parsed in one place: Prometheus's syntax (`90s`, `30m`, `1h30m`, `500ms`) for what
Prometheus reads too (rule `for:`, evaluation intervals, `--last`), and on the command line also a
bare number of seconds.

Ours, not a library's, for a measured reason (PyPI, December 2026; promtool 2.42 of the stack):
- promql-parser 0.12 (Prometheus's parser in Rust) refuses `0s` and `0`, which promtool accepts
  as a rule's `for:`, and takes `10` (PromQL 3's number-as-seconds), which promtool refuses in a
  rule file; it also adds a 4.8 MB compiled extension to the stdlib-only rule generator.
- durationpy 0.11 (Go's time.ParseDuration) takes `1.5h`, `-1h`, `1m1h` and `1h1h`;
  pytimeparse 1.1.10 takes `1 h`, `30M` and `2 hours` and refuses `500ms` and `1y`. A rule
  generated from any of those would fail promtool.
The grammar below is Prometheus's model.ParseDuration: each unit at most once, largest first,
whole numbers, `0` without a unit; every case is in tests/test_durations.py.
"""

from __future__ import annotations

import math
import re

# Prometheus's units in the order a duration must give them: y=365d, w=7d.
UNITS: tuple[tuple[str, float], ...] = (
    *(("y", 365 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)),
    *(("s", 1), ("ms", 0.001)),
)
_DURATION = re.compile("".join(rf"(?:(?P<{u}>\d+){u})?" for u, _ in UNITS))
EXAMPLES = "e.g. 90s, 30m, 2h, 1d, 1h30m"


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; ValueError (with the reason) otherwise."""
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a Prometheus duration ({EXAMPLES}): {text!r}")
    return float(sum(int(match[u]) * size for u, size in UNITS if match[u] is not None))


def parse_seconds(text: str, *, zero: bool = True) -> float:
    """A command line's duration: a bare number of seconds (`90`, `2.5`) or a Prometheus
    duration; finite, not negative, and above 0 unless `zero`; else ValueError."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = parse_duration(text)
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"must be a number of seconds >= 0 or a duration ({EXAMPLES}): {text!r}"
            )
    if seconds == 0 and not zero:
        raise ValueError(f"must be longer than 0: {text!r}")
    return seconds
