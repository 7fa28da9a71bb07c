"""The parallel run's dealing (tests/parallel.py): pure logic, on made-up collections."""

from __future__ import annotations

from parallel import WEIGHTS, deal

LONG, SLOW, FAST = WEIGHTS["long"], WEIGHTS["slow"], WEIGHTS[""]


def test_serial_tests_are_held_apart_and_the_rest_dealt_once() -> None:
    collection = ["a.py::t1", "b.py::serial1", "a.py::t2", "c.py::serial2"]
    plan = {"b.py::serial1": (SLOW, True), "c.py::serial2": (FAST, True)}
    queues, held = deal(collection, plan, 3)
    assert held == [1, 3]
    assert sorted(i for q in queues for i in q) == [0, 2]


def test_long_tests_go_one_per_queue_and_first() -> None:
    collection = [f"soak.py::t{i}" for i in range(3)] + [f"fast.py::t{i}" for i in range(30)]
    plan = {f"soak.py::t{i}": (LONG, False) for i in range(3)}
    queues, _ = deal(collection, plan, 3)
    assert sorted(q[0] for q in queues) == [0, 1, 2]
    assert all(sum(i < 3 for i in q) == 1 for q in queues)


def test_a_modules_other_tests_stay_together() -> None:
    collection = [f"stack.py::t{i}" for i in range(5)] + [f"x{i}.py::t" for i in range(8)]
    plan = {f"stack.py::t{i}": (SLOW, False) for i in range(5)}
    queues, _ = deal(collection, plan, 4)
    (holder,) = [q for q in queues if 0 in q]
    assert holder[:5] == [0, 1, 2, 3, 4]


def test_queues_are_even_by_weight() -> None:
    collection = [f"m{i}.py::t" for i in range(40)]
    plan = {n: (SLOW if i % 2 else FAST, False) for i, n in enumerate(collection)}
    loads = [sum(plan[collection[i]][0] for i in q) for q in deal(collection, plan, 4)[0]]
    assert max(loads) - min(loads) <= SLOW
