"""The three images are built the way the chart and the operator run them (no docker engine here, so
the Dockerfiles are checked as text), and skaffold wires its images and profiles into the chart."""

from __future__ import annotations

import copy
import fnmatch
import re
import runpy
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chatterbox_operator import builders

from .conftest import CHART_DIR, NAMESPACE, REPO_ROOT, Render

SKAFFOLD = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
CHART_VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [argument for name, argument in self.instructions if name == instruction]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Build stages with their instructions; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    build_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, argument = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not stages and "=" in argument:
            name, _, default = argument.partition("=")
            build_args[name] = default
        elif instruction == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], argument.split()[0])
            stages.append(Stage(base))
        else:
            stages[-1].instructions.append((instruction, argument.strip()))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(stage.values("ENV"))))


@dataclass(frozen=True)
class Image:
    artifact: str
    context: Path
    dockerfile: Path
    port: int
    user: int


# The chart sets no user IDs (OpenShift assigns them): the images' numeric USER is what runs
# elsewhere, and runAsNonRoot can check it. The operator's inference pods name theirs.
IMAGES = [
    Image(
        "chatterbox-inference",
        REPO_ROOT,
        REPO_ROOT / "inference_image/Dockerfile",
        builders.SERVER_PORT,
        builders.RUN_AS_USER,
    ),
    Image(
        "chatterbox-operator",
        REPO_ROOT,
        REPO_ROOT / "operator/Dockerfile",
        CHART_VALUES["operator"]["healthPort"],
        10001,
    ),
    Image("chatterbox-webui", REPO_ROOT / "webui", REPO_ROOT / "webui/Dockerfile", 8080, 101),
]
PYTHON_IMAGES = {"chatterbox-inference": "server", "chatterbox-operator": "operator"}
WEIGHT_FILES = ("*.safetensors", "*.pt", "*.pth", "*.bin", "*.ckpt")


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.artifact)
def test_image_runs_as_the_user_its_pods_expect(image: Image) -> None:
    final = parse_dockerfile(image.dockerfile)[-1]
    (user,) = final.values("USER")
    assert user.split(":")[0] == str(image.user) != "0"
    assert final.values("EXPOSE") == [str(image.port)]


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.artifact)
def test_image_copies_only_sources_that_exist_and_no_weights(image: Image) -> None:
    ignored = dockerignore_patterns(image.context)
    for stage in parse_dockerfile(image.dockerfile):
        for argument in stage.values("COPY"):
            if "--from=" in argument:
                continue
            *sources, _destination = argument.split()
            for source in sources:
                assert (image.context / source).exists(), f"{image.dockerfile}: COPY {source} does not exist"
                assert not is_ignored(source, ignored), (
                    f"{image.dockerfile}: COPY {source} is excluded by .dockerignore"
                )
                assert not any(fnmatch.fnmatch(source, pattern) for pattern in WEIGHT_FILES)
        for command in stage.values("RUN"):
            assert not re.search(r"snapshot_download|hf_hub_download|huggingface-cli|hf download", command), (
                f"{image.dockerfile} downloads weights at build time: {command}"
            )


def test_inference_image_has_no_cuda_base_and_the_operator_paths() -> None:
    """torch's PyPI wheels ship the CUDA libraries (nvidia-* packages); a CUDA base image would be a
    second copy. The NVIDIA container toolkit mounts the driver when asked for compute."""
    stages = parse_dockerfile(REPO_ROOT / "inference_image/Dockerfile")
    assert all(re.match(r"python:3\.11[\d.]*-slim", stage.base) for stage in stages)
    env = env_of(stages[-1])
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "NVIDIA_VISIBLE_DEVICES" not in env, "the device plugin decides which GPUs a pod sees"
    # The operator mounts volumes here; a plain `docker run` should use the same places.
    assert env["MODEL_CACHE_DIR"] == builders.MODEL_CACHE_DIR
    assert env["VOICE_LIBRARY_DIR"] == builders.VOICE_LIBRARY_DIR
    assert env["API_PORT"] == str(builders.SERVER_PORT)
    assert stages[-1].values("CMD") == ['["chatterbox-server"]']


