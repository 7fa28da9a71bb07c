"""What `membench run --app` is asked to run, checked before any process starts: the app imports
and is a Celery app, the task is registered, its arguments are JSON and bind to its signature,
the pools and concurrencies are known. Each failure is an AppSpecError naming its flag."""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POOLS = ("prefork", "gevent", "threads", "solo")
MAX_TASKS = 1_000_000
MAX_TASK_TIMEOUT_S = 24 * 3600.0


class AppSpecError(ValueError):
    """Bad input: `flag` and a one-line message."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {' '.join(message.split())}")
        self.flag = flag


@dataclass(frozen=True, slots=True)
class AppSpec:
    """The user's task, resolved: where its app lives and what each run is sent."""

    app: str  # MODULE:ATTRIBUTE
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    module_file: str | None
    module_sha256: str | None


def _json(flag: str, text: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise AppSpecError(flag, f"not JSON: {exc}") from None
    if not isinstance(value, kind):
        want = "a JSON array" if kind is list else "a JSON object"
        raise AppSpecError(flag, f"must be {want}, got {type(value).__name__}")
    return value


def load_celery_app(spec: str) -> Any:
    """Import MODULE and return ATTRIBUTE, which must be a Celery app."""
    from celery import Celery

    from membench.run.app.launcher import load_app

    module, colon, attribute = spec.partition(":")
    if not colon or not module or not attribute:
        raise AppSpecError("--app", f"must be MODULE:ATTRIBUTE, got {spec!r}")
    if module.partition(".")[0] in sys.stdlib_module_names:
        raise AppSpecError("--app", f"{module} is the standard library, not your app")
    try:
        app = load_app(spec)
    except AttributeError:
        raise AppSpecError("--app", f"module {module!r} has no attribute {attribute!r}") from None
    except (Exception, SystemExit) as exc:  # any failure importing user code is the flag's
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise AppSpecError("--app", f"module {module!r} does not import: {detail}") from None
    if not isinstance(app, Celery):
        raise AppSpecError("--app", f"{spec} is a {type(app).__name__}, not a Celery app")
    return app


def resolve(app_spec: str, task: str, args_json: str, kwargs_json: str) -> AppSpec:
    """The checked spec; raises AppSpecError naming --app, --task, --args or --kwargs."""
    app = load_celery_app(app_spec)
    args = _json("--args", args_json, list)
    kwargs = _json("--kwargs", kwargs_json, dict)
    try:
        app.loader.import_default_modules()  # the app's `include`/`imports`, as a worker does
        registered = app.tasks
    except (Exception, SystemExit) as exc:
        raise AppSpecError("--app", f"the app's task modules do not import: {exc}") from None
    if task not in registered:
        own = sorted(n for n in registered if not n.startswith("celery."))
        shown = ", ".join(own[:10]) + (", ..." if len(own) > 10 else "")
        raise AppSpecError("--task", f"{task!r} is not registered in {app_spec} ({shown})")
    try:
        inspect.signature(registered[task].run).bind(*args, **kwargs)
    except TypeError as exc:
        raise AppSpecError(
            "--kwargs" if kwargs and not args else "--args",
            f"do not fit {task}{_signature(registered[task])}: {exc}",
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin): the worker will say
    module = sys.modules.get(app_spec.partition(":")[0])
    path = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    return AppSpec(app_spec, task, args, kwargs, path, digest)


def _signature(task: Any) -> str:
    try:
        return str(inspect.signature(task.run))
    except (TypeError, ValueError):
        return "(...)"


def parse_pools(text: str) -> list[str]:
    """A comma list of pools, each once, in the order given."""
    pools: list[str] = []
    for name in (p.strip() for p in text.split(",")):
        if name not in POOLS:
            raise AppSpecError("--pools", f"unknown pool {name!r} (choose from {', '.join(POOLS)})")
        if name not in pools:
            pools.append(name)
    return pools


def parse_concurrencies(text: str, high: int) -> list[int]:
    """A comma list of concurrencies, each 1..high, ascending, each once."""
    values: set[int] = set()
    for part in (p.strip() for p in str(text).split(",")):
        try:
            value = int(part)
        except ValueError:
            raise AppSpecError("--concurrency", f"not a whole number: {part!r}") from None
        if not 1 <= value <= high:
            raise AppSpecError("--concurrency", f"must be between 1 and {high}, got {value}")
        values.add(value)
    return sorted(values)
