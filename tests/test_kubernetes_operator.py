"""deploy/kubernetes/overlays/prometheus-operator offline: the build, every core object against
Kubernetes' schemas and every PodMonitor and PrometheusRule against prometheus-operator's CRD
schemas (vendored in tests/fixtures/prometheus-operator-crds), generated files that match their
sources, what the PodMonitors cover and the monitoring namespace the user names. Their
relabelling on a real Prometheus: test_kubernetes_relabel.py."""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from helpers import REPO
from test_kubernetes import (
    KUSTOMIZATION,
    NAMESPACE,
    Manifests,
    assert_recommended_labels,
    kustomize,
    of_kind,
    pod_spec,
    workers,
)

OVERLAY = KUSTOMIZATION / "overlays" / "prometheus-operator"
CRDS = REPO / "tests" / "fixtures" / "prometheus-operator-crds"
CRD_FILES = {
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}
OPERATOR_GROUP = "monitoring.coreos.com"
# What kube-prometheus-stack calls its namespace, and another one a user may name.
MONITORING, OTHER_NAMESPACE = "monitoring", "observability"
EXPORTER_POLICIES = (
    "worker-metrics-from-prometheus",
    "loadgen-metrics-from-prometheus",
    "flower-from-prometheus",
)
BUNDLED = {"prometheus", "alertmanager"}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", KUSTOMIZATION / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _generator()


@pytest.fixture(scope="module")
def operator() -> Manifests:
    return kustomize(OVERLAY)


@pytest.fixture(scope="module")
def base() -> Manifests:
    return kustomize(KUSTOMIZATION)


# --- build, labels, schemas ----------------------------------------------------------------


def test_the_overlay_swaps_the_bundled_monitoring_for_the_operators(
    operator: Manifests, base: Manifests
) -> None:
    kinds = {obj["kind"] for obj in operator}
    assert {"PodMonitor", "PrometheusRule"} <= kinds
    assert not [o for o in operator if o["kind"] in ("ConfigMap", "Role", "ServiceAccount")]
    for kind in ("Deployment", "Service"):
        assert set(of_kind(base, kind)) - set(of_kind(operator, kind)) == BUNDLED & set(
            of_kind(base, kind)
        ), kind
    assert set(workers(operator)) == set(workers(base))
    for obj in operator:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    assert_recommended_labels(operator)


def test_core_objects_pass_kubernetes_validate_strict(operator: Manifests) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    failures = []
    for obj in operator:
        if obj["apiVersion"].startswith(OPERATOR_GROUP):
            continue
        try:
            kubernetes_validate.validate(obj, latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)


def strict(schema: Any) -> Any:
    """The CRD schema as the API server applies it with strict field validation (kubectl's
    default since 1.27): a field the schema does not declare is an error, not pruned."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and pattern.startswith("^(?i)"):
            # The API server's RE2 takes a flag after ^; Python's re wants it first.
            schema["pattern"] = "(?i)^" + pattern[len("^(?i)") :]
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((CRDS / CRD_FILES[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(served["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def crd_errors(obj: dict[str, Any]) -> list[str]:
    errors = crd_validator(obj["kind"]).iter_errors(obj)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_the_vendored_crds_say_which_operator_they_come_from() -> None:
    for kind, name in CRD_FILES.items():
        crd = yaml.safe_load((CRDS / name).read_text())
        version = crd["metadata"]["annotations"]["operator.prometheus.io/version"]
        assert version.count(".") == 2, kind
        assert f"prometheus-operator v{version}" in (CRDS / name).read_text(), kind


def test_podmonitors_and_prometheusrule_validate_against_the_operators_crds(
    operator: Manifests,
) -> None:
    custom = [obj for obj in operator if obj["apiVersion"].startswith(OPERATOR_GROUP)]
    assert sorted(obj["kind"] for obj in custom) == ["PodMonitor"] * 3 + ["PrometheusRule"]
    for obj in custom:
        assert obj["apiVersion"] == f"{OPERATOR_GROUP}/v1"
        assert crd_errors(obj) == [], obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("kind", "path", "value", "says"),
    [
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0, "honourLabels"), True, "honourLabels"),
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0, "interval"), "5 seconds", "match"),
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0, "relabelings", 0, "action"), "keepp", ""),
        ("PrometheusRule", ("spec", "groups", 0, "rules", 0, "for"), "an hour", "match"),
        ("PrometheusRule", ("spec", "groups", 0, "rules", 0, "expr"), None, "None"),
    ],
)
def test_the_crd_check_catches_a_wrong_field(
    operator: Manifests, kind: str, path: tuple[Any, ...], value: Any, says: str
) -> None:
    obj = copy.deepcopy(next(o for o in operator if o["kind"] == kind))
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = crd_errors(obj)
    assert errors and says in " ".join(errors), errors


# --- generated, never copied ---------------------------------------------------------------


def test_generated_files_match_their_sources() -> None:
    """The rules copy, the PrometheusRule and the PodMonitors equal a fresh generation."""
    stale = [str(path.relative_to(KUSTOMIZATION)) for path in generate.stale()]
    assert stale == [], "stale: run python deploy/kubernetes/generate.py"
    assert generate.main(["--check"]) == 0


def test_the_prometheusrule_holds_every_rule_group_of_the_repository(operator: Manifests) -> None:
    (rule,) = [obj for obj in operator if obj["kind"] == "PrometheusRule"]
    groups = []
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    assert rule["spec"]["groups"] == groups


def test_the_generator_follows_a_changed_rule_file(tmp_path: Path) -> None:
    """Generated from the files as they are: a new group shows up, nothing is hand-kept."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "prometheus" / "rules", rules)
    extra = {"groups": [{"name": "extra", "rules": [{"record": "x:y:z", "expr": "vector(1)"}]}]}
    (rules / "zz-extra.yml").write_text(yaml.safe_dump(extra))
    (rule,) = yaml.safe_load_all(generate.prometheus_rule(rules))
    assert rule["spec"]["groups"][-1] == extra["groups"][0]


