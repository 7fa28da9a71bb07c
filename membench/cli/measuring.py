"""What `membench run` and `membench run --app` share around a measurement: the output
directory held, the embedded broker, the interrupt, and the files written."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from membench.cli.options import UsageError, writable_dir
from membench.run.output import OutputBusy, OutputLock

if TYPE_CHECKING:
    from membench.results.model import Results


@contextlib.contextmanager
def held_output(flag_value: str) -> Iterator[Path]:
    """--output as a directory this run alone writes to, until the block ends (UsageError if
    another live run holds it or it cannot be written). Created only now: after every check."""
    output = writable_dir("--output", Path(flag_value))
    lock = OutputLock(output)
    try:
        lock.hold()
    except OutputBusy as exc:
        raise UsageError(f"--output: {exc}") from None
    except OSError as exc:
        raise UsageError(f"--output: cannot write to {output}: {exc.strerror or exc}") from None
    try:
        yield output
    finally:
        lock.release()


class Measuring:
    """The broker (embedded unless one is given) from entry to exit. Ctrl-C, SIGTERM and SIGHUP
    end the block with a line on stderr, not a traceback, and leave `complete` false; every
    process the block started is stopped by then."""

    def __init__(self, broker: str | None) -> None:
        from membench.broker import EmbeddedRedis

        self.given = broker
        self.embedded: EmbeddedRedis | None = None
        self.url = broker or ""
        self.complete = False
        self.unwritten: list[str] = []  # files a full disk (or similar) kept us from writing

    @property
    def shown(self) -> str:
        """The broker as results.json records it: "embedded", or the URL without its password."""
        from membench.broker import redact

        return "embedded" if self.embedded else redact(self.given or "")

    def __enter__(self) -> Measuring:
        from membench.processes import catch_stop_signals

        catch_stop_signals()
        return self

    def start_broker(self) -> str:
        """The broker URL: the given one, or an embedded redis-server's, started now (inside the
        block, so an interrupt while it starts is handled as any other)."""
        from membench.broker import EmbeddedRedis, redact

        if self.given is None and self.embedded is None:
            self.embedded = EmbeddedRedis()
            self.url = self.embedded.start()
            print(f"membench: embedded redis-server at {redact(self.url)}", file=sys.stderr)
        return self.url

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        from membench.processes import Interrupted

        if self.embedded is not None:
            self.embedded.stop()
        if exc is not None and isinstance(exc, KeyboardInterrupt | Interrupted):
            print(
                f"\nmembench: interrupted ({str(exc) or 'SIGINT'}); stopped every process",
                file=sys.stderr,
            )
            return True
        return False

    def save(self, path: Path, writer: Callable[[Path], None]) -> bool:
        """Write one file (every writer goes through a temporary file: no half file is left);
        a failure is a line on stderr and remembered, and the run goes on."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer(path)
        except OSError as exc:
            self.unwritten.append(str(path))
            print(
                f"membench run: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr
            )
            return False
        return True

    def write_results(self, directory: Path, document: Results) -> bool:
        """results.json, then the plot from it; "Wrote ..." once both are written."""
        from membench.results.document import write_results
        from membench.run.report import PLOT_FILE, RESULTS_FILE, plot_results

        results, plot = directory / RESULTS_FILE, directory / PLOT_FILE
        wrote = self.save(results, lambda path: write_results(path, document))
        if wrote and self.save(plot, lambda path: plot_results(document, path)):
            print(f"\nWrote {results} and {plot}")
            return True
        return False
