"""`chatterbox-operator` / `python -m chatterbox_operator`: run the kopf operator.

Credentials come from the in-cluster service account or KUBECONFIG. With no namespace flags it watches
all namespaces. `--peering NAME` joins a kopf peering group for hot-standby replicas (each replica
needs a distinct `--priority`); without it the operator runs standalone (one replica, Recreate).
"""

from __future__ import annotations

import argparse
import os

import kopf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatterbox-operator", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; globs allowed)",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get("CHATTERBOX_OPERATOR_LIVENESS", "http://0.0.0.0:8080/healthz"),
        help="liveness endpoint URL ('' disables it)",
    )
    parser.add_argument("--peering", default=None, help="kopf peering name for HA; standalone when omitted")
    parser.add_argument("--priority", type=int, default=0, help="peering priority (distinct per replica)")
    parser.add_argument("--json-logs", action="store_true", help="log as JSON lines")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    kopf.configure(
        verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.json_logs else kopf.LogFormat.FULL
    )
    # Importing registers the handlers with kopf's default registry.
    import chatterbox_operator.handlers  # noqa: F401

    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
        liveness_endpoint=args.liveness or None,
    )


if __name__ == "__main__":
    main()
