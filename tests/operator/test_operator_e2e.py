"""The real operator process (kopf) against the Kubernetes emulator.

The emulator has no controllers: the tests play the Deployment controller and the volume binder by
writing status, and check what the operator does in response.
"""

from typing import Any

import kmock
import pytest
from chatterbox_operator import resources as r
from operator_harness import (
    NAMESPACE,
    Client,
    eventually,
    operator_calls,
    register_service_monitors,
    running_operator,
)

pytestmark = pytest.mark.e2e

TTS_API = "tts.chatterbox.dev/v1alpha1"


def tts_deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": TTS_API, "kind": "TTSDeployment", "metadata": {"name": name}, "spec": spec}


def voice_library(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": TTS_API, "kind": "VoiceLibrary", "metadata": {"name": name}, "spec": spec}


def condition(obj: dict | None, condition_type: str) -> dict:
    for item in (obj or {}).get("status", {}).get("conditions", []):
        if item["type"] == condition_type:
            return item
    return {}


def container_env(deployment: dict) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value") for item in container["env"]}


async def _contains(source, item: str) -> bool:
    return item in await source()


def assert_calls_covered_by_rbac_table(cluster, seen: set) -> None:
    calls = operator_calls(cluster)
    seen.update(calls)
    assert calls, "no operator requests were recorded"
    missing = sorted(call for call in calls if not r.allowed(*call))
    assert missing == [], f"calls missing from resources.API_CALLS: {missing}"


async def test_tts_deployment_lifecycle(emulator, client: Client, operator, rbac_calls_seen: set) -> None:
    register_service_monitors(emulator)
    created = await client.create(
        r.TTS_DEPLOYMENTS,
        tts_deployment("demo", replicas=1, modelCache={"size": "40Gi"}, gpu={"count": 1}),
    )
    uid = created["metadata"]["uid"]

    # Children appear, owned by the TTSDeployment, with the GPU limit.
    deployment = await eventually(lambda: client.get(r.DEPLOYMENTS, "demo"), what="the Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # A GPU pod batches by default; the queue bound and timeout come from the CRD defaults.
    serving_env = {
        key: container_env(deployment)[key] for key in ("MAX_CONCURRENT", "MAX_QUEUE", "REQUEST_TIMEOUT_S")
    }
    assert serving_env == {"MAX_CONCURRENT": "8", "MAX_QUEUE": "8", "REQUEST_TIMEOUT_S": "300"}
    for resource, name in [
        (r.DEPLOYMENTS, "demo"),
        (r.SERVICES, "demo"),
        (r.PDBS, "demo"),
        (r.SERVICE_MONITORS, "demo"),
        (r.PVCS, "demo-model-cache"),
    ]:
        child = await eventually(lambda resource=resource, name=name: client.get(resource, name), what=name)
        assert child["metadata"]["ownerReferences"][0]["uid"] == uid, resource.kind
    assert await client.get(r.INGRESSES, "demo") is None
    assert await client.get(r.HPAS, "demo") is None

    # Not ready yet; a pod that cannot get a GPU makes it Degraded.
    await client.create(
        r.PODS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "demo-abc", "labels": deployment["spec"]["template"]["metadata"]["labels"]},
            "status": {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
                    }
                ]
            },
        },
    )

    async def degraded_for_gpu() -> bool:
        tts = await client.get(r.TTS_DEPLOYMENTS, "demo")
        return condition(tts, "Degraded").get("reason") == "GPUUnschedulable" and tts

    tts = await eventually(degraded_for_gpu, what="Degraded GPUUnschedulable")
    assert condition(tts, "Ready")["status"] == "False"
    assert tts["status"]["observedGeneration"] == 1
    assert tts["status"]["url"] == "http://demo.speech.svc.cluster.local"
    await client.delete(r.PODS, "demo-abc")

    # The test plays the Deployment controller: the pods come up and the TTSDeployment is Ready.
    generation = deployment["metadata"]["generation"]
    ready = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": generation}
    await client.patch(r.DEPLOYMENTS, "demo", {"status": ready}, subresource="status")

    async def is_ready() -> dict | None:
        tts = await client.get(r.TTS_DEPLOYMENTS, "demo")
        return tts if condition(tts, "Ready").get("status") == "True" else None

    tts = await eventually(is_ready, what="Ready=True")
    assert tts["status"]["readyReplicas"] == 1
    assert condition(tts, "Degraded")["status"] == "False"

    # A spec change rolls out: new pod template, Ingress switched on, observedGeneration follows.
    await client.patch(
        r.TTS_DEPLOYMENTS,
        "demo",
        {"spec": {"model": {"dtype": "bfloat16"}, "ingress": {"enabled": True, "host": "tts.example.com"}}},
    )

    async def rolled_out() -> bool:
        current = await client.get(r.DEPLOYMENTS, "demo")
        return container_env(current)["DTYPE"] == "bfloat16"

    await eventually(rolled_out, what="DTYPE=bfloat16 in the Deployment")
    ingress = await eventually(lambda: client.get(r.INGRESSES, "demo"), what="the Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "tts.example.com"

    async def observed_generation_2() -> bool:
        tts = await client.get(r.TTS_DEPLOYMENTS, "demo")
        return tts["status"].get("observedGeneration") == 2

    await eventually(observed_generation_2, what="observedGeneration 2")

    # A new batch size rolls the pods: the Deployment gets a new pod template (and generation).
    before = await client.get(r.DEPLOYMENTS, "demo")
    await client.patch(r.TTS_DEPLOYMENTS, "demo", {"spec": {"serving": {"maxConcurrent": 12}}})

    async def batch_size_rolled_out() -> dict | None:
        current = await client.get(r.DEPLOYMENTS, "demo")
        return current if container_env(current)["MAX_CONCURRENT"] == "12" else None

    after = await eventually(batch_size_rolled_out, what="MAX_CONCURRENT=12 in the Deployment")
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert container_env(after)["MAX_QUEUE"] == "8"

    # Scale through the scale subresource, as kubectl scale and the HPA do.
    await client.patch(r.TTS_DEPLOYMENTS, "demo", {"spec": {"replicas": 3}}, subresource="scale")

    async def scaled() -> bool:
        return (await client.get(r.DEPLOYMENTS, "demo"))["spec"]["replicas"] == 3

    await eventually(scaled, what="Deployment replicas 3")
    scale = await client.call("GET", r.TTS_DEPLOYMENTS.path(NAMESPACE, "demo", "scale"))
    assert scale["spec"]["replicas"] == 3
    assert "app.kubernetes.io/instance=demo" in scale["status"]["selector"]

    # Drift: a deleted Service comes back, a hand-edited Deployment is put back.
    await client.delete(r.SERVICES, "demo")
    await client.patch(r.DEPLOYMENTS, "demo", {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 5}}}})
    await eventually(lambda: client.get(r.SERVICES, "demo"), what="the Service restored")

    async def strategy_restored() -> bool:
        current = await client.get(r.DEPLOYMENTS, "demo")
        return current["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0

    await eventually(strategy_restored, what="maxSurge restored to 0")

    # An invalid spec becomes a condition; the operator keeps running.
    await client.patch(
        r.TTS_DEPLOYMENTS,
        "demo",
        {"spec": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
    )

    async def invalid_reported() -> dict | None:
        tts = await client.get(r.TTS_DEPLOYMENTS, "demo")
        return tts if condition(tts, "Ready").get("reason") == "InvalidSpec" else None

    tts = await eventually(invalid_reported, what="Ready reason InvalidSpec")
    assert "minReplicas must be less than or equal to" in condition(tts, "Degraded")["message"]
    assert operator.process.poll() is None
    assert await client.get(r.HPAS, "demo") is None

    # Fixed: the HPA appears; switching the Ingress and monitoring off removes them.
    await client.patch(
        r.TTS_DEPLOYMENTS,
        "demo",
        {
            "spec": {
                "autoscaling": {"maxReplicas": 6},
                "ingress": {"enabled": False},
                "monitoring": {"serviceMonitor": False},
                "podDisruptionBudget": {"enabled": False},
            }
        },
    )
    hpa = await eventually(lambda: client.get(r.HPAS, "demo"), what="the HPA")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "TTSDeployment"

    async def optional_children_removed() -> bool:
        gone = [
            await client.get(resource, "demo") is None
            for resource in (r.INGRESSES, r.SERVICE_MONITORS, r.PDBS)
        ]
        return all(gone)

    await eventually(optional_children_removed, what="Ingress, ServiceMonitor and PDB removed")

    # The problem was announced as a Warning event on the TTSDeployment.
    async def warnings() -> list[str]:
        events = (await client.call("GET", f"/api/v1/namespaces/{NAMESPACE}/events"))["items"]
        return [
            e["reason"] for e in events if e["involvedObject"]["name"] == "demo" and e["type"] == "Warning"
        ]

    await eventually(lambda: _contains(warnings, "InvalidSpec"), what="an InvalidSpec event")
    # Posted once: not on every resync, nor twice when an update and a resync tick race.
    assert (await warnings()).count("InvalidSpec") == 1
    assert_calls_covered_by_rbac_table(emulator, rbac_calls_seen)


async def test_voice_library_reclaim_policies(
    emulator, client: Client, operator, rbac_calls_seen: set
) -> None:
    await client.create(r.VOICE_LIBRARIES, voice_library("keep", storage={"size": "5Gi"}))
    await client.create(r.VOICE_LIBRARIES, voice_library("drop", storage={}, reclaimPolicy="Delete"))
    keep_claim = await eventually(lambda: client.get(r.PVCS, "keep-voices"), what="claim keep-voices")
    assert keep_claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert keep_claim["spec"]["accessModes"] == ["ReadWriteMany"]
    await eventually(lambda: client.get(r.PVCS, "drop-voices"), what="claim drop-voices")

    # A library on an existing claim adopts it as it is.
    await client.create(
        r.PVCS, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "backup"}}
    )
    await client.create(r.VOICE_LIBRARIES, voice_library("imported", existingClaim="backup"))

    async def imported() -> dict | None:
        library = await client.get(r.VOICE_LIBRARIES, "imported")
        return library if library.get("status", {}).get("claimName") == "backup" else None

    assert (await eventually(imported, what="imported library status"))["status"]["phase"] == "Pending"

    # The test plays the volume binder.
    await client.patch(
        r.PVCS,
        "keep-voices",
        {"status": {"phase": "Bound", "capacity": {"storage": "5Gi"}}},
        subresource="status",
    )

    async def bound() -> dict | None:
        library = await client.get(r.VOICE_LIBRARIES, "keep")
        return library if library.get("status", {}).get("phase") == "Bound" else None

    library = await eventually(bound, what="VoiceLibrary Bound")
    assert library["status"]["claimName"] == "keep-voices"
    assert library["status"]["capacity"] == "5Gi"
    assert condition(library, "Ready")["status"] == "True"

    # A TTSDeployment using the library mounts its claim; an unknown library is reported.
    await client.create(r.TTS_DEPLOYMENTS, tts_deployment("voiced", voiceLibraryRef={"name": "keep"}))
    await client.create(r.TTS_DEPLOYMENTS, tts_deployment("orphan", voiceLibraryRef={"name": "missing"}))
    deployment = await eventually(lambda: client.get(r.DEPLOYMENTS, "voiced"), what="Deployment voiced")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["voices"]["persistentVolumeClaim"] == {"claimName": "keep-voices"}

    async def orphan_reported() -> bool:
        orphan = await client.get(r.TTS_DEPLOYMENTS, "orphan")
        return condition(orphan, "Degraded").get("reason") == "VoiceLibraryNotFound"

    await eventually(orphan_reported, what="VoiceLibraryNotFound")
    assert await client.get(r.DEPLOYMENTS, "orphan") is None

    # Deleting a library in use is reported, not forced.
    await client.delete(r.VOICE_LIBRARIES, "keep")

    async def blocked() -> bool:
        library = await client.get(r.VOICE_LIBRARIES, "keep")
        return condition(library, "DeletionBlocked").get("reason") == "InUse"

    await eventually(blocked, what="DeletionBlocked InUse")
    assert "voiced" in condition(await client.get(r.VOICE_LIBRARIES, "keep"), "DeletionBlocked")["message"]

    # Once unused, Retain lets the library go and keeps the claim.
    await client.delete(r.TTS_DEPLOYMENTS, "voiced")

    async def keep_gone() -> bool:
        return await client.get(r.VOICE_LIBRARIES, "keep") is None

    await eventually(keep_gone, what="VoiceLibrary keep deleted")
    assert await client.get(r.PVCS, "keep-voices") is not None

    # Delete removes the claim with the library.
    await client.delete(r.VOICE_LIBRARIES, "drop")

    async def drop_gone() -> bool:
        return (
            await client.get(r.VOICE_LIBRARIES, "drop") is None
            and await client.get(r.PVCS, "drop-voices") is None
        )

    await eventually(drop_gone, what="VoiceLibrary drop and its claim deleted")
    assert_calls_covered_by_rbac_table(emulator, rbac_calls_seen)


