"""The Kubernetes resources the operator touches, and every API call it makes on them.

`API_CALLS` is the contract with the Helm chart's RBAC role: one row per (API group, resource) with the
verbs the operator needs, both its own calls (`kube.KubeApi`) and what kopf does on its behalf (watching
the custom resources, storing progress, posting events). The end-to-end tests run the operator against a
real API server with exactly the chart's RBAC, read the API server's audit log, and check that every
request is covered by this table and every row is used.
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
EVENTS = Resource("", "v1", "events", "Event")
# Only asked whether it is served: OpenShift, whose SCCs assign the pods' UIDs.
SECURITY_CONTEXT_CONSTRAINTS = Resource(
    "security.openshift.io", "v1", "securitycontextconstraints", "SecurityContextConstraints"
)

# Server-side apply needs `patch`, plus `create` when the object does not exist yet.
_APPLY = ("create", "patch")
_KOPF_WATCH = ("list", "watch", "patch")

# (API group, resource[/subresource], verbs): everything the operator process calls.
API_CALLS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # The custom resources: kopf watches and annotates them; the operator reads references and
    # writes status (kopf through its patch, the child watchers directly).
    (GROUP, "ttsdeployments", ("get", *_KOPF_WATCH)),
    (GROUP, "ttsdeployments/status", ("patch",)),
    # Children carry blockOwnerDeletion, which OwnerReferencesPermissionEnforcement allows only to who
    # may update the owner's finalizers.
    (GROUP, "ttsdeployments/finalizers", ("update",)),
    (GROUP, "voicelibraries", ("get", *_KOPF_WATCH)),
    (GROUP, "voicelibraries/status", ("patch",)),
    # Children of a TTSDeployment; optional ones are deleted when switched off. Deployments are
    # watched (label-selected) and read to refresh the owner's status.
    ("apps", "deployments", ("get", "list", "watch", *_APPLY)),
    ("", "services", _APPLY),
    ("networking.k8s.io", "ingresses", (*_APPLY, "delete")),
    ("autoscaling", "horizontalpodautoscalers", (*_APPLY, "delete")),
    ("policy", "poddisruptionbudgets", (*_APPLY, "delete")),
    ("monitoring.coreos.com", "servicemonitors", (*_APPLY, "delete")),
    # Model-cache and voice-library claims.
    ("", "persistentvolumeclaims", ("get", *_APPLY, "delete")),
    # Pods that cannot be scheduled or started become a Degraded condition (label-selected watch).
    ("", "pods", ("list", "watch")),
    # Warning events: kopf posts them (core v1 events only); the operator reads those that explain a
    # pod stuck in ContainerCreating (FailedMount, Multi-Attach) or a claim that cannot be provisioned.
    ("", "events", ("create", "list")),
    # kopf: CRDs appearing at runtime, and with --namespace the namespaces matching it (cluster-wide
    # it watches no namespaces).
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),
    ("", "namespaces", ("list", "watch")),
    # kopf peering with --peering (hot standby): cluster-wide, or per namespace with --namespace.
    ("kopf.dev", "clusterkopfpeerings", ("list", "watch", "patch")),
    ("kopf.dev", "kopfpeerings", ("list", "watch", "patch")),
)


def allowed(group: str, resource: str, verb: str) -> bool:
    return any(g == group and r == resource and verb in verbs for g, r, verbs in API_CALLS)
