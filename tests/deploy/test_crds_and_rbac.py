"""The chart installs exactly the repository's CRDs (linked, never copied) and grants the operator
exactly the API calls it makes (its own table, `chatterbox_operator.resources.API_CALLS`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
from chatterbox_operator import builders
from chatterbox_operator.resources import API_CALLS
from chatterbox_operator.schema import GROUP, TTS_DEPLOYMENT
from chatterbox_operator.validation import checked_spec

from .conftest import CHART_DIR, REPO_ROOT, Manifest, Render

REPO_CRDS = sorted((REPO_ROOT / "crds").glob("*.yaml"))
CHART_CRDS_DIR = CHART_DIR / "crds"
# The one CRD file the chart owns itself: kopf's peering resources, for operator.ha.
CHART_OWN_CRDS = {"kopf-peering.yaml"}


def test_repository_crds_exist() -> None:
    assert REPO_CRDS, "crds/ holds no CRD manifests"


@pytest.mark.parametrize("repo_crd", REPO_CRDS, ids=lambda path: path.name)
def test_chart_links_each_repository_crd(repo_crd: Path) -> None:
    linked = CHART_CRDS_DIR / repo_crd.name
    assert linked.is_symlink(), f"{linked} must be a link to {repo_crd}, not a copy that can drift"
    assert linked.resolve() == repo_crd.resolve()


def test_chart_crds_are_the_repository_crds(chart: helm_python.Chart) -> None:
    installed = {Path(crd["filename"]).name: crd["data"] for crd in chart.crds}
    expected = {path.name: path.read_text() for path in REPO_CRDS}
    assert {name: data for name, data in installed.items() if name not in CHART_OWN_CRDS} == expected
    assert set(installed) == set(expected) | CHART_OWN_CRDS
    # Examples are custom resources, not CRDs; they must never be installed with the chart.
    assert not any("examples" in crd["filename"] for crd in chart.crds)


Permission = tuple[str, str, str]  # (API group, resource, verb)


def permissions(rules: list[dict[str, Any]]) -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def granted(manifests: list[Manifest], kind: str) -> dict[str, set[Permission]]:
    """Permissions of each Role/ClusterRole, keyed by namespace ('' for cluster-wide)."""
    return {
        m["metadata"].get("namespace", ""): permissions(m["rules"]) for m in manifests if m["kind"] == kind
    }


OPERATOR_CALLS = {(group, resource, verb) for group, resource, verbs in API_CALLS for verb in verbs}
# Not a call the operator makes, but what the API server's OwnerReferencesPermissionEnforcement
# admission requires of whoever sets blockOwnerDeletion on a child's ownerReference (kopf.adopt does).
OWNER_FINALIZERS = {
    (GROUP, f"{plural}/finalizers", "update") for plural in ("ttsdeployments", "voicelibraries")
}
# Rows of the operator's table that only apply in some modes (kopf's observation.namespace_observer):
# kopf lists and watches namespaces only when given --namespace (cluster-wide it never reads them),
# and each peering kind belongs to one scope.
NAMESPACED_MODE_ONLY = {call for call in OPERATOR_CALLS if call[1] in ("namespaces", "kopfpeerings")}
PEERING = {call for call in OPERATOR_CALLS if call[0] == "kopf.dev"}
CLUSTER_SCOPED = {
    call for call in OPERATOR_CALLS if call[1] in ("namespaces", "customresourcedefinitions")
} | {call for call in PEERING if call[1] == "clusterkopfpeerings"}
NEEDED = OPERATOR_CALLS | OWNER_FINALIZERS


def test_rbac_grants_exactly_the_operator_calls_cluster_wide(render: Render) -> None:
    (cluster_role,) = granted(render({}), "ClusterRole").values()
    assert cluster_role == NEEDED - PEERING - NAMESPACED_MODE_ONLY


def test_rbac_adds_cluster_peering_for_ha(render: Render) -> None:
    (cluster_role,) = granted(render({"operator": {"ha": {"enabled": True}}}), "ClusterRole").values()
    assert cluster_role == NEEDED - NAMESPACED_MODE_ONLY


def test_rbac_namespaced_mode_grants_roles_per_namespace(render: Render) -> None:
    values = {"operator": {"ha": {"enabled": True}, "watchNamespaces": ["tts-a", "tts-b"]}}
    manifests = render(values)
    roles = granted(manifests, "Role")
    assert set(roles) == {"tts-a", "tts-b"}
    namespaced = NEEDED - CLUSTER_SCOPED
    assert all(role == namespaced for role in roles.values())
    (cluster_role,) = granted(manifests, "ClusterRole").values()
    assert cluster_role == CLUSTER_SCOPED - PEERING


def test_bindings_point_at_the_operator_service_account(render: Render) -> None:
    manifests = render({"operator": {"watchNamespaces": ["tts-a"]}})
    (account,) = [m for m in manifests if m["kind"] == "ServiceAccount"]
    (operator,) = [m for m in manifests if m["kind"] == "Deployment"]
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    bindings = [m for m in manifests if m["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert len(bindings) == 2
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": account["metadata"]["namespace"],
            }
        ]


def test_rbac_can_be_left_to_the_cluster_admin(render: Render) -> None:
    manifests = render(
        {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "tts-operator"}}
    )
    assert {m["kind"] for m in manifests} == {"Deployment"}
    assert manifests[0]["spec"]["template"]["spec"]["serviceAccountName"] == "tts-operator"


def test_pod_monitor_selects_the_pods_the_operator_creates(render: Render) -> None:
    manifests = render({"monitoring": {"podMonitor": {"enabled": True}}})
    (monitor,) = [m for m in manifests if m["kind"] == "PodMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    pod_labels = builders.labels("chatterbox")
    assert selector.items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    owner = builders.Owner("TTSDeployment", "chatterbox", "ns", "uid")
    pod = builders.deployment(owner, checked_spec(TTS_DEPLOYMENT, {"spec": {}}), voice_claim=None)
    ports = pod["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert endpoint["port"] in {port["name"] for port in ports}
    assert endpoint["path"] == "/metrics"


def test_packaged_chart_carries_the_crd_contents(chart: helm_python.Chart, tmp_path: Path) -> None:
    """`helm package` (and so a chart repository or OCI push) follows the links."""
    archive = Path(chart.save(tmp_path))
    with helm_python.Chart.load_archive(archive.read_bytes()) as packaged:
        contents = {Path(crd["filename"]).name: crd["data"] for crd in packaged.crds}
    for repo_crd in REPO_CRDS:
        assert contents[repo_crd.name] == repo_crd.read_text()
