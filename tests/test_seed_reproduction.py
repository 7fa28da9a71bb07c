"""The seed reproduction page: its tables regenerate from the JSON saved beside it, and every number
its hand-written narrative quotes equals the JSON figure it names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from seedrepro import page
from seedrepro.cli import quoted_figures

PAGE = REPO / "docs" / "results" / "seed-reproduction.md"
SAVED = REPO / "docs" / "results" / "seed-reproduction"


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    summary = json.loads((SAVED / "summary.json").read_text())
    method = json.loads((SAVED / "seed-method.json").read_text())
    return quoted_figures(summary, method)


def test_the_tables_regenerate_from_the_saved_json(tmp_path: Path) -> None:
    """--render-only from a copy of the saved JSON gives the committed page, byte for byte."""
    saved = tmp_path / "seed-reproduction"
    shutil.copytree(SAVED, saved)
    report = tmp_path / "seed-reproduction.md"
    done = subprocess.run(
        [
            *(sys.executable, "benchmarks/reproduce_seed.py"),
            *("--render-only", str(saved), "--report", str(report)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    assert report.read_text() == PAGE.read_text()
    # seed-method.json is recomputed from the runs beside it, and equals the committed one.
    assert json.loads((saved / "seed-method.json").read_text()) == json.loads(
        (SAVED / "seed-method.json").read_text()
    )


def test_every_quoted_number_equals_its_figure(figures: dict[str, Any]) -> None:
    text = PAGE.read_text()
    assert page.check(text, figures) == []
    assert len(page.quotes(text)) >= 30  # the narrative quotes; the check is not vacuous


def test_a_number_changed_by_hand_fails(figures: dict[str, Any]) -> None:
    text = PAGE.read_text()
    quote = page.quotes(text)[0]
    marker = f"{quote.number}<!--={quote.key}-->"
    changed = f"{float(quote.number) + 0.1:.2f}<!--={quote.key}-->"
    problems = page.check(text.replace(marker, changed, 1), figures)
    assert len(problems) == 1 and quote.key in problems[0]


def test_a_figure_without_its_source_fails(figures: dict[str, Any]) -> None:
    text = PAGE.read_text().replace("## Files", "Our peak was 237.1 MB.\n\n## Files", 1)
    problems = page.check(text, figures)
    assert len(problems) == 1 and "237.1 quotes no figure" in problems[0]


def test_a_key_that_names_nothing_fails(figures: dict[str, Any]) -> None:
    text = PAGE.read_text().replace(
        "## Files", "It was 1.0<!--=ratios.99.ours--> times.\n\n## Files", 1
    )
    assert page.check(text, figures) == [
        f"line {text[: text.index('It was')].count(chr(10)) + 1}: 1.0: no figure ratios.99.ours"
    ]


@pytest.mark.parametrize(
    ("number", "value", "holds"),
    [
        ("36.2", 36.16, True),
        ("36.2", 36.24, True),
        ("36.2", 36.26, False),
        ("+6.2", 6.18, True),
        ("-6.2", 6.18, False),  # a sign, when written, must be the figure's
        ("11.1", -11.149, True),  # unsigned: the magnitude ("11.1 MB over")
        ("2.05", 2.0459, True),
        ("9.87", 9.8722, True),
    ],
)
def test_a_quote_matches_at_its_own_decimals(number: str, value: float, holds: bool) -> None:
    assert (page.check(f"x {number}<!--=v-->\n", {"v": value}) == []) is holds


def test_tables_are_filled_and_markers_must_match() -> None:
    template = "a\n<!-- table: t -->\nold\n<!-- /table -->\nb\n"
    assert (
        page.fill(template, {"t": ["| x |"]}) == "a\n<!-- table: t -->\n| x |\n<!-- /table -->\nb\n"
    )
    with pytest.raises(page.PageError, match="the code has no block for \\['t'\\]"):
        page.fill(template, {})
    with pytest.raises(page.PageError, match="the page lacks \\['u'\\]"):
        page.fill(template, {"t": [], "u": []})


def test_the_seed_readme_is_in_the_repository() -> None:
    from seedrepro.collect import parse_seed
    from seedrepro.common import SEED_README

    assert SEED_README.is_relative_to(REPO)
    assert set(parse_seed(SEED_README)["rows"]) == {
        "prefork_threads",
        "prefork_sequential",
        "gevent_threads",
        "gevent_greenlets",
    }
