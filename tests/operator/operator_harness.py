"""Helpers for the operator tests: custom resources, conditions, the operator's identity and the API
calls it made (from the API server's audit log). The operator process itself: cluster/operator_process.py.

(A uniquely named module: test directories without __init__.py share one `conftest` module name.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatterbox_operator import resources as r
from cluster.chart import NAMESPACE as CHART_NAMESPACE

TTS_API = "tts.chatterbox.dev/v1alpha1"
# The chart names the pre-delete hook's ServiceAccount "<release fullname>-uninstall".
UNINSTALL_ACCOUNT_SUFFIX = "-uninstall"


def tts_deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": TTS_API, "kind": "TTSDeployment", "metadata": {"name": name}, "spec": spec}


def voice_library(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": TTS_API, "kind": "VoiceLibrary", "metadata": {"name": name}, "spec": spec}


def condition(obj: dict | None, condition_type: str) -> dict:
    for item in (obj or {}).get("status", {}).get("conditions", []):
        if item["type"] == condition_type:
            return item
    return {}


@dataclass(frozen=True)
class OperatorIdentity:
    """The chart's ServiceAccount: its full user name and a kubeconfig that logs in as it."""

    username: str
    kubeconfig: Path


def operator_calls(audit_events: Iterable[dict]) -> set[tuple[str, str, str]]:
    """(group, resource[/subresource], verb) of every API request in the audit log's entries."""
    calls = set()
    for entry in audit_events:
        ref = entry.get("objectRef")
        if not ref or not ref.get("resource"):
            continue  # discovery and other non-resource URLs, allowed to every authenticated client
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        group = ref.get("apiGroup", "")
        calls.add((group, resource, entry["verb"]))
        if entry["verb"] == "patch" and entry.get("responseStatus", {}).get("code") == 201:
            calls.add((group, resource, "create"))  # a server-side apply that created the object
    return calls


def chart_accounts_calls(kube_cluster) -> set[tuple[str, str, str]]:
    """(group, resource, verb) every operator ServiceAccount of the chart's namespace sent so far (audit
    log). The uninstall hook's account (tests/deploy, same session) has a role of its own, tested there."""
    return operator_calls(
        entry
        for entry in kube_cluster.plane.audit_events(f"system:serviceaccount:{CHART_NAMESPACE}:", prefix=True)
        if not entry["user"]["username"].endswith(UNINSTALL_ACCOUNT_SUFFIX)
    )


def describe(kube, namespace: str, name: str) -> str:
    """What a person would look at: the object's status, its pods' status, the namespace's events."""
    tts = kube.get(r.TTS_DEPLOYMENTS.path(namespace, name)) or {}
    deployment = kube.get(r.DEPLOYMENTS.path(namespace, name)) or {}
    pods = kube.items(r.PODS.path(namespace), labelSelector=f"app.kubernetes.io/instance={name}")
    events = [
        f"{e['involvedObject']['name']}: {e['reason']}: {e['message']}"
        for e in kube.items(f"/api/v1/namespaces/{namespace}/events")
    ]
    lines = [
        f"status: {tts.get('status')}",
        f"deployment status: {deployment.get('status')}",
        *(f"pod {p['metadata']['name']}: {p.get('status')}" for p in pods),
        *events,
    ]
    return "\n".join(lines)
