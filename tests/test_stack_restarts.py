"""`membench stack up` restarts a service that dies (compose's `restart: unless-stopped`): a
SIGKILLed gevent worker, redis-server on its port and password, Prometheus on its port and data;
each restart is said and recorded, a crash loop ends the stack, and nothing outlives the stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import require_binary, scrape, value

from membench.exporter import names
from membench.processes import pid_alive, wait_for
from membench.stack import supervisor as stack
from membench.stack.restarts import (
    BACKOFF_FIRST_S,
    CRASH_LOOP_LIMIT,
    QUICK_EXIT_S,
    CrashLoop,
    RestartPolicy,
    describe_exit,
)
from membench.targets import addresses_by_pid

SCHEDULE = """
[defaults]
subtasks = 2
size_mb = 1.0
hold_s = {hold_s}
workers = 2
period_s = 1
jitter_s = 0.1

[scenarios.gevent_greenlets]
"""
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


# ---- the policy (pure) -----------------------------------------------------------------------


def test_a_first_death_restarts_at_once_and_quick_deaths_back_off_doubling() -> None:
    policy = RestartPolicy()
    assert policy.on_death("w", ran_s=600, now=100) == 100  # ran long: at once
    policy.restarted("w")
    assert policy.on_death("w", ran_s=0.1, now=200) == 200  # first quick death: at once
    policy.restarted("w")
    assert policy.on_death("w", ran_s=0.1, now=300) == 300 + BACKOFF_FIRST_S
    assert policy.on_death("w", ran_s=0.1, now=300.5) == 300 + BACKOFF_FIRST_S  # still waiting
    policy.restarted("w")
    assert policy.on_death("w", ran_s=0.1, now=400) == 400 + 2 * BACKOFF_FIRST_S
    policy.restarted("w")
    assert policy.on_death("w", ran_s=QUICK_EXIT_S + 1, now=500) == 500  # it ran: reset


def test_a_restart_after_a_back_off_reports_the_death_as_first_seen() -> None:
    policy = RestartPolicy()
    policy.on_death("w", ran_s=0.1, now=0)
    policy.restarted("w")
    policy.on_death("w", ran_s=0.2, now=10)  # backed off
    seen = policy.noticed["w"]
    policy.on_death("w", ran_s=1.2, now=10.5)  # the next pass, still waiting
    assert policy.noticed["w"] == seen and seen[1] == 0.2


def test_a_service_that_keeps_dying_right_after_starting_is_a_crash_loop() -> None:
    policy = RestartPolicy()
    for n in range(CRASH_LOOP_LIMIT - 1):
        policy.on_death("loadgen", ran_s=0.2, now=float(n))
        policy.restarted("loadgen")
    with pytest.raises(CrashLoop, match="loadgen died 5 times in a row"):
        policy.on_death("loadgen", ran_s=0.2, now=10.0)
    assert policy.on_death("flower", ran_s=0.2, now=10.0) == 10.0  # per service


@pytest.mark.parametrize(
    ("code", "said"),
    [(0, "exited with code 0"), (3, "exited with code 3"), (-9, "was killed by SIGKILL")],
)
def test_describe_exit(code: int, said: str) -> None:
    assert describe_exit(code) == said


# ---- the supervisor's restart, on real processes ---------------------------------------------


def test_a_killed_service_is_restarted_with_its_argv_and_env_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "logs").mkdir()
    s = stack.Stack(tmp_path)
    new_pid = None
    try:
        env = dict(os.environ, MEMBENCH_TEST_MARK="kept")
        service = s.add("sleeper", SLEEPER, env)
        first = service.proc.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: service.proc.poll() is not None, 10, what="the sleeper to die")
        assert [r.service for r in s.restart_dead()] == ["sleeper"]
        record = s.restarts[0]
        new_pid = record.new_pid
        assert (record.old_pid, record.new_pid) == (
            first,
            service.proc.pid,
        ) and first != record.new_pid
        assert record.exit == "was killed by SIGKILL" and record.error is None
        new = psutil.Process(service.proc.pid)
        assert new.cmdline() == SLEEPER and new.environ()["MEMBENCH_TEST_MARK"] == "kept"
        said = capsys.readouterr().err
        assert f"sleeper (pid {first}) was killed by SIGKILL" in said
        assert f"restarted as pid {service.proc.pid} (restart 1;" in said
    finally:
        s.stop()
    assert new_pid is not None and not pid_alive(new_pid)


@pytest.mark.slow  # the back-off: 1 + 2 + 4 s before the fifth quick death
def test_a_crash_loop_is_given_up_after_the_limit(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    s = stack.Stack(tmp_path)
    service = s.add("broken", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))
    try:
        with pytest.raises(CrashLoop):
            wait_for(lambda: s.restart_dead() and False, 60, interval=0.1, what="a crash loop")
        assert [r.exit for r in s.restarts] == ["exited with code 3"] * (CRASH_LOOP_LIMIT - 1)
    finally:
        s.stop()
    assert service.proc.poll() is not None


# ---- the whole stack -------------------------------------------------------------------------


@pytest.fixture
def stack_up(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    require_binary("prometheus")
    schedule = tmp_path / "schedule.toml"
    schedule.write_text(SCHEDULE.format(hold_s=getattr(request, "param", 0.1)))
    err = (tmp_path / "stack-up.err").open("wb")
    proc = subprocess.Popen(
        [
            *(*stack.MEMBENCH_COMMAND, "stack", "up", "--dir", str(tmp_path / "run")),
            *("--schedule", str(schedule), "--scenarios", "gevent_greenlets"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    state = tmp_path / "run" / stack.STATE_FILE
    try:
        wait_for(lambda: state.exists() or proc.poll() is not None, 120, what="stack up")
        assert proc.poll() is None, (tmp_path / "stack-up.err").read_text()
        yield {"proc": proc, "state": state, "err": tmp_path / "stack-up.err"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        err.close()


def _state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _successes(state: dict[str, Any]) -> float:
    address = state["services"]["loadgen"]["url"].removeprefix("http://").removesuffix("/metrics")
    text = scrape(address)
    return value(text, names.LOADGEN_RUNS_TOTAL, scenario="gevent_greenlets", outcome="success")


def _restarted(path: Path, service: str, old_pid: int) -> dict[str, Any] | None:
    """The service's entry in stack.json once the restart of `old_pid` is recorded, with its url."""
    state = _state(path)
    done = [r for r in state["restarts"] if r["service"] == service and r["old_pid"] == old_pid]
    entry = state["services"][service]
    if done and done[0]["new_pid"] == entry["pid"] and (entry["url"] or service == "redis"):
        return state
    return None


