"""The test cluster itself: what the operator and chart tests rely on from it."""

from __future__ import annotations

import pytest

from cluster.client import ApiError, wait_for

pytestmark = pytest.mark.cluster


def pod(name: str, **spec) -> dict:
    container = {
        "name": "main",
        "image": spec.pop("image", "registry.example/app:1"),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], **spec},
    }


def waiting_reason(kube, namespace: str, name: str) -> str | None:
    found = kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}") or {}
    statuses = found.get("status", {}).get("containerStatuses") or [{}]
    return (statuses[0].get("state", {}).get("waiting") or {}).get("reason")


def test_nodes_advertise_cpu_memory_and_gpus(kube_cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in kube_cluster.admin.items("/api/v1/nodes")}
    gpu = [n for n in nodes.values() if n["status"]["allocatable"].get("nvidia.com/gpu")]
    assert gpu and all(
        n["spec"]["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}] for n in gpu
    )
    assert any("nvidia.com/gpu" not in n["status"]["allocatable"] for n in nodes.values())


def test_gpu_pod_is_scheduled_on_a_gpu_node_and_becomes_ready(kube_cluster) -> None:
    kube = kube_cluster.admin
    namespace = kube_cluster.new_namespace("harness")
    gpu_pod = pod(
        "gpu",
        container={"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    kube.apply(gpu_pod, namespace)

    def ready() -> dict | None:
        found = kube.get(f"/api/v1/namespaces/{namespace}/pods/gpu")
        conditions = {c["type"]: c["status"] for c in found.get("status", {}).get("conditions", [])}
        return found if conditions.get("Ready") == "True" else None

    placed = wait_for(ready, what="the GPU pod ready")
    assert placed["spec"]["nodeName"].startswith("gpu-node")


def test_pod_failures_have_real_container_states(kube_cluster) -> None:
    kube = kube_cluster.admin
    namespace = kube_cluster.new_namespace("harness")
    kube.apply(pod("unpullable", image="registry.invalid/app:1"), namespace)
    env = [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    kube.apply(pod("config", container={"env": env}), namespace)
    kube.apply(pod("mount", volumes=[{"name": "keys", "secret": {"secretName": "absent"}}]), namespace)
    wait_for(
        lambda: waiting_reason(kube, namespace, "unpullable") == "ImagePullBackOff", what="ImagePullBackOff"
    )
    wait_for(
        lambda: waiting_reason(kube, namespace, "config") == "CreateContainerConfigError", what="config error"
    )

    def failed_mount() -> list:
        return [e for e in kube.events(namespace, "mount") if e["reason"] == "FailedMount"]

    (event,) = wait_for(failed_mount, what="a FailedMount event")
    assert event["message"] == 'MountVolume.SetUp failed for volume "keys" : secret "absent" not found'
    # Like a kubelet, it retries: once the Secret exists, the pod starts.
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "absent"}, "data": {}}, namespace)
    wait_for(
        lambda: (
            waiting_reason(kube, namespace, "mount") is None
            and kube.get(f"/api/v1/namespaces/{namespace}/pods/mount")["status"]["phase"] == "Running"
        ),
        what="the pod running",
    )


def test_claims_bind_for_their_first_consumer_and_read_write_many_is_refused(kube_cluster) -> None:
    kube = kube_cluster.admin
    namespace = kube_cluster.new_namespace("harness")

    def claim(name: str, mode: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}},
        }

    kube.apply(claim("rwo", "ReadWriteOnce"), namespace)
    kube.apply(claim("rwx", "ReadWriteMany"), namespace)
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "rwo"}}]
    kube.apply(pod("user", volumes=volumes), namespace)
    kube.apply(
        pod("rwx-user", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "rwx"}}]), namespace
    )

    def bound() -> bool:
        found = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/rwo")
        return found["status"].get("phase") == "Bound"

    wait_for(bound, what="the ReadWriteOnce claim bound")

    def refused() -> list:
        return [e for e in kube.events(namespace, "rwx") if e["reason"] == "ProvisioningFailed"]

    (event,) = wait_for(refused, what="ProvisioningFailed for ReadWriteMany")
    assert "ReadWriteOnce" in event["message"]
    rwx = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/rwx")
    assert rwx["status"]["phase"] == "Pending"


def test_rbac_is_enforced(kube_cluster, tmp_path) -> None:
    from cluster.identity import service_account_token

    kube = kube_cluster.admin
    namespace = kube_cluster.new_namespace("harness")
    token = service_account_token(kube, namespace, "default")
    nobody = kube_cluster.client(token, "nobody")
    try:
        with pytest.raises(ApiError) as denied:
            nobody.call("GET", f"/api/v1/namespaces/{namespace}/pods")
        assert denied.value.status == 403
    finally:
        nobody.close()
