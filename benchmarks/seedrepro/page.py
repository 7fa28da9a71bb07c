"""The report page: a hand-written Markdown narrative whose tables the code fills in, and whose
quoted numbers carry the key of the JSON figure they came from.

Two markers, both HTML comments (invisible where the Markdown is rendered):

- ``<!-- table: NAME -->`` ... ``<!-- /table -->`` holds a generated block; `fill` replaces what
  lies between them with the block of that name, so the tables always follow the JSON.
- ``36.2<!--=seed_method.residuals.prefork_threads_rest_mb-->`` quotes a figure: `check` reads the
  figure at that dotted path (list items by index) and compares it with the number as written, at
  the number's own decimals. Every decimal number in the prose must carry such a key, so a figure
  changed by hand, or typed without its source, fails `check` (tests/test_seed_reproduction.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TABLE = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
QUOTE = re.compile(r"(?P<number>[-+]?\d+(?:\.\d+)?)<!--=(?P<key>[\w.\-]+)-->")
# A decimal number standing alone in the prose (not part of a word, a version or a path).
DECIMAL = re.compile(r"(?<![\w.^/-])[-+]?\d+\.\d+(?![\w.]*\w)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


class PageError(Exception):
    """The page's template and the generated blocks do not fit together."""


@dataclass(frozen=True)
class Quote:
    number: str
    key: str
    line: int


def fill(template: str, blocks: Mapping[str, list[str]]) -> str:
    """`template` with every table marker's content replaced by the block of that name."""
    names = [m["name"] for m in TABLE.finditer(template)]
    missing = sorted(set(blocks) - set(names))
    unknown = sorted(set(names) - set(blocks))
    if missing or unknown:
        raise PageError(
            f"table markers: the page lacks {missing or 'none'}, the code has no block for "
            f"{unknown or 'none'}"
        )

    def body(match: re.Match[str]) -> str:
        lines = blocks[match["name"]]
        return match.group(1) + "".join(f"{line}\n" for line in lines) + match.group(4)

    return TABLE.sub(body, template)


def prose(text: str) -> str:
    """The page without its generated blocks, code fences and inline code: the hand-written part.
    Removed spans keep their newlines, so line numbers still point into the page."""

    def blank(match: re.Match[str]) -> str:
        return "\n" * match.group(0).count("\n")

    for pattern in (TABLE, FENCE, INLINE_CODE):
        text = pattern.sub(blank, text)
    return text


def quotes(text: str) -> list[Quote]:
    narrative = prose(text)
    return [
        Quote(m["number"], m["key"], narrative.count("\n", 0, m.start()) + 1)
        for m in QUOTE.finditer(narrative)
    ]


def lookup(figures: Mapping[str, Any], key: str) -> Any:
    value: Any = figures
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _matches(number: str, value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    decimals = len(number.partition(".")[2])
    written = float(number)
    if number[0] in "+-" and written != 0 and (written > 0) != (value > 0):
        return False
    return f"{abs(value):.{decimals}f}" == f"{abs(written):.{decimals}f}"


def check(text: str, figures: Mapping[str, Any]) -> list[str]:
    """What is wrong with the page's quoted numbers, one line each (empty when all hold)."""
    problems = []
    for quote in quotes(text):
        try:
            value = lookup(figures, quote.key)
        except (KeyError, IndexError, ValueError, TypeError):
            problems.append(f"line {quote.line}: {quote.number}: no figure {quote.key}")
            continue
        if not _matches(quote.number, value):
            problems.append(
                f"line {quote.line}: {quote.number} is not {quote.key} = {value!r} "
                "at the decimals written"
            )
    unkeyed = QUOTE.sub("", prose(text))
    for match in DECIMAL.finditer(unkeyed):
        line = unkeyed.count("\n", 0, match.start()) + 1
        problems.append(f"line {line}: {match.group(0)} quotes no figure (add <!--=KEY-->)")
    return problems
