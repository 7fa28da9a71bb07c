"""Alerts delivered end to end: a real worker, Debian's Prometheus loading the product's rules
(generated with short `for:`), Debian's Alertmanager running the product's configuration, and a
webhook receiver in this test that gets each alert with its labels and annotations.

prometheus / prometheus-alertmanager missing: skipped locally, a failure when $CI is set.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    GOOD_PARAMS,
    prometheus_config,
    prometheus_query,
    require_binary,
    send_batch,
    start_prometheus,
    start_service,
)

from membench.processes import free_port, stop, wait_for
from membench.prometheus import alertmanager, generate, mixin
from membench.prometheus.mixin import Settings
from membench.run.worker import WorkerProcess
from membench.targets import write_target
from membench.workers.scenarios import SCENARIOS

# Short enough for a test, ordered as in production: a process absent fires before its target's
# down warning, which Alertmanager then inhibits.
SHORT = Settings(
    for_durations={
        mixin.TASK_RUN_FAILURES: "1s",
        mixin.WORKER_ABSENT: "2s",
        mixin.WORKER_TARGET_DOWN: "6s",
    },
    celery_interval="1s",
)
RUNBOOKS = "https://github.com/celery-membench/celery-membench/blob/main/docs/runbooks.md#"
JOB = "membench-workers"


class Webhook:
    """An HTTP server on loopback that keeps every alert Alertmanager posts to it."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    received.extend(json.loads(body)["alerts"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [
            a
            for a in list(self.alerts)
            if a["labels"]["alertname"] == alertname and a["status"] == "firing"
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    try:
        yield receiver
    finally:
        receiver.close()


def start_alertmanager(binary: str, directory: Path, webhook_url: str) -> tuple[Any, int]:
    """The product's configuration with the test's webhook and 1 s grouping; its own storage,
    loopback only, no gossip."""
    directory.mkdir()
    config = directory / "alertmanager.yml"
    timings = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
    config.write_text(json.dumps(alertmanager.config(webhook_url, **timings)))
    port = free_port()
    argv = [binary, f"--config.file={config}", f"--storage.path={directory / 'data'}"]
    argv += [f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    url = f"http://127.0.0.1:{port}/-/ready"
    return start_service(argv, url, directory / "alertmanager.log"), port


def inhibited(port: int, alertname: str) -> list[dict[str, Any]]:
    """Alerts named `alertname` that Alertmanager holds back because another alert inhibits it."""
    query = "active=false&silenced=false&inhibited=true&unprocessed=false"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts?{query}", timeout=5) as r:
        alerts = json.load(r)
    return [
        a for a in alerts if a["labels"]["alertname"] == alertname and a["status"]["inhibitedBy"]
    ]


@pytest.mark.long
@pytest.mark.slow
def test_alerts_reach_a_webhook_with_their_labels_and_annotations(
    redis_url: str, celery_app: Any, tmp_path: Path, webhook: Webhook
) -> None:
    prometheus = require_binary("prometheus")
    alertmanager_binary = require_binary("prometheus-alertmanager")
    copy = prometheus_config(tmp_path)
    config = copy / "prometheus.yml"
    config.write_text(
        config.read_text().replace("evaluation_interval: 5s", "evaluation_interval: 1s")
    )
    generate.write(copy / "rules", SHORT)
    worker = WorkerProcess(SCENARIOS["prefork_sequential"], 1, redis_url, tmp_path, "alerts")
    worker.targets_dir = copy / "targets"  # where the copied config's file_sd globs look
    processes: list[Any] = []
    try:
        am, am_port = start_alertmanager(alertmanager_binary, tmp_path / "am", webhook.url)
        processes.append(am)
        write_target(copy / "targets" / "alertmanager", f"127.0.0.1:{am_port}", {})
        worker.start()
        worker.wait_ready(celery_app)
        port = free_port()
        processes.append(
            start_prometheus(prometheus, config, tmp_path / "data", port, tmp_path / "p.log")
        )
        wait_for(
            lambda: len(prometheus_query(port, f'up{{job="{JOB}"}} == 1')) == 2,
            60,
            what="the worker's two targets scraped",
        )

        # 1. The task's first run fails (its series appear at 1): MembenchTaskRunFailures
        # (warning), from the benchmark's group.
        result = send_batch(celery_app, worker, **{**GOOD_PARAMS, "subtasks": -1})
        result.get(timeout=60, propagate=False)
        assert result.state == "FAILURE"
        (alert,) = wait_for(
            lambda: webhook.firing(mixin.TASK_RUN_FAILURES), 60, what="the failure delivered"
        )
        assert alert["labels"] == {
            "alertname": mixin.TASK_RUN_FAILURES,
            "severity": "warning",
            "job": JOB,
            "scenario": "prefork_sequential",
            "pool": "prefork",
            "strategy": "sequential",
            "outcome": "failure",
        }
        annotations = alert["annotations"]
        assert annotations["summary"] == "Benchmark task runs are failing"
        assert annotations["description"].startswith(
            f"1 run(s) of scenario prefork_sequential (job {JOB}) ended with outcome failure"
        )
        assert annotations["runbook_url"] == RUNBOOKS + "membenchtaskrunfailures"
        assert annotations["dashboard_url"] == (
            f"{mixin.DEFAULT_GRAFANA_URL}/d/{mixin.OVERVIEW_UID}?var-job={JOB}"
        )

        # 2. The worker vanishes (SIGKILL to its group: no clean exit, its targets stay, as
        # when its host goes): MembenchWorkerAbsent (critical) for each of its processes.
        os.killpg(worker.pid, signal.SIGKILL)
        absent = wait_for(
            lambda: len(found := webhook.firing(mixin.WORKER_ABSENT)) == 2 and found,
            60,
            what="both processes reported absent",
        )
        assert sorted(a["labels"]["role"] for a in absent) == ["child", "main"]
        for alert in absent:
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["job"] == JOB and alert["labels"]["pool"] == "prefork"
            annotations = alert["annotations"]
            assert annotations["summary"] == "A Celery worker process is absent"
            instance = alert["labels"]["instance"]
            assert f"of worker {instance} (job {JOB}), pool prefork" in annotations["description"]
            assert "has not for 2s" in annotations["description"]
            assert annotations["runbook_url"] == RUNBOOKS + "membenchworkerabsent"
            assert f"/d/{mixin.CELERY_WORKER_UID}?var-job={JOB}" in annotations["dashboard_url"]

        # 3. Their targets are down too, but the absent processes inhibit that warning.
        wait_for(
            lambda: len(inhibited(am_port, mixin.WORKER_TARGET_DOWN)) == 2,
            60,
            what="the target-down warnings inhibited",
        )
        assert webhook.firing(mixin.WORKER_TARGET_DOWN) == []
    finally:
        for process in reversed(processes):
            stop(process)
        worker.stop()
