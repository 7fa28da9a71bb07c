"""membench/settings.py: every MEMBENCH_* reader, on an explicit environment mapping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from membench import settings

# (reader, variable, a set value, what the reader returns for it, what it returns unset)
READERS: list[tuple[Callable[..., Any], str, str, Any, Any]] = [
    (settings.broker_url, settings.BROKER_URL, "redis://r:6380/1", "redis://r:6380/1", None),
    (
        settings.broker_url_or_default,
        settings.BROKER_URL,
        "redis://r:6380/1",
        "redis://r:6380/1",
        settings.DEFAULT_BROKER_URL,
    ),
    (settings.targets_dir, settings.TARGETS_DIR, "/t/targets", Path("/t/targets"), None),
    (
        settings.metrics_host,
        settings.METRICS_HOST,
        "0.0.0.0",
        "0.0.0.0",
        settings.DEFAULT_METRICS_HOST,
    ),
    (settings.metrics_port, settings.METRICS_PORT, "9101", 9101, 0),
    (settings.advertise_host, settings.ADVERTISE_HOST, "worker-1", "worker-1", None),
    (settings.scenario, settings.SCENARIO, "gevent_threads", "gevent_threads", "unknown"),
    (settings.ready_file, settings.READY_FILE, "/t/ready", Path("/t/ready"), None),
    (settings.exporter_enabled, settings.EXPORTER, "off", False, True),
    (settings.grafana_url, settings.GRAFANA_URL, "http://g:3000", "http://g:3000", None),
    (settings.grafana_token, settings.GRAFANA_TOKEN, "tok", "tok", None),
]
IDS = [reader.__name__ for reader, *_ in READERS]


@pytest.mark.parametrize(("reader", "name", "value", "expected", "unset"), READERS, ids=IDS)
def test_a_set_variable_is_read(
    reader: Callable[..., Any], name: str, value: str, expected: Any, unset: Any
) -> None:
    assert reader({name: value}) == expected
    assert expected != unset  # the case tells set from unset apart


@pytest.mark.parametrize(("reader", "name", "value", "expected", "unset"), READERS, ids=IDS)
def test_an_absent_variable_is_unset(
    reader: Callable[..., Any], name: str, value: str, expected: Any, unset: Any
) -> None:
    assert reader({}) == unset
    assert reader({f"{name}_OTHER": value, name.lower(): value}) == unset  # exact name only


@pytest.mark.parametrize(("reader", "name", "value", "expected", "unset"), READERS, ids=IDS)
def test_an_empty_variable_is_unset(
    reader: Callable[..., Any], name: str, value: str, expected: Any, unset: Any
) -> None:
    # Compose passes `VAR: ${VAR:-}` through as an empty string: it must mean "not set".
    assert reader({name: ""}) == unset


@pytest.mark.parametrize(("reader", "name", "value", "expected", "unset"), READERS, ids=IDS)
def test_an_explicit_mapping_ignores_the_process_environment(
    reader: Callable[..., Any],
    name: str,
    value: str,
    expected: Any,
    unset: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(name, value)
    assert reader({}) == unset
    assert reader() == expected  # no mapping: os.environ
    monkeypatch.delenv(name)
    assert reader() == unset


@pytest.mark.parametrize("value", ["off", "OFF", "Off"])
def test_the_exporter_is_off_only_when_told_so(value: str) -> None:
    assert settings.exporter_enabled({settings.EXPORTER: value}) is False


@pytest.mark.parametrize("value", ["on", "1", "no", "false", "0"])
def test_any_other_exporter_value_leaves_it_on(value: str) -> None:
    assert settings.exporter_enabled({settings.EXPORTER: value}) is True


def test_a_port_that_is_not_a_number_raises() -> None:
    with pytest.raises(ValueError):
        settings.metrics_port({settings.METRICS_PORT: "http"})


def test_every_variable_is_a_distinct_membench_name() -> None:
    names = [v for k, v in vars(settings).items() if k.isupper() and not k.startswith("DEFAULT_")]
    assert all(name.startswith("MEMBENCH_") for name in names), names
    assert len(names) == len(set(names))
    assert {name for _, name, *_ in READERS} <= set(names)
