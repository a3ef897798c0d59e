"""Reconciliation: read the custom resource, apply its children through `KubeApi`, compute its status.

Independent of kopf (handlers.py only wires these to events), so each function returns the status
to write and raises nothing for problems a user can fix: those become conditions.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from chatterbox_operator import builders, status
from chatterbox_operator import resources as r
from chatterbox_operator.kube import ApiError, KubeApi
from chatterbox_operator.schema import TTS_DEPLOYMENT, VOICE_LIBRARY
from chatterbox_operator.validation import InvalidSpec, checked_spec

logger = logging.getLogger(__name__)

# A claim the pods need that is still Pending after this long is a problem (Degraded, Warning event);
# shorter, it is the normal wait for provisioning or binding.
CLAIM_PENDING_SECONDS = float(os.environ.get("CHATTERBOX_OPERATOR_CLAIM_PENDING_SECONDS", "120"))


def _identity(body: dict[str, Any]) -> tuple[str, str, int | None]:
    meta = body["metadata"]
    return meta["name"], meta["namespace"], meta.get("generation")


def _status(body: dict[str, Any], conditions: list[status.Condition], **fields: Any) -> dict[str, Any]:
    generation = body["metadata"].get("generation")
    merged = status.merge_conditions(
        body.get("status", {}).get("conditions", []), conditions, generation, status.now()
    )
    return {"observedGeneration": generation, **fields, "conditions": merged}


# -- TTSDeployment ----------------------------------------------------------------------------------


class _Unservable(Exception):
    """The spec is valid but cannot be served yet (e.g. its VoiceLibrary is missing)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.problem = status.Problem(reason, message)


async def _voice_claim(api: KubeApi, namespace: str, spec: dict[str, Any]) -> str | None:
    """The claim to mount for spec.voiceLibraryRef (None without one); raises _Unservable."""
    ref = spec.get("voiceLibraryRef")
    if not ref:
        return None
    library = await api.get(r.VOICE_LIBRARIES, namespace, ref["name"])
    if library is None:
        raise _Unservable("VoiceLibraryNotFound", f"VoiceLibrary {ref['name']} does not exist in {namespace}")
    if library["metadata"].get("deletionTimestamp"):
        raise _Unservable("VoiceLibraryDeleting", f"VoiceLibrary {ref['name']} is being deleted")
    try:
        library_spec = checked_spec(VOICE_LIBRARY, library)
    except InvalidSpec as error:
        raise _Unservable("VoiceLibraryInvalid", f"VoiceLibrary {ref['name']}: {error}") from error
    return builders.voice_claim_name(ref["name"], library_spec)


async def tts_deployment(api: KubeApi, body: dict[str, Any]) -> dict[str, Any]:
    """Apply every child of a TTSDeployment and return its new status."""
    name, namespace, generation = _identity(body)
    try:
        spec = checked_spec(TTS_DEPLOYMENT, body)
        voice_claim = await _voice_claim(api, namespace, spec)
    except InvalidSpec as error:
        return _status(body, status.failed_conditions(status.Problem("InvalidSpec", str(error))))
    except _Unservable as error:
        # Leave existing children alone: a momentarily missing library must not take pods down.
        return _status(body, status.failed_conditions(error.problem))

    owner = builders.Owner.of(body)
    children = builders.tts_children(
        owner,
        spec,
        voice_claim=voice_claim,
        monitoring_available=await api.serves(r.SERVICE_MONITORS),
        assigns_uids=await api.serves(r.SECURITY_CONTEXT_CONSTRAINTS),
    )
    deployment: dict[str, Any] | None = None
    failure: status.Problem | None = None
    for child in children:
        if body["metadata"].get("generation") != generation:
            break  # kopf's body is live: the spec changed meanwhile, and its own reconcile applies it
        try:
            if child.manifest is None:
                await api.ensure_absent(child.resource, namespace, child.name)
                continue
            applied = await api.apply(child.resource, child.manifest)
            if child.resource == r.DEPLOYMENTS:
                deployment = applied
        except ApiError as error:
            logger.warning("applying %s %s/%s failed: %s", child.resource.kind, namespace, child.name, error)
            failure = failure or status.Problem("ApplyFailed", f"{child.resource.kind} {child.name}: {error}")
    return await _observed_status(api, body, spec, deployment, failure)


async def _observed_status(
    api: KubeApi,
    body: dict[str, Any],
    spec: dict[str, Any],
    deployment: dict[str, Any] | None,
    problem: status.Problem | None,
) -> dict[str, Any]:
    name, namespace, _ = _identity(body)
    dep_status = (deployment or {}).get("status", {})
    desired = builders.desired_replicas(spec, deployment)
    if problem is None and deployment is not None and dep_status.get("readyReplicas", 0) < desired:
        problem = await _why_not_ready(api, namespace, name, spec, deployment)
    return _status(
        body,
        status.tts_conditions(desired, deployment, problem),
        replicas=dep_status.get("replicas", 0),
        readyReplicas=dep_status.get("readyReplicas", 0),
        selector=builders.selector_string(name),
        url=builders.service_url(name, namespace, spec),
    )


