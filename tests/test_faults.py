"""Faults, bad input and safe defaults: refused pickle, rejected parameters, exporter abuse,
killed workers and children, and an interrupted `membench run`."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from helpers import (
    GOOD_PARAMS,
    REPO,
    StartWorker,
    executing_address,
    send_batch,
    stored_meta,
    task_runs,
)
from kombu import Connection, Producer

from membench.cli import loadgen, worker
from membench.exporter import names
from membench.exporter.server import CLIENT_TIMEOUT_S, MAX_REQUEST_BYTES
from membench.processes import wait_for
from membench.procfs import read_process_memory
from membench.run.sampler import read_tree_memory
from membench.stack import supervisor as stack
from membench.workers.params import InvalidParameter
from membench.workers.scenarios import SCENARIOS

REFUSED_PICKLE = "Refusing to deserialize untrusted content of type pickle"


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
    kwargs = {**GOOD_PARAMS, "strategy": "greenlets", "evil": _Detonator(marker)}
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
    report = send_batch(celery_app, worker, **GOOD_PARAMS).get(timeout=60)
    assert report["subtasks_done"] == GOOD_PARAMS["subtasks"]
    assert not marker.exists(), "the pickle payload was deserialized"
    assert stored_meta(redis_url, task_id) is None  # never ran: no result, not even a failure
    assert worker.alive()
    wait_for(lambda: REFUSED_PICKLE in worker.log_path.read_text(), 10, what="the refusal logged")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.llen(worker.queue) == 0  # discarded, not left to be redelivered
    finally:
        client.close()
    wait_for(lambda: task_runs(worker, "success") == 1, 10, what="the JSON task counted")
    assert task_runs(worker, "failure") == 0


# ---- 2. bad parameters are rejected -------------------------------------------------------

BAD_PARAMETERS = [
    ({**GOOD_PARAMS, "subtasks": -1}, "subtasks"),
    ({**GOOD_PARAMS, "size_mb": "NaN"}, "size_mb"),
    ({**GOOD_PARAMS, "evil": "rm -rf /"}, "evil"),
    ({**GOOD_PARAMS, "workers": 10**9}, "workers"),
    ({**GOOD_PARAMS, "hold_s": True}, "hold_s"),
]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["prefork_sequential", "gevent_greenlets"])
def test_bad_parameters_are_refused_counted_as_failures_and_the_worker_goes_on(
    scenario: str, start_worker: StartWorker, celery_app: Any, redis_url: str
) -> None:
    worker = start_worker(scenario)
    assert task_runs(worker, "failure") == 0
    for count, (params, field) in enumerate(BAD_PARAMETERS, start=1):
        result = send_batch(celery_app, worker, **params)
        error = result.get(timeout=60, propagate=False)
        assert result.state == "FAILURE"
        stored = stored_meta(redis_url, result.id)
        assert stored is not None
        assert stored["result"]["exc_type"] == "InvalidParameter", stored
        # The client rebuilds the worker's exception: type and field survive the JSON backend.
        assert isinstance(error, InvalidParameter), repr(error)
        assert error.field == field
        # A refused message is a failed run of the task, like any exception it raises.
        wait_for(lambda n=count: task_runs(worker, "failure") == n, 10, what=f"{count} refused")
    assert task_runs(worker, "success") == 0
    report = send_batch(celery_app, worker, **GOOD_PARAMS).get(timeout=60)
    assert report["subtasks_done"] == GOOD_PARAMS["subtasks"]
    wait_for(lambda: task_runs(worker, "success") == 1, 10, what="the good task counted")
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
    assert len(first) > 15  # the process's memory, cgroup and identity series
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
    oversized = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (2 * MAX_REQUEST_BYTES) + b"\r\n\r\n"
    assert _status(_raw(address, oversized)) == 431
    assert _get(address)[0] == 200

    # A client that connects and sends nothing delays no scrape, and is closed once its client
    # timeout has passed.
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as silent:
        latency = _timed_scrape(address)
        assert latency < CLIENT_TIMEOUT_S + 1.5, latency
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
        assert latency < CLIENT_TIMEOUT_S + 1.5, latency
    finally:
        stop.set()
        thread.join(10)
        trickler.close()
    assert _timed_scrape(address) < 1.0
    assert worker.alive()
