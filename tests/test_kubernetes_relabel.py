"""The relabelling of deploy/kubernetes on a real Prometheus: Debian's Prometheus has no
Kubernetes discovery, so file_sd targets carry the __meta_kubernetes_pod_* labels a pod would
have, against real prefork workers: the bundled Prometheus's kubernetes_sd rules, and the
prometheus-operator overlay's PodMonitor as the operator renders it (per-process and one-port)."""

from __future__ import annotations

import copy
import json
import re
import secrets
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    StartWorker,
    exporter_addresses,
    prometheus_query,
    require_binary,
    start_prometheus,
)
from test_kubernetes import (
    KUSTOMIZATION,
    NAMESPACE,
    Manifests,
    argv,
    kubernetes_config,
    kustomize,
    of_kind,
    pod_spec,
    with_file_sd,
    workers,
    write_prometheus_dir,
)
from test_kubernetes_operator import OVERLAY, monitors

from membench import settings
from membench.exporter import names
from membench.exporter.options import ONE_PORT
from membench.processes import free_port, stop, wait_for
from membench.run.worker import WorkerProcess
from membench.targets import read_targets
from membench.workers.scenarios import SCENARIOS


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return kustomize(KUSTOMIZATION)


@pytest.fixture(scope="module")
def operator() -> Manifests:
    return kustomize(OVERLAY)


# --- the relabelling on a real Prometheus --------------------------------------------------

PORT_META = "__meta_kubernetes_pod_container_port_name"
PHASE_META = "__meta_kubernetes_pod_phase"
RSS_QUERY = f'{names.PROCESS_RSS_BYTES}{{job="membench-workers"}}'


def pod_name(deployment: dict[str, Any]) -> str:
    return f"{deployment['metadata']['name']}-5d8f7c9b6-x2k4q"


def meta_labels(deployment: dict[str, Any], port_name: str, address: str, phase: str) -> dict:
    """The labels Prometheus's pod discovery gives one container port of the Deployment's pod."""
    labels = {
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_pod_name": pod_name(deployment),
        "__meta_kubernetes_pod_ip": "10.244.1.7",
        "__meta_kubernetes_pod_node_name": "node-1",
        "__meta_kubernetes_pod_container_name": pod_spec(deployment)["containers"][0]["name"],
        "__meta_kubernetes_pod_container_port_number": address.rpartition(":")[2],
        PORT_META: port_name,
        PHASE_META: phase,
    }
    for key, value in deployment["spec"]["template"]["metadata"]["labels"].items():
        safe = re.sub(r"[^a-zA-Z0-9_]", "_", key)
        labels[f"__meta_kubernetes_pod_label_{safe}"] = value
        labels[f"__meta_kubernetes_pod_labelpresent_{safe}"] = "true"
    return labels


