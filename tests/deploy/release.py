"""A Helm release played on the test cluster (tests/conftest.py kube_cluster), step by step as Helm 3
and the cluster's kubelet would do it, without helm or kubectl binaries:

- install: the namespace (--create-namespace), the chart's crds/ (first install only), the rendered
  manifests created in Helm's kind order, and the operator Deployment's container run as a local
  process logged in as the chart's ServiceAccount with exactly the chart's RBAC;
- uninstall: the pre-delete hooks in weight order, each hook Job's container run as a local process as
  the hook's own ServiceAccount (Helm waits for it to succeed, then deletes the hook objects), then the
  release's manifests deleted, the operator going with its Deployment.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
from cluster import chart as cluster_chart
from cluster import identity
from cluster.operator_process import OperatorProcess, running_operator

Manifest = dict[str, Any]

# Helm 3's install order (pkg/releaseutil/kind_sorter.go), for the kinds this chart renders; other kinds
# (the custom resources) come last. Uninstall deletes in the reverse order.
INSTALL_ORDER = [
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Job",
    "Ingress",
]


def install_order(manifest: Manifest) -> int:
    kind = manifest["kind"]
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


def hook_weight(manifest: Manifest) -> int:
    return int(manifest["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))


@dataclass
class Release:
    cluster: Any  # tests/cluster/harness.Cluster
    chart: helm_python.Chart
    name: str
    namespace: str
    values: dict[str, Any]
    workdir: Path
    operator: OperatorProcess | None = None
    operator_log: str = ""
    hook_output: str = ""
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def render(self, *, hooks: bool = False) -> list[Manifest]:
        return cluster_chart.render(
            self.chart, self.values, name=self.name, namespace=self.namespace, hooks=hooks
        )

    def kubeconfig_for(self, account: Manifest) -> Path:
        meta = account["metadata"]
        token = identity.service_account_token(self.cluster.admin, meta["namespace"], meta["name"])
        return identity.kubeconfig(
            self.cluster.plane.url,
            self.cluster.plane.ca_path,
            {"token": token},
            self.workdir / f"{meta['name']}.kubeconfig",
        )

    # -- helm install -----------------------------------------------------------------------------------

    def install(self) -> None:
        admin = self.cluster.admin
        admin.create_namespace(self.namespace)
        self.cluster.install_crds(cluster_chart.crds(self.chart))
        manifests = sorted(self.render(), key=install_order)
        for manifest in manifests:
            admin.apply(manifest, self.namespace, manager="helm")
        (operator,) = [
            m
            for m in manifests
            if m["kind"] == "Deployment"
            and m["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
        ]
        self.operator = self._stack.enter_context(self.run_operator(operator, manifests))

    @contextlib.contextmanager
    def run_operator(self, deployment: Manifest, manifests: list[Manifest]) -> Iterator[OperatorProcess]:
        """What the kubelet runs for the operator Deployment: its container's arguments, as its
        ServiceAccount (the liveness endpoint moves to a free local port)."""
        pod = deployment["spec"]["template"]["spec"]
        (account,) = [
            m
            for m in manifests
            if m["kind"] == "ServiceAccount" and m["metadata"]["name"] == pod["serviceAccountName"]
        ]
        (container,) = pod["containers"]
        args = [arg for arg in container["args"] if not arg.startswith("--liveness")]
        env = {item["name"]: item["value"] for item in container.get("env", [])}
        with running_operator(self.kubeconfig_for(account), self.workdir, *args, env=env) as process:
            yield process

    # -- helm uninstall ---------------------------------------------------------------------------------

    def uninstall(self) -> None:
        admin = self.cluster.admin
        hooks = sorted(
            (
                h
                for h in self.render(hooks=True)
                if "pre-delete" in h["metadata"]["annotations"]["helm.sh/hook"]
            ),
            key=hook_weight,
        )
        for hook in hooks:
            if hook["kind"] == "Job":
                result = self.run_job(hook, hooks)
                assert result.returncode == 0, f"the pre-delete hook failed:\n{self.hook_output}"
            else:
                admin.apply(hook, self.namespace, manager="helm")
        # hook-delete-policy hook-succeeded: Helm deletes the hook objects once all have succeeded.
        for hook in hooks:
            if hook["kind"] != "Job":
                admin.delete(admin.path_of(hook, self.namespace))
        for manifest in sorted(self.render(), key=install_order, reverse=True):
            if manifest["kind"] == "Deployment" and self.operator is not None:
                self.operator_log = self.operator.output
                self._stack.close()  # the operator pod stops with its Deployment
                self.operator = None
            admin.delete(admin.path_of(manifest, self.namespace))

    def run_job(self, job: Manifest, hooks: list[Manifest]) -> subprocess.CompletedProcess:
        """The hook Job's container as a local process: its command, env and ConfigMap volumes, as the
        Job's ServiceAccount (whose objects among `hooks` must be applied). Helm waits for the Job to
        complete and fails the uninstall if it does not."""
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        (account,) = [
            h
            for h in hooks
            if h["kind"] == "ServiceAccount" and h["metadata"]["name"] == pod["serviceAccountName"]
        ]
        config_maps = {h["metadata"]["name"]: h for h in hooks if h["kind"] == "ConfigMap"}
        command = list(container["command"])
        for mount in container.get("volumeMounts", []):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            if "configMap" not in volume:
                continue
            local = self.workdir / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            for key, text in config_maps[volume["configMap"]["name"]]["data"].items():
                (local / key).write_text(text)
            command = [part.replace(mount["mountPath"], str(local)) for part in command]
        if command[0] == "python":
            command[0] = sys.executable
        env = {
            "KUBECONFIG": str(self.kubeconfig_for(account)),
            "PATH": "/usr/bin:/bin",
            **{item["name"]: item["value"] for item in container.get("env", [])},
        }
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        self.hook_output = result.stdout + result.stderr
        return result

    def close(self) -> None:
        self._stack.close()
