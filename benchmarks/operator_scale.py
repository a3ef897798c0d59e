"""One operator against a real control plane: N TTSDeployments created at once, until all report Ready.

For each N (default 10, 100, 300) a fresh control plane starts (etcd, kube-apiserver, controller-manager,
scheduler; ../shared/k8s or KUBEBUILDER_ASSETS) with the test kubelet (tests/cluster/kubelet.py) on two
large CPU nodes, the CRDs and the chart's RBAC; then `chatterbox-operator` runs as the chart's
ServiceAccount with its default 30 s resync, and N CPU TTSDeployments are created together. Reported:
- seconds until every pod is Ready (the control plane and test kubelet at work), and until every
  TTSDeployment reports Ready; the difference is what the operator adds after its pods are ready;
- the operator's API requests (from the API server's audit log) per TTSDeployment;
- the operator process's CPU seconds and peak resident memory.

    .venv/bin/python benchmarks/operator_scale.py [--counts 10 100 300]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cluster import chart as cluster_chart  # noqa: E402
from cluster import harness, identity  # noqa: E402
from cluster.operator_process import running_operator  # noqa: E402

TTS_API = "tts.chatterbox.dev/v1alpha1"
NODES = [f"cpu-node-{i}:cpu=4000,memory=64Ti,pods=1000" for i in (1, 2)]
SPEC = {
    "gpu": {"count": 0},
    "resources": {"cpu": "100m", "memory": "256Mi"},
    "model": {"source": "random:tiny"},
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready(obj: dict) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def run(count: int, workdir: Path, chart) -> dict:
    cluster = harness.start(workdir / f"kube-{count}", nodes=NODES)
    try:
        kube = cluster.admin
        cluster.install_crds(harness.load_yaml_documents(sorted((REPO / "crds").glob("*.yaml"))))
        account = identity.install_rbac(kube, cluster_chart.render(chart, {}))
        namespace, name = account["metadata"]["namespace"], account["metadata"]["name"]
        token = identity.service_account_token(kube, namespace, name)
        kubeconfig = identity.kubeconfig(
            cluster.plane.url,
            cluster.plane.ca_path,
            {"token": token},
            workdir / f"operator-{count}.kubeconfig",
        )
        username = f"system:serviceaccount:{namespace}:{name}"
        target = cluster.new_namespace("scale", restricted=False)
        tts_path = kube.path(TTS_API, "TTSDeployment", namespace=target)
        pods_path = f"/api/v1/namespaces/{target}/pods"
        with running_operator(kubeconfig, workdir / f"run-{count}", resync_seconds=30) as operator:
            pid = operator.process.pid
            requests_before = len(cluster.plane.audit_events(username))
            cpu_before = cpu_seconds(pid)
            start = time.monotonic()

            def create(index: int) -> None:
                body = {
                    "apiVersion": TTS_API,
                    "kind": "TTSDeployment",
                    "metadata": {"name": f"tts-{index}"},
                    "spec": SPEC,
                }
                kube_thread = cluster.client(cluster.plane.admin_token, "scale-benchmark")
                try:
                    kube_thread.call("POST", tts_path, body)
                finally:
                    kube_thread.close()

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(create, range(count)))
            created = time.monotonic() - start
            pods_ready_at = crs_ready_at = None
            while crs_ready_at is None or pods_ready_at is None:
                if time.monotonic() - start > 900:
                    raise TimeoutError(f"{count}: not converged after 900 s")
                now = time.monotonic() - start
                if pods_ready_at is None:
                    pods = kube.items(
                        pods_path, labelSelector="app.kubernetes.io/managed-by=chatterbox-operator"
                    )
                    if sum(ready(p) for p in pods) >= count:
                        pods_ready_at = now
                if crs_ready_at is None and sum(ready(t) for t in kube.items(tts_path)) >= count:
                    crs_ready_at = now
                time.sleep(0.5)
            cpu = cpu_seconds(pid) - cpu_before
            rss = peak_rss_mib(pid)
            events = cluster.plane.audit_events(username)[requests_before:]
            requests = len(events)
            kinds = collections.Counter(
                f"{e['verb']} {e.get('objectRef', {}).get('resource', e.get('requestURI', '?').split('?')[0])}"
                + (f"/{e['objectRef']['subresource']}" if e.get("objectRef", {}).get("subresource") else "")
                for e in events
            )
        return {
            "count": count,
            "created_s": created,
            "pods_ready_s": pods_ready_at,
            "all_ready_s": crs_ready_at,
            "after_pods_s": max(0.0, crs_ready_at - pods_ready_at),
            "requests": requests,
            "requests_per_tts": requests / count,
            "cpu_s": cpu,
            "cpu_ms_per_tts": 1000 * cpu / count,
            "peak_rss_mib": rss,
            "per_tts_by_kind": {kind: round(n / count, 2) for kind, n in kinds.most_common(12)},
        }
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 300])
    args = parser.parse_args()
    import helm_python

    print(f"load average before: {os.getloadavg()}")
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="op-scale-") as tmp,
        helm_python.Chart.load(cluster_chart.CHART_DIR) as chart,
    ):
        for count in args.counts:
            result = run(count, Path(tmp), chart)
            results.append(result)
            print(result, flush=True)
    print(f"load average after: {os.getloadavg()}")
    print()
    print(
        "| TTSDeployments | all pods Ready | all TTSDeployments Ready | operator after pods | API requests / TTSDeployment | operator CPU | CPU / TTSDeployment | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['count']} | {r['pods_ready_s']:.1f} s | {r['all_ready_s']:.1f} s | {r['after_pods_s']:.1f} s"
            f" | {r['requests_per_tts']:.1f} | {r['cpu_s']:.1f} s | {r['cpu_ms_per_tts']:.0f} ms"
            f" | {r['peak_rss_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
