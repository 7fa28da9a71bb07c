"""Faults, bad input and safe defaults: refused pickle, rejected parameters, exporter abuse,
killed workers and children, and an interrupted `membench run`."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from helpers import (
    REPO,
    executing_address,
    exporter_addresses,
    scrape,
    stored_meta,
    task_runs,
    value,
)
from kombu import Connection, Producer

from membench.cli import loadgen, worker
from membench.exporter import names
from membench.exporter.server import _CLIENT_TIMEOUT_S, _MAX_REQUEST_BYTES
from membench.processes import wait_for
from membench.procfs import read_process_memory
from membench.run.runner import RunConfig, Runner, ScenarioResult
from membench.run.sampler import read_tree_memory
from membench.run.worker import WorkerProcess
from membench.stack import supervisor as stack
from membench.workers.params import InvalidParameter
from membench.workers.scenarios import SCENARIOS

StartWorker = Callable[..., WorkerProcess]
GOOD = {"subtasks": 2, "size_mb": 1, "hold_s": 0, "workers": 2, "payload": "bytes"}
TASK_RECEIVED = re.compile(r"Task membench\.process_batch\[[0-9a-f-]+\] received")
REFUSED_PICKLE = "Refusing to deserialize untrusted content of type pickle"


def _send(app: Any, worker: WorkerProcess, **params: Any) -> Any:
    """Send process_batch straight to the worker's queue, unvalidated, as any client could."""
    kwargs = {"strategy": worker.scenario.strategy, **params}
    return app.send_task("membench.process_batch", kwargs=kwargs, queue=worker.queue)


def _gone(pid: int) -> bool:
    """No such process any more (a zombie, dead and awaiting its reaper, counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and not _gone(process.pid):
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def _listening(pid: int) -> list[str]:
    """Addresses a process listens on (TCP), as ip:port."""
    return [
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in psutil.Process(pid).net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    ]


# ---- 0. safe defaults ---------------------------------------------------------------------


@pytest.mark.slow
def test_worker_exporters_and_embedded_redis_listen_on_loopback_only(
    start_worker: StartWorker, redis_url: str
) -> None:
    worker = start_worker("prefork_threads", concurrency=2)
    tree = worker.tree()
    assert len(tree) == 3
    addresses = [a for pid in tree for a in _listening(pid)]
    assert len(addresses) == 3, addresses  # one exporter per process, nothing else
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    (redis_server,) = [
        p for p in psutil.Process().children() if p.name().startswith("redis-server")
    ]
    assert _listening(redis_server.pid) == [f"127.0.0.1:{port}"]


def test_cli_exporters_and_local_stack_default_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBENCH_METRICS_HOST", raising=False)
    worker_args = worker.command.make_context("worker", ["gevent_threads"]).params
    assert worker_args["metrics_host"] == "127.0.0.1"
    loadgen_args = loadgen.command.make_context("loadgen", ["--schedule", "s.toml"]).params
    assert loadgen_args["metrics_host"] == "127.0.0.1"
    commands = stack.service_commands(Path("s.toml"), list(SCENARIOS), 1, 2)
    assert "--address=127.0.0.1" in commands["flower"]
    for argv in commands.values():
        assert "--metrics-host" not in argv and not any("0.0.0.0" in a for a in argv), argv


def test_env_file_is_ignored_by_git() -> None:
    ignored = {line.strip() for line in (REPO / ".gitignore").read_text().splitlines()}
    assert ".env" in ignored
    assert (REPO / ".env.example").is_file()


def test_a_zombie_reads_as_gone_not_as_an_error() -> None:
    # The sampler reads a killed worker between its death and its reaping: a zombie.
    child = subprocess.Popen([sys.executable, "-c", ""])
    try:
        wait_for(
            lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 30, what="zombie"
        )
        with pytest.raises(ProcessLookupError):
            read_process_memory(child.pid)
        assert read_tree_memory(child.pid).processes == 0
    finally:
        child.wait()


# ---- 1. pickle is refused ------------------------------------------------------------------


class _Detonator:
    """Unpickling this creates a directory: proof that a pickle payload was deserialized."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.path),))


