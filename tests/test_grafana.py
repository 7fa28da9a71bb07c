"""Grafana dashboards: committed JSON is current, well formed, and names only real metrics/rules."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from membench.exporter import names
from membench.grafana import generate, panels
from membench.grafana.records import Panel
from membench.prometheus import mixin
from membench.prometheus.alerts import benchmark_alerts, celery_alerts
from membench.prometheus.mixin import Settings

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
RULES_FILE = ROOT / "prometheus" / "rules" / "membench.rules.yml"
# Every panel and variable reads the dashboard's datasource variable, never a fixed uid.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Stat and bar gauge panels that mirror an alert: their orange step is the alert's threshold.
MIRRORED_THRESHOLDS = {
    ("membench-soak", "Current baseline growth"): mixin.SOAK_GROWTH_MIB_PER_HOUR,
    ("membench-celery-worker", "Cgroup memory used of its limit, now"): (
        mixin.CGROUP_NEAR_LIMIT_RATIO
    ),
    ("membench-overview", "Worker scrape targets down"): 1,
    ("membench-overview", "Loadgen skipped runs (selected range)"): 1,
    ("membench-soak", "Loadgen skipped and timed-out runs (selected range)"): 1,
}

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@pytest.fixture(scope="module")
def dashboards() -> list[dict[str, Any]]:
    return panels.load_dashboards(generate.DASHBOARDS_DIR)


def all_exprs(dashboards: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(uid, title, raw expr) for every target, before variable substitution."""
    found = []
    for dashboard in dashboards:
        for panel in panels.iter_panels(dashboard):
            for target in panel.get("targets") or []:
                found.append((dashboard["uid"], panel["title"], target.get("expr", "")))
    return found


def recorded_rules() -> list[str]:
    """Every `record:` name in the rules file, in file order."""
    records = []
    for group in (yaml.safe_load(RULES_FILE.read_text(encoding="utf-8")) or {}).get("groups", []):
        records.extend(rule["record"] for rule in group.get("rules", []) if "record" in rule)
    return records


def test_names_module_lists_exactly_the_recording_rules() -> None:
    recorded = recorded_rules()
    assert len(names.RECORDING_RULES) == len(set(names.RECORDING_RULES))
    assert set(recorded) == set(names.RECORDING_RULES), (
        f"only in {RULES_FILE.name}: {sorted(set(recorded) - set(names.RECORDING_RULES))}, "
        f"only in names.py: {sorted(set(names.RECORDING_RULES) - set(recorded))}"
    )


