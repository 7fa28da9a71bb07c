"""Write a JSON document atomically: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, document: Any, *, indent: int | None = 2) -> None:
    """Write `document` to `path` through a hidden temporary file in the same directory.

    On any error (a full disk, say) the temporary file is removed and the error raised.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(document, indent=indent) + ("\n" if indent is not None else "")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
