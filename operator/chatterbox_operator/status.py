"""Status of the custom resources, computed from what the operator observed. Pure functions.

Conditions follow the Kubernetes conventions: `type`, `status` ("True"/"False"/"Unknown"), a CamelCase
`reason`, a human `message`, `observedGeneration`, and a `lastTransitionTime` that only moves when
`status` flips. Status is written as a JSON merge patch, which replaces lists whole, so the full
condition list is always computed here.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
DELETION_BLOCKED = "DeletionBlocked"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Problem:
    """Why an object cannot be (fully) served: becomes the Degraded condition."""

    reason: str
    message: str


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    old: list[dict[str, Any]], new: list[Condition], generation: int | None, timestamp: str
) -> list[dict[str, Any]]:
    """The full condition list: `new` replaces same-typed old entries, others are kept."""
    previous = {item.get("type"): item for item in old or []}
    merged = {key: value for key, value in previous.items() if key not in {c.type for c in new}}
    for condition in new:
        status = "True" if condition.status else "False"
        before = previous.get(condition.type)
        changed = before is None or before.get("status") != status
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": timestamp if changed else before.get("lastTransitionTime", timestamp),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged[condition.type] = entry
    return list(merged.values())


def changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether writing `new` would change the stored status (unchanged conditions keep their timestamps,
    so a resync that found nothing new writes nothing)."""
    return any((old or {}).get(key) != value for key, value in new.items())


def find_condition(status: dict[str, Any] | None, condition_type: str) -> dict[str, Any]:
    """The condition of that type in a status dict, or {} when there is none."""
    for item in (status or {}).get("conditions", []):
        if item.get("type") == condition_type:
            return item
    return {}


def new_problem(
    old_status: dict[str, Any] | None, new_status: dict[str, Any], condition_type: str, bad: str
) -> bool:
    """Whether `condition_type` just turned `bad` (or stayed bad for a new reason): worth one Event,
    unlike every resync that finds the same problem again."""
    old, new = find_condition(old_status, condition_type), find_condition(new_status, condition_type)
    return new.get("status") == bad and (old.get("status") != bad or old.get("reason") != new.get("reason"))


# -- TTSDeployment ----------------------------------------------------------------------------------


# Container waiting reasons that do not clear by themselves: the pod will not start until someone acts.
STUCK_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# A pod stuck in ContainerCreating says why only in Warning events: its volumes (a missing Secret or
# ConfigMap, a claim that cannot mount) or, from the attach/detach controller, a ReadWriteOnce volume
# still attached to another node (Multi-Attach).
VOLUME_EVENT_REASONS = frozenset({"FailedMount", "FailedAttachVolume"})


def unschedulable(pods: list[dict[str, Any]], gpu_resource: str) -> Problem | None:
    """The scheduler's reason when a pod cannot be placed (e.g. no node with a free GPU)."""
    for pod in pods:
        for condition in pod.get("status", {}).get("conditions", []):
            if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
                message = condition.get("message", "")
                reason = "GPUUnschedulable" if gpu_resource in message else "Unschedulable"
                return Problem(reason, f"pod {pod['metadata']['name']}: {message}")
    return None


def stuck_container(pods: list[dict[str, Any]]) -> Problem | None:
    """A container that will not start until someone acts (bad image, missing config, crashing)."""
    for pod in pods:
        for container in pod.get("status", {}).get("containerStatuses", []):
            waiting = container.get("state", {}).get("waiting", {})
            if waiting.get("reason") in STUCK_WAITING_REASONS:
                detail = waiting.get("message", "")
                return Problem(
                    waiting["reason"], f"pod {pod['metadata']['name']}" + (f": {detail}" if detail else "")
                )
    return None


def waiting_to_start(pods: list[dict[str, Any]]) -> list[str]:
    """Names of the pods whose containers are still being created (volumes not yet mounted)."""
    return [
        pod["metadata"]["name"]
        for pod in pods
        if any(
            container.get("state", {}).get("waiting", {}).get("reason") == "ContainerCreating"
            for container in pod.get("status", {}).get("containerStatuses", [])
        )
    ]


def volume_problem(pod_names: list[str], events: list[dict[str, Any]]) -> Problem | None:
    """The latest volume Warning event of one of these pods, as a Degraded reason."""
    relevant = [
        event
        for event in events
        if event.get("involvedObject", {}).get("kind") == "Pod"
        and event["involvedObject"].get("name") in pod_names
        and event.get("reason") in VOLUME_EVENT_REASONS
    ]
    if not relevant:
        return None
    event = max(relevant, key=_event_time)
    message = event.get("message", "")
    reason = "MultiAttachError" if "Multi-Attach" in message else event["reason"]
    return Problem(reason, f"pod {event['involvedObject']['name']}: {message}")


