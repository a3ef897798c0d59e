"""Fixtures for the deploy tests: the chart loaded once, rendered offline with helm-python-sdk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chatterbox_operator import builders
from chatterbox_operator.schema import TTS_DEPLOYMENT
from chatterbox_operator.validation import checked_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "chatterbox-platform"
RELEASE = "demo"
NAMESPACE = "chatterbox-system"

Manifest = dict[str, Any]
Render = Callable[[dict[str, Any]], list[Manifest]]


@pytest.fixture(scope="session")
def chart() -> helm_python.Chart:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> Render:
    """Render the chart's templates with `values` over the defaults, as `helm install` would."""

    def _render(values: dict[str, Any]) -> list[Manifest]:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return [
            document
            for path, text in sorted(rendered.items())
            if not path.endswith("NOTES.txt")
            for document in yaml.safe_load_all(text)
            if document
        ]

    return _render


def inference_env(tts: Manifest) -> dict[str, str]:
    """The inference container's environment the operator renders for a TTSDeployment the chart made."""
    owner = builders.Owner.of({**tts, "metadata": {**tts["metadata"], "uid": "chart-test"}})
    deployment = builders.deployment(owner, checked_spec(TTS_DEPLOYMENT, tts), None)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container["env"]}


@pytest.fixture(scope="session")
def chart_crds(chart: helm_python.Chart) -> dict[str, Manifest]:
    """The CRDs the chart installs, by kind."""
    crds = [doc for crd in chart.crds for doc in yaml.safe_load_all(crd["data"]) if doc]
    return {crd["spec"]["names"]["kind"]: crd for crd in crds}


@pytest.fixture(scope="session")
def inference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `chatterbox-server` process on random:tiny weights (the server tests' launcher)."""
    from server.conftest import start_server

    server = start_server(tmp_path_factory.mktemp("inference-server"))
    yield server
    server.stop()
