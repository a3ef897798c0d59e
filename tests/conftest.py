"""Fixtures shared by every test directory: one real Kubernetes control plane per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """etcd, kube-apiserver (RBAC, production admission plugins), controller-manager, scheduler, the test
    kubelet's Nodes and the local-path-like provisioner, started once and shared by the session.

    Skips with instructions when the binaries are not installed (see tests/cluster/control_plane.py)."""
    from cluster import control_plane, harness

    try:
        control_plane.find_kit()
    except control_plane.ControlPlaneUnavailable as missing:
        pytest.skip(str(missing))
    # A short path: etcd and the API server keep sockets and certificates under it.
    cluster = harness.start(tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def prometheus_operator_crds(kube_cluster) -> list[dict]:
    """The Prometheus Operator's CRD manifests (ServiceMonitor, PodMonitor, PrometheusRule), not installed:
    tests install them with `kube_cluster.install_crds` and remove them with `remove_crds`."""
    from cluster import control_plane, harness

    folder = control_plane.third_party_crds_dir()
    if folder is None:
        pytest.skip(
            "the Prometheus Operator CRDs are not beside the control plane binaries (shared/k8s/crds)"
        )
    return harness.load_yaml_documents(sorted(folder.glob("*.yaml")))
