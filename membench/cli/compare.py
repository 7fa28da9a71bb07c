"""`membench compare A.json B.json`: two saved runs side by side; exit 1 on a regression.

Pure file work (no broker, no worker); bad input is one line naming the file, exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from membench.cli.options import EXIT_OK, UsageError
from membench.run.compare import (
    DEFAULT_THRESHOLD_PCT,
    EXIT_REGRESSION,
    REGRESSION,
    compare_documents,
    format_comparison,
    verdict_line,
    warnings_for,
)


def cmd_compare(a_path: str, b_path: str, threshold: float) -> int:
    """Compare two results.json files; exit 1 on a significant regression beyond --threshold."""
    from membench.results.document import BadResults, read_results

    path_a, path_b = Path(a_path), Path(b_path)
    try:
        a, b = read_results(path_a), read_results(path_b)
    except BadResults as exc:
        raise UsageError(str(exc)) from None
    comparisons, only_a, only_b = compare_documents(a, b, threshold)
    if not comparisons:
        raise UsageError(
            f"{path_b}: no scenario in common with {path_a} "
            f"(A ran {', '.join(only_a) or 'none'}; B ran {', '.join(only_b) or 'none'})"
        )
    for warning in warnings_for(path_a, a, path_b, b, only_a, only_b):
        print(f"membench compare: warning: {warning}", file=sys.stderr)
    print(format_comparison(comparisons, path_a, path_b, threshold))
    print(verdict_line(comparisons, threshold))
    regressed = any(c.verdict == REGRESSION for comp in comparisons for c in comp.changes)
    return EXIT_REGRESSION if regressed else EXIT_OK


@click.command("compare")
@click.argument("a_path", metavar="A.json")
@click.argument("b_path", metavar="B.json")
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=DEFAULT_THRESHOLD_PCT,
    show_default=True,
    metavar="PCT",
    help="percent change below which nothing is significant",
)
def command(a_path: str, b_path: str, threshold: float) -> int:
    """Compare two saved results.json files approach by approach; exit 1 if peak memory or
    time rose significantly (beyond the noise and --threshold). Each file is read only if it
    is a regular file of at most 64 MiB."""
    return cmd_compare(a_path, b_path, threshold)
