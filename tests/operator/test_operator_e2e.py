"""The operator process against a real API server, controller-manager and scheduler, logged in as the
chart's ServiceAccount with exactly the chart's RBAC (a missing permission fails these tests). The test
kubelet (tests/cluster/kubelet.py) runs the pods the scheduler places and provisions claims."""

from __future__ import annotations

import urllib.parse

import pytest
from chatterbox_operator import resources as r
from cluster.client import ApiError, KubeClient, wait_for
from operator_harness import chart_accounts_calls, condition, describe, tts_deployment, voice_library

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]


def path(resource: r.Resource, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    return resource.path(namespace, name, sub)


def container_env(deployment: dict) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value") for item in container["env"]}


def wait_condition(kube: KubeClient, namespace: str, name: str, kind: str, **expected: str) -> dict:
    """The TTSDeployment once its condition `kind` has the expected fields (status, reason, ...)."""

    def matches() -> dict | None:
        tts = kube.get(path(r.TTS_DEPLOYMENTS, namespace, name))
        found = condition(tts, kind)
        return tts if all(found.get(key) == value for key, value in expected.items()) else None

    try:
        return wait_for(matches, timeout=45, what=f"{name}: {kind} {expected}")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}\n{describe(kube, namespace, name)}") from None


def warnings(kube: KubeClient, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in kube.events(namespace, name) if e["type"] == "Warning"]


