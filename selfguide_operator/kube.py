"""A thin JSON client of the Kubernetes API for the few calls the operator makes.

It reuses the `kubernetes` package's configuration, TLS and connection pool but skips its typed models: plain
dicts in and out keep reconciles fast and the operator's memory small.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import config
from kubernetes.client import ApiClient, Configuration

from selfguide import __version__
from selfguide.spec import GROUP, PLURAL, VERSION

FIELD_MANAGER = "selfguide-operator"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_PATHS = {
    "Job": "/apis/batch/v1/namespaces/{namespace}/jobs",
    "ConfigMap": "/api/v1/namespaces/{namespace}/configmaps",
    "Pod": "/api/v1/namespaces/{namespace}/pods",
    "Event": "/api/v1/namespaces/{namespace}/events",
    "SelfGuideJob": f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}",
    "ModelAdapter": "/apis/model.aibrix.ai/v1alpha1/namespaces/{namespace}/modeladapters",
}


REQUEST_TIMEOUT = (10.0, 30.0)
"""Connect and read timeouts of every request, in seconds: a reconcile holds its job's lock while it waits."""


class ApiError(Exception):
    """A failed API request: the HTTP status and the server's message."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        self.status = status
        self.message = message
        self.reason = reason
        """The Status object's machine-readable reason (Invalid, AlreadyExists, Forbidden, ...)."""
        super().__init__(f"HTTP {status}: {message}")

    @property
    def permanent(self) -> bool:
        """A client error that retrying the same request cannot fix (not a timeout, throttling or a quota that
        may free up)."""
        return 400 <= self.status < 500 and self.status not in (408, 429) and "exceeded quota" not in self.message


class Kube:
    """Create, patch, delete and list objects by kind, namespace and name."""

    def __init__(self, client: ApiClient, timeout: tuple[float, float] = REQUEST_TIMEOUT) -> None:
        self.client = client
        self.timeout = timeout

    @classmethod
    def from_environment(cls, connections: int) -> Kube:
        """A client configured from $KUBECONFIG / ~/.kube/config, or in-cluster, with `connections` pooled."""
        configuration = Configuration()
        config.load_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = connections
        client = ApiClient(configuration)
        client.user_agent = f"{FIELD_MANAGER}/{__version__}"
        return cls(client)

    def request(self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        method, url, headers, payload, _ = self.client.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type}, body=body,
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(method, url, headers, payload, _request_timeout=self.timeout)
        data: bytes = response.read() or b"{}"  # type: ignore[no-untyped-call]
        if response.status >= 400:
            try:
                document = json.loads(data)
                message, reason = document.get("message", ""), document.get("reason", "")
            except ValueError:
                message, reason = data.decode(errors="replace")[:500], ""
            raise ApiError(response.status, message, reason)
        answer: dict[str, Any] = json.loads(data)
        return answer

    @staticmethod
    def path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        return "/".join(filter(None, [_PATHS[kind].format(namespace=namespace), name, subresource]))

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create an object and return it; None when one of that name exists already."""
        try:
            return self.request("POST", self.path(kind, namespace), body=body)
        except ApiError as error:
            if error.status == 409:
                return None
            raise

    def apply(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        """Server-side apply: create the object, or make the fields we manage match `body`."""
        self.request("PATCH", self.path(kind, namespace, body["metadata"]["name"]), body=body,
                     query={"fieldManager": FIELD_MANAGER, "force": "true"}, content_type=APPLY_PATCH)

    def json_patch(self, kind: str, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        """A JSON patch (RFC 6902): its `test` operations are preconditions (a failed one answers 422)."""
        self.request("PATCH", self.path(kind, namespace, name), body=operations, content_type=JSON_PATCH)

    def merge_patch(self, kind: str, namespace: str, name: str, body: dict[str, Any],
                    subresource: str | None = None) -> None:
        self.request("PATCH", self.path(kind, namespace, name, subresource), body=body, content_type=MERGE_PATCH)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete an object and, in the background, what it owns; False when it was gone already."""
        try:
            self.request("DELETE", self.path(kind, namespace, name), body={"propagationPolicy": "Background"})
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def list(self, kind: str, namespace: str, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        query = {key: value for key, value in (("labelSelector", label_selector), ("fieldSelector", field_selector))
                 if value}
        items: list[dict[str, Any]] = self.request("GET", self.path(kind, namespace), query=query)["items"]
        return items
