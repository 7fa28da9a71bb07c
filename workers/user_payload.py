"""The user's own subtask, `--payload MODULE:FUNCTION`: resolve it (from PYTHONPATH, then the
directory membench was started in, after the standard library), fingerprint its module file, and
pass the directory on to workers."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from membench import settings

# FUNCTION(index, size_mb, hold_s): one subtask's work (build, hold, reduce); its value is dropped.
UserSubtask = Callable[[int, float, float], Any]


class PayloadError(ValueError):
    """A MODULE:FUNCTION spec that does not resolve; the message says why, in one line."""


def _search_started_dir() -> None:
    # Last on the path, after the standard library: a `random.py` beside the user's module must
    # not replace the standard library's in membench or its workers (which run with
    # PYTHONSAFEPATH, so `python -m` does not put their working directory first either).
    started = settings.started_dir() or os.getcwd()
    if started not in sys.path:
        sys.path.append(started)


def resolve(spec: str) -> UserSubtask:
    """Import MODULE and return its FUNCTION; raises PayloadError (import failure, no such
    attribute, not callable; the standard library, a function MODULE only imported)."""
    module_name, _, function_name = spec.partition(":")
    if module_name.partition(".")[0] in sys.stdlib_module_names:
        # A queue message names the spec: never let it call into the standard library.
        raise PayloadError(f"{spec}: {module_name} is the standard library, not your code")
    _search_started_dir()
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # any failure importing user code is the spec's
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise PayloadError(f"{spec}: module {module_name!r} does not import: {detail}") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise PayloadError(f"{spec}: module {module_name!r} has no attribute {function_name!r}")
    if not callable(function):
        kind = type(function).__name__
        raise PayloadError(f"{spec}: {module_name}.{function_name} is not callable ({kind})")
    defined_in = getattr(function, "__module__", None)
    if defined_in != module_name:  # e.g. `from os import system`: name the module defining it
        raise PayloadError(f"{spec}: {function_name} is defined in {defined_in}, not {module_name}")
    subtask: UserSubtask = function  # user code: callable, as checked; its signature is on trust
    return subtask


def module_sha256(spec: str) -> str | None:
    """sha256 of the resolved spec's module file (None for a module with no file)."""
    resolve(spec)
    path = getattr(sys.modules[spec.partition(":")[0]], "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def started_dir_environment(env: Mapping[str, str], started: str | None = None) -> dict[str, str]:
    """What a worker's environment needs to import the user's module from the directory
    membench was started in, and nothing else from there: that directory by name (searched
    last, by `resolve`), and PYTHONSAFEPATH, so that `python -m celery` does not put its
    working directory before the standard library."""
    return {
        settings.STARTED_DIR: settings.started_dir(env) or started or os.getcwd(),
        "PYTHONSAFEPATH": "1",
    }
