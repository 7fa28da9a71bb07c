"""Read and validate a loadgen schedule: a TOML [defaults] table plus one table per scenario.

Every error is one line naming the file, the table and the key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from membench.files import UnreadableFile, read_regular_file
from membench.units import MIB
from membench.workers.params import BatchParams, InvalidParameter, is_user_payload
from membench.workers.scenarios import SCENARIOS
from membench.workers.user_payload import PayloadError, resolve

EXAMPLE_SCHEDULE = Path(__file__).with_name("schedule.example.toml")
# `membench run`'s defaults, so a scenario table may be empty.
BUILTIN_PARAMS: dict[str, Any] = {
    "subtasks": 10,
    "size_mb": 20.0,
    "hold_s": 0.5,
    "workers": 4,
    "payload": "bytes",
}
PARAM_KEYS = ("subtasks", "size_mb", "hold_s", "workers", "payload")
TIMING_KEYS = ("period_s", "jitter_s", "deadline_s")
DEFAULTS_KEYS = (*PARAM_KEYS, "time", *TIMING_KEYS)
SCENARIO_KEYS = (*DEFAULTS_KEYS, "queue")
# Bounded so that a typo cannot overflow threading's timeouts; a week is far beyond any soak.
MAX_SECONDS = 7 * 24 * 3600.0
MIN_PERIOD_S = 1.0


class ScheduleError(ValueError):
    """The schedule file is unusable; the one-line message names the file, table and key."""


# ---- schedule ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioPlan:
    """What to fire for one scenario, how often, and how long to wait for its result."""

    scenario: str
    params: BatchParams
    period_s: float
    jitter_s: float = 0.0
    deadline_s: float | None = None  # None: derived from the parameters
    queue: str = ""  # "": membench.<scenario>, the queue `membench worker` consumes

    @property
    def queue_name(self) -> str:
        return self.queue or f"membench.{self.scenario}"

    @property
    def generous_deadline_s(self) -> float:
        """`membench run`'s deadline for these parameters (>= 60 s)."""
        return self.params.deadline_seconds()

    @property
    def effective_deadline_s(self) -> float:
        return self.deadline_s if self.deadline_s is not None else self.generous_deadline_s


@dataclass(frozen=True)
class Schedule:
    source: str
    plans: list[ScenarioPlan]


# The most of a schedule file read: a few scenarios take a few hundred bytes.
SCHEDULE_LIMIT = MIB