def test_tts_deployment_lifecycle(kube: KubeClient, namespace: str, operator) -> None:
    created = kube.apply(tts_deployment("demo", modelCache={"size": "1Gi"}, gpu={"count": 1}), namespace)
    uid = created["metadata"]["uid"]

    # Children appear: owned by the TTSDeployment, applied server-side by the operator's field manager.
    deployment = wait_for(lambda: kube.get(path(r.DEPLOYMENTS, namespace, "demo")), what="the Deployment")
    for resource, name in [
        (r.DEPLOYMENTS, "demo"),
        (r.SERVICES, "demo"),
        (r.PDBS, "demo"),
        (r.PVCS, "demo-model-cache"),
    ]:
        child = wait_for(
            lambda resource=resource, name=name: kube.get(path(resource, namespace, name)), what=name
        )
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (uid, True, True)
        managers = {(m["manager"], m["operation"]) for m in child["metadata"]["managedFields"]}
        assert ("chatterbox-operator", "Apply") in managers, resource.kind
    claim = kube.get(path(r.PVCS, namespace, "demo-model-cache"))
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # works on every storage class
    assert kube.get(path(r.INGRESSES, namespace, "demo")) is None
    assert kube.get(path(r.HPAS, namespace, "demo")) is None
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert deployment["spec"]["progressDeadlineSeconds"] >= 1800  # the default model load timeout
    assert pod_spec["terminationGracePeriodSeconds"] >= 300 + 10  # request timeout + preStop pause

    # The scheduler puts the pod on a GPU node (tolerating its taint), the claim is provisioned there,
    # the kubelet runs it: Ready.
    tts = wait_condition(kube, namespace, "demo", "Ready", status="True")
    assert tts["status"]["readyReplicas"] == 1
    assert tts["status"]["observedGeneration"] == 1
    assert tts["status"]["url"] == f"http://demo.{namespace}.svc.cluster.local"
    (pod,) = kube.items(path(r.PODS, namespace), labelSelector="app.kubernetes.io/instance=demo")
    assert pod["spec"]["nodeName"].startswith("gpu-node")

    # A spec change rolls out: a new pod template, a new pod, observedGeneration follows.
    kube.call(
        "PATCH",
        path(r.TTS_DEPLOYMENTS, namespace, "demo"),
        {"spec": {"model": {"dtype": "bfloat16"}}},
        content_type="application/merge-patch+json",
    )

    def rolled_out() -> dict | None:
        current = kube.get(path(r.DEPLOYMENTS, namespace, "demo"))
        status = current.get("status", {})
        done = (
            container_env(current)["DTYPE"] == "bfloat16"
            and status.get("observedGeneration") == current["metadata"]["generation"]
            and status.get("updatedReplicas") == status.get("readyReplicas") == status.get("replicas") == 1
        )
        return current if done else None

    wait_for(rolled_out, timeout=45, what="the bfloat16 rollout")
    tts = wait_condition(kube, namespace, "demo", "Progressing", status="False", observedGeneration=2)
    assert condition(tts, "Ready")["status"] == "True"

    # `kubectl scale`: the scale subresource.
    kube.call(
        "PATCH",
        path(r.TTS_DEPLOYMENTS, namespace, "demo", "scale"),
        {"spec": {"replicas": 2}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        lambda: kube.get(path(r.DEPLOYMENTS, namespace, "demo"))["spec"]["replicas"] == 2, what="2 replicas"
    )
    tts = wait_for(
        lambda: (
            (t := kube.get(path(r.TTS_DEPLOYMENTS, namespace, "demo")))["status"].get("readyReplicas") == 2
            and t
        ),
        timeout=45,
        what="2 ready replicas",
    )
    scale = kube.call("GET", path(r.TTS_DEPLOYMENTS, namespace, "demo", "scale"))
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (2, 2)
    assert (
        scale["status"]["selector"]
        == "app.kubernetes.io/name=chatterbox-inference,app.kubernetes.io/instance=demo"
    )

    # Optional children follow the spec: an Ingress switched on appears, switched off it goes, as does
    # the PodDisruptionBudget.
    kube.call(
        "PATCH",
        path(r.TTS_DEPLOYMENTS, namespace, "demo"),
        {"spec": {"ingress": {"enabled": True, "host": "tts.example.com"}}},
        content_type="application/merge-patch+json",
    )
    ingress = wait_for(lambda: kube.get(path(r.INGRESSES, namespace, "demo")), what="the Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "tts.example.com"
    kube.call(
        "PATCH",
        path(r.TTS_DEPLOYMENTS, namespace, "demo"),
        {"spec": {"ingress": {"enabled": False}, "podDisruptionBudget": {"enabled": False}}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        lambda: (
            kube.get(path(r.INGRESSES, namespace, "demo")) is None
            and kube.get(path(r.PDBS, namespace, "demo")) is None
        ),
        what="the Ingress and PDB removed",
    )

    # Drift: a deleted Service comes back, a hand-edited Deployment is put back.
    kube.delete(path(r.SERVICES, namespace, "demo"))
    kube.call(
        "PATCH",
        path(r.DEPLOYMENTS, namespace, "demo"),
        {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 5}}}},
        content_type="application/merge-patch+json",
    )
    wait_for(lambda: kube.get(path(r.SERVICES, namespace, "demo")), what="the Service restored")
    wait_for(
        lambda: (
            kube.get(path(r.DEPLOYMENTS, namespace, "demo"))["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
            == 0
        ),
        what="maxSurge restored to 0",
    )

    # An invalid change is refused by the API server, not accepted and reported later.
    with pytest.raises(ApiError) as refused:
        kube.call(
            "PATCH",
            path(r.TTS_DEPLOYMENTS, namespace, "demo"),
            {"spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
            content_type="application/merge-patch+json",
        )
    assert refused.value.status == 422
    assert (
        "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"
        in refused.value.message
    )

    # Deleting the TTSDeployment: the garbage collector removes every child through its owner reference.
    kube.delete(path(r.TTS_DEPLOYMENTS, namespace, "demo"))

    def children_gone() -> bool:
        return all(
            kube.get(path(resource, namespace, name)) is None
            for resource, name in [
                (r.DEPLOYMENTS, "demo"),
                (r.SERVICES, "demo"),
                (r.PVCS, "demo-model-cache"),
            ]
        ) and not kube.items(path(r.PODS, namespace))

    wait_for(children_gone, timeout=60, what="the children garbage-collected")


def test_autoscaling_owns_the_replica_count(kube: KubeClient, namespace: str, operator) -> None:
    spec = {"gpu": {"count": 0}, "resources": {"cpu": "1", "memory": "1Gi"}}
    kube.apply(
        tts_deployment("auto", autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 5}, **spec),
        namespace,
    )
    hpa = wait_for(lambda: kube.get(path(r.HPAS, namespace, "auto")), what="the HPA")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "auto"}
    assert hpa["spec"]["minReplicas"] == 2

    # The operator leaves the Deployment's replicas to the HPA; what the HPA sets is not reset.
    kube.call(
        "PATCH",
        path(r.DEPLOYMENTS, namespace, "auto", "scale"),
        {"spec": {"replicas": 3}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        lambda: (
            (t := kube.get(path(r.TTS_DEPLOYMENTS, namespace, "auto")))["status"].get("readyReplicas") == 3
            and condition(t, "Ready")["status"] == "True"
        ),
        timeout=45,
        what="3 ready replicas",
    )

    # spec.replicas (`kubectl scale`, a GitOps manifest) is refused while the HPA owns the count.
    for method, target, body, content_type in [
        (
            "PATCH",
            path(r.TTS_DEPLOYMENTS, namespace, "auto", "scale"),
            {"spec": {"replicas": 1}},
            "application/merge-patch+json",
        ),
        (
            "PATCH",
            path(r.TTS_DEPLOYMENTS, namespace, "auto"),
            {"spec": {"replicas": 1}},
            "application/merge-patch+json",
        ),
    ]:
        with pytest.raises(ApiError) as refused:
            kube.call(method, target, body, content_type=content_type)
        assert "spec.replicas must be unset while autoscaling.enabled is true" in refused.value.message

    # Switched off, the HPA goes and spec.replicas is the operator's again.
    kube.call(
        "PATCH",
        path(r.TTS_DEPLOYMENTS, namespace, "auto"),
        {"spec": {"autoscaling": {"enabled": False}, "replicas": 1}},
        content_type="application/merge-patch+json",
    )
    wait_for(lambda: kube.get(path(r.HPAS, namespace, "auto")) is None, what="the HPA removed")
    wait_for(
        lambda: kube.get(path(r.DEPLOYMENTS, namespace, "auto"))["spec"]["replicas"] == 1, what="replicas 1"
    )


def test_pods_that_cannot_start_are_degraded_with_the_reason(
    kube: KubeClient, namespace: str, operator
) -> None:
    cpu = {"gpu": {"count": 0}, "resources": {"cpu": "1", "memory": "1Gi"}}
    kube.apply(tts_deployment("keys", apiKeys={"secretName": "api-keys", "limits": {}}, **cpu), namespace)
    kube.apply(tts_deployment("unpullable", image="registry.invalid/chatterbox:1", **cpu), namespace)
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]
    kube.apply(tts_deployment("config", env=env, **cpu), namespace)

    # The API key Secret is missing: the pod never gets past ContainerCreating (FailedMount).
    tts = wait_condition(kube, namespace, "keys", "Degraded", status="True", reason="FailedMount")
    assert 'secret "api-keys" not found' in condition(tts, "Degraded")["message"]
    assert condition(tts, "Ready")["status"] == "False"
    wait_for(lambda: "FailedMount" in warnings(kube, namespace, "keys"), what="a FailedMount Warning event")
    tts = wait_condition(kube, namespace, "unpullable", "Degraded", status="True")
    assert condition(tts, "Degraded")["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "registry.invalid" in condition(tts, "Degraded")["message"]
    tts = wait_condition(
        kube, namespace, "config", "Degraded", status="True", reason="CreateContainerConfigError"
    )
    assert 'secret "hf" not found' in condition(tts, "Degraded")["message"]

    # Fixed: the Secret exists, the kubelet mounts it, the pod starts, the problem clears.
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "api-keys"},
        "stringData": {"api-keys": "k"},
    }
    kube.apply(secret, namespace)
    tts = wait_condition(kube, namespace, "keys", "Ready", status="True")
    assert condition(tts, "Degraded")["status"] == "False"
    # Announced once, not on every resync.
    assert warnings(kube, namespace, "keys").count("FailedMount") == 1


