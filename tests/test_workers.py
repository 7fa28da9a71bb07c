"""Real Celery workers of both pools: each scenario end to end, an exporter in every process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import pytest
from helpers import StartWorker, exporter_addresses, require_binary, samples, scrape, value

from membench.exporter import names
from membench.processes import wait_for
from membench.run.worker import WorkerProcess
from membench.units import MIB
from membench.workers.payload import expected_digest
from membench.workers.scenarios import SCENARIOS

pytestmark = pytest.mark.slow


def send(app: Any, worker: WorkerProcess, **params: Any) -> Any:
    kwargs = {"strategy": worker.scenario.strategy, "payload": "bytes", **params}
    return app.send_task("membench.process_batch", kwargs=kwargs, queue=worker.queue)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario_runs_every_subtask_on_real_data(
    scenario: str, start_worker: StartWorker, celery_app: Any
) -> None:
    worker = start_worker(scenario)
    workers = 6
    report = send(celery_app, worker, subtasks=12, size_mb=2, hold_s=0.05, workers=workers).get(
        timeout=60
    )
    assert report["subtasks_done"] == 12
    assert report["digest"] == expected_digest("bytes", 12, 2 * MIB)
    assert report["peak_method"] == "vmhwm"
    assert report["peak_rss_bytes"] >= report["start_rss_bytes"] + 2 * MIB
    assert report["wall_s"] >= 2 * 0.05  # ceil(12/6) rounds of holds, or 12 sequential ones
    assert report["pid"] in worker.tree()
    if SCENARIOS[scenario].pool == "prefork":
        assert report["pid"] != worker.pid  # runs in the pool child, not the main process
    # Real threads need workers + main + exporter OS threads; greenlets need none of their own
    # (gevent's own threadpool may add one or two, whatever --workers is).
    real_threads = workers + 2
    if scenario == "prefork_threads":
        assert report["max_os_threads"] >= real_threads
    elif scenario == "gevent_threads":
        assert report["max_os_threads"] < real_threads  # monkey-patched: greenlets


def test_records_payload_is_built_and_digested(start_worker: StartWorker, celery_app: Any) -> None:
    worker = start_worker("gevent_greenlets")
    params = {"subtasks": 4, "size_mb": 1, "hold_s": 0, "workers": 4, "payload": "records"}
    report = send(celery_app, worker, **params).get(timeout=60)
    assert report["digest"] == expected_digest("records", 4, MIB)


def test_every_prefork_process_exports_its_own_metrics(
    start_worker: StartWorker, celery_app: Any, tmp_path: Any
) -> None:
    worker = start_worker("prefork_threads", concurrency=2)
    addresses = exporter_addresses(worker)
    assert len(addresses["main"]) == 1 and len(addresses["child"]) == 2
    all_addresses = addresses["main"] + addresses["child"]
    assert len(set(all_addresses)) == 3  # no two processes share a port
    expositions = {address: scrape(address) for address in all_addresses}
    for address, text in expositions.items():
        role = "main" if address in addresses["main"] else "child"
        identity = {"scenario": "prefork_threads", "pool": "prefork", "strategy": "threads"}
        for metric in (
            names.PROCESS_RSS_BYTES,
            names.PROCESS_PSS_BYTES,
            names.PROCESS_USS_BYTES,
            names.PROCESS_PEAK_RSS_BYTES,
            names.PROCESS_TASKS_IN_PROGRESS,
            names.PROCESS_START_TIME_SECONDS,
        ):
            assert value(text, metric, role=role, **identity) >= 0
        assert value(text, names.SUBTASKS_IN_PROGRESS, **identity) == 0
        assert value(text, names.PROCESS_RSS_BYTES, role=role) > 10 * MIB
        for series in samples(text).values():
            for labels, _ in series:
                assert {"pid", "task_id"}.isdisjoint(labels)
                assert labels.get("role", role) == role
    promtool = require_binary("promtool")
    for text in expositions.values():
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # The task's subtasks land in the executing child's counters, the run in the worker's
    # per-task metrics (the main process's), with its exact peak: VmHWM read at task_postrun,
    # at least the peak the task read itself and at most a page-rounding more.
    report = send(celery_app, worker, subtasks=4, size_mb=8, hold_s=0, workers=4).get(timeout=60)
    child = next(a for a in addresses["child"] if scrape(a) and _pid_of(a, worker) == report["pid"])
    assert value(scrape(child), names.SUBTASKS_COMPLETED_TOTAL) == 4
    (main,) = addresses["main"]
    task = {names.TASK_LABEL: names.BENCHMARK_TASK}
    wait_for(lambda: value(scrape(main), names.TASK_RUNS_TOTAL, outcome="success", **task) == 1, 10)
    text = scrape(main)
    peak = value(text, names.TASK_PEAK_RSS_BYTES, **task)
    assert 0 <= peak - report["peak_rss_bytes"] <= MIB
    assert value(text, names.TASK_DURATION_SECONDS + "_count", **task) == 1


def _pid_of(address: str, worker: WorkerProcess) -> int:
    """The pid behind an exporter address, from the file_sd file that registered it."""
    for path in (worker.targets_dir / "workers").glob("*.json"):
        if address in path.read_text():
            return int(path.stem.rsplit("_", 1)[1])
    raise LookupError(address)


@pytest.mark.serial(
    reason="asserts a scrape answers within 0.1 s: on a busy machine the exporter's thread "
    "waits for a core, not for the GIL under test"
)
@pytest.mark.parametrize(
    ("scenario", "role"), [("gevent_greenlets", "main"), ("prefork_sequential", "child")]
)
def test_exporter_answers_while_a_cpu_bound_subtask_runs(
    scenario: str, role: str, start_worker: StartWorker, celery_app: Any
) -> None:
    worker = start_worker(scenario)
    (address,) = exporter_addresses(worker)[role]
    # Building many small records is pure-Python CPU work: under gevent, no greenlet switch for
    # its whole duration; in a prefork child, the GIL is held by the subtask.
    result = send(
        celery_app, worker, subtasks=2, size_mb=150, hold_s=0, workers=1, payload="records"
    )
    busy_latencies = []
    while not result.ready():
        t0 = time.perf_counter()
        text = scrape(address)
        latency = time.perf_counter() - t0
        if value(text, names.SUBTASKS_IN_PROGRESS) >= 1:
            busy_latencies.append(latency)
    assert result.get(timeout=60)["subtasks_done"] == 2
    assert len(busy_latencies) >= 5, "never caught a subtask in progress"
    assert max(busy_latencies) < 0.1, sorted(busy_latencies)[-5:]


def test_peak_is_reset_per_task_so_it_follows_size(
    start_worker: StartWorker, celery_app: Any
) -> None:
    worker = start_worker("gevent_threads")
    big = send(celery_app, worker, subtasks=2, size_mb=48, hold_s=0.2, workers=2).get(timeout=60)
    small = send(celery_app, worker, subtasks=2, size_mb=4, hold_s=0.2, workers=2).get(timeout=60)
    # Without the clear_refs reset, VmHWM would still show the big task's peak.
    assert big["peak_rss_bytes"] - big["start_rss_bytes"] >= 2 * 48 * MIB * 0.9
    assert small["peak_rss_bytes"] < big["peak_rss_bytes"] - 60 * MIB
    assert small["peak_rss_bytes"] - small["start_rss_bytes"] >= 2 * 4 * MIB * 0.9


@pytest.mark.parametrize("scenario", ["prefork_sequential", "gevent_greenlets"])
def test_peak_catches_a_spike_shorter_than_a_sample_interval(
    scenario: str, start_worker: StartWorker, celery_app: Any
) -> None:
    """A 64 MiB block built, digested and freed with no hold: alive for a few ms, which a 50 ms
    sampler would usually miss; the kernel's VmHWM keeps it."""
    worker = start_worker(scenario)
    report = send(celery_app, worker, subtasks=1, size_mb=64, hold_s=0, workers=1).get(timeout=60)
    block = 64 * MIB
    assert report["peak_method"] == "vmhwm"
    # 1 MiB of slack: the kernel batches RSS counters per CPU, and freeing Celery's own garbage
    # may hand back a few heap pages between the start reading and the spike (seen: 20 KiB).
    assert report["peak_rss_bytes"] >= report["start_rss_bytes"] + block - MIB, report
    # Freed before the task ended (an mmap'd block is unmapped): the spike is gone at the end.
    assert report["end_rss_bytes"] < report["start_rss_bytes"] + block // 4, report


