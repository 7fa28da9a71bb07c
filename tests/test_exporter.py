"""The instrument on a user's app: the example app's real workers under prefork, gevent, threads
and solo, a real redis-server and a real Prometheus scraping every process through file_sd."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import prometheus_query, require_binary, samples, scrape, start_prometheus, value
from instrumented import ExampleWorker, StartExample, start_example_worker, task_value

from membench.exporter import names
from membench.processes import free_port, port_in_use, stop, wait_for
from membench.units import MIB

pytestmark = pytest.mark.slow

ALLOCATE, LEAK, FAIL, SLEEP = "proj.allocate", "proj.leak", "proj.fail", "proj.sleep"


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file_sd directory for every worker of this module, as in a real deployment."""
    return tmp_path_factory.mktemp("targets")


@pytest.fixture(scope="module")
def prometheus(targets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = require_binary("prometheus")
    where = tmp_path_factory.mktemp("prometheus")
    config = where / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: celery\n"
        f"    file_sd_configs: [{{files: ['{targets}/workers/*.json'], refresh_interval: 1s}}]\n"
    )
    port = free_port()
    proc = start_prometheus(binary, config, where / "data", port, where / "prometheus.log")
    try:
        yield port
    finally:
        stop(proc)


@pytest.fixture
def example(redis_url: str, tmp_path: Path, targets: Path) -> Iterator[StartExample]:
    started: list[ExampleWorker] = []

    def start(pool: str, concurrency: int = 1, *args: str, **kwargs: Any) -> ExampleWorker:
        worker = start_example_worker(
            redis_url, tmp_path, targets, pool, concurrency, tuple(args), **kwargs
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if not worker.stopped:
            worker.stop()


def run(worker: ExampleWorker, task: str, *args: Any) -> Any:
    return worker.send(task, *args).get(timeout=60, propagate=False)


def wait_task_value(
    worker: ExampleWorker, name: str, task: str, condition: Callable[[float], bool], **labels: str
) -> float:
    """Poll the main exporter until the task's sample satisfies `condition`; return it."""

    def current() -> float | None:
        found = task_value(worker.metrics(), name, task, **labels)
        return found if found is not None and condition(found) else None

    return wait_for(current, 30, what=f"{name}{{task={task!r}, {labels}}}")


def via_prometheus(port: int, worker: ExampleWorker, promql_selector: str) -> float:
    """A worker's main-process sample as Prometheus scraped it (waits for the first scrape)."""
    instance = worker.main_address()
    query = promql_selector.replace("}", f', instance="{instance}"}}', 1)
    result = wait_for(lambda: prometheus_query(port, query), 30, what=query)
    return float(result[0]["value"][1])


# ---- prefork: exact peak, retained growth, failures, a lost child ---------------------------


def test_prefork_exact_peak_retained_growth_and_outcomes_reach_prometheus(
    example: StartExample, prometheus: int
) -> None:
    worker = example("prefork", 2)
    assert set(worker.addresses()) == {"", "0", "1"}  # a port per process, children included
    # The allocating task: its exact peak is the process's RSS before it plus what it allocates.
    before = {c: value(worker.metrics(c), names.PROCESS_RSS_BYTES) for c in ("0", "1")}
    assert run(worker, ALLOCATE, 64) == 64 * MIB
    peak = wait_task_value(worker, names.TASK_PEAK_RSS_BYTES, ALLOCATE, lambda v: v > 0)
    growth = [peak - rss for rss in before.values()]
    assert any(60 * MIB <= g <= 72 * MIB for g in growth), [g / MIB for g in growth]
    assert task_value(worker.metrics(), names.TASK_WINDOW_PEAK_RSS_BYTES, ALLOCATE) is None
    # The leaking task's retained memory rises run after run; the allocating one's stays ~0.
    retained = []
    for runs in range(1, 5):
        assert run(worker, LEAK, 8) is not None
        retained.append(_retained_after(worker, LEAK, runs))
    assert retained == sorted(retained) and retained[-1] >= 4 * 8 * MIB * 0.9, retained
    for _ in range(3):
        run(worker, ALLOCATE, 32)
    allocate_retained = _retained_after(worker, ALLOCATE, 4)
    assert abs(allocate_retained) < 4 * MIB, allocate_retained / MIB
    # The failing task counts as a failure, once, in the worker (not per child).
    run(worker, FAIL)
    wait_task_value(worker, names.TASK_RUNS_TOTAL, FAIL, lambda v: v == 1, outcome="failure")
    text = worker.metrics()
    assert task_value(text, names.TASK_RUNS_TOTAL, FAIL, outcome="success") == 0
    assert task_value(text, names.TASK_RUNS_TOTAL, LEAK, outcome="success") == 4
    # Prometheus scraped it all through file_sd, every process of the worker.
    selector = f'{names.TASK_RUNS_TOTAL}{{task="{FAIL}", outcome="failure"}}'
    assert via_prometheus(prometheus, worker, selector) == 1
    up = f'count(up{{instance=~"{"|".join(worker.addresses().values())}"}} == 1)'
    assert wait_for(
        lambda: (r := prometheus_query(prometheus, up)) and float(r[0]["value"][1]) == 3,
        30,
        what=up,
    )


def _retained_after(worker: ExampleWorker, task: str, runs: int) -> float:
    """membench_task_retained_bytes once the task's `runs` successes are counted."""
    wait_task_value(worker, names.TASK_RUNS_TOTAL, task, lambda v: v >= runs, outcome="success")
    found = task_value(worker.metrics(), names.TASK_RETAINED_BYTES, task)
    assert found is not None
    return found


def test_a_prefork_child_killed_mid_task_is_lost_and_its_replacement_exports(
    example: StartExample,
) -> None:
    worker = example("prefork", 1)
    old_address = worker.addresses()["0"]
    old_start = value(scrape(old_address), names.PROCESS_START_TIME_SECONDS)
    worker.send(SLEEP, 60)
    wait_for(
        lambda: value(scrape(old_address), names.PROCESS_TASKS_IN_PROGRESS) == 1,
        30,
        what="the child running the task",
    )
    (child,) = [p for p in _children(worker)]
    os.kill(child, signal.SIGKILL)
    wait_task_value(worker, names.TASK_RUNS_TOTAL, SLEEP, lambda v: v == 1, outcome="lost")

    def replacement() -> str | None:
        address = worker.addresses().get("0")
        if address is None:
            return None
        try:
            started = value(scrape(address), names.PROCESS_START_TIME_SECONDS)
        except OSError:
            return None
        return address if started > old_start else None

    address = wait_for(replacement, 30, what="the replacement child's exporter")
    # The replacement counts its predecessor's death, and clears its gauges, when it takes over
    # the row.
    text = worker.metrics()
    assert value(text, names.CHILD_RECYCLES_TOTAL, reason="died") == 1
    assert task_value(text, names.TASKS_IN_PROGRESS, SLEEP) == 0
    assert value(scrape(address), names.PROCESS_TASKS_IN_PROGRESS) == 0
    assert run(worker, SLEEP, 0) == 0  # and it takes tasks again


def _children(worker: ExampleWorker) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(worker.proc.pid).children()]


