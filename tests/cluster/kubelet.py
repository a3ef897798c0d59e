"""A test kubelet and storage provisioner for a control plane without nodes: `python -m cluster.kubelet`.

There is no container runtime here, so this process plays the two node-side parts the tests need, from
the same watches a real kubelet and provisioner use:
- **kubelet**: registers Node objects (CPU, memory, pods, `nvidia.com/gpu`); for each pod the scheduler
  places on one of them, reports what a kubelet would: Running and Ready, or stuck with the real waiting
  reasons and events: `FailedMount` for a missing Secret/ConfigMap volume, `CreateContainerConfigError`
  for a missing env reference, `ErrImagePull` then `ImagePullBackOff` for an image on an unresolvable host
  (`*.invalid`), and the attach/detach controller's `Multi-Attach error` for a ReadWriteOnce volume
  already in use on another node. Pods being deleted are removed, as a kubelet does once they stop.
- **provisioner** (the `rancher.io/local-path` behaviour): the default StorageClass `standard`
  (WaitForFirstConsumer: it provisions for the node the scheduler picked) and `standard-immediate`;
  ReadWriteMany claims are refused with a `ProvisioningFailed` event, and Released volumes are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

log = logging.getLogger("test-kubelet")

PROVISIONER = "rancher.io/local-path"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
GPU = "nvidia.com/gpu"
KUBELET_VERSION = "v1.36.2"
RESYNC_SECONDS = 1.0

# name -> (capacity, labels, taints). GPU nodes carry the taint GPU clusters commonly put on them.
DEFAULT_NODES: dict[str, tuple[dict[str, str], dict[str, str], list[dict[str, str]]]] = {
    "gpu-node-1": (
        {"cpu": "32", "memory": "256Gi", "pods": "250", GPU: "4"},
        {"nvidia.com/gpu.present": "true", "node.kubernetes.io/instance-type": "gpu-h100x4"},
        [{"key": GPU, "effect": "NoSchedule"}],
    ),
    "gpu-node-2": (
        {"cpu": "32", "memory": "256Gi", "pods": "250", GPU: "4"},
        {"nvidia.com/gpu.present": "true", "node.kubernetes.io/instance-type": "gpu-h100x4"},
        [{"key": GPU, "effect": "NoSchedule"}],
    ),
    "cpu-node-1": ({"cpu": "64", "memory": "256Gi", "pods": "250"}, {}, []),
}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_node(text: str) -> tuple[str, tuple[dict[str, str], dict[str, str], list[dict[str, str]]]]:
    """`NAME:cpu=8,memory=32Gi,pods=110,nvidia.com/gpu=2` (a GPU node also gets the GPU taint)."""
    name, _, resources = text.partition(":")
    capacity = dict(item.split("=", 1) for item in resources.split(",") if item)
    gpu = capacity.get(GPU, "0") != "0"
    return name, (
        capacity,
        {"nvidia.com/gpu.present": "true"} if gpu else {},
        [{"key": GPU, "effect": "NoSchedule"}] if gpu else [],
    )


class Kubelet:
    def __init__(self, http: httpx.AsyncClient, nodes: dict[str, Any]) -> None:
        self.http = http
        self.nodes = nodes
        self.ips = (f"10.244.{i // 250}.{i % 250 + 2}" for i in itertools.count())
        self.pod_ips: dict[str, str] = {}
        self.posted: set[tuple[str, str]] = set()  # (object uid, reason) already announced
        self.waiting: dict[str, dict[str, Any]] = {}  # uid -> pod still not running

    # -- API helpers ----------------------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json"):
        headers = {"Content-Type": content_type} if body is not None else {}
        response = await self.http.request(method, path, json=body, headers=headers)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    async def patch_status(self, path: str, status: dict[str, Any]) -> None:
        await self.call("PATCH", f"{path}/status", {"status": status}, "application/merge-patch+json")

    async def event(
        self, obj: dict[str, Any], reason: str, message: str, component: str, host: str = ""
    ) -> None:
        meta = obj["metadata"]
        if (meta["uid"], reason) in self.posted:
            return
        self.posted.add((meta["uid"], reason))
        namespace = meta.get("namespace", "default")
        stamp = now()
        await self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion", "v1"),
                    "kind": obj.get("kind", "Pod"),
                    "name": meta["name"],
                    "namespace": namespace,
                    "uid": meta["uid"],
                },
                "reason": reason,
                "message": message,
                "type": "Warning",
                "source": {"component": component, **({"host": host} if host else {})},
                "reportingComponent": component,
                "reportingInstance": host or component,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
        )

    async def watch(self, path: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """List then watch, forever: every object once as ADDED, then every change."""
        while True:
            listing = await self.call("GET", path)
            for item in listing["items"]:
                yield "ADDED", item
            params = {"watch": "1", "resourceVersion": listing["metadata"]["resourceVersion"]}
            params["allowWatchBookmarks"] = "false"
            try:
                async with self.http.stream("GET", path, params=params, timeout=None) as response:
                    async for line in response.aiter_lines():
                        if line:
                            event = json.loads(line)
                            if event["type"] == "ERROR":
                                break
                            yield event["type"], event["object"]
            except httpx.HTTPError as error:
                log.info("watch %s ended: %s", path, error)
            await asyncio.sleep(0.2)

    # -- nodes ----------------------------------------------------------------------------------------

    async def register_nodes(self) -> None:
        for index, (name, (capacity, labels, taints)) in enumerate(self.nodes.items()):
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        **labels,
                    },
                },
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "conditions": [self._ready_condition()],
                    "addresses": [
                        {"type": "InternalIP", "address": f"127.0.1.{index + 1}"},
                        {"type": "Hostname", "address": name},
                    ],
                    "nodeInfo": {
                        "kubeletVersion": KUBELET_VERSION,
                        "containerRuntimeVersion": "test://1.0",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "kernelVersion": "",
                        "osImage": "test",
                        "kubeProxyVersion": "",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                    },
                },
            }
            if await self.call("GET", f"/api/v1/nodes/{name}") is None:
                await self.call("POST", "/api/v1/nodes", node)
            # TaintNodesByCondition marks new Nodes not-ready; this kubelet is ready at once.
            await self.call(
                "PATCH",
                f"/api/v1/nodes/{name}",
                {"spec": {"taints": taints or None}},
                "application/merge-patch+json",
            )
            await self.patch_status(f"/api/v1/nodes/{name}", node["status"])

    @staticmethod
    def _ready_condition() -> dict[str, str]:
        stamp = now()
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }

    # -- pods -----------------------------------------------------------------------------------------

    async def run_pods(self) -> None:
        async for kind, pod in self.watch("/api/v1/pods"):
            if pod["spec"].get("nodeName") not in self.nodes:
                continue
            if kind == "DELETED":
                self.waiting.pop(pod["metadata"]["uid"], None)
                continue
            try:
                await self.sync_pod(pod)
            except Exception:  # keep serving the other pods
                log.exception("pod %s/%s", pod["metadata"]["namespace"], pod["metadata"]["name"])

    async def resync_waiting(self) -> None:
        """Real kubelets retry: a Secret created later lets the pod start, an image pull backs off."""
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for uid, pod in list(self.waiting.items()):
                meta = pod["metadata"]
                current = await self.call(
                    "GET", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
                )
                if current is None or current["metadata"]["uid"] != uid:
                    self.waiting.pop(uid, None)
                    continue
                with contextlib.suppress(Exception):
                    await self.sync_pod(current)

    async def sync_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if meta.get("deletionTimestamp"):
            # The containers "stopped": remove the pod, as the kubelet does after the grace period.
            self.waiting.pop(meta["uid"], None)
            body = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta["uid"]},
            }
            await self.call("DELETE", path, body)
            return
        if _is_ready(pod) or pod["status"].get("phase") in ("Succeeded", "Failed"):
            return
        node = pod["spec"]["nodeName"]
        blocked = await self.blocked(pod, node)
        if blocked is None:
            self.waiting.pop(meta["uid"], None)
            await self.patch_status(path, self.running_status(pod, node))
            return
        self.waiting[meta["uid"]] = pod
        reason, message = blocked
        status = self.waiting_status(pod, node, reason, message)
        if _same_waiting(pod, reason):
            return
        await self.patch_status(path, status)

    async def blocked(self, pod: dict[str, Any], node: str) -> tuple[str, str] | None:
        """Why the pod's containers cannot start yet (waiting reason, message), or None."""
        meta, spec = pod["metadata"], pod["spec"]
        namespace = meta["namespace"]
        for volume in spec.get("volumes", []):
            missing = await self._missing_source(namespace, volume)
            if missing:
                await self.event(
                    pod,
                    "FailedMount",
                    f'MountVolume.SetUp failed for volume "{volume["name"]}" : {missing}',
                    "kubelet",
                    node,
                )
                return "ContainerCreating", ""
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                other = await self._exclusive_user_elsewhere(namespace, claim, pod, node)
                if other:
                    await self.event(pod, "FailedAttachVolume", other, "attachdetach-controller")
                    return "ContainerCreating", ""
        for container in spec.get("containers", []):
            missing = await self._missing_env(namespace, container)
            if missing:
                return "CreateContainerConfigError", missing
            image = container["image"]
            host = image.split("/", 1)[0] if "/" in image else ""
            if host.split(":")[0].endswith(".invalid"):
                if (meta["uid"], "Failed") in self.posted:  # the first pull failed: back off
                    await self.event(pod, "BackOff", f'Back-off pulling image "{image}"', "kubelet", node)
                    return "ImagePullBackOff", f'Back-off pulling image "{image}"'
                message = (
                    f'failed to pull and unpack image "{image}": failed to resolve reference "{image}":'
                    f" dial tcp: lookup {host.split(':')[0]}: no such host"
                )
                await self.event(pod, "Failed", f'Failed to pull image "{image}": {message}', "kubelet", node)
                return "ErrImagePull", message
        return None

    async def _missing_source(self, namespace: str, volume: dict[str, Any]) -> str | None:
        for key, kind, name_key in (("secret", "secrets", "secretName"), ("configMap", "configmaps", "name")):
            source = volume.get(key)
            if source and not source.get("optional"):
                name = source[name_key]
                if await self.call("GET", f"/api/v1/namespaces/{namespace}/{kind}/{name}") is None:
                    return f'{key} "{name}" not found'
        return None

    async def _missing_env(self, namespace: str, container: dict[str, Any]) -> str | None:
        for item in container.get("env", []):
            for ref_key, kind, label in (
                ("secretKeyRef", "secrets", "secret"),
                ("configMapKeyRef", "configmaps", "configmap"),
            ):
                ref = (item.get("valueFrom") or {}).get(ref_key)
                if not ref or ref.get("optional"):
                    continue
                found = await self.call("GET", f"/api/v1/namespaces/{namespace}/{kind}/{ref['name']}")
                if found is None:
                    return f'{label} "{ref["name"]}" not found'
                if ref["key"] not in (found.get("data") or {}) | (found.get("stringData") or {}):
                    return f"couldn't find key {ref['key']} in {label.capitalize()} {namespace}/{ref['name']}"
        return None

    async def _exclusive_user_elsewhere(
        self, namespace: str, claim: str, pod: dict[str, Any], node: str
    ) -> str | None:
        """The attach/detach controller's Multi-Attach error: a ReadWriteOnce volume attached elsewhere."""
        found = await self.call("GET", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        volume_name = (found or {}).get("spec", {}).get("volumeName")
        if not volume_name:
            return None
        volume = await self.call("GET", f"/api/v1/persistentvolumes/{volume_name}")
        modes = set((volume or {}).get("spec", {}).get("accessModes", []))
        if not modes or modes - {"ReadWriteOnce", "ReadWriteOncePod"}:
            return None
        pods = (await self.call("GET", f"/api/v1/namespaces/{namespace}/pods"))["items"]
        users = [
            other["metadata"]["name"]
            for other in pods
            if other["metadata"]["uid"] != pod["metadata"]["uid"]
            and other["spec"].get("nodeName") not in (None, node)
            and not other["metadata"].get("deletionTimestamp")
            and _is_ready(other)
            and any(
                (v.get("persistentVolumeClaim") or {}).get("claimName") == claim
                for v in other["spec"].get("volumes", [])
            )
        ]
        if not users:
            return None
        return f'Multi-Attach error for volume "{volume_name}" Volume is already used by pod(s) {", ".join(users)}'

    def _ip(self, pod: dict[str, Any]) -> str:
        return self.pod_ips.setdefault(pod["metadata"]["uid"], next(self.ips))

    def _base_status(self, pod: dict[str, Any], node: str) -> dict[str, Any]:
        index = list(self.nodes).index(node)
        return {
            "hostIP": f"127.0.1.{index + 1}",
            "podIP": self._ip(pod),
            "podIPs": [{"ip": self._ip(pod)}],
            "startTime": pod["status"].get("startTime") or now(),
            "qosClass": pod["status"].get("qosClass", "Burstable"),
        }

    def running_status(self, pod: dict[str, Any], node: str) -> dict[str, Any]:
        stamp = now()
        return {
            **self._base_status(pod, node),
            "phase": "Running",
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": stamp}
                for kind in (
                    "PodReadyToStartContainers",
                    "Initialized",
                    "ContainersReady",
                    "Ready",
                    "PodScheduled",
                )
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": f"{c['image']}@sha256:{'0' * 64}",
                    "containerID": f"test://{pod['metadata']['uid'][:8]}-{c['name']}",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": stamp}},
                }
                for c in pod["spec"]["containers"]
            ],
        }

    def waiting_status(self, pod: dict[str, Any], node: str, reason: str, message: str) -> dict[str, Any]:
        stamp = now()
        not_ready = {
            "status": "False",
            "reason": "ContainersNotReady",
            "lastTransitionTime": stamp,
            "message": f"containers with unready status: [{pod['spec']['containers'][0]['name']}]",
        }
        return {
            **self._base_status(pod, node),
            "phase": "Pending",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "Ready", **not_ready},
                {"type": "ContainersReady", **not_ready},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}},
                }
                for c in pod["spec"]["containers"]
            ],
        }

    # -- storage --------------------------------------------------------------------------------------

    async def install_storage_classes(self) -> None:
        for name, mode, default in (
            ("standard", "WaitForFirstConsumer", "true"),
            ("standard-immediate", "Immediate", "false"),
        ):
            await self.call(
                "PATCH",
                f"/apis/storage.k8s.io/v1/storageclasses/{name}?fieldManager=test-provisioner&force=true",
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {
                        "name": name,
                        "annotations": {"storageclass.kubernetes.io/is-default-class": default},
                    },
                    "provisioner": PROVISIONER,
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": mode,
                },
                "application/apply-patch+yaml",
            )

    async def run_claims(self) -> None:
        classes: dict[str, dict[str, Any]] = {}
        async for kind, claim in self.watch("/api/v1/persistentvolumeclaims"):
            spec, meta = claim["spec"], claim["metadata"]
            if kind == "DELETED" or spec.get("volumeName") or meta.get("deletionTimestamp"):
                continue
            class_name = spec.get("storageClassName")
            if class_name and class_name not in classes:
                found = await self.call("GET", f"/apis/storage.k8s.io/v1/storageclasses/{class_name}")
                if found is None:
                    continue
                classes[class_name] = found
            storage_class = classes.get(class_name or "")
            if storage_class is None or storage_class["provisioner"] != PROVISIONER:
                continue
            node = (meta.get("annotations") or {}).get(SELECTED_NODE)
            if storage_class.get("volumeBindingMode") == "WaitForFirstConsumer" and not node:
                continue
            try:
                await self.provision(claim, storage_class, node)
            except Exception:
                log.exception("claim %s/%s", meta["namespace"], meta["name"])

    async def provision(self, claim: dict[str, Any], storage_class: dict[str, Any], node: str | None) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        modes = spec.get("accessModes", [])
        if "ReadWriteMany" in modes or "ReadOnlyMany" in modes:
            await self.event(
                {**claim, "kind": "PersistentVolumeClaim"},
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{storage_class["metadata"]["name"]}":'
                " NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes",
                f"{PROVISIONER}_local-path-provisioner",
            )
            return
        name = f"pvc-{meta['uid']}"
        volume: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": modes,
                "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
                "storageClassName": storage_class["metadata"]["name"],
                "hostPath": {"path": f"/var/lib/local-path/{name}", "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        if node:
            volume["spec"]["nodeAffinity"] = {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            }
        if await self.call("GET", f"/api/v1/persistentvolumes/{name}") is None:
            await self.call("POST", "/api/v1/persistentvolumes", volume)

    async def run_volumes(self) -> None:
        """Delete Released volumes this provisioner made (reclaim policy Delete)."""
        async for kind, volume in self.watch("/api/v1/persistentvolumes"):
            annotations = volume["metadata"].get("annotations") or {}
            if (
                kind != "DELETED"
                and annotations.get(PROVISIONED_BY) == PROVISIONER
                and volume.get("status", {}).get("phase") == "Released"
                and volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
            ):
                await self.call("DELETE", f"/api/v1/persistentvolumes/{volume['metadata']['name']}")


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _same_waiting(pod: dict[str, Any], reason: str) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all(
        (s.get("state", {}).get("waiting") or {}).get("reason") == reason for s in statuses
    )


async def serve(server: str, ca: str, token: str, nodes: dict[str, Any], ready_file: str | None) -> None:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
    async with httpx.AsyncClient(
        base_url=server,
        verify=ca,
        headers={"Authorization": f"Bearer {token}", "User-Agent": "test-kubelet"},
        timeout=30,
        limits=limits,
    ) as http:
        kubelet = Kubelet(http, nodes)
        await kubelet.register_nodes()
        await kubelet.install_storage_classes()
        tasks = [
            asyncio.create_task(coro)
            for coro in (
                kubelet.run_pods(),
                kubelet.resync_waiting(),
                kubelet.run_claims(),
                kubelet.run_volumes(),
            )
        ]
        if ready_file:
            with open(ready_file, "w") as sink:
                sink.write("ready\n")
        await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument(
        "--node", action="append", default=[], help="NAME:cpu=8,memory=32Gi,pods=110,nvidia.com/gpu=2"
    )
    parser.add_argument("--ready-file", help="written once nodes and storage classes exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    nodes = dict(parse_node(text) for text in args.node) if args.node else DEFAULT_NODES
    with open(args.token_file) as source:
        token = source.read().strip()
    asyncio.run(serve(args.server, args.ca, token, nodes, args.ready_file))


if __name__ == "__main__":
    main()
