"""The embedded redis-server lets no other local user in: a random password per
start, kept out of every argv; CONFIG, DEBUG and MODULE refused even with the password."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from membench.broker import DISABLED_COMMANDS, EmbeddedRedis

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


def _raw(port: int, command: bytes) -> bytes:
    """One command over a bare socket, as any local user could send it (no client library)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(command)
        return connection.recv(200)


def test_a_client_without_the_password_is_refused(embedded: EmbeddedRedis) -> None:
    assert embedded.password and embedded.url.startswith(f"redis://:{embedded.password}@")
    assert _raw(embedded.port, b"PING\r\n").startswith(b"-NOAUTH")
    assert _raw(embedded.port, b"SET key value\r\n").startswith(b"-NOAUTH")
    assert _raw(embedded.port, b"AUTH wrong-password\r\n").startswith(b"-WRONGPASS")
    without = embedded.url.replace(f":{embedded.password}@", "")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(without).ping()


@pytest.mark.parametrize(
    "command",
    [
        ("CONFIG", "SET", "dir", "/tmp"),
        ("CONFIG", "SET", "dbfilename", "evil.rdb"),
        ("CONFIG", "GET", "requirepass"),
        ("DEBUG", "SLEEP", "0"),
        ("MODULE", "LOAD", "/tmp/evil.so"),
    ],
)
def test_config_debug_and_module_are_refused_even_with_the_password(
    embedded: EmbeddedRedis, command: tuple[str, ...]
) -> None:
    client = redis.Redis.from_url(embedded.url)
    try:
        assert client.ping()
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command(*command)
    finally:
        client.close()
    assert command[0] in DISABLED_COMMANDS


def test_the_password_is_in_no_argv_and_its_file_is_private(embedded: EmbeddedRedis) -> None:
    assert embedded.proc is not None
    cmdline = Path(f"/proc/{embedded.proc.pid}/cmdline").read_bytes()
    assert b"redis-server" in cmdline and embedded.password.encode() not in cmdline
    workdir = Path(os.readlink(f"/proc/{embedded.proc.pid}/cwd"))
    config = workdir / "redis.conf"
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert f"requirepass {embedded.password}" in config.read_text().splitlines()
    # SAVE still works, but can only write into that private directory.
    client = redis.Redis.from_url(embedded.url)
    try:
        assert client.save()
    finally:
        client.close()
    assert (workdir / "dump.rdb").exists()


def test_every_start_has_its_own_password_and_the_directory_goes(tmp_path: Path) -> None:
    first, second = EmbeddedRedis(log_dir=tmp_path), EmbeddedRedis(log_dir=tmp_path)
    with first, second:
        assert first.password != second.password and len(first.password) >= 32
        assert first.proc is not None
        workdir = Path(os.readlink(f"/proc/{first.proc.pid}/cwd"))
    assert not workdir.exists()
    for log in tmp_path.glob("*.log"):
        assert first.password not in log.read_text() and second.password not in log.read_text()
