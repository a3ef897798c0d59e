"""Reconciliation: read the custom resource, apply its children through `KubeApi`, compute its status.

Independent of kopf (handlers.py only wires these to events), so each function returns the status
to write and raises nothing for problems a user can fix: those become conditions.
"""

from __future__ import annotations

import logging
from typing import Any

from chatterbox_operator import builders, status
from chatterbox_operator import resources as r
from chatterbox_operator.kube import ApiError, KubeApi
from chatterbox_operator.schema import TTS_DEPLOYMENT, VOICE_LIBRARY
from chatterbox_operator.validation import InvalidSpec, checked_spec

logger = logging.getLogger(__name__)


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
    monitoring = await api.serves(r.SERVICE_MONITORS)
    children = builders.tts_children(owner, spec, voice_claim=voice_claim, monitoring_available=monitoring)
    deployment: dict[str, Any] | None = None
    failure: status.Problem | None = None
    for child in children:
        if body["metadata"].get("generation") != generation:
            break  # kopf's body is live: the spec changed meanwhile, and its own reconcile applies it
        try:
            if child.manifest is None:
                await api.delete(child.resource, namespace, child.name)
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
    desired = spec["replicas"]
    if problem is None and deployment is not None and dep_status.get("readyReplicas", 0) < desired:
        # Only look at pods when something is missing; they tell why (e.g. no GPU to schedule on).
        pods = await api.list(r.PODS, namespace, builders.selector_string(name))
        problem = status.scheduling_problem(pods, spec["gpu"]["resourceName"])
    return _status(
        body,
        status.tts_conditions(desired, deployment, problem),
        replicas=dep_status.get("replicas", 0),
        readyReplicas=dep_status.get("readyReplicas", 0),
        selector=builders.selector_string(name),
        url=builders.service_url(name, namespace, spec),
    )


async def refresh_tts_status_from(api: KubeApi, deployment: dict[str, Any]) -> None:
    """A managed Deployment changed: recompute its owner's status without touching children."""
    owners = [
        ref
        for ref in deployment["metadata"].get("ownerReferences", [])
        if ref.get("kind") == r.TTS_DEPLOYMENTS.kind and ref.get("controller")
    ]
    if not owners:
        return
    namespace = deployment["metadata"]["namespace"]
    owner = await api.get(r.TTS_DEPLOYMENTS, namespace, owners[0]["name"])
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return
    try:
        spec = checked_spec(TTS_DEPLOYMENT, owner)
    except InvalidSpec:
        return  # the owner's own reconcile reports this
    # A failure found by the last full reconcile stays until a reconcile clears it.
    degraded = status.find_condition(owner.get("status"), status.DEGRADED)
    if degraded.get("status") == "True" and degraded.get("reason") in RECONCILE_FAILURES:
        return
    new_status = await _observed_status(api, owner, spec, deployment, None)
    await api.patch_status(r.TTS_DEPLOYMENTS, namespace, owner["metadata"]["name"], new_status)


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
