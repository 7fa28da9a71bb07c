"""Secrets through URL parsing: a URL whose user:password is ambiguous (a raw
"@", "/", "?" or "#"), whose scheme is mistyped, or that is malformed otherwise, is refused by
membench.urls.parse_url before anything connects or resolves a name, in one line that names the
flag or variable and repeats no fragment of the password; --broker, MEMBENCH_BROKER_URL,
--prometheus (basic-auth credentials), --grafana-url and schedule files alike."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
from helpers import membench

from membench import settings
from membench.broker import BrokerError, check_broker, redis_server_executable
from membench.processes import free_port, spawn, stop, wait_for
from membench.query.client import check_url
from membench.urls import UrlError, parse_url, redact

# Letters that no message holds, so that any 4 characters of them in an output are a leak.
A, B, C = "Wk7Jv", "Qz4Yx", "Pq8Zm"
SCHEDULE = "[defaults]\nsubtasks = 1\nsize_mb = 1\nhold_s = 0\nworkers = 1\nperiod_s = 1\n"
SCHEDULE += "[scenarios.gevent_greenlets]\n"


def password_of(case: str) -> str:
    """The secret of a case: every character the user typed after "user:" up to the host."""
    return case.split("|")[1]


def fragments(secret: str) -> set[str]:
    """Every 4-character piece of `secret`, in lower case, but those of punctuation mostly (such
    as "/#?%", which the percent-encoding hint spells out)."""
    pieces = {secret[i : i + 4].lower() for i in range(len(secret) - 3)}
    return {p for p in pieces if sum(c.isalnum() for c in p) >= 3}


def assert_no_fragment(secret: str, text: str) -> None:
    leaked = sorted(p for p in fragments(secret) if p in text.lower())
    assert not leaked, (leaked, text)


def environment(**extra: str) -> dict[str, str]:
    drop = (settings.BROKER_URL, settings.GRAFANA_URL, "CELERY_BROKER_URL")
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def refused(
    args: list[str], named: str, secret: str, env: dict[str, str] | None = None
) -> list[str]:
    """Run membench; assert exit 2, one line on stderr naming `named`, nothing on stdout, no
    process left, no fragment of `secret` anywhere."""
    before = len(psutil.Process().children(recursive=True))
    result = membench(*args, env=env or environment(), timeout=60)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and result.stdout == "", result.stdout + result.stderr
    assert f"error: {named}: " in lines[0] and "Traceback" not in lines[0], lines[0]
    assert_no_fragment(secret, result.stdout + result.stderr)
    assert len(psutil.Process().children(recursive=True)) == before
    return lines


# "|" marks the secret (removed before use): the password and what a parser might take for a
# host, a port or a path after it.
RAW_IN_PASSWORD = [
    f"redis://:|{A}@{B}/{C}|@127.0.0.1:{{port}}/0",  # the rest would be resolved as a host
    f"redis://default:|{A}@{B}|@127.0.0.1:{{port}}/0",  # two "@" in the authority
    f"redis://:|{A}/{B}|@127.0.0.1:{{port}}/0",
    f"redis://:|{A}#{B}|@127.0.0.1:{{port}}/0",
    f"redis://:|{A}?{B}|@127.0.0.1:{{port}}/0",
    f"rediss://:|{A}@{B}|@127.0.0.1:{{port}}/0?ssl_cert_reqs=none",
]
MISTYPED_SCHEME = [
    f"redis//:|{A}{B}|@127.0.0.1:6379/0",  # the whole password would be printed
    f":|{A}{B}|@127.0.0.1:6379",  # no scheme at all
    f"redis:/:|{A}{B}|@127.0.0.1:6379/0",  # one slash
    f"redis:|{A}{B}|@127.0.0.1:6379/0",
    f"|{A}{B}|@127.0.0.1:6379",  # a lone userinfo, no scheme
    f"reddis://:|{A}{B}|@127.0.0.1:6379/0",
    f"http://:|{A}{B}|@127.0.0.1:6379/0",
]
MALFORMED = [
    f"redis://default:|{A}{B}|",  # "@host" forgotten: the password stands where the port goes
    f"redis://:|{A}{B}|@127.0.0.1:63x9/0",
    f"redis://:|{A} {B}|@127.0.0.1:6379/0",  # whitespace
    f"redis://:|{A}\n{B}|@127.0.0.1:6379/0",  # a newline
    f"redis://:|{A}[{B}|@127.0.0.1:6379/0",
    f"redis://:|{A}%{B}|@127.0.0.1:6379/0",  # a lone "%"
    f"redis://:|{A}\uff03{B}|@127.0.0.1:6379/0",  # NFKC: urllib's error quotes the netloc
    f"redis://:|{A}{B}|@[::1/0",
]


def fill(case: str) -> str:
    return case.replace("|", "").replace("{port}", str(free_port()))


@pytest.mark.parametrize("case", RAW_IN_PASSWORD + MISTYPED_SCHEME + MALFORMED)
def test_the_parser_refuses_without_a_fragment_of_the_password(case: str) -> None:
    with pytest.raises(BrokerError) as caught:
        check_broker(fill(case), timeout=0.5)  # refused before any connection
    assert_no_fragment(password_of(case), str(caught.value))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("case", RAW_IN_PASSWORD)
def test_a_raw_delimiter_in_the_password_asks_to_percent_encode(case: str) -> None:
    with pytest.raises(UrlError, match="percent-encode"):
        parse_url(fill(case), ("redis", "rediss"), "redis://HOST")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:p%40ss%2Fw%23rd%3F@127.0.0.1:6379/0",
        "redis://default:p%25x@h.example:6379/1",
        "redis://[::1]:6379/0",
        "redis://:pw@[::1]:6379/0",
        "rediss://:pw@h:6380/0?ssl_cert_reqs=none",
        "redis://h_1.internal/0",
        "redis://127.0.0.1",
    ],
)
def test_unambiguous_urls_pass(url: str) -> None:
    parts = parse_url(url, ("redis", "rediss"), "redis://HOST")
    assert parts.hostname and "@" not in parts.hostname
    assert redact(url).count("***") == (1 if parts.password else 0)


def command_args(command: str, tmp_path: Path) -> list[str]:
    """The arguments of `command`, one of those that take a broker, short of the broker."""
    (tmp_path / "s.toml").write_text(SCHEDULE)
    return {
        "run": ["run", "--output", str(tmp_path / "out")],
        "worker": ["worker", "gevent_greenlets"],
        "worker unchecked": ["worker", "gevent_greenlets", "--no-check-broker"],
        "loadgen": ["loadgen", "--schedule", str(tmp_path / "s.toml")],
        "stack": ["stack", "up", "--dir", str(tmp_path / "st"), "--schedule", f"{tmp_path}/s.toml"],
    }[command]


@pytest.mark.parametrize("command", ["run", "worker", "worker unchecked", "loadgen", "stack"])
@pytest.mark.parametrize("case", RAW_IN_PASSWORD[:3])
def test_every_command_refuses_a_raw_delimiter_in_the_broker_password(
    command: str, case: str, tmp_path: Path
) -> None:
    args = command_args(command, tmp_path)
    (line,) = refused([*args, "--broker", fill(case)], "--broker", password_of(case))
    assert "percent-encode" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", MISTYPED_SCHEME + MALFORMED[:4])
def test_a_mistyped_or_malformed_broker_url_is_refused_without_the_password(
    case: str, tmp_path: Path
) -> None:
    (line,) = refused(
        ["run", "--output", str(tmp_path / "out"), f"--broker={fill(case)}"],
        "--broker",
        password_of(case),
    )
    assert "the URL" in line


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("run", RAW_IN_PASSWORD[0]),
        ("worker", MISTYPED_SCHEME[0]),
        ("worker unchecked", RAW_IN_PASSWORD[3]),
        ("loadgen", MALFORMED[0]),
        ("stack", MALFORMED[3]),
        ("run", MISTYPED_SCHEME[1]),
    ],
)
def test_the_broker_variable_is_named_and_its_password_never_shown(
    command: str, case: str, tmp_path: Path
) -> None:
    args = command_args(command, tmp_path)
    env = environment(**{settings.BROKER_URL: fill(case)})
    refused(args, settings.BROKER_URL, password_of(case), env)


PROMETHEUS = [
    f"http://admin:|{A}@{B}/{C}|@127.0.0.1:{{port}}",
    f"http://admin:|{A}#{B}|@127.0.0.1:{{port}}",
    f"https://admin:|{A}?{B}|@127.0.0.1:{{port}}",
    f"http//admin:|{A}{B}|@127.0.0.1:9090",
    f"ftp://admin:|{A}{B}|@127.0.0.1/",
    f"http://admin:|{A}{B}|",  # "@host" forgotten
    f"http://admin:|{A}{B}|@127.0.0.1:9090/?x=1",
    f"http://admin:|{A}\t{B}|@127.0.0.1:9090",
]


@pytest.mark.parametrize("case", PROMETHEUS)
def test_report_refuses_prometheus_credentials_it_cannot_parse_unambiguously(
    case: str, tmp_path: Path
) -> None:
    args = ["report", "--prometheus", fill(case), "--output", str(tmp_path / "out")]
    refused(args, "--prometheus", password_of(case))
    with pytest.raises(ValueError) as caught:
        check_url(fill(case))
    assert_no_fragment(password_of(case), str(caught.value))


@pytest.mark.parametrize("source", ["--grafana-url", settings.GRAFANA_URL])
@pytest.mark.parametrize("case", [f"http://admin:|{A}{B}|@127.0.0.1:3000", f"gopher://|{A}{B}|@h"])
def test_loadgen_refuses_a_grafana_url_with_credentials(
    source: str, case: str, tmp_path: Path
) -> None:
    """urllib would resolve "admin:PASSWORD@127.0.0.1" as a host name: refused."""
    (tmp_path / "s.toml").write_text(SCHEDULE)
    args = ["loadgen", "--schedule", str(tmp_path / "s.toml"), "--broker", "redis://h:1/0"]
    if source == settings.GRAFANA_URL:
        refused(args, source, password_of(case), environment(**{source: fill(case)}))
    else:
        refused([*args, source, fill(case)], source, password_of(case))


def test_a_schedule_file_holds_no_broker_url_and_never_echoes_one(tmp_path: Path) -> None:
    """Schedules have no URL key; a broker URL written in one is refused by its key's name."""
    secret = f"{A}@{B}/{C}"
    (tmp_path / "s.toml").write_text(f'{SCHEDULE}broker = "redis://:{secret}@127.0.0.1:1/0"\n')
    result = membench("loadgen", "--schedule", str(tmp_path / "s.toml"), env=environment())
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "broker: unknown key" in result.stderr, result.stderr
    assert_no_fragment(secret, result.stdout + result.stderr)


