"""`stack.json`: which `stack up` process runs a stack directory, its services' pids, and
`stack down`, which signals that process only if it is still the one that wrote the file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from membench.files import read_regular_file
from membench.jsonfile import write_json_atomic
from membench.processes import (
    ProcessIdentity,
    parse_identity,
    process_identity,
    same_process,
    wait_for,
)
from membench.stack.restarts import Restart
from membench.units import MIB

STATE_FILE = "stack.json"


class StackError(Exception):
    """The stack cannot start or stop; the message says why in one line."""


class ServiceState(TypedDict):
    """A supervised service as stack.json records it."""

    pid: int
    url: str


def write_state(
    directory: Path,
    prometheus_url: str | None,
    services: Mapping[str, ServiceState],
    restarts: Sequence[Restart],
) -> None:
    state = {
        "pid": os.getpid(),
        # The pid alone could name another process once this one is gone (pids are reused):
        # `stack down` signals only the process with this start time and argv.
        "process": process_identity(os.getpid()),
        "prometheus_url": prometheus_url,
        "services": dict(services),
        "restarts": [r.as_dict() for r in restarts],
    }
    write_json_atomic(directory / STATE_FILE, state)


def recorded_stack(directory: Path, *, say_stale: bool = True) -> ProcessIdentity | None:
    """The identity of the `stack up` process the state file names, if that process still runs.

    A state file whose process is gone, or whose pid now names another process (a SIGKILLed
    `stack up` leaves its file behind; pids are reused), is stale: removed, and None.
    """
    state_path = directory / STATE_FILE
    try:
        identity = json.loads(read_regular_file(state_path, MIB))["process"]
        pid = int(identity["pid"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError):  # UnreadableFile is a ValueError
        identity, pid = None, None
    if identity is None or not same_process(identity):
        state_path.unlink(missing_ok=True)
        if say_stale:
            print(
                f"membench stack: removed the stale {state_path} (no stack runs as pid {pid}; "
                "no process was signalled)",
                file=sys.stderr,
            )
        return None
    return parse_identity(identity)


def stack_down(directory: Path, timeout: float = 60) -> int:
    """Ask the `stack up` process recorded in the state file to stop, and wait until it has."""
    state_path = directory / STATE_FILE
    existed = state_path.exists()
    identity = recorded_stack(directory, say_stale=False)
    if identity is None and existed:
        raise StackError(
            f"no running stack recorded in {state_path}: the process it names is gone or is "
            "another one; removed the stale file, signalled nothing"
        )
    if identity is None:
        raise StackError(f"no running stack recorded in {state_path}")
    with contextlib.suppress(ProcessLookupError):
        os.kill(identity["pid"], signal.SIGTERM)
    try:
        wait_for(lambda: not same_process(identity), timeout=timeout, what="the stack to stop")
    except TimeoutError:
        raise StackError(
            f"the stack (pid {identity['pid']}) did not stop within {timeout:.0f} s; "
            f"it is still running (see {directory / 'logs'})"
        ) from None
    return 0
