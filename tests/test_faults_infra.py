"""Infrastructure faults: Redis restarted during a soak, Prometheus restarted while it
scrapes a worker, and a task that runs out of memory in a prefork child."""

from __future__ import annotations

import resource
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    StartWorker,
    exporter_addresses,
    prometheus_config,
    prometheus_query,
    require_binary,
    scrape,
    start_prometheus,
    stored_meta,
    task_runs,
)

from membench.broker import (
    CLIENT_RESULT_RETRY_POLICY,
    BrokerError,
    check_broker,
    redis_server_executable,
)
from membench.exporter import names
from membench.loadgen.metrics import LoadgenMetrics
from membench.loadgen.schedule import ScenarioPlan
from membench.loadgen.scheduler import ScenarioStats, Scheduler
from membench.processes import free_port, spawn, stop, wait_for
from membench.run.worker import WorkerProcess
from membench.units import KIB, MIB
from membench.workers.params import BatchParams
from membench.workers.scenarios import SCENARIOS

pytestmark = pytest.mark.slow
SMALL = {"subtasks": 2, "size_mb": 1, "hold_s": 0, "workers": 2, "payload": "bytes"}
# What a worker logs when something went wrong; a clean run logs none of these.
LOG_ERRORS = ("ERROR", "CRITICAL", "Traceback")


# ---- shared helpers ---------------------------------------------------------------------------


def _client_app(url: str) -> Any:
    """A Celery client of its own on `url` (the session's app stays on the session's Redis)."""
    from celery import Celery

    app = Celery("membench-faults-client", set_as_current=False)
    app.conf.update(
        broker_url=url,
        result_backend=url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # The loadgen's and runner's client policy (membench.broker.client_app).
        result_backend_transport_options={"retry_policy": CLIENT_RESULT_RETRY_POLICY},
    )
    return app


def _start_redis(port: int, workdir: Path) -> Any:
    """A redis-server on the fixed loopback `port`, without persistence, answering PING."""
    argv = [redis_server_executable(), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
    proc = spawn(argv, log_path=workdir / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"redis-server exited {proc.returncode}: see {workdir}/redis.log")
        try:
            check_broker(url, timeout=0.5)
        except BrokerError:
            return False
        return True

    wait_for(answers, 10, what=f"redis-server on port {port}")
    return proc


def _log_errors(worker: WorkerProcess) -> list[str]:
    """Lines of the worker's log that report an error."""
    text = worker.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if any(word in line for word in LOG_ERRORS)]


# ---- 1. Redis restarted during a soak ---------------------------------------------------------


def _plan(worker: WorkerProcess) -> ScenarioPlan:
    """A small, fast plan on the worker's own queue: a run every 0.5 s, 4 s deadline."""
    params = BatchParams.validate(
        {**SMALL, "subtasks": 1, "hold_s": 0.05, "strategy": worker.scenario.strategy}
    )
    return ScenarioPlan(worker.scenario.name, params, 0.5, 0.0, 4.0, worker.queue)


# Celery's result backend alone would retry a lost Redis 20 times 1 s apart inside a result wait;
# with the clients' short retry policy the loadgen's own loop keeps its 4 s deadlines, so the hit
# runs are counted while Redis is still down, well within the outage.
OUTAGE_MAX_S = 8.0


def _snapshot(scheduler: Scheduler) -> dict[str, ScenarioStats]:
    """A copy of the scheduler's counters (its threads keep updating the originals)."""
    return {name: ScenarioStats(**asdict(s)) for name, s in scheduler.stats.items()}


