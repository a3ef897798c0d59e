"""Fixtures for the deploy tests: the chart loaded once, rendered offline with helm-python-sdk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
from chatterbox_operator import builders
from chatterbox_operator.schema import TTS_DEPLOYMENT
from chatterbox_operator.validation import checked_spec
from cluster import chart as cluster_chart
from cluster.chart import CHART_DIR, NAMESPACE, RELEASE  # noqa: F401 (re-exported to the tests)

REPO_ROOT = Path(__file__).resolve().parents[2]

Manifest = dict[str, Any]
Render = Callable[[dict[str, Any]], list[Manifest]]


@pytest.fixture(scope="session")
def chart() -> helm_python.Chart:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> Render:
    """The release's manifests for `values` over the defaults: what `helm install` applies (no hooks)."""
    return lambda values: cluster_chart.render(chart, values)


@pytest.fixture(scope="session")
def render_hooks(chart: helm_python.Chart) -> Render:
    """The hook manifests for `values`: what Helm creates around install, upgrade or uninstall."""
    return lambda values: cluster_chart.render(chart, values, hooks=True)


def inference_env(tts: Manifest) -> dict[str, str]:
    """The inference container's environment the operator renders for a TTSDeployment the chart made."""
    owner = builders.Owner.of({**tts, "metadata": {**tts["metadata"], "uid": "chart-test"}})
    deployment = builders.deployment(owner, checked_spec(TTS_DEPLOYMENT, tts), None)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container["env"]}


@pytest.fixture(scope="session")
def chart_crds(chart: helm_python.Chart) -> dict[str, Manifest]:
    """The CRDs the chart installs, by kind."""
    return {crd["spec"]["names"]["kind"]: crd for crd in cluster_chart.crds(chart)}


@pytest.fixture(scope="session")
def inference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `chatterbox-server` process on random:tiny weights (the server tests' launcher)."""
    from server.conftest import start_server

    server = start_server(tmp_path_factory.mktemp("inference-server"))
    yield server
    server.stop()
