"""The local stack's restart policy: compose's `restart: unless-stopped`, with a back-off and a
crash-loop limit, and the record of every restart that `stack.json` and the stop report show."""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# A service that dies sooner than this after its start did not really start. The first such
# death restarts at once, each next one waits twice as long (from BACKOFF_FIRST_S: 1, 2, 4 s),
# and CRASH_LOOP_LIMIT in a row end the stack. Docker counts the same way (its delay doubles from
# 100 ms and resets after 10 s of running).
QUICK_EXIT_S = 10.0
BACKOFF_FIRST_S = 1.0
CRASH_LOOP_LIMIT = 5


class CrashLoop(Exception):
    """A service died CRASH_LOOP_LIMIT times in a row right after starting; restarting is futile."""


def describe_exit(returncode: int | None) -> str:
    """'exited with code 1' or 'was killed by SIGKILL' (Popen's negative returncode)."""
    if returncode is None:
        return "is running"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Restart:
    """One restart: which service, how its process ended, after how long, and what replaced it."""

    service: str
    old_pid: int
    exit: str
    ran_s: float
    died_at: float  # unix time the supervisor saw it dead
    restarted_at: float | None = None  # unix time the new process was started
    new_pid: int | None = None
    error: str | None = None  # why the restart itself failed (it is tried again)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RestartPolicy:
    """When each dead service may be restarted, and when to give up on it."""

    quick_exits: dict[str, int] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)  # monotonic time of the next attempt
    # When each death was first seen (unix time) and how long the process had run: a restart
    # after a back-off reports these, not the time it restarted.
    noticed: dict[str, tuple[float, float]] = field(default_factory=dict)

    def on_death(self, name: str, ran_s: float, now: float | None = None) -> float:
        """Note a death; return the monotonic time its restart is due. Raises CrashLoop."""
        now = time.monotonic() if now is None else now
        if name in self.due:
            return self.due[name]  # already noted; still waiting for its back-off
        self.noticed[name] = (time.time(), ran_s)
        quick = self.quick_exits.get(name, 0) + 1 if ran_s < QUICK_EXIT_S else 0
        self.quick_exits[name] = quick
        if quick >= CRASH_LOOP_LIMIT:
            raise CrashLoop(
                f"{name} died {quick} times in a row within {QUICK_EXIT_S:g} s of starting"
            )
        # The first death restarts at once: a soak measures how fast the stack recovers.
        delay = 0.0 if quick <= 1 else BACKOFF_FIRST_S * 2 ** (quick - 2)
        self.due[name] = now + delay
        return self.due[name]

    def restarted(self, name: str) -> None:
        """The restart was tried (it may have failed: the next death is noted afresh)."""
        self.due.pop(name, None)
        self.noticed.pop(name, None)
