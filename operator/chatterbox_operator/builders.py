"""Pure manifest builders: a defaulted, validated spec in, Kubernetes object dicts out.

No I/O here. Names are deterministic (derived from the owner's name) so every reconcile renders the
same objects and applying them is idempotent. Quantities are always strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chatterbox_operator import resources as r
from chatterbox_operator.schema import (
    API_VERSION,
    DEFAULT_MAX_CONCURRENT_CPU,
    DEFAULT_MAX_CONCURRENT_GPU,
    DEFAULT_REPLICAS,
    MODEL_CACHE_SUFFIX,
    PRE_STOP_SECONDS,
    VOICES_SUFFIX,
)

MANAGER = "chatterbox-operator"
SERVER_PORT = 8000
MODEL_CACHE_DIR = "/var/cache/chatterbox"
VOICE_LIBRARY_DIR = "/var/lib/chatterbox/voices"
API_KEYS_DIR = "/etc/chatterbox/api-keys"
API_KEYS_FILE = f"{API_KEYS_DIR}/keys"
API_KEY_LIMITS_DIR = "/etc/chatterbox/api-key-limits"
API_KEY_LIMITS_FILE = f"{API_KEY_LIMITS_DIR}/limits"
QUEUE_DEPTH_METRIC = "chatterbox_queue_depth"
LIBRARY_LABEL = "tts.chatterbox.dev/voice-library"
# The model family is implied by the checkpoint; the label lets dashboards and queries tell pods apart.
VARIANT_LABEL = "tts.chatterbox.dev/variant"
# Non-root user of the inference image, set where the cluster does not assign one (OpenShift's
# restricted-v2 SCC assigns UIDs and fsGroups from the namespace's range and refuses others).
RUN_AS_USER = 1000
# A Deployment reports ProgressDeadlineExceeded only after a new pod had its whole startup budget
# (spec.model.loadTimeoutSeconds) plus this much for scheduling and pulling a multi-GB image.
ROLLOUT_ALLOWANCE_SECONDS = 600
STARTUP_PROBE_PERIOD = 10

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The custom resource that children belong to."""

    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(kind=body["kind"], name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Child:
    """A child object the owner should have (`manifest`), or should not have (`manifest is None`)."""

    resource: r.Resource
    name: str
    manifest: Manifest | None


def selector_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "chatterbox-inference", "app.kubernetes.io/instance": name}


def labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/managed-by": MANAGER,
    }


def selector_string(name: str) -> str:
    """The pod selector in the string form the scale subresource publishes (for the HPA)."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(name).items())


def service_url(name: str, namespace: str, spec: dict[str, Any]) -> str:
    port = spec["service"]["port"]
    return f"http://{name}.{namespace}.svc.cluster.local" + ("" if port == 80 else f":{port}")


def model_cache_claim_name(name: str) -> str:
    return f"{name}{MODEL_CACHE_SUFFIX}"


def voice_claim_name(library_name: str, spec: dict[str, Any]) -> str:
    return spec.get("existingClaim") or f"{library_name}{VOICES_SUFFIX}"


def autoscaled(spec: dict[str, Any]) -> bool:
    return bool(spec["autoscaling"]["enabled"])


def desired_replicas(spec: dict[str, Any], deployment: dict[str, Any] | None) -> int:
    """Pods wanted now: the HPA's choice (on the Deployment) when autoscaling, else spec.replicas."""
    if autoscaled(spec):
        return ((deployment or {}).get("spec") or {}).get("replicas", spec["autoscaling"]["minReplicas"])
    return spec.get("replicas", DEFAULT_REPLICAS)


def termination_grace_seconds(spec: dict[str, Any]) -> int:
    """Long enough for the preStop pause and then the longest request to finish."""
    minimum = spec["serving"]["requestTimeoutSeconds"] + PRE_STOP_SECONDS
    return spec.get("terminationGracePeriodSeconds") or minimum


def _metadata(owner: Owner, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or owner.name,
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [owner.reference()],
    }


def _model_string(model: dict[str, Any]) -> str:
    revision = model.get("revision")
    return f"{model['source']}@{revision}" if revision else model["source"]