def test_operator_image_is_slim_python_with_the_console_script() -> None:
    stages = parse_dockerfile(REPO_ROOT / "operator/Dockerfile")
    assert all(re.match(r"python:3\.11[\d.]*-slim", stage.base) for stage in stages)
    assert stages[-1].values("ENTRYPOINT") == ['["chatterbox-operator"]']
    copies = [copy for stage in stages for copy in stage.values("COPY")]
    assert not any("inference_image" in copy for copy in copies), "the operator image needs no engine"


def test_operator_image_has_what_the_uninstall_hook_imports() -> None:
    """The chart's pre-delete hook runs its script with the operator image's Python."""
    script = (CHART_DIR / "files" / "delete-custom-resources.py").read_text()
    imported = set(re.findall(r"^(?:from|import) (\w+)", script, re.M)) - set(sys.stdlib_module_names)
    installed = runpy.run_path(str(REPO_ROOT / "pyproject_requirements.py"))["requirements"](["operator"])
    names = {re.split(r"[=<>!~\[; ]", requirement)[0] for requirement in installed}
    assert imported and imported <= names, imported - names


def rebuilt_steps(dockerfile: Path, edited: str) -> list[str]:
    """The RUN steps a build after editing `edited` (a path in the build context) cannot take from
    the layer cache: each stage from its first COPY of the file, or of an output of a rebuilt stage."""
    rebuilt: list[str] = []
    stale_stages: set[int] = set()
    for number, stage in enumerate(parse_dockerfile(dockerfile)):
        stale = False
        for instruction, argument in stage.instructions:
            if instruction == "COPY":
                words = [word for word in argument.split() if not word.startswith("--")]
                source_stage = re.search(r"--from=(\S+)", argument)
                if source_stage:
                    stale |= stage_number(dockerfile, source_stage.group(1)) in stale_stages
                else:
                    stale |= any(
                        edited == src or edited.startswith(src.rstrip("/") + "/") for src in words[:-1]
                    )
            elif instruction == "RUN" and stale:
                rebuilt.append(argument)
        if stale:
            stale_stages.add(number)
    return rebuilt


