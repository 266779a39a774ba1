"""Operator reconcile latency, API requests per SelfGuideJob and operator memory, on the test cluster.

    KUBEBUILDER_ASSETS=$(bash hack/build-tools.sh) .venv/bin/python -m benchmarks.operator_reconcile --jobs 1 50

Stage pods run the test double tests/operator/fake_stage.py (no ML work), so what is timed is the operator and
the Kubernetes machinery around it:
- "apply -> first Job": from the create request of a SelfGuideJob to the watch event adding its generate Job;
- "stage handoff": from the watch event showing a stage Job Complete to the one adding the next stage's Job;
- API requests: the API server's audit events (one per request) whose user agent is the operator's (its own
  client, or kopf's), from the first create of a round until every job of the round succeeded, per job;
- RSS: the operator's resident memory after each round (VmRSS) and its peak (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from kubernetes import watch
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi, V1Namespace
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from selfguide.crd import custom_resource_definition
from selfguide.spec import GROUP, PLURAL, VERSION
from tests.harness.controlplane import ControlPlane, free_port
from tests.harness.fake_kubelet import FakeKubelet
from tests.operator.helpers import FAKE_STAGE, OUTPUT_CLAIM, VENV_BIN, manifest

NAMESPACE = "bench"
OPERATOR_AGENTS = ("selfguide-operator/", "kopf/")
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                "omitStages": ["RequestReceived", "ResponseStarted"], "rules": [{"level": "Metadata"}]}
STAGES = ("generate", "train", "evaluate")


class AuditedControlPlane(ControlPlane):
    """The test control plane with the API server's audit log on (one JSON line per request)."""

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _apiserver_args(self) -> list[str]:
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        return [*super()._apiserver_args(), f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json"]


class JobWatch(threading.Thread):
    """Records when each stage Job was added and when it was first seen Complete (monotonic seconds)."""

    def __init__(self, api: ApiClient) -> None:
        super().__init__(daemon=True)
        self.batch = BatchV1Api(api)
        self.added: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.ready = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        listed = self.batch.list_namespaced_job(NAMESPACE)
        version = listed.metadata.resource_version if listed.metadata else None
        self.ready.set()
        while not self.stopping.is_set():
            try:
                for event in watch.Watch().stream(self.batch.list_namespaced_job, NAMESPACE, deserialize=False,
                                                  resource_version=version, timeout_seconds=60):
                    now, job = time.monotonic(), event["object"]
                    version = job["metadata"]["resourceVersion"]
                    name = job["metadata"]["name"]
                    self.added.setdefault(name, now)
                    if any(c["type"] == "Complete" and c["status"] == "True"
                           for c in (job.get("status") or {}).get("conditions") or []):
                        self.completed.setdefault(name, now)
            except (ApiException, HTTPError, OSError):  # a dropped connection: resume from `version`
                if not self.stopping.is_set():
                    time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def reconciles(metrics_url: str) -> tuple[float, float]:
    """(count, total seconds) of the operator's reconciles so far, from its Prometheus metrics."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith(
        ("selfguide_reconcile_duration_seconds_count", "selfguide_reconcile_duration_seconds_sum"))}
    return values["selfguide_reconcile_duration_seconds_count"], values["selfguide_reconcile_duration_seconds_sum"]


def operator_requests(audit_log: Path, offset: int) -> tuple[dict[str, list[float]], int]:
    """Requests by the operator in the audit log after byte `offset`, by verb and resource, each with the time
    the API server spent on it; and the new offset."""
    requests: dict[str, list[float]] = defaultdict(list)
    with audit_log.open("rb") as log:
        log.seek(offset)
        for line in log:
            event = json.loads(line)
            if event.get("userAgent", "").startswith(OPERATOR_AGENTS):
                ref = event.get("objectRef") or {}
                resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                received, done = (datetime.fromisoformat(event[k]) for k in
                                  ("requestReceivedTimestamp", "stageTimestamp"))
                requests[f"{event['verb']} {resource}"].append((done - received).total_seconds())
        return requests, log.tell()


def run_round(api: ApiClient, plane: AuditedControlPlane, jobs: JobWatch, operator: subprocess.Popen[bytes],
              metrics_url: str, count: int) -> dict[str, Any]:
    custom = CustomObjectsApi(api)
    _, offset = operator_requests(plane.audit_log, 0)
    cpu = cpu_seconds(operator.pid), time.monotonic()
    reconciled = reconciles(metrics_url)
    names = [f"r{count}-{i}" for i in range(count)]
    submitted = {}
    for name in names:
        submitted[name] = time.monotonic()
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest(name))
    deadline = time.monotonic() + 600
    while True:
        listed: dict[str, Any] = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)  # type: ignore[assignment]
        items = listed["items"]
        phases = {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items}
        if all(phases.get(name) in ("Succeeded", "Failed") for name in names):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"round of {count}: not finished after 600 s: {Counter(phases.values())}")
        time.sleep(0.5)
    time.sleep(1)  # the last status writes and events
    requests, _ = operator_requests(plane.audit_log, offset)
    server_seconds = [t for kind, times in requests.items() if not kind.startswith("watch") for t in times]
    runs, seconds = (now - before for now, before in zip(reconciles(metrics_url), reconciled, strict=True))
    first = [jobs.added[f"{name}-generate"] - submitted[name] for name in names]
    handoff = [jobs.added[f"{name}-{nxt}"] - jobs.completed[f"{name}-{prev}"]
               for name in names for prev, nxt in pairwise(STAGES)]
    return {
        "jobs": count,
        "failed": sum(phases[name] == "Failed" for name in names),
        "first_job_s": {"p50": statistics.median(first), "p95": percentile(first, 0.95), "max": max(first)},
        "handoff_s": {"p50": statistics.median(handoff), "p95": percentile(handoff, 0.95), "max": max(handoff)},
        "reconciles_per_job": runs / count,
        "reconcile_mean_s": seconds / runs,
        "requests_per_job": len(server_seconds) / count,
        "api_server_s": {"p50": statistics.median(server_seconds), "p95": percentile(server_seconds, 0.95)},
        "requests": {kind: {"count": len(times), "server_p50_s": statistics.median(times)}
                     for kind, times in sorted(requests.items(), key=lambda item: -len(item[1]))},
        "memory_mib": memory_mib(operator.pid),
        "operator_cpu_share": (cpu_seconds(operator.pid) - cpu[0]) / (time.monotonic() - cpu[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 50], help="SelfGuideJobs per round")
    parser.add_argument("--assets", type=Path, default=os.environ.get("KUBEBUILDER_ASSETS"),
                        help="directory of the binaries (default: $KUBEBUILDER_ASSETS)")
    args = parser.parse_args()
    if args.assets is None:
        parser.error("set KUBEBUILDER_ASSETS=$(bash hack/build-tools.sh) or pass --assets")
    with tempfile.TemporaryDirectory(prefix="selfguide-bench-") as tmp, \
            AuditedControlPlane(args.assets, Path(tmp), controllers=True) as plane, plane.api_client() as api, \
            FakeKubelet(api, Path(tmp) / "kubelet", nodes=2, gpus_per_node=64) as kubelet:
        kubectl = ["kubectl", f"--kubeconfig={plane.kubeconfig()}"]
        subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(custom_resource_definition()), text=True,
                       check=True)
        time.sleep(1)  # `kubectl wait` fails on a CRD whose status has no conditions yet
        subprocess.run([*kubectl, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}"], check=True)
        CoreV1Api(api).create_namespace(V1Namespace(metadata={"name": NAMESPACE}))
        kubelet.make_pvc(NAMESPACE, OUTPUT_CLAIM)
        jobs = JobWatch(api)
        jobs.start()
        jobs.ready.wait()
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig()),
               "SELFGUIDE_STAGE_COMMAND": f"{sys.executable} {FAKE_STAGE}", "SELFGUIDE_OUTPUT_CLAIM": OUTPUT_CLAIM}
        log = Path(tmp) / "operator.log"
        with log.open("wb") as out:
            metrics_port = free_port()
            operator = subprocess.Popen([str(VENV_BIN / "selfguide-operator"), "--namespace", NAMESPACE,
                                         "--metrics-port", str(metrics_port),
                                         "--liveness", f"http://127.0.0.1:{free_port()}/"],
                                        env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            while True:
                try:
                    reconciles(metrics_url)
                    break
                except OSError:
                    time.sleep(0.2)
            time.sleep(2)  # the operator's watches start
            print(f"operator idle: {memory_mib(operator.pid)}", flush=True)
            for count in args.jobs:
                result = run_round(api, plane, jobs, operator, metrics_url, count)
                print(json.dumps(result), flush=True)
        finally:
            jobs.stopping.set()
            operator.terminate()
            operator.wait(30)


if __name__ == "__main__":
    main()
