"""The chart on a real API server (tests/conftest.py kube_cluster): what each tested value set renders,
hooks included, is accepted as `helm install` would create it (CRDs, RBAC, workloads, the custom
resources against their CEL rules, PodMonitor and PrometheusRule against the Prometheus Operator's own
CRDs); its pods pass the `restricted` Pod Security level without user IDs; and the operator's role may
set blockOwnerDeletion on the children it creates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
from cluster import chart as cluster_chart
from cluster import identity
from cluster.client import ApiError, KubeClient

from .conftest import Manifest
from .test_chart import COMBINATIONS

pytestmark = pytest.mark.cluster

WATCHED = ("tts-a", "tts-b")  # the namespaces COMBINATIONS name in operator.watchNamespaces


@pytest.fixture(scope="module")
def cluster(
    kube_cluster: Any, chart: helm_python.Chart, prometheus_operator_crds: list[Manifest]
) -> Iterator[Any]:
    """The test cluster with the chart's CRDs (as `helm install` applies crds/) and, for this module
    only, the Prometheus Operator's."""
    kube_cluster.install_crds(cluster_chart.crds(chart) + prometheus_operator_crds)
    yield kube_cluster
    kube_cluster.remove_crds([crd["metadata"]["name"] for crd in prometheus_operator_crds])


def dry_run_create(kube: KubeClient, manifest: Manifest, namespace: str | None = None) -> None:
    """POST as Helm creates each object, with dryRun=All: admission and validation run, nothing is stored."""
    meta = manifest["metadata"]
    path = kube.path(manifest["apiVersion"], manifest["kind"], namespace=meta.get("namespace", namespace))
    kube.call("POST", path, manifest, params={"dryRun": "All", "fieldManager": "helm"})


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_rendered_value_set_is_accepted(
    combination: str, cluster: Any, chart: helm_python.Chart
) -> None:
    kube = cluster.admin
    for namespace in (cluster_chart.NAMESPACE, *WATCHED):
        kube.create_namespace(namespace)
    values = COMBINATIONS[combination]
    # A release name of its own: nothing is stored, but names must not clash with other tests' objects.
    release = f"dry-{combination}"[:20]
    manifests = cluster_chart.render(chart, values, name=release) + cluster_chart.render(
        chart, values, name=release, hooks=True
    )
    refused = []
    for manifest in manifests:
        try:
            dry_run_create(kube, manifest, cluster_chart.NAMESPACE)
        except ApiError as error:
            refused.append(f"{manifest['kind']}/{manifest['metadata']['name']}: {error}")
    assert refused == []
    assert {m["kind"] for m in manifests} >= {"ClusterRole", "Deployment", "ServiceAccount"}


def pod_of(workload: Manifest) -> Manifest:
    template = workload["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": workload["metadata"]["name"], "labels": template["metadata"].get("labels", {})},
        "spec": template["spec"],
    }


@pytest.mark.parametrize("combination", ["defaults", "ha", "webui-ingress"])
def test_chart_pods_pass_restricted_pod_security(
    combination: str, cluster: Any, chart: helm_python.Chart
) -> None:
    """The namespace enforces the `restricted` level (as OpenShift's restricted-v2 does, which also
    refuses pods that pick their own user IDs); every pod the chart runs, the hook's included, is admitted."""
    kube = cluster.admin
    namespace = cluster.new_namespace("restricted")
    values = COMBINATIONS[combination]
    manifests = cluster_chart.render(chart, values, namespace=namespace) + cluster_chart.render(
        chart, values, namespace=namespace, hooks=True
    )
    workloads = [m for m in manifests if m["kind"] in ("Deployment", "Job")]
    assert workloads
    for workload in workloads:
        account = workload["spec"]["template"]["spec"].get("serviceAccountName", "default")
        kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}, namespace)
        dry_run_create(kube, pod_of(workload), namespace)


def owned_service(owner: Manifest) -> Manifest:
    """A child as the operator makes it: owned by the TTSDeployment, blocking its deletion until gone."""
    reference = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": owner["metadata"]["name"], "ownerReferences": [reference]},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}},
    }


def client_for(cluster: Any, manifests: list[Manifest], agent: str) -> KubeClient:
    account = identity.install_rbac(cluster.admin, manifests)
    meta = account["metadata"]
    return cluster.client(
        identity.service_account_token(cluster.admin, meta["namespace"], meta["name"]), agent
    )


def test_operator_role_lets_children_block_their_owners_deletion(
    cluster: Any, chart: helm_python.Chart, tmp_path: Path
) -> None:
    """OwnerReferencesPermissionEnforcement (on in the test API server, as in production clusters)
    refuses blockOwnerDeletion without `update` on the owner's finalizers subresource."""
    kube = cluster.admin
    namespace = cluster.new_namespace("owners")
    owner = kube.apply(
        {
            "apiVersion": "tts.chatterbox.dev/v1alpha1",
            "kind": "TTSDeployment",
            "metadata": {"name": "owner"},
            "spec": {"gpu": {"count": 0}, "model": {"source": "random:tiny"}},
        },
        namespace,
    )
    manifests = cluster_chart.render(chart, {"operator": {"watchNamespaces": [namespace]}}, name="owner-refs")
    operator = client_for(cluster, manifests, "chatterbox-operator")
    try:
        operator.apply(owned_service(owner), namespace, manager="chatterbox-operator")
    finally:
        operator.close()
    # The same role less that one rule: the API server refuses the child.
    for manifest in manifests:
        if manifest["kind"] == "Role":
            manifest["rules"] = [
                r for r in manifest["rules"] if not any("/finalizers" in x for x in r["resources"])
            ]
    lacking = client_for(cluster, [rename(m, "no-finalizers") for m in manifests], "no-finalizers")
    try:
        with pytest.raises(ApiError, match="cannot set blockOwnerDeletion") as refused:
            lacking.apply(
                {**owned_service(owner), "metadata": {**owned_service(owner)["metadata"], "name": "other"}},
                namespace,
            )
        assert refused.value.status == 403
    finally:
        lacking.close()
        kube.delete(kube.path_of(owner))


def rename(manifest: Manifest, name: str) -> Manifest:
    """The object under another name, its role references and subjects following."""
    renamed = {**manifest, "metadata": {**manifest["metadata"], "name": name}}
    if "roleRef" in manifest:
        renamed["roleRef"] = {**manifest["roleRef"], "name": name}
        renamed["subjects"] = [{**s, "name": name} for s in manifest["subjects"]]
    return renamed
