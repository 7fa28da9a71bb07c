"""membench/jsonfile.py: a reader sees the old file or the new one, and no temporary file stays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from membench.jsonfile import write_json_atomic


def test_writes_indented_json_with_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    write_json_atomic(path, {"b": [1, 2], "a": None})
    assert path.read_text() == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": null\n}\n'
    assert os.listdir(tmp_path) == ["doc.json"]  # the temporary file was renamed, not copied


def test_compact_json_has_no_newline(tmp_path: Path) -> None:
    path = tmp_path / "target.json"
    write_json_atomic(path, [{"targets": ["h:1"]}], indent=None)
    assert path.read_text() == '[{"targets": ["h:1"]}]'


def test_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text("old")
    write_json_atomic(path, {"new": True})
    assert json.loads(path.read_text()) == {"new": True}
    assert os.listdir(tmp_path) == ["doc.json"]


def test_a_document_json_cannot_serialise_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    write_json_atomic(path, {"version": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(path, {"version": 2, "when": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["doc.json"]


def test_a_failing_write_removes_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fail after the temporary file exists, as a full disk would, and before the rename.
    path = tmp_path / "doc.json"
    path.write_text('{"old": true}')
    seen: list[Path] = []
    real_write_text = Path.write_text

    def write_then_fail(self: Path, *args: object, **kwargs: object) -> int:
        real_write_text(self, *args, **kwargs)  # type: ignore[arg-type]
        seen.append(self)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(path, {"new": True})
    monkeypatch.undo()
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith(".doc.json.")  # hidden, same directory
    assert not tmp.exists()
    assert os.listdir(tmp_path) == ["doc.json"]
    assert json.loads(path.read_text()) == {"old": True}


def test_a_failing_rename_removes_the_temporary_file(tmp_path: Path) -> None:
    # The target is a non-empty directory: the rename fails, nothing of the document stays.
    path = tmp_path / "doc.json"
    path.mkdir()
    (path / "keep").write_text("")
    with pytest.raises(OSError):
        write_json_atomic(path, {"new": True})
    assert sorted(os.listdir(tmp_path)) == ["doc.json"]
    assert os.listdir(path) == ["keep"]


def test_a_missing_directory_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_json_atomic(tmp_path / "absent" / "doc.json", {})
    assert os.listdir(tmp_path) == []
