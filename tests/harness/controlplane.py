"""A real Kubernetes control plane for tests: etcd and kube-apiserver, optionally kube-controller-manager
and kube-scheduler, on free loopback ports with all state in one directory.

Authentication is a static token file (users ``admin`` in ``system:masters``, ``alice`` with no groups,
and the controller manager and scheduler under their RBAC bootstrap identities); authorization is RBAC.
Every component runs in its own process group, logs to ``<workdir>/logs/<component>.log`` and dies
with the process that started it.
"""

from __future__ import annotations

import base64
import ctypes
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import yaml
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config

API_SERVER_BINARIES = ("etcd", "kube-apiserver")
ALL_BINARIES = (*API_SERVER_BINARIES, "kube-controller-manager", "kube-scheduler")
ADMIN = "admin"
ALICE = "alice"
CONTROLLER_MANAGER = "system:kube-controller-manager"
SCHEDULER = "system:kube-scheduler"
# Users and their groups; every authenticated user is also in system:authenticated.
USERS = {ADMIN: "system:masters", ALICE: "", CONTROLLER_MANAGER: "", SCHEDULER: ""}
# The node lifecycle controller would taint the fake nodes, whose kubelet sends no heartbeats.
CONTROLLERS = "*,-node-lifecycle-controller"
SERVICE_CIDR = "10.0.0.0/24"

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = selfguide-test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.0.0.1
"""


class ControlPlaneError(RuntimeError):
    """A component failed to start or to become ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_prctl = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG; resolved beforehand, so the child only makes a syscall