def test_claims_that_cannot_be_provisioned_or_attached_are_degraded(
    kube: KubeClient, namespace: str, operator
) -> None:
    cpu = {"gpu": {"count": 0}, "resources": {"cpu": "1", "memory": "1Gi"}}
    # local-path (like EBS, GCE PD, Azure Disk) refuses ReadWriteMany: the pods would wait forever.
    kube.apply(
        tts_deployment("shared", modelCache={"size": "1Gi", "accessMode": "ReadWriteMany"}, **cpu), namespace
    )
    tts = wait_condition(
        kube, namespace, "shared", "Degraded", status="True", reason="ClaimProvisioningFailed"
    )
    assert "ReadWriteOnce" in condition(tts, "Degraded")["message"]
    wait_for(lambda: "ClaimProvisioningFailed" in warnings(kube, namespace, "shared"), what="a Warning event")

    # A StorageClass whose provisioner is not running (no CSI driver installed): the claim stays Pending
    # while the scheduler waits for it, and after CHATTERBOX_OPERATOR_CLAIM_PENDING_SECONDS that is a problem.
    unserved = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "no-driver"},
        "provisioner": "ebs.csi.example.com",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    kube.apply(unserved)
    cache = {"size": "1Gi", "storageClassName": "no-driver"}
    kube.apply(tts_deployment("waiting", modelCache=cache, **cpu), namespace)
    tts = wait_condition(kube, namespace, "waiting", "Degraded", status="True", reason="ClaimPending")
    assert (
        "PersistentVolumeClaim waiting-model-cache has been Pending" in condition(tts, "Degraded")["message"]
    )
    wait_for(lambda: "ClaimPending" in warnings(kube, namespace, "waiting"), what="a Warning event")

    # A ReadWriteOnce volume (a network disk: no node affinity) used by pods on two nodes: Multi-Attach.
    library = voice_library("voices", storage={"size": "1Gi", "storageClassName": "standard-immediate"})
    kube.apply(library, namespace)
    gpu = {"gpu": {"count": 1, "nodeSelector": {"kubernetes.io/hostname": "gpu-node-1"}}}
    kube.apply(tts_deployment("first", voiceLibraryRef={"name": "voices"}, **gpu), namespace)
    wait_condition(kube, namespace, "first", "Ready", status="True")
    gpu["gpu"]["nodeSelector"] = {"kubernetes.io/hostname": "gpu-node-2"}
    kube.apply(tts_deployment("second", voiceLibraryRef={"name": "voices"}, **gpu), namespace)
    tts = wait_condition(kube, namespace, "second", "Degraded", status="True", reason="MultiAttachError")
    assert "Volume is already used by pod(s) first-" in condition(tts, "Degraded")["message"]
    wait_for(lambda: "MultiAttachError" in warnings(kube, namespace, "second"), what="a Warning event")


