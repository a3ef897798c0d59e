"""The Helm chart rendered offline with helm-python-sdk, as `helm install` would render it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "chatterbox-platform"
RELEASE = "demo"
NAMESPACE = "chatterbox-system"

Manifest = dict[str, Any]


def is_hook(manifest: Manifest) -> bool:
    return "helm.sh/hook" in (manifest["metadata"].get("annotations") or {})


def render(
    chart: helm_python.Chart,
    values: dict[str, Any],
    *,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
    hooks: bool = False,
) -> list[Manifest]:
    """The chart's templates (not its CRDs) with `values` over the defaults, one dict per document:
    the release's manifests (what `helm install` applies), or with `hooks` only its hooks (what Helm
    creates around install, upgrade or uninstall)."""
    rendered = chart.render(values, name=name, namespace=namespace, is_install=True)
    return [
        document
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for document in yaml.safe_load_all(text)
        if document and is_hook(document) == hooks
    ]


def crds(chart: helm_python.Chart) -> list[Manifest]:
    """The CRDs the chart installs (its crds/ folder)."""
    return [doc for crd in chart.crds for doc in yaml.safe_load_all(crd["data"]) if doc]