def provisioning_failed(claims: list[dict[str, Any]], events: list[dict[str, Any]]) -> Problem | None:
    """A claim the provisioner refused (e.g. ReadWriteMany on local-path, EBS, GCE PD or Azure Disk)."""
    for claim in claims:
        name = claim["metadata"]["name"]
        failed = [
            event
            for event in events
            if event.get("involvedObject", {}).get("kind") == "PersistentVolumeClaim"
            and event["involvedObject"].get("name") == name
            and event.get("reason") == "ProvisioningFailed"
        ]
        if failed:
            latest = max(failed, key=_event_time)
            return Problem(
                "ClaimProvisioningFailed", f"PersistentVolumeClaim {name}: {latest.get('message', '')}"
            )
    return None


def pending_too_long(claims: list[dict[str, Any]], now_ts: float, limit: float) -> Problem | None:
    """A claim still Pending after `limit` seconds: nothing provisions or binds it."""
    for claim in claims:
        meta = claim["metadata"]
        age = now_ts - parse_time(meta.get("creationTimestamp"))
        if age > limit:
            return Problem(
                "ClaimPending",
                f"PersistentVolumeClaim {meta['name']} has been Pending for {int(age)}s: no volume was"
                " provisioned or bound for it (check its StorageClass and access mode)",
            )
    return None


def parse_time(stamp: str | None) -> float:
    if not stamp:
        return float("inf")
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


def _event_time(event: dict[str, Any]) -> str:
    return (
        event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp", "")
    )


def tts_conditions(
    desired_replicas: int, deployment: dict[str, Any] | None, problem: Problem | None
) -> list[Condition]:
    """Ready / Progressing / Degraded for a TTSDeployment whose spec is valid."""
    dep_status = (deployment or {}).get("status", {})
    ready = dep_status.get("readyReplicas", 0)
    updated = dep_status.get("updatedReplicas", 0)
    generation = (deployment or {}).get("metadata", {}).get("generation")
    observed = dep_status.get("observedGeneration", generation)
    if deployment is None:
        ready_condition = Condition(READY, False, "DeploymentMissing", "the Deployment does not exist yet")
    elif desired_replicas == 0:
        ready_condition = Condition(READY, False, "ScaledToZero", "spec.replicas is 0")
    elif ready >= desired_replicas:
        ready_condition = Condition(
            READY, True, "ReplicasReady", f"{ready}/{desired_replicas} replicas ready"
        )
    else:
        ready_condition = Condition(
            READY, False, "ReplicasNotReady", f"{ready}/{desired_replicas} replicas ready"
        )
    rolling = deployment is not None and (
        (generation is not None and observed is not None and observed < generation)
        or updated < desired_replicas
        or ready < desired_replicas
    )
    progressing = (
        Condition(
            PROGRESSING, True, "RollingOut", f"{updated}/{desired_replicas} replicas updated, {ready} ready"
        )
        if rolling
        else Condition(PROGRESSING, False, "Complete", "all replicas are up to date")
    )
    degraded = (
        Condition(DEGRADED, True, problem.reason, problem.message)
        if problem
        else Condition(DEGRADED, False, "AsExpected", "no problems observed")
    )
    return [ready_condition, progressing, degraded]


def failed_conditions(problem: Problem) -> list[Condition]:
    """Conditions when the operator cannot reconcile at all (invalid spec, unknown VoiceLibrary)."""
    return [
        Condition(READY, False, problem.reason, problem.message),
        Condition(PROGRESSING, False, problem.reason, "waiting for the spec to be fixed"),
        Condition(DEGRADED, True, problem.reason, problem.message),
    ]


# -- VoiceLibrary -----------------------------------------------------------------------------------


def library_status_fields(claim_name: str, claim: dict[str, Any] | None) -> dict[str, Any]:
    claim_status = (claim or {}).get("status", {})
    phase = claim_status.get("phase", "Pending")
    fields: dict[str, Any] = {"claimName": claim_name, "phase": phase, "bound": phase == "Bound"}
    capacity = claim_status.get("capacity", {}).get("storage")
    if capacity:
        fields["capacity"] = str(capacity)
    return fields


def library_conditions(claim_name: str, claim: dict[str, Any] | None) -> list[Condition]:
    if claim is None:
        return [Condition(READY, False, "ClaimMissing", f"PersistentVolumeClaim {claim_name} does not exist")]
    phase = claim.get("status", {}).get("phase", "Pending")
    if phase == "Bound":
        return [Condition(READY, True, "ClaimBound", f"PersistentVolumeClaim {claim_name} is bound")]
    return [Condition(READY, False, f"Claim{phase}", f"PersistentVolumeClaim {claim_name} is {phase}")]
