"""The CRDs on a real API server: accepted as generated, defaults applied, every example accepted and
every invalid example refused with the message on its first line, immutable claim fields immutable."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cluster.client import ApiError, KubeClient
from operator_harness import tts_deployment, voice_library

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "crds" / "examples"
MERGE = "application/merge-patch+json"


def create(kube: KubeClient, manifest: dict, namespace: str, *, dry_run: bool = True) -> dict:
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    target = kube.path(manifest["apiVersion"], manifest["kind"], namespace=namespace)
    return kube.call("POST", target, body, params={"dryRun": "All"} if dry_run else None)


def test_the_api_server_serves_both_crds(kube: KubeClient, tts_crds) -> None:
    for crd in tts_crds:
        stored = kube.get(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        )
        conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
        assert conditions["Established"] == "True" and conditions.get("NonStructuralSchema") is None


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_is_accepted(kube: KubeClient, tts_crds, namespace: str, path: Path) -> None:
    create(kube, yaml.safe_load(path.read_text()), namespace)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.name)
def test_invalid_example_is_refused_with_its_message(
    kube: KubeClient, tts_crds, namespace: str, path: Path
) -> None:
    text = path.read_text()
    expected = text.splitlines()[0].removeprefix("# expect-error: ")
    manifest = yaml.safe_load(text)
    with pytest.raises(ApiError) as refused:
        create(kube, manifest, namespace)
    assert refused.value.status == 422
    assert (
        refused.value.message
        == f'{manifest["kind"]}.tts.chatterbox.dev "{manifest["metadata"]["name"]}" is invalid: {expected}'
    )


def test_the_server_fills_defaults_without_breaking_the_rules(
    kube: KubeClient, tts_crds, namespace: str
) -> None:
    tts = create(kube, {**tts_deployment("minimal"), "spec": {}}, namespace)
    spec = tts["spec"]
    assert spec["model"]["source"] == "ResembleAI/chatterbox" and spec["model"]["loadTimeoutSeconds"] == 1800
    assert spec["rollout"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert spec["autoscaling"]["enabled"] is False
    assert "replicas" not in spec and "terminationGracePeriodSeconds" not in spec
    # No spec at all is a TTSDeployment with every default; a VoiceLibrary needs one of its sources.
    no_spec = tts_deployment("bare")
    del no_spec["spec"]
    assert create(kube, no_spec, namespace)["spec"]["gpu"]["count"] == 1
    library = create(kube, voice_library("voices", storage={}), namespace)
    assert library["spec"] == {
        "storage": {"size": "10Gi", "accessMode": "ReadWriteOnce"},
        "reclaimPolicy": "Retain",
    }


def test_claim_access_mode_and_storage_class_are_immutable(
    kube: KubeClient, tts_crds, namespace: str
) -> None:
    create(
        kube,
        tts_deployment("cache", modelCache={"size": "1Gi", "storageClassName": "fast"}),
        namespace,
        dry_run=False,
    )
    create(kube, voice_library("voices", storage={"size": "1Gi"}), namespace, dry_run=False)
    cases = [
        (
            "TTSDeployment",
            "cache",
            {"spec": {"modelCache": {"accessMode": "ReadWriteMany"}}},
            "modelCache.accessMode is immutable",
        ),
        (
            "TTSDeployment",
            "cache",
            {"spec": {"modelCache": {"storageClassName": "slow"}}},
            "modelCache.storageClassName is immutable",
        ),
        (
            "VoiceLibrary",
            "voices",
            {"spec": {"storage": {"accessMode": "ReadWriteMany"}}},
            "storage.accessMode is immutable",
        ),
    ]
    for kind, name, patch, message in cases:
        with pytest.raises(ApiError) as refused:
            kube.call(
                "PATCH",
                kube.path("tts.chatterbox.dev/v1alpha1", kind, name, namespace),
                patch,
                content_type=MERGE,
            )
        assert message in refused.value.message
    # The size can still grow (claims can be expanded).
    kube.call(
        "PATCH",
        kube.path("tts.chatterbox.dev/v1alpha1", "TTSDeployment", "cache", namespace),
        {"spec": {"modelCache": {"size": "2Gi"}}},
        content_type=MERGE,
    )