def _publish_pickle(redis_url: str, queue: str, task_id: str, marker: Path) -> None:
    """A well-formed protocol-2 process_batch message, pickle-serialized, straight to `queue`."""
    headers = {
        "lang": "py",
        "task": "membench.process_batch",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": "()",
        "kwargsrepr": "{...}",
        "origin": "test_faults",
    }
    kwargs = {**GOOD, "strategy": "greenlets", "evil": _Detonator(marker)}
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    with Connection(redis_url) as connection:
        Producer(connection.default_channel).publish(
            ((), kwargs, embed), routing_key=queue, serializer="pickle", headers=headers
        )


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["prefork_sequential", "gevent_greenlets"])
def test_pickle_message_is_refused_and_never_deserialized(
    scenario: str, start_worker: StartWorker, celery_app: Any, redis_url: str, tmp_path: Path
) -> None:
    worker = start_worker(scenario)
    marker = tmp_path / "unpickled"
    task_id = str(uuid.uuid4())
    _publish_pickle(redis_url, worker.queue, task_id, marker)
    # The worker takes messages in order: once this JSON task is done, the pickle one was handled.
    report = _send(celery_app, worker, **GOOD).get(timeout=60)
    assert report["subtasks_done"] == GOOD["subtasks"]
    assert not marker.exists(), "the pickle payload was deserialized"
    assert stored_meta(redis_url, task_id) is None  # never ran: no result, not even a failure
    assert worker.alive()
    wait_for(lambda: REFUSED_PICKLE in worker.log_path.read_text(), 10, what="the refusal logged")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.llen(worker.queue) == 0  # discarded, not left to be redelivered
    finally:
        client.close()
    text = scrape(executing_address(worker))
    assert value(text, names.TASK_RUNS_TOTAL, outcome="success") == 1
    assert value(text, names.TASK_RUNS_TOTAL, outcome="failure") == 0


# ---- 2. bad parameters are rejected -------------------------------------------------------

BAD_PARAMETERS = [
    ({**GOOD, "subtasks": -1}, "subtasks"),
    ({**GOOD, "size_mb": "NaN"}, "size_mb"),
    ({**GOOD, "evil": "rm -rf /"}, "evil"),
    ({**GOOD, "workers": 10**9}, "workers"),
    ({**GOOD, "hold_s": True}, "hold_s"),
]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["prefork_sequential", "gevent_greenlets"])
def test_bad_parameters_are_rejected_counted_and_the_worker_goes_on(
    scenario: str, start_worker: StartWorker, celery_app: Any, redis_url: str
) -> None:
    worker = start_worker(scenario)
    address = executing_address(worker)
    assert task_runs(address, "rejected") == 0
    for count, (params, field) in enumerate(BAD_PARAMETERS, start=1):
        result = _send(celery_app, worker, **params)
        error = result.get(timeout=60, propagate=False)
        assert result.state == "FAILURE"
        stored = stored_meta(redis_url, result.id)
        assert stored is not None
        assert stored["result"]["exc_type"] == "InvalidParameter", stored
        # The client rebuilds the worker's exception: type and field survive the JSON backend.
        assert isinstance(error, InvalidParameter), repr(error)
        assert error.field == field
        wait_for(lambda n=count: task_runs(address, "rejected") == n, 10, what=f"{count} rejected")
    assert task_runs(address, "failure") == 0 and task_runs(address, "success") == 0
    report = _send(celery_app, worker, **GOOD).get(timeout=60)
    assert report["subtasks_done"] == GOOD["subtasks"]
    wait_for(lambda: task_runs(address, "success") == 1, 10, what="the good task counted")
    assert worker.alive()


# ---- 3. exporter robustness ---------------------------------------------------------------