async def test_restarted_operator_converges(emulator, client: Client, tmp_path, rbac_calls_seen: set) -> None:
    """Work done while the operator was down (or cut short by a restart) is picked up on start."""
    await client.create(r.TTS_DEPLOYMENTS, tts_deployment("early", gpu={"count": 0}))
    async with running_operator(emulator, tmp_path):
        await eventually(lambda: client.get(r.SERVICES, "early"), what="the Service")
    # While it is down, its Service is deleted and the spec changes.
    await client.delete(r.SERVICES, "early")
    await client.patch(r.TTS_DEPLOYMENTS, "early", {"spec": {"replicas": 2}})
    async with running_operator(emulator, tmp_path):
        await eventually(lambda: client.get(r.SERVICES, "early"), what="the Service restored after restart")

        async def replicas_2() -> bool:
            return (await client.get(r.DEPLOYMENTS, "early"))["spec"]["replicas"] == 2

        await eventually(replicas_2, what="the change made while down")
    assert_calls_covered_by_rbac_table(emulator, rbac_calls_seen)


async def test_settings_removed_from_the_spec_leave_the_children(
    emulator, client: Client, operator, rbac_calls_seen: set
) -> None:
    """Server-side apply drops what the operator applied before and no longer renders (the emulator
    removes such fields as the apiserver does: R6 in kube_emulator)."""
    spec = {"gpu": {"count": 0, "nodeSelector": {"pool": "tts"}}, "env": [{"name": "EXTRA", "value": "1"}]}
    await client.create(r.TTS_DEPLOYMENTS, tts_deployment("pruned", **spec))

    def pod_spec(deployment: dict) -> dict:
        return deployment["spec"]["template"]["spec"]

    async def placed() -> dict | None:
        deployment = await client.get(r.DEPLOYMENTS, "pruned")
        return deployment if deployment and pod_spec(deployment).get("nodeSelector") else None

    deployment = await eventually(placed, what="the Deployment with its node selector")
    assert pod_spec(deployment)["nodeSelector"] == {"pool": "tts"}
    assert container_env(deployment)["EXTRA"] == "1"

    await client.patch(r.TTS_DEPLOYMENTS, "pruned", {"spec": {"gpu": {"nodeSelector": None}, "env": None}})

    async def pruned() -> dict | None:
        deployment = await client.get(r.DEPLOYMENTS, "pruned")
        return None if "nodeSelector" in pod_spec(deployment) else deployment

    deployment = await eventually(pruned, what="the node selector removed from the Deployment")
    assert "EXTRA" not in container_env(deployment)
    assert_calls_covered_by_rbac_table(emulator, rbac_calls_seen)


