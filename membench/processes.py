"""Start and stop child processes so that none outlives membench, even if membench is killed."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TypedDict, TypeVar

_PR_SET_PDEATHSIG = 1


# What stops a long-running command the way Ctrl-C does: SIGTERM (a supervisor, `kill`) and
# SIGHUP (its terminal closed, or the shell passing the hangup on). Their default action would
# end the process on the spot: no results written, no temporary directory removed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# What signal.signal takes and gives back: a function, SIG_DFL or SIG_IGN, or None (a handler
# that was not installed from Python).
SignalHandler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop everything, keep what was measured."""


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """A signal handler: SIGTERM or SIGHUP (or any) becomes Interrupted in the main thread."""
    if signum == signal.SIGHUP:
        leave_hung_up_terminal()
    raise Interrupted(signal.Signals(signum).name)


def catch_stop_signals(
    handler: SignalHandler = raise_interrupted,
) -> dict[signal.Signals, SignalHandler]:
    """Install `handler` for every STOP_SIGNALS; return the handlers it replaced."""
    return {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}


def leave_hung_up_terminal() -> None:
    """Point stdout and stderr at /dev/null if they are a terminal that hung up.

    Every write to a hung-up terminal fails (EIO): the table printed before results.json is
    written, or the summary of a stop, would raise instead and lose the run. A terminal still
    there (SIGHUP sent by `kill`) answers its attributes and keeps the output.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # closed or replaced: nothing to redirect
        try:
            termios.tcgetattr(fd)
        except termios.error as exc:
            if exc.args[0] != errno.EIO:
                continue  # ENOTTY: a file or a pipe, which a hangup leaves writable
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (a killed membench).

    SIGKILL, not SIGTERM: a Celery worker answers SIGTERM with a warm shutdown that waits for
    its task and, under gevent, retries a dead broker for ever; with nobody left to collect
    anything, nothing is worth waiting for. Set in the child before exec (and in every prefork
    child of a worker): a process that outlives the membench that started it is a leak.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own process group (so the whole tree can be stopped) tied to our life."""
    # Closed here once the child has it: the child keeps its own descriptor.
    log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115
    try:
        return subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if log is None else log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    finally:
        if log is not None:
            log.close()


def stop(
    proc: subprocess.Popen[bytes], timeout: float = 15.0, sig: int = signal.SIGTERM
) -> int | None:
    """Stop a process started by `spawn` and everything in its group; return its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Children left in the group (e.g. pool processes of a killed worker) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on `host` (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def bind_error(host: str, port: int = 0) -> OSError | None:
    """Why host:port cannot be bound here (None if it can): not an address of this machine, or
    the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind((host, port))
        except (OSError, OverflowError) as exc:
            return exc if isinstance(exc, OSError) else OSError(str(exc))
    return None


def port_in_use(host: str, port: int) -> bool:
    return bind_error(host, port) is not None


T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `condition()` until it returns a truthy value or `timeout` passes (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or condition}")
        time.sleep(interval)


class ProcessIdentity(TypedDict):
    """What names one process over time (a pid alone is reused); kept in JSON files."""

    pid: int
    start_time: int  # clock ticks since boot
    cmdline: list[str]


def process_identity(pid: int) -> ProcessIdentity | None:
    """What names one process over time: pid, start time and argv (None once it is gone)."""
    from membench.procfs import read_cmdline, read_start_time

    try:
        return {"pid": pid, "start_time": read_start_time(pid), "cmdline": read_cmdline(pid)}
    except (OSError, ValueError, IndexError):
        return None


def parse_identity(value: object) -> ProcessIdentity | None:
    """A ProcessIdentity read back from a JSON file; None for anything else."""
    if not isinstance(value, dict):
        return None
    pid, start_time, cmdline = value.get("pid"), value.get("start_time"), value.get("cmdline")
    if not (isinstance(pid, int) and isinstance(start_time, int) and isinstance(cmdline, list)):
        return None
    if not all(isinstance(arg, str) for arg in cmdline):
        return None
    return {"pid": pid, "start_time": start_time, "cmdline": cmdline}


def same_process(identity: ProcessIdentity) -> bool:
    """Whether the process `process_identity` described still runs (not a reuse of its pid)."""
    now = process_identity(int(identity["pid"]))
    return now is not None and pid_alive(now["pid"]) and now == identity


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie holds no memory or port)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
