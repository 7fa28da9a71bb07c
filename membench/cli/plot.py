"""`membench plot results.json`: re-render memory_comparison.png from a saved run."""

from __future__ import annotations

from pathlib import Path

import click

from membench.cli.options import EXIT_OK, UsageError
from membench.run.compare import check_plottable


def cmd_plot(results: str, output_path: str | None) -> int:
    """Re-render memory_comparison.png from a saved results.json."""
    from membench.results.document import BadResults, read_results
    from membench.run.report import PLOT_FILE, plot_results

    path = Path(results)
    try:
        document = read_results(path)
        check_plottable(document, path)
    except BadResults as exc:
        raise UsageError(str(exc)) from None
    output = Path(output_path) if output_path else path.with_name(PLOT_FILE)
    # matplotlib picks the format from the suffix; anything but .png would not be "the plot".
    if output.suffix.lower() != ".png":
        raise UsageError(f"--output: must end in .png, got {output}")
    if not output.parent.is_dir():
        raise UsageError(f"--output: directory {output.parent} does not exist")
    try:
        plot_results(document, output)
    except OSError as exc:
        raise UsageError(f"--output: cannot write {output}: {exc.strerror or exc}") from None
    print(f"Wrote {output}")
    return EXIT_OK


@click.command("plot")
@click.argument("results", metavar="results.json")
@click.option(
    "--output",
    "output_path",
    metavar="PNG",
    help="where to write the plot (default: memory_comparison.png next to results.json)",
)
def command(results: str, output_path: str | None) -> int:
    """Re-render the memory-over-time plot from a saved results.json (a regular file of at most
    64 MiB)."""
    return cmd_plot(results, output_path)