def test_a_replaced_child_keeps_exporting(start_worker: StartWorker) -> None:
    worker = start_worker("prefork_sequential")
    (child_pid,) = [p for p in worker.tree() if p != worker.pid]
    os.kill(child_pid, signal.SIGKILL)

    def new_child_address() -> str | None:
        for path in (worker.targets_dir / "workers").glob("*.json"):
            pid = int(path.stem.rsplit("_", 1)[1])
            if pid not in (worker.pid, child_pid):
                return exporter_addresses(worker)["child"][0]
        return None

    address = wait_for(new_child_address, timeout=30, what="a replacement child's target")
    assert value(scrape(address), names.PROCESS_RSS_BYTES, role="child") > 0
    # The dead child's target is gone, so Prometheus is not left scraping nothing.
    assert not any(
        path.stem.endswith(f"_{child_pid}")
        for path in (worker.targets_dir / "workers").glob("*.json")
    )


def test_exporter_serves_only_metrics_and_survives_garbage(start_worker: StartWorker) -> None:
    import socket
    import urllib.error

    worker = start_worker("gevent_greenlets")
    (address,) = exporter_addresses(worker)["main"]
    host, port = address.rsplit(":", 1)
    with pytest.raises(urllib.error.HTTPError) as info:
        scrape(address, "/secret")
    assert info.value.code == 404
    for garbage in (b"\x00\xff garbage\r\n\r\n", b"GET", b"POST /metrics HTTP/1.1\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(garbage)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1024)
    assert value(scrape(address), names.PROCESS_RSS_BYTES) > 0


def test_wait_scraped_counts_only_prometheus_scrapes_of_every_process(
    start_worker: StartWorker,
) -> None:
    """`membench run --targets-dir` keeps a worker until Prometheus has scraped each of its
    exporters after the run: other readers (curl, the runner itself) do not count."""
    import threading
    import urllib.request

    worker = start_worker("prefork_sequential")
    addresses = [a for group in exporter_addresses(worker).values() for a in group]
    assert len(addresses) == 2  # main and child
    for address in addresses:
        scrape(address)  # no Prometheus header: not a Prometheus scrape
    assert worker.wait_scraped(timeout=0.5) is False

    stop = threading.Event()

    def prometheus_like() -> None:
        while not stop.is_set():
            for address in addresses:
                request = urllib.request.Request(
                    f"http://{address}/metrics",
                    headers={"X-Prometheus-Scrape-Timeout-Seconds": "4"},
                )
                with urllib.request.urlopen(request, timeout=5) as reply:
                    reply.read()
            stop.wait(0.1)

    scraper = threading.Thread(target=prometheus_like, daemon=True)
    scraper.start()
    try:
        assert worker.wait_scraped(timeout=20) is True
    finally:
        stop.set()
        scraper.join(timeout=10)