def _raw(address: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes to an exporter, half-close, and return all it answers."""
    host, port = address.rsplit(":", 1)
    chunks = []
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(reply: bytes) -> int:
    """The status code of a raw HTTP reply."""
    return int(reply.split(b"\r\n", 1)[0].split()[1])


def _get(address: str, path: str = "/metrics", method: str = "GET") -> tuple[int, bytes]:
    """One HTTP request on a fresh connection: (status, body)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _series(body: bytes) -> set[str]:
    """Series identities (name and labels) in an exposition: each line without its value."""
    return {
        line.rpartition(" ")[0]
        for line in body.decode().splitlines()
        if line and not line.startswith("#")
    }


def _timed_scrape(address: str) -> float:
    """Scrape /metrics, check it worked, and return how long it took."""
    t0 = time.monotonic()
    status, body = _get(address)
    assert status == 200 and names.PROCESS_RSS_BYTES.encode() in body
    return time.monotonic() - t0


@pytest.mark.slow
def test_exporter_survives_rapid_scrapes_garbage_and_stalled_clients(
    start_worker: StartWorker,
) -> None:
    worker = start_worker("gevent_greenlets")
    address = executing_address(worker)
    assert address.startswith("127.0.0.1:")
    assert _listening(worker.pid) == [address]

    first = _series(_get(address)[1])
    assert len(first) > 30
    for _ in range(1000):
        status, body = _get(address)
        assert status == 200
        assert _series(body) == first  # no series appears or vanishes between scrapes

    assert _get(address, "/secret")[0] == 404
    assert _get(address, "/metrics/../etc/passwd")[0] == 404
    assert _get(address, "/metrics", "POST")[0] == 405
    assert _get(address, "/metrics", "DELETE")[0] == 405
    status, body = _get(address, "/metrics", "HEAD")
    assert status == 200 and body == b""

    assert _status(_raw(address, bytes(range(256)) * 8 + b"\r\n\r\n")) == 405
    assert _status(_raw(address, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")) == 405  # TLS
    assert _status(_raw(address, b"GET")) == 404
    assert _status(_raw(address, b"")) == 405
    oversized = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (2 * _MAX_REQUEST_BYTES) + b"\r\n\r\n"
    assert _status(_raw(address, oversized)) == 431
    assert _get(address)[0] == 200

    # A client that connects and sends nothing holds the one-at-a-time server for at most the
    # client timeout; the next scrape then succeeds.
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as silent:
        latency = _timed_scrape(address)
        assert latency < _CLIENT_TIMEOUT_S + 1.5, latency
        assert silent.recv(1) == b""  # the server gave up on it and closed it

    # Nor can one trickling a byte at a time (slowloris) hold it longer than the client timeout.
    stop = threading.Event()
    trickler = socket.create_connection((host, int(port)), timeout=10)

    def trickle() -> None:
        try:
            for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                trickler.send(bytes([byte]))
                if stop.wait(0.2):
                    return
        except OSError:
            return  # the server closed it: what it should do

    thread = threading.Thread(target=trickle, daemon=True)
    try:
        trickler.send(b"G")
        thread.start()
        latency = _timed_scrape(address)
        assert latency < _CLIENT_TIMEOUT_S + 1.5, latency
    finally:
        stop.set()
        thread.join(10)
        trickler.close()
    assert _timed_scrape(address) < 1.0
    assert worker.alive()


# ---- 4. the whole worker killed mid-run ----------------------------------------------------


# A crash of the runner's sampler thread (e.g. reading the killed worker as a zombie) fails it.
@pytest.mark.slow
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_worker_killed_mid_run_fails_that_run_and_the_next_run_gets_a_fresh_worker(
    redis_url: str,
) -> None:
    config = RunConfig(
        scenarios=[SCENARIOS["prefork_sequential"]],
        subtasks=2,
        size_mb=1,
        hold_s=1.0,
        workers=1,
        concurrency=1,
        runs=2,
        payload="bytes",
    )
    killed: dict[str, Any] = {}
    workers_by_run: dict[int, int] = {}
    runner: Runner

    def kill_worker_once(event: str, data: dict[str, Any]) -> None:
        worker = runner._worker
        if event != "tick" or worker is None:
            return
        workers_by_run[data["run"]] = worker.pid
        if not killed:
            killed["tree"] = worker.tree()
            killed["pid"] = worker.pid
            os.kill(worker.pid, signal.SIGKILL)

    runner = Runner(config, redis_url, kill_worker_once)
    results: list[ScenarioResult] = []
    runner.run(results)
    assert killed and len(killed["tree"]) == 2  # main process and its pool child
    first, second = results[0].runs
    assert first.status == "failed"
    assert "killed by signal 9" in first.reason, first.reason
    assert first.round_trip_s is not None
    assert first.round_trip_s < 5 < config.deadline_seconds(SCENARIOS["prefork_sequential"]) / 10
    assert second.status == "ok", second.reason
    assert workers_by_run[2] != killed["pid"]
    assert second.executing_pid not in killed["tree"]
    # Stopping the failed run took the orphaned pool child too: nothing of that group is left.
    assert _group_members(killed["pid"]) == []
    assert all(_gone(pid) for pid in killed["tree"])


# ---- 5. an interrupted `membench run` ------------------------------------------------------


def _worker_log(membench_pid: int) -> Path | None:
    """The log of the celery worker a `membench run` started (its stdout), once it exists."""
    for child in psutil.Process(membench_pid).children():
        try:
            if "celery" in child.cmdline():
                return Path(os.readlink(f"/proc/{child.pid}/fd/1"))
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return None


def _task_received(membench_pid: int) -> bool:
    """Whether the worker of a `membench run` has received its task (so it is mid-task)."""
    log = _worker_log(membench_pid)
    return log is not None and bool(TASK_RECEIVED.search(log.read_text(errors="replace")))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_exits_130_stops_everything_and_writes_incomplete_results(
    sig: signal.Signals, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "membench", "run", "--scenarios"]
    argv += ["prefork_sequential", "--subtasks", "1", "--size", "1", "--time", "120"]
    argv += ["--workers", "1", "--runs", "1", "--output", str(tmp_path)]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: proc.poll() is not None or _task_received(proc.pid), 90, what="the task")
        assert proc.poll() is None, proc.communicate()
        started = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(started) >= 3  # redis-server, the worker and its pool child
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert elapsed < 10
    assert "interrupted" in err.decode() and "INCOMPLETE" in err.decode()
    assert b"results.json" in out  # it still says where it wrote what it measured
    wait_for(lambda: all(_gone(pid) for pid in started), 5, what="every started process gone")
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["complete"] is False


# ---- 6. a prefork child killed mid-task ----------------------------------------------------


@pytest.mark.slow
def test_child_killed_mid_task_is_counted_lost_and_its_replacement_exports(
    start_worker: StartWorker, celery_app: Any, redis_url: str
) -> None:
    worker = start_worker("prefork_sequential")
    main = exporter_addresses(worker)[names.ROLE_MAIN][0]
    child = executing_address(worker)
    (child_pid,) = [p for p in worker.tree() if p != worker.pid]
    result = _send(celery_app, worker, **{**GOOD, "subtasks": 1, "hold_s": 120})
    wait_for(lambda: value(scrape(child), names.SUBTASKS_IN_PROGRESS) == 1, 30, what="task running")
    os.kill(child_pid, signal.SIGKILL)
    wait_for(lambda: task_runs(main, "lost") == 1, 30, what="the lost run counted")
    assert result.get(timeout=30, propagate=False) is not None
    assert result.state == "FAILURE"
    stored = stored_meta(redis_url, result.id)
    assert stored is not None and stored["result"]["exc_type"] == "WorkerLostError", stored
    text = scrape(main)
    for outcome in ("success", "failure", "rejected"):
        assert value(text, names.TASK_RUNS_TOTAL, outcome=outcome) == 0

    def replacement() -> str | None:
        for path in (worker.targets_dir / "workers").glob("*.json"):
            if int(path.stem.rsplit("_", 1)[1]) not in (worker.pid, child_pid):
                (entry,) = json.loads(path.read_text())
                return str(entry["targets"][0])
        return None

    new_child = wait_for(replacement, 30, what="the replacement child's exporter")
    text = scrape(new_child)
    assert value(text, names.PROCESS_RSS_BYTES, role=names.ROLE_CHILD) > 0
    assert value(text, names.TASK_RUNS_TOTAL, outcome="lost") == 0
    report = _send(celery_app, worker, **GOOD).get(timeout=60)
    assert report["pid"] != child_pid
    wait_for(lambda: task_runs(new_child, "success") == 1, 10, what="the replacement's success")
    assert task_runs(main, "lost") == 1
