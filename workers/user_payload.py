"""The user's own subtask, `--payload MODULE:FUNCTION`: resolve it (from the directory membench was
started in, then PYTHONPATH), fingerprint its module file, and pass the directory on to workers."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# FUNCTION(index, size_mb, hold_s): one subtask's work (build, hold, reduce); its value is dropped.
UserSubtask = Callable[[int, float, float], Any]


class PayloadError(ValueError):
    """A MODULE:FUNCTION spec that does not resolve; the message says why, in one line."""


def _search_started_dir() -> None:
    # A console script's sys.path[0] is its bin/ directory, not the directory it was started in;
    # `python -m` (how workers run) puts the latter first, so the CLI does the same.
    started = os.getcwd()
    if started not in sys.path:
        sys.path.insert(0, started)


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
    return function  # type: ignore[no-any-return]


def module_sha256(spec: str) -> str | None:
    """sha256 of the resolved spec's module file (None for a module with no file)."""
    resolve(spec)
    path = getattr(sys.modules[spec.partition(":")[0]], "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def with_started_dir(env: Mapping[str, str], started: str | None = None) -> str:
    """PYTHONPATH for a worker: the directory membench was started in, then the inherited path
    (workers import the user's module; PYTHONSAFEPATH would drop the directory `python -m` adds)."""
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join([started or os.getcwd(), *inherited])
