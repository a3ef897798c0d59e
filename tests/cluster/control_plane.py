"""Find, start and stop a loopback-only Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) with the start script that ships beside the binaries.

Binaries are found the envtest way: the folder named by `KUBEBUILDER_ASSETS`, else `shared/k8s/bin` beside
the repository (CI clones the repository next to `shared/`; a git worktree also looks beside its main
checkout). The API server runs as a production cluster does: RBAC authorization and the default admission
plugins plus `NodeRestriction` and `OwnerReferencesPermissionEnforcement`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START_SCRIPT = "start-control-plane.sh"
HOW_TO_GET = (
    "no Kubernetes control plane binaries: set KUBEBUILDER_ASSETS to a folder holding etcd, kube-apiserver,"
    " kube-controller-manager and kube-scheduler (next to a start-control-plane.sh), or place the shared"
    " kit at <repo>/../shared/k8s (bin/ and start-control-plane.sh; see its README)"
)
ADMISSION_PLUGINS = "NodeRestriction,OwnerReferencesPermissionEnforcement"
# No kubelet sends Node heartbeats here, so the node lifecycle controller would taint and evict; the
# OpenShift-only controller of this build is off as the start script's default has it.
CONTROLLERS = "*,-service-ca-certificate-publisher-controller,-node-lifecycle-controller"


class ControlPlaneUnavailable(RuntimeError):
    """The binaries or the start script are missing (the message says how to get them)."""


def _beside(repo: Path) -> list[Path]:
    """`<dir>/shared/k8s` for the repository's parent and, in a git worktree, its main checkout's parent."""
    candidates = [repo.parent / "shared" / "k8s"]
    git = repo / ".git"
    if git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(git.read_text().split("gitdir:", 1)[1].strip())
        candidates.append(gitdir.parents[2].parent / "shared" / "k8s")
    return candidates


@dataclass(frozen=True)
class Kit:
    """Where the binaries and the start script are."""

    bin_dir: Path
    start_script: Path


def find_kit() -> Kit:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    kits = [Path(assets)] if assets else []
    shared = [path for path in _beside(REPO_ROOT) if (path / "bin").is_dir()]
    for candidate in kits:
        script = next(
            (
                p / START_SCRIPT
                for p in (candidate, candidate.parent, *shared)
                if (p / START_SCRIPT).is_file()
            ),
            None,
        )
        if (candidate / "etcd").is_file() and script:
            return Kit(candidate, script)
    for path in shared:
        if (path / START_SCRIPT).is_file() and (path / "bin" / "etcd").is_file():
            return Kit(path / "bin", path / START_SCRIPT)
    raise ControlPlaneUnavailable(HOW_TO_GET)


def third_party_crds_dir() -> Path | None:
    """The Prometheus Operator CRDs shipped beside the binaries, when present."""
    for path in _beside(REPO_ROOT):
        crds = path / "crds" / "prometheus-operator"
        if crds.is_dir():
            return crds
    return None


@dataclass(frozen=True)
class ControlPlane:
    directory: Path
    url: str
    ca_path: Path
    admin_token: str
    admin_kubeconfig: Path
    kit: Kit

    def audit_events(self, username: str, *, prefix: bool = False) -> list[dict]:
        """The audit log's entries for `username` so far (a ServiceAccount's full name; with `prefix`,
        every user whose name starts with it)."""
        path = self.directory / AUDIT_LOG
        if not path.exists():
            return []
        entries = (json.loads(line) for line in path.read_text().splitlines() if line)
        return [
            entry
            for entry in entries
            if (name := entry.get("user", {}).get("username", "")) == username
            or (prefix and name.startswith(username))
        ]

    def stop(self) -> None:
        """Stop exactly the processes the start script recorded (it never kills by name)."""
        subprocess.run(
            [str(self.kit.start_script), "stop", str(self.directory)], check=False, capture_output=True
        )


# Every request of a ServiceAccount outside kube-system (the operator's, the tests' own) at Metadata level:
# which user did what to which resource, for the RBAC coverage check and the scale benchmark.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
"""
AUDIT_LOG = "logs/audit.log"


def start(directory: Path, *, timeout: int = 180) -> ControlPlane:
    """Start etcd, the API server, the controller-manager and the scheduler in `directory`."""
    kit = find_kit()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir(exist_ok=True)
    policy = directory / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    apiserver_args = [
        f"--enable-admission-plugins={ADMISSION_PLUGINS}",
        f"--audit-policy-file={policy}",
        f"--audit-log-path={directory / AUDIT_LOG}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
    ]
    env = {
        **os.environ,
        "KUBE_BIN_DIR": str(kit.bin_dir),
        "KCP_AUTHZ": "Node,RBAC",
        "KCP_KCM_CONTROLLERS": CONTROLLERS,
        "KCP_EXTRA_APISERVER_ARGS": " ".join(apiserver_args),
    }
    command = [str(kit.start_script), "start", str(directory), "--all", "--timeout", str(timeout)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the control plane did not start:\n{result.stdout}\n{result.stderr}")
    values = _read_env(directory / "env")
    return ControlPlane(
        directory=directory,
        url=values["APISERVER_URL"],
        ca_path=Path(values["APISERVER_CA"]),
        admin_token=values["ADMIN_TOKEN"],
        admin_kubeconfig=Path(values["KUBECONFIG"]),
        kit=kit,
    )


def _read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values