# spec.model.variant -> the server's CHATTERBOX_VARIANT ("standard" is the original English model).
SERVER_VARIANTS = {"standard": "english", "multilingual": "multilingual", "turbo": "turbo", "nano": "nano"}


def max_concurrent(spec: dict[str, Any]) -> int:
    """Requests one pod decodes together: spec.serving.maxConcurrent, else the default for its device."""
    chosen = spec["serving"].get("maxConcurrent")
    if chosen is not None:
        return chosen
    return DEFAULT_MAX_CONCURRENT_GPU if spec["gpu"]["count"] > 0 else DEFAULT_MAX_CONCURRENT_CPU


def api_keys(spec: dict[str, Any]) -> dict[str, Any] | None:
    """spec.apiKeys, or the deprecated apiKeySecretRef in its shape; None without keys."""
    legacy = spec.get("apiKeySecretRef")
    if legacy:
        return {"secretName": legacy["name"], "key": legacy["key"]}
    return spec.get("apiKeys") or None


def _env(spec: dict[str, Any]) -> list[dict[str, Any]]:
    model = spec["model"]
    serving = spec["serving"]
    env = {
        "API_PORT": str(SERVER_PORT),
        "CHATTERBOX_MODEL": _model_string(model),
        "CHATTERBOX_VARIANT": SERVER_VARIANTS[model["variant"]],
        "DTYPE": model["dtype"],
        "DEVICE": "cuda" if spec["gpu"]["count"] > 0 else "cpu",
        "MODEL_CACHE_DIR": MODEL_CACHE_DIR,
        "VOICE_LIBRARY_DIR": VOICE_LIBRARY_DIR,
        "LOG_LEVEL": spec["logLevel"],
        "LOG_JSON": "true" if spec["jsonLogs"] else "false",
        "MAX_CONCURRENT": str(max_concurrent(spec)),
        "MAX_QUEUE": str(serving["maxQueue"]),
        "REQUEST_TIMEOUT_S": str(serving["requestTimeoutSeconds"]),
        # Libraries that honour only HOME or XDG dirs must not write to the read-only root filesystem.
        "HOME": "/tmp",
    }
    if model.get("version"):
        env["CHATTERBOX_MODEL_VERSION"] = model["version"]
    if spec["wyoming"]["enabled"]:
        env["WYOMING_PORT"] = str(spec["wyoming"]["port"])
    keys = api_keys(spec)
    if keys:
        env["API_KEYS_FILE"] = API_KEYS_FILE
        if keys.get("limits") is not None:
            env["API_KEY_LIMITS_FILE"] = API_KEY_LIMITS_FILE
    rendered = [{"name": key, "value": value} for key, value in env.items()]
    # User variables override ours by name instead of producing duplicate entries.
    overridden = {item["name"] for item in spec.get("env", [])}
    return [item for item in rendered if item["name"] not in overridden] + list(spec.get("env", []))


def _resources(spec: dict[str, Any]) -> dict[str, Any]:
    requests = {"cpu": str(spec["resources"]["cpu"]), "memory": str(spec["resources"]["memory"])}
    limits = {"memory": str(spec["resources"]["memory"])}
    gpu = spec["gpu"]
    if gpu["count"] > 0:
        # Extended resources must be set in limits; requests default to them but we state both.
        requests[gpu["resourceName"]] = limits[gpu["resourceName"]] = str(gpu["count"])
    return {"requests": requests, "limits": limits}


def _probes(spec: dict[str, Any]) -> dict[str, Any]:
    def http_get(path: str) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}}

    return {
        # Until the model is loaded and warmed up (readiness, not just a listening socket), the other
        # probes wait: the first pod on a cluster downloads several GB of weights first.
        "startupProbe": {
            **http_get("/readyz"),
            "periodSeconds": STARTUP_PROBE_PERIOD,
            "timeoutSeconds": 3,
            "failureThreshold": math.ceil(spec["model"]["loadTimeoutSeconds"] / STARTUP_PROBE_PERIOD),
        },
        "readinessProbe": {
            **http_get("/readyz"),
            "periodSeconds": 5,
            "failureThreshold": 2,
            "timeoutSeconds": 3,
        },
        "livenessProbe": {
            **http_get("/healthz"),
            "periodSeconds": 15,
            "failureThreshold": 4,
            "timeoutSeconds": 5,
        },
    }


