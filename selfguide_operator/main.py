"""`selfguide-operator`: run the SelfGuideJob operator (kopf) with health, metrics and namespace options."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf
from kubernetes.config import ConfigException
from pydantic import ValidationError

from selfguide.spec.problems import problems_from
from selfguide_operator.handlers import register
from selfguide_operator.kube import Kube
from selfguide_operator.progress import Authenticator, ProgressServer
from selfguide_operator.prometheus_metrics import Metrics
from selfguide_operator.reconciler import Reconciler
from selfguide_operator.settings import ENV_PREFIX, OperatorSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="selfguide-operator", description="Run SelfGuideJobs as batch/v1 Jobs, one per stage. "
        "Defaults come from SELFGUIDE_* environment variables (see docs/operator.md).")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="Watch this namespace (repeatable). Default: $SELFGUIDE_WATCH_NAMESPACES, else all.")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="Watch every namespace.")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz", metavar="URL",
                        help="Serve liveness/readiness here (empty: off). Default: %(default)s")
    parser.add_argument("--metrics-port", type=int, default=8080,
                        help="Serve Prometheus metrics on this port (0: off). Default: %(default)s")
    parser.add_argument("--json-logs", action="store_true", help="One JSON object per log line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = OperatorSettings.from_env()
    except ValidationError as error:
        for problem in problems_from(error):
            variable, _, rest = problem.path.partition(".")
            print(f"selfguide-operator: {ENV_PREFIX}{variable.upper()}{rest and '.' + rest}: {problem.message}",
                  file=sys.stderr)
        return 2
    try:
        kube = Kube.from_environment(settings.max_workers)
    except ConfigException as error:
        print(f"selfguide-operator: no cluster to talk to (no kubeconfig, not in a pod): {error}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.json_logs else kopf.LogFormat.FULL)
    if not args.verbose:  # kopf logs every handler call ("Handler 'x' succeeded"); the reconciler logs actions
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    metrics = Metrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(kube, settings, metrics)
    register(registry, reconciler, settings)
    if settings.progress_port:
        ProgressServer(Authenticator(kube), reconciler.record_progress, settings.progress_port).start()
    namespaces = [] if args.all_namespaces else args.namespace or settings.watch_namespaces
    kopf.run(registry=registry, standalone=True, clusterwide=not namespaces, namespaces=namespaces,
             liveness_endpoint=args.liveness or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