def _bad(stats: ScenarioStats) -> int:
    """Firings that did not succeed: failed, timed out or skipped."""
    return stats.failure + stats.timeout + stats.skipped


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A redis-server on a fixed free port that the test may kill and restart; always stopped."""
    port = free_port()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = {"port": port, "url": f"redis://127.0.0.1:{port}/0", "dir": workdir}
    server["proc"] = _start_redis(port, workdir)
    try:
        yield server
    finally:
        stop(server["proc"], timeout=5)


def test_redis_restarted_during_a_soak_runs_are_counted_and_everything_reconnects(
    own_redis: dict[str, Any], tmp_path: Path
) -> None:
    url = own_redis["url"]
    app = _client_app(url)
    workers = [
        WorkerProcess(SCENARIOS[name], 1, url, tmp_path, secrets.token_hex(4))
        for name in ("gevent_greenlets", "prefork_sequential")
    ]
    scheduler: Scheduler | None = None
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready(app)
        trees = {w.scenario.name: sorted(w.tree()) for w in workers}
        plans = [_plan(w) for w in workers]
        metrics = LoadgenMetrics(p.scenario for p in plans)
        scheduler = Scheduler(app, plans, metrics, grace_s=5)
        scheduler.start()
        wait_for(
            lambda: all(s.success >= 2 for s in scheduler.stats.values()),
            60,
            what="two successful runs per scenario before the outage",
        )

        # Kill while a gevent run is in flight (its result wait hits the outage) and most likely
        # between two prefork runs (its next send hits it): both paths, no clean shutdown.
        gevent = scheduler.stats["gevent_greenlets"]
        wait_for(lambda: gevent.in_flight, 30, what="a gevent run in flight")
        before = _snapshot(scheduler)
        own_redis["proc"].send_signal(signal.SIGKILL)
        own_redis["proc"].wait()
        killed_at = time.monotonic()

        def outage_over() -> bool:
            """At least 3 s and every scenario counted a bad firing, or 8 s at most."""
            down = time.monotonic() - killed_at
            counted = all(_bad(scheduler.stats[n]) > _bad(before[n]) for n in before)
            return down >= OUTAGE_MAX_S or (down >= 3 and counted)

        wait_for(outage_over, 30, what="the outage")
        outage_s = time.monotonic() - killed_at
        assert all(w.alive() for w in workers), [w.log_tail() for w in workers]
        during = _snapshot(scheduler)
        # Reported while it lasted, not once Redis was back.
        assert all(_bad(during[n]) > _bad(before[n]) for n in before), (before, during)

        own_redis["proc"] = _start_redis(own_redis["port"], own_redis["dir"])
        restarted_at = time.monotonic()
        wait_for(
            lambda: all(scheduler.stats[n].success > during[n].success for n in during),
            30,
            what="a successful run per scenario after Redis came back",
        )
        reconnect_s = time.monotonic() - restarted_at
        after = {w.scenario.name: sorted(w.tree()) for w in workers}
    finally:
        if scheduler is not None:
            scheduler.join()
        for worker in workers:
            worker.stop()
        app.close()

    assert 3 <= outage_s < OUTAGE_MAX_S + 1 and reconnect_s < 30, (outage_s, reconnect_s)
    for worker in workers:
        name = worker.scenario.name
        s, b, d = scheduler.stats[name], before[name], during[name]
        # Nothing silently lost: every firing ended in exactly one outcome, skips are counted.
        assert s.in_flight == 0
        assert s.fired == s.success + s.failure + s.timeout, (name, s)
        # The runs the outage hit failed (send refused) or timed out (result wait), whether the
        # loadgen counted them during the outage or once its blocked result wait came back.
        assert s.failure + s.timeout > b.failure + b.timeout, (name, b, d, s)
        assert s.success > d.success >= b.success
        for outcome in ("success", "failure", "timeout"):
            assert metrics.registry.get_sample_value(
                names.LOADGEN_RUNS_TOTAL, {"scenario": name, "outcome": outcome}
            ) == getattr(s, outcome)
        assert (
            metrics.registry.get_sample_value(names.LOADGEN_SKIPPED_TOTAL, {"scenario": name})
            == s.skipped
        )
        assert not scheduler.crashed
        # The workers rode it out: the same processes, which noticed, retried and reconnected.
        assert after[name] == trees[name], (name, trees[name], after[name])
        log = worker.log_path.read_text(errors="replace")
        lost = log.find("Connection to broker lost")
        assert lost >= 0 and "Connected to redis://" in log[lost:], log[-3000:]


# ---- 2. Prometheus restarted -----------------------------------------------------------------

WORKERS_JOB = "membench-workers"


def _up_since(port: int, since: float) -> list[dict[str, Any]]:
    """Worker targets whose latest scrape, taken after `since` (unix time), found them up."""
    up = f'up{{job="{WORKERS_JOB}"}}'
    return prometheus_query(port, f"({up} == 1) and (timestamp({up}) > {since:.3f})")


class _Watcher:
    """Scrapes exporters from a thread until stopped, counting answers and errors."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.ok = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for address in self.addresses:
                try:
                    assert names.PROCESS_RSS_BYTES in scrape(address)
                    self.ok += 1
                except (OSError, AssertionError) as exc:
                    self.errors.append(f"{address}: {exc!r}")
            self._stop.wait(0.05)  # pacing, not synchronisation

    def __enter__(self) -> _Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_prometheus_restart_goes_unnoticed_by_the_worker_and_its_targets_come_back_up(
    redis_url: str, celery_app: Any, tmp_path: Path
) -> None:
    binary = require_binary("prometheus")
    copy = prometheus_config(tmp_path)
    worker = WorkerProcess(SCENARIOS["prefork_sequential"], 1, redis_url, tmp_path, "prom")
    # file_sd: the worker registers its exporters where the copied config's globs look.
    worker.targets_dir = copy / "targets"
    port, data, log = free_port(), tmp_path / "prometheus-data", tmp_path / "prometheus.log"
    proc = None
    try:
        worker.start()
        worker.wait_ready(celery_app)
        worker_pid, tree = worker.pid, sorted(worker.tree())
        addresses = sorted(a for found in exporter_addresses(worker).values() for a in found)
        assert len(addresses) == 2  # main process and pool child
        proc = start_prometheus(binary, copy / "prometheus.yml", data, port, log)
        with _Watcher(addresses) as watcher:
            first_start = time.time()
            wait_for(lambda: len(_up_since(port, first_start)) == 2, 60, what="targets up")
            ok_before = watcher.ok
            assert stop(proc, timeout=30) == 0, log.read_text()[-2000:]  # SIGTERM: clean stop
            down = watcher.ok
            wait_for(lambda: watcher.ok >= down + 4, 10, what="scrapes while Prometheus is down")
            ok_while_down = watcher.ok
            restarted = time.time()
            proc = start_prometheus(binary, copy / "prometheus.yml", data, port, log)
            up = wait_for(
                lambda: (found := _up_since(port, restarted)) and len(found) == 2 and found,
                60,
                what="both worker targets scraped up after the restart",
            )
        alive = worker.alive()
        after = sorted(worker.tree())
    finally:
        if proc is not None:
            stop(proc, timeout=30)
        worker.stop()
    # Prometheus went down and came back; the worker never noticed.
    assert watcher.ok > ok_while_down > down >= ok_before > 0  # answered before, during, after
    assert not watcher.errors, watcher.errors[:5]
    assert sorted(r["metric"]["instance"] for r in up) == addresses
    assert alive and worker.pid == worker_pid and after == tree
    assert _log_errors(worker) == []
    assert log.read_text().count("Server is ready to receive web requests") == 2