def test_voice_library_reclaim_policies(kube: KubeClient, namespace: str, operator) -> None:
    kube.apply(voice_library("keep", storage={"size": "5Gi"}), namespace)
    kube.apply(voice_library("drop", storage={}, reclaimPolicy="Delete"), namespace)
    keep_claim = wait_for(lambda: kube.get(path(r.PVCS, namespace, "keep-voices")), what="claim keep-voices")
    assert keep_claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert keep_claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    wait_for(lambda: kube.get(path(r.PVCS, namespace, "drop-voices")), what="claim drop-voices")

    # A library on an existing claim adopts it as it is.
    backup = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "backup"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    kube.apply(backup, namespace)
    kube.apply(voice_library("imported", existingClaim="backup"), namespace)
    imported = wait_for(
        lambda: (
            (lib := kube.get(path(r.VOICE_LIBRARIES, namespace, "imported")))
            .get("status", {})
            .get("claimName")
            == "backup"
            and lib
        ),
        what="imported library status",
    )
    assert imported["status"]["phase"] == "Pending"  # WaitForFirstConsumer: bound with its first pod

    # A TTSDeployment using the library mounts its claim; its pod binds the claim; an unknown library
    # is reported.
    kube.apply(
        tts_deployment(
            "voiced",
            voiceLibraryRef={"name": "keep"},
            gpu={"count": 0},
            resources={"cpu": "1", "memory": "1Gi"},
        ),
        namespace,
    )
    kube.apply(tts_deployment("orphan", voiceLibraryRef={"name": "missing"}), namespace)
    deployment = wait_for(
        lambda: kube.get(path(r.DEPLOYMENTS, namespace, "voiced")), what="Deployment voiced"
    )
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["voices"]["persistentVolumeClaim"] == {"claimName": "keep-voices"}
    library = wait_for(
        lambda: (
            (lib := kube.get(path(r.VOICE_LIBRARIES, namespace, "keep"))).get("status", {}).get("phase")
            == "Bound"
            and lib
        ),
        timeout=45,
        what="VoiceLibrary keep Bound",
    )
    assert library["status"]["capacity"] == "5Gi"
    assert condition(library, "Ready")["status"] == "True"
    wait_condition(kube, namespace, "orphan", "Degraded", reason="VoiceLibraryNotFound")
    assert kube.get(path(r.DEPLOYMENTS, namespace, "orphan")) is None

    # Deleting a library in use is reported, not forced.
    kube.delete(path(r.VOICE_LIBRARIES, namespace, "keep"))

    def blocked() -> dict | None:
        lib = kube.get(path(r.VOICE_LIBRARIES, namespace, "keep"))
        return lib if condition(lib, "DeletionBlocked").get("reason") == "InUse" else None

    assert (
        "voiced" in condition(wait_for(blocked, what="DeletionBlocked InUse"), "DeletionBlocked")["message"]
    )

    # Once unused, Retain lets the library go and keeps the claim.
    kube.delete(path(r.TTS_DEPLOYMENTS, namespace, "voiced"))
    wait_for(
        lambda: kube.get(path(r.VOICE_LIBRARIES, namespace, "keep")) is None, timeout=45, what="keep deleted"
    )
    assert kube.get(path(r.PVCS, namespace, "keep-voices")) is not None

    # Delete removes the claim with the library.
    kube.delete(path(r.VOICE_LIBRARIES, namespace, "drop"))
    wait_for(
        lambda: (
            kube.get(path(r.VOICE_LIBRARIES, namespace, "drop")) is None
            and kube.get(path(r.PVCS, namespace, "drop-voices")) is None
        ),
        what="VoiceLibrary drop and its claim deleted",
    )


