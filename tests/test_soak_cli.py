"""`membench soak`'s bad input: one line naming the flag, exit 2, before any process starts or
any query runs (fast: nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import require_binary

from membench.cli.main import main

CASES = [
    (["--last", "1h"], "--last: only with --prometheus"),
    (["--prometheus", "http://127.0.0.1:1", "--duration", "5m"], "--duration: only without"),
    (["--prometheus", "http://127.0.0.1:1", "--faults"], "--faults: only without"),
    (["--max-growth", "0"], "--max-growth: 0.0 is not in the range x>0"),
    (["--max-growth", "nan"], "--max-growth:"),
    (["--max-lost", "-1"], "--max-lost: -1 is not in the range x>=0"),
    (["--duration", "5x"], "--duration: not a Prometheus duration"),
    (["--warmup", "soon"], "--warmup: not a Prometheus duration"),
    (["--faults", "--duration", "10m", "--fault-every", "10m"], "--faults: --duration must cover"),
    (["--schedule", "/nonexistent/schedule.toml"], "--schedule:"),
    (["--prometheus", "ftp://127.0.0.1/"], "--prometheus:"),
    (["--prometheus", "http://u:p@ss@h/"], "--prometheus:"),
    (["--prometheus", "http://127.0.0.1:1", "--last", "1h", "--start", "0"], "--last:"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_naming_the_flag_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["soak", *args, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("membench soak: error: "), err
    assert message in err
    assert "p@ss" not in err
    assert not (tmp_path / "out" / "stack").exists()


def test_an_output_that_is_a_file_is_refused_before_the_stack_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    require_binary("prometheus")
    (tmp_path / "file").write_text("")
    assert main(["soak", "--output", str(tmp_path / "file")]) == 2
    assert "membench soak: error: --output: " in capsys.readouterr().err