@pytest.fixture(scope="module")
def at_password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A redis-server whose password holds "@", "/", "#", "?" and "%"."""
    workdir = tmp_path_factory.mktemp("at-password-redis")
    port, password = free_port(), f"{A}@{B}/#?%Hr5Tn"
    argv = [redis_server_executable(), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--requirepass", password, "--save", "", "--dir", str(workdir)]
    proc = spawn(argv, log_path=workdir / "redis.log")
    try:
        encoded = f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"

        def answers() -> bool:
            assert proc.poll() is None, (workdir / "redis.log").read_text()
            with contextlib.suppress(BrokerError):
                check_broker(encoded, timeout=0.5)
                return True
            return False

        wait_for(answers, 10, what="the redis-server with an '@' password")
        yield port, password
    finally:
        stop(proc)


def test_a_percent_encoded_password_still_works(at_password_redis: tuple[int, str]) -> None:
    port, password = at_password_redis
    check_broker(f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0", timeout=2)
    with pytest.raises(BrokerError) as wrong:
        check_broker(f"redis://:{quote(password, safe='')}x@127.0.0.1:{port}/0", timeout=2)
    assert "cannot reach redis://:***@127.0.0.1:" in str(wrong.value)
    assert_no_fragment(password, str(wrong.value))
    with pytest.raises(BrokerError, match="percent-encode"):
        check_broker(f"redis://:{password}@127.0.0.1:{port}/0", timeout=2)


@pytest.mark.parametrize("case", RAW_IN_PASSWORD[:3])
def test_a_worker_started_by_celery_itself_refuses_the_url_in_one_line(case: str) -> None:
    # Compose and Kubernetes start `celery -A membench.workers.app worker` with no membench
    # command in front to check the variable.
    env = environment(**{settings.BROKER_URL: fill(case)})
    argv = [sys.executable, "-m", "celery", "-A", "membench.workers.app", "worker", "-P", "solo"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{settings.BROKER_URL}: ") and "percent-encode" in line, line
    assert_no_fragment(password_of(case), result.stdout + result.stderr)
