"""The README's "Deploy on a cluster" commands work with the chart and the CRDs as they are: rendered
offline, and performed step by step on a real API server with the operator running (everything but
the image builds and a real GPU; no helm or kubectl binary: tests/deploy/release.py plays Helm)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chatterbox_operator.schema import TTS_DEPLOYMENT
from chatterbox_operator.validation import checked_spec
from cluster.client import MERGE_PATCH, KubeClient, wait_for

from .conftest import REPO_ROOT, Render, inference_env
from .release import Release

REGISTRY = "registry.example.com/chatterbox"


def deploy_section() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Deploy on a cluster\n", 1)[1]
    return section.split("\n## ", 1)[0].replace("$REGISTRY", REGISTRY)


def helm_set_flags(section: str) -> list[str]:
    (install,) = re.findall(r"^helm install .*?(?<!\\)\n", section, re.M | re.S)
    return re.findall(r"--set (\S+)", install)


def set_values(flags: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for flag in flags:
        for key, value in helm_python.parse_set_string(flag).items():
            values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


def test_readme_helm_install_values_render(render: Render) -> None:
    values = set_values(helm_set_flags(deploy_section()))
    manifests = render(values)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "Ingress"} <= kinds
    (ingress,) = [m for m in manifests if m["kind"] == "Ingress"]
    assert ingress["spec"]["rules"][0]["host"] == "tts.example.com"


def test_readme_first_tts_deployment_is_valid_and_reachable(render: Render) -> None:
    section = deploy_section()
    (document,) = re.findall(r"<<YAML\n(.*?)\nYAML", section, re.S)
    tts = yaml.safe_load(document)
    spec = checked_spec(TTS_DEPLOYMENT, tts)
    assert spec["image"] == f"{REGISTRY}/chatterbox-inference:0.1.0"
    # The chart's Ingress and web UI send API calls to the Service named after this TTSDeployment.
    (ingress,) = [
        m
        for m in render({"webui": {"enabled": True}, "ingress": {"enabled": True}})
        if m["kind"] == "Ingress"
    ]
    api_path = next(p for p in ingress["spec"]["rules"][0]["http"]["paths"] if p["path"] == "/v1")
    assert api_path["backend"]["service"]["name"] == tts["metadata"]["name"]
    assert api_path["backend"]["service"]["port"]["number"] == spec["service"]["port"]


def test_readme_batch_size_example_reaches_the_server(render: Render) -> None:
    """The README's `--set ttsDeployment.serving.maxConcurrent=...` is a chart value the operator applies."""
    (flag,) = re.findall(r"--set (ttsDeployment\.serving\.maxConcurrent=\d+)`", deploy_section())
    values = helm_python.parse_set_string(flag)
    values["ttsDeployment"]["enabled"] = True
    (tts,) = [m for m in render(values) if m["kind"] == "TTSDeployment"]
    batch = values["ttsDeployment"]["serving"]["maxConcurrent"]
    assert inference_env(tts)["MAX_CONCURRENT"] == str(batch)


# -- performed on a real API server ----------------------------------------------------------------


