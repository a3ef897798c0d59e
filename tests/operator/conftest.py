"""Fixtures for the operator tests: the real control plane (tests/conftest.py), the CRDs, the operator
running as the chart's ServiceAccount with exactly the chart's RBAC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import helm_python
import pytest
from cluster import chart as cluster_chart
from cluster import harness, identity
from cluster.client import KubeClient
from cluster.operator_process import OperatorProcess, running_operator
from operator_harness import OperatorIdentity

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kube(kube_cluster) -> KubeClient:
    """The cluster admin's client: the tests set things up and look at them with it."""
    return kube_cluster.admin


@pytest.fixture(scope="session")
def tts_crds(kube_cluster) -> list[dict]:
    """The repository's CRDs (the chart installs the same files), installed on the server."""
    crds = harness.load_yaml_documents(sorted((REPO / "crds").glob("*.yaml")))
    kube_cluster.install_crds(crds)
    return crds


@pytest.fixture(scope="session")
def rendered_chart() -> Iterator[object]:
    with helm_python.Chart.load(cluster_chart.CHART_DIR) as loaded:
        yield loaded


def chart_identity(
    kube_cluster, rendered_chart, values: dict, workdir: Path, release: str = cluster_chart.RELEASE
) -> OperatorIdentity:
    """Install the chart's ServiceAccount and RBAC for `values`; a kubeconfig with the account's token."""
    manifests = cluster_chart.render(rendered_chart, values, name=release)
    account = identity.install_rbac(kube_cluster.admin, manifests)
    namespace, name = account["metadata"]["namespace"], account["metadata"]["name"]
    token = identity.service_account_token(kube_cluster.admin, namespace, name)
    kubeconfig = identity.kubeconfig(
        kube_cluster.plane.url, kube_cluster.plane.ca_path, {"token": token}, workdir / f"{name}.kubeconfig"
    )
    return OperatorIdentity(f"system:serviceaccount:{namespace}:{name}", kubeconfig)


@pytest.fixture(scope="session")
def operator_identity(kube_cluster, rendered_chart, tts_crds, tmp_path_factory) -> OperatorIdentity:
    """The identity the chart gives the operator by default (cluster-wide)."""
    return chart_identity(kube_cluster, rendered_chart, {}, tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="module")
def operator(operator_identity, tmp_path_factory) -> Iterator[OperatorProcess]:
    """One operator as deployed by default (all namespaces, standalone) for the tests of a module."""
    with running_operator(operator_identity.kubeconfig, tmp_path_factory.mktemp("operator-run")) as handle:
        yield handle


@pytest.fixture
def namespace(kube_cluster) -> str:
    return kube_cluster.new_namespace("tts")
