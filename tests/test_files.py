"""Files a user names are read only when they are regular files of bounded size: a FIFO, a
device (or a symlink to one), a directory or a huge file is one line and exit 2, never a hang or
a MemoryError, in every command that reads one; an HTTP answer is bounded in size and time."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import membench

from membench.files import UnreadableFile, read_regular_file
from membench.units import MIB


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    """A FIFO with no writer, symlinks to endless devices, a directory, a sparse huge file."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    zero, random = tmp_path / "zero.json", tmp_path / "random.toml"
    zero.symlink_to("/dev/zero")
    random.symlink_to("/dev/urandom")
    directory = tmp_path / "dir.json"
    directory.mkdir()
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(65 * MIB)  # sparse: costs no disk
    return {"fifo": fifo, "zero": zero, "random": random, "directory": directory, "huge": huge}


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("fifo", "is a FIFO"),
        ("zero", "is a character device"),
        ("random", "is a character device"),
        ("directory", "is a directory"),
        ("huge", "is larger than 64 MiB"),
    ],
)
def test_only_a_bounded_regular_file_is_read(
    hostile: dict[str, Path], kind: str, reason: str
) -> None:
    with pytest.raises(UnreadableFile, match=reason):
        read_regular_file(hostile[kind], 64 * MIB)


def test_a_regular_file_up_to_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_bytes(b"x" * 1000)
    assert read_regular_file(path, 1000) == b"x" * 1000
    with pytest.raises(UnreadableFile, match="larger than 999 bytes"):
        read_regular_file(path, 999)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing.json", 10)


@pytest.mark.parametrize("kind", ["fifo", "zero", "random", "huge"])
@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "{path}", "{path}"],
        ["plot", "{path}"],
        ["loadgen", "--schedule", "{path}"],
    ],
    ids=["compare", "plot", "loadgen"],
)
def test_every_command_refuses_them_in_one_line(
    hostile: dict[str, Path], kind: str, argv: list[str]
) -> None:
    path = str(hostile[kind])
    # A hang would end at the timeout, a read of /dev/zero in a MemoryError traceback.
    result = membench(*(a.replace("{path}", path) for a in argv), timeout=60)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert path in line and ("not a regular file" in line or "larger than" in line), line


class _Hostile(BaseHTTPRequestHandler):
    """Answers every GET with a body that never ends: flooding, or one byte at a time."""

    trickle = False

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        deadline = time.monotonic() + 30  # bounded, whatever the client does
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                if self.trickle:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)  # the trickle's pace, not a synchronisation
                else:
                    self.wfile.write(b"[" * 65536)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("trickle", [False, True], ids=["flood", "trickle"])
def test_report_cuts_off_an_endless_answer_in_one_line(trickle: bool, tmp_path: Path) -> None:
    handler = type("Handler", (_Hostile,), {"trickle": trickle})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.block_on_close = True, False  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        out = tmp_path / "report"
        result = membench("report", "--prometheus", url, "--last", "10m", "--output", str(out))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "more than 256 MiB" in line or "did not finish its answer within" in line, line
    assert not out.exists()