def shell_commands(section: str) -> list[tuple[list[str], str | None]]:
    """Each command of the section's bash blocks, in order: its words and its here-document, if any."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        lines = iter(block.replace("\\\n", " ").splitlines())
        for line in lines:
            line = line.split(" # ", 1)[0].strip()
            if not line:
                continue
            heredoc = None
            if marker := re.search(r"<<'?(\w+)'?$", line):
                body = []
                for inner in lines:
                    if inner.strip() == marker.group(1):
                        break
                    body.append(inner)
                heredoc, line = "\n".join(body), line[: marker.start()].strip()
            commands += [(shlex.split(part), heredoc) for part in line.split(" && ")]
    return commands


def option(words: list[str], *names: str) -> str | None:
    for index, word in enumerate(words):
        if word in names:
            return words[index + 1]
    return None


def positional(words: list[str]) -> list[str]:
    """The words that are neither options nor their values (this README's options all take one)."""
    found, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = "=" not in word and word not in ("-w", "--create-namespace")
        else:
            found.append(word)
    return found


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    return next((c for c in (obj or {}).get("status", {}).get("conditions", []) if c["type"] == kind), {})


class ReadmeReader:
    """Does what each README command tells a user to do, with the admin's client (the user's kubectl)."""

    def __init__(self, cluster: Any, chart: helm_python.Chart, workdir: Path) -> None:
        self.cluster, self.chart, self.workdir = cluster, chart, workdir
        self.kube: KubeClient = cluster.admin
        self.releases: dict[str, Release] = {}
        self.done: list[str] = []

    def tts_path(self, namespace: str, name: str, subresource: str | None = None) -> str:
        return self.kube.path("tts.chatterbox.dev/v1alpha1", "TTSDeployment", name, namespace, subresource)

    def owned_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        tts = self.kube.get(self.tts_path(namespace, name))
        for deployment in self.kube.items(f"/apis/apps/v1/namespaces/{namespace}/deployments"):
            if any(
                ref["uid"] == tts["metadata"]["uid"]
                for ref in deployment["metadata"].get("ownerReferences", [])
            ):
                return deployment
        return None

    def run(self, words: list[str], heredoc: str | None) -> None:
        tool, rest = words[0], words[1:]
        if "=" in tool or tool in ("docker", "curl"):
            return  # shell variables, image builds, and speech from a real GPU pod: out of scope here
        namespace = option(rest, "-n", "--namespace")
        verb, *args = positional(rest)
        if (tool, verb) == ("helm", "install"):
            name, chart_path = args
            assert (REPO_ROOT / chart_path).resolve() == Path(self.chart_dir).resolve()
            assert "--create-namespace" in rest or self.kube.get(f"/api/v1/namespaces/{namespace}")
            values = set_values(
                [w.split("=", 1)[1] for w in rest if w.startswith("--set=")]
                + [rest[i + 1] for i, w in enumerate(rest) if w == "--set"]
            )
            release = Release(self.cluster, self.chart, name, namespace, values, self.workdir)
            self.releases[name] = release
            release.install()
        elif (tool, verb) == ("kubectl", "apply"):
            assert option(rest, "-f") == "-" and heredoc
            for document in yaml.safe_load_all(heredoc):
                self.kube.apply(document, namespace, manager="kubectl")
        elif (tool, verb) == ("kubectl", "get") and args[0] == "ttsdeployment" and "-w" in rest:
            # "READY once the weights are loaded": the test kubelet reports the pods ready.
            wait_for(
                lambda: (
                    condition(self.kube.get(self.tts_path(namespace, args[1])), "Ready").get("status")
                    == "True"
                ),
                timeout=120,
                what=f"TTSDeployment {args[1]} Ready",
            )
        elif (tool, verb) == ("kubectl", "scale") and args[0] == "ttsdeployment":
            replicas = int(option(rest, "--replicas") or rest[-1].split("=", 1)[1])
            body = {"spec": {"replicas": replicas}}
            self.kube.call(
                "PATCH", self.tts_path(namespace, args[1], "scale"), body, content_type=MERGE_PATCH
            )
            wait_for(
                lambda: (
                    (self.owned_deployment(namespace, args[1]) or {}).get("spec", {}).get("replicas")
                    == replicas
                ),
                timeout=60,
                what=f"the Deployment of {args[1]} scaled to {replicas}",
            )
        elif (tool, verb) == ("helm", "uninstall"):
            (name,) = args
            self.releases.pop(name).uninstall()
        else:
            raise AssertionError(
                f"the README tells users to run a command this test does not perform: {words}"
            )
        self.done.append(f"{tool} {verb}")

    chart_dir = REPO_ROOT / "helm" / "chatterbox-platform"

    def close(self) -> None:
        for release in self.releases.values():
            release.close()


@pytest.mark.cluster
def test_readme_cluster_steps_work_on_a_real_api_server(
    kube_cluster: Any, chart: helm_python.Chart, tmp_path: Path
) -> None:
    reader = ReadmeReader(kube_cluster, chart, tmp_path)
    kube = kube_cluster.admin
    try:
        for words, heredoc in shell_commands(deploy_section()):
            if words[:2] == ["helm", "uninstall"]:
                children = reader.owned_deployment("chatterbox-system", "chatterbox")
                release = reader.releases[words[2]]
            reader.run(words, heredoc)
    finally:
        reader.close()
    assert reader.done == [
        "helm install",
        "kubectl apply",
        "kubectl get",
        "kubectl scale",
        "helm uninstall",
    ]
    # The operator needed no permission the chart does not grant (kopf logs what it was refused).
    assert "Not enough permissions" not in release.operator_log and "Forbidden" not in release.operator_log
    # helm uninstall's hook deleted the TTSDeployment while the operator still ran: nothing is left
    # Terminating, and the garbage collector removes its Deployment.
    assert kube.get(reader.tts_path("chatterbox-system", "chatterbox")) is None
    assert children is not None
    deployment_path = f"/apis/apps/v1/namespaces/chatterbox-system/deployments/{children['metadata']['name']}"
    wait_for(lambda: kube.get(deployment_path) is None, timeout=60, what="the Deployment garbage-collected")
    assert kube.items("/apis/apps/v1/namespaces/chatterbox-system/deployments") == []


def test_readme_prometheus_adapter_rule_serves_the_metric_the_hpa_reads() -> None:
    """The prometheus-adapter rule the README gives exposes, per pod, the gauge the server exports,
    under the name the operator's HPA asks the custom metrics API for."""
    from chatterbox_operator import builders
    from chatterbox_server.metrics import ServerMetrics

    (block,) = re.findall(r"```yaml\n(rules:.*?)```", deploy_section(), re.S)
    (rule,) = yaml.safe_load(block)["rules"]["custom"]
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    assert series in {family.name for family in ServerMetrics().registry.collect()}
    tts = {"metadata": {"name": "chatterbox", "namespace": "speech", "uid": "u"}, "kind": "TTSDeployment"}
    spec = checked_spec(TTS_DEPLOYMENT, {"spec": {"autoscaling": {"enabled": True}}})
    hpa = builders.horizontal_pod_autoscaler(builders.Owner.of({**tts, "apiVersion": "v1"}), spec)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and rule["name"]["as"] == metric["pods"]["metric"]["name"]
    # A Pods metric is looked up by namespace and pod: the labels the Prometheus Operator's PodMonitor and
    # ServiceMonitor put on every target.
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert rule["metricsQuery"].startswith("avg by (<<.GroupBy>>)")
