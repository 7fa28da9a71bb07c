"""Static checks of docker-compose.yml, Dockerfile, .env.example and .dockerignore (no engine).

`compose_python_commands()` is public: the local stack's tests compare their commands with it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from membench.workers.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"

KNOWN_SCENARIOS = frozenset(SCENARIOS)
# The design's four scenarios: compose runs one worker each (more may be added, not fewer).
CORE_SCENARIOS = {"prefork_threads", "prefork_sequential", "gevent_threads", "gevent_greenlets"}

PYTHON_COMMAND_PREFIXES = (
    ("membench", "worker"),
    ("membench", "loadgen"),
    ("celery", "-A", "membench.workers.app", "flower"),
)
# ${VAR:?message}: compose refuses to start when VAR is unset or empty.
REQUIRED_VAR = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}$")
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)([^}]*)\}")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|_AUTH$|BASIC_AUTH", re.IGNORECASE)
# userinfo password of a URL: an interpolation (its message may contain spaces) or a literal.
URL_PASSWORD = re.compile(r"://[^/@\s:]*:(\$\{[^}]*\}|[^@/\s]+)@")
SECRET_FLAGS = ("--requirepass", "--basic-auth", "--password")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def compose_python_commands() -> dict[str, list[str]]:
    """Command (argv) of every service built from the repo's Dockerfile, by service name."""
    return {
        name: as_argv(service["command"])
        for name, service in services().items()
        if "build" in service
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume entry, short or long syntax."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry.get("source", ""), entry["target"]
        mounts.append((source, target))
    return mounts


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def strings(node: Any) -> list[str]:
    """Every scalar string in a YAML tree, keys excluded."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def worker_scenario(argv: list[str]) -> str:
    return argv[2]


def option(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


# --- schema and references -----------------------------------------------------------------


def test_compose_schema() -> None:
    try:
        import check_jsonschema  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("check-jsonschema is not installed: CI must install the test extras")
        pytest.skip("check-jsonschema is not installed")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_depends_on_names_existing_services() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on") or []
        for dependency in depends:
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            assert dependency != name


def test_named_volumes_are_declared() -> None:
    declared = set(load_compose().get("volumes") or {})
    for name, service in services().items():
        for source, _ in volume_mounts(service):
            if source and not is_bind(source):
                assert source in declared, f"{name}: volume {source!r} is not declared"


def test_bind_mounts_and_build_context_exist() -> None:
    for name, service in services().items():
        for source, _ in volume_mounts(service):
            if is_bind(source):
                assert source.startswith("./"), f"{name}: bind {source!r} must be repo-relative"
                assert (REPO / source).exists(), f"{name}: {source} does not exist in the repo"
        if "build" in service:
            build = service["build"]
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else ""
            assert (context / (dockerfile or "Dockerfile")).is_file(), name


def test_ports_are_bound_to_loopback() -> None:
    for name, service in services().items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                parts = str(port).split(":")
                assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name}: {port!r}"


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = service.get("image")
        assert image, f"{name}: no image (services built from the repo need a tag too)"
        last = image.rsplit("/", 1)[-1]
        assert ":" in last or "@sha256:" in image, f"{name}: untagged image {image}"
        assert not image.endswith(":latest"), f"{name}: {image}"


# --- secrets -------------------------------------------------------------------------------


def test_no_literal_secrets() -> None:
    compose = load_compose()
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if SECRET_KEY.search(key):
                assert REQUIRED_VAR.match(value), f"{name}: {key} must be ${{VAR:?...}}"
        argv = as_argv(service.get("command") or [])
        for flag in SECRET_FLAGS:
            value = option(argv, flag)
            if value is not None:
                assert REQUIRED_VAR.match(value), f"{name}: {flag} must be ${{VAR:?...}}"
    for text in strings(compose):
        for password in URL_PASSWORD.findall(text):
            assert REQUIRED_VAR.match(password), f"literal password in URL {text!r}"
        # A secret variable must never fall back to a default (${GRAFANA_ADMIN_PASSWORD:-admin}).
        for var, modifier in INTERPOLATION.findall(text):
            if SECRET_KEY.search(var):
                assert modifier.startswith(":?"), f"${{{var}{modifier}}} has no :? guard"


def test_env_example_lists_every_variable_without_secret_values() -> None:
    used = {var for text in strings(load_compose()) for var, _ in INTERPOLATION.findall(text)}
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    assert used <= set(example), f"missing from .env.example: {sorted(used - set(example))}"
    for key, value in example.items():
        if SECRET_KEY.search(key):
            assert value == "", f".env.example must not ship a value for {key}"


# --- commands ------------------------------------------------------------------------------


def test_python_commands() -> None:
    commands = compose_python_commands()
    assert commands, "no service is built from the Dockerfile"
    worker_scenarios = []
    for name, argv in commands.items():
        prefix = next((p for p in PYTHON_COMMAND_PREFIXES if tuple(argv[: len(p)]) == p), None)
        assert prefix is not None, f"{name}: unexpected command {argv}"
        if prefix == ("membench", "worker"):
            scenario = worker_scenario(argv)
            assert scenario in KNOWN_SCENARIOS, f"{name}: unknown scenario {scenario!r}"
            worker_scenarios.append(scenario)
        if prefix[0] == "membench":
            assert option(argv, "--metrics-host") == "0.0.0.0", name
            assert (option(argv, "--metrics-port") or "").isdigit(), name
    assert len(worker_scenarios) == len(set(worker_scenarios)), "one worker per scenario"
    assert set(worker_scenarios) >= CORE_SCENARIOS
    loadgens = [argv for argv in commands.values() if argv[:2] == ["membench", "loadgen"]]
    flowers = [argv for argv in commands.values() if argv[0] == "celery"]
    assert len(loadgens) == 1 and len(flowers) == 1


def test_healthchecks_probe_the_command_port() -> None:
    all_services = services()
    for name, argv in compose_python_commands().items():
        port = option(argv, "--metrics-port") or option(argv, "--port")
        test = " ".join(as_argv(all_services[name]["healthcheck"]["test"]))
        assert f"127.0.0.1:{port}/" in test, f"{name}: healthcheck does not probe port {port}"
    for name, service in all_services.items():
        assert "healthcheck" in service, f"{name}: no healthcheck"


def test_python_services_wait_for_a_healthy_redis() -> None:
    all_services = services()
    assert "--requirepass" in as_argv(all_services["redis"]["command"])
    assert "redis-cli" in " ".join(as_argv(all_services["redis"]["healthcheck"]["test"]))
    for name in compose_python_commands():
        depends = all_services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
        broker = environment(all_services[name])["MEMBENCH_BROKER_URL"]
        assert broker.startswith("redis://:${REDIS_PASSWORD:?") and "@redis:6379/" in broker


def test_loadgen_schedule_is_in_the_image() -> None:
    (argv,) = [a for a in compose_python_commands().values() if a[:2] == ["membench", "loadgen"]]
    schedule = option(argv, "--schedule") or ""
    assert schedule.startswith("/app/"), "the Dockerfile copies the repo to /app"
    assert (REPO / schedule.removeprefix("/app/")).is_file()


# --- discovery layout ----------------------------------------------------------------------


def test_targets_volume_layout() -> None:
    all_services = services()
    for name in compose_python_commands():
        mounts = dict(volume_mounts(all_services[name]))
        targets_dir = environment(all_services[name])["MEMBENCH_TARGETS_DIR"]
        if all_services[name]["command"][0] == "membench":
            assert mounts.get("targets") == targets_dir, f"{name}: targets not at {targets_dir}"
    prometheus = all_services["prometheus"]
    mounts = {target: source for source, target in volume_mounts(prometheus)}
    assert mounts["/etc/prometheus"] == "./prometheus"
    assert mounts["/etc/prometheus/targets"] == "targets"
    # Mount point of the volume inside the read-only ./prometheus bind.
    assert (REPO / "prometheus" / "targets").is_dir()
    assert option(prometheus["command"], "--config.file") == "/etc/prometheus/prometheus.yml"


def test_compose_static_targets() -> None:
    all_services = services()
    prometheus = all_services["prometheus"]
    mounts = {target: source for source, target in volume_mounts(prometheus)}
    flower_port = option(as_argv(all_services["flower"]["command"]), "--port")
    prom_port = (option(prometheus["command"], "--web.listen-address") or "").rsplit(":", 1)[-1]
    am_port = (
        option(all_services["alertmanager"]["command"], "--web.listen-address") or ""
    ).rsplit(":", 1)[-1]
    expected = {
        "flower": f"flower:{flower_port}",
        "prometheus": f"localhost:{prom_port}",
        "alertmanager": f"alertmanager:{am_port}",
    }
    for job, address in expected.items():
        source = mounts[f"/etc/prometheus/targets/{job}"]
        files = sorted((REPO / source).glob("*.json"))
        assert files, f"no file_sd JSON in {source}"
        groups = [group for path in files for group in json.loads(path.read_text())]
        assert [t for group in groups for t in group["targets"]] == [address], job


def test_alertmanager_runs_the_generated_config_alone() -> None:
    """Prometheus sends to it (prometheus.yml's alerting reads targets/alertmanager, mounted
    above); it loads the committed config, which routes to a receiver; no gossip port."""
    alertmanager = services()["alertmanager"]
    argv = as_argv(alertmanager["command"])
    mounts = {target: source for source, target in volume_mounts(alertmanager)}
    config = option(argv, "--config.file") or ""
    assert mounts[config] == "./prometheus/alertmanager.yml"
    assert yaml.safe_load((REPO / "prometheus" / "alertmanager.yml").read_text())["route"][
        "receiver"
    ]
    assert "--cluster.listen-address=" in argv
    assert "9093" in " ".join(as_argv(alertmanager["healthcheck"]["test"]))


# --- Dockerfile and .dockerignore ----------------------------------------------------------


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    # The image runs the stack's services, so it needs the bench extra, not the instrument alone.
    assert re.search(r"pip install[^\n]* '\.\[bench\]'(\s|$)", text), (
        "pip install '.[bench]' missing"
    )
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}, "the image must run as a non-root user"
    assert re.search(r"^COPY \. /app", text, re.MULTILINE)


def test_dockerignore_keeps_what_the_build_needs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "exporter", "workers", "loadgen"):
        assert needed not in patterns, f".dockerignore drops {needed}"
    assert ".git" in patterns and ".env" in patterns
