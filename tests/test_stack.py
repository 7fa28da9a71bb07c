"""`membench stack up` with a real Prometheus: every target up, and every dashboard panel's
query returns data with the expected labels (no Grafana server exists here: this is the proof)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import membench, require_binary, start_prometheus
from test_compose import compose_python_commands

from membench.exporter import names
from membench.grafana import generate as dashboards
from membench.grafana import panels
from membench.processes import free_port, stop, wait_for
from membench.prometheus import generate as rules
from membench.prometheus.mixin import Settings
from membench.stack import supervisor as stack
from membench.workers.scenarios import SEED_SCENARIOS as SCENARIOS

LOADGEN_SUCCESS_RATE = f'{names.RULE_LOADGEN_RUNS_RATE5M}{{outcome="success"}}'
FAST_SCHEDULE = """
[defaults]
subtasks = 4
size_mb = 2.0
hold_s = 0.1
workers = 2
period_s = 2
jitter_s = 0.2

[scenarios.prefork_threads]
[scenarios.prefork_sequential]
[scenarios.gevent_threads]
[scenarios.gevent_greenlets]
"""


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_binary("prometheus")
    directory = tmp_path_factory.mktemp("stack")
    schedule = directory / "fast.toml"
    schedule.write_text(FAST_SCHEDULE)
    log = open(directory / "stack-up.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            *stack.MEMBENCH_COMMAND,
            "stack",
            "up",
            *("--dir", str(directory / "run")),
            *("--schedule", str(schedule)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state_file = directory / "run" / stack.STATE_FILE
    try:
        wait_for(
            lambda: state_file.exists() or proc.poll() is not None,
            timeout=120,
            what="stack up",
        )
        assert proc.poll() is None, (directory / "stack-up.log").read_text()
        state = json.loads(state_file.read_text())
        state["directory"] = directory / "run"
        state["proc"] = proc
        yield state
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        log.close()


@pytest.mark.slow
def test_every_service_is_up_in_prometheus(running_stack: dict[str, Any]) -> None:
    prometheus = running_stack["prometheus_url"]

    def all_up() -> list[dict[str, Any]] | None:
        up = query(prometheus, "up")
        jobs = {
            (r["metric"]["job"], r["metric"].get("scenario"), r["metric"].get("role")) for r in up
        }
        wanted = {("membench-workers", s, "main") for s in SCENARIOS}
        wanted |= {("membench-workers", s, "child") for s in SCENARIOS if "prefork" in s}
        wanted |= {("membench-loadgen", None, None), ("flower", None, None)}
        wanted.add(("prometheus", None, None))
        return up if wanted <= jobs and all(r["value"][1] == "1" for r in up) else None

    wait_for(all_up, timeout=60, interval=1, what="every target up")
    if "alertmanager" in running_stack["services"]:
        # Prometheus found the stack's Alertmanager through its file_sd target.
        def sending() -> bool:
            url = f"{prometheus}/api/v1/alertmanagers"
            with urllib.request.urlopen(url, timeout=10) as response:
                active = json.load(response)["data"]["activeAlertmanagers"]
            return [a["url"] for a in active] == [
                running_stack["services"]["alertmanager"]["url"].replace("/-/ready", "")
                + "/api/v2/alerts"
            ]

        wait_for(sending, timeout=30, interval=1, what="Prometheus sending to Alertmanager")


# Empty in the local stack by design: its cgroup has no memory limit, and its loadgen never
# overlaps two runs in one process, so every peak is exact and none is a shared window's.
EMPTY_HERE = (names.CGROUP_MEMORY_LIMIT_BYTES, names.TASK_WINDOW_PEAK_RSS_BYTES)


@pytest.mark.slow
def test_every_panel_query_returns_data_with_the_expected_labels(
    running_stack: dict[str, Any],
) -> None:
    prometheus = running_stack["prometheus_url"]
    # Data first: every scenario ran through the loadgen, and rate windows have two samples.
    wait_for(
        lambda: (
            len(
                query(
                    prometheus,
                    f"{LOADGEN_SUCCESS_RATE} > 0",
                )
            )
            == len(SCENARIOS)
        ),
        timeout=120,
        interval=1,
        what="successful loadgen runs of every scenario",
    )
    variables = {"scenario": ".*", "instance": ".*", "__range": "5m"}
    check_every_panel(prometheus, panels.load_dashboards(), variables)


def check_every_panel(
    prometheus: str,
    dashboard_list: list[dict[str, Any]],
    variables: dict[str, str],
    jobs: set[str] | None = None,
) -> None:
    """Every panel's query answers on `prometheus` with every scenario where it is by scenario,
    and, given `jobs`, only with those jobs where a series carries one."""
    checked = []
    for dashboard in dashboard_list:
        for uid, title, expr in panels.panel_queries(dashboard, variables):
            if any(name in expr for name in EMPTY_HERE):
                # Empty by design in this stack: the query must still be valid.
                query(prometheus, expr)
                continue
            by_scenario = (
                "by (scenario" in expr or expr.startswith("scenario") or "membench_process_" in expr
            )

            def answered(e: str = expr, by_scenario: bool = by_scenario) -> list[Any] | None:
                result = query(prometheus, e)
                seen = {r["metric"].get("scenario") for r in result}
                assert not by_scenario or seen <= set(SCENARIOS), (e, seen)
                if jobs:
                    assert {r["metric"].get("job", next(iter(jobs))) for r in result} <= jobs, e
                # Rate and deriv rules need two evaluations per scenario: wait for all four.
                return result if result and (not by_scenario or seen == set(SCENARIOS)) else None

            wait_for(answered, timeout=60, interval=1, what=f"{uid}/{title}: {expr}")
            checked.append((uid, title))
    assert len({uid for uid, _ in checked}) == 3
    assert len(checked) >= 30


@pytest.mark.slow
def test_the_scenario_variable_filters_every_worker_panel(running_stack: dict[str, Any]) -> None:
    prometheus = running_stack["prometheus_url"]
    variables = {"scenario": "gevent_threads", "instance": ".*", "__range": "5m"}
    for dashboard in panels.load_dashboards():
        for _, title, expr in panels.panel_queries(dashboard, variables):
            if 'scenario=~"gevent_threads"' not in expr or "== 0" in expr:
                continue
            seen = {r["metric"].get("scenario") for r in query(prometheus, expr)}
            assert seen <= {"gevent_threads", None}, (title, seen)


TEAM_CONFIG = """
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
rule_files: [rules/*.yml]
scrape_configs:
"""
TEAM_JOB = """
  - job_name: {job}
    honor_labels: true
    file_sd_configs: [{{files: ["{targets}/{kind}/*.json"], refresh_interval: 1s}}]
    relabel_configs: [{{target_label: namespace, replacement: team-a}}]
"""


@pytest.mark.slow
def test_dashboards_and_rules_generated_with_a_selector_answer_under_other_job_names(
    running_stack: dict[str, Any], tmp_path: Path
) -> None:
    """A shared Prometheus as a PodMonitor would set it up: the stack's processes scraped under
    jobs named <namespace>/<name> with a namespace label, the rules and the dashboards generated
    with the selector namespace="team-a". Every panel answers, reading only those jobs."""
    binary = require_binary("prometheus")
    settings = Settings(selector='namespace="team-a"')
    targets = running_stack["directory"] / "prometheus" / "targets"
    kinds = {"workers": "team-a/celery-workers", "loadgen": "team-a/loadgen"}
    kinds["flower"] = "team-a/flower"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        TEAM_CONFIG
        + "".join(TEAM_JOB.format(job=j, targets=targets, kind=k) for k, j in kinds.items())
    )
    rules.write(tmp_path / "rules", settings)
    port = free_port()
    team = start_prometheus(binary, config, tmp_path / "data", port, tmp_path / "team.log")
    try:
        url = f"http://127.0.0.1:{port}"
        rate = f'{names.RULE_LOADGEN_RUNS_RATE5M}{{namespace="team-a", outcome="success"}} > 0'
        wait_for(
            lambda: len(query(url, rate)) == len(SCENARIOS),
            timeout=120,
            interval=1,
            what="loadgen runs of every scenario in the team's Prometheus",
        )
        variables = {"job": kinds["workers"], "flower_job": kinds["flower"]}
        variables |= {"namespace": "team-a", "scenario": ".*", "instance": ".*", "__range": "5m"}
        built = list(dashboards.build_dashboards(settings).values())
        check_every_panel(url, built, variables, set(kinds.values()))
    finally:
        stop(team)


@pytest.mark.slow
def test_stack_down_stops_every_process(running_stack: dict[str, Any]) -> None:
    pids = [service["pid"] for service in running_stack["services"].values()]
    children = psutil.Process(running_stack["proc"].pid).children(recursive=True)
    result = membench("stack", "down", "--dir", str(running_stack["directory"]), timeout=120)
    assert result.returncode == 0, result.stderr
    running_stack["proc"].wait(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.pid for p in alive]
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert not (running_stack["directory"] / stack.STATE_FILE).exists()


def test_local_stack_runs_the_commands_compose_runs() -> None:
    def normalise(argv: list[str]) -> tuple[str, ...]:
        """Program, subcommand and scenario: what a command does (hosts and ports differ)."""
        if argv[:3] == stack.MEMBENCH_COMMAND:
            argv = ["membench", *argv[3:]]
        elif argv[:3] == [sys.executable, "-m", "celery"]:
            argv = ["celery", *argv[3:]]
        if argv[:3] == ["celery", "-A", "membench.workers.app"]:
            argv = ["celery", "membench.workers.app", *argv[3:]]
        words = []
        for word in argv:
            if word.startswith("-"):
                break
            words.append(word)
        return tuple(words)

    local = {
        normalise(argv)
        for argv in stack.service_commands(Path("s.toml"), list(SCENARIOS), 1, 2).values()
    }
    compose = {normalise(argv) for argv in compose_python_commands().values()}
    assert compose == local


def test_stack_up_refuses_bad_input_before_starting_anything(tmp_path: Path) -> None:
    before = len(psutil.Process().children(recursive=True))
    result = membench("stack", "up", "--dir", str(tmp_path), "--schedule", str(tmp_path / "no"))
    assert result.returncode == 2 and "--schedule" in result.stderr
    result = membench("stack", "down", "--dir", str(tmp_path))
    assert result.returncode == 1 and "no running stack" in result.stderr
    assert len(psutil.Process().children(recursive=True)) == before
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_stack_up_stops_every_process_on_a_signal(sig: signal.Signals, tmp_path: Path) -> None:
    schedule = tmp_path / "fast.toml"
    schedule.write_text(FAST_SCHEDULE)
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen(
        [
            *stack.MEMBENCH_COMMAND,
            *("stack", "up", "--dir", str(tmp_path / "run"), "--schedule", str(schedule)),
            *("--scenarios", "gevent_greenlets"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")),
    )
    try:
        state_file = tmp_path / "run" / stack.STATE_FILE
        wait_for(lambda: state_file.exists() or proc.poll() is not None, timeout=120, what="up")
        assert proc.poll() is None
        started = psutil.Process(proc.pid).children(recursive=True)
        assert len(started) >= 4  # redis, worker, loadgen, flower (+ prometheus)
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        _, alive = psutil.wait_procs(started, timeout=1)
        assert not alive, [(p.pid, p.name()) for p in alive]
        assert not state_file.exists()
        assert os.listdir(tmp_path / "tmp") == []  # the embedded redis-server's, removed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
