"""results.json's shipped JSON Schema: generated from the typed model, and what membench writes
validates against it with a schema library (jsonschema), as any other tool would check it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from membench.results.document import SCHEMA_FILE, main, plain, schema_text
from membench.results.model import SCHEMA_VERSION, AppRun, RunResult, Timeline
from membench.run.app.report import app_results_document
from membench.run.app.runner import AppPlan
from membench.run.app.spec import AppSpec
from membench.run.records import RunConfig, ScenarioResult
from membench.run.report import results_document
from membench.units import MIB
from membench.workers.scenarios import SCENARIOS


def validate(document: Any) -> None:
    """Raises jsonschema.ValidationError unless `document` is a valid results.json."""
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


def test_the_shipped_schema_is_the_models() -> None:
    assert SCHEMA_FILE.read_text() == schema_text()
    assert main(["--check"]) == 0


def benchmark_document() -> dict[str, Any]:
    scenario = SCENARIOS["gevent_greenlets"]
    config = RunConfig([scenario], 8, 5.0, 0.2, 4, 1, 1, "bytes")
    result = ScenarioResult(scenario, scenario.approach(8, 5.0))
    result.runs.append(
        RunResult(
            scenario.name,
            1,
            peak_rss_bytes=90 * MIB,
            duration_s=0.4,
            timeline=Timeline([0.0, 0.1], [80 * MIB, 90 * MIB], [70 * MIB, 75 * MIB]),
        )
    )
    result.runs.append(RunResult(scenario.name, 2, status="failed", reason="worker died"))
    document = results_document(
        config,
        [result],
        broker="embedded",
        command=["membench", "run"],
        started_at=0.0,
        complete=True,
    )
    return plain(document)


def app_document() -> dict[str, Any]:
    plan = AppPlan(
        AppSpec("tasks:app", "tasks.hold", [1, {"a": None}], {}, None, None), ["gevent"], [4], 8, 60
    )
    rows = [
        AppRun("solo-c1", "solo", 1, peak_pss_bytes=60 * MIB, throughput_per_s=2.0),
        AppRun("gevent-c4", "gevent", 4, status="refused", reason="over 80% of MemAvailable"),
    ]
    document = app_results_document(
        plan, rows, broker="embedded", command=["membench", "run"], started_at=0.0, complete=False
    )
    return plain(document)


@pytest.mark.parametrize("make", [benchmark_document, app_document], ids=["benchmark", "app"])
def test_what_membench_writes_validates(make: Any) -> None:
    document = make()
    assert document["schema_version"] == SCHEMA_VERSION
    validate(document)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d.pop("mode"), "mode"),
        (lambda d: d.update(mode="matrix"), "mode"),
        (lambda d: d["scenarios"][0]["runs"][0].update(peak_rss_bytes="90"), "peak_rss_bytes"),
        (lambda d: d["scenarios"][0]["runs"][0].update(status="timeout"), "status"),
        (lambda d: d["scenarios"][0]["summary"].update(duration_s={"median": 1}), "duration_s"),
        (lambda d: d["parameters"].pop("subtasks"), "subtasks"),
    ],
    ids=["no-mode", "unknown-mode", "peak-string", "status", "figure", "parameter"],
)
def test_the_schema_refuses_what_the_reader_refuses(change: Any, path: str) -> None:
    from membench.results.document import BadResults, results_from

    document = benchmark_document()
    change(document)
    with pytest.raises(jsonschema.ValidationError):
        validate(document)
    with pytest.raises(BadResults, match=path):
        results_from(document)