@pytest.mark.slow
def test_stack_up_restarts_a_killed_worker_redis_and_prometheus_and_runs_go_on(
    stack_up: dict[str, Any],
) -> None:
    path, pids_seen = stack_up["state"], set()
    state = _state(path)
    wait_for(lambda: _successes(state) >= 2, 60, what="two successful runs")
    for service in ("worker-gevent_greenlets", "redis", "prometheus"):
        old = state["services"][service]["pid"]
        pids_seen.add(old)
        os.kill(old, signal.SIGKILL)
        state = wait_for(lambda s=service, o=old: _restarted(path, s, o), 60, what=service)
        pids_seen.add(state["services"][service]["pid"])
        done = _successes(state)
        # Recovered: a run succeeds again after this restart, through the restarted service.
        wait_for(lambda d=done, st=state: _successes(st) > d, 60, what=f"a run after {service}")
    targets = Path(path.parent / "prometheus" / "targets")
    worker = state["services"]["worker-gevent_greenlets"]
    # The killed worker's target file was pruned when the new one registered.
    assert list(addresses_by_pid(targets)) == [worker["pid"]]
    url = state["prometheus_url"] + "/-/ready"
    with urllib.request.urlopen(url, timeout=5) as response:  # same port, same data dir
        assert response.status == 200

    stack_up["proc"].send_signal(signal.SIGTERM)
    assert stack_up["proc"].wait(timeout=90) == 0
    said = stack_up["err"].read_text()
    assert "worker-gevent_greenlets (pid" in said and "was killed by SIGKILL" in said
    stop_line = said.rstrip().splitlines()[-1]
    assert stop_line.startswith("membench stack: stopped every process; "), said[-2000:]
    for service in ("prometheus 1", "redis 1", "worker-gevent_greenlets 1"):
        assert service in stop_line, stop_line
    pids_seen |= {s["pid"] for s in state["services"].values()}
    wait_for(lambda: not any(pid_alive(p) for p in pids_seen), 10, what="every pid gone")


@pytest.mark.slow
@pytest.mark.parametrize("stack_up", [6.0], indirect=True)  # a run outlasts the 5 s grace
def test_stack_down_lets_the_loadgen_count_its_run_in_flight_and_print_its_summary(
    stack_up: dict[str, Any],
) -> None:
    state = _state(stack_up["state"])
    worker = state["services"]["worker-gevent_greenlets"]["url"]
    address = worker.removeprefix("http://").removesuffix("/metrics")
    running = names.PROCESS_TASKS_IN_PROGRESS
    wait_for(
        lambda: value(scrape(address), running, scenario="gevent_greenlets"),
        60,
        what="a task running",
    )
    stack_up["proc"].send_signal(signal.SIGTERM)
    assert stack_up["proc"].wait(timeout=90) == 0
    # One SIGTERM, then a wait: the loadgen finished or timed out the run in its grace, counted
    # it and printed its summary; a second SIGTERM would end it at once, both lost.
    log = (stack_up["state"].parent / "logs" / "loadgen.log").read_text()
    after_stop = log[log.index("SIGTERM: stopping; waiting up to") :]
    assert re.search(r"gevent_greenlets run \d+: ", after_stop), after_stop
    rows = [line.split() for line in after_stop.splitlines()]
    assert ["scenario", "fired", "success", "failure", "timeout", "skipped"] in rows, after_stop
    summary = next(r for r in rows if r[:1] == ["gevent_greenlets"] and len(r) == 6)
    fired, success, failure, timeout = map(int, summary[1:5])
    assert fired == success + failure + timeout >= 1, summary