def stage_number(dockerfile: Path, name: str) -> int:
    froms = [line for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")]
    return next(i for i, line in enumerate(froms) if line.split()[-1] == name)


@pytest.mark.parametrize(
    ("artifact", "edited"),
    [
        ("chatterbox-inference", "inference_image/chatterbox_server/app.py"),
        ("chatterbox-inference", "inference_image/chatterbox_engine/t3.py"),
        ("chatterbox-inference", "README.md"),
        ("chatterbox-operator", "operator/chatterbox_operator/handlers.py"),
    ],
)
def test_a_code_edit_does_not_reinstall_the_dependencies(artifact: str, edited: str) -> None:
    """`skaffold dev` rebuilds on every save: only the project's own package is reinstalled."""
    (image,) = [image for image in IMAGES if image.artifact == artifact]
    rebuilt = rebuilt_steps(image.dockerfile, edited)
    assert rebuilt, f"{edited} is not in the image at all"
    assert all("--no-deps" in step for step in rebuilt if "pip install" in step), rebuilt
    assert not any("requirements" in step for step in rebuilt), rebuilt


@pytest.mark.parametrize(("artifact", "extra"), PYTHON_IMAGES.items())
def test_python_images_install_their_extra_with_a_pip_cache(artifact: str, extra: str) -> None:
    (image,) = [image for image in IMAGES if image.artifact == artifact]
    stages = parse_dockerfile(image.dockerfile)
    runs = [run for stage in stages for run in stage.values("RUN")]
    assert f"pyproject_requirements.py {extra} > /requirements.txt" in " ".join(runs)
    pip_runs = [run for run in runs if "pip install" in run]
    assert pip_runs and all("--mount=type=cache,target=/root/.cache/pip" in run for run in pip_runs)
    assert all("PIP_NO_CACHE_DIR" not in env_of(stage) for stage in stages), "it would empty the cache mount"
    assert re.match(r"# syntax=docker/dockerfile:1", image.dockerfile.read_text()), (
        "cache mounts need BuildKit"
    )
    assert SKAFFOLD["build"]["local"]["useBuildkit"] is True


@pytest.mark.parametrize(
    ("extra", "present", "absent"), [("server", "torch", "kopf"), ("operator", "kopf", "torch")]
)
def test_pyproject_requirements_expand_the_extras(extra: str, present: str, absent: str) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    listed = runpy.run_path(str(REPO_ROOT / "pyproject_requirements.py"))["requirements"]([extra])
    names = {re.split(r"[=<>!~\[; ]", requirement)[0] for requirement in listed}
    assert present in names and absent not in names and project["name"] not in names
    assert set(project["dependencies"]) <= set(listed)
    assert len(listed) == len(set(listed))
    if extra == "server":
        assert set(project["optional-dependencies"]["engine"]) <= set(listed)


def test_webui_image_serves_the_build_with_the_api_proxied() -> None:
    build, final = parse_dockerfile(REPO_ROOT / "webui/Dockerfile")
    assert build.base.startswith("node:20")
    assert final.base.startswith("nginxinc/nginx-unprivileged:")
    assert "VITE_API_URL=/api" in build.values("ARG")
    # The entrypoint fills ${NGINX_LOCAL_RESOLVERS} from /etc/resolv.conf only when asked to.
    assert env_of(final)["NGINX_ENTRYPOINT_LOCAL_RESOLVERS"] == "1"
    conf = (REPO_ROOT / "webui/nginx.conf").read_text()
    assert "listen 8080;" in conf
    assert (
        "resolver ${NGINX_LOCAL_RESOLVERS}" in conf and "set $chatterbox_api ${CHATTERBOX_API_URL};" in conf
    )
    proxy = re.search(r"location /api/ \{(.*?)\n\s*\}\n", conf, re.S)
    assert proxy and "proxy_pass $chatterbox_api;" in proxy.group(1)
    assert "proxy_buffering off;" in proxy.group(1), "streamed speech must not be buffered"
    assert "location = /healthz" in conf and "try_files $uri $uri/ /index.html;" in conf


def dockerignore_patterns(context: Path) -> list[str]:
    lines = (context / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching: a pattern excludes what it matches and everything below it."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(re.fullmatch(pattern_regex(p), prefix) for p in patterns for prefix in prefixes)


def pattern_regex(pattern: str) -> str:
    tokens = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return "".join(wildcards.get(token, re.escape(token)) for token in tokens)


def test_root_build_context_leaves_out_environments_and_weights() -> None:
    patterns = dockerignore_patterns(REPO_ROOT)
    for path in (".venv", ".git", "webui/node_modules", ".voices", "models/t3.safetensors", "conds.pt"):
        assert is_ignored(path, patterns), path
    assert not is_ignored("inference_image/chatterbox_server", patterns)
    assert not is_ignored("pyproject.toml", patterns)
    assert is_ignored("node_modules", dockerignore_patterns(REPO_ROOT / "webui"))


# -- skaffold ----------------------------------------------------------------------------------


def test_skaffold_builds_the_three_images() -> None:
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    assert set(artifacts) == {image.artifact for image in IMAGES}
    for image in IMAGES:
        artifact = artifacts[image.artifact]
        context = REPO_ROOT / artifact["context"]
        assert context.resolve() == image.context.resolve()
        assert (context / artifact["docker"]["dockerfile"]).resolve() == image.dockerfile.resolve()


def apply_patches(config: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON-patch `add`/`replace`, the operations the profiles use."""
    config = copy.deepcopy(config)
    for patch in patches:
        assert patch["op"] in ("add", "replace")
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in patch["path"].split("/")[1:]]
        target: Any = config
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = patch["value"]
    return config


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def skaffold_values(profile: str | None) -> dict[str, Any]:
    """The values `skaffold run -p <profile>` passes to helm: setValues as --set, image templates as
    --set-string, with made-up registry, tag and digest for each built image."""
    patches = [p for prof in SKAFFOLD["profiles"] if prof["name"] == profile for p in prof.get("patches", [])]
    (release,) = apply_patches(SKAFFOLD, patches)["deploy"]["helm"]["releases"]
    values: dict[str, Any] = {}
    for key, raw in release.get("setValues", {}).items():
        merge(
            values,
            helm_python.parse_set_string(f"{key}={str(raw).lower() if isinstance(raw, bool) else raw}"),
        )
    for key, template in release["setValueTemplates"].items():
        rendered = re.sub(
            r"\{\{\.IMAGE_(REPO|TAG|DIGEST)_(\w+)\}\}", lambda m: fake_image_part(*m.groups()), template
        )
        merge(values, helm_python.parse_set_string_values(f"{key}={rendered}"))
    return values


def fake_image_part(part: str, artifact: str) -> str:
    return {"REPO": f"registry.local/{artifact}", "TAG": "dev1", "DIGEST": "sha256:" + "0" * 64}[part]


def built(artifact: str) -> str:
    name = artifact.replace("-", "_")
    return f"registry.local/{name}:dev1@sha256:{'0' * 64}"


PROFILES = {
    "gpu": (1, {"source": "ResembleAI/chatterbox"}),
    "cpu": (0, {"source": "ResembleAI/chatterbox-nano", "variant": "nano"}),  # the chart's CPU default
    "demo": (0, {"source": "random:tiny"}),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_skaffold_profile_renders_with_the_built_images(profile: str, render: Render) -> None:
    manifests = render(skaffold_values(profile))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for manifest in manifests:
        by_kind.setdefault(manifest["kind"], []).append(manifest)
    images = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"]["containers"][
            0
        ]["image"]
        for d in by_kind["Deployment"]
    }
    assert images == {"operator": built("chatterbox-operator"), "webui": built("chatterbox-webui")}
    (tts,) = by_kind["TTSDeployment"]
    assert tts["spec"]["image"] == built("chatterbox-inference")
    gpus, model = PROFILES[profile]
    assert tts["spec"]["gpu"] == {"count": gpus} and tts["spec"]["model"] == model
    # The resource selector lets skaffold rewrite the image inside the custom resource.
    allowed = {entry["groupKind"] for entry in SKAFFOLD["resourceSelector"]["allow"]}
    assert f"{tts['kind']}.{tts['apiVersion'].split('/')[0]}" in allowed


def test_skaffold_port_forwards_reach_the_api_and_the_ui(render: Render) -> None:
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    manifests = render(skaffold_values("demo"))
    (tts,) = [m for m in manifests if m["kind"] == "TTSDeployment"]
    (ui_service,) = [m for m in manifests if m["kind"] == "Service"]
    forwards = {f["localPort"]: f for f in SKAFFOLD["portForward"]}
    assert set(forwards) == {8000, 3000}
    api, ui = forwards[8000], forwards[3000]
    # The operator creates the API Service, named after the TTSDeployment, on the CRD's default port.
    assert (api["resourceName"], api["port"]) == (tts["metadata"]["name"], CHART_VALUES["webui"]["apiPort"])
    # `render` uses release "demo"; skaffold's release name gives the UI Service its prefix.
    assert ui["resourceName"] == ui_service["metadata"]["name"].replace(
        "demo-chatterbox-platform", release["name"]
    )
    assert ui["port"] == ui_service["spec"]["ports"][0]["port"]
    assert api["namespace"] == ui["namespace"] == release["namespace"]
    assert release["namespace"] == NAMESPACE
