"""Every shipped Grafana panel's PromQL returns data from a real Prometheus scraping the real service
watching a real RTSP camera; configs lint clean."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.conftest import (
    ROOT,
    SHIPPED_PROMETHEUS_YML,
    MetricsTarget,
    ShippedConfigPrometheus,
    derived_prometheus_config,
)

DASHBOARDS = sorted((ROOT / "ops" / "grafana" / "dashboards").glob("*.json"))
DATASOURCES_YML = ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS_YML = ROOT / "ops" / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

# What Grafana would put in place of its variables, sized for a 1 s scrape interval.
GRAFANA_VARIABLES = {
    "__rate_interval": "5s",
    "__interval": "2s",
    "__range": "1m",
    "__range_s": "60",
    "__range_ms": "60000",
    "__interval_ms": "2000",
    "camera": ".*",
}
# CPU encoding gives ~1-2 frames/s here: Grafana's $__rate_interval for a slower feed is wider.
SERVICE_VARIABLES = {**GRAFANA_VARIABLES, "__rate_interval": "30s"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def grafana_substitute(expr: str, variables: dict[str, str] = GRAFANA_VARIABLES) -> str:
    """Replace $var, ${var} and ${var:format} as Grafana does for an all-cameras view; unknown names raise."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"dashboard uses variable ${name}, which the test does not know how to expand")
        return variables[name]

    return VARIABLE.sub(value, expr)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def all_targets() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title / refId, expr) for every target of every panel of every shipped
    dashboard."""
    rows = []
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                rows.append((path.name, f"{panel['title']} / {target['refId']}", target["expr"]))
    return rows


def test_two_dashboards_are_shipped_with_queries() -> None:
    assert {p.name for p in DASHBOARDS} >= {"fleet.json", "compression.json"}
    assert len(all_targets()) >= 20


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_classic_json_on_the_provisioned_datasource_with_a_camera_variable(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    datasource_uid = yaml.safe_load(DATASOURCES_YML.read_text())["datasources"][0]["uid"]
    assert 39 <= dashboard["schemaVersion"] <= 41 and "apiVersion" not in dashboard and dashboard["uid"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        for source in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]:
            if source is not None:
                assert source == {"type": "prometheus", "uid": datasource_uid}, panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["camera"]["includeAll"] and variables["camera"]["allValue"] == ".*"


def test_dashboard_provider_points_at_the_directory_compose_mounts_dashboards_in() -> None:
    provider = yaml.safe_load(PROVIDERS_YML.read_text())["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = [m for m in compose["services"]["grafana"]["volumes"] if isinstance(m, str)]
    assert any(
        m.startswith("./ops/grafana/dashboards:") and m.split(":")[1] == provider["options"]["path"]
        for m in mounts
    ), mounts


def test_shipped_prometheus_config_and_its_test_derivative_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus)"
    derived = tmp_path / "prometheus.yml"
    token = tmp_path / "api_token"
    token.write_text("a-token-for-promtool")
    derived.write_text(yaml.safe_dump(derived_prometheus_config("127.0.0.1:9", token)))
    # The shipped file as is, but for the compose secret's path, which exists only in the container.
    shipped = tmp_path / "shipped.yml"
    shipped.write_text(
        SHIPPED_PROMETHEUS_YML.read_text().replace("/run/secrets/scissor_api_token", str(token))
    )
    for config in (shipped, derived):
        done = subprocess.run(
            [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_exposition_passes_promtool_check_metrics(service_target: MetricsTarget) -> None:
    request = urllib.request.Request(
        f"http://{service_target.address}/metrics",
        headers={"Authorization": f"Bearer {service_target.token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = resp.read()
    assert b"scissor_stream_up" in body
    done = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()


def test_every_panel_query_returns_data_from_the_real_service_watching_a_real_rtsp_camera(
    service_prometheus: ShippedConfigPrometheus,
) -> None:
    empty = [
        f"{dashboard} {panel}"
        for dashboard, panel, expr in all_targets()
        if not service_prometheus.query(grafana_substitute(expr, SERVICE_VARIABLES))
    ]
    assert not empty, empty


def test_camera_variable_query_lists_every_camera(
    service_prometheus: ShippedConfigPrometheus, service_target: MetricsTarget
) -> None:
    for path in DASHBOARDS:
        variable = json.loads(path.read_text())["templating"]["list"][0]
        match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["definition"])
        assert match, variable["definition"]
        series = service_prometheus.query(match.group(1))
        assert {s["metric"][match.group(2)] for s in series} == service_target.cameras


def test_a_panel_on_a_metric_we_do_not_export_or_bad_promql_would_fail(
    service_prometheus: ShippedConfigPrometheus,
) -> None:
    unknown = grafana_substitute('sum(rate(scissor_not_exported_total{camera=~"$camera"}[5s]))')
    assert service_prometheus.query(unknown) == []
    with pytest.raises(ValueError, match="bad_data"):
        service_prometheus.query("rate(scissor_tokens_in_total[$__rate_interval])")
    with pytest.raises(KeyError):
        grafana_substitute("rate(x[$__unknown])")
