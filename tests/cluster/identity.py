"""Credentials for a ServiceAccount the chart renders, bound to exactly the chart's (Cluster)Roles.

The operator under test logs in with them, so a permission missing from the chart fails a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cluster.client import KubeClient

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def install_rbac(kube: KubeClient, manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the ServiceAccount and RBAC objects among `manifests`; returns the ServiceAccount."""
    accounts = [m for m in manifests if m["kind"] == "ServiceAccount"]
    if len(accounts) != 1:
        raise ValueError(f"expected one ServiceAccount in the rendered chart, found {len(accounts)}")
    namespaces = {
        m["metadata"]["namespace"]
        for m in manifests
        if m["kind"] in RBAC_KINDS - {"ClusterRole", "ClusterRoleBinding"}
    }
    for namespace in sorted(namespaces):
        kube.create_namespace(namespace)
    kube.apply_all(m for m in manifests if m["kind"] in RBAC_KINDS)
    return accounts[0]


def service_account_token(kube: KubeClient, namespace: str, name: str, seconds: int = 7200) -> str:
    """A bound token for the ServiceAccount (the TokenRequest API, as a projected volume gets one)."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds},
    }
    answer = kube.call("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", request)
    return answer["status"]["token"]


def kubeconfig(
    server: str, ca_path: Path, user: dict[str, Any], path: Path, namespace: str | None = None
) -> Path:
    """Write a kubeconfig for `user` (e.g. {"token": ...} or {"exec": {...}})."""
    context: dict[str, Any] = {"cluster": "test", "user": "test"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "test", "cluster": {"server": server, "certificate-authority": str(ca_path)}}
                ],
                "users": [{"name": "test", "user": user}],
                "contexts": [{"name": "test", "context": context}],
                "current-context": "test",
            }
        )
    )
    path.chmod(0o600)
    return path
