"""Pure manifest builders: the objects a TTSDeployment or VoiceLibrary turns into."""

import kubernetes_validate
import pytest
from chatterbox_operator import builders, schema, validation
from chatterbox_operator import resources as r

OWNER = builders.Owner(kind="TTSDeployment", name="demo", namespace="speech", uid="0b4c1e9e-uid")

FULL_SPEC = {
    "model": {"source": "ResembleAI/chatterbox", "revision": "v2", "dtype": "bfloat16"},
    "gpu": {
        "count": 1,
        "resourceName": "amd.com/gpu",
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "tts", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": "inference",
    },
    "modelCache": {"size": "40Gi", "storageClassName": "nfs"},
    "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetQueueDepth": 3},
    "service": {"type": "LoadBalancer", "port": 8080},
    "wyoming": {"enabled": True, "port": 10300},
    "ingress": {"enabled": True, "host": "tts.example.com", "className": "nginx", "tlsSecretName": "tls"},
    "apiKeySecretRef": {"name": "keys"},
    "env": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "EXTRA", "value": "1"}],
    "imagePullSecrets": ["registry"],
}


def spec_of(raw: dict) -> dict:
    return validation.checked_spec(schema.TTS_DEPLOYMENT, {"spec": raw})


def children(raw: dict, **kwargs) -> dict[str, builders.Child]:
    options = {"voice_claim": None, "monitoring_available": False, **kwargs}
    return {child.resource.kind: child for child in builders.tts_children(OWNER, spec_of(raw), **options)}


def container(raw: dict, voice_claim: str | None = None) -> dict:
    return builders.deployment(OWNER, spec_of(raw), voice_claim)["spec"]["template"]["spec"]["containers"][0]


def env_of(raw: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container(raw)["env"]}


@pytest.mark.parametrize(
    "raw",
    [
        {},
        FULL_SPEC,
        {"gpu": {"count": 0}, "podDisruptionBudget": {"enabled": False}},
        {"apiKeys": {"secretName": "keys", "limits": {"configMapName": "limits"}}},
    ],
    ids=["defaults", "everything", "cpu", "api-key-limits"],
)
def test_every_manifest_passes_strict_kubernetes_validation(raw: dict) -> None:
    for child in builders.tts_children(
        OWNER, spec_of(raw), voice_claim="lib-voices", monitoring_available=True
    ):
        # ServiceMonitor is a Prometheus Operator CRD, which kubernetes-validate has no schema for.
        if child.manifest is not None and child.resource != r.SERVICE_MONITORS:
            for version in ("1.30.0", "1.33.0"):
                kubernetes_validate.validate(child.manifest, version, strict=True)


def test_voice_library_claim_passes_strict_kubernetes_validation() -> None:
    spec = validation.checked_spec(schema.VOICE_LIBRARY, {"spec": {"storage": {"storageClassName": "nfs"}}})
    claim = builders.voice_library_claim("studio", "speech", spec)
    kubernetes_validate.validate(claim, "1.30.0", strict=True)
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "10Gi"}},
        "storageClassName": "nfs",
    }
    # Garbage collection must never remove voices behind the reclaim policy's back.
    assert "ownerReferences" not in claim["metadata"]


