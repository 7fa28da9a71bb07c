"""The secrets test watches DNS as well: a password with a raw "@" made the
text after it a host name, sent to the resolver. `ip netns exec NAME` bind-mounts
/etc/netns/NAME/resolv.conf, so here the resolver of a private network namespace is a small
DNS listener of the test's own that records every query; no password text may be looked up."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netns as netns_helper
import pytest
from helpers import REPO
from netns import ip, why_no_namespaces

from membench import settings

# Records the name of every query to argv[1], one per line; answers NXDOMAIN; writes argv[2]
# once listening; exits after argv[3] seconds whatever happens.
RECORDER = r"""
import socket, sys, time
out = open(sys.argv[1], "a", buffering=1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
sock.settimeout(0.2)
open(sys.argv[2], "w").close()
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        data, peer = sock.recvfrom(4096)
    except socket.timeout:
        continue
    labels, i = [], 12
    while i < len(data) and data[i] and len(labels) < 128:
        labels.append(data[i + 1 : i + 1 + data[i]].decode("latin-1"))
        i += 1 + data[i]
    out.write(".".join(labels).replace("\n", "\\n") + "\n")
    if len(data) >= 12 and i + 5 <= len(data):
        reply = data[:2] + b"\x81\x83" + data[4:6] + b"\x00" * 6 + data[12 : i + 5]
        sock.sendto(reply, peer)
"""
A, B, C = "Wk7Jv", "Qz4Yx", "Pq8Zm"  # parts of the passwords: no message holds them
SCHEDULE = "[defaults]\nsubtasks = 1\nsize_mb = 1\nhold_s = 0\nworkers = 1\nperiod_s = 1\n"
SCHEDULE += "[scenarios.gevent_greenlets]\n"


@dataclass
class Namespace:
    name: str
    queries: Path

    def run(self, argv: list[str], env: dict[str, str], timeout: float = 60) -> Any:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=REPO,
        )

    def seen(self) -> list[str]:
        return self.queries.read_text().splitlines() if self.queries.exists() else []

    def wait_for_query(self, text: str, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in name for name in self.seen()):
                return True
            time.sleep(0.1)
        return False


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Namespace]:
    reason = why_no_namespaces()
    if reason:
        pytest.skip(reason)
    resolv = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
    namespace = netns_helper.Namespace(
        f"membench-dns-{secrets.token_hex(4)}", {"resolv.conf": resolv}
    )
    recorder: subprocess.Popen[bytes] | None = None
    try:
        namespace.create()
        assert ip("netns", "exec", namespace.name, "ip", "link", "set", "lo", "up").returncode == 0
        ready, queries = tmp_path / "dns-ready", tmp_path / "dns-queries"
        argv = namespace.exec_argv([sys.executable, "-c", RECORDER])
        argv += [str(queries), str(ready), "600"]
        recorder = subprocess.Popen(argv, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not ready.exists() and recorder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), recorder.stderr.read() if recorder.poll() is not None else "slow"
        yield Namespace(namespace.name, queries)
    finally:
        if recorder is not None:
            recorder.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                recorder.wait(5)
            recorder.kill()
            recorder.wait(5)
        namespace.delete()  # and whatever else still runs in it: this test started it


def fragments(secret: str) -> set[str]:
    pieces = {secret[i : i + 4].lower() for i in range(len(secret) - 3)}
    return {p for p in pieces if sum(c.isalnum() for c in p) >= 3}


def environment(**extra: str) -> dict[str, str]:
    drop = (settings.BROKER_URL, settings.GRAFANA_URL, "CELERY_BROKER_URL")
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


HOSTILE_BROKER = f"redis://:{A}@{B}/{C}@127.0.0.1:6379/0"  # a raw "@" and "/" in the password
HOSTILE_PROMETHEUS = f"http://admin:{A}@{B}/{C}@127.0.0.1:9090"
SECRET = f"{A}@{B}/{C}"


@pytest.mark.slow
def test_no_password_text_reaches_the_resolver(netns: Namespace, tmp_path: Path) -> None:
    python = sys.executable
    env = environment()
    # The listener is the namespace's resolver: a lookup reaches it.
    canary = f"membench-canary-{secrets.token_hex(4)}.test"
    netns.run(
        [
            python,
            "-c",
            f"import socket\ntry: socket.getaddrinfo({canary!r}, 1)\nexcept OSError: pass",
        ],
        env,
    )
    assert netns.wait_for_query(canary), netns.seen()
    # The URL is hostile: given to a library as is, part of its password is looked up.
    probe = f"import redis\ntry: redis.Redis.from_url({HOSTILE_BROKER!r}).ping()\nexcept "
    netns.run([python, "-c", probe + "Exception: pass"], env)
    assert netns.wait_for_query(B.lower()), netns.seen()
    before = len(netns.seen())

    (tmp_path / "s.toml").write_text(SCHEDULE)
    membench = [python, "-m", "membench"]
    commands = [
        ([*membench, "run", "--output", str(tmp_path / "out"), "--broker", HOSTILE_BROKER], env),
        ([*membench, "worker", "gevent_greenlets", "--broker", HOSTILE_BROKER], env),
        (
            [*membench, "worker", "gevent_greenlets", "--no-check-broker"],
            environment(**{settings.BROKER_URL: HOSTILE_BROKER}),
        ),
        (
            [*membench, "run", "--output", str(tmp_path / "out")],
            environment(**{settings.BROKER_URL: HOSTILE_BROKER}),
        ),
        (
            [
                *membench,
                "loadgen",
                "--schedule",
                str(tmp_path / "s.toml"),
                "--broker",
                HOSTILE_BROKER,
            ],
            env,
        ),
        (
            [
                *membench,
                "stack",
                "up",
                "--dir",
                str(tmp_path / "st"),
                "--schedule",
                str(tmp_path / "s.toml"),
                "--broker",
                HOSTILE_BROKER,
            ],
            env,
        ),
        (
            [
                *membench,
                "report",
                "--prometheus",
                HOSTILE_PROMETHEUS,
                "--output",
                str(tmp_path / "rep"),
            ],
            env,
        ),
    ]
    for argv, command_env in commands:
        result = netns.run(argv, command_env)
        assert result.returncode == 2, (argv[3:5], result.stderr)
        output = (result.stdout + result.stderr).lower()
        assert not [p for p in fragments(SECRET) if p in output], result.stderr
    time.sleep(2)  # a late lookup, had anything started one, is recorded by now
    after = netns.seen()[before:]
    leaked = [name for name in after if any(p in name.lower() for p in fragments(SECRET))]
    assert not leaked, after
