"""The Kubernetes resources the operator touches, and every API call it makes on them.

`API_CALLS` is the contract with the Helm chart's RBAC role: one row per (API group, resource) with the
verbs the operator needs, both its own calls (`kube.KubeApi`) and what kopf does on its behalf (watching
the custom resources, storing progress, posting events). The end-to-end tests record every request the
operator sends to the emulator and check each one is covered by this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatterbox_operator.schema import GROUP, VERSION


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


TTS_DEPLOYMENTS = Resource(GROUP, VERSION, "ttsdeployments", "TTSDeployment")
VOICE_LIBRARIES = Resource(GROUP, VERSION, "voicelibraries", "VoiceLibrary")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
SERVICES = Resource("", "v1", "services", "Service")
PODS = Resource("", "v1", "pods", "Pod")
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", "Ingress")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
PDBS = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
SERVICE_MONITORS = Resource("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor")

# Server-side apply needs `patch`, plus `create` when the object does not exist yet.
_APPLY = ("create", "patch")
_KOPF_WATCH = ("list", "watch", "patch")

# (API group, resource[/subresource], verbs): everything the operator process calls.
API_CALLS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # The custom resources: kopf watches and annotates them; the operator reads references and
    # writes status (kopf through its patch, the Deployment watcher directly).
    (GROUP, "ttsdeployments", ("get", *_KOPF_WATCH)),
    (GROUP, "ttsdeployments/status", ("patch",)),
    (GROUP, "voicelibraries", ("get", *_KOPF_WATCH)),
    (GROUP, "voicelibraries/status", ("patch",)),
    # Children of a TTSDeployment; optional ones are deleted when switched off.
    ("apps", "deployments", ("list", "watch", *_APPLY)),
    ("", "services", _APPLY),
    ("networking.k8s.io", "ingresses", (*_APPLY, "delete")),
    ("autoscaling", "horizontalpodautoscalers", (*_APPLY, "delete")),
    ("policy", "poddisruptionbudgets", (*_APPLY, "delete")),
    ("monitoring.coreos.com", "servicemonitors", (*_APPLY, "delete")),
    # Model-cache and voice-library claims.
    ("", "persistentvolumeclaims", ("get", *_APPLY, "delete")),
    # Pod scheduling failures become a Degraded condition.
    ("", "pods", ("list",)),
    # kopf: Warning events when a problem appears (core v1 events only), CRDs appearing at runtime,
    # and with --namespace the namespaces matching it.
    ("", "events", ("create",)),
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),
    ("", "namespaces", ("list", "watch")),
    # kopf peering with --peering (hot standby): cluster-wide, or per namespace with --namespace.
    ("kopf.dev", "clusterkopfpeerings", ("list", "watch", "patch")),
    ("kopf.dev", "kopfpeerings", ("list", "watch", "patch")),
)


def allowed(group: str, resource: str, verb: str) -> bool:
    return any(g == group and r == resource and verb in verbs for g, r, verbs in API_CALLS)
