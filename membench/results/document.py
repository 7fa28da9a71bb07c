"""Reading and writing results.json: the version first (an older format is one clear line),
then a typed decode into membench.results.model, which is the validation.

Pure file work, no celery: `membench compare` and `membench plot` import it to start fast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import msgspec

from membench.files import UnreadableFile, read_regular_file
from membench.jsonfile import write_json_atomic
from membench.results.model import SCHEMA_VERSION, MatrixSummary, Results, Scenario
from membench.units import MIB

# The most of a results.json read: a large --matrix run writes a few MiB.
RESULTS_LIMIT = 64 * MIB
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")
# What changed at each version, for the line that refuses an older file.
FORMAT_CHANGES = {
    1: 'version 2 added the top-level "mode" and typed every field',
}


class BadResults(Exception):
    """A file that is not a usable results.json; the message names the file."""


def read_results(path: Path) -> Results:
    """The typed document, if `path` is a results.json this version of membench reads."""
    try:
        raw = read_regular_file(path, RESULTS_LIMIT)
    except FileNotFoundError:
        raise BadResults(f"{path}: no such file") from None
    except UnreadableFile as exc:
        raise BadResults(f"{path}: {exc}") from None
    except OSError as exc:
        raise BadResults(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadResults(f"{path}: not valid JSON ({exc})") from None
    except msgspec.ValidationError as exc:  # an integer of more digits than 64 bits hold
        raise BadResults(f"{path}: not a results.json ({exc})") from None
    except RecursionError:
        raise BadResults(f"{path}: not a results.json (nested too deeply to read)") from None
    return results_from(document, path)


def results_from(document: Any, path: Path | str = "results.json") -> Results:
    """A parsed JSON value as results, or BadResults naming `path` and the first wrong field."""
    if not isinstance(document, dict) or "schema_version" not in document:
        raise BadResults(f"{path}: not a membench results.json (no schema_version)")
    version = document["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        change = FORMAT_CHANGES.get(version) if isinstance(version, int) else None
        why = f" ({change}): rerun `membench run` to measure anew" if change else ""
        raise BadResults(
            f"{path}: schema_version {version!r}, this membench reads {SCHEMA_VERSION}{why}"
        )
    try:
        # msgspec returns the union's member the tag names; its stubs say only Struct.
        results = cast(Results, msgspec.convert(document, Results))
    except msgspec.ValidationError as exc:
        raise BadResults(f"{path}: not a valid results.json: {exc}") from None
    # What a schema cannot say: compare and plot find a scenario by its name.
    seen: set[str] = set()
    entries: Sequence[Scenario] = results.scenarios
    for i, scenario in enumerate(entries):
        if scenario.scenario in seen:
            raise BadResults(
                f"{path}: scenarios[{i}]: scenario {scenario.scenario!r} appears twice"
            )
        seen.add(scenario.scenario)
    return results


def plain(value: msgspec.Struct | list[Any]) -> Any:
    """Model objects as the JSON values they are written as."""
    return msgspec.to_builtins(value)


def write_results(path: Path, results: Results | MatrixSummary) -> None:
    """results.json (or matrix.json) through a temporary file: the old file or the new one."""
    write_json_atomic(path, plain(results))


def schema() -> dict[str, Any]:
    """The JSON Schema of results.json, generated from the model."""
    generated: dict[str, Any] = msgspec.json.schema(Results)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/celery-membench/celery-membench/results.schema.json",
        "title": f"membench results.json, schema_version {SCHEMA_VERSION}",
        **generated,
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m membench.results.document [--check]`: write (or check) the shipped schema."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        if SCHEMA_FILE.read_text() != schema_text():
            print(f"{SCHEMA_FILE}: out of date; run python -m membench.results.document")
            return 1
        return 0
    SCHEMA_FILE.write_text(schema_text())
    print(f"Wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
