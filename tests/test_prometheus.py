"""Tests for prometheus/: promtool checks and unit tests, rule naming, and a real Prometheus.

promtool/prometheus missing: skipped locally, a failure when $CI is set (CI must install them).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from helpers import load_rule_groups, require_binary

from membench.exporter import names
from membench.grafana.panels import STRING_LITERAL
from membench.prometheus import generate, mixin
from membench.prometheus.mixin import Settings

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
PROM_DIR = REPO / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
UNIT_TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))

# The names dashboards and the README use (contract); extra rules are allowed, these are required.
CONTRACT_RECORDS = set(names.RECORDING_RULES)
EXPECTED_ALERTS = {
    "MembenchTaskRunFailures",
    "MembenchSoakMemoryGrowth",
    "MembenchLoadgenSkippingRuns",
    "MembenchLoadgenRunFailures",
    "MembenchLoadgenTargetDown",
    # membench-celery.alerts.yml: any instrumented Celery app.
    "MembenchWorkerTargetDown",
    "MembenchTaskRetainedGrowth",
    "MembenchCgroupMemoryNearLimit",
    "MembenchOOMKill",
    # Other tests wait for this very name (a worker host vanishing).
    "MembenchWorkerAbsent",
}
# job name -> file_sd glob, relative to prometheus.yml (contract).
CONTRACT_JOBS = {
    job: f"targets/{job.removeprefix('membench-')}/*.json"
    for job in ("membench-workers", "membench-loadgen", "flower", "prometheus")
}

RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_URL = "https://github.com/celery-membench/celery-membench/blob/main/docs/runbooks.md#"

RECORD_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_]+$")
# A metric name not glued to a recording rule's colons (scenario:membench_x:sum is not membench_x).
MEMBENCH_METRIC = re.compile(r"(?<![\w:])membench_\w+(?![\w:])")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# A raw series a rule reads (never a rule's output: no colons around it) and its matchers.
RAW_SERIES = re.compile(r"(?<![\w:])(?:membench_\w+|up)(?![\w:])(\{[^}]*\})?")


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rule_groups() for rule in group["rules"]]


def defined_metrics() -> set[str]:
    return {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and value.startswith("membench_")
    }


def referenced_metrics(promql: str) -> set[str]:
    """membench_* metric names in a PromQL expression (string literals ignored)."""
    return set(MEMBENCH_METRIC.findall(STRING_LITERAL.sub('""', promql)))


def undefined(metric: str, defined: set[str]) -> bool:
    if metric in defined:
        return False
    return not any(
        metric.endswith(suffix) and metric.removesuffix(suffix) in defined
        for suffix in HISTOGRAM_SUFFIXES
    )


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=120, check=False
    )


# --- promtool ------------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    result = run_promtool("check", "config", str(CONFIG))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The rule_files glob is relative to the config file: every rules file must be picked up.
    for path in RULE_FILES:
        assert path.name in output, f"{path.name} not loaded by rule_files:\n{output}"


def test_promtool_check_rules() -> None:
    assert RULE_FILES, "no prometheus/rules/*.yml"
    result = run_promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests() -> None:
    assert UNIT_TEST_FILES, "no prometheus/tests/*.yml"
    result = run_promtool("test", "rules", *map(str, UNIT_TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


# --- pure Python -----------------------------------------------------------------------------


def test_config_jobs_match_contract() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(CONTRACT_JOBS)
    for name, glob in CONTRACT_JOBS.items():
        sd_configs = jobs[name]["file_sd_configs"]
        assert [sd["files"] for sd in sd_configs] == [[glob]], name
        assert all(sd["refresh_interval"] == "5s" for sd in sd_configs), name
    assert jobs["membench-workers"].get("honor_labels") is True
    # Alerts go to the Alertmanager whose file_sd target the local stack or compose provides.
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["file_sd_configs"] == [
        {"files": ["targets/alertmanager/*.json"], "refresh_interval": "5s"}
    ]


def test_alertmanager_config_is_the_generation_and_valid() -> None:
    assert "alertmanager.yml" not in generate.stale_files(PROM_DIR / "rules", Settings())
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(PROM_DIR / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_recording_rule_names_follow_convention() -> None:
    records = [rule["record"] for rule in all_rules() if "record" in rule]
    bad = [name for name in records if not RECORD_NAME.match(name)]
    assert not bad, f"not level:metric:operations: {bad}"
    assert len(records) == len(set(records)), "duplicate recording rule"


def test_contract_recording_rules_exist() -> None:
    records = {rule["record"] for rule in all_rules() if "record" in rule}
    assert records >= CONTRACT_RECORDS, f"missing: {sorted(CONTRACT_RECORDS - records)}"


def test_alerts_have_severity_and_annotations() -> None:
    alerts = [rule for rule in all_rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == EXPECTED_ALERTS
    for rule in alerts:
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]


def test_rule_metrics_are_defined_in_names() -> None:
    defined = defined_metrics()
    problems = {
        rule.get("record") or rule["alert"]: sorted(
            m for m in referenced_metrics(rule["expr"]) if undefined(m, defined)
        )
        for rule in all_rules()
    }
    problems = {name: bad for name, bad in problems.items() if bad}
    assert not problems, f"membench_* metrics not in exporter/names.py: {problems}"


def test_unit_test_inputs_use_defined_metrics() -> None:
    defined = defined_metrics()
    bad = set()
    for path in UNIT_TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for series in case.get("input_series", []):
                bad |= {m for m in referenced_metrics(series["series"]) if undefined(m, defined)}
    assert not bad, f"unit test input series use unknown metrics: {sorted(bad)}"


def test_every_rule_and_alert_is_unit_tested() -> None:
    tested_exprs: list[str] = []
    alert_cases: dict[str, list[bool]] = {}
    for path in UNIT_TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested_exprs += [t["expr"] for t in case.get("promql_expr_test", [])]
            for t in case.get("alert_rule_test", []):
                alert_cases.setdefault(t["alertname"], []).append(bool(t.get("exp_alerts")))
    records = {rule["record"] for rule in all_rules() if "record" in rule}
    untested = {r for r in records if not any(r in expr for expr in tested_exprs)}
    assert not untested, f"recording rules without a promql_expr_test: {sorted(untested)}"
    for alert in EXPECTED_ALERTS:
        outcomes = alert_cases.get(alert, [])
        assert True in outcomes, f"{alert}: no firing case"
        assert False in outcomes, f"{alert}: no not-firing case"


def test_promql_doc_names_existing_rules() -> None:
    """docs/promql.md pairs queries with rule names: they must exist, and the tree ones appear."""
    doc = (REPO / "docs" / "promql.md").read_text()
    records = {rule["record"] for rule in all_rules() if "record" in rule}
    mentioned = set(re.findall(r"\b[a-z_]+:membench_\w+:\w+", doc))
    assert mentioned <= records, f"unknown rules in docs/promql.md: {sorted(mentioned - records)}"
    assert {r for r in CONTRACT_RECORDS if "_tree_" in r or "task_peak" in r} <= mentioned


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces -> -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_waits_and_links_its_runbook_section_and_dashboard() -> None:
    runbooks = RUNBOOKS.read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", runbooks, re.MULTILINE)}
    alerts = [rule for rule in all_rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == set(mixin.ALERTS)
    for rule in alerts:
        name, annotations = rule["alert"], rule["annotations"]
        assert rule["for"] == mixin.DEFAULT_FOR[name], name
        assert "{{" not in annotations["summary"], f"{name}: the summary is static"
        assert "{{ $" in annotations["description"], f"{name}: no values in the description"
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK_URL), name
        assert url.removeprefix(RUNBOOK_URL) in anchors, f"{name}: no section {url}"
        section = runbooks.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**What it means.**", "**How to check.**", "**What to do.**"):
            assert part in section, f"runbooks.md#{name.lower()}: no {part}"
        uid = annotations["dashboard_url"].split("/d/", 1)[1].split("?", 1)[0]
        assert (REPO / "grafana" / "dashboards" / f"{uid}.json").is_file(), name
    # A benchmark's target down is a warning; a process gone or an OOM kill loses work.
    severity = {rule["alert"]: rule["labels"]["severity"] for rule in alerts}
    critical = {mixin.WORKER_ABSENT, mixin.OOM_KILL}
    assert {name for name, level in severity.items() if level == "critical"} == critical


def test_committed_rules_equal_the_generation() -> None:
    assert generate.stale_files(PROM_DIR / "rules", Settings()) == []
    assert generate.main(["--check"]) == 0


def test_settings_reach_every_series_and_every_for(tmp_path: Path) -> None:
    """A selector narrows every series a rule reads (never a rule's own output, which keeps
    only the group labels); --for sets an alert's duration; bad settings are one line, exit 2."""
    argv = ["--output-dir", str(tmp_path), "--selector", 'namespace="shop"']
    argv += ["--cluster-label", "cluster", "--for", "MembenchWorkerAbsent=20s"]
    assert generate.main(argv) == 0
    rules = [
        rule
        for path in sorted(tmp_path.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    for rule in rules:
        for selector in RAW_SERIES.findall(rule["expr"]):
            assert 'namespace="shop"' in selector, (rule.get("record") or rule["alert"], selector)
        assert "by (" not in rule["expr"] or "by (cluster, namespace, job" in rule["expr"]
    absent = next(r for r in rules if r.get("alert") == mixin.WORKER_ABSENT)
    assert absent["for"] == "20s" and "for 20s" in absent["annotations"]["description"]
    result = run_promtool("check", "rules", *map(str, sorted(tmp_path.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr
    for bad in (["--selector", "shop"], ["--for", "NoSuchAlert=1m"], ["--for", "x"]):
        result = subprocess.run(
            [sys.executable, str(PROM_DIR / "generate.py"), "--check", *bad],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, bad
        assert bad[0] in result.stderr, bad


# --- a real Prometheus -----------------------------------------------------------------------
