"""kopf handlers: thin wiring from Kubernetes events to `reconcile`.

Every TTSDeployment change, operator restart and resync tick runs the same idempotent reconcile
(render all children, apply them, delete the switched-off ones, write status), so a deleted or
hand-edited child is restored and a restart mid-reconcile converges. Events of the Deployments and pods
the operator manages refresh the owner's status at once (Ready within seconds of its pods, a pod that
cannot start reported as it happens); those watches carry a label selector, so the API server sends
only the operator's own objects, not every Deployment and pod in the cluster.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from typing import Any

import kopf

from chatterbox_operator import builders, kube, reconcile, status
from chatterbox_operator import resources as r
from chatterbox_operator.schema import GROUP

# Drift-correction and retry period; short in tests, where nothing else would advance the clock.
RESYNC_SECONDS = float(os.environ.get("CHATTERBOX_OPERATOR_RESYNC_SECONDS", "30"))
# Objects of one kind handled at once (benchmarks/operator_scale.py: memory and convergence at 300).
WORKER_LIMIT = int(os.environ.get("CHATTERBOX_OPERATOR_WORKER_LIMIT", "96"))

MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={builders.MANAGER}"
_MANAGED = {"app.kubernetes.io/managed-by": builders.MANAGER}
_TTS = (r.TTS_DEPLOYMENTS.group, r.TTS_DEPLOYMENTS.version, r.TTS_DEPLOYMENTS.plural)
_LIBRARY = (r.VOICE_LIBRARIES.group, r.VOICE_LIBRARIES.version, r.VOICE_LIBRARIES.plural)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Keep kopf's bookkeeping in our own annotations and out of the structural status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.reconnect_backoff = min(1.0, RESYNC_SECONDS)
    # Bounded concurrency per watched kind: hundreds of objects changing at once (a GitOps sync, an
    # operator restart) queue instead of all holding requests, responses and retries in memory together
    # (and flooding the API server); idle per-object workers exit soon.
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = 1.0
    for group_kind in (("apps", "deployments"), ("", "pods")):
        settings.watching.label_selectors[group_kind] = MANAGED_SELECTOR
    memo.api = kube.KubeApi(settings)
    memo.warned = {}  # (uid, condition) -> reason of the last Warning event posted
    # One status refresh at a time per TTSDeployment: a pod event and a Deployment event arriving
    # together must not let the refresh that read the older state write last.
    memo.refreshing = collections.defaultdict(asyncio.Lock)
    memo.queued = set()  # owners with a refresh waiting for the lock: it reads the newest state anyway
    memo.deployments = {}  # (namespace, owner) -> the newest Deployment seen in an event, until used


def _announce(
    body: Any,
    memo: kopf.Memo,
    new_status: dict[str, Any],
    condition: str,
    bad: str,
    routine: frozenset[str] = frozenset(),
) -> None:
    """Post one Warning event when a problem appears (not on every resync), unless its reason is
    `routine` (an expected transient state)."""
    problem = status.find_condition(new_status, condition)
    key = (body["metadata"]["uid"], condition)
    if problem.get("status") != bad:
        memo.warned.pop(key, None)
    # A change handler and a resync tick can both see the old status before either patch lands: the
    # memo of what was last posted keeps that race from posting the same warning twice.
    elif (
        status.new_problem(body.get("status"), new_status, condition, bad)
        and memo.warned.get(key) != problem["reason"]
    ):
        memo.warned[key] = problem["reason"]
        if problem["reason"] not in routine:
            kopf.warn(body, reason=problem["reason"], message=problem["message"])


# A new claim is Pending until bound, for a while or (WaitForFirstConsumer) until a pod mounts it.
_ROUTINE_LIBRARY_STATES = frozenset({"ClaimPending"})


# One reconcile for every cause: created, changed, operator restarted, and each resync tick (which
# restores deleted or hand-edited children and picks up pod problems).
@kopf.on.resume(*_TTS)
@kopf.on.create(*_TTS)
@kopf.on.update(*_TTS)
@kopf.timer(*_TTS, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def reconcile_tts_deployment(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    generation = body.metadata.get("generation")
    new_status = await reconcile.tts_deployment(memo.api, body)
    if _spec_changed_since(body, generation):
        return
    _announce(body, memo, new_status, status.DEGRADED, "True")
    if status.changed(body.get("status"), new_status):
        patch.status.update(new_status)


def _spec_changed_since(body: kopf.Body, generation: int | None) -> bool:
    """kopf's body is a live view: a timer tick that began on an older spec must not overwrite the status
    (or repeat the events) of the newer one, whose own reconcile reports it."""
    return body.metadata.get("generation") != generation


@kopf.on.event("apps", "v1", "deployments", labels=_MANAGED)
async def deployment_changed(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type in (None, "DELETED"):
        return  # initial listing or gone: the owner's reconcile recreates it
    name = _owner_name(body)
    # The newest copy: a refresh already queued uses it instead of reading the Deployment again.
    memo.deployments[body.metadata.namespace, name] = dict(body)
    await _refresh(memo, body.metadata.namespace, name)


@kopf.on.event("", "v1", "pods", labels=_MANAGED)
async def pod_changed(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    # Pods becoming ready reach the status through the Deployment's counts; a pod event matters when it
    # shows a problem (or one clearing: the pod then also changes the Deployment's counts).
    if type in (None, "DELETED") or not _troubled([dict(body)]):
        return
    await _refresh(memo, body.metadata.namespace, _owner_name(body))


def _troubled(pods: list[dict[str, Any]]) -> bool:
    return bool(
        status.unschedulable(pods, "") or status.stuck_container(pods) or status.waiting_to_start(pods)
    )


def _owner_name(child: kopf.Body) -> str | None:
    return child.metadata.labels.get("app.kubernetes.io/instance")


async def _refresh(memo: kopf.Memo, namespace: str, name: str | None) -> None:
    """Recompute the owner's status from the newest Deployment (its latest event, else read now)."""
    if not name or (namespace, name) in memo.queued:
        return  # a burst of events (pods starting, the Deployment counting them) costs one refresh
    memo.queued.add((namespace, name))
    async with memo.refreshing[namespace, name]:
        memo.queued.discard((namespace, name))
        deployment = memo.deployments.pop((namespace, name), None)
        refreshed = await reconcile.refreshed_tts_status(memo.api, namespace, name, deployment)
        if refreshed is None:
            return
        owner, new_status = refreshed
        _announce(owner, memo, new_status, status.DEGRADED, "True")
        if status.changed(owner.get("status"), new_status):
            await memo.api.patch_status(r.TTS_DEPLOYMENTS, namespace, name, new_status)


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions")
async def crd_changed(type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A CRD came or went (e.g. the Prometheus Operator was installed): ask discovery again."""
    if type is not None:
        memo.api.forget_discovery()


@kopf.on.resume(*_LIBRARY)
@kopf.on.create(*_LIBRARY)
@kopf.on.update(*_LIBRARY)
@kopf.timer(*_LIBRARY, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def reconcile_voice_library(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    if body.metadata.get("deletionTimestamp"):
        return  # the finalizer handler below owns a library that is going away
    generation = body.metadata.get("generation")
    new_status = await reconcile.voice_library(memo.api, body)
    if _spec_changed_since(body, generation):
        return
    _announce(body, memo, new_status, status.READY, "False", _ROUTINE_LIBRARY_STATES)
    if status.changed(body.get("status"), new_status):
        patch.status.update(new_status)


@kopf.on.delete(*_LIBRARY)
async def release_voice_library(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    users = await reconcile.library_users(memo.api, body)
    if users:
        # Reported, not forced: the library stays (Terminating) until its users are gone.
        message = f"in use by TTSDeployment {', '.join(users)}; delete or repoint them first"
        if status.find_condition(body.get("status"), status.DELETION_BLOCKED).get("status") != "True":
            kopf.warn(body, reason="InUse", message=message)
        await reconcile.mark_library_in_use(memo.api, body, message)
        raise kopf.TemporaryError(message, delay=RESYNC_SECONDS)
    logger.info(await reconcile.release_library_claim(memo.api, body))
