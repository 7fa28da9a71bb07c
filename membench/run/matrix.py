"""`membench run --matrix`: the product of a few run settings, each combination a run of its own."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path


class MatrixError(ValueError):
    """A --matrix axis that cannot be run: unknown, repeated or empty."""


@dataclass(frozen=True, slots=True)
class MatrixFlag:
    dest: str  # the `membench run` parameter the value overrides
    parse: type


# Axis name -> the `membench run` option it varies; values are validated like the flag's own.
MATRIX_FLAGS: dict[str, MatrixFlag] = {
    "malloc": MatrixFlag("malloc", str),
    "payload": MatrixFlag("payload", str),
    "workers": MatrixFlag("workers", int),
    "size": MatrixFlag("size_mb", float),
    "subtasks": MatrixFlag("subtasks", int),
    "time": MatrixFlag("hold_s", float),
    "concurrency": MatrixFlag("concurrency", int),
}


def parse_matrix(specs: list[str]) -> list[dict[str, object]]:
    """`["malloc=glibc,jemalloc", "payload=bytes"]` -> one dict per combination, in order."""
    axes: dict[str, list[object]] = {}
    for spec in specs:
        axis, sep, values = spec.partition("=")
        axis = axis.strip()
        if not sep or axis not in MATRIX_FLAGS:
            raise MatrixError(
                f"{spec!r}: expected AXIS=V1,V2 with AXIS one of {', '.join(MATRIX_FLAGS)}"
            )
        if axis in axes:
            raise MatrixError(f"axis {axis!r} given twice")
        parse = MATRIX_FLAGS[axis].parse
        parsed: list[object] = []
        for value in (v.strip() for v in values.split(",")):
            if not value:
                raise MatrixError(f"{spec!r}: empty value")
            try:
                item = parse(value)
            except ValueError:
                raise MatrixError(f"{axis}: {value!r} is not a {parse.__name__}") from None
            if item in parsed:
                raise MatrixError(f"{axis}: {value!r} given twice")
            parsed.append(item)
        axes[axis] = parsed
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def combination_dir(output: Path, label: str) -> Path:
    """Where one combination's results go: the output itself without a matrix."""
    if not label:
        return output
    return output / re.sub(r"[^A-Za-z0-9.]+", "-", label.replace("=", "-")).strip("-")
