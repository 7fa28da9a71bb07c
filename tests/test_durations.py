"""The one duration parser: Prometheus's grammar as promtool reads a rule file, and the command
line's bare seconds beside it; each flag that takes a duration refuses bad input in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import membench

from membench.durations import parse_duration, parse_seconds

PROMETHEUS = [
    *[("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1w", 604800)],
    *[("1y", 365 * 86400), ("90s", 90), ("500ms", 0.5), ("1m30s250ms", 90.25)],
    *[("0s", 0), ("0", 0), ("0m", 0)],
]
# What promtool refuses as a rule's `for:` (a bare number), or Prometheus's parser at all.
NOT_PROMETHEUS = ["", "5x", "1.5h", "-1h", "1m1h", "1h1h", "h", "10", "1 h", " 2h", "30M", "1us"]


@pytest.mark.parametrize(("text", "seconds"), PROMETHEUS)
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", NOT_PROMETHEUS)
def test_what_prometheus_would_refuse_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "accepted"),
    [(t, True) for t, _ in PROMETHEUS] + [(t, False) for t in NOT_PROMETHEUS],
)
def test_the_grammar_is_promtools(text: str, accepted: bool, tmp_path: Path) -> None:
    """The measured reason the parser is ours: it agrees with the promtool the stack ships."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n"
        f"    for: {text!r}\n".replace("'", '"')
    )
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True)
    assert (checked.returncode == 0) == accepted, checked.stdout + checked.stderr


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("2.5", 2.5), ("30m", 1800)])
def test_the_command_line_also_takes_bare_seconds(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["-1", "inf", "nan", "5x", "1.5h"])
def test_the_command_line_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError):
        parse_seconds(text)


def test_zero_only_where_it_means_something() -> None:
    assert parse_seconds("0s") == 0
    with pytest.raises(ValueError, match="must be longer than 0"):
        parse_seconds("0s", zero=False)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["stack", "up", "--duration", "5x"], "--duration: not a Prometheus duration"),
        (["stack", "up", "--duration", "0"], "--duration: must be longer than 0"),
        (["stack", "up", "--duration", "400d"], "--duration: must be at most 366 days"),
        (["loadgen", "--schedule", "x.toml", "--duration", "1m1h"], "--duration: not a Prom"),
        (["soak", "--interval", "1.5h"], "--interval: not a Prometheus duration"),
        (["report", "--prometheus", "http://127.0.0.1:1", "--last", "0"], "--last: must be"),
    ],
)
def test_each_duration_flag_refuses_in_one_line(argv: list[str], line: str) -> None:
    result = membench(*argv)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and line in result.stderr, result.stderr
