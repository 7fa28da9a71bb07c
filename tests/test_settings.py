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
    (settings.broker_url, settings.CELERY_BROKER_URL, "redis://c:6380/1", "redis://c:6380/1", None),
    (
        settings.broker_url_source,
        settings.BROKER_URL,
        "redis://r:6380/1",
        settings.BROKER_URL,
        None,
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
IDS = [f"{reader.__name__}-{name}" for reader, name, *_ in READERS]


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
    for other in settings.BROKER_URL_VARIABLES:
        monkeypatch.delenv(other, raising=False)
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
    """Celery's own CELERY_BROKER_URL aside; OPTION_PREFIX leads the commands' option names."""
    names = [
        v
        for k, v in vars(settings).items()
        if k.isupper() and isinstance(v, str) and not k.startswith(("DEFAULT_", "OPTION_"))
    ]
    names.remove(settings.CELERY_BROKER_URL)
    assert all(name.startswith("MEMBENCH_") for name in names), names
    assert len(names) == len(set(names))
    assert {name for _, name, *_ in READERS} <= {*names, settings.CELERY_BROKER_URL}


def test_membench_broker_url_comes_before_celerys() -> None:
    both = {settings.BROKER_URL: "redis://m:1/0", settings.CELERY_BROKER_URL: "redis://c:1/0"}
    assert settings.broker_url(both) == "redis://m:1/0"
    assert settings.broker_url_source(both) == settings.BROKER_URL
    # An empty MEMBENCH_BROKER_URL (compose's `${VAR:-}`) is unset: Celery's is read.
    empty = both | {settings.BROKER_URL: ""}
    assert settings.broker_url(empty) == "redis://c:1/0"
    assert settings.broker_url_source(empty) == settings.CELERY_BROKER_URL
    assert settings.broker_url_or_default({}) == settings.DEFAULT_BROKER_URL


# Default ports of well-known servers and of the Prometheus ecosystem outside 9100-9999 that a
# Celery host may run: Redis, Flower, Grafana, Prometheus, Pushgateway, Alertmanager (and its
# cluster port), Elasticsearch (HTTP and transport), Kafka, RabbitMQ (AMQP, management,
# Prometheus plugin), Consul, etcd.
WELL_KNOWN = {6379, 5555, 3000, 9090, 9091, 9093, 9094, 9200, 9300, 9092, 5672, 15672, 15692}
WELL_KNOWN |= {8500, 2379, 2380}


def test_default_ports_collide_with_no_exporter_or_well_known_server() -> None:
    """The Prometheus default port allocations give exporters 9100-9999, now all taken."""
    from membench.cli.options import MAX_CONCURRENCY

    worker = range(settings.DEFAULT_METRICS_PORT, settings.DEFAULT_METRICS_PORT + 11)
    everything = [*worker, settings.DEFAULT_LOADGEN_METRICS_PORT]
    assert not [port for port in everything if 9100 <= port <= 9999 or port in WELL_KNOWN]
    # The load generator is clear of every prefork child port a worker may use.
    last_child = settings.DEFAULT_METRICS_PORT + MAX_CONCURRENCY
    assert not settings.DEFAULT_METRICS_PORT <= settings.DEFAULT_LOADGEN_METRICS_PORT <= last_child


def test_compose_uses_the_default_ports() -> None:
    import test_compose as compose

    for name, argv in compose.compose_python_commands().items():
        if argv[:2] == ["membench", "worker"]:
            assert compose.option(argv, "--metrics-port") == str(settings.DEFAULT_METRICS_PORT)
        elif argv[:2] == ["membench", "loadgen"]:
            port = str(settings.DEFAULT_LOADGEN_METRICS_PORT)
            assert compose.option(argv, "--metrics-port") == port, name