def test_service_monitor_follows_the_prometheus_operator(
    kube_cluster, kube: KubeClient, namespace: str, operator, prometheus_operator_crds
) -> None:
    cpu = {"gpu": {"count": 0}, "resources": {"cpu": "1", "memory": "1Gi"}}
    monitoring = {"labels": {"release": "kube-prometheus-stack"}}
    # Without the Prometheus Operator the monitoring group is not served: everything else still works.
    kube.apply(tts_deployment("plain", monitoring=monitoring, **cpu), namespace)
    wait_condition(kube, namespace, "plain", "Ready", status="True")
    kube_cluster.install_crds(prometheus_operator_crds)
    try:
        # Installed later: the operator notices, and its ServiceMonitor passes the real CRD's schema.
        monitor_path = kube.path("monitoring.coreos.com/v1", "ServiceMonitor", "plain", namespace)
        monitor = wait_for(lambda: kube.get(monitor_path), what="the ServiceMonitor")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["metadata"]["ownerReferences"][0]["name"] == "plain"
        assert monitor["spec"]["endpoints"][0]["port"] == "http"
        kube.call(
            "PATCH",
            path(r.TTS_DEPLOYMENTS, namespace, "plain"),
            {"spec": {"monitoring": {"serviceMonitor": False}}},
            content_type="application/merge-patch+json",
        )
        wait_for(lambda: kube.get(monitor_path) is None, what="the ServiceMonitor removed when switched off")
    finally:
        kube_cluster.remove_crds([crd["metadata"]["name"] for crd in prometheus_operator_crds])


