"""The CRD manifests in crds/ and the example custom resources in crds/examples/."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from chatterbox_operator import crds, schema, validation

REPO = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO / "crds"
EXAMPLES = sorted((CRDS_DIR / "examples").glob("*.yaml"))
INVALID_EXAMPLES = sorted((CRDS_DIR / "examples" / "invalid").glob("*.yaml"))


def committed_crd(kind: str) -> dict:
    for path in CRDS_DIR.glob("*.yaml"):
        manifest = yaml.safe_load(path.read_text())
        if manifest["spec"]["names"]["kind"] == kind:
            return manifest
    raise AssertionError(f"no CRD for {kind} in {CRDS_DIR}")


def validate_against_committed_crd(resource: dict) -> None:
    """What the apiserver does on create: default, then check the schema and the CEL rules."""
    crd = committed_crd(resource["kind"])
    open_api = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    defaulted = validation.with_defaults(open_api, resource)
    validation.validate(open_api["properties"]["spec"], defaulted["spec"], "spec")


def test_committed_crds_are_generated_from_the_schema() -> None:
    assert crds.stale_files(CRDS_DIR) == [], "run: python -m chatterbox_operator.crds --write"


@pytest.mark.parametrize("version", ["1.30.0", "1.33.0"])
@pytest.mark.parametrize("kind", schema.KINDS, ids=lambda k: k.kind)
def test_crd_passes_strict_kubernetes_validation(kind: schema.Kind, version: str) -> None:
    kubernetes_validate.validate(crds.crd_manifest(kind), version, strict=True)


def test_tts_deployment_crd_has_scale_and_status_subresources() -> None:
    version = committed_crd("TTSDeployment")["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {column["name"] for column in version["additionalPrinterColumns"]}
    assert {"Model", "Replicas", "Ready", "URL", "Age"} <= columns


def test_every_cel_rule_has_a_python_check() -> None:
    def rules_in(node: dict) -> list[str]:
        found = [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]
        for child in node.get("properties", {}).values():
            found += rules_in(child)
        return found

    for kind in schema.KINDS:
        for cel in rules_in(crds.open_api_schema(kind)):
            # Transition rules (immutable fields) need the old object: only the API server checks them.
            assert cel in schema.RULES or cel == schema.IMMUTABLE


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_its_crd(path: Path) -> None:
    validate_against_committed_crd(yaml.safe_load(path.read_text()))


def expected_error(path: Path) -> str:
    """The API server's message for an invalid example (test_operator_crds_on_server.py checks it)."""
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# expect-error: "), "invalid examples state the error they expect"
    return first_line.removeprefix("# expect-error: ")


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=lambda p: p.name)
def test_operator_refuses_each_invalid_example_on_the_same_field(path: Path) -> None:
    """The operator's own check (for objects stored before a CRD upgrade) agrees with the API server."""
    resource = yaml.safe_load(path.read_text())
    kind = {k.kind: k for k in schema.KINDS}[resource["kind"]]
    with pytest.raises(validation.InvalidSpec) as error:
        validation.checked_spec(kind, resource)
    field = expected_error(path).lstrip("[").split(":", 1)[0]
    assert str(error.value).split(":", 1)[0] == field


def test_defaults_fill_a_minimal_spec_like_the_apiserver() -> None:
    spec = validation.checked_spec(schema.TTS_DEPLOYMENT, {"spec": {"model": {"source": "random:tiny"}}})
    assert spec["model"] == {
        "source": "random:tiny",
        "variant": "standard",
        "dtype": "float32",
        "loadTimeoutSeconds": 1800,
    }
    assert "replicas" not in spec  # unset: DEFAULT_REPLICAS, or the HPA's count with autoscaling
    assert spec["gpu"] == {"count": 1, "resourceName": "nvidia.com/gpu"}
    assert spec["rollout"] == {"maxSurge": 0, "maxUnavailable": 1}
    # No schema default for the batch size: the operator picks it from the device (see the builders).
    assert spec["serving"] == {"maxQueue": 8, "requestTimeoutSeconds": 300}
    assert "modelCache" not in spec and "voiceLibraryRef" not in spec


def test_defaults_do_not_override_given_values() -> None:
    spec = validation.checked_spec(
        schema.TTS_DEPLOYMENT, {"spec": {"replicas": 0, "rollout": {"maxSurge": 1}}}
    )
    assert spec["replicas"] == 0
    assert spec["rollout"] == {"maxSurge": 1, "maxUnavailable": 1}


SERVING_OUT_OF_BOUNDS = [
    ({"maxConcurrent": 0}, "spec.serving.maxConcurrent: 0 is less than the minimum of 1"),
    ({"maxConcurrent": 65}, "spec.serving.maxConcurrent: 65 is greater than the maximum of 64"),
    ({"maxConcurrent": "8"}, "spec.serving.maxConcurrent: '8' is not of type 'integer'"),
    ({"maxQueue": -1}, "spec.serving.maxQueue: -1 is less than the minimum of 0"),
    ({"maxQueue": 1025}, "spec.serving.maxQueue: 1025 is greater than the maximum of 1024"),
    ({"requestTimeoutSeconds": 0}, "spec.serving.requestTimeoutSeconds: 0 is less than the minimum of 1"),
    (
        {"requestTimeoutSeconds": 7200},
        "spec.serving.requestTimeoutSeconds: 7200 is greater than the maximum of 3600",
    ),
]