# ---- solo, gevent, threads -------------------------------------------------------------------


def test_solo_gives_the_exact_peak_in_the_main_process(example: StartExample) -> None:
    worker = example("solo")
    assert set(worker.addresses()) == {""}
    before = value(worker.metrics(), names.PROCESS_RSS_BYTES)
    run(worker, ALLOCATE, 64)
    peak = wait_task_value(worker, names.TASK_PEAK_RSS_BYTES, ALLOCATE, lambda v: v > 0)
    assert 60 * MIB <= peak - before <= 72 * MIB, (peak - before) / MIB


@pytest.mark.parametrize("pool", ["gevent", "threads"])
def test_shared_pools_mark_the_window_peak_as_shared(pool: str, example: StartExample) -> None:
    worker = example(pool, 4)
    # Two allocations that overlap: neither had the process to itself.
    results = [worker.send(ALLOCATE, 48, 1.0), worker.send(ALLOCATE, 48, 1.0)]
    assert [r.get(timeout=60) for r in results] == [48 * MIB, 48 * MIB]
    window = wait_task_value(worker, names.TASK_WINDOW_PEAK_RSS_BYTES, ALLOCATE, lambda v: v > 0)
    text = worker.metrics()
    assert task_value(text, names.TASK_PEAK_RSS_BYTES, ALLOCATE) is None  # never the task's own
    assert task_value(text, names.TASK_RETAINED_BYTES, ALLOCATE) is None  # not attributable
    # The window held both allocations at once.
    rss = value(text, names.PROCESS_RSS_BYTES)
    assert window >= 2 * 48 * MIB, window / MIB
    assert value(text, names.PROCESS_PEAK_RSS_BYTES) >= rss
    # A run alone in the process is exact again, and a failure is a failure.
    run(worker, FAIL)
    wait_task_value(worker, names.TASK_RUNS_TOTAL, FAIL, lambda v: v == 1, outcome="failure")
    run(worker, LEAK, 8)
    assert wait_task_value(worker, names.TASK_RETAINED_BYTES, LEAK, lambda v: v > 0) >= 7 * MIB


# ---- one port for the whole worker -----------------------------------------------------------


