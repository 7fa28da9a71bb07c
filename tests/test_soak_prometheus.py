"""`membench soak --prometheus URL` over a user's own app (examples/instrumented_app, instrumented
with membench.celery.instrument), scraped by a real Prometheus: a task fired at a known rate that
keeps 1 MiB a run fails the verdict with its worker's growth, and the task's retained memory per
run, within 20% of the known figures; a clean task passes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import prometheus_query, require_binary, start_prometheus
from instrumented import ExampleWorker, start_example_worker

from membench.processes import free_port, stop, wait_for
from membench.units import KIB

pytestmark = pytest.mark.slow
PERIOD_S = 0.5  # a run every 0.5 s
LEAK_MB = 1.0
KNOWN_MB_PER_HOUR = LEAK_MB * 3600 / PERIOD_S  # 7200 MB/h
FIRE_S = 40.0
WARMUP = "5s"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    binary = require_binary("prometheus")
    targets = tmp_path / "targets"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: celery\n"
        f"    file_sd_configs: [{{files: ['{targets}/workers/*.json'], refresh_interval: 1s}}]\n"
    )
    port = free_port()
    proc = start_prometheus(binary, config, tmp_path / "data", port, tmp_path / "prometheus.log")
    try:
        yield port, targets
    finally:
        stop(proc)


def fire(worker: ExampleWorker, task: str, *args: Any) -> tuple[float, float, int]:
    """Send `task` every PERIOD_S for FIRE_S, each awaited; (first send, last result, runs)."""
    began = time.time()
    runs = 0
    while (due := began + runs * PERIOD_S) < began + FIRE_S:
        time.sleep(max(0.0, due - time.time()))  # the firing grid, not synchronisation
        assert worker.send(task, *args).get(timeout=30) is not None
        runs += 1
    return began, time.time(), runs


def judge(port: int, began: float, ended: float, output: Path) -> tuple[int, dict[str, Any]]:
    argv = [sys.executable, "-m", "membench", "soak", "--prometheus", f"http://127.0.0.1:{port}"]
    argv += ["--start", f"{began:.3f}", "--end", f"{ended:.3f}", "--warmup", WARMUP]
    argv += ["--max-growth", "100", "--output", str(output)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads((output / "soak.json").read_text())


def first_scraped(port: int, worker: ExampleWorker) -> None:
    """Prometheus has scraped each of the fresh worker's exporters: a run counted before its
    first scrape would be lost to increase(), which a busy machine makes likely."""

    def done() -> bool:
        wanted = set(worker.addresses().values())
        up = {s["metric"]["instance"] for s in prometheus_query(port, 'up{job="celery"} == 1')}
        return bool(wanted) and wanted <= up

    wait_for(done, 30, what="the worker's first scrape")


def scraped_once_more(port: int, after: float) -> None:
    """Prometheus has scraped every worker target since `after` (the runs' last effects)."""

    def done() -> bool:
        up = prometheus_query(port, 'timestamp(up{job="celery"})')
        return bool(up) and all(float(s["value"][1]) > after + 1 for s in up)

    wait_for(done, 30, what="a scrape after the last run")


@pytest.mark.long
def test_a_leaking_task_fails_within_20_percent_and_a_clean_one_passes(
    redis_url: str, tmp_path: Path, prometheus: tuple[int, Path]
) -> None:
    port, targets = prometheus
    leaking = start_example_worker(redis_url, tmp_path, targets, "prefork")
    try:
        first_scraped(port, leaking)
        began, ended, runs = fire(leaking, "proj.leak", LEAK_MB)
        scraped_once_more(port, ended)
        ended = time.time()
    finally:
        leaking.stop()
    code, document = judge(port, began, ended, tmp_path / "leak")
    assert code == 1 and document["verdict"]["status"] == "fail", document["verdict"]
    growth = {p["labels"]["role"]: p["growth"] for p in document["analysis"]["processes"]}
    assert growth["child"]["status"] == "fail"
    assert growth["child"]["mb_per_hour"] == pytest.approx(KNOWN_MB_PER_HOUR, rel=0.2)
    assert growth["main"]["status"] == "pass"
    (task,) = [t for t in document["analysis"]["tasks"] if t["task"] == "proj.leak"]
    assert task["runs"]["success"] == pytest.approx(runs, abs=2)
    assert task["retained_per_run_kib"] == pytest.approx(LEAK_MB * KIB, rel=0.2)
    assert task["retained"]["mb_per_hour"] == pytest.approx(KNOWN_MB_PER_HOUR, rel=0.2)

    clean = start_example_worker(redis_url, tmp_path, targets, "prefork")
    try:
        first_scraped(port, clean)
        began, ended, runs = fire(clean, "proj.allocate", LEAK_MB)
        scraped_once_more(port, ended)
        ended = time.time()
    finally:
        clean.stop()
    code, document = judge(port, began, ended, tmp_path / "clean")
    assert code == 0 and document["verdict"]["status"] == "pass", document["verdict"]
    assert len(document["analysis"]["processes"]) == 2  # the leaking worker is out of range
    (task,) = [t for t in document["analysis"]["tasks"] if t["task"] == "proj.allocate"]
    assert task["runs"]["success"] == pytest.approx(runs, abs=2)