# ---- 3. a task runs out of memory ------------------------------------------------------------

HEADROOM = 64 * MIB  # address space the pool child may still map: far below the big task


def _vm_size(pid: int) -> int:
    """The process's mapped address space (VmSize), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * KIB
    raise AssertionError(f"no VmSize for {pid}")


@pytest.mark.parametrize("scenario", ["prefork_sequential", "gevent_greenlets"])
def test_task_out_of_memory_is_recorded_as_a_memory_error_and_the_worker_goes_on(
    scenario: str, start_worker: StartWorker, celery_app: Any, redis_url: str
) -> None:
    worker = start_worker(scenario)
    tree = sorted(worker.tree())
    # The process that runs tasks: the pool child (prefork) or the worker itself (gevent).
    (executing,) = [p for p in tree if p != worker.pid] or [worker.pid]
    # RLIMIT_AS on that process only, set from outside: its next big mmap fails (ENOMEM).
    limit = _vm_size(executing) + HEADROOM
    resource.prlimit(executing, resource.RLIMIT_AS, (limit, limit))
    assert resource.prlimit(executing, resource.RLIMIT_AS) == (limit, limit)

    def send(**params: Any) -> Any:
        kwargs = {"strategy": worker.scenario.strategy, **params}
        return celery_app.send_task("membench.process_batch", kwargs=kwargs, queue=worker.queue)

    big = send(**{**SMALL, "subtasks": 1, "size_mb": 4 * HEADROOM / MIB})
    error = big.get(timeout=60, propagate=False)
    assert big.state == "FAILURE" and isinstance(error, MemoryError), repr(error)
    stored = stored_meta(redis_url, big.id)
    assert stored is not None and stored["result"]["exc_type"] == "MemoryError", stored
    wait_for(lambda: task_runs(worker, "failure") == 1, 10, what="the failure counted")
    assert task_runs(worker, "success") == 0 and task_runs(worker, "lost") == 0

    # The same process, still under its limit, runs a small task next.
    report = send(**SMALL).get(timeout=60)
    assert report["pid"] == executing and report["subtasks_done"] == SMALL["subtasks"]
    wait_for(lambda: task_runs(worker, "success") == 1, 10, what="the next task counted")
    assert worker.alive() and sorted(worker.tree()) == tree
    assert task_runs(worker, "failure") == 1 and task_runs(worker, "lost") == 0
    log = worker.log_path.read_text(errors="replace")
    assert f"Task membench.process_batch[{big.id}] ran out of memory; the worker goes on" in log
    assert "Unrecoverable error" not in log
