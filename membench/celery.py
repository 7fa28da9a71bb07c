"""The instrument for any Celery app: `instrument(app)` in the module that defines the app.

    from celery import Celery
    from membench.celery import instrument

    app = Celery("proj")
    instrument(app)

Then `celery -A proj worker ...` serves /metrics from every worker process. Installing it needs
only celery and prometheus-client (`pip install celery-membench`).
"""

from membench.exporter.instrument import instrument, process_labels, process_registry
from membench.exporter.options import DEFAULT_PORT, MODES, InstrumentOptions

__all__ = [
    "DEFAULT_PORT",
    "MODES",
    "InstrumentOptions",
    "instrument",
    "process_labels",
    "process_registry",
]