def api_targets(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as reply:
        return json.loads(reply.read())["data"]


def file_sd_prometheus_dir(
    directory: Path, manifests: Manifests, pods: dict[str, list[tuple[Any, ...]]]
) -> Path:
    """The pod's config for the jobs of `pods`, on file_sd, scraping every second; each job's
    targets file holds (deployment, port name, address, phase) as pod discovery labels them."""
    config = with_file_sd(kubernetes_config(manifests), interval="1s")
    config["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s"}
    config["scrape_configs"] = [j for j in config["scrape_configs"] if j["job_name"] in pods]
    path = write_prometheus_dir(directory, manifests, config)
    (path.parent / "targets").mkdir()
    for job, entries in pods.items():
        groups = [{"targets": [entry[2]], "labels": meta_labels(*entry)} for entry in entries]
        (path.parent / "targets" / f"{job}.json").write_text(json.dumps(groups))
    return path


def label_sets(labels: list[dict[str, str]]) -> list[frozenset[tuple[str, str]]]:
    return sorted((frozenset(item.items()) for item in labels), key=sorted)


@pytest.mark.slow
def test_relabelling_yields_the_file_sd_labels_on_a_real_prometheus(
    manifests: Manifests, start_worker: StartWorker, tmp_path: Path
) -> None:
    """The built relabel rules, on the labels pod discovery gives a prefork pod's ports, against
    a real `membench worker prefork_threads --concurrency 2`: exactly the file_sd labels."""
    binary = require_binary("prometheus")
    worker = start_worker("prefork_threads", concurrency=2)
    (main,) = exporter_addresses(worker)[names.ROLE_MAIN]
    targets = read_targets(worker.targets_dir)  # port metrics-child-<i>: the child of index i
    children = {e["labels"]["child"]: e["targets"][0] for e in targets if e["labels"]["child"]}
    assert sorted(children) == ["0", "1"]
    pod = workers(manifests)["prefork_threads"]
    loadgen = of_kind(manifests, "Deployment")["loadgen"]
    kept = [(pod, "metrics-main", main, "Running")]
    kept += [(pod, f"metrics-child-{i}", children[str(i)], "Running") for i in range(2)]
    # Not worker targets: a port not named metrics-*, a finished pod, a loadgen pod.
    dropped = [(pod, "http", main, "Running"), (pod, "metrics-main", main, "Failed")]
    dropped.append((loadgen, "metrics", main, "Running"))
    pods = {"membench-workers": kept + dropped, "membench-loadgen": dropped[-1:]}
    scenario = SCENARIOS["prefork_threads"]
    identity = {"scenario": scenario.name, "pool": scenario.pool, "strategy": scenario.strategy}
    want = [
        {"job": "membench-workers", "instance": f"{pod_name(pod)}:{address.rpartition(':')[2]}"}
        | identity
        | {"role": names.ROLE_MAIN if name == "metrics-main" else names.ROLE_CHILD}
        | ({} if name == "metrics-main" else {"child": name.rpartition("-")[2]})
        for _, name, address, _ in kept
    ]
    loadgen_instance = f"{pod_name(loadgen)}:{main.rpartition(':')[2]}"
    config = file_sd_prometheus_dir(tmp_path / "prometheus", manifests, pods)
    port = free_port()
    proc = start_prometheus(binary, config, tmp_path / "data", port, tmp_path / "prom.log")
    try:

        def all_up() -> list[dict[str, str]] | None:
            active = api_targets(port)["activeTargets"]
            healthy = [t["labels"] for t in active if t["health"] == "up"]
            return healthy if len(healthy) == len(active) == len(kept) + 1 else None

        active = wait_for(all_up, 60, interval=0.5, what="Prometheus scraping every exporter")
        loadgen_target = {"job": "membench-loadgen", "instance": loadgen_instance}
        assert label_sets(active) == label_sets([*want, loadgen_target])
        gone = [t["discoveredLabels"] for t in api_targets(port)["droppedTargets"]]
        assert sorted((t["job"], t[PORT_META], t[PHASE_META]) for t in gone) == sorted(
            ("membench-workers", name, phase) for _, name, _, phase in dropped
        )
        # honor_labels: each series carries its target's labels, no exported_* copies.
        series = wait_for(lambda: prometheus_query(port, RSS_QUERY), 30, what=RSS_QUERY)
        got = [{k: v for k, v in s["metric"].items() if k != "__name__"} for s in series]
        assert label_sets(got) == label_sets(want)
    finally:
        stop(proc)


# --- the PodMonitors' relabelling on a real Prometheus ----------------------------------------


def operator_scrape_configs(monitor: dict[str, Any]) -> list[dict[str, Any]]:
    """The scrape jobs prometheus-operator renders for a PodMonitor (its relabelling of
    pkg/prometheus/promcfg.go for PodMonitors: the selector, running pods, the endpoint's port,
    namespace/container/pod/endpoint target labels, job <namespace>/<name>, then the
    PodMonitor's own relabelings), on file_sd targets the test writes for each endpoint."""
    name = monitor["metadata"]["name"]
    jobs = []
    for index, endpoint in enumerate(monitor["spec"]["podMetricsEndpoints"]):
        relabel: list[dict[str, Any]] = [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}
        ]
        for key, value in monitor["spec"]["selector"]["matchLabels"].items():
            safe = key.replace(".", "_").replace("/", "_").replace("-", "_")
            relabel.append(
                {
                    "action": "keep",
                    "source_labels": [
                        f"__meta_kubernetes_pod_label_{safe}",
                        f"__meta_kubernetes_pod_labelpresent_{safe}",
                    ],
                    "regex": f"({value});true",
                }
            )
        relabel += [
            {
                "action": "drop",
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "(Failed|Succeeded)",
            },
            {"action": "keep", "source_labels": [PORT_META], "regex": endpoint["port"]},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{NAMESPACE}/{name}"},
            {"target_label": "endpoint", "replacement": endpoint["port"]},
        ]
        for rule in endpoint["relabelings"]:
            relabel.append({_snake(key): value for key, value in rule.items()})
        jobs.append(
            {
                "job_name": f"podMonitor/{NAMESPACE}/{name}/{index}",
                "honor_labels": endpoint.get("honorLabels", False),
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "file_sd_configs": [{"files": ["targets/*.json"], "refresh_interval": "1s"}],
                "relabel_configs": relabel,
            }
        )
    return jobs


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def start_one_port_worker(redis_url: str, workdir: Path) -> WorkerProcess:
    """`membench worker prefork_threads --concurrency 2` in one-port mode: the main process
    serves every child's series; the children bind no port."""
    scenario = SCENARIOS["prefork_threads"]
    extra = {settings.METRICS_MODE: ONE_PORT}
    worker = WorkerProcess(scenario, 2, redis_url, workdir, secrets.token_hex(4), extra_env=extra)
    worker.start()
    try:
        wait_for(lambda: exporter_addresses(worker).get(names.ROLE_MAIN), 60, what="one port")
    except BaseException:
        worker.stop()
        raise
    return worker


