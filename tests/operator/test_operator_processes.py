"""Operator processes started and stopped by the tests themselves: logged in through an exec-plugin
kubeconfig, with a resync period too long to matter, restarted, scoped to a namespace in a peering group.
The last test checks, over the whole session's audit log, that every RBAC row the chart grants is used."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from chatterbox_operator import resources as r
from cluster import identity
from cluster.client import KubeClient, wait_for
from cluster.operator_process import running_operator
from conftest import chart_identity
from operator_harness import chart_accounts_calls, condition, describe, tts_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

CPU = {"gpu": {"count": 0}, "resources": {"cpu": "1", "memory": "1Gi"}}
MERGE = "application/merge-patch+json"


def exec_plugin_kubeconfig(kube_cluster, token: str, workdir: Path) -> Path:
    """A kubeconfig whose user is an exec credential plugin, as EKS, GKE and AKS kubeconfigs are."""
    plugin = workdir / "credential-plugin.py"
    token_file = workdir / "token"
    token_file.write_text(token)
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
    plugin.write_text(
        "import json, pathlib\n"
        f"credential = {json.dumps(credential)}\n"
        f"credential['status'] = {{'token': pathlib.Path({str(token_file)!r}).read_text()}}\n"
        "print(json.dumps(credential))\n"
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }
    return identity.kubeconfig(
        kube_cluster.plane.url, kube_cluster.plane.ca_path, user, workdir / "exec.kubeconfig"
    )


def test_exec_plugin_login_and_status_from_watches_not_timers(
    kube_cluster, kube: KubeClient, operator_identity, namespace: str, tmp_path: Path
) -> None:
    token = operator_identity.kubeconfig.read_text().split("token: ")[1].split()[0]
    kubeconfig = exec_plugin_kubeconfig(kube_cluster, token, tmp_path)
    # No resync tick happens during this test: only events can move the status.
    with running_operator(kubeconfig, tmp_path, resync_seconds=3600):
        kube.apply(tts_deployment("watched", apiKeySecretRef={"name": "keys"}, **CPU), namespace)

        def status(kind: str, **expected: str) -> dict | None:
            tts = kube.get(r.TTS_DEPLOYMENTS.path(namespace, "watched"))
            found = condition(tts, kind)
            return tts if all(found.get(k) == v for k, v in expected.items()) else None

        # The pod cannot mount its API keys: reported from the pod watch.
        wait_for(
            lambda: status("Degraded", status="True", reason="FailedMount"), timeout=30, what="FailedMount"
        )
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys"},
            "stringData": {"api-keys": "k"},
        }
        kube.apply(secret, namespace)
        # The kubelet starts it; the Deployment and pod watches report Ready within seconds.
        try:
            tts = wait_for(lambda: status("Ready", status="True"), timeout=45, what="Ready from the watches")
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}\n{describe(kube, namespace, 'watched')}") from None
        assert condition(tts, "Degraded")["status"] == "False"


def test_restarted_operator_converges(
    kube: KubeClient, operator_identity, namespace: str, tmp_path: Path
) -> None:
    """Work done while the operator was down (or cut short by a restart) is picked up on start."""
    kube.apply(tts_deployment("early", **CPU), namespace)
    service = r.SERVICES.path(namespace, "early")
    with running_operator(operator_identity.kubeconfig, tmp_path):
        wait_for(lambda: kube.get(service), what="the Service")
    # While it is down, its Service is deleted and the spec changes.
    kube.delete(service)
    kube.call(
        "PATCH", r.TTS_DEPLOYMENTS.path(namespace, "early"), {"spec": {"replicas": 2}}, content_type=MERGE
    )
    with running_operator(operator_identity.kubeconfig, tmp_path):
        wait_for(lambda: kube.get(service), what="the Service restored after restart")
        wait_for(
            lambda: kube.get(r.DEPLOYMENTS.path(namespace, "early"))["spec"]["replicas"] == 2,
            what="the change made while down",
        )


@pytest.mark.parametrize("scoped", [True, False], ids=["namespaced", "cluster-wide"])
def test_operator_in_a_peering_group(
    kube_cluster, kube: KubeClient, rendered_chart, tts_crds, tmp_path: Path, scoped: bool
) -> None:
    """The chart's HA mode: kopf peering (a KopfPeering per watched namespace, or a ClusterKopfPeering),
    with the RBAC the chart renders for that mode; `--namespace` restricts what the operator serves."""
    here, elsewhere = kube_cluster.new_namespace("peer"), kube_cluster.new_namespace("other")
    values = {"operator": {"ha": {"enabled": True, "peeringName": "tts"}}}
    if scoped:
        values["operator"]["watchNamespaces"] = [here]
    release = "scoped" if scoped else "ha"
    peering_crds = [c for c in kube_cluster_crds(rendered_chart) if c["spec"]["group"] == "kopf.dev"]
    kube_cluster.install_crds(peering_crds)
    from cluster import chart as cluster_chart

    manifests = cluster_chart.render(rendered_chart, values, name=release)
    for peering in (m for m in manifests if m["kind"] in ("KopfPeering", "ClusterKopfPeering")):
        kube.apply(peering)
    account = chart_identity(kube_cluster, rendered_chart, values, tmp_path, release=release)
    args = ["--namespace", here] if scoped else []
    with running_operator(account.kubeconfig, tmp_path, *args, "--peering", "tts", "--priority", "7"):
        kube.apply(tts_deployment("here", **CPU), here)
        kube.apply(tts_deployment("elsewhere", **CPU), elsewhere)
        wait_for(lambda: kube.get(r.DEPLOYMENTS.path(here, "here")), what="the Deployment")
        peering = (
            kube.path("kopf.dev/v1", "KopfPeering", "tts", here)
            if scoped
            else kube.path("kopf.dev/v1", "ClusterKopfPeering", "tts")
        )
        wait_for(
            lambda: any(m.get("priority") == 7 for m in (kube.get(peering).get("status") or {}).values()),
            what="the operator in the peering status",
        )
        if not scoped:
            wait_for(lambda: kube.get(r.DEPLOYMENTS.path(elsewhere, "elsewhere")), what="elsewhere")
    if scoped:
        assert kube.get(r.DEPLOYMENTS.path(elsewhere, "elsewhere")) is None
    # The scoped account may not even read the other namespace: the chart's Roles cover only its own.
    kube.delete(r.TTS_DEPLOYMENTS.path(elsewhere, "elsewhere"))


def kube_cluster_crds(rendered_chart) -> list[dict]:
    from cluster import chart as cluster_chart

    return cluster_chart.crds(rendered_chart)


# Rows that are authorization checks made inside another request, so no request of their own appears in
# the audit log: OwnerReferencesPermissionEnforcement checks update on the owner's finalizers when a child
# with blockOwnerDeletion is applied (the e2e tests fail without it).
AUTHORIZATION_ONLY = {("tts.chatterbox.dev", "ttsdeployments/finalizers", "update")}


def test_every_rbac_row_is_used(request, kube_cluster) -> None:
    """Least privilege: over the session, the operator used every (group, resource, verb) of API_CALLS."""
    modules = {Path(item.fspath).name for item in request.session.items}
    if not {"test_operator_e2e.py", "test_operator_processes.py"} <= modules:
        pytest.skip("needs the whole operator end-to-end suite in the same session")
    used = chart_accounts_calls(kube_cluster)
    unused = [
        (group, resource, verb)
        for group, resource, verbs in r.API_CALLS
        for verb in verbs
        if (group, resource, verb) not in used | AUTHORIZATION_ONLY
    ]
    assert unused == []