def test_generator_spells_no_rule_name() -> None:
    # Rule names come from names.py; a literal in the generator would drift from the rules.
    for path in sorted(GRAFANA.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for rule in names.RECORDING_RULES:
            assert rule not in source, f"{path.name} spells {rule}: use names.py"


def test_panel_records_reject_malformed_targets_and_options() -> None:
    with pytest.raises(ValueError, match="pairs"):
        # The missing trailing comma: a bare (expr, legend) instead of a tuple of pairs.
        Panel("stat", "t", "d", ("up", "legend"), unit="short")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeseries-only"):
        Panel("stat", "t", "d", (("up", "legend"),), unit="short", stepped=True)
    assert Panel("bargauge", "t", "d", (("up", "legend"),), unit="short").span == 10


def test_committed_json_matches_generator() -> None:
    built = generate.build_dashboards()
    committed = {path.name for path in generate.DASHBOARDS_DIR.glob("*.json")}
    assert committed == set(built), "grafana/dashboards/ holds files the generator does not make"
    for name, dashboard in built.items():
        text = (generate.DASHBOARDS_DIR / name).read_text(encoding="utf-8")
        assert text == generate.render(dashboard), f"{name} is stale: run grafana/generate.py"
        assert text.endswith("}\n")


def test_generation_is_deterministic() -> None:
    first = {k: generate.render(v) for k, v in generate.build_dashboards().items()}
    second = {k: generate.render(v) for k, v in generate.build_dashboards().items()}
    assert first == second


def test_check_mode_flags_stale_and_missing_files(tmp_path: Path) -> None:
    generate.write(tmp_path)
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 0
    overview = tmp_path / "membench-overview.json"
    overview.write_text(overview.read_text(encoding="utf-8").replace("RSS", "Rss", 1))
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 1
    overview.unlink()
    generate.write(tmp_path)
    (tmp_path / "membench-soak.json").unlink()
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 1


@pytest.mark.parametrize(
    "command",
    [[str(GRAFANA / "generate.py")], ["-m", "membench.grafana.generate"]],
    ids=["file", "module"],
)
def test_check_runs_as_a_file_and_as_a_module(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, *command, "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_dashboards_have_expected_uids_and_variables(dashboards: list[dict[str, Any]]) -> None:
    by_uid = {d["uid"]: d for d in dashboards}
    assert set(by_uid) == {"membench-overview", "membench-soak", "membench-celery-worker"}
    assert by_uid["membench-soak"]["time"]["from"] == "now-24h"
    for dashboard in dashboards:
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        flower = ["flower_job"] if dashboard["uid"] == "membench-overview" else []
        assert list(variables) == [
            "datasource",
            "namespace",
            "job",
            *flower,
            "scenario",
            "instance",
        ]
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
        assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
        assert variables["job"]["query"] == (
            'label_values(membench_worker_info{namespace=~"$namespace"}, job)'
        )
        assert variables["instance"]["query"] == (
            'label_values(membench_worker_info{scenario=~"$scenario", job=~"$job", '
            'namespace=~"$namespace"}, instance)'
        )
        for name, variable in variables.items():
            if name == "datasource":
                continue
            assert variable["datasource"] == DATASOURCE
            # One Flower per broker: its panels read exactly one, the rest default to All.
            assert variable.get("multi", False) == (name != "flower_job"), name
            assert variable.get("includeAll", False) == (name != "flower_job"), name


def test_no_datasource_uid_or_job_is_written_into_a_dashboard(
    dashboards: list[dict[str, Any]],
) -> None:
    for dashboard in dashboards:
        text = json.dumps(dashboard)
        assert "membench-prometheus" not in text, dashboard["uid"]
        assert not re.search(r'\bjob=~?\\"(?!\$)', text), dashboard["uid"]
        assert "membench-workers" not in text and "membench-loadgen" not in text


def test_a_selector_and_cluster_label_reach_every_query_and_variable() -> None:
    settings = Settings(selector='namespace="team-a"', cluster_label="k8s_cluster")
    for dashboard in generate.build_dashboards(settings).values():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["cluster"]["query"] == (
            'label_values(membench_worker_info{namespace="team-a"}, k8s_cluster)'
        )
        for name in ("namespace", "job", "scenario", "instance"):
            assert 'namespace="team-a"' in variables[name]["query"], name
        for uid, title, expr in all_exprs([dashboard]):
            if expr.startswith("vector("):
                continue
            assert expr.count("{") == expr.count('namespace="team-a"'), (uid, title, expr)
            assert expr.count("{") == expr.count('k8s_cluster=~"$cluster"'), (uid, title, expr)
    with pytest.raises(ValueError, match="label matchers"):
        Settings(selector="namespace=team-a")
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--selector", "nope", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "label matchers" in result.stderr


def test_every_stat_and_bar_gauge_has_thresholds_mirroring_its_alert(
    dashboards: list[dict[str, Any]],
) -> None:
    seen = set()
    for dashboard in dashboards:
        for panel in panels.iter_panels(dashboard):
            if panel["type"] not in ("stat", "bargauge"):
                continue
            where = (dashboard["uid"], panel["title"])
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[0] == {"color": "green", "value": None}, where
            expected = MIRRORED_THRESHOLDS.get(where)
            assert [s["value"] for s in steps[1:]] == ([expected] if expected else []), where
            seen.add(where)
    assert set(MIRRORED_THRESHOLDS) <= seen


def test_every_panel_has_targets_datasource_title_and_description(
    dashboards: list[dict[str, Any]],
) -> None:
    for dashboard in dashboards:
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"duplicate panel ids in {dashboard['uid']}"
        for panel in panels.iter_panels(dashboard):
            where = f"{dashboard['uid']}/{panel.get('title')!r}"
            assert panel.get("title"), where
            assert panel.get("description"), where
            assert panel["datasource"] == DATASOURCE, where
            targets = panel.get("targets") or []
            assert targets, where
            ref_ids = [t["refId"] for t in targets]
            assert all(ref_ids) and len(ref_ids) == len(set(ref_ids)), where
            for target in targets:
                assert target.get("expr"), where
                assert target["datasource"] == DATASOURCE, where


def test_membench_metric_names_exist_in_names_module(dashboards: list[dict[str, Any]]) -> None:
    defined = {v for v in vars(names).values() if isinstance(v, str) and v.startswith("membench_")}
    for uid, title, expr in all_exprs(dashboards):
        for word in panels.identifiers(expr):
            if not word.startswith("membench_"):
                continue
            base = word
            for suffix in HISTOGRAM_SUFFIXES:
                if base.endswith(suffix) and base[: -len(suffix)] in defined:
                    base = base[: -len(suffix)]
            assert base in defined, f"{uid}/{title}: {word} is not in exporter/names.py"


def test_recording_rule_names_exist(dashboards: list[dict[str, Any]]) -> None:
    rules = set(names.RECORDING_RULES)
    used = set()
    for uid, title, expr in all_exprs(dashboards):
        for word in panels.identifiers(expr):
            if ":" in word:
                used.add(word)
                assert word in rules, f"{uid}/{title}: unknown recording rule {word}"
    assert used, "dashboards should prefer the recording rules"


def test_flower_metric_names_exist_in_installed_flower(dashboards: list[dict[str, Any]]) -> None:
    spec = importlib.util.find_spec("flower")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("flower is not installed")
    source = (Path(next(iter(spec.submodule_search_locations))) / "events.py").read_text()
    for uid, title, expr in all_exprs(dashboards):
        for word in panels.identifiers(expr):
            if word.startswith("flower_"):
                base = re.sub(r"_(bucket|sum|count)$", "", word)
                assert f"'{base}'" in source, f"{uid}/{title}: {word} not exported by flower"


def test_every_query_selects_its_job_namespace_and_scenario(
    dashboards: list[dict[str, Any]],
) -> None:
    for uid, title, expr in all_exprs(dashboards):
        words = panels.identifiers(expr)
        where = f"{uid}/{title}: {expr}"
        if expr.startswith("vector("):
            continue
        assert 'namespace=~"$namespace"' in expr, where
        loadgen = any("loadgen" in w for w in words)
        if any(w.startswith("flower_") for w in words):
            assert 'job=~"$flower_job"' in expr, where
        elif not loadgen and "__name__" not in expr:
            assert 'job=~"$job"' in expr, where
        if any(w.startswith("membench_") or ":" in w or w == "up" for w in words):
            assert 'scenario=~"$scenario"' in expr, where
        # Raw per-process worker series (rule outputs have no instance) also honour $instance.
        if any(w.startswith("membench_") for w in words) and not loadgen:
            assert 'instance=~"$instance"' in expr, where


def test_substitution_leaves_concrete_promql(dashboards: list[dict[str, Any]]) -> None:
    variables = {"scenario": "prefork_threads|gevent_greenlets", "instance": ".*"}
    total = 0
    for dashboard in dashboards:
        queries = panels.panel_queries(dashboard, variables)
        assert queries
        for uid, title, expr in queries:
            assert uid == dashboard["uid"]
            assert "$" not in expr, f"{uid}/{title}: {expr}"
            total += 1
    assert total == len(all_exprs(dashboards))
    assert panels.substitute("rate(x[$__rate_interval]) $__range_s", {}) == "rate(x[1m]) 3600"
    assert panels.substitute('{a=~"${scenario:regex}"}', {"scenario": "s"}) == '{a=~"s"}'
    with pytest.raises(KeyError):
        panels.substitute("$unknown_variable", {})


def test_identifiers_ignore_strings_and_ranges() -> None:
    words = panels.identifiers(
        'count({__name__=~"membench_.*"}) + max_over_time(a:b:c{job="x"}[1h:5m])'
    )
    assert "a:b:c" in words
    assert not any(w.startswith("membench_") for w in words)
    assert not any(w.startswith("h:") or w == "m" for w in words)


def test_dashboards_show_the_loadgen_annotations(dashboards: list[dict[str, Any]]) -> None:
    from membench.loadgen.annotations import ANNOTATION_TAG

    for dashboard in dashboards:
        tag_queries = [
            a["target"]
            for a in dashboard["annotations"]["list"]
            if a.get("enable") and a.get("target", {}).get("type") == "tags"
        ]
        assert [q["tags"] for q in tag_queries] == [[ANNOTATION_TAG]], dashboard["uid"]


def test_provisioning_files() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["uid"] == "membench-prometheus" and source["type"] == "prometheus"
    # Provisioned into an existing Grafana, a default would take over that Grafana's own.
    assert source["isDefault"] is False
    assert source["url"] == "${MEMBENCH_PROMETHEUS_URL}"
    prometheus_yml = ROOT / "prometheus" / "prometheus.yml"
    if prometheus_yml.is_file():
        scrape = yaml.safe_load(prometheus_yml.read_text())["global"]["scrape_interval"]
        assert source["jsonData"]["timeInterval"] == scrape, "$__rate_interval needs the scrape"

    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "membench.yml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${MEMBENCH_GRAFANA_DASHBOARDS_DIR}"


def test_dashboard_json_is_sorted_and_indented() -> None:
    for path in generate.DASHBOARDS_DIR.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_celery_worker_threshold_lines_equal_their_alerts_thresholds(
    dashboards: list[dict[str, Any]],
) -> None:
    from membench.grafana.celery_worker import ALERT_THRESHOLDS

    exprs = {
        rule["alert"]: rule["expr"]
        for group in (celery_alerts(Settings()), benchmark_alerts(Settings()))
        for rule in group["rules"]
    }
    (dashboard,) = (d for d in dashboards if d["uid"] == "membench-celery-worker")
    lines = {
        target["legendFormat"]: target["expr"]
        for panel in panels.iter_panels(dashboard)
        for target in panel.get("targets") or []
        if target["expr"].startswith("vector(")
    }
    assert lines
    for alert, value in ALERT_THRESHOLDS.items():
        # Every "> a * b ..." comparison of the alert, multiplied out.
        compared = {
            math.prod(float(factor) for factor in product.split("*"))
            for product in re.findall(r">\s*([0-9.]+(?:\s*\*\s*[0-9.]+)*)", exprs[alert])
        }
        assert value in compared, f"{alert}: {value} is not a threshold of {exprs[alert]!r}"
        drawn = [expr for legend, expr in lines.items() if legend.startswith(f"alert {alert}:")]
        assert drawn == [f"vector({value})"], alert