def test_all_children_are_owned_by_the_tts_deployment() -> None:
    for child in children(FULL_SPEC, monitoring_available=True).values():
        assert child.manifest is not None
        (reference,) = child.manifest["metadata"]["ownerReferences"]
        assert reference == {
            "apiVersion": "tts.chatterbox.dev/v1alpha1",
            "kind": "TTSDeployment",
            "name": "demo",
            "uid": "0b4c1e9e-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert child.manifest["metadata"]["namespace"] == "speech"


def test_gpu_count_becomes_requests_limits_and_toleration() -> None:
    resources = container(FULL_SPEC)["resources"]
    assert resources["limits"] == {"memory": "16Gi", "amd.com/gpu": "1"}
    assert resources["requests"] == {"cpu": "2", "memory": "16Gi", "amd.com/gpu": "1"}
    pod = builders.deployment(OWNER, spec_of(FULL_SPEC), None)["spec"]["template"]["spec"]
    assert {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["priorityClassName"] == "inference"
    assert pod["affinity"] == {"nodeAffinity": {}}


def test_cpu_only_has_no_gpu_resources_and_runs_on_cpu() -> None:
    resources = container({"gpu": {"count": 0}})["resources"]
    assert set(resources["limits"]) == {"memory"}
    assert env_of({"gpu": {"count": 0}})["DEVICE"] == "cpu"
    assert env_of({})["DEVICE"] == "cuda"


def test_server_environment_follows_the_model_spec() -> None:
    env = env_of(FULL_SPEC)
    assert env["CHATTERBOX_MODEL"] == "ResembleAI/chatterbox@v2"
    assert env["CHATTERBOX_VARIANT"] == "english"  # the CRD's "standard" is the server's English model
    assert env["DTYPE"] == "bfloat16"
    assert env["LOG_JSON"] == "true"
    assert env["API_PORT"] == "8000"
    assert env["MODEL_CACHE_DIR"] == builders.MODEL_CACHE_DIR
    assert env["VOICE_LIBRARY_DIR"] == builders.VOICE_LIBRARY_DIR
    assert env["API_KEYS_FILE"] == builders.API_KEYS_FILE
    # A user variable replaces the operator's of the same name instead of duplicating it.
    assert env["LOG_LEVEL"] == "debug" and env["EXTRA"] == "1"
    assert [item["name"] for item in container(FULL_SPEC)["env"]].count("LOG_LEVEL") == 1
    assert "API_KEYS_FILE" not in env_of({})


def pod_files(raw: dict) -> tuple[dict[str, str], dict[str, dict]]:
    """{env var: value} for the key files, and {mount path: volume source} for their volumes."""
    pod = builders.deployment(OWNER, spec_of(raw), None)["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {
        m["mountPath"]: volumes[m["name"]]
        for m in pod["containers"][0]["volumeMounts"]
        if "api-key" in m["name"]
    }
    assert all(
        "subPath" not in m for m in pod["containers"][0]["volumeMounts"]
    )  # subPath mounts never update
    env = {name: value for name, value in env_of(raw).items() if name.startswith("API_KEY")}
    return env, mounts


def test_api_keys_and_their_limits_are_mounted_where_the_server_reads_them() -> None:
    keys_only = pod_files({"apiKeys": {"secretName": "tts-keys"}})
    assert keys_only == (
        {"API_KEYS_FILE": builders.API_KEYS_FILE},
        {builders.API_KEYS_DIR: {"name": "api-keys", "secret": {"secretName": "tts-keys",
                                 "items": [{"key": "api-keys", "path": "keys"}]}}},
    )  # fmt: skip
    # The deprecated field mounts the same.
    assert pod_files({"apiKeySecretRef": {"name": "tts-keys"}}) == keys_only
    env, mounts = pod_files({"apiKeys": {"secretName": "tts-keys", "key": "keys.yaml", "limits": {}}})
    assert env == {
        "API_KEYS_FILE": builders.API_KEYS_FILE,
        "API_KEY_LIMITS_FILE": builders.API_KEY_LIMITS_FILE,
    }
    assert builders.API_KEY_LIMITS_FILE.startswith(builders.API_KEY_LIMITS_DIR + "/")
    assert mounts[builders.API_KEYS_DIR]["secret"]["items"] == [{"key": "keys.yaml", "path": "keys"}]
    assert mounts[builders.API_KEY_LIMITS_DIR]["secret"] == {
        "secretName": "tts-keys", "items": [{"key": "limits.yaml", "path": "limits"}]
    }  # fmt: skip
    _, mounts = pod_files({"apiKeys": {"secretName": "tts-keys", "limits": {"configMapName": "tts-limits"}}})
    assert mounts[builders.API_KEY_LIMITS_DIR]["configMap"] == {
        "name": "tts-limits", "items": [{"key": "limits.yaml", "path": "limits"}]
    }  # fmt: skip
    assert pod_files({}) == ({}, {})


@pytest.mark.parametrize(
    ("variant", "server_variant"), [("multilingual", "multilingual"), ("turbo", "turbo"), ("nano", "nano")]
)
def test_the_model_variant_reaches_the_server(variant: str, server_variant: str) -> None:
    spec = {"model": {"source": "ResembleAI/chatterbox-turbo", "variant": variant}}
    assert env_of(spec)["CHATTERBOX_VARIANT"] == server_variant
    labels = builders.deployment(OWNER, spec_of(spec), None)["spec"]["template"]["metadata"]["labels"]
    assert labels[builders.VARIANT_LABEL] == variant


def test_the_multilingual_version_reaches_the_server() -> None:
    assert env_of({"model": {"variant": "multilingual", "version": "v3"}})["CHATTERBOX_MODEL_VERSION"] == "v3"
    assert "CHATTERBOX_MODEL_VERSION" not in env_of({"model": {"variant": "multilingual"}})  # the server's v2


def test_serving_defaults_batch_eight_on_a_gpu_and_two_on_cpu() -> None:
    on_gpu = env_of({})
    assert (on_gpu["MAX_CONCURRENT"], on_gpu["MAX_QUEUE"], on_gpu["REQUEST_TIMEOUT_S"]) == ("8", "8", "300")
    assert env_of({"gpu": {"count": 0}})["MAX_CONCURRENT"] == "2"


def test_serving_settings_reach_the_server() -> None:
    serving = {"maxConcurrent": 16, "maxQueue": 0, "requestTimeoutSeconds": 45}
    env = env_of({"gpu": {"count": 0}, "serving": serving})
    assert (env["MAX_CONCURRENT"], env["MAX_QUEUE"], env["REQUEST_TIMEOUT_S"]) == ("16", "0", "45")


def test_user_env_still_overrides_the_serving_settings() -> None:
    raw = {"serving": {"maxConcurrent": 4}, "env": [{"name": "MAX_CONCURRENT", "value": "3"}]}
    names = [item["name"] for item in container(raw)["env"]]
    assert names.count("MAX_CONCURRENT") == 1
    assert env_of(raw)["MAX_CONCURRENT"] == "3"


def test_changing_the_batch_size_changes_the_pod_template() -> None:
    """A new pod template is what makes the Deployment roll its pods onto the new setting."""

    def template(raw: dict) -> dict:
        return builders.deployment(OWNER, spec_of(raw), None)["spec"]["template"]

    assert template({"serving": {"maxConcurrent": 8}}) == template({})
    assert template({"serving": {"maxConcurrent": 4}}) != template({})


def test_probes_drain_and_hardening() -> None:
    main = container({"model": {"loadTimeoutSeconds": 3600}})
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # The startup probe waits for readiness (weights loaded and warmed up) for the whole load budget,
    # and a rollout is not declared failed before a new pod had that budget.
    startup = main["startupProbe"]
    assert startup["httpGet"] == {"path": "/readyz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 3600
    slow = builders.deployment(OWNER, spec_of({"model": {"loadTimeoutSeconds": 3600}}), None)
    assert slow["spec"]["progressDeadlineSeconds"] >= 3600
    assert main["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    pod = builders.deployment(OWNER, spec_of({}), None)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # A stopping pod gets the preStop pause plus the longest request (serving.requestTimeoutSeconds).
    assert pod["terminationGracePeriodSeconds"] == 300 + schema.PRE_STOP_SECONDS
    short = builders.deployment(OWNER, spec_of({"serving": {"requestTimeoutSeconds": 30}}), None)
    assert short["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30 + schema.PRE_STOP_SECONDS


def test_uids_are_left_to_clusters_that_assign_them() -> None:
    plain = builders.deployment(OWNER, spec_of({}), None)["spec"]["template"]["spec"]["securityContext"]
    assert (plain["runAsUser"], plain["fsGroup"]) == (builders.RUN_AS_USER, builders.RUN_AS_USER)
    openshift = builders.deployment(OWNER, spec_of({}), None, assigns_uids=True)
    context = openshift["spec"]["template"]["spec"]["securityContext"]
    assert context == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_rollout_defaults_never_need_a_spare_gpu() -> None:
    strategy = builders.deployment(OWNER, spec_of({}), None)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def test_volumes_mount_cache_voices_and_keys() -> None:
    deployment = builders.deployment(OWNER, spec_of(FULL_SPEC), "studio-voices")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "demo-model-cache"}
    assert volumes["voices"]["persistentVolumeClaim"] == {"claimName": "studio-voices"}
    assert volumes["api-keys"]["secret"]["secretName"] == "keys"
    assert "emptyDir" in volumes["tmp"]
    existing = builders.deployment(OWNER, spec_of({"modelCache": {"existingClaim": "weights"}}), None)
    existing_volumes = {v["name"]: v for v in existing["spec"]["template"]["spec"]["volumes"]}
    assert existing_volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "weights"}
    assert "emptyDir" in existing_volumes["voices"]


def test_switched_off_children_are_listed_for_removal() -> None:
    off = children({"podDisruptionBudget": {"enabled": False}}, monitoring_available=True)
    assert off["Ingress"].manifest is None
    assert off["HorizontalPodAutoscaler"].manifest is None
    assert off["PodDisruptionBudget"].manifest is None
    assert (
        off["PersistentVolumeClaim"].manifest is None
        and off["PersistentVolumeClaim"].name == "demo-model-cache"
    )
    assert off["ServiceMonitor"].manifest is not None
    # Without the Prometheus Operator there is no ServiceMonitor to create or delete.
    assert "ServiceMonitor" not in children({})


def test_autoscaler_scales_the_deployment_on_queue_depth() -> None:
    built = children(FULL_SPEC)
    hpa = built["HorizontalPodAutoscaler"].manifest
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo"}
    # The HPA owns the Deployment's replicas: the operator's apply leaves them out.
    assert "replicas" not in built["Deployment"].manifest["spec"]
    assert children({})["Deployment"].manifest["spec"]["replicas"] == schema.DEFAULT_REPLICAS
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 6
    (metric,) = hpa["spec"]["metrics"]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "chatterbox_queue_depth"},
            "target": {"type": "AverageValue", "averageValue": "3"},
        },
    }


