"""The Helm chart lints, renders valid Kubernetes 1.30+ manifests for the combinations users install,
and rejects bad values before anything reaches a cluster."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from chatterbox_operator import __main__ as operator_main
from chatterbox_operator import builders
from chatterbox_operator.schema import DEFAULT_IMAGE, KINDS, TTS_DEPLOYMENT
from chatterbox_operator.validation import checked_spec

from .conftest import CHART_DIR, NAMESPACE, RELEASE, Manifest, Render, inference_env

COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ha": {"operator": {"ha": {"enabled": True, "replicas": 3}}},
    "ha-namespaced": {"operator": {"ha": {"enabled": True}, "watchNamespaces": ["tts-a", "tts-b"]}},
    "monitoring": {
        "ttsDeployment": {"enabled": True},
        "monitoring": {
            "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Chatterbox"}},
        },
    },
    "webui-ingress": {
        "ttsDeployment": {"enabled": True},
        "webui": {"enabled": True},
        "ingress": {"enabled": True, "className": "nginx", "tlsSecretName": "chatterbox-tls"},
    },
    "no-gpu": {
        "ttsDeployment": {"enabled": True, "gpuCount": 0, "model": "random:tiny"},
        "voiceLibrary": {"enabled": True, "storageClassName": "standard"},
    },
    "batching": {
        "ttsDeployment": {
            "enabled": True,
            "serving": {"maxConcurrent": 16, "maxQueue": 32, "requestTimeoutSeconds": 120},
            "extraSpec": {"autoscaling": {"enabled": True, "targetQueueDepth": 4}},
        }
    },
    "model-cache": {
        "ttsDeployment": {"enabled": True, "modelCache": {"size": "20Gi", "storageClassName": "fast"}},
        "voiceLibrary": {"enabled": True, "accessMode": "ReadWriteMany"},
    },
    "existing-voice-claim": {
        "ttsDeployment": {"enabled": True},
        "voiceLibrary": {"enabled": True, "existingClaim": "my-voices"},
    },
}

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas available.
KUBERNETES_VERSIONS = ["1.30.0", f"{kubernetes_validate.latest_version()}.0"]
# Prometheus Operator kinds: no schema ships offline; their shape is asserted in test_observability.py.
PROMETHEUS_OPERATOR_GROUP = "monitoring.coreos.com/v1"
PLATFORM_KINDS = {kind.kind: kind for kind in KINDS}


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def crd_schema(crd: Manifest) -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_chart_lints_without_errors_or_warnings(combination: str) -> None:
    report = helm_python.lint(
        CHART_DIR, COMBINATIONS[combination], strict=True, namespace=NAMESPACE, kube_version="v1.30.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], problems


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_rendered_manifest_is_valid(
    combination: str, kube_version: str, render: Render, render_hooks: Render, chart_crds: dict[str, Manifest]
) -> None:
    manifests = render(COMBINATIONS[combination]) + render_hooks(COMBINATIONS[combination])
    assert manifests
    for manifest in manifests:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["kind"] in chart_crds:
            # Our own kinds (and kopf's peering): checked against the CRD the chart installs.
            jsonschema.validate(manifest, crd_schema(chart_crds[manifest["kind"]]))
            if manifest["kind"] in PLATFORM_KINDS:
                # The operator's own defaulting and cross-field rules (the CRD's CEL, which jsonschema skips).
                checked_spec(PLATFORM_KINDS[manifest["kind"]], manifest)
        elif manifest["apiVersion"] != PROMETHEUS_OPERATOR_GROUP:
            try:
                kubernetes_validate.validate(manifest, kube_version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{where} is invalid for Kubernetes {kube_version}: {error}")
        assert manifest["metadata"].get("namespace", NAMESPACE) in (NAMESPACE, "tts-a", "tts-b"), where


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_chart_crds_are_valid(kube_version: str, chart_crds: dict[str, Manifest]) -> None:
    assert {"TTSDeployment", "VoiceLibrary", "ClusterKopfPeering", "KopfPeering"} <= set(chart_crds)
    for crd in chart_crds.values():
        kubernetes_validate.validate(crd, kube_version, strict=True)


def test_defaults_install_only_the_operator(render: Render) -> None:
    kinds = sorted(m["kind"] for m in render({}))
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]


def operator_command_line(manifests: list[Manifest]) -> argparse.Namespace:
    """The operator's own parser applied to the rendered args; HA pods add a random --priority."""
    (deployment,) = [d for d in of_kind(manifests, "Deployment") if "operator" in d["metadata"]["name"]]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    wrapper = " ".join(container.get("command", []))
    priority = ["--priority=4242"] if "--priority=" in wrapper else []
    return operator_main.parse_args(container["args"] + priority)