# Popen(preexec_fn=...) that has the child SIGKILLed when the thread that started it dies, so a killed test
# run leaves no process behind (Linux only).
die_with_parent = _die_with_parent if _prctl else None


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to a process group that may already be gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file, or a note that it is missing."""
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Component:
    """One running control plane binary."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def failure(self) -> str | None:
        """Why the component is no longer running, or None while it runs."""
        code = self.popen.poll()
        return None if code is None else f"{self.name} exited with code {code}"


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager + kube-scheduler when `controllers`)."""

    def __init__(self, assets: Path, workdir: Path, *, controllers: bool = False) -> None:
        self.assets = assets
        self.workdir = workdir
        self.controllers = controllers
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        self.etcd_peer_url = f"http://127.0.0.1:{free_port()}"
        self.tokens = {user: secrets.token_hex(16) for user in USERS}
        self.pki = workdir / "pki"
        self.logs = workdir / "logs"
        self.components: list[Component] = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self, user: str = ADMIN) -> Path:
        """The kubeconfig file that authenticates as `user` (one of USERS)."""
        return self.workdir / "kubeconfig" / f"{user.replace(':', '-')}.yaml"

    def api_client(self, user: str = ADMIN) -> ApiClient:
        """A new Kubernetes API client authenticated as `user`; close it when done."""
        return new_client_from_config(config_file=str(self.kubeconfig(user)))

    def start(self, timeout: float = 60.0) -> None:
        """Start every component and return once all are ready; on failure stop them and raise."""
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the components' process groups, last started first (etcd outlives its clients);
        SIGKILL whatever outlives `grace` seconds."""
        for component in reversed(self.components):
            kill_group(component.popen.pid, signal.SIGTERM)
            try:
                component.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            kill_group(component.popen.pid, signal.SIGKILL)
            component.popen.wait()
        self.components.clear()

    def _start(self, deadline: float) -> None:
        self._write_credentials()
        self._spawn_etcd()
        self._spawn("kube-apiserver", self._apiserver_args())
        self._wait_ok(f"{self.url}/readyz", deadline, token=self.tokens[ADMIN])
        if not self.controllers:
            return
        health = []
        for name, user, args in (
            ("kube-controller-manager", CONTROLLER_MANAGER, self._controller_manager_args()),
            ("kube-scheduler", SCHEDULER, []),
        ):
            port = free_port()
            health.append(f"https://127.0.0.1:{port}/healthz")
            kubeconfig = self.kubeconfig(user)
            self._spawn(name, [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--authentication-skip-lookup",  # tokens only: no client CA to read from the cluster
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / name}",
                "--leader-elect=false",
                *args,
            ])
        for url in health:
            self._wait_ok(url, deadline)
        # The service account controller works once namespace "default" has its ServiceAccount.
        self._wait_ok(f"{self.url}/api/v1/namespaces/default/serviceaccounts/default", deadline,
                      token=self.tokens[ADMIN])

    def _write_credentials(self) -> None:
        """CA, serving certificate, service account key pair, token file and one kubeconfig per user."""
        self.pki.mkdir(parents=True, exist_ok=True)
        config = self.pki / "openssl.cnf"
        config.write_text(_OPENSSL_CONFIG)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for args in (
            ["req", "-x509", "-config", config, "-extensions", "ca", *ec, "-days", "7",
             "-subj", "/CN=selfguide-test-ca", "-keyout", "ca.key", "-out", "ca.crt"],
            ["req", "-new", "-config", config, *ec, "-subj", "/CN=kube-apiserver",
             "-keyout", "apiserver.key", "-out", "apiserver.csr"],
            ["x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "7", "-extfile", config, "-extensions", "server", "-out", "apiserver.crt"],
            ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key"],
            ["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        ):
            result = subprocess.run(["openssl", *map(str, args)], cwd=self.pki, capture_output=True, text=True,
                                    check=False)
            if result.returncode:
                raise ControlPlaneError(f"openssl {args[0]} failed: {result.stderr.strip()}")
        (self.pki / "tokens.csv").write_text("".join(
            f'{self.tokens[user]},{user},{user},"{groups}"\n' for user, groups in USERS.items()))
        ca = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        for user in USERS:
            path = self.kubeconfig(user)
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
                "users": [{"name": user, "user": {"token": self.tokens[user]}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
                "current-context": "test",
            }))

    def _spawn_etcd(self) -> None:
        client, peer = self.etcd_url, self.etcd_peer_url
        self._spawn("etcd", [
            "--name=test",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ])

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        return [
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'kube-apiserver'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # A loopback address is not a valid endpoint for the "kubernetes" Service.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _controller_manager_args(self) -> list[str]:
        return [
            f"--controllers={CONTROLLERS}",
            "--use-service-account-credentials",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
            f"--cluster-signing-key-file={self.pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--pvclaimbinder-sync-period=2s",
            # Every controller gets its own ServiceAccount token at start; the default 20 QPS serialises that.
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
        ]

    def _spawn(self, name: str, args: list[str]) -> None:
        binary = self.assets / name
        if not os.access(binary, os.X_OK):
            raise ControlPlaneError(f"{binary} is missing or not executable; run hack/build-tools.sh")
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(binary), *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        self.components.append(Component(name, popen, log))

    def _wait_ok(self, url: str, deadline: float, token: str | None = None) -> None:
        """Poll `url` until it answers 200, failing early when a component exits."""
        context = ssl.create_default_context(cafile=self.pki / "ca.crt")
        if not url.startswith(self.url):  # controller manager and scheduler serve self-signed certificates
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        last = "no answer yet"
        while time.monotonic() < deadline:
            for component in self.components:
                if failure := component.failure():
                    raise ControlPlaneError(self._report(failure))
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read().decode(errors='replace')[-500:]}"
            except (OSError, ssl.SSLError) as e:
                last = str(e)
            time.sleep(0.1)
        raise ControlPlaneError(self._report(f"{url} not ready in time; last answer: {last}"))

    def _report(self, problem: str) -> str:
        """`problem` followed by the tail of every component's log."""
        sections = [f"--- {c.log} (last lines) ---\n{tail(c.log)}" for c in self.components]
        return "\n".join([problem, *sections])
