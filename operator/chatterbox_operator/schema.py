"""The CRD schemas, written once in Python.

Everything that knows the shape of a TTSDeployment or VoiceLibrary reads it from here: the CRD YAML in
`crds/` is generated from these dicts (`python -m chatterbox_operator.crds --write`), the operator fills
defaults and validates specs with them (a cluster does that for us, the emulator in tests does not), and
the example tests validate `crds/examples/` against them.

Cross-field rules are `Rule`s: the CEL text goes into `x-kubernetes-validations` for the apiserver, and
the Python twin of the same rule lives next to it so the operator and tests can evaluate it without CEL.
The API server also checks every schema default against the rules, before nested defaults are filled in:
so a rule reads an optional field only behind `has()`, falling back to that field's default.
Transition rules (`self == oldSelf`, immutable fields) have no Python twin: only the API server sees
the old object.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GROUP = "tts.chatterbox.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_IMAGE = "chatterbox-inference:0.1.0"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
# Requests one pod decodes together when spec.serving.maxConcurrent is unset. A GPU step costs about the
# same for 1 or 8 rows, so 8 shares each weight read across a full batch. On CPU every request's S3Gen
# vocoding also needs cores, and the default pod requests 2 CPUs: 2 is the least that batches T3 at all
# (the server batches on CPU only from 2 up) without oversubscribing them.
DEFAULT_MAX_CONCURRENT_GPU = 8
DEFAULT_MAX_CONCURRENT_CPU = 2
# Pods when spec.replicas is unset and autoscaling is off (with autoscaling on, the HPA decides).
DEFAULT_REPLICAS = 1
# The pod's preStop pause: endpoints drop the pod while it sleeps, then SIGTERM starts the drain.
PRE_STOP_SECONDS = 10
DEFAULT_REQUEST_TIMEOUT_SECONDS = 300
# Suffixes the operator appends to a TTSDeployment's / VoiceLibrary's name for its children.
MODEL_CACHE_SUFFIX = "-model-cache"
VOICES_SUFFIX = "-voices"
# Longest name whose children's names and label values stay within 63 characters.
MAX_TTS_NAME = 63 - len(MODEL_CACHE_SUFFIX)
MAX_LIBRARY_NAME = 63 - len(VOICES_SUFFIX)

Schema = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """A cross-field validation rule: CEL for the apiserver, `check` for the operator and tests."""

    cel: str
    message: str
    check: Callable[[dict[str, Any]], bool]
    # The field the API server names in its error (default: the object the rule sits on).
    field_path: str | None = None

    def render(self) -> dict[str, str]:
        rendered = {"rule": self.cel, "message": self.message}
        if self.field_path:
            rendered["fieldPath"] = self.field_path
        return rendered


# Every cross-field rule placed in a schema, by its CEL text (filled in as the schemas below are built).
RULES: dict[str, Rule] = {}


# -- schema helpers: keep the dicts below readable ------------------------------------------------


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def integer(
    description: str, *, minimum: int | None = None, maximum: int | None = None, **extra: Any
) -> Schema:
    schema: Schema = {"type": "integer", "description": description, **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def boolean(description: str, default: bool) -> Schema:
    return {"type": "boolean", "description": description, "default": default}


def enum(description: str, values: list[str], default: str | None = None) -> Schema:
    schema = string(description, enum=values)
    if default is not None:
        schema["default"] = default
    return schema


def int_or_string(description: str, **extra: Any) -> Schema:
    """A Kubernetes quantity or percentage: users write `2`, `"2"`, `16Gi` or `25%`."""
    return {
        "description": description,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        **extra,
    }


def obj(
    description: str,
    properties: dict[str, Schema],
    *,
    required: list[str] | None = None,
    rules: list[Rule] | None = None,
    **extra: Any,
) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": properties, **extra}
    if required:
        schema["required"] = required
    if rules:
        schema["x-kubernetes-validations"] = [rule.render() for rule in rules]
        RULES.update((rule.cel, rule) for rule in rules)
    return schema


IMMUTABLE = "self == oldSelf"


def immutable(schema: Schema, message: str) -> Schema:
    """A field that cannot change once set (a transition rule: the API server compares with the old object)."""
    return {**schema, "x-kubernetes-validations": [{"rule": IMMUTABLE, "message": message}]}


def free_form(description: str) -> Schema:
    """A Kubernetes core type (affinity, tolerations) we pass through untouched."""
    return {"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": True}


def string_map(description: str) -> Schema:
    return {"type": "object", "description": description, "additionalProperties": {"type": "string"}}


def name_ref(description: str) -> Schema:
    return obj(
        description, {"name": string("Object name in the same namespace.", minLength=1)}, required=["name"]
    )


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A Secret's or ConfigMap's data key.
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

CONDITIONS = {
    "type": "array",
    "description": "Latest observations of the object's state.",
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
    "items": obj(
        "One condition.",
        {
            "type": string("Ready, Progressing, Degraded, ..."),
            "status": enum("Condition status.", ["True", "False", "Unknown"]),
            "reason": string("CamelCase machine-readable reason."),
            "message": string("Human-readable detail."),
            "lastTransitionTime": string("When status last changed.", format="date-time"),
            "observedGeneration": integer("Generation the condition was computed for.", minimum=0),
        },
        required=["type", "status"],
    ),
}


# -- cross-field rules ----------------------------------------------------------------------------


def _has(value: dict[str, Any], key: str) -> bool:
    return value.get(key) is not None


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _autoscaling_on(spec: dict[str, Any]) -> bool:
    return bool((spec.get("autoscaling") or {}).get("enabled"))


# CEL: spec.autoscaling.enabled, false when absent (the default of a default).
_CEL_AUTOSCALING_ON = "(has(self.autoscaling) && has(self.autoscaling.enabled) && self.autoscaling.enabled)"

MIN_LE_MAX = Rule(
    cel="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
    message="autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas",
    check=lambda v: v["minReplicas"] <= v["maxReplicas"],
)
ONE_CACHE_SOURCE = Rule(
    cel="has(self.existingClaim) != has(self.size)",
    message="modelCache needs exactly one of existingClaim or size",
    check=lambda v: _has(v, "existingClaim") != _has(v, "size"),
)
REVISION_NOT_TWICE = Rule(
    cel="!has(self.revision) || !self.source.contains('@')",
    message="model.revision cannot be combined with an '@revision' already in model.source",
    check=lambda v: not _has(v, "revision") or "@" not in v["source"],
)
VERSION_ONLY_MULTILINGUAL = Rule(
    cel="!has(self.version) || self.variant == 'multilingual'",
    message="model.version picks a multilingual release: set it only with variant multilingual",
    check=lambda v: not _has(v, "version") or v["variant"] == "multilingual",
)
ROLLOUT_CAN_PROGRESS = Rule(
    cel="!has(self.maxSurge) || !has(self.maxUnavailable)"
    " || string(self.maxSurge) != '0' || string(self.maxUnavailable) != '0'",
    message="rollout.maxSurge and rollout.maxUnavailable cannot both be 0",
    check=lambda v: str(v["maxSurge"]) != "0" or str(v["maxUnavailable"]) != "0",
)
ONE_LIBRARY_SOURCE = Rule(
    cel="has(self.existingClaim) != has(self.storage)",
    message="VoiceLibrary needs exactly one of storage or existingClaim",
    check=lambda v: _has(v, "existingClaim") != _has(v, "storage"),
)
NO_DELETE_OF_FOREIGN_CLAIM = Rule(
    cel="!has(self.existingClaim) || self.reclaimPolicy == 'Retain'",
    message="reclaimPolicy Delete applies only to claims the operator creates, not to an existingClaim",
    check=lambda v: not _has(v, "existingClaim") or v["reclaimPolicy"] == "Retain",
)

QUEUE_CAN_REACH_HPA_TARGET = Rule(
    # The HPA scales up only when the average exceeds its target by its 10% tolerance, and a pod never
    # queues more than maxQueue: so maxQueue must exceed 1.1 x target (integers: 10 maxQueue > 11 target).
    # A quantity string ("1500m") is left to the user: parsing it would make the rule costly in CEL.
    cel=f"!{_CEL_AUTOSCALING_ON} || !has(self.autoscaling.targetQueueDepth)"
    " || type(self.autoscaling.targetQueueDepth) != int || !has(self.serving) || !has(self.serving.maxQueue)"
    " || self.autoscaling.targetQueueDepth * 11 < self.serving.maxQueue * 10",
    message="autoscaling.targetQueueDepth must stay under serving.maxQueue / 1.1: a pod never queues more"
    " than maxQueue requests, and the autoscaler scales up only when the average exceeds 1.1 x its target",
    check=lambda v: (
        not v["autoscaling"]["enabled"]
        or not _is_integer(v["autoscaling"]["targetQueueDepth"])
        or v["autoscaling"]["targetQueueDepth"] * 11 < v["serving"]["maxQueue"] * 10
    ),
)
ONE_KEY_SOURCE = Rule(
    cel="!has(self.apiKeys) || !has(self.apiKeySecretRef)",
    message="set apiKeys or the deprecated apiKeySecretRef, not both",
    check=lambda v: not _has(v, "apiKeys") or not _has(v, "apiKeySecretRef"),
)
HPA_OWNS_REPLICAS = Rule(
    cel=f"!{_CEL_AUTOSCALING_ON} || !has(self.replicas)",
    message="spec.replicas must be unset while autoscaling.enabled is true: the HorizontalPodAutoscaler owns the"
    " replica count (set autoscaling.minReplicas and autoscaling.maxReplicas instead)",
    check=lambda v: not _autoscaling_on(v) or not _has(v, "replicas"),
)
WYOMING_BESIDE_HTTP = Rule(
    cel="!has(self.port) || self.port != 8000",  # 8000: the server's HTTP port in the pod (builders.SERVER_PORT)
    message="wyoming.port must differ from 8000, the server's HTTP port in the pod",
    check=lambda v: v.get("port", 10200) != 8000,
)
ONE_GPU_PER_POD = Rule(
    cel="!has(self.count) || self.count <= 1",
    message="gpu.count above 1 is not supported: a pod runs one engine on one GPU, so more GPUs per pod would"
    " sit idle; scale out with replicas (one GPU each) instead",
    check=lambda v: v.get("count", 1) <= 1,
)
GRACE_COVERS_A_REQUEST = Rule(
    # A rollout or drain must never cut a synthesis short: the pod's grace period has to cover the
    # preStop pause plus the longest request.
    cel=f"!has(self.terminationGracePeriodSeconds) || self.terminationGracePeriodSeconds >="
    f" (has(self.serving) && has(self.serving.requestTimeoutSeconds) ? self.serving.requestTimeoutSeconds"
    f" : {DEFAULT_REQUEST_TIMEOUT_SECONDS}) + {PRE_STOP_SECONDS}",
    message=f"terminationGracePeriodSeconds must be at least serving.requestTimeoutSeconds + {PRE_STOP_SECONDS}"
    " (the preStop pause), so that stopping a pod never cuts a request short",
    check=lambda v: (
        not _has(v, "terminationGracePeriodSeconds")
        or v["terminationGracePeriodSeconds"]
        >= v["serving"].get("requestTimeoutSeconds", DEFAULT_REQUEST_TIMEOUT_SECONDS) + PRE_STOP_SECONDS
    ),
)


def _name_rule(max_length: int, dns_1035: bool, kind: str) -> Rule:
    pattern = DNS_1035 if dns_1035 else DNS_LABEL
    shape = (
        "a DNS-1035 label (lowercase letters, digits and '-', starting with a letter)"
        if dns_1035
        else "a DNS-1123 label (lowercase letters, digits and '-')"
    )
    return Rule(
        cel=f"self.metadata.name.matches('{pattern}') && size(self.metadata.name) <= {max_length}",
        message=f"a {kind} name must be {shape} of at most {max_length} characters, so that the names and"
        " labels of the objects made from it stay valid",
        check=lambda v: (
            re.fullmatch(pattern, v["metadata"]["name"]) is not None
            and len(v["metadata"]["name"]) <= max_length
        ),
        field_path=".metadata.name",
    )


TTS_NAME = _name_rule(MAX_TTS_NAME, True, "TTSDeployment")
LIBRARY_NAME = _name_rule(MAX_LIBRARY_NAME, False, "VoiceLibrary")
RULES.update((rule.cel, rule) for rule in (TTS_NAME, LIBRARY_NAME))


# -- TTSDeployment --------------------------------------------------------------------------------

TTS_DEPLOYMENT_SPEC = obj(
    "Desired state of a Chatterbox inference deployment.",
    {
        "model": obj(
            "Which checkpoint the inference server loads.",
            {
                "source": string(
                    "CHATTERBOX_MODEL as the server understands it: a Hugging Face repo id (optionally"
                    " '@revision'), a local folder in the official layout, or random:tiny / random:full"
                    " (random:tiny-nano, random:tiny-multilingual, ... for the other variants).",
                    default="ResembleAI/chatterbox",
                    minLength=1,
                ),
                "revision": string("Hugging Face revision (branch, tag or commit) appended as '@revision'."),
                "variant": enum(
                    "Which model of the checkpoint the server loads (CHATTERBOX_VARIANT; also a pod label):"
                    " standard (English), multilingual (23 languages, from ResembleAI/chatterbox), turbo"
                    " (ResembleAI/chatterbox-turbo) or nano (ResembleAI/chatterbox-nano: the small one, for"
                    " CPU nodes).",
                    ["standard", "multilingual", "turbo", "nano"],
                    "standard",
                ),
                "version": enum(
                    "Multilingual release (CHATTERBOX_MODEL_VERSION): v2 (the default) or v3 (fewer"
                    " hallucinations; repetition penalty 1.2, the last token's audio dropped).",
                    ["v2", "v3"],
                ),
                "dtype": enum("Weights dtype.", ["float32", "bfloat16", "float16"], "float32"),
                "loadTimeoutSeconds": integer(
                    "How long a pod may take to download and warm up the model until it is ready (its"
                    " startup probe budget) before it is restarted; rollouts wait at least as long.",
                    minimum=60,
                    default=1800,
                ),
            },
            default={},
            rules=[REVISION_NOT_TWICE, VERSION_ONLY_MULTILINGUAL],
        ),
        "image": string("Inference server image.", default=DEFAULT_IMAGE, minLength=1),
        "imagePullPolicy": enum("Image pull policy.", ["Always", "IfNotPresent", "Never"], "IfNotPresent"),
        "imagePullSecrets": {
            "type": "array",
            "description": "Names of Secrets used to pull the image.",
            "items": {"type": "string"},
        },
        "replicas": integer(
            f"Inference pods (unset: {DEFAULT_REPLICAS}); `kubectl scale` sets it through the scale subresource."
            " Must be unset while autoscaling is on: the HPA then owns the replica count.",
            minimum=0,
        ),
        "gpu": obj(
            "GPU placement. count 0 runs on CPU.",
            {
                "count": integer("GPUs per pod: 1, or 0 to run on CPU.", minimum=0, default=1),
                "resourceName": string("Extended resource name of the GPU.", default=DEFAULT_GPU_RESOURCE),
                "nodeSelector": string_map("Node labels the pods must match."),
                "tolerations": {
                    "type": "array",
                    "description": "Pod tolerations (core/v1 Toleration).",
                    "items": free_form("A toleration."),
                },
                "affinity": free_form("Pod affinity (core/v1 Affinity)."),
                "priorityClassName": string("PriorityClass of the pods."),
            },
            default={},
            rules=[ONE_GPU_PER_POD],
        ),
        "resources": obj(
            "CPU and memory per pod (requests; memory is also the limit).",
            {
                "cpu": int_or_string("CPU request.", default="2"),
                "memory": int_or_string("Memory request and limit.", default="16Gi"),
            },
            default={},
        ),
        "voiceLibraryRef": name_ref("VoiceLibrary whose claim is mounted at VOICE_LIBRARY_DIR."),
        "modelCache": obj(
            "Where downloaded weights are kept so they download once per cluster, not once per pod."
            " Without it each pod downloads into an emptyDir.",
            {
                "existingClaim": string("Use this PersistentVolumeClaim."),
                "size": int_or_string("Size of the claim the operator creates."),
                "storageClassName": immutable(
                    string("StorageClass of the claim the operator creates (immutable, as the claim's is)."),
                    "modelCache.storageClassName is immutable: a claim's StorageClass cannot change",
                ),
                "accessMode": immutable(
                    enum(
                        "Access mode of the created claim (immutable). ReadWriteOnce works on every storage"
                        " class (local-path, EBS, GCE PD, Azure Disk) but pins the pods to the node that"
                        " mounts it; ReadWriteMany (NFS, EFS, Filestore, Azure Files) shares it across nodes.",
                        ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"],
                        "ReadWriteOnce",
                    ),
                    "modelCache.accessMode is immutable: a claim's access mode cannot change",
                ),
            },
            rules=[ONE_CACHE_SOURCE],
        ),
        "autoscaling": obj(
            "A HorizontalPodAutoscaler on the per-pod chatterbox_queue_depth metric. It scales this"
            " TTSDeployment (scale subresource), so the HPA and the operator never fight over replicas.",
            {
                "enabled": boolean("Create the HPA.", False),
                "minReplicas": integer("Lower bound.", minimum=1, default=1),
                "maxReplicas": integer("Upper bound.", minimum=1, default=4),
                "targetQueueDepth": int_or_string(
                    "Average queued requests per pod to aim for: requests waiting for a free slot"
                    " beyond the serving.maxConcurrent a pod decodes at once (under serving.maxQueue / 1.1).",
                    default=2,
                ),
            },
            default={},
            rules=[MIN_LE_MAX],
        ),
        "serving": obj(
            "How many requests each pod takes on. Requests in flight are decoded together in one"
            " continuous batch, so maxConcurrent is the batch size; more wait in a bounded queue.",
            {
                "maxConcurrent": integer(
                    "Requests one pod synthesises at once, decoded together in one T3 batch"
                    f" (MAX_CONCURRENT). Unset: {DEFAULT_MAX_CONCURRENT_GPU} with a GPU,"
                    f" {DEFAULT_MAX_CONCURRENT_CPU} on CPU, where each request's vocoder work also"
                    " competes for the pod's cores. Each slot reserves KV cache memory.",
                    minimum=1,
                    maximum=64,
                ),
                "maxQueue": integer(
                    "Requests waiting for a free slot (MAX_QUEUE); more are refused with 429 and"
                    " Retry-After. The autoscaler's chatterbox_queue_depth counts these.",
                    minimum=0,
                    maximum=1024,
                    default=8,
                ),
                "requestTimeoutSeconds": integer(
                    "Longest a request may wait plus synthesise before it fails with 504"
                    " (REQUEST_TIMEOUT_S).",
                    minimum=1,
                    maximum=3600,
                    default=DEFAULT_REQUEST_TIMEOUT_SECONDS,
                ),
            },
            default={},
        ),
        "service": obj(
            "The Service in front of the pods.",
            {
                "type": enum("Service type.", ["ClusterIP", "NodePort", "LoadBalancer"], "ClusterIP"),
                "port": integer("Service port.", minimum=1, maximum=65535, default=80),
            },
            default={},
        ),
        "wyoming": obj(
            "The Wyoming protocol listener for Home Assistant (the server's WYOMING_PORT), exposed as the"
            " Service port `wyoming`. It has no authentication: keep the Service inside a trusted network.",
            {
                "enabled": boolean("Serve the Wyoming protocol.", False),
                "port": integer(
                    "Container and Service port (10200 is Home Assistant's default).",
                    minimum=1,
                    maximum=65535,
                    default=10200,
                ),
            },
            default={},
            rules=[WYOMING_BESIDE_HTTP],
        ),
        "ingress": obj(
            "Optional Ingress.",
            {
                "enabled": boolean("Create the Ingress.", False),
                "host": string("Host name."),
                "className": string("IngressClass name."),
                "tlsSecretName": string("Secret with the TLS certificate for host."),
                "path": string("Path prefix.", default="/", pattern="^/"),
                "annotations": string_map(
                    "Annotations of the Ingress, over the operator's ingress-nginx defaults (proxy buffering"
                    " off so audio streams as made, read and send timeouts of serving.requestTimeoutSeconds,"
                    " a 12m request body for voice uploads); set a key to override it."
                ),
            },
            default={},
            rules=[
                Rule(
                    cel="!has(self.tlsSecretName) || has(self.host)",
                    message="ingress.tlsSecretName needs ingress.host",
                    check=lambda v: not _has(v, "tlsSecretName") or _has(v, "host"),
                )
            ],
        ),
        "apiKeys": obj(
            "Named API keys: a Secret entry mapping names to keys (`team-a: sk-...`; one key per line also"
            " works, each named by its hash), mounted as API_KEYS_FILE, and optional per-pod limits per key"
            " (concurrent_requests, requests_per_minute, input_characters_per_day; `default` for every key)"
            " from the same Secret or a ConfigMap, mounted as API_KEY_LIMITS_FILE. The server re-reads both"
            " when Kubernetes updates them: changing keys or limits needs no restart.",
            {
                "secretName": string("Secret holding the keys.", minLength=1),
                "key": string("Entry of the Secret with the keys.", default="api-keys", pattern=SECRET_KEY),
                "limits": obj(
                    "Where the limits are; leave out for no limits.",
                    {
                        "configMapName": string(
                            "ConfigMap holding the limits; unset: the keys' Secret holds them.", minLength=1
                        ),
                        "key": string("Entry with the limits.", default="limits.yaml", pattern=SECRET_KEY),
                    },
                ),
            },
            required=["secretName"],
        ),
        "apiKeySecretRef": obj(
            "Deprecated, use apiKeys (the same as apiKeys.secretName and apiKeys.key): Secret holding the"
            " accepted API keys (mounted as API_KEYS_FILE).",
            {
                "name": string("Secret name.", minLength=1),
                "key": string("Key in the Secret.", default="api-keys", pattern=SECRET_KEY),
            },
            required=["name"],
        ),
        "rollout": obj(
            "RollingUpdate parameters; the defaults replace pods one at a time without spare GPUs.",
            {
                "maxSurge": int_or_string("Extra pods during an update.", default=0),
                "maxUnavailable": int_or_string("Pods that may be down during an update.", default=1),
            },
            default={},
            rules=[ROLLOUT_CAN_PROGRESS],
        ),
        "podDisruptionBudget": obj(
            "PodDisruptionBudget for voluntary evictions.",
            {
                "enabled": boolean("Create the PDB.", True),
                "maxUnavailable": int_or_string("Pods a drain may evict at once.", default=1),
            },
            default={},
        ),
        "env": {
            "type": "array",
            "description": "Extra environment variables (core/v1 EnvVar).",
            "items": obj(
                "One variable.",
                {"name": string("Variable name.", minLength=1), "value": string("Value.")},
                required=["name"],
                **{"x-kubernetes-preserve-unknown-fields": True},
            ),
        },
        "monitoring": obj(
            "Prometheus scraping.",
            {
                "serviceMonitor": boolean(
                    "Create a ServiceMonitor when the Prometheus Operator CRD exists.", True
                ),
                "interval": string("Scrape interval.", default="30s", pattern=r"^[0-9]+(ms|s|m|h)$"),
                "labels": string_map(
                    "Extra labels on the ServiceMonitor, for a Prometheus that selects monitors by label"
                    " (kube-prometheus-stack: `release: <its release name>`)."
                ),
            },
            default={},
        ),
        "logLevel": enum("Server LOG_LEVEL.", ["debug", "info", "warning", "error"], "info"),
        "jsonLogs": boolean("Server logs one JSON object per line (LOG_JSON).", True),
        "terminationGracePeriodSeconds": integer(
            "Time a pod gets to drain in-flight requests after it stops being ready; at least"
            f" serving.requestTimeoutSeconds + {PRE_STOP_SECONDS} (the preStop pause), which is also the"
            " value when unset.",
            minimum=5,
        ),
    },
    rules=[QUEUE_CAN_REACH_HPA_TARGET, HPA_OWNS_REPLICAS, GRACE_COVERS_A_REQUEST, ONE_KEY_SOURCE],
)

TTS_DEPLOYMENT_STATUS = obj(
    "Observed state, written by the operator.",
    {
        "observedGeneration": integer("Generation of the spec last reconciled.", minimum=0),
        "replicas": integer("Pods that exist (scale subresource).", minimum=0),
        "readyReplicas": integer("Pods that are ready.", minimum=0),
        "selector": string("Label selector of the pods (scale subresource, for HPA)."),
        "url": string("In-cluster URL of the Service."),
        "conditions": CONDITIONS,
    },
)

# -- VoiceLibrary ---------------------------------------------------------------------------------

VOICE_LIBRARY_SPEC = obj(
    "Where cloned voices are kept.",
    {
        "storage": obj(
            "A claim the operator creates.",
            {
                "size": int_or_string("Claim size.", default="10Gi"),
                "storageClassName": immutable(
                    string("StorageClass of the claim (immutable, as the claim's is)."),
                    "storage.storageClassName is immutable: a claim's StorageClass cannot change",
                ),
                "accessMode": immutable(
                    enum(
                        "Access mode (immutable). ReadWriteOnce works on every storage class but lets only"
                        " pods on one node mount it; ReadWriteMany (NFS, EFS, Filestore, Azure Files) lets"
                        " TTSDeployments on every node share the voices.",
                        ["ReadWriteMany", "ReadWriteOnce", "ReadOnlyMany", "ReadWriteOncePod"],
                        "ReadWriteOnce",
                    ),
                    "storage.accessMode is immutable: a claim's access mode cannot change",
                ),
            },
        ),
        "existingClaim": string("Use this PersistentVolumeClaim instead of creating one."),
        "reclaimPolicy": enum(
            "What deleting the VoiceLibrary does to the claim it created: Retain never deletes voice data.",
            ["Retain", "Delete"],
            "Retain",
        ),
    },
    rules=[ONE_LIBRARY_SOURCE, NO_DELETE_OF_FOREIGN_CLAIM],
)

VOICE_LIBRARY_STATUS = obj(
    "Observed state, written by the operator.",
    {
        "observedGeneration": integer("Generation of the spec last reconciled.", minimum=0),
        "phase": enum("Claim phase.", ["Pending", "Bound", "Lost", "Invalid"]),
        "claimName": string("The PersistentVolumeClaim holding the voices."),
        "bound": {"type": "boolean", "description": "Whether the claim is bound."},
        "capacity": string("Capacity of the bound volume."),
        "conditions": CONDITIONS,
    },
)


@dataclass(frozen=True)
class Kind:
    """One custom resource kind and everything the CRD says about it."""

    kind: str
    plural: str
    short_names: list[str]
    spec: Schema
    status: Schema
    printer_columns: list[dict[str, Any]]
    # Rules on the whole object (CEL may read metadata.name there).
    object_rules: list[Rule]
    # Whether an empty spec is valid (then `spec: {}` is the default and nested defaults fill it).
    spec_default: bool
    scale: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _column(name: str, json_path: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": json_path, **extra}


_READY_STATUS = '.status.conditions[?(@.type=="Ready")].status'
_AGE = _column("Age", ".metadata.creationTimestamp", "date")

TTS_DEPLOYMENT = Kind(
    kind="TTSDeployment",
    plural="ttsdeployments",
    short_names=["ttsd"],
    spec=TTS_DEPLOYMENT_SPEC,
    status=TTS_DEPLOYMENT_STATUS,
    printer_columns=[
        _column("Model", ".spec.model.source"),
        _column("Replicas", ".spec.replicas", "integer"),
        _column("Ready", ".status.readyReplicas", "integer"),
        _column("Status", _READY_STATUS),
        _column("URL", ".status.url"),
        _AGE,
    ],
    object_rules=[TTS_NAME],
    spec_default=True,
    scale=True,
)

VOICE_LIBRARY = Kind(
    kind="VoiceLibrary",
    plural="voicelibraries",
    short_names=["voicelib"],
    spec=VOICE_LIBRARY_SPEC,
    status=VOICE_LIBRARY_STATUS,
    printer_columns=[
        _column("Claim", ".status.claimName"),
        _column("Phase", ".status.phase"),
        _column("Capacity", ".status.capacity"),
        _column("Policy", ".spec.reclaimPolicy"),
        _AGE,
    ],
    object_rules=[LIBRARY_NAME],
    # storage or existingClaim is required: an empty spec would break its own rule.
    spec_default=False,
)

KINDS = [TTS_DEPLOYMENT, VOICE_LIBRARY]