def test_pods_get_uids_from_the_cluster_where_it_assigns_them(
    kube_cluster, kube: KubeClient, namespace: str, operator
) -> None:
    cpu = {"gpu": {"count": 0}, "resources": {"cpu": "1", "memory": "1Gi"}}
    kube.apply(tts_deployment("vanilla", **cpu), namespace)
    vanilla = wait_for(lambda: kube.get(path(r.DEPLOYMENTS, namespace, "vanilla")), what="Deployment vanilla")
    assert vanilla["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000
    # OpenShift serves security.openshift.io: its restricted-v2 SCC assigns UIDs and refuses others.
    scc = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "securitycontextconstraints.security.openshift.io"},
        "spec": {
            "group": "security.openshift.io",
            "scope": "Cluster",
            "names": {
                "kind": "SecurityContextConstraints",
                "plural": "securitycontextconstraints",
                "singular": "securitycontextconstraints",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    kube_cluster.install_crds([scc])
    try:
        kube.apply(tts_deployment("openshift", **cpu), namespace)

        def cluster_assigned() -> dict | None:
            found = kube.get(path(r.DEPLOYMENTS, namespace, "openshift")) or {
                "spec": {"template": {"spec": {}}}
            }
            context = found["spec"]["template"]["spec"].get("securityContext", {})
            return context if context and "runAsUser" not in context and "fsGroup" not in context else None

        context = wait_for(cluster_assigned, what="a pod template without fixed UIDs")
        assert context["runAsNonRoot"] is True
        # Still allowed by the namespace's Pod Security "restricted" level, and it runs.
        wait_condition(kube, namespace, "openshift", "Ready", status="True")
    finally:
        kube_cluster.remove_crds([scc["metadata"]["name"]])


def test_every_operator_call_is_in_the_rbac_table(kube_cluster) -> None:
    """Each request the operator sent (audit log) is a row of API_CALLS, and so granted by the chart."""
    calls = chart_accounts_calls(kube_cluster)
    assert calls, "run together with the other tests of this module"
    missing = sorted(call for call in calls if not r.allowed(*call))
    assert missing == [], f"calls missing from resources.API_CALLS: {missing}"


def test_deployments_and_pods_are_watched_by_label_only(kube_cluster, operator_identity) -> None:
    """The operator never lists or watches every Deployment or pod in the cluster: the API server sends
    it only those carrying its labels (the audit log shows each request's selector)."""
    requests = [
        entry["requestURI"]
        for entry in kube_cluster.plane.audit_events(operator_identity.username)
        if entry["verb"] in ("list", "watch")
        and (entry.get("objectRef") or {}).get("resource") in ("deployments", "pods")
    ]
    assert any("watch=" in uri for uri in requests), "run together with the other tests of this module"
    unselected = [uri for uri in requests if "labelSelector=" not in uri]
    assert unselected == []
    watches = [uri for uri in requests if "watch=" in uri]
    selector = "labelSelector=app.kubernetes.io/managed-by=chatterbox-operator"
    assert [uri for uri in watches if selector not in urllib.parse.unquote(uri)] == []
