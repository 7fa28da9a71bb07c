"""Running the suite in parallel (pytest-xdist): how many workers, which test goes where, and the
`serial` tests, which run one at a time with the CPU theirs.

The suite mostly waits on real processes (workers starting, Prometheus scraping), so it runs
more workers than cores. A test marked `serial` measures something CPU contention would disturb
(a latency, a deadline, a solo-against-concurrent timing). The serial tests all run first, one
after another, on the first worker (gw0); every other worker runs at nice 19, it and every
process its tests start, so the kernel gives the CPU to the serial test's processes whenever
they want it (CFS weights 1024 against 15: 98.5% of a contended core) and the rest of the suite
gets what they leave. They are not stalled behind an exclusive lock: the suite goes on beside
them. tests/test_parallel.py checks the dealing; the serial tests, run under nice-19 CPU hogs,
pass (docs/performance.md, "Test suite").

A test marked `long` (most of a minute or more: a soak, an alert's `for`) is dealt out first,
each to the least loaded worker, so that no worker ends the run with two in a row. The other
tests of a module go to one worker together, so its module fixtures (a stack, a Prometheus)
start once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

SERIAL, LONG, SLOW = "serial", "long", "slow"
# Where the workers meet: made by the controller, inherited by the workers it spawns.
ROOM_ENV = "MEMBENCH_TEST_ROOM"
PLAN = "plan.tsv"  # per test: node id, weight, serial (1/0); written by every worker, identical
SERIAL_WORKER = "gw0"
BACKGROUND_NICE = 19
# Waiting tests outnumber the cores this much before the machine runs out of CPU (measured on 2
# cores: docs/performance.md, "Test suite").
WORKERS_PER_CORE = 4
MAX_WORKERS = 16
# Rough seconds, to deal the tests out evenly: a long test, another slow one, a fast one.
WEIGHTS = {LONG: 60.0, SLOW: 8.0, "": 0.1}

Plan = dict[str, tuple[float, bool]]


def auto_workers() -> int:
    return min(MAX_WORKERS, WORKERS_PER_CORE * (os.cpu_count() or 1))


_room_key = pytest.StashKey[Path]()


def configure(config: pytest.Config) -> None:
    """The controller of a parallel run makes the directory its workers share; a worker other
    than the serial one lowers its priority (and so its tests' processes')."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        if worker != SERIAL_WORKER:
            os.nice(BACKGROUND_NICE)
        return
    if config.getoption("numprocesses", None):
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


def write_plan(items: list[pytest.Item]) -> None:
    """Check the serial markers and, in a parallel run, write the plan for the controller's
    scheduler (it knows node ids only): each test's weight and whether it is serial."""
    for item in items:
        marker = item.get_closest_marker(SERIAL)
        if marker is not None and not marker.kwargs.get("reason"):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.serial(reason=...) says why")
    room = os.environ.get(ROOM_ENV)
    if room and os.environ.get("PYTEST_XDIST_WORKER"):
        lines = (
            f"{i.nodeid}\t{weight(i)}\t{int(i.get_closest_marker(SERIAL) is not None)}"
            for i in items
        )
        partial = Path(room) / f"{PLAN}.{os.getpid()}"
        partial.write_text("\n".join(lines))
        partial.replace(Path(room) / PLAN)


def read_plan(path: Path) -> Plan:
    """Per node id: its weight and whether it is serial, as the workers wrote them."""
    plan = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        nodeid, weight, serial = line.rsplit("\t", 2)
        plan[nodeid] = (float(weight), serial == "1")
    return plan


def deal(collection: Sequence[str], plan: Plan, hands: int) -> list[list[int]]:
    """The collection's indices dealt into `hands` queues of even weight. The serial tests head
    the first queue. Then a long test is dealt alone and the other tests of a module together,
    heaviest first, each to the lightest queue (longest processing time first): every queue
    starts with its long tests and ends with fast ones, which an idle worker may steal."""
    queues: list[list[int]] = [[] for _ in range(hands)]
    loads = [0.0] * hands
    units: dict[str, list[int]] = {}
    for index, nodeid in enumerate(collection):
        weight, serial = plan.get(nodeid, (WEIGHTS[""], False))
        if serial:
            queues[0].append(index)
            loads[0] += weight
        else:
            unit = nodeid if weight >= WEIGHTS[LONG] else nodeid.split("::")[0]
            units.setdefault(unit, []).append(index)

    def unit_weight(indices: list[int]) -> float:
        return sum(plan.get(collection[i], (WEIGHTS[""], False))[0] for i in indices)

    for indices in sorted(units.values(), key=unit_weight, reverse=True):
        lightest = loads.index(min(loads))
        queues[lightest].extend(indices)
        loads[lightest] += unit_weight(indices)
    return queues


def serial_first_scheduler(config: pytest.Config, log: Any) -> Any:
    """Work stealing (an idle worker takes the back half of the longest queue) from the queues
    `deal` makes; the serial worker's queue is not stolen from while a serial test is in it."""
    from xdist.scheduler import WorkStealingScheduling

    class SerialFirst(WorkStealingScheduling):  # type: ignore[misc]
        serial: frozenset[int] | None = None

        def check_schedule(self) -> None:
            if self.serial is None and self.collection is not None:
                nodes = sorted(self.node2pending, key=lambda n: str(n.gateway.id))
                plan = read_plan(Path(os.environ[ROOM_ENV]) / PLAN)
                self.serial = frozenset(
                    i for i, n in enumerate(self.collection) if plan.get(n, (0, False))[1]
                )
                hands = deal(self.collection, plan, len(nodes))
                self.pending[:] = [i for hand in hands for i in hand]
                for node, hand in zip(nodes, hands, strict=True):
                    self._send_tests(node, len(hand))
            guarded = {
                node: pending
                for node, pending in self.node2pending.items()
                if self.serial and self.serial.intersection(pending)
            }
            for node in guarded:
                del self.node2pending[node]
            try:
                super().check_schedule()
            finally:
                self.node2pending.update(guarded)

    return SerialFirst(config, log)
