"""Running the suite in parallel (pytest-xdist): how many workers, which test goes where, and the
`serial` tests, which run with no other test beside them.

The suite mostly waits on real processes (workers starting, Prometheus scraping), so it runs
more workers than cores. A test marked `serial` asserts something CPU contention would disturb
(a latency, a deadline, a solo-against-concurrent timing, Celery's own time around a task). It
holds the hall exclusively: a readers-writer lock on a file every worker shares, with a
turnstile in front so that a waiting serial test is not starved by the tests that keep
starting. The scheduler holds the serial tests back until every worker is on its last test, so
that a serial test waits for the end of the run, not for a soak's two minutes while every other
worker stands still.
Priority alone is not enough (them at nice 0, every other worker at nice 19): under the whole
suite three of them still failed, as the CPU is not all that a busy machine shares.

A test marked `long` (most of a minute or more: a soak, an alert's `for`) is dealt out first,
each to the least loaded worker, so that no worker ends the run with two in a row. The other
tests of a module go to one worker together, so its module fixtures (a stack, a Prometheus)
start once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

SERIAL, LONG, SLOW = "serial", "long", "slow"
# Where the workers meet: made by the controller, inherited by the workers it spawns.
ROOM_ENV = "MEMBENCH_TEST_ROOM"
PLAN = "plan.tsv"  # per test: node id, weight, serial (1/0); written by every worker, identical
# More workers than cores: most tests wait on processes. At 4 per core (8 on 2 cores) the CPU
# is the limit (docs/performance.md, "Test suite").
WORKERS_PER_CORE = 4
MAX_WORKERS = 16
# Rough seconds, to deal the tests out evenly: a long test, another slow one, a fast one.
WEIGHTS = {LONG: 60.0, SLOW: 8.0, "": 0.1}
UNPLANNED = (WEIGHTS[""], False)  # a test the workers' plan does not name

Plan = dict[str, tuple[float, bool]]


def auto_workers() -> int:
    return min(MAX_WORKERS, WORKERS_PER_CORE * (os.cpu_count() or 1))


_room_key = pytest.StashKey[Path]()


def configure(config: pytest.Config) -> None:
    """The controller of a parallel run makes the directory its workers share."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None and config.getoption("numprocesses", None):
        room = tempfile.mkdtemp(prefix="membench-tests-")
        os.environ[ROOM_ENV] = room
        config.stash[_room_key] = Path(room)


def unconfigure(config: pytest.Config) -> None:
    room = config.stash.get(_room_key, None)
    if room is not None:
        shutil.rmtree(room, ignore_errors=True)
        os.environ.pop(ROOM_ENV, None)


def weight(item: pytest.Item) -> float:
    """What `item` weighs when the scheduler deals the tests out."""
    for marker in (LONG, SLOW):
        if item.get_closest_marker(marker) is not None:
            return WEIGHTS[marker]
    return WEIGHTS[""]


def _room() -> Path | None:
    """The directory a parallel run's workers share; None when the tests run in one process."""
    room = os.environ.get(ROOM_ENV)
    return Path(room) if room and os.environ.get("PYTEST_XDIST_WORKER") else None


def write_plan(items: list[pytest.Item]) -> None:
    """Check the serial markers and, in a parallel run, write the plan for the controller's
    scheduler (it knows node ids only): each test's weight and whether it is serial."""
    lines = []
    for item in items:
        marker = item.get_closest_marker(SERIAL)
        if marker is not None and not marker.kwargs.get("reason"):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.serial(reason=...) says why")
        lines.append(f"{item.nodeid}\t{weight(item)}\t{int(marker is not None)}")
    room = _room()
    if room is not None:
        partial = room / f"{PLAN}.{os.getpid()}"
        partial.write_text("\n".join(lines))
        partial.replace(room / PLAN)


_locks: dict[str, int] = {}


def _lock_file(room: Path, name: str) -> int:
    if name not in _locks:
        _locks[name] = os.open(room / name, os.O_RDWR | os.O_CREAT, 0o600)
    return _locks[name]


@contextmanager
def in_hall(item: pytest.Item) -> Iterator[None]:
    """Hold the hall for `item`'s setup, call and teardown: shared, or alone if it is serial."""
    room = _room()
    if room is None:
        yield
        return
    turnstile, hall = _lock_file(room, "turnstile"), _lock_file(room, "hall")
    alone = item.get_closest_marker(SERIAL) is not None
    fcntl.flock(turnstile, fcntl.LOCK_EX)
    try:
        fcntl.flock(hall, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
    finally:
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
    try:
        yield
    finally:
        fcntl.flock(hall, fcntl.LOCK_UN)
        if alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)


def read_plan(path: Path) -> Plan:
    """Per node id: its weight and whether it is serial, as the workers wrote them."""
    plan = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        nodeid, weight, serial = line.rsplit("\t", 2)
        plan[nodeid] = (float(weight), serial == "1")
    return plan


def deal(collection: Sequence[str], plan: Plan, hands: int) -> tuple[list[list[int]], list[int]]:
    """The collection's indices dealt into `hands` queues of even weight, and the serial ones
    held apart. A long test is dealt alone and the other tests of a module together, heaviest
    first, each to the lightest queue (longest processing time first): every queue starts with
    its long tests and ends with fast ones, which an idle worker may steal."""
    units: dict[str, list[int]] = {}
    unit_weights: dict[str, float] = {}
    held = []
    for index, nodeid in enumerate(collection):
        weight, serial = plan.get(nodeid, UNPLANNED)
        if serial:
            held.append(index)
            continue
        unit = nodeid if weight >= WEIGHTS[LONG] else nodeid.split("::")[0]
        units.setdefault(unit, []).append(index)
        unit_weights[unit] = unit_weights.get(unit, 0.0) + weight
    queues: list[list[int]] = [[] for _ in range(hands)]
    loads = [0.0] * hands
    for unit in sorted(units, key=unit_weights.__getitem__, reverse=True):
        lightest = loads.index(min(loads))
        queues[lightest].extend(units[unit])
        loads[lightest] += unit_weights[unit]
    return queues, held


def serial_last_scheduler(config: pytest.Config, log: Any) -> Any:
    """Work stealing (an idle worker takes the back half of the longest queue) from the queues
    `deal` makes; the serial tests are handed out once every worker is on its last test."""
    from xdist.scheduler import WorkStealingScheduling

    class SerialLast(WorkStealingScheduling):  # type: ignore[misc]
        held: list[int] | None = None

        def check_schedule(self) -> None:
            if self.held is None and self.collection is not None:
                nodes = [n for n in self.node2pending if not n.shutting_down]
                plan = read_plan(Path(os.environ[ROOM_ENV]) / PLAN)
                hands, self.held = deal(self.collection, plan, len(nodes))
                self.pending[:] = [i for hand in hands for i in hand]
                for node, hand in zip(nodes, hands, strict=True):
                    self._send_tests(node, len(hand))
            # Once every worker is on its last test: a serial test waits for those to end.
            last = all(len(queue) <= 1 for queue in self.node2pending.values())
            if self.held and not self.pending and last:
                self.pending[:], self.held = self.held, []
            super().check_schedule()

        @property
        def tests_finished(self) -> bool:
            return not self.held and bool(super().tests_finished)

    return SerialLast(config, log)