def test_one_port_mode_serves_every_child_and_drops_a_dead_one(example: StartExample) -> None:
    worker = example("prefork", 2, "--membench-mode", "one-port", wait=False)
    wait_for(lambda: "ready." in worker.log(), 60, what="the worker ready")
    wait_for(lambda: "" in worker.addresses(), 30, what="the main exporter")
    assert set(worker.addresses()) == {""}  # the children bind nothing

    def children() -> dict[str, float]:
        text = worker.metrics()
        return {
            labels["child"]: v
            for labels, v in samples(text)[names.PROCESS_START_TIME_SECONDS]
            if labels["role"] == names.ROLE_CHILD
        }

    first = wait_for(lambda: c if len(c := children()) == 2 else None, 30, what="2 children")
    assert set(first) == {"0", "1"}
    rss = [
        labels
        for labels, _ in samples(worker.metrics())[names.PROCESS_PSS_BYTES]
        if labels["role"] == names.ROLE_CHILD
    ]
    assert sorted(label["child"] for label in rss) == ["0", "1"]
    for pid in _children(worker):
        os.kill(pid, signal.SIGKILL)
    # The replacements take the same pool indexes: two children, both newer, none of the dead.
    wait_for(
        lambda: (c := children()) and len(c) == 2 and all(c[i] > first[i] for i in c),
        30,
        what="two replacements",
    )
    assert value(worker.metrics(), names.CHILD_RECYCLES_TOTAL, reason="died") == 2


# ---- bad input, a port taken, recycles ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "option"),
    [
        (("--membench-port", "http"), {}, "--membench-port"),
        (("--membench-port", "70000"), {}, "--membench-port"),
        ((), {"MEMBENCH_METRICS_PORT": "-1"}, "--membench-port"),
        (("--membench-mode", "every-port"), {}, "--membench-mode"),
        ((), {"MEMBENCH_METRICS_MODE": "sideways"}, "--membench-mode"),
    ],
)
def test_an_invalid_setting_fails_in_one_line_before_the_worker_starts(
    args: tuple[str, ...], env: dict[str, str], option: str, example: StartExample
) -> None:
    worker = example("prefork", 2, *args, extra_env=env, wait=False)
    code = worker.proc.wait(timeout=60)
    log = worker.log()
    assert code == 2, log
    errors = [line for line in log.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and option in errors[0], log
    assert "ready." not in log and "ForkPoolWorker" not in log
    assert not worker.addresses()


def test_ports_past_65535_for_the_children_fail_before_the_worker_starts(
    example: StartExample,
) -> None:
    worker = example("prefork", 4, "--membench-port", "65533", wait=False)
    assert worker.proc.wait(timeout=60) == 2
    (line,) = [ln for ln in worker.log().splitlines() if "--membench-port" in ln]
    assert "65535" in line and "ready." not in worker.log()


def test_a_port_taken_at_run_time_is_one_loud_line_and_the_worker_works(
    example: StartExample,
) -> None:
    with _taken_port_after_a_free_one() as base:
        worker = example("prefork", 1, "--membench-port", str(base))
        lines = [ln for ln in worker.log().splitlines() if f":{base + 1} is in use" in ln]
        assert len(lines) == 1 and "pid" in lines[0], worker.log()
        assert run(worker, SLEEP, 0) == 0
        # The child exports all the same, on the free port its file_sd target names.
        assert worker.addresses()["0"] != f"127.0.0.1:{base + 1}"
        assert value(worker.metrics("0"), names.PROCESS_TASKS_IN_PROGRESS) == 0


@contextlib.contextmanager
def _taken_port_after_a_free_one() -> Iterator[int]:
    """A port P that is free, and P + 1 (prefork child 0's) held by a listening socket of ours."""
    for _ in range(50):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        base = taken.getsockname()[1] - 1
        if base > 1024 and not port_in_use("127.0.0.1", base):
            taken.listen()
            with taken:
                yield base
            return
        taken.close()
    pytest.fail("no free port below a free one in 50 tries")


def test_child_recycles_say_why(example: StartExample) -> None:
    worker = example("prefork", 1, "--max-tasks-per-child", "2")
    for _ in range(4):
        run(worker, SLEEP, 0)
    wait_for(
        lambda: (
            value(worker.metrics(), names.CHILD_RECYCLES_TOTAL, reason="max-tasks-per-child") >= 1
        ),
        30,
        what="a recycle after 2 tasks",
    )
    text = worker.metrics()
    assert value(text, names.CHILD_RECYCLES_TOTAL, reason="died") == 0
    assert value(text, names.CHILD_RECYCLES_TOTAL, reason="max-memory-per-child") == 0
    memory = example("prefork", 1, "--max-memory-per-child", "1000")  # KiB: every task is over
    run(memory, SLEEP, 0)
    run(memory, SLEEP, 0)
    wait_for(
        lambda: (
            value(memory.metrics(), names.CHILD_RECYCLES_TOTAL, reason="max-memory-per-child") >= 1
        ),
        30,
        what="a recycle over the memory limit",
    )
