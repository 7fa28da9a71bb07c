"""The user's Celery worker as `membench run --app` starts it: patched as Celery's own `celery`
command patches (gevent before anything imports the app), the instrument added without editing
the app, and one record per task run written where the runner reads it.

    python -m membench.run.app.launcher RECORDS_DIR MODULE:ATTRIBUTE worker -P POOL -c N ...

Every process of the worker appends JSON lines to RECORDS_DIR/<pid>.jsonl: `start` when a run
begins, `end` with its outcome, duration, exact or shared peak (the instrument's own figures),
retained memory and, for a failure, the exception's last line. The runner keeps N runs in
flight from them and gets each run's figures without a label per run in any metric.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import msgspec

from membench.results.model import RunBegan, RunFinished, RunRecord

_fd: dict[int, int] = {}  # pid -> descriptor: a prefork child opens its own file after the fork
_errors: dict[str, str] = {}  # task id -> the exception's last line, until the run's record
_records_dir = ""


def _write(record: RunRecord) -> None:
    fd = _fd.get(record.pid)
    if fd is None:
        path = os.path.join(_records_dir, f"{record.pid}.jsonl")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = _fd[record.pid] = os.open(path, flags, 0o600)
    # One write per line with O_APPEND: the runner never sees two processes' lines interleaved.
    os.write(fd, msgspec.json.encode(record) + b"\n")


def last_line(exc: BaseException | None) -> str:
    """`Type: message`, the message's last line only, at most 300 characters."""
    if exc is None:
        return ""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".strip().rstrip(":")[:300]


def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id is not None:
        _write(RunBegan(task_id, os.getpid(), time.time()))


def _on_failure(
    task_id: str | None = None, exception: BaseException | None = None, **_: Any
) -> None:
    from billiard.exceptions import WorkerLostError

    if task_id is None:
        return
    if isinstance(exception, WorkerLostError):
        # Sent in the main process: the child that ran it died and wrote no end record.
        _write(RunFinished(task_id, os.getpid(), time.time(), "lost", last_line(exception)))
    else:
        _errors[task_id] = last_line(exception)


def _on_run_finished(run: Any) -> None:
    _write(
        RunFinished(
            id=run.task_id,
            pid=os.getpid(),
            t=time.time(),
            outcome=run.outcome,
            error=_errors.pop(run.task_id, ""),
            duration_s=run.duration_s,
            peak_rss_bytes=run.peak_rss_bytes,
            window_peak_rss_bytes=run.window_peak_rss_bytes,
            retained_bytes=run.retained_bytes,
        )
    )


def _on_ready(**_: Any) -> None:
    from membench import settings

    settings.announce_ready()


def _on_child_init(**_: Any) -> None:
    from membench.processes import die_with_parent

    die_with_parent()  # a child never outlives its worker, even a SIGKILLed one


def load_app(spec: str) -> Any:
    """MODULE:ATTRIBUTE, imported from PYTHONPATH, then the directory membench started in."""
    import importlib

    from membench import settings

    started = settings.started_dir() or os.getcwd()
    if started not in sys.path:
        sys.path.append(started)
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


def main(argv: list[str]) -> int:
    global _records_dir
    _records_dir, spec, celery_argv = argv[0], argv[1], argv[2:]
    # What `celery worker -P gevent` does first: patch before the app (or anything) is imported.
    from celery import maybe_patch_concurrency

    maybe_patch_concurrency(["celery", *celery_argv])
    from celery import signals

    from membench import settings
    from membench.celery import instrument
    from membench.exporter.taskruns import add_run_listener

    app = load_app(spec)
    if not any(getattr(o, "name", None) == "membench_port" for o in app.user_options["worker"]):
        instrument(app)  # the app did not call it itself
    # The benchmark's own broker and result backend, never the app's production ones.
    app.conf.broker_url = app.conf.result_backend = settings.broker_url()
    add_run_listener(_on_run_finished)
    for signal, hook in (
        (signals.task_prerun, _on_prerun),
        (signals.task_failure, _on_failure),
        (signals.worker_ready, _on_ready),
        (signals.worker_process_init, _on_child_init),
    ):
        signal.connect(hook, weak=False, dispatch_uid=f"membench.apprun.{hook.__name__}")
    app.worker_main(celery_argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