def _volumes(owner: Owner, spec: dict[str, Any], voice_claim: str | None) -> tuple[list[Any], list[Any]]:
    """Volumes and mounts: writable dirs for a read-only root filesystem, weights, voices, API keys."""
    cache = spec.get("modelCache")
    if cache is None:
        cache_volume: dict[str, Any] = {"emptyDir": {}}
    else:
        claim = cache.get("existingClaim") or model_cache_claim_name(owner.name)
        cache_volume = {"persistentVolumeClaim": {"claimName": claim}}
    voices_volume: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": voice_claim}} if voice_claim else {"emptyDir": {}}
    )
    volumes = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "model-cache", **cache_volume},
        {"name": "voices", **voices_volume},
    ]
    mounts = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "model-cache", "mountPath": MODEL_CACHE_DIR},
        {"name": "voices", "mountPath": VOICE_LIBRARY_DIR},
    ]
    # Whole-directory mounts (never subPath), so the kubelet's updates reach the server, which re-reads them.
    keys = api_keys(spec)
    if keys:
        items = [{"key": keys["key"], "path": "keys"}]
        volumes.append({"name": "api-keys", "secret": {"secretName": keys["secretName"], "items": items}})
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
        limits = keys.get("limits")
        if limits is not None:
            items = [{"key": limits["key"], "path": "limits"}]
            source = (
                {"configMap": {"name": limits["configMapName"], "items": items}}
                if limits.get("configMapName")
                else {"secret": {"secretName": keys["secretName"], "items": items}}
            )
            volumes.append({"name": "api-key-limits", **source})
            mounts.append({"name": "api-key-limits", "mountPath": API_KEY_LIMITS_DIR, "readOnly": True})
    return volumes, mounts


def _placement(spec: dict[str, Any]) -> dict[str, Any]:
    gpu = spec["gpu"]
    tolerations = list(gpu.get("tolerations", []))
    if gpu["count"] > 0:
        # GPU nodes are commonly tainted with their resource name; tolerating it costs nothing elsewhere.
        tolerations.append({"key": gpu["resourceName"], "operator": "Exists", "effect": "NoSchedule"})
    placement: dict[str, Any] = {"tolerations": tolerations}
    if gpu.get("nodeSelector"):
        placement["nodeSelector"] = dict(gpu["nodeSelector"])
    if gpu.get("affinity"):
        placement["affinity"] = gpu["affinity"]
    if gpu.get("priorityClassName"):
        placement["priorityClassName"] = gpu["priorityClassName"]
    return placement


def deployment(
    owner: Owner, spec: dict[str, Any], voice_claim: str | None, *, assigns_uids: bool = False
) -> Manifest:
    """The inference Deployment. `assigns_uids`: the cluster picks the pods' UID and fsGroup (OpenShift)."""
    volumes, mounts = _volumes(owner, spec, voice_claim)
    container = {
        "name": "inference",
        "image": spec["image"],
        "imagePullPolicy": spec["imagePullPolicy"],
        "ports": [
            {"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"},
            *(
                [{"name": "wyoming", "containerPort": spec["wyoming"]["port"], "protocol": "TCP"}]
                if spec["wyoming"]["enabled"]
                else []
            ),
        ],
        "env": _env(spec),
        "resources": _resources(spec),
        **_probes(spec),
        # Stop receiving new traffic before SIGTERM: endpoints are removed while this sleeps, then the
        # server drains in-flight requests within the grace period.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        "securityContext": {
            "runAsNonRoot": True,
            # fsGroup makes claims on root-owned filesystems (EBS, GCE PD) writable for the server.
            **(
                {}
                if assigns_uids
                else {"runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER, "fsGroup": RUN_AS_USER}
            ),
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
        **_placement(spec),
    }
    if spec.get("imagePullSecrets"):
        pod_spec["imagePullSecrets"] = [{"name": name} for name in spec["imagePullSecrets"]]
    deployment_spec: dict[str, Any] = {
        # With autoscaling on the HPA owns the Deployment's replicas: the operator leaves them out.
        **({} if autoscaled(spec) else {"replicas": desired_replicas(spec, None)}),
        "progressDeadlineSeconds": spec["model"]["loadTimeoutSeconds"] + ROLLOUT_ALLOWANCE_SECONDS,
        "selector": {"matchLabels": selector_labels(owner.name)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": spec["rollout"]["maxSurge"],
                "maxUnavailable": spec["rollout"]["maxUnavailable"],
            },
        },
        "template": {
            "metadata": {"labels": {**labels(owner.name), VARIANT_LABEL: spec["model"]["variant"]}},
            "spec": pod_spec,
        },
    }
    return {
        "apiVersion": r.DEPLOYMENTS.api_version,
        "kind": r.DEPLOYMENTS.kind,
        "metadata": _metadata(owner),
        "spec": deployment_spec,
    }


