"""The Grafana dashboard and the alerts query only metrics a real server exports (so no panel is
empty), and every metric the server exports is shown somewhere."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import CHART_DIR, Manifest, Render

DASHBOARD_PATH = CHART_DIR / "dashboards" / "chatterbox-platform.json"
METRIC_NAME = re.compile(r"\b((?:chatterbox|kube)_[a-z0-9_]+)\b")
# kube-state-metrics Deployment series (its documented names); the only non-server metrics allowed.
KUBE_STATE_METRICS = {
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas",
    "kube_deployment_status_replicas_ready",
    "kube_deployment_status_replicas_available",
    "kube_deployment_status_replicas_updated",
    "kube_deployment_status_replicas_unavailable",
}
API_KEY = "sk-dashboards-0001"
MONITORING_ON = {
    "monitoring": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_PATH.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return queries


def alert_rules(render: Render) -> list[dict[str, Any]]:
    (rule,) = [m for m in render(MONITORING_ON) if m["kind"] == "PrometheusRule"]
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def metric_names(queries: list[str]) -> set[str]:
    return {name for query in queries for name in METRIC_NAME.findall(query)}


def test_dashboard_panels_are_complete(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "deployment"} <= variables


def test_dashboard_covers_what_operators_watch(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(panel["title"].lower() for panel in panels(dashboard))
    for topic in (
        "request rate",
        "errors",
        "latency",
        "time to first audio",
        "real-time factor",
        "t3",
        "queue depth per pod",
        "in-flight",
        "gpu memory",
        "replicas ready vs desired",
        "requests by key",
        "limit rejections by key",
    ):
        assert topic in titles, f"no panel about {topic}"


def test_queries_are_well_formed(dashboard: dict[str, Any], render: Render) -> None:
    for query in dashboard_queries(dashboard) + [rule["expr"] for rule in alert_rules(render)]:
        for opening, closing in ("()", "{}", "[]"):
            assert query.count(opening) == query.count(closing), f"unbalanced {opening}{closing} in {query}"
        assert query.count('"') % 2 == 0, query
        # Rates over a histogram's buckets must keep `le` for histogram_quantile.
        if "histogram_quantile" in query:
            assert re.search(r"by \((le\b|[^)]*\ble\b)", query), query


def test_alerts_cover_the_failure_modes(render: Render) -> None:
    rules = alert_rules(render)
    by_name = {rule["alert"]: rule for rule in rules}
    assert len(by_name) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    expressions = {name: rule["expr"] for name, rule in by_name.items()}
    assert "kube_deployment_status_replicas_ready" in expressions["ChatterboxReplicasNotReady"]
    assert "chatterbox_queue_depth" in expressions["ChatterboxQueueSaturated"]
    assert 'status=~"5.."' in expressions["ChatterboxHighErrorRate"]
    assert "chatterbox_time_to_first_audio_seconds_bucket" in expressions["ChatterboxSlowTimeToFirstAudio"]
    assert "chatterbox_key_limit_rejections_total" in expressions["ChatterboxKeyLimitReached"]


def test_alert_thresholds_come_from_values(render: Render) -> None:
    values = {"monitoring": {"prometheusRule": {"enabled": True, "errorRatio": 0.2, "queueDepthPerPod": 9}}}
    (rule,) = [m for m in render(values) if m["kind"] == "PrometheusRule"]
    expressions = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert expressions["ChatterboxHighErrorRate"].rstrip().endswith("> 0.2")
    assert expressions["ChatterboxQueueSaturated"].endswith("> 9")


def test_chart_ships_the_dashboard_unchanged(render: Render) -> None:
    (config_map,) = [m for m in render(MONITORING_ON) if m["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {DASHBOARD_PATH.name: DASHBOARD_PATH.read_text().rstrip("\n")}


def test_only_kube_state_metrics_besides_the_server(dashboard: dict[str, Any], render: Render) -> None:
    queried = metric_names(dashboard_queries(dashboard) + [r["expr"] for r in alert_rules(render)])
    assert {name for name in queried if name.startswith("kube_")} <= KUBE_STATE_METRICS


# -- against a real server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_inference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `chatterbox-server` (random:tiny) with a named API key limited to 2 requests per minute."""
    from server.conftest import start_server

    workdir = tmp_path_factory.mktemp("keyed-inference-server")
    (workdir / "keys.yaml").write_text(f"dashboards: {API_KEY}\n")
    (workdir / "limits.yaml").write_text("dashboards: {requests_per_minute: 2}\n")
    server = start_server(
        workdir, api_keys_file=workdir / "keys.yaml", api_key_limits_file=workdir / "limits.yaml"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scraped_metrics(keyed_inference_server: Any) -> str:
    """/metrics of a real chatterbox-server (random:tiny) after the requests every panel is about."""
    with keyed_inference_server.client(headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        speech = {"model": "chatterbox", "input": "Metrics, please.", "voice": "alloy"}
        assert client.post("/v1/audio/speech", json={**speech, "response_format": "wav"}).status_code == 200
        streamed = {**speech, "response_format": "pcm", "stream_format": "audio"}
        with client.stream("POST", "/v1/audio/speech", json=streamed) as response:
            assert response.status_code == 200
            response.read()
        assert client.post("/v1/audio/speech", json={"input": ""}).status_code == 400
        # The key's third speech request within a minute reaches its limit.
        assert client.post("/v1/audio/speech", json=speech).status_code == 429
        response = client.get("/metrics")
        assert response.status_code == 200
        return response.text


@pytest.mark.e2e
def test_every_queried_metric_is_exported(
    scraped_metrics: str, dashboard: dict[str, Any], render: Render
) -> None:
    # A labelled metric has no sample until its first use (e.g. a streaming session's protocol), but /metrics
    # declares its family from the start: its series are those of the family's type.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    families = list(text_string_to_metric_families(scraped_metrics))
    exported = {sample.name for family in families for sample in family.samples} | {
        family.name + suffix for family in families for suffix in suffixes.get(family.type, ())
    }
    queried = metric_names(dashboard_queries(dashboard) + [r["expr"] for r in alert_rules(render)])
    missing = {name for name in queried if name.startswith("chatterbox_")} - exported
    assert missing == set(), f"queried but not in /metrics: {sorted(missing)}"


@pytest.mark.e2e
def test_every_exported_metric_is_on_the_dashboard(scraped_metrics: str, dashboard: dict[str, Any]) -> None:
    # prometheus_client also exports each counter's and histogram's creation time as a `_created` gauge.
    families = {
        f.name for f in text_string_to_metric_families(scraped_metrics) if not f.name.endswith("_created")
    }
    shown = metric_names(dashboard_queries(dashboard))
    series_of = {
        family: {family + suffix for suffix in ("", "_total", "_bucket", "_sum", "_count")}
        for family in families
    }
    unshown = {
        family for family in families if family.startswith("chatterbox_") and not series_of[family] & shown
    }
    assert unshown == set(), f"exported but on no panel: {sorted(unshown)}"


def test_pod_monitor_and_alerts_are_prometheus_operator_objects(render: Render) -> None:
    manifests: list[Manifest] = render(
        {**MONITORING_ON, "monitoring": {**MONITORING_ON["monitoring"], "podMonitor": {"enabled": True}}}
    )
    kinds = {m["kind"]: m for m in manifests if m["apiVersion"] == "monitoring.coreos.com/v1"}
    assert set(kinds) == {"PodMonitor", "PrometheusRule"}
    assert kinds["PodMonitor"]["spec"]["namespaceSelector"] == {"any": True}