# --- what the PodMonitors cover --------------------------------------------------------------


def monitors(operator: Manifests) -> dict[str, dict[str, Any]]:
    return of_kind(operator, "PodMonitor")


def selects(monitor: dict[str, Any], deployment: dict[str, Any]) -> bool:
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    return wanted <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_podmonitors_cover_every_exporter_port_and_nothing_else(operator: Manifests) -> None:
    pods = of_kind(operator, "Deployment")
    by_job = monitors(operator)
    assert set(by_job) == {"membench-workers", "membench-loadgen", "flower"}
    for job, monitor in by_job.items():
        ports = [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]]
        assert len(ports) == len(set(ports)), job
        selected = [name for name, d in pods.items() if selects(monitor, d)]
        assert selected, job
        for name in selected:
            declared = {p["name"] for c in pod_spec(pods[name])["containers"] for p in c["ports"]}
            exporters = {p for p in declared if p.startswith("metrics") or job == "flower"}
            assert exporters <= set(ports), (job, name)
    worker_ports = [e["port"] for e in by_job["membench-workers"]["spec"]["podMetricsEndpoints"]]
    children = [f"metrics-child-{i}" for i in range(generate.MAX_CHILDREN)]
    assert worker_ports == ["metrics-main", *children], "every child a pod may declare"
    assert sorted(n for n, d in pods.items() if selects(by_job["membench-workers"], d)) == sorted(
        d["metadata"]["name"] for d in workers(operator).values()
    )


def test_podmonitors_relabel_as_the_bundled_prometheus_does(operator: Manifests) -> None:
    config = yaml.safe_load((generate.CONFIG).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, monitor in monitors(operator).items():
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint.get("honorLabels", False) == jobs[job].get("honor_labels", False)
            assert endpoint["relabelings"][0] == {"targetLabel": "job", "replacement": job}
            ours = [r for r in jobs[job]["relabel_configs"] if r.get("action") != "keep"]
            ours = [r for r in ours if generate.PHASE not in r.get("source_labels", [])]
            camel = [{generate.camel_case(k): v for k, v in r.items()} for r in ours]
            assert endpoint["relabelings"][1:] == camel, job


# --- the monitoring namespace the user names -------------------------------------------------


def admitted_namespaces(manifests: Manifests) -> dict[str, set[str]]:
    policies = of_kind(manifests, "NetworkPolicy")
    found = {}
    for name in EXPORTER_POLICIES:
        (rule,) = policies[name]["spec"]["ingress"]
        (peer,) = rule["from"]
        assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
        found[name] = set(peer["namespaceSelector"]["matchLabels"].values())
    return found


def test_exporters_admit_the_monitoring_namespaces_prometheus(operator: Manifests) -> None:
    assert admitted_namespaces(operator) == {name: {MONITORING} for name in EXPORTER_POLICIES}
    policies = of_kind(operator, "NetworkPolicy")
    assert "default-deny-ingress" in policies
    for name in EXPORTER_POLICIES:
        selector = policies[name]["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
        assert list(selector["matchLabels"]) == ["kubernetes.io/metadata.name"]


def test_a_named_monitoring_namespace_reaches_every_policy(tmp_path: Path) -> None:
    """The documented way: a copy of the overlay with its one value changed."""
    overlay = tmp_path / "overlay"
    shutil.copytree(OVERLAY, overlay)
    kustomization = overlay / "kustomization.yaml"
    text = kustomization.read_text()
    for relative in ("../../base", "../../components/prometheus-operator"):
        # kustomize takes no absolute path: the copy reaches the repository by a relative one.
        text = text.replace(relative, os.path.relpath((OVERLAY / relative).resolve(), overlay))
    kustomization.write_text(text)
    value = overlay / "monitoring-namespace.yaml"
    value.write_text(
        value.read_text().replace(f"namespace: {MONITORING}", f"namespace: {OTHER_NAMESPACE}")
    )
    built = kustomize(overlay)
    assert admitted_namespaces(built) == {name: {OTHER_NAMESPACE} for name in EXPORTER_POLICIES}
    assert "monitoring-namespace" not in of_kind(built, "ConfigMap"), "local-config: not applied"
