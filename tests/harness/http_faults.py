"""A reverse proxy in front of a real server that misbehaves on request: it answers some requests itself with an
error status, waits before forwarding, or strips parts of the server's JSON answer, as an overloaded or
feature-poor OpenAI-compatible server would. Everything else passes through unchanged."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Faults:
    """What the proxy does to the next requests (to paths containing `path`)."""

    path: str = "/v1/completions"
    statuses: list[int] = field(default_factory=list)
    """Answer the next requests with these statuses, one each, before forwarding again."""
    always: int | None = None
    """Answer every request with this status."""
    delay: float = 0.0
    """Wait this long before forwarding each request."""
    rewrite: Rewrite | None = None
    """Change the server's JSON answer before returning it."""
    bearer: str | None = None
    """Answer 401 unless the request carries `Authorization: Bearer <bearer>`."""
    seen: list[str] = field(default_factory=list)
    """The paths of the requests received, in order."""


@contextmanager
def faulty_proxy(upstream: str, faults: Faults) -> Iterator[str]:
    """`http://127.0.0.1:<port>` forwarding to `upstream` (`http://host:port`) under `faults`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle(None)

        def do_POST(self) -> None:
            self._handle(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def _handle(self, body: bytes | None) -> None:
            faults.seen.append(self.path)
            if faults.bearer is not None and self.headers.get("Authorization") != f"Bearer {faults.bearer}":
                return self._send(401, {"error": {"message": "invalid API key", "code": 401}})
            if faults.path in self.path:
                status = faults.statuses.pop(0) if faults.statuses else faults.always
                if status is not None:
                    return self._send(status, {"error": {"message": f"injected {status}", "code": status}},
                                      {"Retry-After": "0"} if status == 429 else {})
                time.sleep(faults.delay)
            request = urllib.request.Request(upstream + self.path, data=body, method=self.command,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    status, payload = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, payload = error.code, error.read()
            if faults.rewrite is not None and faults.path in self.path and status == 200:
                payload = json.dumps(faults.rewrite(json.loads(payload))).encode()
            self._send_bytes(status, payload)

        def _send(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            self._send_bytes(status, json.dumps(document).encode(), headers)

        def _send_bytes(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # Closing waits for the requests still being forwarded (a delayed one the client gave up on reaches the
    # server later): no request of one test may reach the server during the next.
    server.daemon_threads = False
    server.block_on_close = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
