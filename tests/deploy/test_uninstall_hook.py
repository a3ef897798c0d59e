"""The chart's pre-delete hook: before `helm uninstall` removes the operator, a Job deletes the
TTSDeployments and VoiceLibraries and waits until the operator has released their finalizers.
(Run against a real API server with the operator in tests/deploy/test_cluster_install.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
from chatterbox_operator.schema import GROUP
from cluster import chart as cluster_chart
from cluster.client import MERGE_PATCH, wait_for

from .conftest import CHART_DIR, NAMESPACE, Manifest, Render
from .release import Release

HOOK_SCRIPT = CHART_DIR / "files" / "delete-custom-resources.py"
FINALIZER = f"{GROUP}/finalizer"


def by_kind(manifests: list[Manifest]) -> dict[str, list[Manifest]]:
    kinds: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        kinds.setdefault(manifest["kind"], []).append(manifest)
    return kinds


def hook_job(hooks: list[Manifest]) -> Manifest:
    (job,) = by_kind(hooks)["Job"]
    return job


def test_hook_runs_before_uninstall_and_cleans_up_after_itself(render_hooks: Render) -> None:
    hooks = render_hooks({})
    kinds = by_kind(hooks)
    assert set(kinds) == {"ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Job"}
    weights = {}
    for hook in hooks:
        annotations = hook["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        # Kept when it fails (to read its log), replaced on the next try, removed once it succeeded.
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        weights[hook["kind"]] = int(annotations["helm.sh/hook-weight"])
    assert all(weights["Job"] > weight for kind, weight in weights.items() if kind != "Job")


def test_hook_job_runs_the_script_in_the_operator_image(render: Render, render_hooks: Render) -> None:
    hooks = render_hooks({})
    job = hook_job(hooks)
    pod = job["spec"]["template"]["spec"]
    (account,) = by_kind(hooks)["ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    (operator,) = [d for d in render({}) if d["kind"] == "Deployment"]
    assert container["image"] == operator["spec"]["template"]["spec"]["containers"][0]["image"]
    (config_map,) = by_kind(hooks)["ConfigMap"]
    assert config_map["data"] == {HOOK_SCRIPT.name: HOOK_SCRIPT.read_text().rstrip("\n")}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "script"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "script"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert container["command"] == ["python", f"{mount['mountPath']}/{HOOK_SCRIPT.name}"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env == {"WATCH_NAMESPACES": "", "TIMEOUT_SECONDS": "240"}


def permissions(role: Manifest) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


ONLY_LIST_AND_DELETE = {
    (GROUP, plural, verb) for plural in ("ttsdeployments", "voicelibraries") for verb in ("list", "delete")
}


def test_hook_may_only_list_and_delete_the_custom_resources(render_hooks: Render) -> None:
    hooks = render_hooks({})
    (role,) = by_kind(hooks)["ClusterRole"]
    assert permissions(role) == ONLY_LIST_AND_DELETE
    (binding,) = by_kind(hooks)["ClusterRoleBinding"]
    (account,) = by_kind(hooks)["ServiceAccount"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]


def test_namespaced_operator_hook_cleans_only_the_watched_namespaces(render_hooks: Render) -> None:
    hooks = render_hooks({"operator": {"watchNamespaces": ["tts-a", "tts-b"]}})
    kinds = by_kind(hooks)
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    assert sorted(role["metadata"]["namespace"] for role in kinds["Role"]) == ["tts-a", "tts-b"]
    assert all(permissions(role) == ONLY_LIST_AND_DELETE for role in kinds["Role"])
    assert sorted(b["metadata"]["namespace"] for b in kinds["RoleBinding"]) == ["tts-a", "tts-b"]
    env = {
        item["name"]: item["value"]
        for item in hook_job(hooks)["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WATCH_NAMESPACES"] == "tts-a tts-b"


@pytest.mark.parametrize(
    "values",
    [{"uninstallHook": {"enabled": False}}, {"rbac": {"create": False}}],
    ids=["disabled", "no-rbac"],
)
def test_hook_can_be_left_out(values: dict[str, Any], render_hooks: Render) -> None:
    assert render_hooks(values) == []


@pytest.mark.cluster
def test_uninstall_leaves_nothing_terminating_on_a_real_cluster(
    kube_cluster: Any, chart: helm_python.Chart, tmp_path: Path
) -> None:
    """The chart's own TTSDeployment and VoiceLibrary, an operator watching only their namespace: `helm
    uninstall`'s hook deletes them (TTSDeployment first, since a library in use is kept) while the
    operator still releases their finalizers; the voice claim stays (reclaimPolicy Retain)."""
    kube = kube_cluster.admin
    namespace = kube_cluster.new_namespace("uninstall")
    values = {
        "operator": {"watchNamespaces": [namespace]},
        "ttsDeployment": {"enabled": True, "gpuCount": 0, "model": "random:tiny"},
        "voiceLibrary": {"enabled": True},
    }
    release = Release(kube_cluster, chart, "hooked", namespace, values, tmp_path)
    try:
        release.install()
        paths = {
            kind: kube.path("tts.chatterbox.dev/v1alpha1", kind, name, namespace)
            for kind, name in (("TTSDeployment", "chatterbox"), ("VoiceLibrary", "voices"))
        }
        for kind, path in paths.items():
            wait_for(
                lambda path=path: (
                    FINALIZER in (kube.get(path) or {}).get("metadata", {}).get("finalizers", [])
                ),
                what=f"the operator's finalizer on the {kind}",
            )
        claim = wait_for(
            lambda: (kube.get(paths["VoiceLibrary"]) or {}).get("status", {}).get("claimName"),
            what="the voice library's claim",
        )
        release.uninstall()
        operator_log = release.operator_log
    finally:
        release.close()
    assert all(kube.get(path) is None for path in paths.values()), "left behind (Terminating)"
    assert (
        "deleting ttsdeployments" in release.hook_output and "no voicelibraries left" in release.hook_output
    )
    assert kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}") is not None
    # Namespaced kopf lists and watches namespaces: the chart grants it in this mode.
    assert "Not enough permissions" not in operator_log and "Forbidden" not in operator_log


@pytest.mark.cluster
def test_hook_fails_clearly_when_the_operator_is_not_running(
    kube_cluster: Any, chart: helm_python.Chart, tmp_path: Path
) -> None:
    """Then `helm uninstall` fails (and keeps the release) with the objects named, instead of leaving
    them Terminating behind a removed operator."""
    kube = kube_cluster.admin
    namespace = kube_cluster.new_namespace("no-operator")
    values = {"operator": {"watchNamespaces": [namespace]}, "uninstallHook": {"timeoutSeconds": 10}}
    release = Release(kube_cluster, chart, "stopped", namespace, values, tmp_path)
    kube_cluster.install_crds(cluster_chart.crds(chart))
    tts = kube.apply(
        {
            "apiVersion": "tts.chatterbox.dev/v1alpha1",
            "kind": "TTSDeployment",
            "metadata": {"name": "orphan", "finalizers": [FINALIZER]},
            "spec": {"gpu": {"count": 0}, "model": {"source": "random:tiny"}},
        },
        namespace,
    )
    hooks = release.render(hooks=True)
    try:
        for hook in hooks:
            if hook["kind"] != "Job":
                kube.apply(hook, namespace)
        (job,) = [hook for hook in hooks if hook["kind"] == "Job"]
        result = release.run_job(job, hooks)
    finally:
        kube.call("PATCH", kube.path_of(tts), {"metadata": {"finalizers": None}}, content_type=MERGE_PATCH)
    assert result.returncode != 0
    assert f"{namespace}/orphan" in result.stderr and "Is the operator running?" in result.stderr
