"""A fake kubelet: registers GPU nodes and runs the pods bound to them as local processes.

Each pod's first container runs once as a subprocess in its own process group (restartPolicy is not
honoured; init and sidecar containers are ignored). Volumes map to local directories:
PersistentVolumeClaim -> ``<root>/pvc/<namespace>/<claim>``, ConfigMap/Secret -> their data written to a
per-pod directory, projected service-account tokens -> a token requested for the pod (TokenRequest, bound to
it, with the volume's audience), anything else (emptyDir, ...) -> an empty per-pod directory. Because mount
paths such as ``/data`` do not exist here, every occurrence of a mount path (longest first, subPath
applied) in command, args, env values and workingDir is rewritten to its local directory, and the
process gets ``FAKE_KUBELET=1``. Its output goes to ``<root>/pods/<namespace>/<pod>/log``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from kubernetes import watch
from kubernetes.client import (
    ApiClient,
    CoreV1Api,
    V1Container,
    V1DeleteOptions,
    V1Node,
    V1PersistentVolume,
    V1PersistentVolumeClaim,
    V1Pod,
    V1Preconditions,
)
from kubernetes.client.rest import ApiException

from tests.harness.controlplane import die_with_parent, kill_group, tail

log = logging.getLogger(__name__)

GPU = "nvidia.com/gpu"
NODE_PREFIX = "fake-gpu-node"
STORAGE_LABEL = "selfguide.dev/fake-storage-namespace"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MAX_GRACE_S = 5.0  # cap on a deleted pod's termination grace period
WATCH_WINDOW_S = 2  # server-side watch timeout: bounds how long stop() waits
RELIST_S = 30.0  # full resync interval, in case a watch event was missed
MESSAGE_LIMIT = 4096  # bytes of termination message, as the real kubelet
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The pod references something that does not exist (yet); the kubelet retries."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, ok: bool, reason: str | None = None) -> dict[str, str]:
    condition = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": _now()}
    return condition | ({"reason": reason} if reason else {})


def path_rewriter(mapping: dict[str, Path]) -> Callable[[str], str]:
    """A function replacing each mapped container path, as a whole path prefix, by its local path.

    A path that goes on below a mount path and exists on this machine is left alone: with a volume
    mounted at ``/work``, ``/work/out`` is rewritten but this test run's ``/work/main/.venv/bin/python``
    is not."""
    local = {p.rstrip("/"): str(target) for p, target in mapping.items() if p.rstrip("/")}
    if not local:
        return lambda text: text
    mounts = "|".join(map(re.escape, sorted(local, key=len, reverse=True)))
    pattern = re.compile(r"(?<![\w./-])(" + mounts + r")(?![\w.-])(/[^\s'\"`:;,=()\[\]{}<>|&$]*)?")

    def replace(match: re.Match[str]) -> str:
        mount, rest = match.group(1), match.group(2) or ""
        return match.group(0) if rest.strip("/") and os.path.exists(match.group(0)) else local[mount] + rest

    return lambda text: pattern.sub(replace, text)


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined references are replaced, ``$$`` escapes ``$``."""
    return _VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class FakeKubelet:
    """Registers `nodes` Ready nodes with `gpus_per_node` GPUs each and runs the pods bound to them."""

    def __init__(self, api: ApiClient, root: Path, *, nodes: int = 2, gpus_per_node: int = 2) -> None:
        self.api = api
        self.core = CoreV1Api(api)
        self.root = root
        self.gpus_per_node = gpus_per_node
        self.node_names = [f"{NODE_PREFIX}-{i}" for i in range(nodes)]
        self._runners: dict[str, PodRunner] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch_pods, name="fake-kubelet", daemon=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Register the nodes and start running their pods."""
        for name in self.node_names:
            self._register(name)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and kill every pod process (no pod is deleted)."""
        self._stopping.set()
        self._thread.join(WATCH_WINDOW_S + 10)
        runners = list(self._runners.values())
        for runner in runners:
            runner.terminate(grace=1.0, delete=False)
        for runner in runners:
            runner.thread.join(10)

    def pvc_dir(self, namespace: str, claim: str) -> Path:
        """The local directory backing PersistentVolumeClaim `claim` in `namespace`."""
        return self.root / "pvc" / namespace / claim

    def pod_dir(self, namespace: str, pod: str) -> Path:
        """The local directory of pod `pod`: its log, termination message and non-PVC volumes."""
        return self.root / "pods" / namespace / pod

    def log_path(self, namespace: str, pod: str) -> Path:
        """The file collecting the pod container's stdout and stderr."""
        return self.pod_dir(namespace, pod) / "log"

    def make_pv(self, namespace: str, claim: str, capacity: str = "1Ti") -> str:
        """Create a PersistentVolume pre-bound to claim `namespace/claim`, backed by `pvc_dir`; return its
        name. The claim may come later (e.g. from the operator): the PV controller binds them."""
        path = self.pvc_dir(namespace, claim)
        path.mkdir(parents=True, exist_ok=True)
        name = f"{namespace}-{claim}"
        self.core.create_persistent_volume(V1PersistentVolume.from_dict({
            "metadata": {"name": name, "labels": {STORAGE_LABEL: namespace}},
            "spec": {
                "capacity": {"storage": capacity},
                "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(path)},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }))
        return name

    def make_pvc(self, namespace: str, name: str, size: str = "1Gi", timeout: float = 30.0) -> Path:
        """Create a PersistentVolumeClaim and a PV for it, wait until they are bound; return the local dir."""
        self.make_pv(namespace, name)
        self.core.create_namespaced_persistent_volume_claim(namespace, V1PersistentVolumeClaim.from_dict({
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "resources": {"requests": {"storage": size}},
            },
        }))
        deadline = time.monotonic() + timeout
        while self.core.read_namespaced_persistent_volume_claim(name, namespace).status.phase != "Bound":
            if time.monotonic() > deadline:
                raise TimeoutError(f"PVC {namespace}/{name} not bound after {timeout}s")
            time.sleep(0.1)
        return self.pvc_dir(namespace, name)

    def delete_pvs(self, namespace: str) -> None:
        """Delete the PersistentVolumes made for claims in `namespace`."""
        self.core.delete_collection_persistent_volume(label_selector=f"{STORAGE_LABEL}={namespace}")

    def _register(self, name: str) -> None:
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "nvidia.com/gpu.present": "true",
        }
        try:
            self.core.create_node(V1Node.from_dict({"metadata": {"name": name, "labels": labels}}))
        except ApiException as e:
            if e.status != 409:
                raise
        # The TaintNodesByCondition admission plugin taints new nodes not-ready; nothing else would lift it.
        self.core.patch_node(name, {"spec": {"taints": None}}, _content_type=MERGE_PATCH)
        resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi",
                     GPU: str(self.gpus_per_node)}
        now = _now()
        conditions = [
            {"type": kind, "status": "False", "reason": f"KubeletHasNo{kind}", "lastHeartbeatTime": now,
             "lastTransitionTime": now} for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake kubelet",
              "lastHeartbeatTime": now, "lastTransitionTime": now}]
        self.core.patch_node_status(name, {"status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "fake", "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "fake://1", "osImage": "local",
                         "kernelVersion": os.uname().release, "machineID": name, "systemUUID": name,
                         "bootID": name},
        }}, _content_type=MERGE_PATCH)

    def _watch_pods(self) -> None:
        """List, then watch, the pods bound to any node; relist every RELIST_S or after an error."""
        while not self._stopping.is_set():
            try:
                pods = self.core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=")
                for pod in pods.items:
                    self._sync(pod)
                self._forget_except({pod.metadata.uid for pod in pods.items})
                version = pods.metadata.resource_version
                relist_at = time.monotonic() + RELIST_S
                while not self._stopping.is_set() and time.monotonic() < relist_at:
                    for event in watch.Watch().stream(
                        self.core.list_pod_for_all_namespaces, field_selector="spec.nodeName!=",
                        resource_version=version, timeout_seconds=WATCH_WINDOW_S,
                    ):
                        pod = event["object"]
                        version = pod.metadata.resource_version
                        if event["type"] == "DELETED":
                            self._forget(pod.metadata.uid)
                        else:
                            self._sync(pod)
            except Exception as e:  # a dropped connection, the API server going away, a bug: relist
                if isinstance(e, ApiException) and e.status == 410:
                    continue  # the watched version was compacted away: relist at once
                if not self._stopping.is_set():
                    log.warning("fake kubelet: pod watch failed; relisting", exc_info=True)
                    self._stopping.wait(1)

    def _sync(self, pod: V1Pod) -> None:
        if pod.spec.node_name not in self.node_names:
            return
        uid = pod.metadata.uid
        runner = self._runners.get(uid)
        if pod.metadata.deletion_timestamp:
            grace = min(float(pod.metadata.deletion_grace_period_seconds or 0), MAX_GRACE_S)
            if runner is None or not runner.terminate(grace=grace, delete=True):
                self.delete_pod(pod)
        elif runner is None and pod.status.phase not in ("Succeeded", "Failed"):
            self._runners[uid] = runner = PodRunner(self, pod)
            runner.thread.start()

    def _forget(self, uid: str) -> None:
        """The pod is gone from the API: kill its process if it still runs."""
        if runner := self._runners.pop(uid, None):
            runner.terminate(grace=0.0, delete=False)

    def _forget_except(self, uids: set[str]) -> None:
        for uid in set(self._runners) - uids:
            self._forget(uid)

    def delete_pod(self, pod: V1Pod) -> None:
        """Confirm a pod's termination, as a kubelet does: delete it with grace period 0."""
        options = V1DeleteOptions(grace_period_seconds=0, preconditions=V1Preconditions(uid=pod.metadata.uid))
        try:
            self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, body=options)
        except ApiException as e:
            if e.status not in (404, 409):  # gone already, or a new pod of the same name
                raise