def test_service_ingress_and_url() -> None:
    built = children(FULL_SPEC)
    service = built["Service"].manifest
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
        {"name": "wyoming", "port": 10300, "targetPort": "wyoming", "protocol": "TCP"},
    ]
    assert service["spec"]["selector"] == builders.selector_labels("demo")
    ingress = built["Ingress"].manifest["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"hosts": ["tts.example.com"], "secretName": "tls"}]
    assert ingress["rules"][0]["host"] == "tts.example.com"
    assert (
        builders.service_url("demo", "speech", spec_of(FULL_SPEC))
        == "http://demo.speech.svc.cluster.local:8080"
    )
    assert builders.service_url("demo", "speech", spec_of({})) == "http://demo.speech.svc.cluster.local"


def test_wyoming_is_a_container_and_service_port_only_when_enabled() -> None:
    assert [port["name"] for port in children({})["Service"].manifest["spec"]["ports"]] == ["http"]
    assert "WYOMING_PORT" not in env_of({})
    raw = {"wyoming": {"enabled": True}}
    assert env_of(raw)["WYOMING_PORT"] == "10200"
    assert {"name": "wyoming", "containerPort": 10200, "protocol": "TCP"} in container(raw)["ports"]
    assert {"name": "wyoming", "port": 10200, "targetPort": "wyoming", "protocol": "TCP"} in children(raw)[
        "Service"
    ].manifest["spec"]["ports"]


def test_ingress_passes_streams_long_requests_and_voice_uploads_through_ingress_nginx() -> None:
    nginx = "nginx.ingress.kubernetes.io/"
    raw = {**FULL_SPEC, "serving": {"requestTimeoutSeconds": 120}}
    annotations = children(raw)["Ingress"].manifest["metadata"]["annotations"]
    assert annotations == {
        nginx + "proxy-buffering": "off",  # audio reaches the client as it is made
        nginx + "proxy-read-timeout": "120",
        nginx + "proxy-send-timeout": "120",
        nginx + "proxy-body-size": "12m",  # a 10 MiB voice sample plus its multipart envelope
    }
    # The user's annotations win by key and add to ours.
    raw["ingress"] = {
        **FULL_SPEC["ingress"],
        "annotations": {nginx + "proxy-body-size": "50m", "team": "tts"},
    }
    annotations = children(raw)["Ingress"].manifest["metadata"]["annotations"]
    assert annotations[nginx + "proxy-body-size"] == "50m" and annotations["team"] == "tts"
    assert annotations[nginx + "proxy-buffering"] == "off"


def test_variant_is_a_pod_label_outside_the_selector() -> None:
    deployment = builders.deployment(OWNER, spec_of({"model": {"variant": "turbo"}}), None)
    assert deployment["spec"]["template"]["metadata"]["labels"][builders.VARIANT_LABEL] == "turbo"
    assert builders.VARIANT_LABEL not in deployment["spec"]["selector"]["matchLabels"]


def test_selector_string_matches_pod_labels() -> None:
    pod_labels = builders.deployment(OWNER, spec_of({}), None)["spec"]["template"]["metadata"]["labels"]
    pairs = dict(item.split("=") for item in builders.selector_string("demo").split(","))
    assert pairs.items() <= pod_labels.items()


def test_service_monitor_scrapes_metrics() -> None:
    monitor = children({}, monitoring_available=True)["ServiceMonitor"].manifest
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]


def test_service_monitor_carries_extra_labels_for_prometheus_selectors() -> None:
    raw = {"monitoring": {"labels": {"release": "kube-prometheus-stack", "app.kubernetes.io/instance": "x"}}}
    labels = children(raw, monitoring_available=True)["ServiceMonitor"].manifest["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"
    assert labels["app.kubernetes.io/instance"] == "demo"  # ours win: it stays this TTSDeployment's child