def test_single_operator_is_standalone_and_recreated(render: Render) -> None:
    manifests = render({})
    (deployment,) = of_kind(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "command" not in container, "the image's entrypoint runs the operator"
    args = operator_command_line(manifests)
    assert args.peering is None and args.namespace == [] and args.json_logs
    port = container["ports"][0]["containerPort"]
    assert args.liveness == f"http://0.0.0.0:{port}/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_ha_operator_peers_with_distinct_priorities(render: Render) -> None:
    manifests = render(COMBINATIONS["ha"])
    (deployment,) = of_kind(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert (
        container["command"][:2] == ["/bin/sh", "-c"]
        and "exec chatterbox-operator" in container["command"][2]
    )
    args = operator_command_line(manifests)
    (peering,) = of_kind(manifests, "ClusterKopfPeering")
    assert args.peering == peering["metadata"]["name"] == "chatterbox-operator"
    assert args.priority == 4242


def test_namespaced_operator_gets_roles_only_where_it_watches(render: Render) -> None:
    manifests = render(COMBINATIONS["ha-namespaced"])
    assert operator_command_line(manifests).namespace == ["tts-a", "tts-b"]
    assert sorted(r["metadata"]["namespace"] for r in of_kind(manifests, "Role")) == ["tts-a", "tts-b"]
    assert sorted(p["metadata"]["namespace"] for p in of_kind(manifests, "KopfPeering")) == ["tts-a", "tts-b"]
    (cluster_role,) = of_kind(manifests, "ClusterRole")
    cluster_resources = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    # kopf follows the listed namespaces appearing and disappearing.
    assert cluster_resources == {"customresourcedefinitions", "namespaces"}


def test_operator_debug_logging(render: Render) -> None:
    args = operator_command_line(render({"operator": {"debug": True, "jsonLogs": False}}))
    assert args.verbose and not args.json_logs


def test_default_tts_deployment_follows_values(render: Render) -> None:
    manifests = render(COMBINATIONS["no-gpu"])
    (tts,) = of_kind(manifests, "TTSDeployment")
    assert tts["spec"]["gpu"] == {"count": 0}
    assert tts["spec"]["model"] == {"source": "random:tiny"}
    # The same default image the operator puts in a TTSDeployment that names none.
    assert tts["spec"]["image"] == DEFAULT_IMAGE
    (library,) = of_kind(manifests, "VoiceLibrary")
    assert tts["spec"]["voiceLibraryRef"] == {"name": library["metadata"]["name"]}
    assert library["spec"] == {
        "storage": {"size": "1Gi", "storageClassName": "standard", "accessMode": "ReadWriteOnce"}
    }
    assert "modelCache" not in tts["spec"], "no cache claim unless asked for"


def test_model_cache_and_voice_claims_default_to_read_write_once(render: Render) -> None:
    """ReadWriteMany is refused by local-path, EBS, GCE PD and Azure Disk: pods would stay Pending."""
    values = {
        "ttsDeployment": {"enabled": True, "modelCache": {"size": "20Gi"}},
        "voiceLibrary": {"enabled": True},
    }
    manifests = render(values)
    (tts,) = of_kind(manifests, "TTSDeployment")
    assert tts["spec"]["modelCache"] == {"size": "20Gi", "accessMode": "ReadWriteOnce"}
    (library,) = of_kind(manifests, "VoiceLibrary")
    assert library["spec"]["storage"]["accessMode"] == "ReadWriteOnce"


def test_storage_access_modes_and_classes_are_settable(render: Render) -> None:
    manifests = render(COMBINATIONS["model-cache"])
    (tts,) = of_kind(manifests, "TTSDeployment")
    assert tts["spec"]["modelCache"] == {
        "size": "20Gi",
        "accessMode": "ReadWriteOnce",
        "storageClassName": "fast",
    }
    (library,) = of_kind(manifests, "VoiceLibrary")
    assert library["spec"]["storage"]["accessMode"] == "ReadWriteMany"
    existing = {"ttsDeployment": {"enabled": True, "modelCache": {"existingClaim": "weights"}}}
    (tts,) = of_kind(render(existing), "TTSDeployment")
    assert tts["spec"]["modelCache"] == {"existingClaim": "weights"}


def test_existing_voice_claim_replaces_the_created_one(render: Render) -> None:
    (library,) = of_kind(render(COMBINATIONS["existing-voice-claim"]), "VoiceLibrary")
    assert library["spec"] == {"existingClaim": "my-voices"}


def test_extra_spec_reaches_the_tts_deployment(render: Render) -> None:
    values = {
        "ttsDeployment": {"enabled": True, "extraSpec": {"autoscaling": {"enabled": True, "maxReplicas": 6}}}
    }
    (tts,) = of_kind(render(values), "TTSDeployment")
    assert tts["spec"]["autoscaling"] == {"enabled": True, "maxReplicas": 6}
    assert tts["spec"]["gpu"] == {"count": 1}
    # The HPA owns the replica count: a fixed spec.replicas beside it is refused by the CRD.
    assert "replicas" not in tts["spec"]
    (fixed,) = of_kind(render({"ttsDeployment": {"enabled": True, "replicas": 3}}), "TTSDeployment")
    assert fixed["spec"]["replicas"] == 3


def test_serving_values_reach_the_inference_server(render: Render) -> None:
    (tts,) = of_kind(render(COMBINATIONS["batching"]), "TTSDeployment")
    assert tts["spec"]["serving"] == {"maxConcurrent": 16, "maxQueue": 32, "requestTimeoutSeconds": 120}
    env = inference_env(tts)
    assert (env["MAX_CONCURRENT"], env["MAX_QUEUE"], env["REQUEST_TIMEOUT_S"]) == ("16", "32", "120")


@pytest.mark.parametrize(("gpu_count", "batch"), [(1, "8"), (0, "2")])
def test_unset_serving_values_leave_the_defaults_to_the_operator(
    gpu_count: int, batch: str, render: Render
) -> None:
    values = {"ttsDeployment": {"enabled": True, "gpuCount": gpu_count, "serving": {"maxQueue": 3}}}
    (tts,) = of_kind(render(values), "TTSDeployment")
    assert tts["spec"]["serving"] == {"maxQueue": 3}
    assert inference_env(tts)["MAX_CONCURRENT"] == batch


def test_serving_bounds_match_the_crd(chart_crds: dict[str, Manifest]) -> None:
    """values.schema.json repeats the CRD's bounds so `helm install` fails early; they must agree."""
    values_schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    chart_serving = values_schema["properties"]["ttsDeployment"]["properties"]["serving"]["properties"]
    crd_serving = crd_schema(chart_crds["TTSDeployment"])["properties"]["spec"]["properties"]["serving"]
    assert set(chart_serving) == set(crd_serving["properties"])
    for key, bounds in crd_serving["properties"].items():
        assert (chart_serving[key]["minimum"], chart_serving[key]["maximum"]) == (
            bounds["minimum"],
            bounds["maximum"],
        ), key


def test_ingress_sends_the_api_to_inference_and_the_rest_to_the_web_ui(render: Render) -> None:
    manifests = render(COMBINATIONS["webui-ingress"])
    (ingress,) = of_kind(manifests, "Ingress")
    backends = {p["path"]: p["backend"]["service"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    (tts,) = of_kind(manifests, "TTSDeployment")
    # The Service the operator creates for this TTSDeployment, with the CRD's defaults applied.
    spec = checked_spec(TTS_DEPLOYMENT, tts)
    service = builders.service(builders.Owner.of({**tts, "metadata": {**tts["metadata"], "uid": "u"}}), spec)
    port = service["spec"]["ports"][0]["port"]
    assert backends["/v1"] == {"name": service["metadata"]["name"], "port": {"number": port}}
    (ui_service,) = of_kind(manifests, "Service")
    assert backends["/"]["name"] == ui_service["metadata"]["name"]
    assert ingress["spec"]["tls"] == [{"hosts": ["chatterbox.example.com"], "secretName": "chatterbox-tls"}]
    (ui,) = [d for d in of_kind(manifests, "Deployment") if "webui" in d["metadata"]["name"]]
    env = {e["name"]: e["value"] for e in ui["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The Service's full name: nginx resolves it per request, without resolv.conf's search domains.
    assert (
        env["CHATTERBOX_API_URL"]
        == f"http://{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{port}"
    )


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_pods_run_restricted(combination: str, render: Render, render_hooks: Render) -> None:
    manifests = render(COMBINATIONS[combination]) + render_hooks(COMBINATIONS[combination])
    workloads = [m for m in manifests if m["kind"] in ("Deployment", "Job")]
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        # OpenShift's restricted-v2 SCC assigns user and group IDs and refuses pods that pick their own.
        contexts = [pod["securityContext"]] + [c["securityContext"] for c in pod["containers"]]
        assert not any({"runAsUser", "runAsGroup", "fsGroup"} & set(context) for context in contexts)
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["limits"]["memory"]


BAD_VALUES = [
    ({"operator": {"debug": "yes"}}, "/operator/debug"),
    ({"operator": {"ha": {"enabled": True, "replicas": 1}}}, "/operator/ha/replicas"),
    ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "/operator/watchNamespaces/0"),
    ({"ttsDeployment": {"gpuCount": "one"}}, "/ttsDeployment/gpuCount"),
    ({"ttsDeployment": {"gpuCount": -1}}, "/ttsDeployment/gpuCount"),
    ({"ttsDeployment": {"name": "Chatterbox"}}, "/ttsDeployment/name"),
    ({"ttsDeployment": {"serving": {"maxConcurrent": 0}}}, "/ttsDeployment/serving/maxConcurrent"),
    ({"ttsDeployment": {"serving": {"maxConcurrent": 65}}}, "/ttsDeployment/serving/maxConcurrent"),
    ({"ttsDeployment": {"serving": {"maxQueue": "eight"}}}, "/ttsDeployment/serving/maxQueue"),
    (
        {"ttsDeployment": {"serving": {"requestTimeoutSeconds": 0}}},
        "/ttsDeployment/serving/requestTimeoutSeconds",
    ),
    ({"ttsDeployment": {"serving": {"batchSize": 8}}}, "additional properties 'batchSize'"),
    ({"voiceLibrary": {"size": "lots"}}, "/voiceLibrary/size"),
    ({"voiceLibrary": {"accessMode": "ReadWriteSometimes"}}, "/voiceLibrary/accessMode"),
    (
        {"ttsDeployment": {"modelCache": {"accessMode": "ReadOnlyMany"}}},
        "/ttsDeployment/modelCache/accessMode",
    ),
    ({"uninstallHook": {"timeoutSeconds": 0}}, "/uninstallHook/timeoutSeconds"),
    ({"webui": {"service": {"type": "ExternalName"}}}, "/webui/service/type"),
    ({"ingress": {"enabled": True}}, "/webui/enabled"),
    ({"monitoring": {"prometheusRule": {"errorRatio": 5}}}, "/monitoring/prometheusRule/errorRatio"),
    ({"monitoring": {"podMonitor": {"interval": "often"}}}, "/monitoring/podMonitor/interval"),
    ({"replicaCount": 2}, "additional properties 'replicaCount'"),
    ({"operator": {"imagee": {}}}, "additional properties 'imagee'"),
]


@pytest.mark.parametrize(("values", "complaint"), BAD_VALUES, ids=[c for _, c in BAD_VALUES])
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str, chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(complaint)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_schema_accepts_the_default_values(chart: helm_python.Chart) -> None:
    chart.validate_schema(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))


def test_every_value_is_documented() -> None:
    """Each value in values.yaml has a comment on its own line or on the block it belongs to."""
    undocumented = []
    documented_indents: list[int] = []  # indents of the documented blocks we are inside
    previous_was_comment = False
    for number, line in enumerate((CHART_DIR / "values.yaml").read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            previous_was_comment = True
            continue
        indent = len(line) - len(line.lstrip())
        documented_indents = [i for i in documented_indents if i < indent]
        key = re.match(r"^(\s*)([A-Za-z0-9_.]+):(.*)$", line)
        if key and (previous_was_comment or documented_indents):
            documented_indents.append(indent)
        elif key and key.group(3).strip():
            undocumented.append(f"line {number}: {stripped}")
        previous_was_comment = False
    assert undocumented == []


def test_notes_explain_the_first_tts_deployment(chart: helm_python.Chart) -> None:
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)["chatterbox-platform/templates/NOTES.txt"]
    assert "kind: TTSDeployment" in notes and f"kubectl -n {NAMESPACE} apply -f -" in notes
    assert "port-forward svc/chatterbox" in notes and "/v1/audio/speech" in notes
    with_ingress = chart.render(COMBINATIONS["webui-ingress"], name=RELEASE, namespace=NAMESPACE)
    assert (
        "https://chatterbox.example.com/v1/audio/speech"
        in with_ingress["chatterbox-platform/templates/NOTES.txt"]
    )


@pytest.mark.parametrize(
    ("values", "told"),
    [
        ({}, "`helm uninstall` first deletes the TTSDeployments and VoiceLibraries"),
        ({"rbac": {"create": False}, "serviceAccount": {"create": False}}, "kubectl delete ttsdeployments"),
    ],
)
def test_notes_say_how_uninstall_treats_the_custom_resources(
    values: dict[str, Any], told: str, chart: helm_python.Chart
) -> None:
    """With the pre-delete hook nothing is left to do by hand; without it (no RBAC from the chart) the
    user must delete them while the operator still runs."""
    notes = chart.render(values, name=RELEASE, namespace=NAMESPACE)["chatterbox-platform/templates/NOTES.txt"]
    assert told in " ".join(notes.split())


def test_chart_works_as_a_dependency_with_global_values(tmp_path: Path) -> None:
    """An umbrella chart passes `global` to every dependency; the strict schema must let it through."""
    parent = tmp_path / "platform-stack"
    shutil.copytree(
        CHART_DIR, parent / "charts" / "chatterbox-platform"
    )  # links followed, as `helm package` does
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform-stack",
                "version": "1.0.0",
                "dependencies": [{"name": "chatterbox-platform", "version": "0.1.0"}],
            }
        )
    )
    (parent / "values.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"imageRegistry": "registry.example.com", "storageClass": "fast"},
                "chatterbox-platform": {"ttsDeployment": {"enabled": True}},
            }
        )
    )
    with helm_python.Chart.load(parent) as umbrella:
        rendered = umbrella.render({}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert any("kind: TTSDeployment" in text for text in rendered.values())
    with helm_python.Chart.load(CHART_DIR) as alone:
        alone.validate_schema({**yaml.safe_load((CHART_DIR / "values.yaml").read_text()), "global": {}})


def test_values_schema_is_strict_json() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False


def test_pod_monitor_replaces_the_operator_service_monitor(render: Render) -> None:
    """Scraping the same pods through both would double every rate on the dashboard."""
    (tts,) = of_kind(render(COMBINATIONS["monitoring"]), "TTSDeployment")
    assert tts["spec"]["monitoring"] == {"serviceMonitor": False}
    (tts,) = of_kind(render({"ttsDeployment": {"enabled": True}}), "TTSDeployment")
    assert "monitoring" not in tts["spec"]


@pytest.mark.parametrize(
    ("tts_values", "model"),
    [
        # No model given: the one for the device, Chatterbox-Nano on CPU nodes.
        ({"gpuCount": 0}, {"source": "ResembleAI/chatterbox-nano", "variant": "nano"}),
        ({"gpuCount": 1}, {"source": "ResembleAI/chatterbox"}),
        ({"gpuCount": 0, "model": "random:tiny"}, {"source": "random:tiny"}),
        # Another variant asked for on CPU: its own checkpoint, not Nano's.
        (
            {"gpuCount": 0, "variant": "multilingual"},
            {"source": "ResembleAI/chatterbox", "variant": "multilingual"},
        ),
        (
            {"gpuCount": 1, "variant": "multilingual", "modelVersion": "v3"},
            {"source": "ResembleAI/chatterbox", "variant": "multilingual", "version": "v3"},
        ),
    ],
)
def test_model_values_pick_the_checkpoint_and_its_variant(render: Render, tts_values, model) -> None:
    (tts,) = of_kind(render({"ttsDeployment": {"enabled": True, **tts_values}}), "TTSDeployment")
    assert tts["spec"]["model"] == model
    checked_spec(TTS_DEPLOYMENT, tts)  # the operator (and the CRD) accept what the chart renders