@pytest.mark.slow
def test_podmonitor_relabelling_yields_the_file_sd_labels_on_a_real_prometheus(
    operator: Manifests, start_worker: Any, redis_url: str, tmp_path: Path
) -> None:
    """The membench-workers PodMonitor as the operator renders it, on the labels pod discovery
    gives two prefork pods (`--concurrency 2`): one per-process, one in one-port mode. Every
    process of both is a series with the file_sd labels, plus the operator's namespace,
    container, pod and endpoint; the job keeps its name, so the rules work unchanged."""
    binary = require_binary("prometheus")
    per_process = start_worker("prefork_threads", concurrency=2)
    one_port = start_one_port_worker(redis_url, tmp_path)
    try:
        (main,) = exporter_addresses(per_process)[names.ROLE_MAIN]
        entries = read_targets(per_process.targets_dir)
        children = {e["labels"]["child"]: e["targets"][0] for e in entries if e["labels"]["child"]}
        (one,) = exporter_addresses(one_port)[names.ROLE_MAIN]
        deployment = workers(operator)["prefork_threads"]
        other = copy.deepcopy(deployment)
        other["metadata"]["name"] = "worker-one-port"
        groups = [(deployment, "metrics-main", main), (other, "metrics-main", one)]
        groups += [(deployment, f"metrics-child-{i}", children[str(i)]) for i in range(2)]
        directory = tmp_path / "prometheus"
        (directory / "targets").mkdir(parents=True)
        targets = [
            {"targets": [address], "labels": meta_labels(d, port, address, "Running")}
            for d, port, address in groups
        ]
        (directory / "targets" / "pods.json").write_text(json.dumps(targets))
        monitor = monitors(operator)["membench-workers"]
        config = {"global": {"scrape_interval": "1s"}}
        config["scrape_configs"] = operator_scrape_configs(monitor)
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        proc = start_prometheus(
            binary, directory / "prometheus.yml", tmp_path / "data", port, tmp_path / "prom.log"
        )
        try:
            query = f'{names.PROCESS_RSS_BYTES}{{job="membench-workers"}}'

            def every_process() -> list[dict[str, Any]] | None:
                found = prometheus_query(port, query)
                return found if len(found) == 6 else None

            series = wait_for(every_process, 60, interval=0.5, what="6 processes' series")
            active = [t for t in api_targets(port)["activeTargets"] if t["health"] == "up"]
            assert len(active) == 4
        finally:
            stop(proc)
    finally:
        one_port.stop()
    scenario = SCENARIOS["prefork_threads"]
    identity = {"scenario": scenario.name, "pool": scenario.pool, "strategy": scenario.strategy}
    operator_labels = {"namespace": NAMESPACE, "container": "worker"}
    want = []
    for pod, address, processes in (
        (pod_name(deployment), main, None),
        (pod_name(other), one, ["0", "1"]),
    ):
        instance = f"{pod}:{address.rpartition(':')[2]}"
        base = {
            "job": "membench-workers",
            "pod": pod,
            "endpoint": "metrics-main",
            "instance": instance,
        }
        want.append(base | operator_labels | identity | {"role": names.ROLE_MAIN})
        for child in processes or []:  # one port: the main process serves its children
            want.append(
                base | operator_labels | identity | {"role": names.ROLE_CHILD, "child": child}
            )
    for index in range(2):
        address = children[str(index)]
        instance = f"{pod_name(deployment)}:{address.rpartition(':')[2]}"
        endpoint = f"metrics-child-{index}"
        labels = {"job": "membench-workers", "pod": pod_name(deployment), "endpoint": endpoint}
        labels |= {"instance": instance, "role": names.ROLE_CHILD, "child": str(index)}
        want.append(labels | operator_labels | identity)
    got = [{k: v for k, v in s["metric"].items() if k != "__name__"} for s in series]
    assert label_sets(got) == label_sets(want)
    assert argv(pod_spec(deployment)["containers"][0])[:3] == ["membench", "worker", scenario.name]