def service(owner: Owner, spec: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": r.SERVICES.api_version,
        "kind": r.SERVICES.kind,
        "metadata": _metadata(owner),
        "spec": {
            "type": spec["service"]["type"],
            "selector": selector_labels(owner.name),
            "ports": [
                {"name": "http", "port": spec["service"]["port"], "targetPort": "http", "protocol": "TCP"},
                *(
                    [
                        {
                            "name": "wyoming",
                            "port": spec["wyoming"]["port"],
                            "targetPort": "wyoming",
                            "protocol": "TCP",
                        }
                    ]
                    if spec["wyoming"]["enabled"]
                    else []
                ),
            ],
        },
    }


def ingress(owner: Owner, spec: dict[str, Any]) -> Manifest:
    settings = spec["ingress"]
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": settings["path"],
                    "pathType": "Prefix",
                    "backend": {"service": {"name": owner.name, "port": {"name": "http"}}},
                }
            ]
        }
    }
    if settings.get("host"):
        rule["host"] = settings["host"]
    ingress_spec: dict[str, Any] = {"rules": [rule]}
    if settings.get("className"):
        ingress_spec["ingressClassName"] = settings["className"]
    if settings.get("tlsSecretName"):
        ingress_spec["tls"] = [{"hosts": [settings["host"]], "secretName": settings["tlsSecretName"]}]
    metadata = _metadata(owner)
    metadata["annotations"] = {**ingress_nginx_annotations(spec), **settings.get("annotations", {})}
    return {
        "apiVersion": r.INGRESSES.api_version,
        "kind": r.INGRESSES.kind,
        "metadata": metadata,
        "spec": ingress_spec,
    }


# The server's largest voice upload (MAX_VOICE_UPLOAD_BYTES, 10 MiB) plus multipart overhead.
INGRESS_BODY_SIZE = "12m"


def ingress_nginx_annotations(spec: dict[str, Any]) -> dict[str, str]:
    """What ingress-nginx needs to pass the API through unchanged (other controllers ignore them): audio
    streamed as it is made instead of buffered, requests as long as the server allows them, and voice
    uploads beyond its 1m body default."""
    timeout = str(spec["serving"]["requestTimeoutSeconds"])
    prefix = "nginx.ingress.kubernetes.io/"
    return {
        prefix + "proxy-buffering": "off",
        prefix + "proxy-read-timeout": timeout,
        prefix + "proxy-send-timeout": timeout,
        prefix + "proxy-body-size": INGRESS_BODY_SIZE,
    }


def horizontal_pod_autoscaler(owner: Owner, spec: dict[str, Any]) -> Manifest:
    scaling = spec["autoscaling"]
    return {
        "apiVersion": r.HPAS.api_version,
        "kind": r.HPAS.kind,
        "metadata": _metadata(owner),
        "spec": {
            # The HPA scales the Deployment, whose replicas the operator then leaves alone, and the CRD
            # refuses spec.replicas meanwhile: one writer per field, and `kubectl apply` or a GitOps tool
            # never resets what the HPA chose.
            "scaleTargetRef": {
                "apiVersion": r.DEPLOYMENTS.api_version,
                "kind": r.DEPLOYMENTS.kind,
                "name": owner.name,
            },
            "minReplicas": scaling["minReplicas"],
            "maxReplicas": scaling["maxReplicas"],
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": QUEUE_DEPTH_METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(scaling["targetQueueDepth"])},
                    },
                }
            ],
            # New GPU pods take minutes to load weights: scale up promptly, scale down reluctantly.
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 300},
            },
        },
    }


