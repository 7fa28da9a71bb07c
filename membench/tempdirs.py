"""Private temporary directories that whoever comes next cleans up if their owner was killed.

A SIGKILLed `membench` cannot remove its directories; each records its owner (pid, start time,
argv), and the next `membench` that makes one removes those whose owner no longer runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from membench.files import read_regular_file
from membench.processes import parse_identity, process_identity, same_process
from membench.units import MIB

OWNER_FILE = ".membench-owner"


def owned_tempdir(prefix: str, root: Path | None = None) -> Path:
    """A new directory `<root>/<prefix>XXXX`, owned by this process; abandoned ones pruned."""
    base = root or Path(tempfile.gettempdir())
    prune_abandoned(prefix, base)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    (directory / OWNER_FILE).write_text(json.dumps(process_identity(os.getpid())))
    return directory


def prune_abandoned(prefix: str, root: Path | None = None) -> list[Path]:
    """Remove `<root>/<prefix>*` directories whose recorded owner no longer runs."""
    removed = []
    for directory in sorted((root or Path(tempfile.gettempdir())).glob(f"{prefix}*")):
        try:
            owner = parse_identity(json.loads(read_regular_file(directory / OWNER_FILE, MIB)))
        except (OSError, ValueError):
            continue  # not ours, or being created right now: leave it
        if owner is not None and not same_process(owner):
            with contextlib.suppress(OSError):
                shutil.rmtree(directory)
                removed.append(directory)
    return removed