class PodRunner:
    """Runs one pod's first container to completion, in a thread, and reports its status."""

    def __init__(self, kubelet: FakeKubelet, pod: V1Pod) -> None:
        self.name = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.thread = threading.Thread(target=self._main, name=f"pod-{self.name}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.container: V1Container = pod.spec.containers[0]
        self.dir = kubelet.pod_dir(pod.metadata.namespace, pod.metadata.name)
        self.log = kubelet.log_path(pod.metadata.namespace, pod.metadata.name)
        self.termination_log = self.dir / "termination-log"
        self._lock = threading.Lock()
        self._terminate = threading.Event()
        self._done = False
        self._grace = 0.0
        self._delete = False

    def terminate(self, grace: float, delete: bool) -> bool:
        """Kill the process (SIGTERM, SIGKILL after `grace` s), then delete the pod if `delete`.
        False if the runner has already finished: the caller must delete the pod itself."""
        with self._lock:
            if self._done:
                return False
            self._grace, self._delete = grace, self._delete or delete
            self._terminate.set()
            return True

    def _main(self) -> None:
        try:
            self._run()
        except Exception as e:
            log.exception("fake kubelet: running pod %s failed", self.name)
            self._report_terminated(128, "StartError", f"fake kubelet: {e}", _now())
        finally:
            with self._lock:
                self._done = True
                delete = self._delete
            if delete:
                self.kubelet.delete_pod(self.pod)

    def _run(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        started = _now()
        if not self.container.command:
            self._report_terminated(128, "StartError", f"container {self.container.name!r} has no command; "
                                    "the fake kubelet cannot run image entrypoints", started)
            return
        waiting = ""
        while True:
            try:
                argv, env, cwd = self._prepare()
                break
            except ConfigError as e:
                if str(e) != waiting:
                    waiting = str(e)
                    self._report_waiting("CreateContainerConfigError", waiting)
                if self._terminate.wait(1.0):
                    return
        try:
            with self.log.open("wb") as out:
                process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           preexec_fn=die_with_parent)  # noqa: PLW1509 (this thread waits for it)
        except OSError as e:
            why = "executable file not found in $PATH" if isinstance(e, FileNotFoundError) else e.strerror
            self._report_terminated(128, "StartError", f'exec: "{argv[0]}": {why}', started)
            return
        self._report_running(started, process.pid)
        code = self._wait(process)
        self._report_terminated(code, "Completed" if code == 0 else "Error", self._message(code), started)

    def _prepare(self) -> tuple[list[str], dict[str, str], Path]:
        """The container's argv, environment and working directory, with mount paths made local."""
        container = self.container
        volumes = self._volumes()
        mapping: dict[str, Path] = {}
        for mount in container.volume_mounts or []:
            local = volumes[mount.name] / (mount.sub_path or "")
            if not local.exists():
                local.mkdir(parents=True)
            mapping[mount.mount_path] = local
        mapping[container.termination_message_path or "/dev/termination-log"] = self.termination_log
        rewrite = path_rewriter(mapping)
        spec_env = self._env(rewrite)
        argv = [expand_vars(rewrite(arg), spec_env) for arg in [*container.command, *(container.args or [])]]
        cwd = Path(rewrite(container.working_dir)) if container.working_dir else self.dir
        cwd.mkdir(parents=True, exist_ok=True)
        return argv, {**os.environ, **spec_env, "FAKE_KUBELET": "1", "HOSTNAME": self.pod.metadata.name}, cwd

    def _volumes(self) -> dict[str, Path]:
        """Volume name -> local directory, with ConfigMap and Secret data written out."""
        namespace = self.pod.metadata.namespace
        dirs: dict[str, Path] = {}
        for volume in self.pod.spec.volumes or []:
            if volume.persistent_volume_claim:
                dirs[volume.name] = self.kubelet.pvc_dir(namespace, volume.persistent_volume_claim.claim_name)
                dirs[volume.name].mkdir(parents=True, exist_ok=True)
                continue
            dirs[volume.name] = target = self.dir / "volumes" / volume.name
            target.mkdir(parents=True, exist_ok=True)
            for projected in (volume.projected.sources or []) if volume.projected else []:
                if projected.service_account_token is not None:
                    self._write_token(projected.service_account_token, target)
            source = volume.config_map or volume.secret
            if source is None:
                continue
            name = volume.config_map.name if volume.config_map else volume.secret.secret_name
            data = self._data("configmap" if volume.config_map else "secret", name, bool(source.optional))
            items = {item.key: item.path for item in source.items or []} or {key: key for key in data}
            for key, path in items.items():
                if key not in data:
                    if not source.optional:
                        raise ConfigError(f"key {key!r} not found in {name}")
                    continue
                (target / path).parent.mkdir(parents=True, exist_ok=True)
                (target / path).write_bytes(data[key])
        return dirs

    def _write_token(self, source: Any, target: Path) -> None:
        """A projected service-account token, as the kubelet requests it: bound to this pod (TokenRequest)."""
        meta = self.pod.metadata
        request = self.kubelet.core.create_namespaced_service_account_token(
            self.pod.spec.service_account_name or "default", meta.namespace, {
                "spec": {"audiences": [source.audience] if source.audience else None,
                         "expirationSeconds": source.expiration_seconds or 3600,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta.name, "uid": meta.uid}}})
        (target / source.path).parent.mkdir(parents=True, exist_ok=True)
        (target / source.path).write_text(request.status.token)

    def _data(self, kind: str, name: str, optional: bool) -> dict[str, bytes]:
        """The decoded data of ConfigMap or Secret `name`; empty if it is missing and `optional`."""
        core, namespace = self.kubelet.core, self.pod.metadata.namespace
        try:
            if kind == "secret":
                secret = core.read_namespaced_secret(name, namespace)
                return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
            config_map = core.read_namespaced_config_map(name, namespace)
        except ApiException as e:
            if e.status == 404 and optional:
                return {}
            if e.status == 404:
                raise ConfigError(f'{kind} "{name}" not found') from e
            raise
        return {**{k: v.encode() for k, v in (config_map.data or {}).items()},
                **{k: base64.b64decode(v) for k, v in (config_map.binary_data or {}).items()}}

    def _env(self, rewrite: Callable[[str], str]) -> dict[str, str]:
        """The container's environment from envFrom and env, mount paths rewritten, $(VAR) expanded."""
        container, meta = self.container, self.pod.metadata
        env: dict[str, str] = {}
        for source in container.env_from or []:
            ref = source.config_map_ref or source.secret_ref
            data = self._data("configmap" if source.config_map_ref else "secret", ref.name, bool(ref.optional))
            env.update({(source.prefix or "") + k: rewrite(v.decode()) for k, v in data.items()})
        fields = {"metadata.name": meta.name, "metadata.namespace": meta.namespace, "metadata.uid": meta.uid,
                  "spec.nodeName": self.pod.spec.node_name,
                  "spec.serviceAccountName": self.pod.spec.service_account_name or "default",
                  "status.hostIP": "127.0.0.1"}
        for var in container.env or []:
            source = var.value_from
            if source is None:
                env[var.name] = expand_vars(rewrite(var.value or ""), env)
            elif source.field_ref:
                if source.field_ref.field_path not in fields:
                    raise ConfigError(f"fieldRef {source.field_ref.field_path!r} is not supported")
                env[var.name] = fields[source.field_ref.field_path]
            elif ref := source.config_map_key_ref or source.secret_key_ref:
                kind = "configmap" if source.config_map_key_ref else "secret"
                data = self._data(kind, ref.name, bool(ref.optional))
                if ref.key in data:
                    env[var.name] = rewrite(data[ref.key].decode())
                elif not ref.optional:
                    raise ConfigError(f"couldn't find key {ref.key} in {kind} {meta.namespace}/{ref.name}")
            else:
                raise ConfigError(f"env {var.name}: only value, fieldRef, configMapKeyRef and secretKeyRef "
                                  "are supported")
        return env

    def _wait(self, process: subprocess.Popen[bytes]) -> int:
        """Wait for the process, killing it when asked to; return its exit code (128 + signal if killed)."""
        while True:
            try:
                code = process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if not self._terminate.is_set():
                    continue
            kill_group(process.pid, signal.SIGTERM)
            try:
                code = process.wait(timeout=self._grace)
            except subprocess.TimeoutExpired:
                kill_group(process.pid, signal.SIGKILL)
                code = process.wait()
            break
        kill_group(process.pid, signal.SIGKILL)  # whatever the main process left behind dies with it
        return 128 - code if code < 0 else code

    def _message(self, code: int) -> str:
        """The termination message: the file the container wrote, else (FallbackToLogsOnError) its log."""
        if self.termination_log.exists():
            message = self.termination_log.read_bytes()[:MESSAGE_LIMIT].decode(errors="replace")
            if message:
                return message
        if code != 0 and self.container.termination_message_policy == "FallbackToLogsOnError":
            return tail(self.log, 80)[-2048:]
        return ""

    def _container_status(self, state: dict[str, object], running: bool) -> dict[str, object]:
        return {"name": self.container.name, "image": self.container.image or "fake", "imageID": "",
                "ready": running, "started": running, "restartCount": 0, "state": state}

    def _patch(self, status: dict[str, object]) -> None:
        meta = self.pod.metadata
        try:
            self.kubelet.core.patch_namespaced_pod_status(meta.name, meta.namespace, {"status": status},
                                                          _content_type=STRATEGIC_MERGE_PATCH)
        except ApiException as e:
            if e.status != 404:
                raise

    def _report_waiting(self, reason: str, message: str) -> None:
        self._patch({"containerStatuses": [self._container_status(
            {"waiting": {"reason": reason, "message": message}}, running=False)]})

    def _report_running(self, started: str, pid: int) -> None:
        self._patch({
            "phase": "Running",
            "startTime": started,
            "hostIP": "127.0.0.1",
            "conditions": [_condition(kind, True) for kind in
                           ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [self._container_status(
                {"running": {"startedAt": started}}, running=True) | {"containerID": f"fake://{pid}"}],
        })

    def _report_terminated(self, code: int, reason: str, message: str, started: str) -> None:
        terminated = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": _now()}
        self._patch({
            "phase": "Succeeded" if code == 0 else "Failed",
            "startTime": started,
            "hostIP": "127.0.0.1",
            "conditions": [_condition("PodReadyToStartContainers", False),
                           _condition("Initialized", True, "PodCompleted"),
                           _condition("ContainersReady", False, "PodCompleted"),
                           _condition("Ready", False, "PodCompleted")],
            "containerStatuses": [self._container_status(
                {"terminated": terminated | ({"message": message} if message else {})}, running=False)],
        } | ({"message": message} if reason == "StartError" else {}))
