"""`membench loadgen`: schedule parsing, and the scheduler against real Redis and real workers."""

from __future__ import annotations

import http.server
import itertools
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import membench, scrape, value

from membench.exporter import names
from membench.exporter.server import start_exporter
from membench.loadgen.annotations import GrafanaAnnotator
from membench.loadgen.metrics import LoadgenMetrics
from membench.loadgen.schedule import EXAMPLE_SCHEDULE, ScenarioPlan
from membench.loadgen.scheduler import Scheduler
from membench.processes import free_port, spawn, stop, wait_for
from membench.run.worker import WorkerProcess
from membench.workers.params import BatchParams
from membench.workers.scenarios import SCENARIOS

EXAMPLE = EXAMPLE_SCHEDULE


SCENARIO = "[scenarios.gevent_greenlets]\n"


def write(tmp_path: Path, text: str, name: str = "schedule.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- real workers ------------------------------------------------------------------------------


@dataclass
class FakeGrafana:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    """A real HTTP server on loopback that records what /api/annotations receives."""
    posts: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(
                {
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "body": json.loads(body),
                }
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id": 1, "message": "Annotation added"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeGrafana(f"http://127.0.0.1:{server.server_port}/", posts)
    finally:
        server.shutdown()
        server.server_close()


def _shared_worker(
    scenario: str, redis_url: str, celery_app: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        SCENARIOS[scenario], 1, redis_url, tmp_path_factory.mktemp(scenario), secrets.token_hex(4)
    )
    try:
        worker.start()
        worker.wait_ready(celery_app)
        yield worker
    finally:
        worker.stop()


# Workers shared by this module's tests (each test leaves them idle): fewer 3-5 s start/stops.
@pytest.fixture(scope="module")
def gevent_worker(
    redis_url: str, celery_app: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    yield from _shared_worker("gevent_greenlets", redis_url, celery_app, tmp_path_factory)


@pytest.fixture(scope="module")
def prefork_worker(
    redis_url: str, celery_app: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    yield from _shared_worker("prefork_threads", redis_url, celery_app, tmp_path_factory)


def plan_for(
    worker: WorkerProcess, *, period_s: float, deadline_s: float | None = None, **params: Any
) -> ScenarioPlan:
    raw = {"subtasks": 2, "size_mb": 1.0, "hold_s": 0.05, "workers": 2, **params}
    validated = BatchParams.validate(raw | {"strategy": worker.scenario.strategy})
    return ScenarioPlan(worker.scenario.name, validated, period_s, 0.0, deadline_s, worker.queue)


class RecordingApp:
    """The Celery app, recording each send's time and the report its result returned."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sends: list[dict[str, Any]] = []

    def send_task(self, *args: Any, **kwargs: Any) -> Any:
        record: dict[str, Any] = {"sent_at": time.time(), "queue": kwargs["queue"]}
        self.sends.append(record)
        return _RecordedResult(self.app.send_task(*args, **kwargs), record)

    def assert_one_in_flight(self) -> None:
        """Per queue, each message was sent only after the previous task finished on the worker."""
        for queue in {r["queue"] for r in self.sends}:
            sends = [r for r in self.sends if r["queue"] == queue]
            assert len(sends) >= 2 and all(isinstance(r["report"], dict) for r in sends), sends
            for previous, current in itertools.pairwise(sends):
                assert current["sent_at"] > previous["report"]["finished_at"], sends


class _RecordedResult:
    def __init__(self, result: Any, record: dict[str, Any]) -> None:
        self._result = result
        self._record = record

    def get(self, *args: Any, **kwargs: Any) -> Any:
        report = self._result.get(*args, **kwargs)
        self._record["report"] = report
        return report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)


def sample(registry: Any, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} is not exported"
    return float(found)


@pytest.mark.slow
def test_fires_real_gevent_and_prefork_workers_and_exports_metrics(
    gevent_worker: WorkerProcess,
    prefork_worker: WorkerProcess,
    celery_app: Any,
    tmp_path: Path,
    grafana: FakeGrafana,
) -> None:
    plans = [plan_for(gevent_worker, period_s=0.5), plan_for(prefork_worker, period_s=0.5)]
    metrics = LoadgenMetrics(p.scenario for p in plans)
    exporter = start_exporter(
        metrics.registry,
        "127.0.0.1",
        0,
        targets_dir=tmp_path / "targets",
        job="loadgen",
        target_labels={},
    )
    target_path = exporter.target_path
    try:
        assert target_path is not None and target_path.parent == tmp_path / "targets" / "loadgen"
        address = f"127.0.0.1:{exporter.port}"
        assert json.loads(target_path.read_text()) == [{"targets": [address], "labels": {}}]
        before = time.time()
        first = scrape(address)
        annotator = GrafanaAnnotator(grafana.url, "secret-token")
        app = RecordingApp(celery_app)
        stats = Scheduler(app, plans, metrics, max_runs=3, annotator=annotator).run(60)
        text = scrape(address)
    finally:
        exporter.close()
    assert not target_path.exists()
    app.assert_one_in_flight()

    for plan in plans:
        labels = {"scenario": plan.scenario}
        for outcome in ("success", "failure", "timeout"):  # present before any run
            assert value(first, names.LOADGEN_RUNS_TOTAL, outcome=outcome, **labels) == 0
        assert value(first, names.LOADGEN_SKIPPED_TOTAL, **labels) == 0
        s = stats[plan.scenario]
        assert (s.fired, s.success, s.failure, s.timeout, s.in_flight) == (3, 3, 0, 0, 0)
        assert value(text, names.LOADGEN_RUNS_TOTAL, outcome="success", **labels) == 3
        assert value(text, names.LOADGEN_RUNS_TOTAL, outcome="failure", **labels) == 0
        assert value(text, names.LOADGEN_RUNS_TOTAL, outcome="timeout", **labels) == 0
        assert value(text, names.LOADGEN_SKIPPED_TOTAL, **labels) == s.skipped
        assert value(text, names.LOADGEN_RUN_DURATION_SECONDS + "_count", **labels) == 3
        assert value(text, names.LOADGEN_RUN_DURATION_SECONDS + "_sum", **labels) > 0
        assert before <= value(text, names.LOADGEN_LAST_RUN_TIMESTAMP_SECONDS, **labels)
        assert value(text, names.LOADGEN_LAST_RUN_TIMESTAMP_SECONDS, **labels) <= time.time()

    assert len(grafana.posts) == 6
    for post in grafana.posts:
        assert post["path"] == "/api/annotations"
        assert post["auth"] == "Bearer secret-token"
        body = post["body"]
        assert body["tags"][0] == "membench" and body["tags"][2] == "success"
        assert body["tags"][1] in {p.scenario for p in plans}
        assert " success in " in body["text"] and body["timeEnd"] >= body["time"]


@pytest.mark.slow
def test_skips_firings_while_the_previous_run_is_in_flight(
    prefork_worker: WorkerProcess, celery_app: Any
) -> None:
    # Each run holds 1 s; the period is 0.2 s: about four firings per run must be skipped.
    plan = plan_for(prefork_worker, period_s=0.2, subtasks=1, hold_s=1.0, workers=1)
    app = RecordingApp(celery_app)
    scheduler = Scheduler(app, [plan], max_runs=2)
    s = scheduler.run(60)[plan.scenario]
    assert (s.fired, s.success, s.failure, s.timeout) == (2, 2, 0, 0)
    assert s.skipped >= 4
    app.assert_one_in_flight()  # skipped, not queued behind the running task
    registry = scheduler.metrics.registry
    assert sample(registry, names.LOADGEN_SKIPPED_TOTAL, scenario=plan.scenario) == s.skipped


@pytest.mark.slow
def test_late_run_counts_as_timeout_and_holds_back_the_next_firing(
    prefork_worker: WorkerProcess, celery_app: Any
) -> None:
    # Timeouts are noticed within ~1 s of the deadline (Celery's drainer): hold well beyond it.
    plan = plan_for(
        prefork_worker, period_s=0.25, deadline_s=0.5, subtasks=1, hold_s=3.0, workers=1
    )
    app = RecordingApp(celery_app)
    scheduler = Scheduler(app, [plan], max_runs=2)
    s = scheduler.run(60)[plan.scenario]
    assert (s.fired, s.success, s.failure, s.timeout) == (2, 0, 0, 2)
    # The late task kept running on the worker: the firings meanwhile were skipped, not queued.
    assert s.skipped >= 2
    app.assert_one_in_flight()
    registry = scheduler.metrics.registry
    labels = {"scenario": plan.scenario}
    assert sample(registry, names.LOADGEN_RUNS_TOTAL, outcome="timeout", **labels) == 2
    assert sample(registry, names.LOADGEN_RUN_DURATION_SECONDS + "_count", **labels) == 0


@pytest.mark.slow
def test_task_failure_is_counted(gevent_worker: WorkerProcess, celery_app: Any) -> None:
    # Built without validation, as a broken message would be: the worker's task refuses it.
    bad = BatchParams(subtasks=0, size_mb=1.0, hold_s=0.0, workers=1, strategy="greenlets")
    plan = ScenarioPlan(gevent_worker.scenario.name, bad, 0.2, 0.0, 30.0, gevent_worker.queue)
    scheduler = Scheduler(celery_app, [plan], max_runs=2)
    s = scheduler.run(60)[plan.scenario]
    assert (s.fired, s.success, s.failure, s.timeout) == (2, 0, 2, 0)
    registry = scheduler.metrics.registry
    labels = {"scenario": plan.scenario}
    assert sample(registry, names.LOADGEN_RUNS_TOTAL, outcome="failure", **labels) == 2
    assert sample(registry, names.LOADGEN_RUN_DURATION_SECONDS + "_count", **labels) == 2


def test_grafana_down_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    annotator = GrafanaAnnotator(f"http://127.0.0.1:{free_port()}", "token", timeout_s=0.5)
    assert not annotator.post("gevent_greenlets", "success", 1.0, 2.0, "text")
    assert not annotator.post("gevent_greenlets", "success", 1.0, 2.0, "text")
    warnings = [r for r in caplog.records if "grafana annotation" in r.getMessage()]
    assert len(warnings) == 1  # one per outage, not one per run


# ---- the command -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        ("[scenarios.nope]\nperiod_s = 1\n", [], "--schedule: "),
        (SCENARIO + "period_s = 0\n", [], "[scenarios.gevent_greenlets] period_s"),
        (SCENARIO + "period_s = 1\n", ["--duration", "0"], "--duration: "),
        (SCENARIO + "period_s = 1\n", ["--scenarios", "prefork_threads"], "--scenarios: "),
        (SCENARIO + "period_s = 1\n", ["--metrics-port", "70000"], "--metrics-port: "),
        (SCENARIO + "period_s = 1\n", ["--grafana-url", "file:///etc"], "--grafana-url: "),
    ],
)
def test_cli_refuses_bad_input_in_one_line(
    tmp_path: Path, redis_url: str, text: str, extra: list[str], expected: str
) -> None:
    path = write(tmp_path, text)
    done = membench("loadgen", "--schedule", str(path), "--broker", redis_url, *extra, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("membench loadgen: error: ") and expected in done.stderr
    assert done.stdout == ""


def test_cli_refuses_unreachable_broker(tmp_path: Path) -> None:
    path = write(tmp_path, SCENARIO + "period_s = 1\n")
    broker = f"redis://127.0.0.1:{free_port()}/0"
    done = membench("loadgen", "--schedule", str(path), "--broker", broker, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("membench loadgen: error: --broker: ")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_cli_soak_registers_target_and_stops_cleanly_on_a_signal(
    sig: signal.Signals,
    gevent_worker: WorkerProcess,
    redis_url: str,
    tmp_path: Path,
    grafana: FakeGrafana,
) -> None:
    schedule = write(
        tmp_path,
        f"""
[defaults]
subtasks = 2
size_mb = 1
time = 0.05
workers = 2
period_s = 1
jitter_s = 0.1

[scenarios.gevent_greenlets]
queue = "{gevent_worker.queue}"
""",
    )
    targets = tmp_path / "targets"
    env = dict(
        os.environ,
        MEMBENCH_BROKER_URL=redis_url,
        MEMBENCH_TARGETS_DIR=str(targets),
        MEMBENCH_GRAFANA_URL=grafana.url,
        MEMBENCH_GRAFANA_TOKEN="env-token",
        PYTHONUNBUFFERED="1",
    )
    argv = [sys.executable, "-m", "membench", "loadgen", "--schedule", str(schedule)]
    log = tmp_path / "loadgen.log"
    proc = spawn([*argv, "--metrics-port", "0"], env=env, log_path=log)
    try:
        target_file = wait_for(
            lambda: next(iter((targets / "loadgen").glob("*.json")), None),
            timeout=30,
            what="the loadgen's file_sd target",
        )
        (address,) = json.loads(target_file.read_text())[0]["targets"]

        def successes() -> float:
            text = scrape(address)
            return value(
                text, names.LOADGEN_RUNS_TOTAL, scenario="gevent_greenlets", outcome="success"
            )

        wait_for(lambda: successes() >= 2, timeout=60, what="two successful runs")
        proc.send_signal(sig)
        returncode = proc.wait(timeout=30)
    finally:
        stop(proc)
    output = log.read_text()
    assert returncode == 0, output
    assert f"{sig.name}: stopping; waiting up to" in output  # the clean stop, not the default
    assert not target_file.exists()  # deregistered on a clean stop
    header = next(line for line in output.splitlines() if line.startswith("scenario "))
    assert header.split() == ["scenario", "fired", "success", "failure", "timeout", "skipped"]
    row = next(line for line in output.splitlines() if line.startswith("gevent_greenlets "))
    fired, success, failure, timeout, _ = (int(x) for x in row.split()[1:])
    assert success >= 2 and failure == 0 and timeout == 0 and fired == success
    assert "gevent_greenlets run 1: success in" in output
    assert grafana.posts and all(p["auth"] == "Bearer env-token" for p in grafana.posts)
