"""deploy/kubernetes/ offline: the base's kustomize build, its schemas and labels, its Prometheus
config (promtool), and its agreement with docker-compose.yml and the repo. The prometheus-operator
overlay: test_kubernetes_operator.py; the relabelling on a real Prometheus:
test_kubernetes_relabel.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import test_compose as compose
import yaml
from helpers import (
    REPO,
    require_binary,
)

from membench.exporter.options import DEFAULT_PORT
from membench.run.worker import expected_exporters
from membench.workers.scenarios import SCENARIOS, SEED_SCENARIOS

KUSTOMIZATION = REPO / "deploy" / "kubernetes"
BASE = KUSTOMIZATION / "base"
NAMESPACE = "membench"
PROJECT_VERSION = "0.1.0"
# Kubernetes' recommended labels: every object carries all of them.
RECOMMENDED_LABELS = [
    f"app.kubernetes.io/{key}"
    for key in ("name", "instance", "version", "component", "part-of", "managed-by")
]
BROKER_URL = "redis://:$(REDIS_PASSWORD)@redis:6379/0"
# Kubernetes' IANA_SVC_NAME: what a container port's name may be.
PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")
# Debian builds Prometheus without Kubernetes discovery (NEWS.Debian, 1.5.0+ds-1).
NO_KUBERNETES_SD = "field kubernetes_sd_configs not found"
# The only kubernetes_sd_configs block the config may use: this namespace's pods.
POD_SD = {"role": "pod", "namespaces": {"own_namespace": True}}
# Every object of `kubectl kustomize deploy/kubernetes`.
Manifests = list[dict[str, Any]]


def kustomize(directory: Path) -> Manifests:
    """Every object of `kubectl kustomize directory`."""
    kubectl = require_binary("kubectl")
    built = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return kustomize(KUSTOMIZATION)


def of_kind(manifests: Manifests, kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in manifests if obj["kind"] == kind}


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def containers(manifests: Manifests) -> list[tuple[str, dict[str, Any]]]:
    deployments = of_kind(manifests, "Deployment").items()
    return [(name, c) for name, d in deployments for c in pod_spec(d)["containers"]]


def argv(container: dict[str, Any]) -> list[str]:
    return [str(arg) for arg in container.get("command", []) + container.get("args", [])]


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def workers(manifests: Manifests) -> dict[str, dict[str, Any]]:
    """Worker Deployments by the scenario they run."""
    deployments = of_kind(manifests, "Deployment")
    commands = [(name, argv(container)) for name, container in containers(manifests)]
    return {c[2]: deployments[name] for name, c in commands if c[:2] == ["membench", "worker"]}


def config_map(manifests: Manifests, volume: str) -> dict[str, str]:
    """The data of the ConfigMap the Prometheus pod mounts as `volume` (names carry a hash)."""
    volumes = pod_spec(of_kind(manifests, "Deployment")["prometheus"])["volumes"]
    (name,) = [v["configMap"]["name"] for v in volumes if v["name"] == volume]
    return of_kind(manifests, "ConfigMap")[name]["data"]


def kubernetes_config(manifests: Manifests) -> dict[str, Any]:
    return yaml.safe_load(config_map(manifests, "config")["prometheus.yml"])


def with_file_sd(config: dict[str, Any], interval: str = "5s") -> dict[str, Any]:
    """The config with each kubernetes_sd_configs replaced by file_sd of targets/<job>.json:
    the same relabel rules, run on targets whose __meta_kubernetes_* labels a test writes."""
    config = json.loads(json.dumps(config))
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            files = [f"targets/{job['job_name']}.json"]
            job["file_sd_configs"] = [{"files": files, "refresh_interval": interval}]
    return config


def write_prometheus_dir(directory: Path, manifests: Manifests, config: Any) -> Path:
    """config/prometheus.yml and rules/*.yml as the pod mounts them; the config's path."""
    (directory / "config").mkdir(parents=True)
    (directory / "rules").mkdir()
    for name, text in config_map(manifests, "rules").items():
        (directory / "rules" / name).write_text(text)
    path = directory / "config" / "prometheus.yml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


# --- build and schemas ---------------------------------------------------------------------


def test_kustomize_builds_the_whole_stack(manifests: Manifests) -> None:
    assert set(of_kind(manifests, "Namespace")) == {NAMESPACE}
    for obj in manifests:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    assert set(workers(manifests)) == set(SEED_SCENARIOS)
    apps = {"redis", "loadgen", "flower", "prometheus", "alertmanager"}
    assert apps <= set(of_kind(manifests, "Deployment"))
    assert not of_kind(manifests, "Secret"), "the user creates the Secret: none is committed"
    mounted = {name: text.encode() for name, text in config_map(manifests, "rules").items()}
    assert mounted == repo_rules(), "stale: run python deploy/kubernetes/generate.py"


@pytest.mark.parametrize("version", ["1.28.0", "latest"])
def test_every_object_passes_kubernetes_validate_strict(manifests: Manifests, version: str) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    version = latest_version() if version == "latest" else version
    failures = []
    for obj in manifests:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)


def assert_recommended_labels(manifests: Manifests) -> None:
    """Every object, and every pod template, carries the six app.kubernetes.io labels; the
    version of a Deployment's pods is its image's tag (ours: the project's version)."""
    for obj in manifests:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        labels = obj["metadata"].get("labels", {})
        assert [key for key in RECOMMENDED_LABELS if not labels.get(key)] == [], where
        assert labels["app.kubernetes.io/part-of"] == "celery-membench", where
        assert labels["app.kubernetes.io/managed-by"] == "kustomize", where
        assert labels["app.kubernetes.io/instance"] == NAMESPACE, where
        if obj["kind"] != "Deployment":
            continue
        pods = obj["spec"]["template"]["metadata"]["labels"]
        assert {k: pods.get(k) for k in RECOMMENDED_LABELS} == {
            k: labels[k] for k in RECOMMENDED_LABELS
        }, where
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pods.items(), where
        image = pod_spec(obj)["containers"][0]["image"]
        assert pods["app.kubernetes.io/version"] == image.rpartition(":")[2], where


def test_every_object_carries_the_recommended_labels(manifests: Manifests) -> None:
    assert_recommended_labels(manifests)
    project = {c["image"] for _, c in containers(manifests) if argv(c)[0] == "membench"}
    assert {image.rpartition(":")[2] for image in project} == {PROJECT_VERSION}
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'version = "{PROJECT_VERSION}"' in pyproject


def test_the_workers_are_one_template_patched_per_scenario(manifests: Manifests) -> None:
    """Four Deployments built from workers/template; each differs from the others only in
    what its scenario's patch sets: name, scenario labels, command and child ports."""
    template = yaml.safe_load((BASE / "workers" / "template" / "worker.yaml").read_text())
    built = workers(manifests)
    for name, deployment in built.items():
        scenario = SCENARIOS[name]
        assert deployment["metadata"]["name"] == f"worker-{name.replace('_', '-')}"
        ours, theirs = pod_spec(deployment), pod_spec(template)
        assert {k: v for k, v in ours.items() if k != "containers"} == {
            k: v for k, v in theirs.items() if k != "containers"
        }, name
        (container,), (original,) = ours["containers"], theirs["containers"]
        varied = {"command", "ports", "image"}
        assert {k: v for k, v in container.items() if k not in varied} == {
            k: v for k, v in original.items() if k not in varied
        }, name
        assert deployment["spec"]["selector"]["matchLabels"]["membench.io/scenario"] == name
        assert argv(container)[:3] == ["membench", "worker", scenario.name]
    directories = sorted(p.name for p in (BASE / "workers").iterdir() if p.name != "template")
    assert directories == sorted(name.replace("_", "-") for name in built)


def repo_rules() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (REPO / "prometheus" / "rules").glob("*.yml")}


def test_the_rules_copy_is_the_repository_rules_byte_for_byte() -> None:
    """kustomize reads no file outside its root: the base mounts a generated copy of the rules."""
    copy = {p.name: p.read_bytes() for p in (BASE / "prometheus" / "rules").glob("*.yml")}
    assert copy == repo_rules(), "stale: run python deploy/kubernetes/generate.py"


# --- the Prometheus config -----------------------------------------------------------------


def test_prometheus_config_passes_promtool(manifests: Manifests, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    config = with_file_sd(kubernetes_config(manifests))
    stand_in = write_prometheus_dir(tmp_path / "file_sd", manifests, config)
    checked = subprocess.run([promtool, "check", "config", str(stand_in)], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = f"SUCCESS: {len(repo_rules())} rule files found".encode()
    assert found in checked.stdout + checked.stderr
    text = config_map(manifests, "config")["prometheus.yml"]
    real = write_prometheus_dir(tmp_path / "kubernetes", manifests, text)
    checked = subprocess.run([promtool, "check", "config", str(real)], capture_output=True)
    # Where this promtool cannot parse the block at all, POD_SD is checked by the test below.
    if NO_KUBERNETES_SD not in (checked.stdout + checked.stderr).decode():
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_scrape_jobs_are_those_of_the_file_sd_config(manifests: Manifests) -> None:
    ours = kubernetes_config(manifests)
    theirs = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    assert ours["global"] == theirs["global"]
    jobs = {job["job_name"]: job for job in ours["scrape_configs"]}
    assert list(jobs) == [job["job_name"] for job in theirs["scrape_configs"]]
    for job in theirs["scrape_configs"]:
        assert jobs[job["job_name"]].get("honor_labels") == job.get("honor_labels")
    for name, job in jobs.items():
        if name == "prometheus":
            assert job["static_configs"] == [{"targets": ["localhost:9090"]}]
        else:
            assert job["kubernetes_sd_configs"] == [POD_SD], name


# --- what the pods run ---------------------------------------------------------------------


def selecting(component: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/component": component}}


def test_worker_pods_name_every_exporter_port(manifests: Manifests) -> None:
    policies = of_kind(manifests, "NetworkPolicy").values()
    (policy,) = [p for p in policies if p["spec"]["podSelector"] == selecting("worker")]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": selecting("prometheus")}], "Prometheus only"
    (allowed,) = rule["ports"]
    for name, deployment in workers(manifests).items():
        scenario = SCENARIOS[name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "worker"
        expected = {"scenario": name, "pool": scenario.pool, "strategy": scenario.strategy}
        assert {k: labels[f"membench.io/{k}"] for k in expected} == expected
        (container,) = pod_spec(deployment)["containers"]
        command = argv(container)
        assert compose.option(command, "--metrics-port") == str(DEFAULT_PORT)
        assert env(container)["MEMBENCH_METRICS_HOST"]["value"] == "0.0.0.0"
        concurrency = int(compose.option(command, "--concurrency") or 1)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        wanted = {"metrics-main": DEFAULT_PORT}
        children = expected_exporters(scenario, concurrency) - 1
        wanted |= {f"metrics-child-{i}": DEFAULT_PORT + 1 + i for i in range(children)}
        assert ports == wanted, name
        for port_name, number in ports.items():
            assert PORT_NAME.match(port_name), f"{name}: invalid port name {port_name}"
            assert allowed["port"] <= number <= allowed["endPort"], f"{name}: {port_name}"
        probe = container["livenessProbe"]["httpGet"]
        assert probe == {"path": "/", "port": "metrics-main"}, "no collection, no broker trip"
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_pods_run_non_root_with_memory_limits_and_no_service(manifests: Manifests) -> None:
    uid = int(re.search(r"--uid (\d+)", (REPO / "Dockerfile").read_text()).group(1))
    project_image = compose.services()["worker-prefork-threads"]["image"]
    for name, deployment in of_kind(manifests, "Deployment").items():
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["enableServiceLinks"] is False, f"{name}: FLOWER_PORT=tcp://... & co."
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            resources = container["resources"]
            assert resources["requests"]["memory"] and resources["limits"]["memory"], name
            if container["image"] == project_image:
                assert spec["securityContext"]["runAsUser"] == uid, name
    for name, service in of_kind(manifests, "Service").items():
        assert service["spec"]["type"] == "ClusterIP", name
        selected = service["spec"]["selector"]["app.kubernetes.io/name"]
        applications = {"redis", "flower", "prometheus", "alertmanager"}
        assert selected in applications, f"{name}: exporters get no Service"


def test_images_are_pinned_as_in_compose(manifests: Manifests) -> None:
    """Every image has a version tag; one compose runs too has compose's tag."""
    compose_images = dict(
        service["image"].rpartition(":")[::2] for service in compose.services().values()
    )
    for name, container in containers(manifests):
        repository, _, tag = container["image"].rpartition(":")
        assert re.fullmatch(r"v?\d+\.\d+\.\d+(-\w+)?", tag), container["image"]
        assert compose_images.get(repository, tag) == tag, f"{name}: not compose's {repository}"


def test_broker_url_and_passwords_come_from_the_users_secret(manifests: Manifests) -> None:
    for name, container in containers(manifests):
        variables = env(container)
        for key, item in variables.items():
            if compose.SECRET_KEY.search(key):
                assert "value" not in item, f"{name}: literal {key}"
                assert item["valueFrom"]["secretKeyRef"]["name"] == "membench", f"{name}: {key}"
        assert "--requirepass" not in argv(container), f"{name}: password on a command line"
        if argv(container)[0] in ("membench", "celery"):
            assert variables["MEMBENCH_BROKER_URL"]["value"] == BROKER_URL, name
            # $(VAR) expands only variables defined before it in the list.
            order = [item["name"] for item in container["env"]]
            assert order.index("REDIS_PASSWORD") < order.index("MEMBENCH_BROKER_URL"), name
    compose_url = compose.services()["loadgen"]["environment"]["MEMBENCH_BROKER_URL"]
    assert re.sub(r"\$\{REDIS_PASSWORD[^}]*\}", "$(REDIS_PASSWORD)", compose_url) == BROKER_URL


def command_kind(command: list[str]) -> tuple[str, ...]:
    """`membench worker SCENARIO`, `membench loadgen` or `celery -A membench.workers.app flower`."""
    if command[:2] == ["membench", "worker"]:
        return tuple(command[:3])
    (prefix,) = [p for p in compose.PYTHON_COMMAND_PREFIXES if tuple(command[: len(p)]) == p]
    return prefix


def test_commands_agree_with_compose(manifests: Manifests) -> None:
    ours = [argv(c) for _, c in containers(manifests) if argv(c)[0] in ("membench", "celery")]
    theirs = list(compose.compose_python_commands().values())
    assert sorted(map(command_kind, ours)) == sorted(map(command_kind, theirs))
    # Loadgen (its schedule, its port) and Flower run exactly as in compose.
    others = {command_kind(c): c for c in theirs if c[1] != "worker"}
    for command in ours:
        if command[1] != "worker":
            assert command == others[command_kind(command)]
