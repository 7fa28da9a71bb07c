"""Write a file atomically: a reader sees the old file or the new one, never half (a JSON
document, or whatever a writer puts through `replaced_atomically`)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """A hidden temporary file beside `path` to write, which replaces `path` when the block ends.

    On any error (a full disk, say) the temporary file is removed and the error raised.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json_atomic(path: Path, document: object, *, indent: int | None = 2) -> None:
    """Write `document` to `path` through a hidden temporary file in the same directory."""
    text = json.dumps(document, indent=indent) + ("\n" if indent is not None else "")
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)