async def _why_not_ready(
    api: KubeApi, namespace: str, name: str, spec: dict[str, Any], deployment: dict[str, Any]
) -> status.Problem | None:
    """Only asked when pods are missing: the pods, then their claims and Warning events, tell why."""
    pods = await api.list(r.PODS, namespace, builders.selector_string(name))
    problem = status.stuck_container(pods)
    if problem is not None:
        return problem
    claims = [
        claim
        for claim_name in _claim_names(deployment)
        if (claim := await api.get(r.PVCS, namespace, claim_name)) is not None
    ]
    pending = [c for c in claims if c.get("status", {}).get("phase", "Pending") == "Pending"]
    creating = status.waiting_to_start(pods)
    events = await api.list(r.EVENTS, namespace, field_selector="type=Warning") if pending or creating else []
    # Most specific first: a refused claim also leaves its pods unschedulable or waiting.
    return (
        status.provisioning_failed(pending, events)
        or status.unschedulable(pods, spec["gpu"]["resourceName"])
        or status.volume_problem(creating, events)
        or status.pending_too_long(pending, time.time(), CLAIM_PENDING_SECONDS)
    )


def _claim_names(deployment: dict[str, Any]) -> list[str]:
    volumes = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
    return [v["persistentVolumeClaim"]["claimName"] for v in volumes if v.get("persistentVolumeClaim")]


async def refreshed_tts_status(
    api: KubeApi, namespace: str, name: str, deployment: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A child changed (its Deployment or a pod): the owner and its recomputed status, children untouched;
    None when there is nothing to refresh."""
    owner = await api.get(r.TTS_DEPLOYMENTS, namespace, name)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = checked_spec(TTS_DEPLOYMENT, owner)
    except InvalidSpec:
        return None  # the owner's own reconcile reports this
    # A failure found by the last full reconcile stays until a reconcile clears it.
    degraded = status.find_condition(owner.get("status"), status.DEGRADED)
    if degraded.get("status") == "True" and degraded.get("reason") in RECONCILE_FAILURES:
        return None
    if deployment is None:
        deployment = await api.get(r.DEPLOYMENTS, namespace, name)
        if deployment is None:
            return None
    return owner, await _observed_status(api, owner, spec, deployment, None)


# Degraded reasons that only a full reconcile can clear (not a Deployment status change).
RECONCILE_FAILURES = {
    "InvalidSpec",
    "VoiceLibraryNotFound",
    "VoiceLibraryDeleting",
    "VoiceLibraryInvalid",
    "ApplyFailed",
}


# -- VoiceLibrary -----------------------------------------------------------------------------------


async def voice_library(api: KubeApi, body: dict[str, Any]) -> dict[str, Any]:
    """Create (or adopt) the library's claim and return the library's status."""
    name, namespace, _ = _identity(body)
    try:
        spec = checked_spec(VOICE_LIBRARY, body)
    except InvalidSpec as error:
        return _status(
            body, [status.Condition(status.READY, False, "InvalidSpec", str(error))], phase="Invalid"
        )
    claim_name = builders.voice_claim_name(name, spec)
    if spec.get("storage"):
        claim: dict[str, Any] | None = await api.apply(
            r.PVCS, builders.voice_library_claim(name, namespace, spec)
        )
    else:
        claim = await api.get(r.PVCS, namespace, claim_name)
    return _status(
        body, status.library_conditions(claim_name, claim), **status.library_status_fields(claim_name, claim)
    )


async def library_users(api: KubeApi, library: dict[str, Any]) -> list[str]:
    name, namespace, _ = _identity(library)
    deployments = await api.list(r.TTS_DEPLOYMENTS, namespace)
    return sorted(
        item["metadata"]["name"]
        for item in deployments
        if (item.get("spec", {}).get("voiceLibraryRef") or {}).get("name") == name
    )


async def mark_library_in_use(api: KubeApi, library: dict[str, Any], message: str) -> None:
    name, namespace, _ = _identity(library)
    blocked = status.Condition(status.DELETION_BLOCKED, True, "InUse", message)
    await api.patch_status(r.VOICE_LIBRARIES, namespace, name, _status(library, [blocked]))


async def release_library_claim(api: KubeApi, library: dict[str, Any]) -> str:
    """Honour the reclaim policy as the library goes away; returns what was done."""
    name, namespace, _ = _identity(library)
    try:
        spec = checked_spec(VOICE_LIBRARY, library)
    except InvalidSpec:
        return "invalid spec: no claim was created, nothing to release"
    claim_name = builders.voice_claim_name(name, spec)
    if spec.get("existingClaim") or spec["reclaimPolicy"] == "Retain":
        return f"reclaimPolicy Retain: kept PersistentVolumeClaim {claim_name}"
    deleted = await api.delete(r.PVCS, namespace, claim_name)
    return f"reclaimPolicy Delete: {'deleted' if deleted else 'no'} PersistentVolumeClaim {claim_name}"
