"""A real Prometheus loads our config and rules and scrapes exporters through file_sd; Flower's
metrics need no auth."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import REPO, load_rule_groups, require_binary, start_prometheus, start_service

from membench.exporter import names
from membench.processes import free_port, stop

T = TypeVar("T")
PROM_DIR = REPO / "prometheus"


CONFIG = PROM_DIR / "prometheus.yml"


REPO = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    detail: Callable[[], object] = lambda: "",
) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (OSError, ValueError, KeyError) as exc:  # not up yet / partial answer
            last_error = exc
        else:
            if result:
                return result
        time.sleep(0.25)  # poll interval of the deadline loop
    pytest.fail(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error}) {detail()}"
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def exposition(role: str, rss: int) -> bytes:
    labels = f'scenario="prefork_threads",pool="prefork",strategy="threads",role="{role}"'
    return (
        f"# HELP {names.PROCESS_RSS_BYTES} Resident set size.\n"
        f"# TYPE {names.PROCESS_RSS_BYTES} gauge\n"
        f"{names.PROCESS_RSS_BYTES}{{{labels}}} {rss}\n"
    ).encode()


def serve_metrics(body: bytes) -> ThreadingHTTPServer:
    """A fake worker exporter on 127.0.0.1 serving a fixed exposition body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_target(prom_copy: Path, job: str, name: str, address: str, labels: dict) -> None:
    job_dir = prom_copy / "targets" / job
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / f"{name}.json").write_text(json.dumps([{"targets": [address], "labels": labels}]))


@pytest.fixture
def fake_workers() -> Iterator[dict[str, ThreadingHTTPServer]]:
    servers = {
        "main": serve_metrics(exposition("main", 60_000_000)),
        "child": serve_metrics(exposition("child", 100_000_000)),
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


@pytest.fixture
def prometheus_server(
    tmp_path: Path, fake_workers: dict[str, ThreadingHTTPServer]
) -> Iterator[str]:
    """Prometheus on a copy of prometheus/, laid out as the local stack does; yields its URL."""
    binary = require_binary("prometheus")
    prom_copy = tmp_path / "prometheus"
    shutil.copytree(PROM_DIR, prom_copy)
    port = free_port()
    write_target(prom_copy, "prometheus", "self", f"127.0.0.1:{port}", {})
    for role, server in fake_workers.items():
        labels = {"scenario": "prefork_threads", "pool": "prefork", "strategy": "threads"}
        address = f"127.0.0.1:{server.server_address[1]}"
        write_target(prom_copy, "workers", f"fake_{role}", address, {**labels, "role": role})
    config = prom_copy / "prometheus.yml"
    log = tmp_path / "prometheus.log"
    process = start_prometheus(binary, config, tmp_path / "data", port, log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.mark.slow
def test_real_prometheus_loads_config_and_rules(prometheus_server: str) -> None:
    url = prometheus_server
    expected_groups = {group["name"]: len(group["rules"]) for group in load_rule_groups()}

    def rules_evaluated() -> list[dict[str, Any]] | None:
        groups = get_json(f"{url}/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        # health is "unknown" until a rule's first evaluation.
        if {g["name"]: len(g["rules"]) for g in groups} == expected_groups and all(
            rule["health"] != "unknown" for rule in rules
        ):
            return groups
        return None

    groups = wait_for(rules_evaluated, 60, "every rule group loaded and evaluated")
    unhealthy = {
        rule["name"]: rule.get("lastError")
        for group in groups
        for rule in group["rules"]
        if rule["health"] != "ok"
    }
    assert not unhealthy, unhealthy

    def targets_up() -> dict[str, int] | None:
        active = get_json(f"{url}/api/v1/targets?state=active")["data"]["activeTargets"]
        up: dict[str, int] = {}
        for target in active:
            if target["health"] == "up":
                up[target["labels"]["job"]] = up.get(target["labels"]["job"], 0) + 1
        return up if up.get("prometheus") == 1 and up.get("membench-workers") == 2 else None

    wait_for(targets_up, 60, "file_sd targets (relative globs) scraped and up")

    # End to end: honor_labels keeps the identity labels, the rule sums main + child.
    query = urllib.parse.quote(names.RULE_TREE_RSS_SUM)

    seen: list[Any] = []

    def tree_sum() -> list[dict[str, Any]] | None:
        # Rules and scrapes run on their own clocks: wait for an evaluation that saw both targets.
        result = get_json(f"{url}/api/v1/query?query={query}")["data"]["result"]
        seen[:] = result
        if len(result) == 1 and float(result[0]["value"][1]) == 160_000_000:
            return result
        return None

    wait_for(tree_sum, 60, "tree sum == main + child", detail=lambda: f"last result: {seen}")
    labels = dict(seen[0]["metric"])
    labels.pop("__name__", None)
    # The group labels stay (job; namespace under Kubernetes): two stacks never merge.
    assert labels == {
        "job": "membench-workers",
        "scenario": "prefork_threads",
        "pool": "prefork",
        "strategy": "threads",
    }


# --- flower's /metrics and basic auth ----------------------------------------------------------


@pytest.mark.slow
def test_flower_metrics_need_no_auth(tmp_path: Path) -> None:
    """prometheus.yml scrapes flower without credentials: /metrics must stay open under
    --basic-auth (while /api is protected). Catches a flower upgrade that changes this."""
    port = free_port()
    env = {
        **os.environ,
        # Nothing listens there: flower serves HTTP while its event consumer retries.
        "MEMBENCH_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "FLOWER_BASIC_AUTH": "membench:not-a-secret",
    }
    argv = [sys.executable, "-m", "celery", "-A", "membench.workers.app", "flower"]
    argv += ["--address=127.0.0.1", f"--port={port}"]
    url = f"http://127.0.0.1:{port}"
    process = start_service(argv, f"{url}/healthcheck", tmp_path / "flower.log", env)
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            assert response.status == 200
            assert b"flower_events_total" in response.read()
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{url}/api/workers", timeout=5)
        assert denied.value.code == 401
    finally:
        stop(process)