def pod_disruption_budget(owner: Owner, spec: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": r.PDBS.api_version,
        "kind": r.PDBS.kind,
        "metadata": _metadata(owner),
        "spec": {
            "maxUnavailable": spec["podDisruptionBudget"]["maxUnavailable"],
            "selector": {"matchLabels": selector_labels(owner.name)},
        },
    }


def service_monitor(owner: Owner, spec: dict[str, Any]) -> Manifest:
    metadata = _metadata(owner)
    # Ours win: the monitor must stay recognisable as this TTSDeployment's child.
    metadata["labels"] = {**spec["monitoring"].get("labels", {}), **metadata["labels"]}
    return {
        "apiVersion": r.SERVICE_MONITORS.api_version,
        "kind": r.SERVICE_MONITORS.kind,
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": selector_labels(owner.name)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": spec["monitoring"]["interval"]}],
        },
    }


def persistent_volume_claim(
    name: str,
    namespace: str,
    size: Any,
    access_mode: str,
    storage_class: str | None,
    extra_labels: dict[str, str],
) -> Manifest:
    claim_spec: dict[str, Any] = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": str(size)}},
    }
    if storage_class:
        claim_spec["storageClassName"] = storage_class
    return {
        "apiVersion": r.PVCS.api_version,
        "kind": r.PVCS.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": extra_labels},
        "spec": claim_spec,
    }


def model_cache_claim(owner: Owner, spec: dict[str, Any]) -> Manifest:
    cache = spec["modelCache"]
    claim = persistent_volume_claim(
        model_cache_claim_name(owner.name),
        owner.namespace,
        cache["size"],
        cache["accessMode"],
        cache.get("storageClassName"),
        labels(owner.name),
    )
    claim["metadata"]["ownerReferences"] = [owner.reference()]
    return claim


def voice_library_claim(name: str, namespace: str, spec: dict[str, Any]) -> Manifest:
    """The claim a VoiceLibrary creates. No owner reference: garbage collection must never remove voice
    data behind the reclaim policy's back; the finalizer deletes it explicitly under `Delete`."""
    storage = spec["storage"]
    return persistent_volume_claim(
        voice_claim_name(name, spec),
        namespace,
        storage["size"],
        storage["accessMode"],
        storage.get("storageClassName"),
        {LIBRARY_LABEL: name, "app.kubernetes.io/managed-by": MANAGER},
    )


def tts_children(
    owner: Owner,
    spec: dict[str, Any],
    *,
    voice_claim: str | None,
    monitoring_available: bool,
    assigns_uids: bool = False,
) -> list[Child]:
    """Everything a TTSDeployment owns: present ones with their manifest, switched-off ones as None."""

    def optional(resource: r.Resource, wanted: bool, build: Any, name: str | None = None) -> Child:
        return Child(resource, name or owner.name, build(owner, spec) if wanted else None)

    children = [
        # The claim before the pods that mount it, so the scheduler never sees them without it.
        optional(
            r.PVCS,
            bool(spec.get("modelCache", {}).get("size")),
            model_cache_claim,
            model_cache_claim_name(owner.name),
        ),
        Child(r.DEPLOYMENTS, owner.name, deployment(owner, spec, voice_claim, assigns_uids=assigns_uids)),
        Child(r.SERVICES, owner.name, service(owner, spec)),
        optional(r.INGRESSES, spec["ingress"]["enabled"], ingress),
        optional(r.HPAS, spec["autoscaling"]["enabled"], horizontal_pod_autoscaler),
        optional(r.PDBS, spec["podDisruptionBudget"]["enabled"], pod_disruption_budget),
    ]
    # Without the Prometheus Operator's CRD there is nothing to create, and nothing to delete either.
    if monitoring_available:
        children.append(optional(r.SERVICE_MONITORS, spec["monitoring"]["serviceMonitor"], service_monitor))
    return children
