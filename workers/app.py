"""The Celery app: JSON only, Redis broker and result backend from MEMBENCH_BROKER_URL."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

# celery-types' billiard stubs omit ExceptionWithTraceback (billiard/einfo.py has it).
from billiard.einfo import ExceptionInfo, ExceptionWithTraceback  # type: ignore[attr-defined]
from celery import Celery, Task
from celery.utils.saferepr import saferepr
from celery.worker.request import Request
from celery.worker.state import task_ready

from membench import settings
from membench.urls import BROKER_FORM, BROKER_SCHEMES, UrlError, parse_url


def broker_url_from_env() -> str:
    """MEMBENCH_BROKER_URL (else CELERY_BROKER_URL), checked in every process that imports the
    app: a worker started straight by celery (compose, Kubernetes) has had no `membench` command
    check it, and kombu would send a password's text after a raw '@' to the resolver as a host."""
    url = settings.broker_url_or_default()
    where = settings.broker_url_source() or settings.BROKER_URL
    try:
        parse_url(url, BROKER_SCHEMES, BROKER_FORM)
    except UrlError as exc:
        raise SystemExit(f"{where}: {exc}") from None
    except ValueError:
        raise SystemExit(f"{where}: the URL is not a valid URL") from None
    return url


log = logging.getLogger("membench.workers")


class MembenchRequest(Request):
    """Celery stops the whole worker when a task raises MemoryError; here only that task fails."""

    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if not (return_ok and isinstance(exc, MemoryError)):
            return super().on_failure(exc_info, send_failed_event, return_ok)
        # The process that ran the task stored the failure and counted it (task_failure); the
        # allocation that failed was never made, so the worker can take the next task.
        task_ready(self)
        if self.task.acks_late:
            self.acknowledge()
        if send_failed_event:
            self.send_event(
                "task-failed",
                exception=saferepr(exc),
                traceback=exc_info.traceback,
            )
        log.warning("Task %s[%s] ran out of memory; the worker goes on", self.name, self.id)
        return None


if TYPE_CHECKING:
    # Generic in celery-types; at run time Celery takes a subscript only from 5.6 on.
    _Task = Task[..., object]
else:
    _Task = Task


class MembenchTask(_Task):
    """Tasks whose MemoryError fails the task only (see MembenchRequest)."""

    # celery-types has Request as the dotted path only; Celery resolves a class as well.
    Request = MembenchRequest  # type: ignore[assignment]


app = Celery("membench", include=["membench.workers.tasks"], task_cls=MembenchTask)
app.conf.update(
    broker_url=broker_url_from_env(),
    result_backend=broker_url_from_env(),
    # JSON only: a pickle message is refused, never deserialized.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    event_serializer="json",
    # Flower's task metrics need task events; the runner does not mind them.
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_track_started=True,
    # One message at a time: a worker's memory is that of the task it runs, not of a backlog.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
)

if settings.CELERY_BROKER_URL in os.environ:
    # Celery prefers $CELERY_BROKER_URL to broker_url, but not to these two: the broker is the
    # one membench chose (MEMBENCH_BROKER_URL first, then that variable) in every process.
    # Only then: code that sets broker_url later (a test's app) keeps working as before.
    app.conf.update(broker_read_url=broker_url_from_env(), broker_write_url=broker_url_from_env())

# Every worker process exports its memory and the per-task metrics through the instrument any
# Celery app gets (membench.celery), with the scenario's identity as extra labels. Not even
# imported with MEMBENCH_EXPORTER=off: the "without" of benchmarks/exporter.py overhead.
from membench.workers.instrumentation import connect_signals, scenario_labels  # noqa: E402

if settings.exporter_enabled():
    from membench.exporter.instrument import instrument

    instrument(app, labels=scenario_labels())
connect_signals()
