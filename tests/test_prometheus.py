"""Tests for prometheus/: promtool checks and unit tests, rule naming, and a real Prometheus.

promtool/prometheus missing: skipped locally, a failure when $CI is set (CI must install them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
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
import yaml

from membench.exporter import names

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
PROM_DIR = REPO / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
UNIT_TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))

# The names dashboards and the README use (contract); extra rules are allowed, these are required.
CONTRACT_RECORDS = set(names.RECORDING_RULES)
EXPECTED_ALERTS = {
    "MembenchWorkerTargetDown",
    "MembenchTaskRunFailures",
    "MembenchSoakMemoryGrowth",
    "MembenchLoadgenSkippingRuns",
    "MembenchLoadgenRunFailures",
    "MembenchLoadgenTargetDown",
}
# job name -> file_sd glob, relative to prometheus.yml (contract).
CONTRACT_JOBS = {
    "membench-workers": "targets/workers/*.json",
    "membench-loadgen": "targets/loadgen/*.json",
    "flower": "targets/flower/*.json",
    "prometheus": "targets/prometheus/*.json",
}

RECORD_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_]+$")
# A metric name not glued to a recording rule's colons (scenario:membench_x:sum is not membench_x).
MEMBENCH_METRIC = re.compile(r"(?<![\w:])membench_\w+(?![\w:])")
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def require_binary(name: str) -> str:
    """Path of a Prometheus binary; skip without it locally, fail in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must install Prometheus (Debian: prometheus package)")
        pytest.skip(message)
    return path


def load_rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULE_FILES:
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rule_groups() for rule in group["rules"]]


def defined_metrics() -> set[str]:
    return {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and value.startswith("membench_")
    }


def referenced_metrics(promql: str) -> set[str]:
    """membench_* metric names in a PromQL expression (string literals ignored)."""
    return set(MEMBENCH_METRIC.findall(QUOTED.sub('""', promql)))


def undefined(metric: str, defined: set[str]) -> bool:
    if metric in defined:
        return False
    return not any(
        metric.endswith(suffix) and metric.removesuffix(suffix) in defined
        for suffix in HISTOGRAM_SUFFIXES
    )


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=120, check=False
    )


# --- promtool ------------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    result = run_promtool("check", "config", str(CONFIG))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The rule_files glob is relative to the config file: every rules file must be picked up.
    for path in RULE_FILES:
        assert path.name in output, f"{path.name} not loaded by rule_files:\n{output}"


def test_promtool_check_rules() -> None:
    assert RULE_FILES, "no prometheus/rules/*.yml"
    result = run_promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests() -> None:
    assert UNIT_TEST_FILES, "no prometheus/tests/*.yml"
    result = run_promtool("test", "rules", *map(str, UNIT_TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


# --- pure Python -----------------------------------------------------------------------------


def test_config_jobs_match_contract() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(CONTRACT_JOBS)
    for name, glob in CONTRACT_JOBS.items():
        sd_configs = jobs[name]["file_sd_configs"]
        assert [sd["files"] for sd in sd_configs] == [[glob]], name
        assert all(sd["refresh_interval"] == "5s" for sd in sd_configs), name
    assert jobs["membench-workers"].get("honor_labels") is True


def test_recording_rule_names_follow_convention() -> None:
    records = [rule["record"] for rule in all_rules() if "record" in rule]
    bad = [name for name in records if not RECORD_NAME.match(name)]
    assert not bad, f"not level:metric:operations: {bad}"
    assert len(records) == len(set(records)), "duplicate recording rule"


def test_contract_recording_rules_exist() -> None:
    records = {rule["record"] for rule in all_rules() if "record" in rule}
    assert records >= CONTRACT_RECORDS, f"missing: {sorted(CONTRACT_RECORDS - records)}"


def test_alerts_have_severity_and_annotations() -> None:
    alerts = [rule for rule in all_rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == EXPECTED_ALERTS
    for rule in alerts:
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]


def test_rule_metrics_are_defined_in_names() -> None:
    defined = defined_metrics()
    problems = {
        rule.get("record") or rule["alert"]: sorted(
            m for m in referenced_metrics(rule["expr"]) if undefined(m, defined)
        )
        for rule in all_rules()
    }
    problems = {name: bad for name, bad in problems.items() if bad}
    assert not problems, f"membench_* metrics not in exporter/names.py: {problems}"


def test_unit_test_inputs_use_defined_metrics() -> None:
    defined = defined_metrics()
    bad = set()
    for path in UNIT_TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for series in case.get("input_series", []):
                bad |= {m for m in referenced_metrics(series["series"]) if undefined(m, defined)}
    assert not bad, f"unit test input series use unknown metrics: {sorted(bad)}"


def test_every_rule_and_alert_is_unit_tested() -> None:
    tested_exprs: list[str] = []
    alert_cases: dict[str, list[bool]] = {}
    for path in UNIT_TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested_exprs += [t["expr"] for t in case.get("promql_expr_test", [])]
            for t in case.get("alert_rule_test", []):
                alert_cases.setdefault(t["alertname"], []).append(bool(t.get("exp_alerts")))
    records = {rule["record"] for rule in all_rules() if "record" in rule}
    untested = {r for r in records if not any(r in expr for expr in tested_exprs)}
    assert not untested, f"recording rules without a promql_expr_test: {sorted(untested)}"
    for alert in EXPECTED_ALERTS:
        outcomes = alert_cases.get(alert, [])
        assert True in outcomes, f"{alert}: no firing case"
        assert False in outcomes, f"{alert}: no not-firing case"


def test_promql_doc_names_existing_rules() -> None:
    """docs/promql.md pairs queries with rule names: they must exist, and the tree ones appear."""
    doc = (REPO / "docs" / "promql.md").read_text()
    records = {rule["record"] for rule in all_rules() if "record" in rule}
    mentioned = set(re.findall(r"\b[a-z_]+:membench_\w+:\w+", doc))
    assert mentioned <= records, f"unknown rules in docs/promql.md: {sorted(mentioned - records)}"
    assert {r for r in CONTRACT_RECORDS if "_tree_" in r or "task_peak" in r} <= mentioned


# --- a real Prometheus -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={prom_copy / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited {process.returncode}:\n{log_path.read_text()}")
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                return response.status == 200

        wait_for(ready, 60, "prometheus /-/ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


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
    assert labels == {"scenario": "prefork_threads", "pool": "prefork", "strategy": "threads"}


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
    log_path = tmp_path / "flower.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"flower exited {process.returncode}:\n{log_path.read_text()}")
            with urllib.request.urlopen(f"{url}/healthcheck", timeout=2) as response:
                return response.status == 200

        wait_for(healthy, 60, "flower /healthcheck")
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            assert response.status == 200
            assert b"flower_events_total" in response.read()
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{url}/api/workers", timeout=5)
        assert denied.value.code == 401
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
