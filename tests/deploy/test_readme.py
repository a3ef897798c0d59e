"""The README's "Deploy on a cluster" commands work with the chart and the CRDs as they are."""

from __future__ import annotations

import re

import helm_python
import yaml
from chatterbox_operator.schema import TTS_DEPLOYMENT
from chatterbox_operator.validation import checked_spec

from .conftest import REPO_ROOT, Render, inference_env

REGISTRY = "registry.example.com/chatterbox"


def deploy_section() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Deploy on a cluster\n", 1)[1]
    return section.split("\n## ", 1)[0].replace("$REGISTRY", REGISTRY)


def helm_set_flags(section: str) -> list[str]:
    (install,) = re.findall(r"^helm install .*?(?<!\\)\n", section, re.M | re.S)
    return re.findall(r"--set (\S+)", install)


def test_readme_helm_install_values_render(render: Render) -> None:
    values: dict = {}
    for flag in helm_set_flags(deploy_section()):
        for key, value in helm_python.parse_set_string(flag).items():
            values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
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