@pytest.mark.parametrize("namespaced", [True, False], ids=["namespaced", "cluster-wide"])
async def test_operator_in_a_peering_group(
    emulator, client: Client, tmp_path, namespaced: bool, rbac_calls_seen: set
) -> None:
    """`--peering` makes the operator a member of a hot-standby group (KopfPeering per namespace with
    `--namespace`, ClusterKopfPeering otherwise); `--namespace` restricts what it serves."""
    plural, kind = (
        ("kopfpeerings", "KopfPeering") if namespaced else ("clusterkopfpeerings", "ClusterKopfPeering")
    )
    emulator.resources[f"kopf.dev/v1/{plural}"] = kmock.ResourceInfo(
        kind=kind, singular=kind.lower(), namespaced=namespaced, verbs={"get", "list", "watch", "patch"}
    )
    peering = r.Resource("kopf.dev", "v1", plural, kind)
    peering_namespace = NAMESPACE if namespaced else None
    await client.create(
        peering,
        {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": "tts"}},
        namespace=peering_namespace,
    )
    for namespace in (NAMESPACE, "other"):
        namespace_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        await client.call("POST", "/api/v1/namespaces", namespace_object)
    scope = ["--namespace", NAMESPACE] if namespaced else []
    async with running_operator(emulator, tmp_path, *scope, "--peering", "tts", "--priority", "7"):
        await client.create(r.TTS_DEPLOYMENTS, tts_deployment("elsewhere"), namespace="other")
        await client.create(r.TTS_DEPLOYMENTS, tts_deployment("here"))
        await eventually(lambda: client.get(r.DEPLOYMENTS, "here"), what="the Deployment")

        async def announced() -> bool:
            members = (await client.get(peering, "tts", namespace=peering_namespace)).get("status", {})
            return any(member.get("priority") == 7 for member in members.values())

        await eventually(announced, what="the operator in the peering status")
        if not namespaced:
            await eventually(
                lambda: client.get(r.DEPLOYMENTS, "elsewhere", namespace="other"), what="elsewhere"
            )
    if namespaced:
        assert await client.get(r.DEPLOYMENTS, "elsewhere", namespace="other") is None
    assert_calls_covered_by_rbac_table(emulator, rbac_calls_seen)


def test_every_rbac_row_is_exercised(rbac_calls_seen: set) -> None:
    """Least privilege: the e2e tests above used every (group, resource, verb) of API_CALLS."""
    if not rbac_calls_seen:
        pytest.skip("run together with the other end-to-end tests of this module")
    unused = [
        (g, res, verb)
        for g, res, verbs in r.API_CALLS
        for verb in verbs
        if (g, res, verb) not in rbac_calls_seen
    ]
    assert unused == []