def load_schedule(path: str | Path) -> Schedule:
    """Read and validate a schedule file; raises ScheduleError."""
    source = str(path)
    try:
        text = read_regular_file(path, SCHEDULE_LIMIT).decode("utf-8")
    except UnreadableFile as exc:
        raise ScheduleError(f"{source}: {exc}") from None
    except OSError as exc:
        raise ScheduleError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScheduleError(f"{source}: not UTF-8 text: {exc.reason}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScheduleError(f"{source}: invalid TOML: {exc}") from None
    return parse_schedule(document, source)


def _where(table: str, key: str, origin: str) -> str:
    return f"[{table}] {key}" if origin == table else f"[{table}] {key} (from [{origin}])"


def _seconds(value: Any, *, allow_zero: bool) -> float:
    """A finite number of seconds; raises ValueError with the reason."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    if number > MAX_SECONDS:
        raise ValueError(f"must be <= {MAX_SECONDS:.0f}, got {value!r}")
    return number


def _table(source: str, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScheduleError(f"{source}: [{name}]: must be a table, got {value!r}")
    return value


def _check_keys(source: str, table: str, raw: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in raw:
        if key not in allowed:
            hint = ""
            if key in ("strategy", "pool"):
                hint = "; the scenario decides it"
            elif key == "queue":
                hint = "; set it per scenario, two scenarios must not share a queue"
            raise ScheduleError(
                f"{source}: [{table}] {key}: unknown key (allowed: {', '.join(allowed)}){hint}"
            )
    if "time" in raw and "hold_s" in raw:
        raise ScheduleError(f"{source}: [{table}] time: `time` and `hold_s` are the same key")


def parse_schedule(document: Mapping[str, Any], source: str = "<schedule>") -> Schedule:
    """Validate a parsed TOML document: [defaults] plus one [scenarios.NAME] table per scenario."""
    for key in document:
        if key not in ("defaults", "scenarios"):
            raise ScheduleError(
                f"{source}: {key}: unknown top-level key (expected [defaults] and "
                f"[scenarios.NAME] tables)"
            )
    defaults = _table(source, "defaults", document.get("defaults", {}))
    _check_keys(source, "defaults", defaults, DEFAULTS_KEYS)
    scenarios = _table(source, "scenarios", document.get("scenarios", {}))
    if not scenarios:
        raise ScheduleError(f"{source}: [scenarios]: no scenario (add a [scenarios.NAME] table)")
    plans: list[ScenarioPlan] = []
    queues: dict[str, str] = {}
    for name, raw_table in scenarios.items():
        table = f"scenarios.{name}"
        if name not in SCENARIOS:
            raise ScheduleError(
                f"{source}: [{table}]: unknown scenario {name!r} "
                f"(choose from {', '.join(SCENARIOS)})"
            )
        raw = _table(source, table, raw_table)
        _check_keys(source, table, raw, SCENARIO_KEYS)
        plan = _plan(source, name, defaults, raw)
        if plan.queue_name in queues:
            raise ScheduleError(
                f"{source}: [{table}] queue: {plan.queue_name!r} is already the queue of "
                f"{queues[plan.queue_name]}"
            )
        queues[plan.queue_name] = name
        plans.append(plan)
    return Schedule(source, plans)


def _plan(
    source: str, name: str, defaults: Mapping[str, Any], raw: Mapping[str, Any]
) -> ScenarioPlan:
    table = f"scenarios.{name}"
    # Each value with the table it came from and the spelling the user wrote, for messages.
    merged: dict[str, tuple[Any, str, str]] = {
        k: (v, "built-in default", k) for k, v in BUILTIN_PARAMS.items()
    }
    for origin, layer in (("defaults", defaults), (table, raw)):
        for key, value in layer.items():
            canonical = "hold_s" if key == "time" else key
            merged[canonical] = (value, origin, key)

    def where(key: str) -> str:
        if key not in merged:
            return f"[{table}] {key}"
        _, origin, spelled = merged[key]
        return _where(table, spelled, origin)

    def fail(key: str, message: str) -> ScheduleError:
        return ScheduleError(f"{source}: {where(key)}: {message}")

    try:
        params = BatchParams.validate(
            {k: merged[k][0] for k in PARAM_KEYS} | {"strategy": SCENARIOS[name].strategy}
        )
    except InvalidParameter as exc:
        raise fail(exc.field, exc.message) from None
    if is_user_payload(params.payload):  # user code must resolve here, as in `membench run`
        try:
            resolve(params.payload)
        except PayloadError as exc:
            raise fail("payload", str(exc)) from None

    if "period_s" not in merged:
        raise ScheduleError(
            f"{source}: [{table}] period_s: is required (set it in [defaults] or the scenario)"
        )
    timing: dict[str, float] = {}
    for key in TIMING_KEYS:
        if key in merged:
            try:
                timing[key] = _seconds(merged[key][0], allow_zero=key == "jitter_s")
            except ValueError as exc:
                raise fail(key, str(exc)) from None
    period, jitter = timing["period_s"], timing.get("jitter_s", 0.0)
    if period < MIN_PERIOD_S:
        # The scheduler accounts firings, skips and deadlines to about a second (its result
        # wait polls in 1 s steps): a shorter period only spins a core counting skips.
        raise fail("period_s", f"must be >= {MIN_PERIOD_S:g} s, got {period:g}")
    if jitter >= period:
        # Firings would overtake each other and the period would no longer mean anything.
        raise fail("jitter_s", f"must be < period_s ({period:g}), got {jitter:g}")
    queue = raw.get("queue", "")
    if "queue" in raw and (not isinstance(queue, str) or not queue.strip() or " " in queue):
        raise fail("queue", f"must be a non-empty queue name without spaces, got {queue!r}")
    return ScenarioPlan(name, params, period, jitter, timing.get("deadline_s"), queue)