@pytest.mark.parametrize(("serving", "expected"), SERVING_OUT_OF_BOUNDS, ids=lambda v: str(v))
def test_serving_bounds_are_enforced(serving: dict, expected: str) -> None:
    resource = {"kind": "TTSDeployment", "spec": {"serving": serving}}
    with pytest.raises(validation.InvalidSpec) as error:
        validate_against_committed_crd(resource)
    assert str(error.value) == expected


def test_voice_library_defaults() -> None:
    spec = validation.checked_spec(schema.VOICE_LIBRARY, {"spec": {"storage": {}}})
    assert spec == {"storage": {"size": "10Gi", "accessMode": "ReadWriteOnce"}, "reclaimPolicy": "Retain"}


def test_operator_readme_lists_exactly_the_api_calls() -> None:
    from chatterbox_operator.resources import API_CALLS

    readme = (REPO / "operator" / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `") and line.count("|") == 4]
    documented = []
    for row in rows:
        group, resource, verbs = (cell.strip().strip("`") for cell in row.strip("|").split("|"))
        documented.append((group.strip('"'), resource, tuple(verb.strip() for verb in verbs.split(","))))
    assert documented == list(API_CALLS)


# Specs that take every cross-field rule both ways (with the invalid examples and the good ones).
RULE_CASES = {
    "TTSDeployment": [
        {"model": {"source": "ResembleAI/chatterbox", "revision": "v1"}},
        {"model": {"source": "ResembleAI/chatterbox@v1", "revision": "v1"}},
        {"modelCache": {"existingClaim": "weights"}},
        {"modelCache": {}},
        {"rollout": {"maxSurge": "25%", "maxUnavailable": 0}},
        {"rollout": {"maxSurge": 0, "maxUnavailable": "0"}},
        {"ingress": {"tlsSecretName": "tls"}},
        {"autoscaling": {"minReplicas": 3, "maxReplicas": 3}},
        {"autoscaling": {"enabled": True, "targetQueueDepth": 8}, "serving": {"maxQueue": 8}},
        # 11 / 10 is a ratio the HPA's 10% tolerance never acts on; 12 / 10 it does.
        {"autoscaling": {"enabled": True, "targetQueueDepth": 10}, "serving": {"maxQueue": 11}},
        {"autoscaling": {"enabled": True, "targetQueueDepth": 10}, "serving": {"maxQueue": 12}},
        {"autoscaling": {"enabled": True, "targetQueueDepth": "1500m"}, "serving": {"maxQueue": 1}},
        {"autoscaling": {"enabled": False}, "serving": {"maxQueue": 0}},
        {"autoscaling": {"enabled": True}, "replicas": 2},
        {"replicas": 2},
        {"gpu": {"count": 2}},
        {"terminationGracePeriodSeconds": 100, "serving": {"requestTimeoutSeconds": 30}},
        {"terminationGracePeriodSeconds": 100},
        {"apiKeys": {"secretName": "keys"}, "apiKeySecretRef": {"name": "keys"}},
        {"apiKeys": {"secretName": "keys", "limits": {}}},
        {"wyoming": {"enabled": True, "port": 10300}},
        {"wyoming": {"port": 8000}},
        {"model": {"variant": "multilingual", "version": "v3"}},
        {"model": {"variant": "nano", "version": "v3"}},
    ],
    "VoiceLibrary": [
        {"existingClaim": "voices", "reclaimPolicy": "Retain"},
        {"storage": {}, "existingClaim": "voices"},
        {"storage": {}, "reclaimPolicy": "Delete"},
    ],
}


def test_cel_rules_agree_with_their_python_checks() -> None:
    """The apiserver evaluates the CEL text, the operator the Python twin: they must agree."""
    import celpy

    environment = celpy.Environment()
    programs = {cel: environment.program(environment.compile(cel)) for cel in schema.RULES}
    outcomes: dict[str, set[bool]] = {cel: set() for cel in schema.RULES}

    def visit(node_schema: dict, value) -> None:
        if not isinstance(value, dict):
            return
        for rendered in node_schema.get("x-kubernetes-validations", []):
            cel = rendered["rule"]
            if cel == schema.IMMUTABLE:
                continue
            expected = schema.RULES[cel].check(value)
            assert bool(programs[cel].evaluate({"self": celpy.json_to_cel(value)})) == expected, (cel, value)
            outcomes[cel].add(expected)
        for key, child in node_schema.get("properties", {}).items():
            if key in value:
                visit(child, value[key])

    kinds = {kind.kind: kind for kind in schema.KINDS}
    resources = [yaml.safe_load(path.read_text()) for path in EXAMPLES + INVALID_EXAMPLES]
    resources += [{"kind": kind, "spec": spec} for kind, specs in RULE_CASES.items() for spec in specs]
    names = ["chatterbox", "Chatterbox", "9lives", "a" * 51, "a" * 52, "a" * 56, "a" * 57]
    resources += [
        {"kind": kind.kind, "metadata": {"name": name}, "spec": {"storage": {}}}
        for kind in schema.KINDS
        for name in names
    ]
    for resource in resources:
        root = crds.open_api_schema(kinds[resource["kind"]])
        spec_schema = root["properties"]["spec"]
        if "metadata" in resource:  # rules on the whole object (metadata.name)
            visit({"x-kubernetes-validations": root["x-kubernetes-validations"]}, resource)
        visit(spec_schema, validation.with_defaults(spec_schema, resource["spec"]))
    assert all(seen == {True, False} for seen in outcomes.values()), outcomes
